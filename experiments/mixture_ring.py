"""Ring of 8 Gaussians (radius 1, std 0.01): PacGAN Table 1 (Lin et al. 2018), "2D-ring" columns.

python launch.py --config experiments/mixture_ring.py[:gan|pacgan2|pacgan3|pacgan4|wgan_gp] --workdir DIR
Details and defaults: experiments/mixtures.py.
"""
from experiments.mixtures import mixture_config


def get_config(variant: str = "gan"):
    return mixture_config("ring", variant, "Lin et al. 2018 (PacGAN), Table 1, 2D-ring: modes, high-quality %, reverse KL")

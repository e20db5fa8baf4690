"""Grid of 25 Gaussians (spacing 2, std 0.05): PacGAN Table 1 "2D-grid" and VEEGAN Table 1 "2D Grid".

python launch.py --config experiments/mixture_grid.py[:gan|pacgan2|pacgan3|pacgan4|wgan_gp] --workdir DIR
Details and defaults: experiments/mixtures.py.
"""
from experiments.mixtures import mixture_config


def get_config(variant: str = "gan"):
    return mixture_config("grid", variant, "Lin et al. 2018 (PacGAN), Table 1, 2D-grid; Srivastava et al. 2017 "
                                           "(VEEGAN), Table 1, 2D Grid: modes, high-quality %, reverse KL")

"""Hinge loss with a spectrally normalised critic (Miyato et al. 2018, SN-GAN "standard CNN" setting:
Adam 2e-4, β = (0.5, 0.999), n_dis = 1), no batch norm in the critic, batch 64.

python launch.py --config experiments/hinge_sn_mnist.py[:fashion_mnist] --workdir DIR
"""
from experiments.images import dataset_of, image_config


def get_config(variant: str = ""):
    c = image_config(dataset_of(variant), "hinge_sn", "Miyato et al. 2018 (SN-GAN), hinge loss, Table 1 setting")
    c.loss.name = "hinge"
    c.model.critic = dict(name="dcgan", image_size=28, channels=1, batch_norm=False, spectral_norm=True)
    c.optim.generator = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.optim.critic = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    return c

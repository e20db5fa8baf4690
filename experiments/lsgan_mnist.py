"""LSGAN (Mao et al. 2017), a-b-c = 0-1-1 coding (Eq. 2): Adam 2e-4, β1 0.5, batch 64, DCGAN nets.

python launch.py --config experiments/lsgan_mnist.py[:fashion_mnist] --workdir DIR
"""
from experiments.images import dataset_of, image_config


def get_config(variant: str = ""):
    c = image_config(dataset_of(variant), "lsgan", "Mao et al. 2017 (LSGAN), Eq. 2 with a=0, b=c=1")
    c.loss.name = "least_squares"
    c.optim.generator = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.optim.critic = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    return c

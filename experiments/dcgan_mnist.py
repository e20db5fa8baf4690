"""DCGAN (Radford et al. 2016), non-saturating loss: Adam 2e-4, β1 0.5, batch 128, N(0, 0.02) weights.

python launch.py --config experiments/dcgan_mnist.py[:fashion_mnist] --workdir DIR
Reproduces no table (DCGAN reports none on MNIST); our FID on MNIST / Fashion-MNIST goes into the
project's own FID table (issue: evaluation).
"""
from experiments.images import dataset_of, image_config


def get_config(variant: str = ""):
    c = image_config(dataset_of(variant), "dcgan", "Radford et al. 2016 (DCGAN): architecture and Adam settings")
    c.batch_size = 128
    c.loss.name = "non_saturating"
    c.optim.generator = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    c.optim.critic = dict(name="adam", learning_rate=2e-4, b1=0.5, b2=0.999)
    return c

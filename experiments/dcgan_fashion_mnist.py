"""DCGAN non-saturating on Fashion-MNIST: experiments/dcgan_mnist.py with the dataset switched."""
from experiments.dcgan_mnist import get_config as _dcgan


def get_config(variant: str = ""):
    return _dcgan(variant or "fashion_mnist")

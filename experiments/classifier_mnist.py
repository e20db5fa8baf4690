"""LeNet-style MNIST classifier: the feature network of classifier FID / KID / IS and the digit reader of
the Stacked-MNIST mode count (VEEGAN / PacGAN classify each channel with an MNIST CNN).

python -m gan_jax.metrics.classifier --config experiments/classifier_mnist.py --workdir DIR
Architecture, schedule and what is saved: gan_jax/metrics/classifier.py. Target: >= 99 % test accuracy.
"""
from gan_jax.metrics.classifier import default_config


def get_config():
    c = default_config()
    c.dataset = "mnist"
    return c

"""LeNet-style Fashion-MNIST classifier: the feature network of classifier FID / KID / IS on Fashion-MNIST.

python -m gan_jax.metrics.classifier --config experiments/classifier_fashion_mnist.py --workdir DIR
Same architecture and schedule as experiments/classifier_mnist.py (gan_jax/metrics/classifier.py).
Measured (seed 0, 8 epochs, 2-core CPU shared with other jobs, 2026-11-23): 91.50 % on the 10,000 test
images, 171 s.
"""
from gan_jax.metrics.classifier import default_config


def get_config():
    c = default_config()
    c.dataset = "fashion_mnist"
    return c

"""LeNet-style Fashion-MNIST classifier: the feature network of classifier FID / KID / IS on Fashion-MNIST.

python launch.py --config experiments/classifier_fashion_mnist.py --workdir DIR
Same architecture and schedule (8 epochs, 3,744 steps) as experiments/classifier_mnist.py.
"""
from experiments.classifier_mnist import get_config as mnist_config


def get_config():
    c = mnist_config()
    c.name, c.data.name = "classifier_fashion_mnist", "fashion_mnist"
    return c

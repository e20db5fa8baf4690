"""ADDA (Tzeng et al. 2017): MNIST (labelled source) -> scikit-learn's 8x8 digits in MNIST's format
(unlabelled target; gan_jax/data/paired.py), target accuracy of source-only vs ADDA over seeds 0, 1, 2.

python -m gan_jax.adda --config experiments/adda_mnist_digits.py --workdir DIR
Networks and losses: gan_jax/adda.py. Results: RESULTS.md.
"""
from gan_jax.adda import default_config


def get_config():
    return default_config()

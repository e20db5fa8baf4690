"""Shared config of the image experiments on MNIST / Fashion-MNIST (28×28×1, pixels in [−1, 1]).

Networks: DCGAN (Radford et al. 2016) at 28 px — a 7×7 stage, then 14 and 28 (widths 256, 128), z of
100 — unless an experiment says otherwise. Datasets are built offline from the idx files (see the
README's "Datasets" section): from `$GAN_JAX_DATA/<name>` (the environment variable naming your folder
of original files), or `--config.data.manual_dir=DIR`.
"""
from gan_jax.config import base_config

DATASETS = ("mnist", "fashion_mnist")


def image_config(dataset: str, name: str, paper: str):
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {list(DATASETS)}")
    c = base_config()
    c.name = f"{name}_{dataset}"
    c.paper = paper
    c.seed = 0
    c.steps = 5_000
    c.batch_size = 64
    c.checkpoint_every = 1_000
    c.log_every = 50
    c.sample_every = 500
    c.data.name = dataset
    c.model.latent_dim = 100
    c.model.generator = dict(name="dcgan", image_size=28, channels=1)
    c.model.critic = dict(name="dcgan", image_size=28, channels=1)
    c.eval.num_samples = 64
    return c


def dataset_of(variant: str) -> str:
    """`--config experiments/x.py:fashion_mnist` selects the dataset; the default is MNIST."""
    return variant or "mnist"

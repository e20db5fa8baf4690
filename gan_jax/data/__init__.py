"""Datasets: TFDS image datasets built offline from local files, Stacked MNIST, resumable pipelines.

This module stays light (no TFDS or JAX import): the public functions are loaded on first use.
Offline build: `python -m gan_jax.data --dataset mnist --manual_dir DIR/mnist --data_dir TFDS_DIR`, or with
GAN_JAX_DATA=DIR set (its `<name>/` subfolders hold the original files) just `--dataset mnist`.
"""
import importlib
from typing import Any

DATASET_NAMES: tuple[str, ...] = ("mnist", "fashion_mnist", "cifar10", "celeb_a", "stacked_mnist")
# The environment variable naming a folder of original files, one subfolder per dataset (mnist/, cifar10/, ...).
DATA_ENV = "GAN_JAX_DATA"

_LAZY = {
    "prepare": "gan_jax.data.tfds_local",
    "DatasetSpec": "gan_jax.data.tfds_local",
    "dataset_spec": "gan_jax.data.tfds_local",
    "make_image_source": "gan_jax.data.sources",
    "ImageSource": "gan_jax.data.sources",
    "StackedMnistRecords": "gan_jax.data.sources",
    "InMemorySource": "gan_jax.data.sources",
    "Pipeline": "gan_jax.data.pipeline",
    "prefetch_to_devices": "gan_jax.data.prefetch",
    "split_for_devices": "gan_jax.data.prefetch",
}

__all__ = ["DATASET_NAMES", "DATA_ENV", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

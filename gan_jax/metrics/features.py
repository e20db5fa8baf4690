"""Pluggable feature networks for FID / KID / IS: images [B, H, W, C] in [−1, 1] -> (features, logits).

- `lenet_features(workdir)`: our LeNet classifier (gan_jax/metrics/classifier.py), 128-d features of its
  hidden dense layer and 10 logits, 28×28×1 inputs. Classifier-FID values are not comparable with
  published (Inception) FIDs (paper_tables.md §6); record the classifier's checkpoint with every number.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class FeatureNetwork:
    """A feature extractor: `apply_fn` maps images [B, input_size, input_size, channels] in [−1, 1]
    (what our generators and data sources produce) to (features [B, feature_dim], logits [B, num_classes])."""
    name: str
    apply_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
    input_size: int
    channels: int
    feature_dim: int
    num_classes: int


def batched_apply(fn: Callable[[jax.Array], Any], images: np.ndarray | jax.Array, batch_size: int) -> Any:
    """fn over images [N, ...] in batches of `batch_size` -> its outputs concatenated as numpy arrays.

    The last batch is padded to full size (one compiled shape) and the padding dropped; each batch's
    output is fetched before the next is dispatched, so only one batch is in flight.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = images.shape[0]
    size = min(batch_size, n)
    outputs = []
    for start in range(0, n, size):
        chunk = images[start:start + size]
        valid = chunk.shape[0]
        if valid < size:
            chunk = np.concatenate([np.asarray(chunk), np.zeros((size - valid, *chunk.shape[1:]), chunk.dtype)])
        outputs.append(jax.tree.map(lambda o: np.asarray(o)[:valid], fn(chunk)))
    return jax.tree.map(lambda *parts: np.concatenate(parts), *outputs)


def extract(network: FeatureNetwork, images: np.ndarray | jax.Array, batch_size: int = 500
            ) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, feature_dim], logits [N, num_classes]) of images [N, H, W, C] in [−1, 1]."""
    if images.ndim != 4 or images.shape[-1] != network.channels:
        raise ValueError(f"{network.name} takes images [N, H, W, {network.channels}], got shape {images.shape}")
    return batched_apply(network.apply_fn, images, batch_size)


def lenet_features(workdir: str) -> FeatureNetwork:
    """Our classifier saved by `python -m gan_jax.metrics.classifier ... --workdir workdir`.

    Inputs must be 28×28×1 (crop a 32×32 padded generator output back with images[:, 2:30, 2:30]).
    """
    from gan_jax.metrics import classifier
    model, params, meta = classifier.load_classifier(workdir)
    apply_fn = classifier.make_apply_fn(model, params)

    def checked(images: jax.Array) -> tuple[jax.Array, jax.Array]:
        if images.shape[1:] != classifier.IMAGE_SHAPE:
            raise ValueError(f"the LeNet classifier takes images [B, 28, 28, 1], got shape {images.shape}")
        return apply_fn(images)

    return FeatureNetwork(name=f"lenet_{meta['dataset']}", apply_fn=checked, input_size=28, channels=1,
                          feature_dim=meta["feature_dim"], num_classes=meta["num_classes"])

"""A LeNet-style classifier for MNIST / Fashion-MNIST / single Stacked-MNIST channels: the feature network
of our classifier FID / KID / IS and the digit reader of the Stacked-MNIST mode count.

Train:  python launch.py --config experiments/classifier_mnist.py --workdir DIR   (gan_jax/tasks/classifier.py)
The workdir of a finished run is the saved classifier: its latest checkpoint, config.json (architecture,
dataset) and eval.json (test accuracy, dataset, feature layer); `load_classifier(DIR)` restores it.

Architecture (input [28, 28, 1] in [−1, 1]): conv 32 5×5 stride 2 – ReLU – conv 64 5×5 stride 2 – ReLU
– dropout 0.25 – dense 128 – ReLU (**the feature layer**, 128-d) – dropout 0.5 – dense 10 (logits).
It follows PacGAN's Keras `mnist_cnn` (conv 32, conv 64, dense 128, the same dropouts) but downsamples
with strided convolutions instead of max-pools: on XLA:CPU the max-pool's gradient made a batch-128
step 8× slower (measured with 3×3 kernels: 0.19 s with pools vs 0.024 s strided), and the whole
training has to fit in ~3 CPU minutes. `model.dtype` is the compute dtype (bfloat16 option), also of the
feature extraction; parameters stay float32, features and logits are float32.
"""
from __future__ import annotations

import functools
import json
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

from gan_jax import runs
from gan_jax.metrics.batching import batched_apply
from gan_jax.models import DTYPES

DATASETS = ("mnist", "fashion_mnist")
IMAGE_SHAPE = (28, 28, 1)
FEATURE_LAYER = "dense hidden layer after ReLU (the input of the last dropout and the logits layer)"
METADATA_FILE = runs.EVAL_FILE  # a finished run's evaluation: its presence marks a trained classifier


class LeNet(nn.Module):
    """x [B, 28, 28, 1] in [−1, 1] -> (features [B, hidden] after ReLU, logits [B, num_classes]), float32."""
    channels: tuple[int, ...] = (32, 64)
    hidden: int = 128
    num_classes: int = 10
    dropout: tuple[float, float] = (0.25, 0.5)
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        x = x.astype(self.dtype)
        for c in self.channels:
            x = nn.relu(nn.Conv(c, (5, 5), strides=(2, 2), padding="SAME", dtype=self.dtype)(x))
        x = nn.Dropout(self.dropout[0], deterministic=not train)(x)
        features = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(x.reshape(x.shape[0], -1)))
        h = nn.Dropout(self.dropout[1], deterministic=not train)(features)
        logits = nn.Dense(self.num_classes, dtype=self.dtype)(h)
        return features.astype(jnp.float32), logits.astype(jnp.float32)


def model_from_config(config: ml_collections.ConfigDict | dict) -> LeNet:
    """The LeNet of a classifier config's `model` fields {channels, hidden, dropout, dtype}."""
    return LeNet(channels=tuple(config["channels"]), hidden=int(config["hidden"]),
                 dropout=tuple(config["dropout"]), dtype=DTYPES[config["dtype"]])


def make_apply_fn(model: LeNet, params: Any) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """Jitted images [B, 28, 28, 1] in [−1, 1] -> (features [B, hidden], logits [B, 10]), eval mode."""
    forward = jax.jit(lambda p, images: model.apply({"params": p}, images, train=False))
    return functools.partial(forward, params)


def accuracy(apply_fn: Callable, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Fraction of images whose argmax logit is the label."""
    logits = batched_apply(lambda x: apply_fn(x)[1], images, batch_size)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def load_classifier(workdir: str) -> tuple[LeNet, Any, dict]:
    """(model, params, metadata) of the classifier trained in `workdir` by launch.py: its latest checkpoint, and
    its eval.json (test accuracy, dataset, feature layer) plus feature_dim, num_classes and the config.
    FileNotFoundError names the command to train one."""
    workdir = os.path.abspath(workdir)
    meta_path = os.path.join(workdir, METADATA_FILE)
    if not os.path.exists(meta_path):
        raise FileNotFoundError(
            f"no trained classifier in {workdir} ({METADATA_FILE} missing); train one with: python launch.py "
            f"--config experiments/classifier_mnist.py --workdir {workdir}")
    with open(meta_path) as f:
        metadata = json.load(f)
    example = {"image": np.zeros((1, *IMAGE_SHAPE), np.float32), "label": np.zeros((1,), np.int32)}
    config, state = runs.restore(workdir, "classifier", example)
    step = int(jax.device_get(state.step))
    if step != metadata["step"]:
        raise ValueError(f"{workdir}: the latest checkpoint is at step {step}, {METADATA_FILE} at step "
                         f"{metadata['step']}; relaunch the run to finish it before using the classifier")
    model = model_from_config(config.model)
    return model, jax.device_get(state.net.params), {
        **metadata, "feature_dim": model.hidden, "num_classes": model.num_classes, "config": config.to_dict()}

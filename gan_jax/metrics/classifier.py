"""A LeNet-style classifier for MNIST / Fashion-MNIST / single Stacked-MNIST channels: the feature network
of our classifier FID / KID / IS and the digit reader of the Stacked-MNIST mode count.

Train and save:  python -m gan_jax.metrics.classifier --config experiments/classifier_mnist.py --workdir DIR
The workdir receives `params/` (orbax) and `classifier.json` (dataset, test accuracy, feature layer,
architecture, config, wall time); `load_classifier(DIR)` restores both.

Architecture (input [28, 28, 1] in [−1, 1]): conv 32 5×5 stride 2 – ReLU – conv 64 5×5 stride 2 – ReLU
– dropout 0.25 – dense 128 – ReLU (**the feature layer**, 128-d) – dropout 0.5 – dense 10 (logits).
It follows PacGAN's Keras `mnist_cnn` (conv 32, conv 64, dense 128, the same dropouts) but downsamples
with strided convolutions instead of max-pools: on XLA:CPU the max-pool's gradient made a batch-128
step 8× slower (measured with 3×3 kernels: 0.19 s with pools vs 0.024 s strided), and the whole
training has to fit in ~3 CPU minutes.
"""
from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import linen as nn

from gan_jax.metrics.features import batched_apply

DATASETS = ("mnist", "fashion_mnist")
IMAGE_SHAPE = (28, 28, 1)
FEATURE_LAYER = "dense hidden layer after ReLU (the input of the last dropout and the logits layer)"
METADATA_FILE = "classifier.json"
PARAMS_DIR = "params"


def default_config() -> ml_collections.ConfigDict:
    """Every field of a classifier experiment (experiments/classifier_*.py override `dataset`)."""
    c = ml_collections.ConfigDict()
    c.dataset = "mnist"
    c.data_dir = ""          # TFDS data dir ("" = TFDS's default)
    c.manual_dir = ""        # idx files ("" = the data module's search, ../shared/data/<name> included)
    c.max_train_examples = 0  # 0 = the whole training split; tests use a few hundred
    c.seed = 0
    c.epochs = 8
    c.batch_size = 128
    c.learning_rate = 2e-3   # Adam, cosine-decayed to 0 over the run
    c.eval_batch_size = 1000
    c.channels = (32, 64)
    c.hidden = 128
    c.dropout = (0.25, 0.5)
    return c


class LeNet(nn.Module):
    """x [B, 28, 28, 1] in [−1, 1] -> (features [B, hidden] after ReLU, logits [B, num_classes])."""
    channels: tuple[int, ...] = (32, 64)
    hidden: int = 128
    num_classes: int = 10
    dropout: tuple[float, float] = (0.25, 0.5)

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        for c in self.channels:
            x = nn.relu(nn.Conv(c, (5, 5), strides=(2, 2), padding="SAME")(x))
        x = nn.Dropout(self.dropout[0], deterministic=not train)(x)
        features = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
        h = nn.Dropout(self.dropout[1], deterministic=not train)(features)
        return features, nn.Dense(self.num_classes)(h)


def model_from_config(config: ml_collections.ConfigDict | dict) -> LeNet:
    return LeNet(channels=tuple(config["channels"]), hidden=int(config["hidden"]),
                 dropout=tuple(config["dropout"]))


def init_params(model: LeNet, key: jax.Array) -> Any:
    return model.init(key, jnp.zeros((1, *IMAGE_SHAPE)))["params"]


def load_split(config: ml_collections.ConfigDict, split: str, limit: int = 0) -> dict[str, np.ndarray]:
    """{"image": [N, 28, 28, 1] in [−1, 1], "label": [N]} of a split (its first `limit` examples if > 0)."""
    from gan_jax.data import make_image_source
    if config.dataset not in DATASETS:
        raise ValueError(f"unknown classifier dataset {config.dataset!r}; allowed: {DATASETS}")
    source = make_image_source(config.dataset, config.data_dir, split, manual_dir=config.manual_dir or None)
    n = len(source) if limit <= 0 else min(limit, len(source))
    return source.__getitems__(np.arange(n))


def make_train_step(model: LeNet, tx: optax.GradientTransformation) -> Callable:
    """(params, opt_state, batch, key) -> (params, opt_state, loss): one Adam step on the mean
    softmax cross-entropy, with dropout drawn from `key`."""
    def loss_fn(params, batch, key):
        _, logits = model.apply({"params": params}, batch["image"], train=True, rngs={"dropout": key})
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]))

    @jax.jit
    def step(params, opt_state, batch, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return step


def make_apply_fn(model: LeNet, params: Any) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
    """Jitted images [B, 28, 28, 1] in [−1, 1] -> (features [B, hidden], logits [B, 10]), eval mode."""
    forward = jax.jit(lambda p, images: model.apply({"params": p}, images, train=False))
    return functools.partial(forward, params)


def accuracy(apply_fn: Callable, images: np.ndarray, labels: np.ndarray, batch_size: int = 1000) -> float:
    """Fraction of images whose argmax logit is the label."""
    logits = batched_apply(lambda x: apply_fn(x)[1], images, batch_size)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def train(config: ml_collections.ConfigDict, log: Callable[[str], None] = print) -> tuple[LeNet, Any, dict]:
    """Train on the training split; returns (model, params, metadata with the test accuracy)."""
    from gan_jax.data import InMemorySource, Pipeline
    start = time.time()
    data = load_split(config, "train", config.max_train_examples)
    test = load_split(config, "test")
    pipeline = Pipeline(InMemorySource(data), batch_size=config.batch_size, seed=config.seed, prefetch=0)
    steps = config.epochs * pipeline.steps_per_epoch
    model = model_from_config(config)
    init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
    params = init_params(model, init_key)
    tx = optax.adam(optax.cosine_decay_schedule(config.learning_rate, steps))
    opt_state = tx.init(params)
    step_fn = make_train_step(model, tx)
    for step in range(steps):
        params, opt_state, loss = step_fn(params, opt_state, pipeline.batch(step),
                                          jax.random.fold_in(dropout_key, step))
        if (step + 1) % pipeline.steps_per_epoch == 0:
            log(f"epoch {(step + 1) // pipeline.steps_per_epoch}/{config.epochs}: loss {float(loss):.4f} "
                f"({time.time() - start:.0f} s)")
    train_time = time.time() - start
    test_accuracy = accuracy(make_apply_fn(model, params), test["image"], test["label"], config.eval_batch_size)
    metadata = {
        "dataset": config.dataset, "test_accuracy": test_accuracy, "num_test": int(len(test["label"])),
        "num_train": int(len(data["label"])), "steps": steps, "train_seconds": round(train_time, 1),
        "feature_layer": FEATURE_LAYER, "feature_dim": model.hidden, "num_classes": model.num_classes,
        "input_shape": list(IMAGE_SHAPE), "input_range": [-1.0, 1.0], "jax_version": jax.__version__,
        "config": config.to_dict(),
    }
    log(f"{config.dataset}: test accuracy {test_accuracy:.4f} on {metadata['num_test']} images "
        f"after {steps} steps ({train_time:.0f} s)")
    return model, params, metadata


def save_classifier(workdir: str, params: Any, metadata: dict) -> None:
    """params -> workdir/params (orbax; waits for the async save), metadata -> workdir/classifier.json."""
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(workdir, PARAMS_DIR), params, force=True)
    checkpointer.wait_until_finished()
    checkpointer.close()
    with open(os.path.join(workdir, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=1, default=list)


def load_classifier(workdir: str) -> tuple[LeNet, Any, dict]:
    """(model, params, metadata) saved by `save_classifier`; FileNotFoundError names the command to train."""
    workdir = os.path.abspath(workdir)
    meta_path = os.path.join(workdir, METADATA_FILE)
    if not os.path.exists(meta_path):
        raise FileNotFoundError(
            f"no classifier in {workdir} ({METADATA_FILE} missing); train one with: python -m "
            f"gan_jax.metrics.classifier --config experiments/classifier_mnist.py --workdir {workdir}")
    with open(meta_path) as f:
        metadata = json.load(f)
    model = model_from_config(metadata["config"])
    abstract = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
    checkpointer = ocp.StandardCheckpointer()
    params = checkpointer.restore(os.path.join(workdir, PARAMS_DIR), abstract)
    checkpointer.close()
    return model, params, metadata


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train, evaluate on the test split, save to workdir; returns the metadata."""
    _, params, metadata = train(config)
    save_classifier(workdir, params, metadata)
    return metadata


if __name__ == "__main__":
    from gan_jax import cli
    cli.run(train_and_evaluate, "Classifier config file (experiments/classifier_*.py).",
            "Directory for the params checkpoint and classifier.json.")

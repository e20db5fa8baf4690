"""The classifier task: the LeNet of gan_jax/metrics/classifier.py trained on MNIST or Fashion-MNIST, the
feature network of our classifier FID / KID / IS and the digit reader of the Stacked-MNIST mode count.

Each step is an Adam step on the batch's mean softmax cross-entropy, the learning rate cosine-decayed from
`optim.learning_rate` to 0 over `steps` (a relaunch with a larger `steps` continues on the longer
schedule). Dropout masks are drawn per example (the net runs under `jax.vmap`, one key from
`base.example_keys` each), so a run does not depend on the device count. Evaluation: test accuracy.
The workdir of a finished run is the saved classifier (`metrics.classifier.load_classifier`).

    python launch.py --config experiments/classifier_mnist.py --workdir DIR
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct
from jax import lax

from gan_jax import config as config_lib, optim
from gan_jax.data import InMemorySource, Pipeline, paired
from gan_jax.metrics import classifier
from gan_jax.parallel import AXIS, example_index
from gan_jax.state import TrainState
from gan_jax.tasks import base


def schema() -> ml_collections.ConfigDict:
    """Every field of a classifier experiment, with defaults (experiments/classifier_*.py set the dataset
    and `steps` from a number of epochs)."""
    c = config_lib.common_config("classifier")
    c.batch_size = 128
    # num_train: the first that many training images (0: all).
    c.data = ml_collections.ConfigDict(dict(name="mnist", data_dir="", manual_dir="", num_train=0))
    # dtype: the LeNet's compute dtype, "float32" or "bfloat16" (parameters, features and logits stay float32).
    c.model = ml_collections.ConfigDict(dict(channels=(32, 64), hidden=128, dropout=(0.25, 0.5), dtype="float32"))
    c.optim = ml_collections.ConfigDict(dict(learning_rate=2e-3))  # Adam's, cosine-decayed to 0 over `steps`
    c.eval = ml_collections.ConfigDict(dict(batch_size=1000))
    return c


def validate(config: ml_collections.ConfigDict, num_devices: int = 1) -> None:
    """Raise ValueError naming a bad value and the allowed ones."""
    if config.data.name not in classifier.DATASETS:
        raise ValueError(f"unknown classifier dataset config.data.name={config.data.name!r}; "
                         f"allowed: {list(classifier.DATASETS)}")
    base.check_ints(config, ("data.num_train",), minimum=0)
    base.check_ints(config, ("model.hidden", "eval.batch_size"))
    channels, dropout = config.model.channels, config.model.dropout
    if not channels or not all(isinstance(ch, int) and ch >= 1 for ch in channels):
        raise ValueError(f"config.model.channels must be one or more integers >= 1, got {channels!r}")
    if len(dropout) != 2 or not all(0.0 <= r < 1.0 for r in dropout):
        raise ValueError(f"config.model.dropout must be two rates in [0, 1), got {dropout!r}")
    base.check_dtype(config)
    if not config.optim.learning_rate > 0:
        raise ValueError(f"config.optim.learning_rate must be > 0, got {config.optim.learning_rate!r}")
    base.check_batch_split(config, num_devices)


@struct.dataclass
class ClassifierState:
    step: jax.Array
    key: jax.Array
    net: TrainState


class Task:
    """The classifier of `config` on its dataset (see the module docstring)."""

    batch_axis = 0

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.model = classifier.model_from_config(config.model)
        self.tx = optim.make_optimizer("adam", config.optim.learning_rate, schedule="cosine",
                                       total_updates=config.steps)

    def _split(self, split: str, limit: int = 0) -> dict[str, np.ndarray]:
        d = self.config.data
        return paired.load_domain(d.name, split, data_dir=d.data_dir, manual_dir=d.manual_dir, limit=limit)

    @functools.cached_property
    def _train(self) -> dict[str, np.ndarray]:
        return self._split("train", self.config.data.num_train)

    @functools.cached_property
    def _test(self) -> dict[str, np.ndarray]:
        return self._split("test")

    def batches(self, process_index: int, process_count: int) -> Callable[[int], dict[str, np.ndarray]]:
        return Pipeline(InMemorySource(self._train), batch_size=self.config.batch_size, seed=self.config.seed,
                        process_index=process_index, process_count=process_count, prefetch=0).batch

    def init(self, key: jax.Array, example_batch: dict[str, Any]) -> ClassifierState:
        init_key, run = jax.random.split(key)
        params = self.model.init(init_key, jnp.zeros((1, *np.shape(example_batch["image"])[1:])))["params"]
        return ClassifierState(step=jnp.zeros((), jnp.int32), key=run,
                               net=TrainState.create({"params": params}, self.tx))

    def train_step(self, state: ClassifierState, batch: dict[str, jax.Array]
                   ) -> tuple[ClassifierState, dict[str, jax.Array]]:
        """One Adam step on {"image", "label"}; metrics: the batch's cross-entropy and accuracy (dropout on)."""
        images, labels = batch["image"], batch["label"]
        keys = base.example_keys(jax.random.fold_in(state.key, state.step), example_index(images.shape[0]))

        def loss_fn(params: Any) -> tuple[jax.Array, jax.Array]:
            def one(x: jax.Array, key: jax.Array) -> jax.Array:
                return self.model.apply({"params": params}, x[None], train=True, rngs={"dropout": key})[1][0]
            logits = jax.vmap(one)(images, keys)
            return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.net.params)
        net = state.net.apply_gradients(self.tx, lax.pmean(grads, AXIS))
        metrics = {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}
        return state.replace(step=state.step + 1, net=net), lax.pmean(metrics, AXIS)

    def evaluate(self, state: ClassifierState) -> dict[str, Any]:
        """Accuracy on the whole test split (dropout off), with what a FID user needs to know of the network."""
        apply_fn = classifier.make_apply_fn(self.model, jax.device_get(state.net.params))
        test = self._test
        return {"test_accuracy": classifier.accuracy(apply_fn, test["image"], test["label"],
                                                     self.config.eval.batch_size),
                "num_test": len(test["label"]), "num_train": len(self._train["label"]),
                "dataset": self.config.data.name, "feature_layer": classifier.FEATURE_LAYER}

    def visuals(self, state: ClassifierState) -> None:
        return None

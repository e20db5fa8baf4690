"""The Task contract: what a model kind gives the one training loop (`gan_jax.loop`).

A task module (one per model kind: GAN, pix2pix, CycleGAN, VAE, ADDA, classifier) provides
  * `schema() -> ConfigDict`: every field of its configs with defaults (`config.common_config()` first);
  * `validate(config, num_devices)`: raise ValueError naming a bad value and the allowed ones;
  * `Task(config)`: an object with the methods of `Task` below.
The loop owns everything else: resume, signals, sharding, logging, evaluation cadence and samples.
Helpers for task modules: `example_keys` (per-example randomness independent of the device count),
`check_ints` and `check_batch_split` (validation messages).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import jax
import ml_collections
import numpy as np

Batch = dict[str, Any]
Metrics = dict[str, jax.Array]


class Task(Protocol):
    """One model kind, built from a validated config."""

    config: ml_collections.ConfigDict
    # The axis of every batch array that holds examples (split over the devices): 0 for [B, ...];
    # the GAN's [n_critic, B, ...] batches use 1.
    batch_axis: int

    def batches(self, process_index: int, process_count: int) -> Callable[[int], Batch]:
        """`step -> this process's slice of that step's global batch` (numpy), a pure function of the step,
        so a resumed run reads exactly the batches an uninterrupted one would."""

    def init(self, key: jax.Array, example_batch: Batch) -> Any:
        """The initial state (a pytree of `gan_jax.state.TrainState`s, with `step` and `key`); traceable."""

    def train_step(self, state: Any, batch: Batch) -> tuple[Any, Metrics]:
        """One pure training step on this device's part of the batch, written with the named axis
        `gan_jax.parallel.AXIS` (gradients and metrics averaged over it); returns metrics identical on every device."""

    def evaluate(self, state: Any) -> dict[str, Any]:
        """Evaluation of a (host) state: numbers are logged as eval/<name>; lists and strings go to eval.json."""

    def visuals(self, state: Any) -> np.ndarray | None:
        """An HWC uint8 image of the state (sample grid, translations, scatter plot), or None."""


def example_keys(key: jax.Array, index: jax.Array) -> jax.Array:
    """One key per example, `key` folded with the example's global index [B] (in a step:
    `parallel.example_index`), so a step draws the same noise (dropout masks, binarisation,
    reparameterisation) on any number of devices."""
    return jax.vmap(jax.random.fold_in, (None, 0))(key, index)


def check_ints(config: ml_collections.ConfigDict, fields: tuple[str, ...], minimum: int = 1) -> None:
    """Raise ValueError unless each dotted field of `config` is an integer >= `minimum`."""
    for field in fields:
        v = config
        for part in field.split("."):
            v = v[part]
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"config.{field} must be an integer >= {minimum}, got {v!r}")


def check_dtype(config: ml_collections.ConfigDict) -> None:
    """Refuse a `config.model.dtype` that is not a compute dtype of `gan_jax.models.DTYPES`, naming the allowed ones."""
    from gan_jax import models
    if config.model.dtype not in models.DTYPES:
        raise ValueError(f"unknown config.model.dtype {config.model.dtype!r}; allowed: {sorted(models.DTYPES)}")


def check_batch_split(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raise ValueError unless the global batch splits evenly over `num_devices`."""
    if config.batch_size % num_devices:
        raise ValueError(f"config.batch_size={config.batch_size} is not divisible by the {num_devices} devices")

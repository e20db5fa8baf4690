"""One state type for every trained network: parameters, batch statistics, optimiser state and an optional EMA.

A task's state is a `flax.struct` pytree of `TrainState`s plus its step and PRNG key (and, for CycleGAN,
its image history pools). Optimisers are not stored: they are static parts of the task, so a state is
plain arrays that orbax saves and restores bit for bit.
"""
from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct


@struct.dataclass
class TrainState:
    """One network: `params`, `batch_stats` ({} without batch norm / spectral norm state), `opt_state`, and
    `ema`, an exponential moving average of `params` ({} when the network keeps none)."""

    params: Any
    opt_state: Any
    batch_stats: Any = struct.field(default_factory=dict)
    ema: Any = struct.field(default_factory=dict)

    @classmethod
    def create(cls, variables: dict[str, Any], tx: optax.GradientTransformation, ema: bool = False) -> TrainState:
        """A fresh state from flax `variables` ({"params", optionally "batch_stats"}); `ema`: keep an EMA,
        starting at the parameters."""
        params = variables["params"]
        return cls(params=params, opt_state=tx.init(params), batch_stats=variables.get("batch_stats", {}),
                   ema=jax.tree.map(jnp.copy, params) if ema else {})

    @property
    def variables(self) -> dict[str, Any]:
        """The flax variables to `apply` the network with."""
        return {"params": self.params, "batch_stats": self.batch_stats} if self.batch_stats else {"params": self.params}

    def apply_gradients(self, tx: optax.GradientTransformation, grads: Any, batch_stats: Any = None) -> TrainState:
        """One optimiser update (and the batch statistics of the forward pass, when given)."""
        updates, opt_state = tx.update(grads, self.opt_state, self.params)
        return self.replace(params=optax.apply_updates(self.params, updates), opt_state=opt_state,
                            batch_stats=self.batch_stats if batch_stats is None else batch_stats)

    def update_ema(self, decay: float) -> TrainState:
        """ema ← decay · ema + (1 − decay) · params (a no-op without an EMA)."""
        if not self.ema:
            return self
        return self.replace(ema=jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, self.ema, self.params))


def all_finite(tree: Any) -> jax.Array:
    """True iff every floating-point leaf of `tree` is free of NaN and Inf."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return functools.reduce(jnp.logical_and, leaves, jnp.array(True))

"""Fully connected generators and critics: the 2-D mixture networks of PacGAN (Lin et al. 2018).

PacGAN's 2-D nets: G = z (2-D N(0, I)) → 4 × [Dense 400 (no bias), BatchNorm, ReLU] → Dense 2;
D = 3 × LinearMaxout(200 units, 5 pieces) → Dense 1; weights N(0, 0.02), biases 0.

PacGAN's code (Blocks) runs G once per packed slot, so each slot's 100 samples are normalised by their own
statistics, and moves its running averages once per step by 0.05 of the slots' mean statistics, with ε = 1e-4:
`bn_per_slot = True`, `bn_momentum = 0.95`, `bn_epsilon = 1e-4` here. The defaults (one batch, 0.9, 1e-5) are
flax's and torch's. (Blocks averages the running standard deviation, not the variance: not reproduced.)
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

DCGAN_INIT = nn.initializers.normal(0.02)


class GroupedBatchNorm(nn.Module):
    """Batch norm of [B, F] features whose batch statistics are taken per group: rows i ≡ j (mod `groups`)
    form group j (the packed slot j of `models.pack`). Running averages move by (1 − momentum) × the mean of
    the groups' statistics. With groups = 1 it is flax's `nn.BatchNorm` (same variables and arithmetic)."""

    groups: int = 1
    momentum: float = 0.9
    epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        features = x.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
        if train:
            if x.shape[0] % self.groups:
                raise ValueError(f"batch norm over {self.groups} groups (packed slots) needs a batch divisible by "
                                 f"{self.groups}; got a batch of {x.shape[0]}")
            g = x.astype(jnp.float32).reshape(x.shape[0] // self.groups, self.groups, features)
            mean, mean2 = g.mean(0), jnp.square(g).mean(0)
            if self.axis_name is not None and not self.is_initializing():
                mean, mean2 = lax.pmean(jnp.stack([mean, mean2]), self.axis_name)
            var = jnp.maximum(0.0, mean2 - jnp.square(mean))
            if not self.is_initializing():
                ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean.mean(0)
                ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var.mean(0)
        else:
            g, mean, var = x.reshape(x.shape[0], 1, features), ra_mean.value[None], ra_var.value[None]
        y = (g - mean) * (lax.rsqrt(var + self.epsilon) * scale) + bias
        return y.reshape(x.shape).astype(self.dtype)


class MLPGenerator(nn.Module):
    """z [B, latent] → x [B, out_dim]; hidden Dense (+ batch norm) + ReLU layers, linear output.

    Batch norm: `GroupedBatchNorm`, over each of the `pack` packed slots alone when `bn_per_slot` (`pack` is
    set from config.model.pack by the model builder), with `bn_momentum` and `bn_epsilon`."""

    hidden: Sequence[int] = (400, 400, 400, 400)
    out_dim: int = 2
    batch_norm: bool = True
    bn_per_slot: bool = False
    pack: int = 1
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    bn_axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jnp.ndarray, train: bool) -> jnp.ndarray:
        x = z.astype(self.dtype)
        for i, width in enumerate(self.hidden):
            x = nn.Dense(width, use_bias=not self.batch_norm, kernel_init=DCGAN_INIT, dtype=self.dtype)(x)
            if self.batch_norm:
                x = GroupedBatchNorm(self.pack if self.bn_per_slot else 1, self.bn_momentum, self.bn_epsilon, self.bn_axis_name,
                                     self.dtype, name=f"BatchNorm_{i}")(x, train)
            x = nn.relu(x)
        return nn.Dense(self.out_dim, kernel_init=DCGAN_INIT, dtype=self.dtype)(x).astype(jnp.float32)


class Maxout(nn.Module):
    """Maxout layer (Goodfellow et al. 2013): the max over `pieces` affine maps, per unit."""

    features: int
    pieces: int
    kernel_init: Any = DCGAN_INIT
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        y = nn.Dense(self.features * self.pieces, kernel_init=self.kernel_init, dtype=self.dtype)(x)
        return max_over_pieces(y, self.pieces)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def max_over_pieces(y: jnp.ndarray, pieces: int) -> jnp.ndarray:
    """[..., U·pieces] → [..., U]: unit u is the max of columns u·pieces … u·pieces + pieces − 1.

    The gradient goes to the first maximal piece of each unit, as argmax picks it: jnp.max's gradient
    wherever the max is unique, a subgradient at ties (where jnp.max splits it evenly). jnp.max's tie count
    is a reduction over the pieces axis that XLA:CPU fuses badly: the PacGAN critic's forward + backward
    on 200 rows took 10.7 ms with it and 6.7 ms with this rule (2-core AMD EPYC).
    """
    return jnp.max(y.reshape(*y.shape[:-1], -1, pieces), axis=-1)


def _max_over_pieces_fwd(y: jnp.ndarray, pieces: int):
    by_piece = y.reshape(*y.shape[:-1], -1, pieces)
    top = jnp.max(by_piece, axis=-1)
    hit = by_piece == top[..., None]
    taken, first = jnp.zeros(top.shape, bool), []
    for p in range(pieces):
        first.append(hit[..., p] & ~taken)
        taken = taken | hit[..., p]
    return top, jnp.stack(first, axis=-1)


def _max_over_pieces_bwd(pieces: int, first: jnp.ndarray, g: jnp.ndarray):
    del pieces
    grad = jnp.where(first, g[..., None], jnp.zeros((), g.dtype))
    return (grad.reshape(*grad.shape[:-2], -1),)


max_over_pieces.defvjp(_max_over_pieces_fwd, _max_over_pieces_bwd)


class MLPCritic(nn.Module):
    """x [B, ...] (flattened) → scores [B]: maxout (pieces > 1) or LeakyReLU(0.2) hidden layers.

    With ``return_features=True`` returns (scores, features): the last hidden layer [B, hidden[-1]]."""

    hidden: Sequence[int] = (200, 200, 200)
    pieces: int = 5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool,
                 return_features: bool = False) -> jnp.ndarray | tuple[jnp.ndarray, jnp.ndarray]:
        del train  # no batch statistics or dropout
        h = x.reshape(x.shape[0], -1).astype(self.dtype)
        for width in self.hidden:
            if self.pieces > 1:
                h = Maxout(width, self.pieces, dtype=self.dtype)(h)
            else:
                h = nn.leaky_relu(nn.Dense(width, kernel_init=DCGAN_INIT, dtype=self.dtype)(h), 0.2)
        scores = nn.Dense(1, kernel_init=DCGAN_INIT, dtype=self.dtype)(h)[:, 0].astype(jnp.float32)
        return (scores, h) if return_features else scores

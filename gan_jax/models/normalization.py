"""Salimans et al. 2016 ("Improved Techniques for Training GANs") discriminator layers:
minibatch discrimination (§3.2) and virtual batch normalization (§3.4).

Both are standalone modules, to be placed inside any critic (e.g. the DCGAN discriminator).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util
from jax import lax

REFERENCE = "vbn_reference"  # name of the reference-batch variable of `PrependReference`


class MinibatchDiscrimination(nn.Module):
    r"""Minibatch discrimination (Salimans et al. 2016, §3.2).

    Features f [B, A] (inputs [B, ...] are flattened) are projected by a learned tensor T:
    M_i = f_i T ∈ R^{num_kernels × kernel_dim}; for kernel b,
    c_b(x_i, x_j) = exp(−‖M_{i,b} − M_{j,b}‖_1) and o(x_i)_b = Σ_{j ≠ i} c_b(x_i, x_j).
    Returns concat(f, o) [B, A + num_kernels].

    j = i is excluded, as in the authors' code (improved-gan `MinibatchLayer`, which masks the
    diagonal); including it would add the constant 1. The authors' code also adds a learned bias
    to o; it is omitted because the layer that follows o has its own bias. T ~ N(0, 0.05²) as there.

    o sums over the batch. With `axis_name` set (data-parallel step), M is all-gathered over that
    axis so o sums over the global batch, and the result equals the single-device one. Under
    `shard_map` the transpose of the all-gather sums the cotangents of every device, so gradients
    of a loss replicated on all devices, averaged with `lax.pmean`, equal the single-device ones.
    The pairwise distances are computed in float32 whatever `dtype`.
    """

    num_kernels: int
    kernel_dim: int = 5
    axis_name: str | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.num_kernels < 1 or self.kernel_dim < 1:
            raise ValueError(f"num_kernels and kernel_dim must be >= 1, got {self.num_kernels}, {self.kernel_dim}")
        f = x.reshape(x.shape[0], -1).astype(self.dtype)
        m = nn.Dense(self.num_kernels * self.kernel_dim, use_bias=False, kernel_init=nn.initializers.normal(0.05),
                     dtype=self.dtype)(f)
        m = m.reshape(f.shape[0], self.num_kernels, self.kernel_dim).astype(jnp.float32)
        if self.axis_name is None:
            everyone, first = m, 0
        else:
            everyone = lax.all_gather(m, self.axis_name, tiled=True)
            first = lax.axis_index(self.axis_name) * m.shape[0]
        l1 = jnp.sum(jnp.abs(m[:, None] - everyone[None]), axis=-1)  # [B, B_global, num_kernels]
        itself = (first + jnp.arange(m.shape[0]))[:, None] == jnp.arange(everyone.shape[0])[None]
        o = jnp.sum(jnp.where(itself[..., None], 0.0, jnp.exp(-l1)), axis=1)
        return jnp.concatenate([f, o.astype(f.dtype)], axis=-1)


def _moments(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    mean = jnp.mean(x, axis=axes)
    return mean, jnp.mean(jnp.square(x - jnp.expand_dims(mean, axes)), axis=axes)


class VirtualBatchNorm(nn.Module):
    r"""Virtual batch normalization (Salimans et al. 2016, §3.4).

    How the reference batch enters: the first `reference_size` rows of the input are the
    reference batch R (N = reference_size examples), the remaining rows the examples. Both go
    through the same network, so every VBN layer sees the reference batch's activations under the
    current parameters (the statistics are recomputed each step and differentiated through, as in
    the paper and tensorflow/gan's `VBN`), and rows stay independent in every other layer.
    Use `PrependReference` at the network input to hold and prepend a fixed R, and drop the first
    N rows of the network's output.

    Statistics are over all axes but the last (channels): batch and spatial axes for R, the
    example's own spatial axes for an example x. R is normalised with its own statistics
    (μ_R, σ²_R); x with the statistics of R ∪ {x}, weights N/(N+1) and 1/(N+1):
    μ = (N μ_R + μ_x)/(N+1),
    σ² = (N σ²_R + σ²_x)/(N+1) + N (μ_x − μ_R)²/(N+1)²   (= E[·²] − μ² of the union, computed stably),
    y = γ (x − μ)/√(σ² + ε) + β. So an example's output never depends on the rest of its batch.
    Statistics are computed in float32; the output is in `dtype`.
    """

    reference_size: int
    epsilon: float = 1e-5
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        n = self.reference_size
        if not 1 <= n <= x.shape[0]:
            raise ValueError(f"reference_size must be in [1, {x.shape[0]}] (rows of the input), got {n}")
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), jnp.float32)
        xf = x.astype(jnp.float32)
        ref, ex = xf[:n], xf[n:]
        ref_mean, ref_var = _moments(ref, tuple(range(x.ndim - 1)))
        spatial = tuple(range(1, x.ndim - 1))
        ex_mean, ex_var = _moments(ex, spatial)  # [B, C]; for vectors (no spatial axes) mean = x, var = 0
        w = 1.0 / (n + 1)
        mean = w * ex_mean + (1 - w) * ref_mean
        var = w * ex_var + (1 - w) * ref_var + w * (1 - w) * jnp.square(ex_mean - ref_mean)
        mean, var = (jnp.expand_dims(a, spatial) for a in (mean, var))
        y = jnp.concatenate([(ref - ref_mean) * lax.rsqrt(ref_var + self.epsilon),
                             (ex - mean) * lax.rsqrt(var + self.epsilon)], axis=0)
        return (y * scale + bias).astype(self.dtype)


class PrependReference(nn.Module):
    """Holds a fixed reference batch R [N, ...] and returns concat(R, x) along the batch axis.

    R lives in the `batch_stats` collection under the name `vbn_reference` (so the train step
    passes and checkpoints it with the batch-norm statistics; nothing ever updates it). It is zeros
    after `init`: fill it once with real data by `set_vbn_reference`.
    """

    size: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ref = self.variable("batch_stats", REFERENCE, jnp.zeros, (self.size, *x.shape[1:]), jnp.float32)
        return jnp.concatenate([ref.value.astype(x.dtype), x], axis=0)


def set_vbn_reference(batch_stats: Any, reference: jax.Array) -> Any:
    """A copy of `batch_stats` whose every `vbn_reference` variable (see `PrependReference`) is `reference`."""
    flat = traverse_util.flatten_dict(batch_stats)
    keys = [k for k in flat if k[-1] == REFERENCE]
    if not keys:
        raise ValueError(f"batch_stats holds no {REFERENCE!r} variable (no PrependReference module)")
    for k in keys:
        if flat[k].shape != reference.shape:
            raise ValueError(f"reference batch of shape {reference.shape} does not match {'/'.join(k)} "
                             f"of shape {flat[k].shape}")
        flat[k] = jnp.asarray(reference, jnp.float32)
    return traverse_util.unflatten_dict(flat)

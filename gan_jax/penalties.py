"""Gradient penalties on a critic: WGAN-GP and R1.

Both take ``critic_fn``, a function from a batch ``[B, ...]`` to scores ``[B]`` or ``[B, 1]``
(raw outputs: logits for a sigmoid discriminator, critic values for a Wasserstein critic), and
return the unweighted penalty as a scalar; multiply by the coefficient yourself (λ = 10 in
WGAN-GP; γ/2 in Mescheder et al.'s R1).

Per-example gradients are taken as the gradient of ``critic_fn(x).sum()`` with respect to the
batch ``x``. That is exact only when every example's score depends on that example alone.
Critics with batch-coupled layers (batch normalisation in training mode, minibatch
discrimination, minibatch standard deviation) break this, as Gulrajani et al. (2017, Sec. 4)
say for WGAN-GP: use a critic without them (layer norm, or none) or give ``critic_fn`` a
per-example mode. Stateful layers must not update their state inside ``critic_fn`` (apply
spectral-norm power iterations outside it, e.g. ``update_stats=False`` in Flax).

The penalties are differentiable in everything they close over (critic parameters) and in
``real`` / ``fake``. In a critic step only the critic parameters are usually differentiated;
pass ``fake`` through ``jax.lax.stop_gradient`` if generator parameters are in the same
``grad`` call and must not receive the penalty's gradient.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["gradient_penalty", "r1_penalty"]


def _float_dtype(*xs: Array):
    dtype = jnp.result_type(*xs)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"expected floating-point inputs, got dtype {dtype}")
    return dtype


def _accumulation_dtype(dtype):
    return jnp.promote_types(dtype, jnp.float32)


def _scores_sum(critic_fn: Callable[[Array], Array], batch: int, where: str):
    """``x -> critic_fn(x).sum()`` after checking that the critic returns [B] or [B, 1]."""

    def total(x):
        scores = jnp.asarray(critic_fn(x))
        if scores.ndim not in (1, 2) or scores.shape[0] != batch or (
                scores.ndim == 2 and scores.shape[1] != 1):
            raise ValueError(
                f"{where}: critic_fn must map a batch of {batch} examples to scores of shape "
                f"[{batch}] or [{batch}, 1], got {scores.shape}")
        return jnp.sum(scores.astype(_accumulation_dtype(scores.dtype)))

    return total


def _per_example_sq_norm(grads: Array) -> Array:
    """Squared L2 norm over all non-batch axes, accumulated in float32 at least."""
    g = grads.astype(_accumulation_dtype(grads.dtype))
    return jnp.sum(jnp.square(g.reshape(g.shape[0], -1)), axis=1)


def _safe_sqrt(sq: Array) -> Array:
    """sqrt with gradient 0 (not NaN) at 0: a critic whose input gradient vanishes."""
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def _interpolation_weights(key, batch: int) -> Array:
    """ε ~ U[0, 1), one per example, in float32.

    ``key``: one PRNG key (typed, shape (), or raw uint32, shape (2,)) giving
    ``uniform(key, (B,))``; or one key per example (typed, shape (B,), or raw, shape (B, 2))
    giving ``ε_i = uniform(key_i, ())``, which does not depend on the rest of the batch.
    """
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.dtype != jnp.uint32:
            raise ValueError(
                f"gradient_penalty: key must be a PRNG key (jax.random.key) or raw uint32 key "
                f"data (jax.random.PRNGKey), got dtype {key.dtype} and shape {key.shape}")
        key = jax.random.wrap_key_data(key)
    if key.ndim == 0:
        return jax.random.uniform(key, (batch,), jnp.float32)
    if key.ndim == 1 and key.shape[0] == batch:
        return jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32))(key)
    raise ValueError(
        f"gradient_penalty: key must be one PRNG key or one key per example (leading dimension "
        f"{batch}), got a key array of shape {key.shape}")


def gradient_penalty(critic_fn: Callable[[Array], Array], real: Array, fake: Array, key,
                     target_norm: float = 1.0) -> Array:
    r"""WGAN-GP penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs").

    .. math::

        \hat x_i = \epsilon_i x_i + (1 - \epsilon_i) \tilde x_i,\quad \epsilon_i \sim U[0, 1],
        \qquad \mathrm{GP} = \frac{1}{B}\sum_i \big(\lVert \nabla_x f(\hat x_i)\rVert_2
        - \mathrm{target\_norm}\big)^2

    with the gradient norm taken per example over all non-batch axes.

    Args:
      critic_fn: maps a batch ``[B, ...]`` to scores ``[B]`` or ``[B, 1]``; examples must be
        independent (see the module docstring).
      real, fake: batches of identical shape ``[B, ...]`` and floating dtype. The interpolates
        are formed and fed to ``critic_fn`` in the result dtype of ``real`` and ``fake`` (so a
        bf16 model sees bf16 inputs); the norm and penalty are accumulated in float32 at least.
      key: one PRNG key (``jax.random.key`` or raw ``jax.random.PRNGKey``), from which
        ``ε = uniform(key, (B,))``; or one key per example, a key array with leading dimension
        B (e.g. ``jax.vmap(jax.random.fold_in, (None, 0))(base, global_example_index)``), giving
        ``ε_i = uniform(key_i, ())``. Per-example keys make the penalty of each example
        independent of how a global batch is split over devices.
      target_norm: the gradient norm the penalty pulls towards (1 in WGAN-GP).

    Returns:
      The mean penalty, a scalar of float32 (or wider) dtype. Not multiplied by λ.
    """
    real = jnp.asarray(real)
    fake = jnp.asarray(fake)
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real and fake must have the same shape, got "
                         f"{real.shape} and {fake.shape}")
    if real.ndim < 1 or real.shape[0] == 0:
        raise ValueError(f"gradient_penalty: expected a non-empty batch [B, ...], got shape "
                         f"{real.shape}")
    dtype = _float_dtype(real, fake)
    batch = real.shape[0]
    eps = _interpolation_weights(key, batch).astype(dtype)
    eps = eps.reshape((batch,) + (1,) * (real.ndim - 1))
    x_hat = eps * real.astype(dtype) + (1 - eps) * fake.astype(dtype)
    grads = jax.grad(_scores_sum(critic_fn, batch, "gradient_penalty"))(x_hat)
    norms = _safe_sqrt(_per_example_sq_norm(grads))
    return jnp.mean(jnp.square(norms - target_norm))


def r1_penalty(critic_fn: Callable[[Array], Array], real: Array) -> Array:
    r"""R1 penalty (Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?").

    .. math:: R_1 = \frac{1}{B}\sum_i \lVert \nabla_x f(x_i) \rVert_2^2

    on real examples, gradient per example over all non-batch axes, of the raw critic output
    (the logit for a sigmoid discriminator). The paper's regulariser is ``γ/2 · R_1``; the
    factor is left to the caller.

    Args:
      critic_fn: maps a batch ``[B, ...]`` to scores ``[B]`` or ``[B, 1]``; examples must be
        independent (see the module docstring).
      real: a floating batch ``[B, ...]``, fed to ``critic_fn`` in its own dtype.

    Returns:
      The mean squared gradient norm, a scalar of float32 (or wider) dtype.
    """
    real = jnp.asarray(real)
    if real.ndim < 1 or real.shape[0] == 0:
        raise ValueError(f"r1_penalty: expected a non-empty batch [B, ...], got shape {real.shape}")
    _float_dtype(real)
    grads = jax.grad(_scores_sum(critic_fn, real.shape[0], "r1_penalty"))(real)
    return jnp.mean(_per_example_sq_norm(grads))

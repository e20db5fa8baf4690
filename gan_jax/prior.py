"""The latent prior p(z) of the generators and the VAE decoder, z ~ N(0, I) or U(−1, 1) per coordinate, optionally
truncated, and paths between two codes. These act on codes only; `gan_jax.latent` builds the latent-space tools on a
generator from them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

METHODS = ("linear", "slerp")
DISTRIBUTIONS = ("normal", "uniform")


def sample_latents(key: jax.Array, shape: tuple[int, ...], truncation: float | None = None,
                   distribution: str = "normal") -> jax.Array:
    """z of `shape` from the prior: N(0, I) ("normal") or U(−1, 1) per coordinate ("uniform", the z of DCGAN,
    Radford et al. 2016, and of carpedm20/DCGAN-tensorflow).

    With `truncation` t > 0, the prior conditioned on every coordinate lying in [−t, t]: the truncated normal,
    values outside resampled (the truncation trick of BigGAN, Brock et al. 2019, Sec. 3.1, trading variety for
    fidelity), or U(−min(t, 1), min(t, 1)).
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown latent distribution {distribution!r}; allowed: {list(DISTRIBUTIONS)}")
    if truncation is not None and not truncation > 0:
        raise ValueError(f"truncation must be None or > 0, got {truncation}")
    if distribution == "uniform":
        bound = 1.0 if truncation is None else min(float(truncation), 1.0)
        return jax.random.uniform(key, shape, minval=-bound, maxval=bound)
    if truncation is None:
        return jax.random.normal(key, shape)
    return jax.random.truncated_normal(key, -truncation, truncation, shape)


def interpolate(z0: jax.Array, z1: jax.Array, num: int, method: str = "slerp") -> jax.Array:
    """`num` codes [num, d] from z0 to z1 (both included).

    linear: (1 − t) z0 + t z1;  slerp: sin((1 − t) Ω)/sin Ω · z0 + sin(t Ω)/sin Ω · z1 with
    cos Ω = ⟨z0, z1⟩ / (‖z0‖ ‖z1‖) (linear where Ω ≈ 0). Spherical interpolation (White 2016, "Sampling
    Generative Networks") keeps the norm typical of Gaussian codes in high dimension, which a straight line
    passing near the origin does not: between codes of equal norm r, every slerp code has norm r.
    """
    if method not in METHODS:
        raise ValueError(f"unknown interpolation method {method!r}; allowed: {METHODS}")
    if num < 2:
        raise ValueError(f"num must be >= 2, got {num}")
    t = jnp.linspace(0.0, 1.0, num)[:, None]
    if method == "linear":
        return (1.0 - t) * z0 + t * z1
    cos = jnp.dot(z0, z1) / (jnp.linalg.norm(z0) * jnp.linalg.norm(z1))
    omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
    small = omega < 1e-6
    so = jnp.where(small, 1.0, jnp.sin(omega))
    w0 = jnp.where(small, 1.0 - t, jnp.sin((1.0 - t) * omega) / so)
    w1 = jnp.where(small, t, jnp.sin(t * omega) / so)
    return w0 * z0 + w1 * z1

"""The latent prior p(z) of the generators and the VAE decoder, z ~ N(0, I), optionally truncated, and paths
between two codes. These act on codes only; `gan_jax.latent` builds the latent-space tools on a generator from them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

METHODS = ("linear", "slerp")


def sample_latents(key: jax.Array, shape: tuple[int, ...], truncation: float | None = None) -> jax.Array:
    """z ~ N(0, I) of `shape`, or the truncated normal on [−t, t] for t > 0: the truncation trick of
    BigGAN (Brock et al. 2019, Sec. 3.1), values outside resampled, trading variety for fidelity."""
    if truncation is None:
        return jax.random.normal(key, shape)
    if not truncation > 0:
        raise ValueError(f"truncation must be None or > 0, got {truncation}")
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

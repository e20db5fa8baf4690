"""The latent prior p(z) of the generators and the VAE decoder: z ~ N(0, I), optionally truncated."""
from __future__ import annotations

import jax


def sample_latents(key: jax.Array, shape: tuple[int, ...], truncation: float | None = None) -> jax.Array:
    """z ~ N(0, I) of `shape`, or the truncated normal on [−t, t] for t > 0: the truncation trick of
    BigGAN (Brock et al. 2019, Sec. 3.1), values outside resampled, trading variety for fidelity."""
    if truncation is None:
        return jax.random.normal(key, shape)
    if not truncation > 0:
        raise ValueError(f"truncation must be None or > 0, got {truncation}")
    return jax.random.truncated_normal(key, -truncation, truncation, shape)

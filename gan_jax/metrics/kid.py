"""Kernel Inception Distance (Bińkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs").

KID = unbiased MMD² between two feature sets with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³,
averaged over random subsets. Protocol of the paper's code (`polynomial_mmd_averages`): 100 subsets of
m = min(1000, N_a, N_b) points, each subset drawn without replacement from each set independently;
reported as the mean and the (population, ddof = 0) standard deviation over subsets. Unlike FID the
estimator is unbiased, so values from different sample counts are comparable and can be negative.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST


def polynomial_kernel(x: jax.Array, y: jax.Array, degree: int = 3, coef0: float = 1.0) -> jax.Array:
    """k(x, y) = (xᵀy / d + c)^degree for rows x [n, d], y [m, d] -> [n, m] (γ = 1/d as in the paper)."""
    return (jnp.matmul(x, y.T, precision=_HIGHEST) / x.shape[-1] + coef0) ** degree


def mmd2_unbiased(x: jax.Array, y: jax.Array) -> jax.Array:
    """MMD²_u = Σ_{i≠j} k(xᵢ,xⱼ)/(n(n−1)) + Σ_{i≠j} k(yᵢ,yⱼ)/(m(m−1)) − 2 Σ_{i,j} k(xᵢ,yⱼ)/(nm)
    (Gretton et al. 2012, Eq. 3), with the cubic polynomial kernel; x [n, d], y [m, d], n, m ≥ 2."""
    n, m = x.shape[0], y.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return ((jnp.sum(kxx) - jnp.trace(kxx)) / (n * (n - 1)) + (jnp.sum(kyy) - jnp.trace(kyy)) / (m * (m - 1))
            - 2.0 * jnp.mean(kxy))


def kid(features_a: jax.Array, features_b: jax.Array, key: jax.Array, num_subsets: int = 100,
        subset_size: int = 1000) -> tuple[jax.Array, jax.Array]:
    """(mean, std) of MMD²_u over `num_subsets` random subsets of min(subset_size, N_a, N_b) rows each.

    Subsets are evaluated one after another (`lax.map`) so memory stays at three m × m kernels.
    """
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"features must be [N_a, d] and [N_b, d] with one d, got {features_a.shape} "
                         f"and {features_b.shape}")
    if num_subsets < 1:
        raise ValueError(f"num_subsets must be >= 1, got {num_subsets}")
    m = min(subset_size, features_a.shape[0], features_b.shape[0])
    if m < 2:
        raise ValueError(f"KID needs subsets of >= 2 rows; subset_size={subset_size}, "
                         f"N_a={features_a.shape[0]}, N_b={features_b.shape[0]}")

    def one(k: jax.Array) -> jax.Array:
        ka, kb = jax.random.split(k)
        xa = features_a[jax.random.choice(ka, features_a.shape[0], (m,), replace=False)]
        xb = features_b[jax.random.choice(kb, features_b.shape[0], (m,), replace=False)]
        return mmd2_unbiased(xa, xb)

    values = jax.lax.map(one, jax.random.split(key, num_subsets))
    return jnp.mean(values), jnp.std(values)

"""Divergences and distances behind the GAN objectives, as plain jit/vmap/grad-able `jnp` functions.

Conventions (natural logs throughout):

* Discrete distributions are arrays whose **last axis** indexes the outcomes; leading axes broadcast,
  so `kl_divergence(p, q)` of shapes (B, K) and (K,) returns shape (B,).
* `*_grid` functions take **densities** sampled on a uniform 1-D grid with spacing `dx` and integrate
  by the Riemann sum, i.e. they apply the discrete function to the masses `p * dx`. For smooth densities
  that vanish at both grid ends this equals the trapezoid rule and converges spectrally fast.
* Gaussians: `gaussian_kl` takes **variances** (N(mu, var)); `gaussian_w1` and `gaussian_w2` take
  **standard deviations** (their closed forms are in sigma). The argument names (`var*` / `std*`) say which.
* Validity of values (non-negative, normalised) is the caller's contract: it cannot be checked on traced
  values inside `jit`. Shapes are checked eagerly (they are static) and raise `ValueError`;
  `check_distribution` checks values of concrete arrays outside `jit`.
* Gradients are finite wherever the value is finite: entries with p = 0 use the convention 0 log 0 = 0
  and contribute zero gradient (the "double where" of `jax.scipy.special.rel_entr`).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr, rel_entr

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

LOG2 = math.log(2.0)


def _check_pair(p: Array, q: Array, fn: str) -> None:
    """Eager shape check for two distributions over the last axis: same outcome count, broadcastable."""
    if p.ndim < 1 or q.ndim < 1:
        raise ValueError(f"{fn}: p and q need at least one axis (the outcomes), got shapes {p.shape} and {q.shape}")
    if p.shape[-1] != q.shape[-1]:
        raise ValueError(f"{fn}: p and q must have the same number of outcomes on the last axis, "
                         f"got shapes {p.shape} and {q.shape}")
    try:
        jnp.broadcast_shapes(p.shape, q.shape)
    except ValueError as err:
        raise ValueError(f"{fn}: shapes {p.shape} and {q.shape} do not broadcast") from err


def _check_dx(dx: ArrayLike, fn: str) -> None:
    """Eager check that a concrete grid spacing is a positive scalar (traced spacings are the caller's contract)."""
    if isinstance(dx, jax.core.Tracer):
        return
    dx_np = np.asarray(dx)
    if dx_np.ndim != 0 or not np.isfinite(dx_np) or dx_np <= 0:
        raise ValueError(f"{fn}: dx must be a positive finite scalar, got {dx!r}")


def check_distribution(p: ArrayLike, dx: float | None = None, atol: float = 1e-5) -> None:
    """Raise `ValueError` unless `p` is a valid distribution over its last axis (eager, concrete arrays only).

    Discrete (`dx=None`): p >= 0 and sum(p) = 1. Density on a grid: p >= 0 and sum(p) * dx = 1.
    Both within `atol`. Call it outside `jit`; the divergence functions themselves do not check values.
    """
    if isinstance(p, jax.core.Tracer):
        raise ValueError("check_distribution needs a concrete array; call it outside jit/vmap/grad")
    p_np = np.asarray(p, dtype=np.float64)
    if p_np.ndim < 1:
        raise ValueError(f"distribution must have at least one axis (the outcomes), got shape {p_np.shape}")
    if not np.all(np.isfinite(p_np)):
        raise ValueError("distribution has non-finite entries (nan or inf); allowed: finite values >= 0")
    if np.any(p_np < 0):
        raise ValueError(f"distribution has negative entries (min {p_np.min():.6g}); allowed: values >= 0")
    if dx is not None:
        _check_dx(dx, "check_distribution")
    total = p_np.sum(axis=-1) * (1.0 if dx is None else float(dx))
    if np.any(np.abs(total - 1.0) > atol):
        what = "sum(p)" if dx is None else "sum(p) * dx"
        bad = total.flat[np.argmax(np.abs(total - 1.0))]
        raise ValueError(f"distribution is not normalised: {what} = {bad:.8g}, allowed: 1 within atol={atol}")


def kl_divergence(p: ArrayLike, q: ArrayLike) -> Array:
    """KL(p || q) = sum_x p(x) log(p(x) / q(x)) over the last axis.

    0 log(0 / q) = 0; +inf where p > 0 and q = 0. (Kullback & Leibler 1951.)
    """
    p, q = jnp.asarray(p), jnp.asarray(q)
    _check_pair(p, q, "kl_divergence")
    return jnp.sum(rel_entr(p, q), axis=-1)


def _half_log_ratio_terms(p: Array, q: Array) -> Array:
    """Elementwise p log(p / (p + q)) + q log(q / (p + q)), with 0 log 0 = 0.

    Uses p + q, never (p + q) / 2: halving a float32 denormal can round to 0 and turn a finite JS into inf.
    """
    total = p + q
    return rel_entr(p, total) + rel_entr(q, total)


def js_divergence(p: ArrayLike, q: ArrayLike) -> Array:
    """JS(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m), m = (p + q) / 2, over the last axis.

    Symmetric, 0 <= JS <= log 2, and = log 2 for disjoint supports (Arjovsky et al. 2017, Example 1; note
    that paper's Eq. 2 drops the 1/2 factors, which would give 2 log 2 there). Computed as
    1/2 sum_x [p log(p / (p + q)) + q log(q / (p + q)) + (p + q) log 2].
    """
    p, q = jnp.asarray(p), jnp.asarray(q)
    _check_pair(p, q, "js_divergence")
    return 0.5 * jnp.sum(_half_log_ratio_terms(p, q) + (p + q) * LOG2, axis=-1)


def optimal_discriminator(p_data: ArrayLike, p_model: ArrayLike) -> Array:
    """D*(x) = p_data(x) / (p_data(x) + p_model(x)), elementwise (Goodfellow et al. 2014, Prop. 1).

    It maximises a log y + b log(1 - y) pointwise. Where both densities vanish every D is optimal; we return 1/2.
    """
    p_data, p_model = jnp.asarray(p_data), jnp.asarray(p_model)
    total = p_data + p_model
    positive = total > 0
    safe_total = jnp.where(positive, total, 1.0)
    return jnp.where(positive, p_data / safe_total, 0.5)


def value_at_optimum(p_data: ArrayLike, p_model: ArrayLike) -> Array:
    """V(D*, G) = sum_x p_data log D*(x) + p_model log(1 - D*(x)) over the last axis (Goodfellow et al. 2014, Thm. 1).

    With D* = p_data / (p_data + p_model) the terms are p_data log(p_data / (p_data + p_model)) and the
    same for p_model; for normalised inputs V(D*, G) = 2 JS(p_data || p_model) - log 4, minimum -log 4 iff equal.
    """
    p_data, p_model = jnp.asarray(p_data), jnp.asarray(p_model)
    _check_pair(p_data, p_model, "value_at_optimum")
    return jnp.sum(_half_log_ratio_terms(p_data, p_model), axis=-1)


def kl_divergence_grid(p_density: ArrayLike, q_density: ArrayLike, dx: ArrayLike) -> Array:
    """KL(p || q) = int p log(p / q) dx for densities on a uniform grid (Riemann sum over the last axis).

    In float32, q * dx underflows to 0 about 12.5 standard deviations out (XLA:CPU flushes denormals);
    where it has and p * dx has not, KL is +inf as computed. Keep the grid where q * dx > 0 (or enable x64).
    """
    _check_dx(dx, "kl_divergence_grid")
    return kl_divergence(jnp.asarray(p_density) * dx, jnp.asarray(q_density) * dx)


def js_divergence_grid(p_density: ArrayLike, q_density: ArrayLike, dx: ArrayLike) -> Array:
    """JS(p || q) = 1/2 int p log(2p / (p + q)) + q log(2q / (p + q)) dx on a uniform grid (Riemann sum)."""
    _check_dx(dx, "js_divergence_grid")
    return js_divergence(jnp.asarray(p_density) * dx, jnp.asarray(q_density) * dx)


def value_at_optimum_grid(p_data: ArrayLike, p_model: ArrayLike, dx: ArrayLike) -> Array:
    """V(D*, G) = int p_data log D* + p_model log(1 - D*) dx on a uniform grid (Goodfellow et al. 2014, Thm. 1)."""
    _check_dx(dx, "value_at_optimum_grid")
    return value_at_optimum(jnp.asarray(p_data) * dx, jnp.asarray(p_model) * dx)


def wasserstein_1d(x: ArrayLike, y: ArrayLike) -> Array:
    """Exact W1 between the empirical distributions of two 1-D samples: int |F_x(t) - F_y(t)| dt.

    For equal sizes this is mean_i |x_(i) - y_(i)| over the sorted samples (the quantile coupling is optimal
    in 1-D); it equals `scipy.stats.wasserstein_distance`. Sizes may differ. Use `jax.vmap` for batches.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim != 1 or y.ndim != 1 or x.shape[0] == 0 or y.shape[0] == 0:
        raise ValueError(f"wasserstein_1d: x and y must be non-empty 1-D samples, got shapes {x.shape} and {y.shape}")
    x, y = jnp.sort(x), jnp.sort(y)
    points = jnp.sort(jnp.concatenate([x, y]))
    cdf_x = jnp.searchsorted(x, points[:-1], side="right") / x.shape[0]
    cdf_y = jnp.searchsorted(y, points[:-1], side="right") / y.shape[0]
    return jnp.sum(jnp.abs(cdf_x - cdf_y) * jnp.diff(points))


def wasserstein_1d_grid(p_density: ArrayLike, q_density: ArrayLike, dx: ArrayLike) -> Array:
    """W1 = int |F_p(t) - F_q(t)| dt for densities on a uniform grid, over the last axis.

    The grid values are treated as point masses p * dx at the grid points, for which
    W1 = dx * sum_i |cumsum(p * dx - q * dx)_i| is exact. (For masses m on a grid, pass m / dx.)
    """
    p_density, q_density = jnp.asarray(p_density), jnp.asarray(q_density)
    _check_pair(p_density, q_density, "wasserstein_1d_grid")
    _check_dx(dx, "wasserstein_1d_grid")
    cdf_gap = jnp.cumsum((p_density - q_density) * dx, axis=-1)[..., :-1]
    return dx * jnp.sum(jnp.abs(cdf_gap), axis=-1)


def gaussian_kl(mu1: ArrayLike, var1: ArrayLike, mu2: ArrayLike, var2: ArrayLike) -> Array:
    """KL(N(mu1, var1) || N(mu2, var2)) = 1/2 [log(var2 / var1) + (var1 + (mu1 - mu2)^2) / var2 - 1].

    Takes **variances**; elementwise with broadcasting. Variances must be positive (caller's contract).
    """
    mu1, var1, mu2, var2 = (jnp.asarray(a) for a in (mu1, var1, mu2, var2))
    return 0.5 * (jnp.log(var2) - jnp.log(var1) + (var1 + (mu1 - mu2) ** 2) / var2 - 1.0)


def gaussian_w1(mu1: ArrayLike, std1: ArrayLike, mu2: ArrayLike, std2: ArrayLike) -> Array:
    """W1(N(mu1, std1^2), N(mu2, std2^2)) = E|a + bZ| = b sqrt(2/pi) exp(-a^2 / 2b^2) + a (1 - 2 Phi(-a/b)).

    a = mu1 - mu2, b = |std1 - std2|, Z ~ N(0, 1): the quantile map x -> mu2 + std2 (x - mu1) / std1 is the
    optimal 1-D coupling. b = 0 gives |a| (pure translation). Takes **standard deviations**; elementwise.
    """
    a = jnp.asarray(mu1) - jnp.asarray(mu2)
    b = jnp.abs(jnp.asarray(std1) - jnp.asarray(std2))
    spread = b > 0
    b_safe = jnp.where(spread, b, 1.0)
    general = (b_safe * math.sqrt(2.0 / math.pi) * jnp.exp(-0.5 * (a / b_safe) ** 2)
               + a * (1.0 - 2.0 * ndtr(-a / b_safe)))
    return jnp.where(spread, general, jnp.abs(a))


def gaussian_w2(mu1: ArrayLike, std1: ArrayLike, mu2: ArrayLike, std2: ArrayLike) -> Array:
    """W2(N(mu1, std1^2), N(mu2, std2^2)) = sqrt((mu1 - mu2)^2 + (std1 - std2)^2) (1-D closed form).

    Takes **standard deviations**; elementwise. At equal distributions the value is 0 and the gradient 0.
    """
    squared = (jnp.asarray(mu1) - jnp.asarray(mu2)) ** 2 + (jnp.asarray(std1) - jnp.asarray(std2)) ** 2
    positive = squared > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, squared, 1.0)), 0.0)

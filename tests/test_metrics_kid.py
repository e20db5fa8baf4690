"""gan_jax.metrics.kid: the cubic-kernel unbiased MMD² (Bińkowski et al. 2018) and its subset average."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.metrics import kid as kid_lib


def numpy_mmd2_double_loop(x, y):
    """MMD²_u written out term by term in float64."""
    def k(a, b):
        return (np.dot(a, b) / len(a) + 1.0) ** 3
    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def draws(key, num, m, d, shift):
    """num independent pairs of sets: x [num, m, d] ~ N(0, I), y [num, m, d] ~ N(shift, I)."""
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (num, m, d)), jax.random.normal(ky, (num, m, d)) + shift


def biased_mmd2(x, y):
    """The V-statistic (diagonals kept): biased upwards by O(1/m), here only to show the test's power."""
    k = kid_lib.polynomial_kernel
    return jnp.mean(k(x, x)) + jnp.mean(k(y, y)) - 2 * jnp.mean(k(x, y))


def test_mmd2_matches_a_numpy_double_loop():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.3, 1.2, size=(9, 5))
    got = kid_lib.mmd2_unbiased(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
    np.testing.assert_allclose(got, numpy_mmd2_double_loop(x, y), rtol=1e-5, atol=1e-6)


def test_kid_of_one_distribution_is_zero_in_expectation():
    x, y = draws(jax.random.key(1), 4000, 8, 4, 0.0)
    values = jax.vmap(kid_lib.mmd2_unbiased)(x, y)
    se = float(jnp.std(values)) / np.sqrt(len(values))
    np.testing.assert_allclose(float(jnp.mean(values)), 0.0, atol=4 * se)
    assert float(jnp.mean(jax.vmap(biased_mmd2)(x, y))) > 20 * se


def test_small_subset_estimates_average_to_the_population_mmd2():
    """Unbiased for different distributions too: E[MMD²_u(m = 8)] equals E k(x,x') + E k(y,y') − 2 E k(x,y),
    whose terms are estimated from independent sets of 4000 (cross-kernel means are unbiased for them)."""
    d, shift = 4, 0.5
    x, y = draws(jax.random.key(2), 4000, 8, d, shift)
    values = jax.vmap(kid_lib.mmd2_unbiased)(x, y)
    big_x1, big_y1 = draws(jax.random.key(3), 1, 4000, d, shift)
    big_x2, big_y2 = draws(jax.random.key(4), 1, 4000, d, shift)
    k = kid_lib.polynomial_kernel
    population = (jnp.mean(k(big_x1[0], big_x2[0])) + jnp.mean(k(big_y1[0], big_y2[0]))
                  - jnp.mean(k(big_x1[0], big_y2[0])) - jnp.mean(k(big_x2[0], big_y1[0])))
    se = float(jnp.std(values)) / np.sqrt(len(values))
    np.testing.assert_allclose(float(jnp.mean(values)), float(population), atol=4 * se)
    biased = float(jnp.mean(jax.vmap(biased_mmd2)(x, y)))
    assert abs(biased - float(population)) > 10 * se


def test_kid_with_whole_sets_as_subsets_is_the_full_mmd2():
    """Subsets of m = min(subset_size, N_a, N_b) rows: with m = N_a = N_b every subset is a permutation
    of the whole sets, so every subset value is the full MMD²_u; with N_a > m the subsets of a vary."""
    rng = np.random.default_rng(5)
    a = jnp.asarray(rng.normal(size=(40, 6)), jnp.float32)
    b = jnp.asarray(rng.normal(0.5, 1.0, size=(30, 6)), jnp.float32)
    mean, std = kid_lib.kid(a[:30], b, jax.random.key(0), num_subsets=3, subset_size=100)
    np.testing.assert_allclose(mean, kid_lib.mmd2_unbiased(a[:30], b), rtol=1e-5)
    np.testing.assert_allclose(std, 0.0, atol=1e-5)
    assert float(kid_lib.kid(a, b, jax.random.key(0), num_subsets=3, subset_size=30)[1]) > 1e-4


def test_bad_inputs_are_rejected():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="one d"):
        kid_lib.kid(jnp.zeros((5, 3)), jnp.zeros((5, 2)), key)
    with pytest.raises(ValueError, match="num_subsets must be >= 1, got 0"):
        kid_lib.kid(jnp.zeros((5, 3)), jnp.zeros((5, 3)), key, num_subsets=0)
    with pytest.raises(ValueError, match=">= 2 rows"):
        kid_lib.kid(jnp.zeros((1, 3)), jnp.zeros((5, 3)), key)

"""gan_jax.divergences: closed forms, identities, reference values, jit/vmap/grad."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.spatial.distance
import scipy.stats
from jax.scipy.stats import norm

from gan_jax import divergences as dv

LOG2 = math.log(2.0)


def _grid(lo, hi, num):
    return jnp.linspace(lo, hi, num), (hi - lo) / (num - 1)


def _random_simplex(key, shape):
    return jax.random.dirichlet(key, jnp.ones(shape[-1]), shape[:-1])


# --- discrete KL and JS ---------------------------------------------------------------------------------

def test_kl_and_js_match_scipy_on_random_distributions():
    p, q = _random_simplex(jax.random.key(0), (6, 9)), _random_simplex(jax.random.key(1), (6, 9))
    p64, q64 = np.asarray(p, np.float64), np.asarray(q, np.float64)
    np.testing.assert_allclose(dv.kl_divergence(p, q), scipy.stats.entropy(p64, q64, axis=-1), rtol=1e-5)
    js_scipy = scipy.spatial.distance.jensenshannon(p64, q64, axis=-1) ** 2  # scipy returns sqrt(JS)
    np.testing.assert_allclose(dv.js_divergence(p, q), js_scipy, rtol=1e-5)


def test_kl_zero_log_zero_and_infinite_where_q_vanishes():
    p = jnp.array([0.5, 0.5, 0.0])
    q = jnp.array([0.25, 0.75, 0.0])
    expected = 0.5 * math.log(2.0) + 0.5 * math.log(0.5 / 0.75)
    np.testing.assert_allclose(dv.kl_divergence(p, q), expected, rtol=1e-6)
    assert dv.kl_divergence(p, p) == 0.0
    assert dv.kl_divergence(p, jnp.array([1.0, 0.0, 0.0])) == jnp.inf  # p > 0 = q at index 1
    np.testing.assert_allclose(dv.kl_divergence(jnp.array([1.0, 0.0, 0.0]), p), math.log(2.0), rtol=1e-6)


def test_js_disjoint_supports_is_log2_and_identical_is_zero():
    p = jnp.array([0.2, 0.8, 0.0, 0.0])
    q = jnp.array([0.0, 0.0, 0.3, 0.7])
    np.testing.assert_allclose(dv.js_divergence(p, q), LOG2, rtol=1e-6)
    np.testing.assert_allclose(dv.js_divergence(p, p), 0.0, atol=1e-7)


def test_js_symmetric_and_bounded_by_log2():
    p, q = _random_simplex(jax.random.key(2), (200, 5)), _random_simplex(jax.random.key(3), (200, 5))
    q = q.at[:, 0].set(0.0) / jnp.sum(q.at[:, 0].set(0.0), axis=-1, keepdims=True)  # some zeros too
    js_pq, js_qp = dv.js_divergence(p, q), dv.js_divergence(q, p)
    np.testing.assert_allclose(js_pq, js_qp, rtol=1e-5, atol=1e-7)
    assert bool(jnp.all(js_pq > 0)) and bool(jnp.all(js_pq <= LOG2))


def test_kl_js_broadcast_over_leading_axes():
    p = _random_simplex(jax.random.key(4), (3, 4, 7))
    q = _random_simplex(jax.random.key(5), (7,))
    kl = dv.kl_divergence(p, q)
    chex.assert_shape(kl, (3, 4))
    chex.assert_type(kl, jnp.float32)
    np.testing.assert_allclose(kl[1, 2], dv.kl_divergence(p[1, 2], q), rtol=1e-6)
    chex.assert_shape(dv.js_divergence(q, p), (3, 4))
    chex.assert_shape(dv.value_at_optimum(p, q), (3, 4))


# --- optimal discriminator and V(D*, G) ---------------------------------------------------------------

def test_optimal_discriminator_maximises_pointwise_value():
    a = jnp.array([0.3, 2.0, 0.0, 1.0, 0.0])
    b = jnp.array([0.7, 0.5, 1.0, 0.0, 0.0])
    d_star = dv.optimal_discriminator(a, b)
    np.testing.assert_allclose(d_star, [0.3, 0.8, 0.0, 1.0, 0.5], rtol=1e-6)
    ys = np.linspace(1e-4, 1 - 1e-4, 20001)
    for ai, bi in [(0.3, 0.7), (2.0, 0.5)]:
        np.testing.assert_allclose(ys[np.argmax(ai * np.log(ys) + bi * np.log1p(-ys))], ai / (ai + bi), atol=1e-4)


def test_value_at_optimum_is_2js_minus_log4_on_random_discrete():
    p, q = _random_simplex(jax.random.key(6), (50, 8)), _random_simplex(jax.random.key(7), (50, 8))
    p64, q64 = np.asarray(p, np.float64), np.asarray(q, np.float64)
    d = p64 / (p64 + q64)  # independent D*, then V = E_p log D + E_q log(1 - D)
    v_direct = np.sum(p64 * np.log(d) + q64 * np.log1p(-d), axis=-1)
    np.testing.assert_allclose(dv.value_at_optimum(p, q), v_direct, rtol=1e-5)
    js_scipy = scipy.spatial.distance.jensenshannon(p64, q64, axis=-1) ** 2
    np.testing.assert_allclose(dv.value_at_optimum(p, q), 2 * js_scipy - math.log(4.0), rtol=1e-5)
    np.testing.assert_allclose(dv.value_at_optimum(p, p), -math.log(4.0), rtol=1e-6)


# --- densities on a grid (reference values by high-precision quadrature) ----------------------------

@pytest.mark.parametrize("mu, std, expected", [
    (1.0, 1.0, 0.111421482185), (0.0, 2.0, 0.092733381666), (2.0, 0.5, 0.474307411229),
    (0.5, 1.0, 0.030311300521), (10.0, 1.0, 0.693146317394)])
def test_js_grid_of_gaussians_matches_reference(mu, std, expected):
    x, dx = _grid(-14.0, 24.0, 12001)
    js = dv.js_divergence_grid(norm.pdf(x, mu, std), norm.pdf(x), dx)
    np.testing.assert_allclose(js, expected, rtol=2e-5)


def test_value_at_optimum_grid_matches_reference_and_identity():
    x, dx = _grid(-14.0, 15.0, 8001)
    p, q = norm.pdf(x, 1.0, 1.0), norm.pdf(x)
    v = dv.value_at_optimum_grid(p, q, dx)
    np.testing.assert_allclose(v, -1.163451396750, rtol=1e-5)
    np.testing.assert_allclose(v, 2 * dv.js_divergence_grid(p, q, dx) - math.log(4.0), rtol=1e-5)
    np.testing.assert_allclose(dv.value_at_optimum_grid(q, q, dx), -1.386294361120, rtol=1e-5)


@pytest.mark.parametrize("m1, v1, m2, v2, expected", [
    (1.0, 1.0, 0.0, 1.0, 0.5), (0.0, 4.0, 0.0, 1.0, 0.806852819440), (3.0, 0.25, 0.0, 1.0, 4.818147180560)])
def test_gaussian_kl_reference_values_and_grid_integral(m1, v1, m2, v2, expected):
    np.testing.assert_allclose(dv.gaussian_kl(m1, v1, m2, v2), expected, rtol=1e-6)
    x, dx = _grid(-12.0, 12.0, 8001)  # float32 N(0, 1) * dx stays > 0 here; N(0, 4) has 2e-9 mass outside
    kl_grid = dv.kl_divergence_grid(norm.pdf(x, m1, math.sqrt(v1)), norm.pdf(x, m2, math.sqrt(v2)), dx)
    np.testing.assert_allclose(kl_grid, expected, rtol=1e-5)


def test_gaussian_kl_asymmetric_and_zero_at_equality():
    np.testing.assert_allclose(dv.gaussian_kl(0.3, 2.0, 0.3, 2.0), 0.0, atol=1e-7)
    # KL(N(0,1) || N(0,4)) = log 2 + 1/8 - 1/2, unlike the 0.8069 of the reverse direction.
    np.testing.assert_allclose(dv.gaussian_kl(0.0, 1.0, 0.0, 4.0), math.log(2.0) + 0.125 - 0.5, rtol=1e-6)


# --- Wasserstein ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, m", [(1000, 1000), (700, 400)])
def test_wasserstein_1d_matches_scipy(n, m):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=n), rng.normal(0.3, 1.5, size=m)
    np.testing.assert_allclose(dv.wasserstein_1d(x, y), scipy.stats.wasserstein_distance(x, y), rtol=1e-5)


def test_wasserstein_1d_equal_sizes_is_mean_sorted_difference_and_shift():
    x = jax.random.normal(jax.random.key(8), (500,))
    y = jax.random.normal(jax.random.key(9), (500,)) * 2.0
    np.testing.assert_allclose(dv.wasserstein_1d(x, y), jnp.mean(jnp.abs(jnp.sort(x) - jnp.sort(y))), rtol=1e-5)
    np.testing.assert_allclose(dv.wasserstein_1d(x, x + 0.75), 0.75, rtol=1e-5)
    np.testing.assert_allclose(dv.wasserstein_1d(x - 2.0, x), 2.0, rtol=1e-5)


def test_wasserstein_grid_of_point_masses_equals_sample_w1():
    # Samples that sit on grid points: their histograms (as densities) must give exactly the sample W1.
    dx, num = 0.25, 40
    rng = np.random.default_rng(1)
    ix, iy = rng.integers(0, num, size=300), rng.integers(0, num, size=300)
    hist_x = np.bincount(ix, minlength=num) / (300 * dx)
    hist_y = np.bincount(iy, minlength=num) / (300 * dx)
    np.testing.assert_allclose(dv.wasserstein_1d_grid(hist_x, hist_y, dx),
                               dv.wasserstein_1d(ix * dx, iy * dx), rtol=1e-5)
    point_3, point_10 = np.eye(num)[3] / dx, np.eye(num)[10] / dx  # unit masses at x_3 and x_10
    np.testing.assert_allclose(dv.wasserstein_1d_grid(point_3, point_10, dx), 7 * dx, rtol=1e-6)


def test_wasserstein_grid_and_samples_agree_with_gaussian_w1():
    m1, s1, m2, s2, expected = 0.5, 0.7, -1.0, 1.3, 1.502404964615
    np.testing.assert_allclose(dv.gaussian_w1(m1, s1, m2, s2), expected, rtol=1e-6)
    x, dx = _grid(-12.0, 12.0, 8001)
    np.testing.assert_allclose(dv.wasserstein_1d_grid(norm.pdf(x, m1, s1), norm.pdf(x, m2, s2), dx),
                               expected, rtol=1e-4)
    kx, ky = jax.random.split(jax.random.key(10))
    samples_x = m1 + s1 * jax.random.normal(kx, (100_000,))
    samples_y = m2 + s2 * jax.random.normal(ky, (100_000,))
    np.testing.assert_allclose(dv.wasserstein_1d(samples_x, samples_y), expected, rtol=1e-2)


def test_gaussian_w1_special_cases_and_expectation_formula():
    np.testing.assert_allclose(dv.gaussian_w1(1.0, 1.0, 0.0, 1.0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(dv.gaussian_w1(0.0, 2.0, 0.0, 1.0), 0.797884560803, rtol=1e-6)
    np.testing.assert_allclose(dv.gaussian_w1(-0.4, 1.0, 0.3, 1.0), 0.7, rtol=1e-6)
    a, b = -0.8, 0.6  # W1 = E|a + bZ|, integrated independently
    e_abs = scipy.integrate.quad(lambda z: abs(a + b * z) * scipy.stats.norm.pdf(z), -np.inf, np.inf)[0]
    np.testing.assert_allclose(dv.gaussian_w1(a, 1.6, 0.0, 1.0), e_abs, rtol=1e-6)


def test_gaussian_w2_reference_and_translation():
    np.testing.assert_allclose(dv.gaussian_w2(0.5, 0.7, -1.0, 1.3) ** 2, 2.61, rtol=1e-6)
    np.testing.assert_allclose(dv.gaussian_w2(2.0, 1.0, -1.0, 1.0), 3.0, rtol=1e-6)
    assert dv.gaussian_w2(0.2, 0.5, 0.2, 0.5) == 0.0
    # W1 <= W2 (Jensen), equality for translations.
    m = jnp.linspace(-1, 1, 7)
    assert bool(jnp.all(dv.gaussian_w1(m, 0.5, 0.0, 1.5) <= dv.gaussian_w2(m, 0.5, 0.0, 1.5) + 1e-6))


# --- bad input --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [dv.kl_divergence, dv.js_divergence, dv.value_at_optimum])
def test_shape_errors(fn):
    with pytest.raises(ValueError, match="same number of outcomes"):
        fn(jnp.ones(3) / 3, jnp.ones(4) / 4)
    with pytest.raises(ValueError, match="do not broadcast"):
        fn(jnp.ones((2, 3)) / 3, jnp.ones((5, 3)) / 3)
    with pytest.raises(ValueError, match="at least one axis"):
        fn(jnp.float32(1.0), jnp.float32(1.0))


def test_grid_and_sample_input_errors():
    with pytest.raises(ValueError, match="dx must be a positive"):
        dv.js_divergence_grid(jnp.ones(3), jnp.ones(3), -0.1)
    with pytest.raises(ValueError, match="same number of outcomes"):
        dv.wasserstein_1d_grid(jnp.ones(3), jnp.ones(5), 0.1)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        dv.wasserstein_1d(jnp.ones((2, 3)), jnp.ones(3))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        dv.wasserstein_1d(jnp.ones(0), jnp.ones(3))


def test_check_distribution():
    dv.check_distribution(jnp.array([[0.2, 0.8], [1.0, 0.0]]))
    x, dx = _grid(-10.0, 10.0, 2001)
    dv.check_distribution(norm.pdf(x), dx=dx)
    with pytest.raises(ValueError, match="negative entries"):
        dv.check_distribution(jnp.array([1.2, -0.2]))
    with pytest.raises(ValueError, match="not normalised: sum\\(p\\) = 0.9"):
        dv.check_distribution(jnp.array([0.5, 0.4]))
    with pytest.raises(ValueError, match="not normalised: sum\\(p\\) \\* dx"):
        dv.check_distribution(norm.pdf(x), dx=2 * dx)
    with pytest.raises(ValueError, match="non-finite"):
        dv.check_distribution(jnp.array([jnp.nan, 1.0]))
    with pytest.raises(ValueError, match="concrete array"):
        jax.jit(dv.check_distribution)(jnp.array([0.5, 0.5]))


# --- jit, vmap, grad of every public function -----------------------------------------------------------

def _pq(seed, k=6):
    return _random_simplex(jax.random.key(seed), (k,)), _random_simplex(jax.random.key(seed + 100), (k,))


_DX = 0.1
CASES = {
    "kl_divergence": (dv.kl_divergence, lambda s: _pq(s)),
    "js_divergence": (dv.js_divergence, lambda s: _pq(s)),
    "value_at_optimum": (dv.value_at_optimum, lambda s: _pq(s)),
    "optimal_discriminator": (lambda p, q: jnp.sum(dv.optimal_discriminator(p, q) ** 2), lambda s: _pq(s)),
    "kl_divergence_grid": (lambda p, q: dv.kl_divergence_grid(p, q, _DX), lambda s: tuple(a / _DX for a in _pq(s))),
    "js_divergence_grid": (lambda p, q: dv.js_divergence_grid(p, q, _DX), lambda s: tuple(a / _DX for a in _pq(s))),
    "value_at_optimum_grid": (lambda p, q: dv.value_at_optimum_grid(p, q, _DX),
                              lambda s: tuple(a / _DX for a in _pq(s))),
    "wasserstein_1d_grid": (lambda p, q: dv.wasserstein_1d_grid(p, q, _DX),
                            lambda s: tuple(a / _DX for a in _pq(s))),
    "wasserstein_1d": (dv.wasserstein_1d,
                       lambda s: (jax.random.normal(jax.random.key(s), (9,)),
                                  jax.random.normal(jax.random.key(s + 1), (7,)) + 0.5)),
    "gaussian_kl": (dv.gaussian_kl, lambda s: (0.3 * s, 1.5, -0.2, 0.8 + 0.1 * s)),
    "gaussian_w1": (dv.gaussian_w1, lambda s: (0.3 * s, 1.5, -0.2, 0.8 + 0.1 * s)),
    "gaussian_w2": (dv.gaussian_w2, lambda s: (0.3 * s, 1.5, -0.2, 0.8 + 0.1 * s)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_jit_and_vmap_match_eager(name):
    fn, make = CASES[name]
    args = [make(s) for s in (1, 2, 3)]
    eager = jnp.stack([fn(*a) for a in args])
    np.testing.assert_allclose(jnp.stack([jax.jit(fn)(*a) for a in args]), eager, rtol=1e-5, atol=1e-7)
    batched = [jnp.stack([jnp.asarray(a[i]) for a in args]) for i in range(len(args[0]))]
    vmapped = jax.vmap(fn)(*batched)
    chex.assert_shape(vmapped, (3,))
    np.testing.assert_allclose(vmapped, eager, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_grad_matches_central_differences(name):
    fn, make = CASES[name]
    with jax.enable_x64(True):
        args = [jnp.asarray(a, jnp.float64) for a in make(1)]
        grads = jax.jit(jax.grad(fn, argnums=tuple(range(len(args)))))(*args)
        directions = [jax.random.normal(jax.random.key(i), a.shape, jnp.float64) for i, a in enumerate(args)]
        eps = 1e-6
        plus = fn(*[a + eps * v for a, v in zip(args, directions)])
        minus = fn(*[a - eps * v for a, v in zip(args, directions)])
        numeric = (plus - minus) / (2 * eps)
        analytic = sum(jnp.sum(g * v) for g, v in zip(grads, directions))
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


def test_gradients_finite_at_zeros_and_disjoint_supports():
    p = jnp.array([0.5, 0.5, 0.0, 0.0])
    q = jnp.array([0.0, 0.0, 0.5, 0.5])
    for fn in (dv.js_divergence, dv.value_at_optimum):
        gp, gq = jax.grad(fn, argnums=(0, 1))(p, q)
        chex.assert_tree_all_finite((gp, gq))
    r = jnp.array([0.5, 0.25, 0.25, 0.0])
    gp, gq = jax.grad(dv.kl_divergence, argnums=(0, 1))(r, jnp.full(4, 0.25))
    chex.assert_tree_all_finite((gp, gq))
    np.testing.assert_allclose(gq, -r / 0.25, rtol=1e-6)  # d/dq sum p log(p/q) = -p/q
    chex.assert_tree_all_finite(jax.grad(dv.gaussian_w1, argnums=(0, 1, 2, 3))(0.5, 1.0, 0.0, 1.0))
    chex.assert_tree_all_finite(jax.grad(dv.gaussian_w2, argnums=(0, 1, 2, 3))(0.5, 1.0, 0.5, 1.0))

"""Tests for gan_jax.losses: values against independent NumPy formulas, gradients against
finite differences, the documented identities, numerics, transformations and the contract."""
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gan_jax import losses as L
from gan_jax import penalties

B = 8


def _sig(x):
    return 1.0 / (1.0 + np.exp(-x))


def _logs(x):  # log sigmoid, naive (fine for |x| < 30)
    return np.log(_sig(x))


def _log1ms(x):  # log(1 - sigmoid(x)), naive
    return np.log(1.0 - _sig(x))


# NumPy float64 reference formulas, written from the papers, independent of the implementation.
def _np_js_g(v):
    return np.log(2.0) - np.log(1.0 + np.exp(-v))


_NP_FGAN = {  # name: (activation g_f, conjugate f*), Nowozin et al. 2016 Table 6
    "kl": (lambda v: v, lambda t: np.exp(t - 1.0)),
    "reverse_kl": (lambda v: -np.exp(-v), lambda t: -1.0 - np.log(-t)),
    "js": (_np_js_g, lambda t: -np.log(2.0 - np.exp(t))),
    "pearson": (lambda v: v, lambda t: t * t / 4.0 + t),
    "hellinger": (lambda v: 1.0 - np.exp(-v), lambda t: t / (1.0 - t)),
}


def _np_ra(r, f, f1, gen):
    dr, df = r - f.mean(), f - r.mean()
    if gen:
        dr, df = df, dr
    return f1(dr).mean() + f1(-df).mean()


_F1 = {"standard": lambda y: -_logs(y), "least_squares": lambda y: (y - 1.0) ** 2,
       "hinge": lambda y: np.maximum(0.0, 1.0 - y)}

# (id, function of (real, fake) scores, reference of (real, fake), needs equal batch sizes)
PAIR_LOSSES = [
    ("minimax_d", L.minimax_discriminator_loss,
     lambda r, f: -_logs(r).mean() - _log1ms(f).mean(), False),
    ("minimax_d_smoothed", functools.partial(L.minimax_discriminator_loss, label_smoothing=0.2),
     lambda r, f: -(0.8 * _logs(r) + 0.2 * _log1ms(r)).mean() - _log1ms(f).mean(), False),
    ("wasserstein_c", L.wasserstein_critic_loss, lambda r, f: f.mean() - r.mean(), False),
    ("hinge_c", L.hinge_critic_loss,
     lambda r, f: np.maximum(0, 1 - r).mean() + np.maximum(0, 1 + f).mean(), False),
    ("least_squares_d", L.least_squares_discriminator_loss,
     lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean(), False),
    ("rsgan_d", functools.partial(L.relativistic_discriminator_loss, average=False),
     lambda r, f: -_logs(r - f).mean(), True),
    ("rsgan_g", functools.partial(L.relativistic_generator_loss, average=False),
     lambda r, f: -_logs(f - r).mean(), True),
    ("rlsgan_d", functools.partial(L.relativistic_discriminator_loss, average=False,
                                   kind="least_squares"),
     lambda r, f: ((r - f - 1) ** 2).mean(), True),
    ("rhinge_g", functools.partial(L.relativistic_generator_loss, average=False, kind="hinge"),
     lambda r, f: np.maximum(0, 1 - (f - r)).mean(), True),
    ("rasgan_d", L.relativistic_discriminator_loss,
     lambda r, f: -_logs(r - f.mean()).mean() - _log1ms(f - r.mean()).mean(), False),
    ("rasgan_g", L.relativistic_generator_loss,
     lambda r, f: -_logs(f - r.mean()).mean() - _log1ms(r - f.mean()).mean(), False),
    ("ralsgan_d", L.relativistic_average_least_squares_discriminator_loss,
     lambda r, f: ((r - f.mean() - 1) ** 2).mean() + ((f - r.mean() + 1) ** 2).mean(), False),
    ("ralsgan_g", L.relativistic_average_least_squares_generator_loss,
     lambda r, f: ((f - r.mean() - 1) ** 2).mean() + ((r - f.mean() + 1) ** 2).mean(), False),
    ("rahinge_d", L.relativistic_average_hinge_discriminator_loss,
     lambda r, f: (np.maximum(0, 1 - (r - f.mean())).mean()
                   + np.maximum(0, 1 + (f - r.mean())).mean()), False),
    ("rahinge_g", L.relativistic_average_hinge_generator_loss,
     lambda r, f: (np.maximum(0, 1 - (f - r.mean())).mean()
                   + np.maximum(0, 1 + (r - f.mean())).mean()), False),
] + [
    (f"fgan_{d}_c", functools.partial(L.fgan_critic_loss, divergence=d),
     (lambda g, fs: lambda r, f: fs(g(f)).mean() - g(r).mean())(*_NP_FGAN[d]), False)
    for d in L.FGAN_DIVERGENCES
]

# (id, function of fake scores, reference)
FAKE_LOSSES = [
    ("minimax_g", L.minimax_generator_loss, lambda f: _log1ms(f).mean()),
    ("non_saturating_g", L.non_saturating_generator_loss, lambda f: -_logs(f).mean()),
    ("wasserstein_g", L.wasserstein_generator_loss, lambda f: -f.mean()),
    ("hinge_g", L.hinge_generator_loss, lambda f: -f.mean()),
    ("least_squares_g", L.least_squares_generator_loss, lambda f: 0.5 * ((f - 1) ** 2).mean()),
] + [
    (f"fgan_{d}_g_alt", functools.partial(L.fgan_generator_loss, divergence=d),
     (lambda g, fs: lambda f: -g(f).mean())(*_NP_FGAN[d]))
    for d in L.FGAN_DIVERGENCES
] + [
    (f"fgan_{d}_g_sat", functools.partial(L.fgan_generator_loss, divergence=d, alternative=False),
     (lambda g, fs: lambda f: -fs(g(f)).mean())(*_NP_FGAN[d]))
    for d in L.FGAN_DIVERGENCES
]

PAIR_IDS = [p[0] for p in PAIR_LOSSES]
FAKE_IDS = [p[0] for p in FAKE_LOSSES]


def _scores(seed, n=B, scale=2.0, shape=None):
    rng = np.random.default_rng(seed)
    return (scale * rng.standard_normal(shape or (n,))).astype(np.float32)


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("name,fn,ref,paired", PAIR_LOSSES, ids=PAIR_IDS)
def test_pair_losses_match_reference(name, fn, ref, paired):
    r = _scores(1)
    f = _scores(2, n=B if paired else B + 3)
    out = fn(r, f)
    chex.assert_shape(out, ())
    chex.assert_type(out, jnp.float32)
    np.testing.assert_allclose(out, ref(r.astype(np.float64), f.astype(np.float64)),
                               rtol=2e-5, atol=2e-5)
    # [B, 1] inputs give the same value as [B].
    np.testing.assert_allclose(fn(r[:, None], f[:, None]), out, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,fn,ref", FAKE_LOSSES, ids=FAKE_IDS)
def test_fake_losses_match_reference(name, fn, ref):
    f = _scores(3)
    out = fn(f)
    chex.assert_shape(out, ())
    chex.assert_type(out, jnp.float32)
    np.testing.assert_allclose(out, ref(f.astype(np.float64)), rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(fn(f[:, None]), out, rtol=1e-6, atol=1e-6)


def test_auxiliary_losses_match_reference():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((B, 5)).astype(np.float32)
    labels = rng.integers(0, 5, B)
    logp = logits - np.log(np.exp(logits.astype(np.float64)).sum(1, keepdims=True))
    expected = -logp[np.arange(B), labels].mean()
    out = L.acgan_classification_loss(logits, labels)
    chex.assert_shape(out, ())
    chex.assert_type(out, jnp.float32)
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    np.testing.assert_allclose(
        out, optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), rtol=1e-6)
    one_hot = np.eye(5, dtype=np.float32)[labels]
    np.testing.assert_allclose(L.acgan_classification_loss(logits, one_hot), out, rtol=1e-6)

    real_feat = rng.standard_normal((B, 3, 4)).astype(np.float32)
    fake_feat = rng.standard_normal((B + 2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(
        L.feature_matching_loss(real_feat, fake_feat),
        ((real_feat.mean(0).astype(np.float64) - fake_feat.mean(0)) ** 2).sum(), rtol=1e-5)

    x = rng.standard_normal((B, 4, 4, 3)).astype(np.float32)
    y = rng.standard_normal((B, 4, 4, 3)).astype(np.float32)
    np.testing.assert_allclose(L.l1_reconstruction_loss(x, y), np.abs(x - y).mean(), rtol=1e-6)
    np.testing.assert_allclose(L.cycle_consistency_loss(x, y), np.abs(x - y).mean(), rtol=1e-6)


# ----------------------------------------------------------------------------- gradients


def _fd_grad(fn, x, h=1e-6):
    x = np.asarray(x, np.float64)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (float(fn(x + e)) - float(fn(x - e))) / (2 * h)
    return g


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("name,fn,ref,paired", PAIR_LOSSES, ids=PAIR_IDS)
def test_pair_loss_gradients_match_finite_differences(x64, name, fn, ref, paired):
    r = _scores(5, n=4).astype(np.float64)
    f = _scores(6, n=4).astype(np.float64)
    gr, gf = jax.grad(fn, argnums=(0, 1))(jnp.asarray(r), jnp.asarray(f))
    assert gr.dtype == jnp.float64
    np.testing.assert_allclose(gr, _fd_grad(lambda x: fn(x, f), r), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gf, _fd_grad(lambda x: fn(r, x), f), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name,fn,ref", FAKE_LOSSES, ids=FAKE_IDS)
def test_fake_loss_gradients_match_finite_differences(x64, name, fn, ref):
    f = _scores(7, n=4).astype(np.float64)
    g = jax.grad(fn)(jnp.asarray(f))
    np.testing.assert_allclose(g, _fd_grad(fn, f), rtol=1e-6, atol=1e-8)


def test_auxiliary_loss_gradients_match_finite_differences(x64):
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((3, 4))
    labels = np.array([0, 3, 1])
    fn = functools.partial(L.acgan_classification_loss, labels=labels)
    np.testing.assert_allclose(jax.grad(fn)(logits), _fd_grad(fn, logits), rtol=1e-6, atol=1e-8)
    a, b = rng.standard_normal((3, 2)), rng.standard_normal((2, 2))
    fn = functools.partial(L.feature_matching_loss, fake_features=b)
    np.testing.assert_allclose(jax.grad(fn)(a), _fd_grad(fn, a), rtol=1e-6, atol=1e-8)
    c = rng.standard_normal((3, 2))
    for loss in (L.l1_reconstruction_loss, L.cycle_consistency_loss):
        fn = functools.partial(loss, c)
        np.testing.assert_allclose(jax.grad(fn)(a), _fd_grad(fn, a), rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- the papers' arguments


def test_saturating_generator_gradient_vanishes_non_saturating_does_not():
    """As D(G(z)) -> 0 (fake logits -> -inf) the gradient of E log(1 - D(G(z))) vanishes,
    while that of -E log D(G(z)) tends to -1 per example (times 1/B)."""
    prev = None
    for logit in (-2.0, -5.0, -10.0, -20.0, -40.0):
        f = jnp.full((B,), logit)
        g_sat = jax.grad(L.minimax_generator_loss)(f)
        g_ns = jax.grad(L.non_saturating_generator_loss)(f)
        np.testing.assert_allclose(g_sat * B, -_sig(logit), rtol=1e-5, atol=0)
        np.testing.assert_allclose(g_ns * B, -_sig(-logit), rtol=1e-5)
        if prev is not None:
            assert abs(float(g_sat[0])) < abs(prev)
        prev = float(g_sat[0])
    assert abs(prev) * B < 1e-15
    assert abs(float(g_ns[0]) * B + 1.0) < 1e-6


def test_ns_and_minimax_generator_gradients_same_sign_different_magnitude():
    f = jnp.asarray(_scores(9))
    g_sat = jax.grad(L.minimax_generator_loss)(f)
    g_ns = jax.grad(L.non_saturating_generator_loss)(f)
    assert bool(jnp.all(jnp.sign(g_sat) == jnp.sign(g_ns)))
    assert bool(jnp.all(g_sat < 0))
    # Ratio D/(1-D) = exp(logit): equal only at logit 0.
    np.testing.assert_allclose(g_sat / g_ns, np.exp(np.asarray(f, np.float64)), rtol=1e-4)


def test_minimax_generator_is_minus_discriminator_loss_no_offset():
    """J_G = -J_D exactly, up to the real term that G cannot change (no constant offset)."""
    r, f = _scores(10), _scores(11)
    real_term = np.mean(np.logaddexp(0.0, -r.astype(np.float64)))
    np.testing.assert_allclose(L.minimax_generator_loss(f),
                               -(L.minimax_discriminator_loss(r, f) - real_term), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(jax.grad(L.minimax_generator_loss)(f),
                               -jax.grad(L.minimax_discriminator_loss, argnums=1)(r, f),
                               rtol=1e-6)
    # At the game's equilibrium D = 1/2 everywhere: J_D = 2 log 2, J_G = -log 2.
    zeros = jnp.zeros(B)
    np.testing.assert_allclose(L.minimax_discriminator_loss(zeros, zeros), 2 * math.log(2),
                               rtol=1e-6)
    np.testing.assert_allclose(L.minimax_generator_loss(zeros), -math.log(2), rtol=1e-6)
    np.testing.assert_allclose(L.non_saturating_generator_loss(zeros), math.log(2), rtol=1e-6)


# ----------------------------------------------------------------------------- label smoothing


def test_label_smoothing_changes_only_the_real_target():
    r, f = _scores(12), _scores(13)
    s = 0.1
    plain = L.minimax_discriminator_loss(r, f)
    smooth = L.minimax_discriminator_loss(r, f, label_smoothing=s)
    # Default is off: the plain BCE.
    np.testing.assert_allclose(plain, -_logs(r.astype(np.float64)).mean()
                               - _log1ms(f.astype(np.float64)).mean(), rtol=1e-5)
    # The difference depends on the real logits only; fake gradients are untouched.
    np.testing.assert_allclose(jax.grad(L.minimax_discriminator_loss, argnums=1)(r, f, s),
                               jax.grad(L.minimax_discriminator_loss, argnums=1)(r, f), rtol=1e-7)
    f2 = _scores(14)
    np.testing.assert_allclose(smooth - plain,
                               L.minimax_discriminator_loss(r, f2, label_smoothing=s)
                               - L.minimax_discriminator_loss(r, f2), rtol=1e-5, atol=1e-6)
    # The real term is the BCE with target 1 - s, computed on probabilities (not logits).
    bce_real = -np.mean((1 - s) * np.log(_sig(r.astype(np.float64)))
                        + s * np.log(1 - _sig(r.astype(np.float64))))
    np.testing.assert_allclose(smooth, bce_real - _log1ms(f.astype(np.float64)).mean(),
                               rtol=1e-5)
    # The smoothed loss is minimised at D(x) = 1 - s, not at D(x) -> 1.
    opt = jnp.full((B,), math.log((1 - s) / s))
    g = jax.grad(L.minimax_discriminator_loss)(opt, jnp.asarray(f), s)
    np.testing.assert_allclose(g, 0.0, atol=1e-7)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_label_smoothing_outside_unit_interval_raises(bad):
    with pytest.raises(ValueError, match="label_smoothing"):
        L.minimax_discriminator_loss(jnp.zeros(B), jnp.zeros(B), label_smoothing=bad)
    with pytest.raises(ValueError, match="label_smoothing"):
        L.get_loss("non_saturating", label_smoothing=bad)


# ----------------------------------------------------------------------------- identities


RELATIVISTIC = [(avg, kind) for avg in (False, True)
                for kind in ("standard", "least_squares", "hinge")]


@pytest.mark.parametrize("average,kind", RELATIVISTIC)
def test_relativistic_losses_invariant_to_a_common_shift(average, kind):
    r, f = _scores(15), _scores(16)
    for fn in (L.relativistic_discriminator_loss, L.relativistic_generator_loss):
        base = fn(r, f, average, kind=kind)
        shifted = fn(r + 3.7, f + 3.7, average, kind=kind)
        np.testing.assert_allclose(shifted, base, rtol=1e-5, atol=1e-5)


def test_relativistic_generator_is_discriminator_with_roles_swapped():
    r, f = _scores(17), _scores(18)
    for average, kind in RELATIVISTIC:
        np.testing.assert_allclose(L.relativistic_generator_loss(r, f, average, kind=kind),
                                   L.relativistic_discriminator_loss(f, r, average, kind=kind),
                                   rtol=1e-6)


def test_hinge_loss_zero_beyond_margin():
    r = jnp.asarray(1.0 + np.abs(_scores(19)))
    f = jnp.asarray(-1.0 - np.abs(_scores(20)))
    assert float(L.hinge_critic_loss(r, f)) == 0.0
    r = r.at[0].set(1.0)
    f = f.at[0].set(-1.0)
    assert float(L.hinge_critic_loss(r, f)) == 0.0
    assert float(L.hinge_critic_loss(r.at[0].set(0.5), f)) == pytest.approx(0.5 / B)


def test_wasserstein_and_least_squares_identities():
    r, f = _scores(21), _scores(22)
    np.testing.assert_allclose(L.wasserstein_critic_loss(r, f),
                               -L.wasserstein_critic_loss(f, r), rtol=1e-6)
    np.testing.assert_allclose(L.least_squares_discriminator_loss(jnp.ones(B), jnp.zeros(B)), 0.0)
    np.testing.assert_allclose(L.least_squares_generator_loss(jnp.ones(B)), 0.0)
    # Mao et al.'s a-b-c coding.
    np.testing.assert_allclose(
        L.least_squares_discriminator_loss(r, f, real_target=1.0, fake_target=-1.0),
        0.5 * ((r - 1.0) ** 2).mean() + 0.5 * ((f + 1.0) ** 2).mean(), rtol=1e-5)


def test_js_fgan_is_the_gan():
    r, f = _scores(23), _scores(24)
    log2 = math.log(2)
    np.testing.assert_allclose(L.fgan_critic_loss(r, f, "js"),
                               L.minimax_discriminator_loss(r, f) - 2 * log2, rtol=1e-5)
    np.testing.assert_allclose(L.fgan_generator_loss(f, "js"),
                               L.non_saturating_generator_loss(f) - log2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(L.fgan_generator_loss(f, "js", alternative=False),
                               L.minimax_generator_loss(f) + log2, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- f-GAN table


@pytest.mark.parametrize("name", L.FGAN_DIVERGENCES)
def test_fgan_table_is_consistent(x64, name):
    div = L.f_divergence(name)
    u = np.array([0.05, 0.3, 1.0, 1.7, 4.0, 20.0])
    # f(1) = 0 and the Fenchel-Young equality f*(f'(u)) = u f'(u) - f(u).
    np.testing.assert_allclose(div.f(1.0), 0.0, atol=1e-12)
    t = div.f_prime(u)
    np.testing.assert_allclose(div.conjugate(t), u * t - div.f(u), rtol=1e-10, atol=1e-12)
    # f* is the supremum: over a dense grid of u, u t - f(u) never exceeds f*(t) and reaches it.
    grid = np.exp(np.linspace(np.log(1e-4), np.log(1e3), 20001))
    for tk in t[:4]:
        values = grid * tk - np.asarray(div.f(grid))
        assert values.max() <= float(div.conjugate(tk)) + 1e-9
        np.testing.assert_allclose(values.max(), div.conjugate(tk), rtol=1e-4, atol=1e-5)
    # The activation maps raw scores into dom f*, the fused form equals f*(g_f(v)),
    # and activation_inverse inverts the activation.
    v = np.linspace(-5, 5, 11)
    g = np.asarray(div.activation(v))
    np.testing.assert_allclose(div.conjugate_of_activation(v), div.conjugate(g), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(div.activation_inverse(g), v, rtol=1e-9, atol=1e-9)
    ga, fs = _NP_FGAN[name]
    np.testing.assert_allclose(g, ga(v), rtol=1e-12)


def _true_divergence(name, p, q):
    if name == "kl":
        return np.sum(p * np.log(p / q))
    if name == "reverse_kl":
        return np.sum(q * np.log(q / p))
    if name == "js":  # the table's f gives 2 * JSD
        m = (p + q) / 2
        return np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m))
    if name == "pearson":
        return np.sum((p - q) ** 2 / q)
    if name == "hellinger":
        return np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)
    raise AssertionError(name)


@pytest.mark.parametrize("name", L.FGAN_DIVERGENCES)
def test_fgan_optimal_critic_value_is_the_divergence(x64, name):
    """On discrete P (data) and Q (model), the critic loss at V*(x) = g_f^{-1}(f'(p/q)) equals
    -D_f(P||Q); it is stationary there and larger anywhere else (variational lower bound)."""
    n = 8  # probabilities are multiples of 1/8, so batches of 8 have the exact frequencies
    p = np.array([3, 1, 2, 2]) / n
    q = np.array([1, 3, 3, 1]) / n
    real_idx = np.repeat(np.arange(4), (p * n).astype(int))
    fake_idx = np.repeat(np.arange(4), (q * n).astype(int))
    div = L.f_divergence(name)

    def critic_loss(v):  # v: the raw critic score at each of the 4 points
        return L.fgan_critic_loss(v[real_idx], v[fake_idx], name)

    v_star = div.activation_inverse(div.f_prime(jnp.asarray(p / q)))
    truth = _true_divergence(name, p, q)
    assert truth > 0.05
    np.testing.assert_allclose(-critic_loss(v_star), truth, rtol=1e-10)
    np.testing.assert_allclose(jax.grad(critic_loss)(v_star), 0.0, atol=1e-10)
    rng = np.random.default_rng(25)
    for _ in range(5):
        assert float(-critic_loss(v_star + 0.3 * rng.standard_normal(4))) < truth


def test_fgan_exponential_tail_is_finite_and_continuous():
    f = jnp.array([49.999, 50.0, 50.001, 1e4])
    for name in ("kl", "hellinger"):
        out = jax.vmap(lambda x: L.fgan_critic_loss(jnp.zeros(1), x[None], name))(f)
        grads = jax.vmap(jax.grad(lambda x: L.fgan_critic_loss(jnp.zeros(1), x[None], name)))(f)
        assert bool(jnp.all(jnp.isfinite(out))) and bool(jnp.all(jnp.isfinite(grads)))
        assert bool(jnp.all(jnp.diff(out) > 0)) and bool(jnp.all(grads > 0))
        np.testing.assert_allclose(out[1], out[0], rtol=1e-3)
        np.testing.assert_allclose(out[2], out[1], rtol=1e-3)


# ----------------------------------------------------------------------------- numerics


def _all_pair_losses(r, f):
    """Values and gradients of every (real, fake) loss, in one function so that one
    compilation covers them all."""
    return {name: jax.value_and_grad(fn, argnums=(0, 1))(r, f)
            for name, fn, _, _ in PAIR_LOSSES}


def _all_fake_losses(f):
    return {name: jax.value_and_grad(fn)(f) for name, fn, _ in FAKE_LOSSES}


_ALL_PAIR_JIT = jax.jit(_all_pair_losses)
_ALL_FAKE_JIT = jax.jit(_all_fake_losses)


def test_all_losses_finite_at_extreme_logits():
    big = jnp.array([1e4, -1e4, 1e4, -1e4, 0.0, 3.0, -3.0, 1e4])
    other = jnp.array([-1e4, 1e4, 1e4, -1e4, 1e4, -1e4, 0.0, 1e4])
    assert big.shape == (B,)  # same shapes as the jit/vmap test: one compilation
    pair_fn, fake_fn = _ALL_PAIR_JIT, _ALL_FAKE_JIT
    for r, f in ((big, other), (other, big)):
        for name, (value, grads) in pair_fn(r, f).items():
            assert bool(jnp.isfinite(value)), (name, value)
            assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads), (name, grads)
    for name, (value, grad) in fake_fn(big).items():
        assert bool(jnp.isfinite(value)) and bool(jnp.all(jnp.isfinite(grad))), (name, value)
    # Eagerly too (no XLA fusion), for a sample of the families.
    for name, fn, _, _ in PAIR_LOSSES[::3]:
        value, grads = jax.value_and_grad(fn, argnums=(0, 1))(big, other)
        assert bool(jnp.isfinite(value)) and all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


def test_minimax_values_exact_at_extreme_logits():
    # softplus form: -log D(x) for logit -1e4 is 1e4, not inf or log(0).
    np.testing.assert_allclose(L.non_saturating_generator_loss(jnp.array([-1e4])), 1e4)
    np.testing.assert_allclose(L.minimax_generator_loss(jnp.array([1e4])), -1e4)
    np.testing.assert_allclose(L.minimax_discriminator_loss(jnp.array([1e4]), jnp.array([-1e4])),
                               0.0, atol=1e-30)


@pytest.mark.parametrize("name", L.LOSS_NAMES)
def test_bf16_scores_are_upcast(name):
    pair = L.get_loss(name)
    r16 = jnp.asarray(_scores(26), jnp.bfloat16)
    f16 = jnp.asarray(_scores(27), jnp.bfloat16)
    for fn in pair:
        out = fn(r16, f16)
        chex.assert_type(out, jnp.float32)
        np.testing.assert_array_equal(out, fn(r16.astype(jnp.float32), f16.astype(jnp.float32)))


def test_bf16_loss_is_float32_accurate():
    # bf16 arithmetic has ~3 significant digits; the upcast loss is float32-accurate.
    f = jnp.full((B,), 12.0, jnp.bfloat16)
    np.testing.assert_allclose(L.non_saturating_generator_loss(f), np.log1p(np.exp(-12.0)),
                               rtol=1e-5)


# ----------------------------------------------------------------------------- transformations


def test_every_loss_under_jit_vmap_grad():
    """vmap over a leading axis of independent batches equals a Python loop, under jit, for
    values and gradients of every public loss (one compilation for all of them)."""
    k = 3
    rs = jnp.asarray(_scores(28, shape=(k, B)))
    fs = jnp.asarray(_scores(29, shape=(k, B)))
    batched = jax.jit(jax.vmap(_all_pair_losses))(rs, fs)
    single = _ALL_PAIR_JIT
    for i in range(k):
        expected = single(rs[i], fs[i])
        for name, (value, (gr, gf)) in expected.items():
            got_value, (got_gr, got_gf) = batched[name]
            np.testing.assert_allclose(got_value[i], value, rtol=1e-6, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(got_gr[i], gr, rtol=1e-5, atol=1e-7, err_msg=name)
            np.testing.assert_allclose(got_gf[i], gf, rtol=1e-5, atol=1e-7, err_msg=name)
        for name, fn, ref, _ in PAIR_LOSSES:  # jit agrees with the NumPy reference
            np.testing.assert_allclose(expected[name][0],
                                       ref(np.float64(rs[i]), np.float64(fs[i])),
                                       rtol=2e-5, atol=2e-5, err_msg=name)

    batched = jax.jit(jax.vmap(_all_fake_losses))(fs)
    single = _ALL_FAKE_JIT
    for i in range(k):
        for name, (value, grad) in single(fs[i]).items():
            np.testing.assert_allclose(batched[name][0][i], value, rtol=1e-6, atol=1e-6,
                                       err_msg=name)
            np.testing.assert_allclose(batched[name][1][i], grad, rtol=1e-5, atol=1e-7,
                                       err_msg=name)


def test_auxiliary_losses_jit_vmap_grad():
    rng = np.random.default_rng(32)
    logits = jnp.asarray(rng.standard_normal((3, B, 5)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 5, (3, B)))
    a = jnp.asarray(rng.standard_normal((3, B, 4)), jnp.float32)
    b = jnp.asarray(rng.standard_normal((3, B, 4)), jnp.float32)

    def all_aux(logits, labels, a, b):
        return [jax.value_and_grad(fn)(x, y) for fn, x, y in (
            (L.acgan_classification_loss, logits, labels), (L.feature_matching_loss, a, b),
            (L.l1_reconstruction_loss, a, b), (L.cycle_consistency_loss, a, b))]

    batched = jax.jit(jax.vmap(all_aux))(logits, labels, a, b)
    for i in range(3):
        for (value, grad), (bv, bg) in zip(all_aux(logits[i], labels[i], a[i], b[i]), batched):
            np.testing.assert_allclose(bv[i], value, rtol=1e-6)
            np.testing.assert_allclose(bg[i], grad, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- registry


def test_loss_names_cover_the_issue():
    required = {"minimax", "non_saturating", "wasserstein", "hinge", "least_squares",
                "relativistic", "relativistic_average", "relativistic_average_least_squares",
                "relativistic_average_hinge", "fgan_kl", "fgan_reverse_kl", "fgan_js",
                "fgan_pearson", "fgan_hellinger"}
    assert required <= set(L.LOSS_NAMES)
    assert len(set(L.LOSS_NAMES)) == len(L.LOSS_NAMES)


def test_registry_pairs_are_the_named_functions():
    r, f = _scores(34), _scores(35)
    expect = {
        "minimax": (L.minimax_discriminator_loss(r, f), L.minimax_generator_loss(f)),
        "non_saturating": (L.minimax_discriminator_loss(r, f),
                           L.non_saturating_generator_loss(f)),
        "wasserstein": (L.wasserstein_critic_loss(r, f), L.wasserstein_generator_loss(f)),
        "hinge": (L.hinge_critic_loss(r, f), L.hinge_generator_loss(f)),
        "least_squares": (L.least_squares_discriminator_loss(r, f),
                          L.least_squares_generator_loss(f)),
        "relativistic": (L.relativistic_discriminator_loss(r, f, average=False),
                         L.relativistic_generator_loss(r, f, average=False)),
        "relativistic_average": (L.relativistic_discriminator_loss(r, f),
                                 L.relativistic_generator_loss(r, f)),
        "relativistic_average_least_squares": (
            L.relativistic_average_least_squares_discriminator_loss(r, f),
            L.relativistic_average_least_squares_generator_loss(r, f)),
        "relativistic_average_hinge": (L.relativistic_average_hinge_discriminator_loss(r, f),
                                       L.relativistic_average_hinge_generator_loss(r, f)),
    }
    for d in L.FGAN_DIVERGENCES:
        expect[f"fgan_{d}"] = (L.fgan_critic_loss(r, f, d), L.fgan_generator_loss(f, d))
    assert set(expect) == set(L.LOSS_NAMES)
    for name, (critic, generator) in expect.items():
        pair = L.get_loss(name)
        assert isinstance(pair, L.GANLoss)
        np.testing.assert_array_equal(pair.critic(r, f), critic, err_msg=name)
        np.testing.assert_array_equal(pair.generator(r, f), generator, err_msg=name)
    # The minimax generator is the saturating one, not the non-saturating one.
    assert float(L.get_loss("minimax").generator(r, f)) < 0.0
    assert float(L.get_loss("non_saturating").generator(r, f)) > 0.0


def test_generators_that_need_no_real_scores_accept_none():
    f = _scores(36)
    for name in ("minimax", "non_saturating", "wasserstein", "hinge", "least_squares",
                 "fgan_kl"):
        np.testing.assert_array_equal(L.get_loss(name).generator(None, f),
                                      L.get_loss(name).generator(f, f))


def test_get_loss_errors():
    with pytest.raises(ValueError, match="unknown loss 'wgan'.*non_saturating"):
        L.get_loss("wgan")
    for name in L.LOSS_NAMES:
        if name in ("minimax", "non_saturating"):
            smooth = L.get_loss(name, label_smoothing=0.1)
            r, f = _scores(37), _scores(38)
            np.testing.assert_array_equal(
                smooth.critic(r, f), L.minimax_discriminator_loss(r, f, label_smoothing=0.1))
        else:
            with pytest.raises(ValueError, match="label_smoothing"):
                L.get_loss(name, label_smoothing=0.1)
            L.get_loss(name, label_smoothing=0.0)
    with pytest.raises(ValueError, match="unknown f-divergence 'tv'"):
        L.fgan_critic_loss(jnp.zeros(B), jnp.zeros(B), "tv")
    with pytest.raises(ValueError, match="kind"):
        L.relativistic_discriminator_loss(jnp.zeros(B), jnp.zeros(B), kind="wasserstein")


def test_penalties_are_reexported():
    assert L.gradient_penalty is penalties.gradient_penalty
    assert L.r1_penalty is penalties.r1_penalty


# ----------------------------------------------------------------------------- shape contract


@pytest.mark.parametrize("name", L.LOSS_NAMES)
def test_mismatched_or_bad_shapes_raise(name):
    critic = L.get_loss(name).critic
    with pytest.raises(ValueError, match=r"same (layout|shape).*\(8,\).*\(8, 1\)"):
        critic(jnp.zeros(B), jnp.zeros((B, 1)))
    with pytest.raises(ValueError, match=r"\(8, 4, 4, 1\).*\(8, 2, 2, 1\)"):
        critic(jnp.zeros((B, 4, 4, 1)), jnp.zeros((B, 2, 2, 1)))
    for bad in ((), (0,), (B, 0)):
        with pytest.raises(ValueError, match="shape"):
            critic(jnp.zeros(bad), jnp.zeros(B))
        with pytest.raises(ValueError, match="shape"):
            critic(jnp.zeros(B), jnp.zeros(bad))
    with pytest.raises(ValueError, match=r"real_weights must have shape \[B\] = \(8,\), got \(7,\)"):
        critic(jnp.zeros(B), jnp.zeros(B), real_weights=jnp.ones(B - 1))


def test_batch_sizes_may_differ_except_paired_relativistic():
    r, f = jnp.zeros(B), jnp.zeros(B + 2)
    for name in L.LOSS_NAMES:
        pair = L.get_loss(name)
        if name == "relativistic":
            for fn in pair:
                with pytest.raises(ValueError, match=r"same shape.*\(8,\).*\(10,\)"):
                    fn(r, f)
        else:
            for fn in pair:
                assert bool(jnp.isfinite(fn(r, f)))


def test_generator_shape_checks():
    for fn in (L.minimax_generator_loss, L.non_saturating_generator_loss,
               L.wasserstein_generator_loss, L.hinge_generator_loss,
               L.least_squares_generator_loss, L.fgan_generator_loss):
        for bad in ((), (0,), (B, 0, 3)):
            with pytest.raises(ValueError, match=r"\[B, \.\.\.\]"):
                fn(jnp.zeros(bad))
        with pytest.raises(ValueError, match="weights must have shape"):
            fn(jnp.zeros((B, 3)), weights=jnp.ones((B, 3)))


PATCH = (B, 3, 3, 1)   # a PatchGAN's map: 9 scores per example


@pytest.mark.parametrize("name,fn,ref,paired", PAIR_LOSSES, ids=PAIR_IDS)
def test_pair_losses_on_patch_maps_average_every_score(name, fn, ref, paired):
    """A [B, H, W, 1] map counts as B·H·W scores: the loss equals the closed form on the flattened scores."""
    r = _scores(11, shape=PATCH)
    f = _scores(12, shape=PATCH if paired else (B + 3, 3, 3, 1))
    np.testing.assert_allclose(fn(r, f), ref(r.reshape(-1).astype(np.float64), f.reshape(-1).astype(np.float64)),
                               rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name,fn,ref", FAKE_LOSSES, ids=FAKE_IDS)
def test_fake_losses_on_patch_maps_average_every_score(name, fn, ref):
    f = _scores(13, shape=PATCH)
    np.testing.assert_allclose(fn(f), ref(f.reshape(-1).astype(np.float64)), rtol=2e-5, atol=2e-5)


def _repeat(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.repeat(x, counts, axis=0)


@pytest.mark.parametrize("name,fn,ref,paired", PAIR_LOSSES, ids=PAIR_IDS)
def test_integer_weights_equal_repeating_examples(name, fn, ref, paired):
    """Weights w_i are the weighted mean of the examples' mean losses: integer weights equal repeating
    example i w_i times (a closed form for every family, patch maps included)."""
    r, f = _scores(21, shape=PATCH), _scores(22, shape=PATCH)
    w_real = np.array([1, 2, 0, 3, 1, 1, 4, 2], np.float32)
    w_fake = w_real if paired else np.array([2, 1, 1, 0, 5, 1, 1, 3], np.float32)
    kw = {"real_weights": w_real} if paired else {"real_weights": w_real, "fake_weights": w_fake}
    expect = ref(_repeat(r, w_real.astype(int)).reshape(-1).astype(np.float64),
                 _repeat(f, w_fake.astype(int)).reshape(-1).astype(np.float64))
    np.testing.assert_allclose(fn(r, f, **kw), expect, rtol=2e-5, atol=2e-5)
    # Scaling all weights changes nothing; unit weights are the unweighted loss.
    np.testing.assert_allclose(fn(r, f, **{k: 3.0 * v for k, v in kw.items()}), expect, rtol=2e-5, atol=2e-5)
    ones = {k: np.ones_like(v) for k, v in kw.items()}
    np.testing.assert_allclose(fn(r, f, **ones), fn(r, f), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,fn,ref", FAKE_LOSSES, ids=FAKE_IDS)
def test_generator_weights_equal_repeating_examples(name, fn, ref):
    f = _scores(23, shape=PATCH)
    w = np.array([0, 1, 2, 3, 1, 0, 2, 1], np.float32)
    np.testing.assert_allclose(fn(f, weights=w), ref(_repeat(f, w.astype(int)).reshape(-1).astype(np.float64)),
                               rtol=2e-5, atol=2e-5)


def test_paired_relativistic_takes_one_set_of_weights():
    with pytest.raises(ValueError, match="one set of weights"):
        L.relativistic_discriminator_loss(jnp.zeros(B), jnp.zeros(B), average=False, real_weights=jnp.ones(B),
                                          fake_weights=jnp.ones(B))


def test_auxiliary_loss_input_checks():
    logits = jnp.zeros((B, 4))
    with pytest.raises(ValueError, match="labels must have shape"):
        L.acgan_classification_loss(logits, jnp.zeros((B, 1), jnp.int32))
    with pytest.raises(ValueError, match="labels must have shape"):
        L.acgan_classification_loss(logits, jnp.zeros((B + 1,), jnp.int32))
    with pytest.raises(ValueError, match="class_logits"):
        L.acgan_classification_loss(jnp.zeros(B), jnp.zeros((B,), jnp.int32))
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        L.acgan_classification_loss(logits, jnp.full((B,), 4))
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        L.acgan_classification_loss(logits, jnp.full((B,), -1))
    with pytest.raises(ValueError, match="probability labels must have the shape"):
        L.acgan_classification_loss(logits, jnp.ones((B, 3)) / 3)
    with pytest.raises(ValueError, match="non-negative with rows summing to 1"):
        L.acgan_classification_loss(logits, jnp.ones((B, 4)) / 2)  # not normalised
    neg = jnp.tile(jnp.array([1.5, -0.5, 0.0, 0.0]), (B, 1))
    with pytest.raises(ValueError, match="non-negative with rows summing to 1"):
        L.acgan_classification_loss(logits, neg)
    # Under jit the values cannot be checked: the loss is NaN rather than silently wrong.
    jitted = jax.jit(L.acgan_classification_loss)
    assert bool(jnp.isnan(jitted(logits, jnp.full((B,), 4))))
    assert bool(jnp.isnan(jitted(logits, jnp.ones((B, 4)) / 2)))
    assert bool(jnp.isfinite(jitted(logits, jnp.full((B,), 3))))

    with pytest.raises(ValueError, match=r"\(8, 3\).*\(8, 4\)"):
        L.feature_matching_loss(jnp.zeros((B, 3)), jnp.zeros((B, 4)))
    with pytest.raises(ValueError, match=r"\(8, 3\).*\(4, 3\)"):
        L.l1_reconstruction_loss(jnp.zeros((B, 3)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\(8, 3\).*\(8, 3, 1\)"):
        L.cycle_consistency_loss(jnp.zeros((B, 3)), jnp.zeros((B, 3, 1)))

"""Tests for gan_jax.optim: weight clipping, and Adam / RMSProp / SGD against the update rules
of torch.optim (written out in NumPy from PyTorch's documented algorithms)."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gan_jax.optim import OPTIMIZER_NAMES, make_optimizer, weight_clipping


def _params(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {"conv": jnp.asarray(scale * rng.standard_normal((3, 4)), jnp.float32),
            "bias": jnp.asarray(scale * rng.standard_normal((4,)), jnp.float32)}


def _grads(seed, steps, like, scale=1.0):
    rng = np.random.default_rng(seed)
    return [jax.tree.map(lambda p: jnp.asarray(scale * rng.standard_normal(p.shape), p.dtype),
                         like) for _ in range(steps)]


def _run(opt, params, grads):
    state = opt.init(params)
    step = jax.jit(opt.update)
    for g in grads:
        updates, state = step(g, state, params)
        params = optax.apply_updates(params, updates)
    return params


# NumPy versions of torch.optim's algorithms (torch docs, defaults: no weight decay, no amsgrad,
# not maximize, not centered, no nesterov; all states start at zero).
def _torch_adam(p, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    p = np.asarray(p, np.float64).copy()
    m, v = np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        denom = np.sqrt(v) / np.sqrt(bc2) + eps
        p = p - (lr / bc1) * m / denom
    return p


def _torch_rmsprop(p, grads, lr, alpha=0.99, eps=1e-8, clamp=None):
    p = np.asarray(p, np.float64).copy()
    sq = np.zeros_like(p)
    for g in grads:
        g = np.asarray(g, np.float64)
        sq = alpha * sq + (1 - alpha) * g * g
        p = p - lr * g / (np.sqrt(sq) + eps)
        if clamp is not None:
            p = np.clip(p, -clamp, clamp)
    return p


def _torch_sgd(p, grads, lr, momentum=0.0):
    p = np.asarray(p, np.float64).copy()
    buf = None
    for g in grads:
        g = np.asarray(g, np.float64)
        buf = g if buf is None else momentum * buf + g  # dampening 0
        p = p - lr * (buf if momentum else g)
    return p


# ----------------------------------------------------------------------------- weight clipping


def test_weight_clipping_keeps_params_in_box_and_is_exact_inside():
    c = 0.01
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.uniform(-c, c, 200_000), jnp.float32)}
    updates = {"w": jnp.asarray(rng.normal(0, 0.02, 200_000), jnp.float32)}
    clip = weight_clipping(c)
    state = clip.init(params)

    @jax.jit
    def apply(params, updates, state):  # clip and apply in one compiled function
        new_updates, state = clip.update(updates, state, params)
        return optax.apply_updates(params, new_updates), new_updates

    new, new_updates = apply(params, updates, state)
    chex.assert_trees_all_equal_shapes_and_dtypes(new_updates, updates)
    p, u, n = (np.asarray(t["w"]) for t in (params, updates, new))
    c32 = np.float32(c)
    assert np.all(n <= c32) and np.all(n >= -c32)
    unclipped = p + u
    inside = np.abs(unclipped) <= c32
    assert 0.2 < inside.mean() < 0.8  # both cases are exercised
    np.testing.assert_array_equal(n[inside], unclipped[inside])
    # Where clipped: at the boundary, within one float32 ulp.
    np.testing.assert_allclose(n[~inside], np.sign(unclipped[~inside]) * c32, rtol=0,
                               atol=float(np.spacing(c32)))
    # Eagerly (no jit) the same holds.
    eager_updates, _ = clip.update(updates, state, params)
    eager = np.asarray(optax.apply_updates(params, eager_updates)["w"])
    assert np.all(np.abs(eager) <= c32)


def test_wgan_chain_rmsprop_then_clipping_matches_torch():
    c, lr = 0.01, 5e-3
    params = _params(1, scale=0.01)
    grads = _grads(2, 6, params)
    chain = optax.chain(optax.rmsprop(lr, decay=0.99, eps=1e-8, eps_in_sqrt=False),
                        weight_clipping(c))
    for opt in (chain, make_optimizer("rmsprop", lr, weight_clip=c)):
        state = opt.init(params)
        p = params
        for g in grads:
            updates, state = jax.jit(opt.update)(g, state, p)
            p = optax.apply_updates(p, updates)
            for leaf in jax.tree.leaves(p):
                assert bool(jnp.all(jnp.abs(leaf) <= jnp.float32(c)))
        for name in params:
            expected = _torch_rmsprop(params[name], [g[name] for g in grads], lr, clamp=c)
            np.testing.assert_allclose(p[name], expected, rtol=1e-5, atol=2e-9)
        at_boundary = np.concatenate([np.abs(np.asarray(x)).ravel() for x in jax.tree.leaves(p)])
        assert np.mean(np.isclose(at_boundary, c, rtol=1e-6)) > 0.2  # clipping was exercised


def test_weight_clipping_errors():
    with pytest.raises(ValueError, match="params"):
        clip = weight_clipping(0.01)
        clip.update({"w": jnp.ones(3)}, clip.init({"w": jnp.ones(3)}))
    for bad in (0.0, -0.01, "0.01", None):
        with pytest.raises(ValueError, match="clip"):
            weight_clipping(bad)


# ----------------------------------------------------------------------------- torch equivalence


@pytest.mark.parametrize("b1,b2", [(0.9, 0.999), (0.5, 0.999), (0.0, 0.9)])
def test_adam_matches_torch(b1, b2):
    lr = 1e-3
    params = _params(3)
    grads = _grads(4, 5, params)
    p = _run(make_optimizer("adam", lr, b1=b1, b2=b2), params, grads)
    for name in params:
        expected = _torch_adam(params[name], [g[name] for g in grads], lr, b1, b2)
        np.testing.assert_allclose(p[name], expected, rtol=1e-5, atol=1e-7)
    # One step by hand: m̂ = g, v̂ = g², so p1 = p0 - lr g / (|g| + eps).
    one = _run(make_optimizer("adam", lr, b1=b1, b2=b2), params, grads[:1])
    g0 = np.asarray(grads[0]["conv"], np.float64)
    np.testing.assert_allclose(one["conv"], params["conv"] - lr * g0 / (np.abs(g0) + 1e-8),
                               rtol=1e-6)


def test_adam_default_betas_are_torchs():
    params = _params(5)
    grads = _grads(6, 3, params)
    p = _run(make_optimizer("adam", 2e-4), params, grads)
    np.testing.assert_allclose(p["conv"], _torch_adam(params["conv"],
                                                      [g["conv"] for g in grads], 2e-4),
                               rtol=1e-5, atol=1e-7)
    # Tiny gradients: eps is added outside the square root of v̂ (eps_root = 0), as in torch.
    tiny = _grads(16, 3, params, scale=1e-7)
    p = _run(make_optimizer("adam", 1e-3), params, tiny)
    np.testing.assert_allclose(p["conv"], _torch_adam(params["conv"],
                                                      [g["conv"] for g in tiny], 1e-3),
                               rtol=1e-6, atol=1e-7)


def test_rmsprop_matches_torch_including_eps_placement():
    lr = 5e-5
    params = _params(7)
    grads = _grads(8, 5, params)
    p = _run(make_optimizer("rmsprop", lr), params, grads)
    for name in params:
        expected = _torch_rmsprop(params[name], [g[name] for g in grads], lr)
        np.testing.assert_allclose(p[name], expected, rtol=1e-6, atol=1e-9)
    # One step by hand: v = (1 - α) g²,  p1 = p0 - lr g / (sqrt(v) + eps).
    g0 = np.asarray(grads[0]["bias"], np.float64)
    one = _run(make_optimizer("rmsprop", lr), params, grads[:1])
    np.testing.assert_allclose(one["bias"],
                               params["bias"] - lr * g0 / (np.sqrt(0.01 * g0 ** 2) + 1e-8),
                               rtol=1e-6)
    # Tiny gradients tell eps outside the root (torch) from inside it (optax's default).
    tiny = _grads(9, 3, params, scale=1e-7)
    p = _run(make_optimizer("rmsprop", 1.0), params, tiny)
    q = _run(optax.rmsprop(1.0, decay=0.99), params, tiny)  # eps_in_sqrt=True
    expected = _torch_rmsprop(params["conv"], [g["conv"] for g in tiny], 1.0)
    np.testing.assert_allclose(p["conv"], expected, rtol=1e-5)
    assert not np.allclose(np.asarray(q["conv"]), expected, rtol=1e-2)


def test_sgd_matches_torch():
    lr = 0.1
    params = _params(10)
    grads = _grads(11, 4, params)
    for momentum in (None, 0.5):
        p = _run(make_optimizer("sgd", lr, momentum=momentum), params, grads)
        for name in params:
            expected = _torch_sgd(params[name], [g[name] for g in grads], lr, momentum or 0.0)
            np.testing.assert_allclose(p[name], expected, rtol=1e-6, atol=1e-7)


def test_weight_clip_option_chains_clipping_for_every_optimizer():
    params = _params(12, scale=0.01)
    grads = _grads(13, 3, params)
    for name in OPTIMIZER_NAMES:
        p = _run(make_optimizer(name, 0.1, weight_clip=0.005), params, grads)
        for leaf in jax.tree.leaves(p):
            assert bool(jnp.all(jnp.abs(leaf) <= jnp.float32(0.005)))
            assert bool(jnp.any(jnp.abs(leaf) == jnp.float32(0.005)))


def test_learning_rate_schedule_is_accepted():
    params = _params(14)
    grads = _grads(15, 2, params)
    schedule = optax.constant_schedule(1e-3)
    np.testing.assert_allclose(_run(make_optimizer("adam", schedule), params, grads)["conv"],
                               _run(make_optimizer("adam", 1e-3), params, grads)["conv"])


def test_make_optimizer_errors():
    with pytest.raises(ValueError, match=r"unknown optimizer 'adamw'.*'adam', 'rmsprop', 'sgd'"):
        make_optimizer("adamw", 1e-3)
    for lr in (0.0, -1e-3):
        with pytest.raises(ValueError, match="learning_rate"):
            make_optimizer("adam", lr)
    for clip in (0.0, -0.01):
        with pytest.raises(ValueError, match="weight_clip"):
            make_optimizer("rmsprop", 5e-5, weight_clip=clip)
    # Options that do not apply are rejected, not ignored.
    with pytest.raises(ValueError, match=r"\['b1'\] do not apply"):
        make_optimizer("rmsprop", 5e-5, b1=0.5)
    with pytest.raises(ValueError, match=r"\['decay'\] do not apply"):
        make_optimizer("adam", 1e-3, decay=0.9)
    with pytest.raises(ValueError, match=r"\['b2', 'eps'\] do not apply"):
        make_optimizer("sgd", 1e-3, b2=0.9, eps=1e-8)
    with pytest.raises(ValueError, match="b1 must be in"):
        make_optimizer("adam", 1e-3, b1=1.0)
    with pytest.raises(ValueError, match="eps"):
        make_optimizer("adam", 1e-3, eps=0.0)


# ----------------------------------------------------------------------------- pylearn2 schedules


def _scheduled_sgd(p, grads, lr, decay, floor, momentum, final, ramp):
    """b = μ_t b + g, p -= lr_t b with lr_t = max(lr d^-t, floor), μ_t linear from momentum to final on ramp."""
    p, b = np.asarray(p, np.float64).copy(), 0.0
    for t, g in enumerate(grads):
        mu = momentum + (final - momentum) * np.clip((t - ramp[0]) / (ramp[1] - ramp[0]), 0.0, 1.0)
        b = mu * b + np.asarray(g, np.float64)
        p = p - max(lr * decay ** -t, floor) * b
    return p


def test_sgd_with_pylearn2_decay_and_momentum_ramp_matches_the_formula():
    params = _params(16)
    grads = _grads(17, 7, params)
    # lr 0.1 / 1.5^t reaches the floor 0.03 at t = 3; momentum 0.5 → 0.7 over updates 1..4.
    opt = make_optimizer("sgd", 0.1, momentum=0.5, learning_rate_decay=1.5, min_learning_rate=0.03,
                         final_momentum=0.7, momentum_ramp=(1, 4))
    p = _run(opt, params, grads)
    for name in params:
        expected = _scheduled_sgd(params[name], [g[name] for g in grads], 0.1, 1.5, 0.03, 0.5, 0.7, (1, 4))
        np.testing.assert_allclose(p[name], expected, rtol=1e-5, atol=1e-6)
    # Without the schedules the result differs (the test can fail).
    assert not np.allclose(np.asarray(_run(make_optimizer("sgd", 0.1, momentum=0.5), params, grads)["conv"]),
                           np.asarray(p["conv"]), rtol=1e-2)
    # The decay alone applies to any optimiser: Adam with lr_t = 1e-3 · 2^-t.
    adam = _run(make_optimizer("adam", 1e-3, learning_rate_decay=2.0), params, grads)
    scheduled = _run(make_optimizer("adam", optax.exponential_decay(1e-3, 1, 0.5)), params, grads)
    np.testing.assert_allclose(adam["conv"], scheduled["conv"], rtol=1e-6)


def test_schedule_option_errors():
    for bad in (1.0, 0.9, -2.0, True):
        with pytest.raises(ValueError, match=f"learning_rate_decay must be a number > 1.*{bad!r}"):
            make_optimizer("sgd", 0.1, learning_rate_decay=bad)
    with pytest.raises(ValueError, match="min_learning_rate=1e-06 needs a learning_rate_decay"):
        make_optimizer("sgd", 0.1, min_learning_rate=1e-6)
    with pytest.raises(ValueError, match=r"min_learning_rate must be in \[0, learning_rate=0.1\), got 0.5"):
        make_optimizer("sgd", 0.1, learning_rate_decay=1.1, min_learning_rate=0.5)
    with pytest.raises(ValueError, match="learning_rate_decay needs a numeric learning_rate"):
        make_optimizer("sgd", optax.constant_schedule(0.1), learning_rate_decay=1.1)
    with pytest.raises(ValueError, match="final_momentum and momentum_ramp go together"):
        make_optimizer("sgd", 0.1, momentum=0.5, final_momentum=0.7)
    with pytest.raises(ValueError, match=r"momentum_ramp must be \(start, end\).*\(5, 5\)"):
        make_optimizer("sgd", 0.1, momentum=0.5, final_momentum=0.7, momentum_ramp=(5, 5))
    with pytest.raises(ValueError, match="final_momentum needs an initial momentum"):
        make_optimizer("sgd", 0.1, final_momentum=0.7, momentum_ramp=(0, 5))
    with pytest.raises(ValueError, match="final_momentum must be in"):
        make_optimizer("sgd", 0.1, momentum=0.5, final_momentum=1.0, momentum_ramp=(0, 5))
    with pytest.raises(ValueError, match=r"\['final_momentum', 'momentum_ramp'\] do not apply"):
        make_optimizer("adam", 1e-3, final_momentum=0.7, momentum_ramp=(0, 5))

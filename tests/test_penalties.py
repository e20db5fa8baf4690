"""Tests for gan_jax.penalties: WGAN-GP and R1 against closed forms and per-example loops,
key handling (one key, one key per example, typed and raw), dtypes, transformations."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.penalties import gradient_penalty, r1_penalty

B = 8
SHAPE = (B, 4, 4, 2)


def _data(seed, shape=SHAPE, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.standard_normal(shape).astype(dtype))


def _linear(w, b=0.3, keepdims=False):
    def critic(x):
        out = jnp.sum(x * w, axis=tuple(range(1, x.ndim))) + b
        return out[:, None] if keepdims else out
    return critic


def _mlp_params(seed, d=32, h=6):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.standard_normal((d, h)) / np.sqrt(d), jnp.float32),
            "v": jnp.asarray(rng.standard_normal((h,)), jnp.float32)}


def _mlp(params):
    """A nonlinear critic whose examples are independent."""
    def critic(x):
        hidden = jnp.tanh(x.reshape(x.shape[0], -1) @ params["w"].astype(x.dtype))
        return (hidden ** 2) @ params["v"].astype(x.dtype)
    return critic


def _reference_gp(critic, real, fake, eps, target=1.0):
    """Per-example loop: x̂_i, the gradient of the critic at x̂_i alone, its norm."""
    out = []
    for i in range(real.shape[0]):
        x_hat = eps[i] * real[i] + (1 - eps[i]) * fake[i]
        g = jax.grad(lambda x: critic(x[None])[0])(x_hat)
        out.append((np.linalg.norm(np.asarray(g, np.float64)) - target) ** 2)
    return np.mean(out)


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("norm", [0.25, 1.0, 2.5])
@pytest.mark.parametrize("target", [1.0, 2.0])
def test_linear_critic_penalty_is_norm_minus_target_squared(norm, target):
    w = _data(0, SHAPE[1:])
    w = w * (norm / jnp.linalg.norm(w))
    real, fake = _data(1), _data(2)
    for keepdims in (False, True):
        out = gradient_penalty(_linear(w, keepdims=keepdims), real, fake, jax.random.key(3),
                               target_norm=target)
        chex.assert_shape(out, ())
        chex.assert_type(out, jnp.float32)
        np.testing.assert_allclose(out, (norm - target) ** 2, rtol=1e-5, atol=1e-10)


def test_unit_norm_linear_critic_has_zero_penalty():
    w = _data(4, SHAPE[1:])
    w = w / jnp.linalg.norm(w)
    out = gradient_penalty(_linear(w), _data(5), _data(6), jax.random.key(7))
    assert abs(float(out)) < 1e-10


def test_r1_closed_forms():
    w = _data(8, SHAPE[1:])
    real = _data(9)
    np.testing.assert_allclose(r1_penalty(_linear(w, keepdims=True), real),
                               np.sum(np.asarray(w, np.float64) ** 2), rtol=1e-5)
    # f(x) = ½‖x‖²  =>  ∇f(x) = x  =>  R1 = E‖x‖².
    quadratic = lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2, 3))  # noqa: E731
    out = r1_penalty(quadratic, real)
    chex.assert_shape(out, ())
    chex.assert_type(out, jnp.float32)
    np.testing.assert_allclose(out, np.mean(np.sum(np.asarray(real, np.float64) ** 2,
                                                   axis=(1, 2, 3))), rtol=1e-5)


# ----------------------------------------------------------------------------- against loops


def test_gradient_penalty_matches_per_example_reference_single_key():
    critic = _mlp(_mlp_params(10))
    real, fake = _data(11), _data(12)
    key = jax.random.key(13)
    eps = jax.random.uniform(key, (B,), jnp.float32)
    out = gradient_penalty(critic, real, fake, key, target_norm=0.5)
    np.testing.assert_allclose(out, _reference_gp(critic, real, fake, eps, 0.5), rtol=1e-5)
    # A raw uint32 key with the same bits gives the same interpolation weights.
    raw = jax.random.key_data(key)
    assert raw.dtype == jnp.uint32 and raw.shape == (2,)
    np.testing.assert_array_equal(gradient_penalty(critic, real, fake, raw, target_norm=0.5), out)
    np.testing.assert_array_equal(
        gradient_penalty(critic, real, fake, jax.random.PRNGKey(21)),
        gradient_penalty(critic, real, fake, jax.random.key(21)))


def _example_keys(base, start, n):
    return jax.vmap(jax.random.fold_in, (None, 0))(base, jnp.arange(start, start + n))


def test_per_example_keys_use_one_uniform_per_key_and_are_split_invariant():
    critic = _mlp(_mlp_params(14))
    real, fake = _data(15), _data(16)
    keys = _example_keys(jax.random.key(17), 0, B)
    eps = np.array([jax.random.uniform(k, (), jnp.float32) for k in keys])
    full = gradient_penalty(critic, real, fake, keys)
    np.testing.assert_allclose(full, _reference_gp(critic, real, fake, eps), rtol=1e-5)
    # Splitting the batch over "devices" (with each example keeping its key) and averaging
    # the equal-sized shards' penalties gives the full batch's penalty.
    shards = [gradient_penalty(critic, real[i:i + 2], fake[i:i + 2], keys[i:i + 2])
              for i in range(0, B, 2)]
    np.testing.assert_allclose(np.mean(shards), full, rtol=1e-6)
    # Raw per-example keys [B, 2] are accepted and equivalent.
    raw = jax.random.key_data(keys)
    assert raw.shape == (B, 2)
    np.testing.assert_array_equal(gradient_penalty(critic, real, fake, raw), full)
    # The same keys built from raw key data.
    raw_keys = _example_keys(jax.random.PRNGKey(17), 0, B)
    np.testing.assert_array_equal(gradient_penalty(critic, real, fake, raw_keys), full)


def test_r1_matches_per_example_reference():
    critic = _mlp(_mlp_params(18))
    real = _data(19)
    grads = [jax.grad(lambda x: critic(x[None])[0])(real[i]) for i in range(B)]
    expected = np.mean([np.sum(np.asarray(g, np.float64) ** 2) for g in grads])
    np.testing.assert_allclose(r1_penalty(critic, real), expected, rtol=1e-5)


# ----------------------------------------------------------------------------- gradients


def _directional_fd(fn, params, direction, h=1e-6):
    plus = jax.tree.map(lambda p, d: p + h * d, params, direction)
    minus = jax.tree.map(lambda p, d: p - h * d, params, direction)
    return (float(fn(plus)) - float(fn(minus))) / (2 * h)


def test_penalty_gradients_wrt_critic_params_match_finite_differences():
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: p.astype(jnp.float64), _mlp_params(20))
        real = _data(21).astype(jnp.float64)
        fake = _data(22).astype(jnp.float64)
        key = jax.random.key(23)
        rng = np.random.default_rng(24)
        direction = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape)), params)
        for fn in (lambda p: gradient_penalty(_mlp(p), real, fake, key),
                   lambda p: r1_penalty(_mlp(p), real)):
            grad = jax.grad(fn)(params)
            chex.assert_trees_all_equal_dtypes(grad, params)
            analytic = sum(float(jnp.vdot(g, d)) for g, d in
                           zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
            np.testing.assert_allclose(analytic, _directional_fd(fn, params, direction),
                                       rtol=1e-6)


def test_zero_input_gradient_gives_finite_penalty_gradient():
    """A critic that is flat at the interpolates (dead ReLUs, a constant) has ‖∇‖ = 0: the
    penalty is target² and its gradient is finite (the norm's gradient at 0 is not NaN)."""
    real, fake = _data(25), _data(26)

    def penalty(w):
        critic = lambda x: jax.nn.relu(jnp.sum(x * w, axis=(1, 2, 3)) - 1e3)  # noqa: E731
        return gradient_penalty(critic, real, fake, jax.random.key(27))

    w = _data(28, SHAPE[1:])
    value, grad = jax.value_and_grad(penalty)(w)
    np.testing.assert_allclose(value, 1.0)
    assert bool(jnp.all(jnp.isfinite(grad)))


# ----------------------------------------------------------------------------- dtypes


def test_bf16_inputs_are_fed_in_bf16_and_penalty_is_float32():
    seen = []
    params = _mlp_params(29)

    def critic(x):
        seen.append(x.dtype)
        return _mlp(params)(x)

    real, fake = _data(30), _data(31)
    out16 = gradient_penalty(critic, real.astype(jnp.bfloat16), fake.astype(jnp.bfloat16),
                             jax.random.key(32))
    assert seen and all(d == jnp.bfloat16 for d in seen)
    chex.assert_type(out16, jnp.float32)
    out32 = gradient_penalty(_mlp(params), real, fake, jax.random.key(32))
    np.testing.assert_allclose(out16, out32, rtol=5e-2)
    seen.clear()
    r1 = r1_penalty(critic, real.astype(jnp.bfloat16))
    assert seen and all(d == jnp.bfloat16 for d in seen)
    chex.assert_type(r1, jnp.float32)


# ----------------------------------------------------------------------------- transformations


def test_penalties_under_jit_vmap_grad():
    params = _mlp_params(33)
    k = 3
    reals, fakes = _data(34, (k,) + SHAPE), _data(35, (k,) + SHAPE)
    keys = jax.random.split(jax.random.key(36), k)

    def both(params, real, fake, key):
        return (gradient_penalty(_mlp(params), real, fake, key),
                r1_penalty(_mlp(params), real))

    def total(params, real, fake, key):
        gp, r1 = both(params, real, fake, key)
        return 10.0 * gp + r1

    batched = jax.jit(jax.vmap(both, in_axes=(None, 0, 0, 0)))(params, reals, fakes, keys)
    batched_grads = jax.jit(jax.vmap(jax.grad(total), in_axes=(None, 0, 0, 0)))(
        params, reals, fakes, keys)
    jitted = jax.jit(both)
    for i in range(k):
        eager = both(params, reals[i], fakes[i], keys[i])
        np.testing.assert_allclose(jitted(params, reals[i], fakes[i], keys[i]), eager, rtol=1e-5)
        np.testing.assert_allclose([batched[0][i], batched[1][i]], eager, rtol=1e-5)
        eager_grads = jax.grad(total)(params, reals[i], fakes[i], keys[i])
        chex.assert_trees_all_close(jax.tree.map(lambda g: g[i], batched_grads), eager_grads,
                                    rtol=1e-4, atol=1e-6)
    # Per-example keys under jit, and gradients with respect to the inputs.
    ex_keys = _example_keys(jax.random.key(37), 0, B)
    g_real, g_fake = jax.jit(jax.grad(lambda r, f: gradient_penalty(_mlp(params), r, f, ex_keys),
                                      argnums=(0, 1)))(reals[0], fakes[0])
    chex.assert_shape([g_real, g_fake], SHAPE)
    assert bool(jnp.all(jnp.isfinite(g_real))) and bool(jnp.all(jnp.isfinite(g_fake)))


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise():
    critic = _mlp(_mlp_params(38))
    real, fake = _data(39), _data(40)
    key = jax.random.key(41)
    with pytest.raises(ValueError, match=r"same shape.*\(8, 4, 4, 2\).*\(4, 4, 4, 2\)"):
        gradient_penalty(critic, real, fake[:4], key)
    with pytest.raises(ValueError, match=r"one key per example.*leading dimension 8.*\(5,\)"):
        gradient_penalty(critic, real, fake, jax.random.split(key, 5))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        gradient_penalty(critic, real, fake, jax.random.key_data(jax.random.split(key, 5)))
    with pytest.raises(ValueError, match="PRNG key"):
        gradient_penalty(critic, real, fake, jnp.zeros(2, jnp.float32))
    with pytest.raises(ValueError, match=r"scores of shape \[8\] or \[8, 1\], got \(8, 3\)"):
        gradient_penalty(lambda x: jnp.ones((x.shape[0], 3)) * jnp.sum(x), real, fake, key)
    with pytest.raises(ValueError, match=r"got \(\)"):
        r1_penalty(lambda x: jnp.sum(x), real)
    with pytest.raises(ValueError, match="floating"):
        gradient_penalty(critic, real.astype(jnp.int32), fake.astype(jnp.int32), key)
    with pytest.raises(ValueError, match="non-empty batch"):
        r1_penalty(critic, jnp.zeros((0, 4)))


def test_per_example_keys_make_sharded_penalty_equal_to_full_batch():
    """Under shard_map over 2 devices, each shard with its examples' keys, the mean of the
    shards' penalties equals the single-device full-batch penalty."""
    if len(jax.devices()) < 2:
        pytest.skip("needs 2 devices")
    from jax.sharding import Mesh, PartitionSpec as P

    params = _mlp_params(42)
    real, fake = _data(43), _data(44)
    keys = _example_keys(jax.random.key(45), 0, B)
    mesh = Mesh(np.array(jax.devices()[:2]), ("data",))

    def shard_penalty(real, fake, keys):
        gp = gradient_penalty(_mlp(params), real, fake, keys)
        return jax.lax.pmean(gp, "data")

    sharded = jax.jit(jax.shard_map(shard_penalty, mesh=mesh, in_specs=(P("data"),) * 3,
                                    out_specs=P()))
    out = jax.block_until_ready(sharded(real, fake, keys))
    np.testing.assert_allclose(out, gradient_penalty(_mlp(params), real, fake, keys),
                               rtol=1e-6)

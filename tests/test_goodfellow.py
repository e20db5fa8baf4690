"""Goodfellow et al. 2014 MNIST networks: sizes by formula, inits, dropout, an independent forward pass."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.models.goodfellow import GoodfellowDiscriminator, GoodfellowGenerator, sigmoid_bias_from_marginals

# "rbg" keys: flax init with threefry keys took 17 s to compile for a small DCGAN critic here, with rbg 2 s.
KEY = jax.random.key(0, impl="rbg")


def _count(params) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


@pytest.fixture(scope="module")
def nets():
    g, d = GoodfellowGenerator(), GoodfellowDiscriminator()
    g_vars = jax.jit(functools.partial(g.init, train=False))(KEY, jnp.zeros((1, 100)))
    d_vars = jax.jit(functools.partial(d.init, train=False))(KEY, jnp.zeros((1, 28, 28, 1)))
    return g, g_vars, d, d_vars


def test_parameter_counts_and_inits(nets):
    g, g_vars, d, d_vars = nets
    assert _count(g_vars) == (100 * 1200 + 1200) + (1200 * 1200 + 1200) + (1200 * 784 + 784)
    assert _count(d_vars) == (784 * 1200 + 1200) + (240 * 1200 + 1200) + (240 + 1)
    for variables, r in ((g_vars, 0.05), (d_vars, 0.005)):
        for layer in _dense_layers(variables["params"]):
            w = np.asarray(layer["kernel"])
            assert np.abs(w).max() <= r and np.abs(w).max() > 0.95 * r  # U(-r, r), the yaml's irange
            np.testing.assert_allclose(w.std(), r / np.sqrt(3), rtol=0.1)
            np.testing.assert_array_equal(layer["bias"], 0.0)


def test_lecun_normal_ablation_scales_by_fan_in():
    d = GoodfellowDiscriminator(kernel_init="lecun_normal")
    params = jax.jit(functools.partial(d.init, train=False))(KEY, jnp.zeros((1, 784)))["params"]
    # flax's lecun_normal: a normal truncated at ±2 scales, the scale set so that the variance is 1 / fan_in
    kernels = (params["Maxout_0"]["Dense_0"]["kernel"], params["Maxout_1"]["Dense_0"]["kernel"],
               params["Dense_0"]["kernel"])
    for w, fan_in, rtol in zip(kernels, (784, 240, 240), (0.02, 0.02, 0.15)):  # the output layer has 240 weights
        w = np.asarray(w)
        assert w.shape[0] == fan_in
        np.testing.assert_allclose(w.std(), 1 / np.sqrt(fan_in), rtol=rtol)
        assert np.abs(w).max() <= 2 / 0.87962566 / np.sqrt(fan_in) + 1e-6


def test_unknown_kernel_init():
    with pytest.raises(ValueError, match="kernel_init 'orthogonal'.*irange"):
        GoodfellowGenerator(kernel_init="orthogonal").init(KEY, jnp.zeros((1, 100)), train=False)


def test_generator_output(nets):
    g, g_vars, _, _ = nets
    x = jax.jit(functools.partial(g.apply, train=True))(g_vars, jax.random.normal(KEY, (5, 100)))
    chex.assert_shape(x, (5, 28, 28, 1))
    chex.assert_type(x, jnp.float32)
    assert np.all(np.abs(x) < 1.0)
    p = g_vars["params"]
    z = np.asarray(jax.random.normal(KEY, (5, 100)), np.float64)
    h = np.maximum(z @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0)
    h = np.maximum(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0)
    a = h @ p["output"]["kernel"] + p["output"]["bias"]
    np.testing.assert_allclose(x.reshape(5, -1), 2.0 / (1.0 + np.exp(-a)) - 1.0, rtol=1e-4, atol=1e-6)


def _dense_layers(params):
    """The Dense layers' {kernel, bias} dicts, those inside Maxout layers included."""
    return [layer["Dense_0"] if "Dense_0" in layer else layer for layer in params.values()]


def _maxout_reference(x, params, pieces=5):
    """Independent forward pass on [0, 1] pixels: unit u of a layer = max over columns u*pieces .. u*pieces+pieces-1."""
    h = (np.asarray(x, np.float64).reshape(x.shape[0], -1) + 1.0) / 2.0
    for name in ("Maxout_0", "Maxout_1"):
        layer = params[name]["Dense_0"]
        y = h @ np.asarray(layer["kernel"], np.float64) + layer["bias"]
        h = np.stack([y[:, u * pieces:(u + 1) * pieces].max(axis=1) for u in range(y.shape[1] // pieces)], axis=1)
    return (h @ np.asarray(params["Dense_0"]["kernel"], np.float64) + params["Dense_0"]["bias"])[:, 0]


def test_discriminator_eval_is_deterministic_maxout(nets):
    _, _, d, d_vars = nets
    # Larger weights than the init so that the logits are far from 0 and the check is sharp.
    params = jax.tree.map(lambda w: w * 20.0, d_vars["params"])
    x = jax.random.uniform(KEY, (4, 28, 28, 1), minval=-1, maxval=1)
    apply = jax.jit(functools.partial(d.apply, train=False))
    out = apply({"params": params}, x)
    chex.assert_shape(out, (4,))
    np.testing.assert_allclose(out, _maxout_reference(x, params), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(out, apply({"params": params}, x))


def test_discriminator_dropout_is_stochastic_and_keyed(nets):
    _, _, d, d_vars = nets
    x = jax.random.uniform(KEY, (4, 28, 28, 1), minval=-1, maxval=1)
    apply = jax.jit(lambda v, x, key: d.apply(v, x, train=True, rngs={"dropout": key}))
    a, b = (apply(d_vars, x, jax.random.key(i, impl="rbg")) for i in (1, 2))
    assert np.all(np.asarray(a) != np.asarray(b))
    np.testing.assert_array_equal(a, apply(d_vars, x, jax.random.key(1, impl="rbg")))


def test_input_dropout_rate_and_scale():
    """With no hidden layer and unit weights, the logit counts the kept inputs × 1/(1 − 0.2)."""
    d = GoodfellowDiscriminator(hidden=())
    params = {"Dense_0": {"kernel": jnp.ones((784, 1)), "bias": jnp.zeros(1)}}
    keys = jax.random.split(KEY, 50)
    logits = jax.jit(jax.vmap(lambda k: d.apply({"params": params}, jnp.ones((1, 784)), train=True,
                                                rngs={"dropout": k})))(keys)[:, 0]
    kept = np.asarray(logits) * 0.8
    np.testing.assert_allclose(kept, np.round(kept), atol=1e-3)  # an integer count: scale is exactly 1.25
    np.testing.assert_allclose(kept.mean() / 784, 0.8, atol=0.01)  # sd of the mean: 0.002


def test_bad_dropout_rate():
    with pytest.raises(ValueError, match="hidden_dropout"):
        GoodfellowDiscriminator(hidden_dropout=1.0).init(KEY, jnp.zeros((1, 784)), train=False)


def test_jit_grad_and_bfloat16(nets):
    g, g_vars, d, d_vars = nets
    z = jax.random.normal(KEY, (3, 100))

    @jax.jit
    def loss(gp, dp, key):
        x = g.apply({"params": gp}, z, train=True)
        return jnp.mean(jax.nn.softplus(-d.apply({"params": dp}, x, train=True, rngs={"dropout": key})))

    grads = jax.grad(loss, argnums=(0, 1))(g_vars["params"], d_vars["params"], KEY)
    for leaf in jax.tree.leaves(grads):
        assert np.all(np.isfinite(leaf))
    assert all(float(jnp.abs(gr["kernel"]).max()) > 0 for tree in grads for gr in _dense_layers(tree))

    g16, d16 = GoodfellowGenerator(dtype=jnp.bfloat16), GoodfellowDiscriminator(dtype=jnp.bfloat16)
    chex.assert_trees_all_equal_dtypes(jax.eval_shape(functools.partial(g16.init, train=False), KEY, z), g_vars)
    x16, x32 = (jax.jit(functools.partial(net.apply, train=False))(g_vars, z) for net in (g16, g))
    chex.assert_type(x16, jnp.float32)
    np.testing.assert_allclose(x16, x32, atol=0.03)
    big = {"params": jax.tree.map(lambda w: w * 20, d_vars["params"])}
    s16, s32 = (jax.jit(functools.partial(net.apply, train=False))(big, x16) for net in (d16, d))
    chex.assert_type(s16, jnp.float32)
    np.testing.assert_allclose(s16, s32, rtol=0.05, atol=0.05 * float(jnp.abs(s32).max()))


def test_sigmoid_bias_from_marginals_is_pylearn2s():
    mean = jnp.asarray([0.0, 1e-9, 0.25, 0.5, 0.9, 1.0])
    b = sigmoid_bias_from_marginals(mean)
    np.testing.assert_allclose(jax.nn.sigmoid(b), np.clip(np.asarray(mean), 1e-7, 1 - 1e-7), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(b[:2], np.log(1e-7 / (1 - 1e-7)), rtol=1e-5)  # -16.1 for always-black pixels
    np.testing.assert_allclose(b[3], 0.0, atol=1e-7)
    # The same bias gives the gradient of its own mean: finite at the clipped ends.
    assert np.all(np.isfinite(jax.grad(lambda m: sigmoid_bias_from_marginals(m).sum())(mean[2:5])))


def test_init_state_starts_the_generator_at_the_mean_image():
    from experiments.goodfellow2014_mnist import get_config
    from gan_jax import train

    config = get_config()
    config.model.generator.hidden = config.model.critic.hidden = (16, 16)
    assert config.model.generator.output_bias == "marginals"
    gan = train.build(config)
    rng = np.random.default_rng(0)
    marginals = jnp.asarray(rng.uniform(0.0, 1.0, (28, 28, 1)) * (rng.uniform(size=(28, 28, 1)) > 0.3), jnp.float32)
    state = jax.jit(lambda k: train.init_state(gan, k, (28, 28, 1), marginals=marginals))(KEY)
    bias = state.generator.params["output"]["bias"]
    np.testing.assert_allclose(bias, sigmoid_bias_from_marginals(marginals.reshape(-1)), rtol=1e-5, atol=1e-6)
    assert float(bias.min()) < -16.0  # the zero marginals
    # With its small weights (U(±0.05)) G starts near the mean image, in the [-1, 1] pixel scale.
    x = gan.generator.apply({"params": state.generator.params}, jax.random.normal(KEY, (4, 100)), train=False)
    np.testing.assert_allclose((np.asarray(x) + 1) / 2, np.broadcast_to(marginals, (4, 28, 28, 1)), atol=0.05)
    with pytest.raises(ValueError, match="output_bias='marginals' needs the training data's mean example"):
        train.init_state(gan, KEY, (28, 28, 1))
    with pytest.raises(ValueError, match=r"marginals have shape \(784,\); the data's examples have \(28, 28, 1\)"):
        train.init_state(gan, KEY, (28, 28, 1), marginals=marginals.reshape(-1))
    config.model.generator.output_bias = "mean"
    with pytest.raises(ValueError, match=r"unknown output_bias 'mean'; allowed: \('zeros', 'marginals'\)"):
        train.init_state(train.build(config), KEY, (28, 28, 1), marginals=marginals)

"""Conditional GANs: label concatenation, AC-GAN (K and K+1 classes), projection discriminator.

Shapes at 28 and 32 px with K = 10, label conditioning against the base network fed the one-hot code,
the K+1 score formula and the projection term against independent computations, dropout keying,
jit + grad through batch norm, bfloat16 compute with float32 parameters, bad labels.
"""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from gan_jax.models.conditional import ACGANCritic, ConditionalGenerator, LabelConcatCritic, ProjectionCritic
from gan_jax.models.dcgan import DCGANDiscriminator, DCGANGenerator
from gan_jax.models.goodfellow import GoodfellowDiscriminator, GoodfellowGenerator
from gan_jax.models.mlp import MLPCritic, MLPGenerator

K = 10
KEY = jax.random.key(0)
LABELS = jnp.array([0, 3, 9, 3], jnp.int32)
WIDTHS = {28: (16, 8), 32: (16, 8, 8)}  # small DCGAN nets: fast to compile


def _dcgan_critic(size, channels, **kw):
    return DCGANDiscriminator(image_size=size, channels=channels, widths=WIDTHS[size], **kw)


def _images(size, channels=1, key=KEY, n=4):
    return jax.random.uniform(key, (n, size, size, channels), minval=-1, maxval=1)


def _differ(a, b) -> bool:
    """Whether two outputs differ by more than 1e-4 of their scale (~1000 float32 roundings; at init, DCGAN
    outputs are ~1e-3 and the one-hot entry is 1 input of 794 to an MLP critic)."""
    return float(np.abs(a - b).max()) > 1e-4 * max(float(np.abs(a).max()), float(np.abs(b).max()))


def _init(module, *args):
    return jax.jit(functools.partial(module.init, train=False))(KEY, *args)


def _apply(module, train=False):
    """Jitted apply; with train=True batch statistics are mutable and dropout draws from `key`."""
    if not train:
        return jax.jit(functools.partial(module.apply, train=False))
    return jax.jit(lambda v, *a, key=KEY: module.apply(v, *a, train=True, rngs={"dropout": key},
                                                         mutable=["batch_stats"]))


@pytest.mark.parametrize("size", [28, 32])
def test_output_shapes(size):
    z = jnp.zeros((4, 100))
    x = jnp.zeros((4, size, size, 3))

    def shapes(module, *args):
        variables = jax.eval_shape(functools.partial(module.init, train=False), KEY, *args)
        return jax.eval_shape(functools.partial(module.apply, train=False), variables, *args)

    g = ConditionalGenerator(DCGANGenerator(image_size=size, channels=3, widths=WIDTHS[size]), K)
    assert shapes(g, z, LABELS).shape == (4, size, size, 3)
    assert shapes(LabelConcatCritic(_dcgan_critic(size, 3 + K), K), x, LABELS).shape == (4,)
    assert shapes(LabelConcatCritic(_dcgan_critic(size, 3 + 5), K, embed_dim=5), x, LABELS).shape == (4,)
    for fake_class in (False, True):
        scores, logits = shapes(ACGANCritic(_dcgan_critic(size, 3), K, fake_class=fake_class), x, LABELS)
        assert (scores.shape, logits.shape) == ((4,), (4, K + fake_class))
    assert shapes(ProjectionCritic(_dcgan_critic(size, 3), K), x, LABELS).shape == (4,)
    # MLP cGAN (Mirza & Osindero's MNIST setting): vectors of 784 = 28·28.
    g = ConditionalGenerator(MLPGenerator(hidden=(32,), out_dim=size * size), K)
    assert shapes(g, z, LABELS).shape == (4, size * size)
    d = LabelConcatCritic(MLPCritic(hidden=(32,)), K, concat="vector")
    assert shapes(d, x, LABELS).shape == (4,)
    variables = jax.eval_shape(functools.partial(d.init, train=False), KEY, x, LABELS)
    assert variables["params"]["critic"]["Maxout_0"]["Dense_0"]["kernel"].shape == (size * size * 3 + K, 32 * 5)


@pytest.mark.parametrize("embed_dim", [None, 6], ids=["one-hot", "embedding"])
def test_generator_is_the_base_fed_the_label_code(embed_dim):
    base = MLPGenerator(hidden=(16,), out_dim=5)
    g = ConditionalGenerator(base, K, embed_dim=embed_dim)
    z = jnp.tile(jax.random.normal(KEY, (1, 3)), (4, 1))  # the same z for every example
    variables = _init(g, z, LABELS)
    out, updated = _apply(g, train=True)(variables, z, LABELS)
    if embed_dim is None:
        code = np.eye(K)[np.asarray(LABELS)]
    else:
        code = variables["params"]["LabelCode_0"]["Embed_0"]["embedding"][LABELS]
        chex.assert_shape(code, (4, embed_dim))
    base_vars = {"params": variables["params"]["generator"], "batch_stats": variables["batch_stats"]["generator"]}
    expected, expected_stats = _apply(base, train=True)(base_vars, jnp.concatenate([z, code], axis=1))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(updated["batch_stats"]["generator"], expected_stats["batch_stats"])
    # The label conditions the output: equal labels give equal rows, different labels different rows.
    np.testing.assert_allclose(out[1], out[3], rtol=1e-6)
    assert _differ(out[0], out[1]) and _differ(out[1], out[2])


def test_conditional_dcgan_generator_depends_on_the_label():
    g = ConditionalGenerator(DCGANGenerator(image_size=28, channels=1, widths=WIDTHS[28]), K)
    z = jnp.tile(jax.random.normal(KEY, (1, 100)), (4, 1))
    variables = _init(g, z, LABELS)
    chex.assert_shape(variables["params"]["generator"]["ConvTranspose_0"]["kernel"], (7, 7, 100 + K, 16))
    out = _apply(g)(variables, z, LABELS)
    chex.assert_shape(out, (4, 28, 28, 1))
    np.testing.assert_allclose(out[1], out[3], rtol=1e-6)
    assert _differ(out[0], out[1]) and _differ(out[1], out[2])


def test_label_concat_critic_channels_and_vector():
    x = _images(28)
    d = LabelConcatCritic(_dcgan_critic(28, 1 + K), K)
    variables = _init(d, x, LABELS)
    maps = np.broadcast_to(np.eye(K)[np.asarray(LABELS)][:, None, None, :], (4, 28, 28, K))
    expected = _apply(d.critic)({"params": variables["params"]["critic"],
                                 "batch_stats": variables["batch_stats"]["critic"]}, np.concatenate([x, maps], -1))
    np.testing.assert_allclose(_apply(d)(variables, x, LABELS), expected, rtol=1e-5, atol=1e-6)

    d = LabelConcatCritic(MLPCritic(hidden=(8,)), K, concat="vector")
    variables = _init(d, x, LABELS)
    vec = np.concatenate([np.asarray(x).reshape(4, -1), np.eye(K)[np.asarray(LABELS)]], axis=1)
    expected = _apply(d.critic)({"params": variables["params"]["critic"]}, vec)
    np.testing.assert_allclose(_apply(d)(variables, x, LABELS), expected, rtol=1e-5, atol=1e-6)
    out = _apply(d)(variables, jnp.tile(x[:1], (4, 1, 1, 1)), LABELS)  # one image, four labels
    np.testing.assert_allclose(out[1], out[3], rtol=1e-6)
    assert _differ(out[0], out[1]) and _differ(out[1], out[2])


@pytest.mark.parametrize("fake_class", [False, True], ids=["K", "K+1"])
def test_acgan_heads_against_an_independent_computation(fake_class):
    x = _images(32, 3)
    d = ACGANCritic(_dcgan_critic(32, 3), K, fake_class=fake_class)
    variables = _init(d, x, LABELS)
    # Larger classifier weights, so that the logits are spread and logsumexp is not ~log K.
    head = jax.tree.map(lambda w: w * 50, variables["params"]["classifier"])
    variables = {**variables, "params": {**variables["params"], "classifier": head}}
    # Training mode: batch norm makes the features O(1) (at init, running statistics leave them ~1e-3).
    (scores, logits), _ = _apply(d, train=True)(variables, x, LABELS)
    chex.assert_shape(logits, (4, K + fake_class))
    s, features = _critic_features(d.critic, variables, x)
    phi = np.asarray(features, np.float64).reshape(4, -1)
    class_logits = phi @ np.asarray(head["kernel"], np.float64) + np.asarray(head["bias"])
    np.testing.assert_allclose(logits[:, :K], class_logits, rtol=1e-4, atol=1e-5)
    assert np.ptp(class_logits) > 1.0
    if fake_class:
        np.testing.assert_allclose(logits[:, K], -np.asarray(s), rtol=1e-5, atol=1e-6)
        # σ(score) = p(real | x): the total softmax mass of the K real classes.
        p = np.exp(class_logits - logsumexp(np.asarray(logits, np.float64), axis=1, keepdims=True))
        np.testing.assert_allclose(1 / (1 + np.exp(-np.asarray(scores, np.float64))), p.sum(1), rtol=1e-5)
        np.testing.assert_allclose(scores, logsumexp(class_logits, axis=1) + np.asarray(s), rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(scores, s, rtol=1e-6)


def _critic_features(critic, variables, x):
    """The wrapped critic's (scores, features) in training mode, applied on its own."""
    own = {"params": variables["params"]["critic"], "batch_stats": variables["batch_stats"]["critic"]}
    return jax.jit(lambda v, x: critic.apply(v, x, train=True, return_features=True, mutable=["batch_stats"])[0])(
        own, x)


def test_projection_term_is_the_inner_product():
    x = _images(28)
    d = ProjectionCritic(_dcgan_critic(28, 1), K)
    variables = _init(d, x, LABELS)
    psi, features = _critic_features(d.critic, variables, x)
    v = np.asarray(variables["params"]["embed"]["embedding"], np.float64)
    chex.assert_shape(v, (K, 7 * 7 * 16))
    inner = np.sum(v[np.asarray(LABELS)] * np.asarray(features, np.float64).reshape(4, -1), axis=1)
    out, _ = _apply(d, train=True)(variables, x, LABELS)
    np.testing.assert_allclose(out - psi, inner, rtol=1e-4, atol=1e-5)
    assert np.abs(inner).min() > 1e-2


def test_dropout_deterministic_in_eval_stochastic_in_training():
    d = LabelConcatCritic(GoodfellowDiscriminator(hidden=(16,)), K, concat="vector")
    x = _images(28)
    variables = _init(d, x, LABELS)
    np.testing.assert_array_equal(_apply(d)(variables, x, LABELS), _apply(d)(variables, x, LABELS))
    train = _apply(d, train=True)
    a, b = (train(variables, x, LABELS, key=jax.random.key(i))[0] for i in (1, 2))
    assert np.all(np.asarray(a) != np.asarray(b))
    np.testing.assert_array_equal(a, train(variables, x, LABELS, key=jax.random.key(1))[0])


def test_jit_grad_through_a_conditional_gan():
    """One non-saturating step's gradients for G and every conditional critic: finite and non-zero."""
    g = ConditionalGenerator(DCGANGenerator(image_size=28, channels=1, widths=WIDTHS[28]), K)
    z = jax.random.normal(KEY, (4, 100))
    g_vars = _init(g, z, LABELS)
    critics = {"concat": LabelConcatCritic(_dcgan_critic(28, 1 + K), K),
               "acgan": ACGANCritic(_dcgan_critic(28, 1), K, fake_class=True),
               "projection": ProjectionCritic(_dcgan_critic(28, 1), K),
               "goodfellow": LabelConcatCritic(GoodfellowDiscriminator(hidden=(16,)), K, concat="vector")}
    for name, d in critics.items():
        d_vars = _init(d, _images(28), LABELS)

        @jax.jit
        def loss(g_params, d_params, d=d, d_vars=d_vars):
            x, _ = g.apply({**g_vars, "params": g_params}, z, LABELS, train=True, mutable=["batch_stats"])
            out, _ = d.apply({**d_vars, "params": d_params}, x, LABELS, train=True, rngs={"dropout": KEY},
                             mutable=["batch_stats"])
            scores, logits = out if isinstance(out, tuple) else (out, None)
            value = jnp.mean(jax.nn.softplus(-scores))
            return value if logits is None else value + jnp.mean(
                jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, LABELS[:, None], axis=1)[:, 0])

        grads = jax.grad(loss, argnums=(0, 1))(g_vars["params"], d_vars["params"])
        for leaf in jax.tree.leaves(grads):
            assert np.all(np.isfinite(leaf)), name
        assert max(float(jnp.abs(leaf).max()) for leaf in jax.tree.leaves(grads[0])) > 0, name
        assert min(float(jnp.abs(leaf).max()) for leaf in jax.tree.leaves(grads[1])) > 0, name


def test_bfloat16_compute_float32_params():
    x = _images(32, 3)
    for make in (lambda dt: ACGANCritic(_dcgan_critic(32, 3, dtype=dt), K, fake_class=True, dtype=dt),
                 lambda dt: ProjectionCritic(_dcgan_critic(32, 3, dtype=dt), K, dtype=dt)):
        f32, bf16 = make(jnp.float32), make(jnp.bfloat16)
        variables = _init(f32, x, LABELS)
        chex.assert_trees_all_equal_dtypes(jax.eval_shape(functools.partial(bf16.init, train=False), KEY, x, LABELS),
                                           variables)
        for out16, out32 in zip(jax.tree.leaves(_apply(bf16)(variables, x, LABELS)),
                                jax.tree.leaves(_apply(f32)(variables, x, LABELS))):
            chex.assert_type(out16, jnp.float32)
            np.testing.assert_allclose(out16, out32, rtol=0.05, atol=0.05 * float(jnp.abs(out32).max()))
    g = ConditionalGenerator(GoodfellowGenerator(dtype=jnp.bfloat16), K, embed_dim=8)
    z = jax.random.normal(KEY, (4, 100))
    variables = _init(g, z, LABELS)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    chex.assert_type(_apply(g)(variables, z, LABELS), jnp.float32)


def test_bad_inputs():
    x = jnp.zeros((4, 28, 28, 1))
    d = LabelConcatCritic(MLPCritic(hidden=(8,)), K, concat="vector")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        d.init(KEY, x, LABELS.at[0].set(K), train=False)
    with pytest.raises(ValueError, match="labels must be integers"):
        d.init(KEY, x, LABELS.astype(jnp.float32), train=False)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        d.init(KEY, x, LABELS[:3], train=False)
    with pytest.raises(ValueError, match="concat must be one of"):
        LabelConcatCritic(MLPCritic(), K, concat="maps").init(KEY, x, LABELS, train=False)
    with pytest.raises(ValueError, match="needs images"):
        LabelConcatCritic(MLPCritic(), K).init(KEY, x.reshape(4, -1), LABELS, train=False)
    with pytest.raises(ValueError, match="num_classes must be >= 2"):
        ConditionalGenerator(MLPGenerator(), 1).init(KEY, jnp.zeros((4, 2)), jnp.zeros(4, jnp.int32), train=False)

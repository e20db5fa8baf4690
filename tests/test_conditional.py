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
# "rbg" keys: flax init with threefry keys took 17 s to compile for a small DCGAN critic here, with rbg 2 s.
KEY = jax.random.key(0, impl="rbg")
LABELS = jnp.array([0, 3, 9, 3], jnp.int32)
# Small DCGAN nets. Critics compile fastest at 32 px (a 4x4 head; 28 px has a 7x7 head of 49 taps).
WIDTHS = {28: (16, 8), 32: (16, 8, 8)}


def _dcgan_critic(size, channels, **kw):
    return DCGANDiscriminator(image_size=size, channels=channels, widths=WIDTHS[size], **kw)


def _images(size, channels=1, key=KEY, n=4):
    return jax.random.uniform(key, (n, size, size, channels), minval=-1, maxval=1)


def _differ(a, b) -> bool:
    """Whether two outputs differ by more than 1e-4 of their scale (~1000 float32 roundings; at init, DCGAN
    outputs are ~1e-3 and the one-hot entry is 1 input of 794 to an MLP critic)."""
    return float(np.abs(a - b).max()) > 1e-4 * max(float(np.abs(a).max()), float(np.abs(b).max()))


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
    # MLP cGAN (Mirza & Osindero's MNIST setting): flat images of size·size (784 at 28 px).
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

    @jax.jit
    def run(key):
        variables = g.init(key, z, LABELS, train=False)
        out = g.apply(variables, z, LABELS, train=True, mutable=["batch_stats"])
        p = variables["params"]
        code = jnp.eye(K)[LABELS] if embed_dim is None else p["LabelCode_0"]["Embed_0"]["embedding"][LABELS]
        base_vars = {"params": p["generator"], "batch_stats": variables["batch_stats"]["generator"]}
        return out, base.apply(base_vars, jnp.concatenate([z, code], axis=1), train=True, mutable=["batch_stats"])

    (out, updated), (expected, expected_stats) = run(KEY)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(updated["batch_stats"]["generator"], expected_stats["batch_stats"])
    # The label conditions the output: equal labels give equal rows, different labels different rows.
    np.testing.assert_allclose(out[1], out[3], rtol=1e-6)
    assert _differ(out[0], out[1]) and _differ(out[1], out[2])


def test_conditional_dcgan_generator_depends_on_the_label():
    g = ConditionalGenerator(DCGANGenerator(image_size=28, channels=1, widths=WIDTHS[28]), K)
    z = jnp.tile(jax.random.normal(KEY, (1, 100)), (4, 1))

    @jax.jit
    def run(key):
        variables = g.init(key, z, LABELS, train=False)
        return variables["params"]["generator"]["ConvTranspose_0"]["kernel"], g.apply(variables, z, LABELS, train=False)

    first_kernel, out = run(KEY)
    chex.assert_shape(first_kernel, (7, 7, 100 + K, 16))
    chex.assert_shape(out, (4, 28, 28, 1))
    np.testing.assert_allclose(out[1], out[3], rtol=1e-6)
    assert _differ(out[0], out[1]) and _differ(out[1], out[2])


def test_label_concat_critic_channels_and_vector():
    """The wrapper equals its critic applied to the image with one-hot label maps as channels (DCGAN), or to
    the flattened image with the one-hot appended (MLP)."""
    x = _images(32, 3)
    onehot = np.eye(K, dtype=np.float32)[np.asarray(LABELS)]
    maps = np.broadcast_to(onehot[:, None, None, :], (4, 32, 32, K))
    vector = np.concatenate([np.asarray(x).reshape(4, -1), onehot], axis=1)
    for d, base_input in ((LabelConcatCritic(_dcgan_critic(32, 3 + K), K), np.concatenate([x, maps], -1)),
                          (LabelConcatCritic(MLPCritic(hidden=(8,)), K, concat="vector"), vector)):
        @jax.jit
        def run(key, d=d, base_input=base_input):
            variables = d.init(key, x, LABELS, train=False)
            own = {k: v["critic"] for k, v in variables.items()}
            one_image = jnp.tile(x[:1], (4, 1, 1, 1))  # under four labels
            return (d.apply(variables, x, LABELS, train=False), d.critic.apply(own, base_input, train=False),
                    d.apply(variables, one_image, LABELS, train=False))

        out, expected, one_image = run(KEY)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(one_image[1], one_image[3], rtol=1e-6)
        assert _differ(one_image[0], one_image[1]) and _differ(one_image[1], one_image[2])


@pytest.fixture(scope="module")
def critics():
    """AC-GAN (K+1) and projection critics on the same small 32-px RGB DCGAN critic, and their variables."""
    modules = {"acgan": ACGANCritic(_dcgan_critic(32, 3), K, fake_class=True),
               "projection": ProjectionCritic(_dcgan_critic(32, 3), K)}
    x = _images(32, 3)
    return modules, jax.jit(lambda key: {n: m.init(key, x, LABELS, train=False) for n, m in modules.items()})(KEY)


def _features(critic, variables, x):
    """The wrapped critic's own (scores, features) in training mode (batch norm makes the features O(1);
    at init, the running statistics leave them ~1e-3)."""
    own = {"params": variables["params"]["critic"], "batch_stats": variables["batch_stats"]["critic"]}
    return critic.apply(own, x, train=True, return_features=True, mutable=["batch_stats"])[0]


def test_acgan_heads_against_an_independent_computation(critics):
    modules, all_vars = critics
    x = _images(32, 3)
    # Larger classifier weights, so that the logits are spread and logsumexp is not ~log K.
    head = jax.tree.map(lambda w: w * 50, all_vars["acgan"]["params"]["classifier"])
    variables = {**all_vars["acgan"], "params": {**all_vars["acgan"]["params"], "classifier": head}}
    with_fake = modules["acgan"]
    without = ACGANCritic(with_fake.critic, K, fake_class=False)  # the same parameters

    @jax.jit
    def run(v, x):
        outs = [m.apply(v, x, LABELS, train=True, mutable=["batch_stats"])[0] for m in (without, with_fake)]
        return outs, _features(with_fake.critic, v, x)

    ((scores_k, logits_k), (scores, logits)), (s, features) = run(variables, x)
    chex.assert_shape((logits_k, logits), ((4, K), (4, K + 1)))
    phi = np.asarray(features, np.float64).reshape(4, -1)
    class_logits = phi @ np.asarray(head["kernel"], np.float64) + np.asarray(head["bias"])
    assert np.ptp(class_logits) > 1.0
    np.testing.assert_allclose(logits_k, class_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores_k, s, rtol=1e-6)
    np.testing.assert_allclose(logits[:, :K], class_logits, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logits[:, K], -np.asarray(s), rtol=1e-5, atol=1e-6)
    # σ(score) = p(real | x): the total softmax mass of the K real classes.
    p = np.exp(class_logits - logsumexp(np.asarray(logits, np.float64), axis=1, keepdims=True))
    np.testing.assert_allclose(1 / (1 + np.exp(-np.asarray(scores, np.float64))), p.sum(1), rtol=1e-5)
    np.testing.assert_allclose(scores, logsumexp(class_logits, axis=1) + np.asarray(s), rtol=1e-5, atol=1e-5)


def test_projection_term_is_the_inner_product(critics):
    modules, all_vars = critics
    d, variables = modules["projection"], all_vars["projection"]
    x = _images(32, 3)
    run = jax.jit(lambda v, x: (d.apply(v, x, LABELS, train=True, mutable=["batch_stats"])[0],
                                _features(d.critic, v, x)))
    out, (psi, features) = run(variables, x)
    v = np.asarray(variables["params"]["embed"]["embedding"], np.float64)
    chex.assert_shape(v, (K, 4 * 4 * 16))
    inner = np.sum(v[np.asarray(LABELS)] * np.asarray(features, np.float64).reshape(4, -1), axis=1)
    np.testing.assert_allclose(out - psi, inner, rtol=1e-4, atol=1e-5)
    assert np.abs(inner).min() > 1e-2


def test_dropout_deterministic_in_eval_stochastic_in_training():
    d = LabelConcatCritic(GoodfellowDiscriminator(hidden=(16,)), K, concat="vector")
    x = _images(28)
    variables = jax.jit(functools.partial(d.init, train=False))(KEY, x, LABELS)
    evaluate = jax.jit(functools.partial(d.apply, train=False))
    np.testing.assert_array_equal(evaluate(variables, x, LABELS), evaluate(variables, x, LABELS))
    train = jax.jit(lambda v, key: d.apply(v, x, LABELS, train=True, rngs={"dropout": key}))
    a, b = (train(variables, jax.random.key(i, impl="rbg")) for i in (1, 2))
    assert np.all(np.asarray(a) != np.asarray(b))
    np.testing.assert_array_equal(a, train(variables, jax.random.key(1, impl="rbg")))


def test_jit_grad_through_a_conditional_gan(critics):
    """Gradients of one non-saturating objective (+ AC-GAN class loss) through a conditional generator (with a
    label embedding), the AC-GAN and the projection critics, in one compiled function: finite, non-zero for
    every layer (the label-concatenation wrappers only concatenate inputs of networks tested elsewhere)."""
    g = ConditionalGenerator(GoodfellowGenerator(hidden=(32,), out_shape=(32, 32, 3)), K, embed_dim=8)
    z = jax.random.normal(KEY, (4, 100))
    modules, variables = critics
    variables = {**variables, "generator": jax.jit(functools.partial(g.init, train=False))(KEY, z, LABELS)}
    params = {n: v["params"] for n, v in variables.items()}

    @jax.jit
    @jax.grad
    def grads(params):
        x = g.apply({"params": params["generator"]}, z, LABELS, train=True)
        total = 0.0
        for name, d in modules.items():
            out, _ = d.apply({**variables[name], "params": params[name]}, x, LABELS, train=True,
                             mutable=["batch_stats"])
            scores, logits = out if isinstance(out, tuple) else (out, None)
            total += jnp.mean(jax.nn.softplus(-scores))
            if logits is not None:
                total += jnp.mean(jax.nn.logsumexp(logits, axis=1)
                                  - jnp.take_along_axis(logits, LABELS[:, None], axis=1)[:, 0])
        return total

    for path, leaf in jax.tree_util.tree_flatten_with_path(grads(params))[0]:
        assert np.all(np.isfinite(leaf)) and float(jnp.abs(leaf).max()) > 0, jax.tree_util.keystr(path)


def test_bfloat16_compute_float32_params(critics):
    modules, variables = critics
    x = _images(32, 3)
    as_bf16 = {"acgan": ACGANCritic(_dcgan_critic(32, 3, dtype=jnp.bfloat16), K, fake_class=True, dtype=jnp.bfloat16),
               "projection": ProjectionCritic(_dcgan_critic(32, 3, dtype=jnp.bfloat16), K, dtype=jnp.bfloat16)}
    for name, m in as_bf16.items():
        chex.assert_trees_all_equal_dtypes(jax.eval_shape(functools.partial(m.init, train=False), KEY, x, LABELS),
                                           variables[name])
    run = {dt: jax.jit(lambda v, ms=ms: {n: m.apply(v[n], x, LABELS, train=False) for n, m in ms.items()})
           for dt, ms in (("f32", modules), ("bf16", as_bf16))}
    out16, out32 = run["bf16"](variables), run["f32"](variables)
    for a, b in zip(jax.tree.leaves(out16), jax.tree.leaves(out32)):
        chex.assert_type(a, jnp.float32)
        np.testing.assert_allclose(a, b, rtol=0.05, atol=0.05 * float(jnp.abs(b).max()))
    g = ConditionalGenerator(GoodfellowGenerator(dtype=jnp.bfloat16), K, embed_dim=8)
    z = jnp.zeros((4, 100))
    g_vars = jax.eval_shape(functools.partial(g.init, train=False), KEY, z, LABELS)
    assert {leaf.dtype for leaf in jax.tree.leaves(g_vars)} == {jnp.dtype(jnp.float32)}
    assert jax.eval_shape(functools.partial(g.apply, train=False), g_vars, z, LABELS).dtype == jnp.float32


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

"""Stacked MNIST in the VEEGAN setting (PacGAN Table 2): carpedm20's TensorFlow DCGAN (gan_jax.models.dcgan_tf) at
PacGAN's sizes, its per-slot generator batch norm and TF 'SAME' geometry, the U(−1, 1) prior, and two training steps
of every variant on tiny MNIST files in the original format."""
import functools
import importlib
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import gan_jax
from gan_jax import config as config_lib, data, loop, prior
from gan_jax.models import build_critic, build_generator
from gan_jax.models.dcgan_tf import KERNEL, DCGANTFDiscriminator, DCGANTFGenerator
from gan_jax.models.layers import ConvTranspose
from gan_jax.models.metz import same_transpose_padding
from tests import fake_data

stacked_mnist = importlib.import_module("experiments.stacked_mnist")
ONE_DEVICE = jax.devices()[:1]
TINY_G, TINY_D = (16, 8, 8, 4), (4, 8, 8, 16)


def _count(tree) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


def _shapes(net, shape):
    return jax.eval_shape(lambda: net.init(jax.random.key(0), jnp.zeros(shape), train=False))


@pytest.mark.parametrize("pack", [1, 2, 3, 4])
def test_parameter_counts_equal_pacgans_tf_nets(pack):
    """PacGAN's VEEGAN-setting model.py with gf_dim = df_dim = 64 at 28 px: linear and (de)convolutions with biases,
    batch norm with scale and offset (2 per channel)."""
    g = _shapes(DCGANTFGenerator(pack=pack), (1, 100))["params"]
    assert _count(g) == ((100 * 2 * 2 * 512 + 2 * 2 * 512) + 2 * 512     # g_h0_lin on z (100) -> 2x2x512, g_bn0
                         + (5 * 5 * 512 * 256 + 256) + 2 * 256            # g_h1 2 -> 4, g_bn1
                         + (5 * 5 * 256 * 128 + 128) + 2 * 128            # g_h2 4 -> 7, g_bn2
                         + (5 * 5 * 128 * 64 + 64) + 2 * 64               # g_h3 7 -> 14, g_bn3
                         + (5 * 5 * 64 * 3 + 3)) == 4_514_819             # g_h4 14 -> 28, 3 channels per sample
    c = 3 * pack
    d = _shapes(DCGANTFDiscriminator(channels=c), (1, 28, 28, c))["params"]
    assert _count(d) == ((5 * 5 * c * 64 + 64)                          # d_h0_conv 28 -> 14, no batch norm
                         + (5 * 5 * 64 * 128 + 128) + 2 * 128             # d_h1_conv 14 -> 7, d_bn1
                         + (5 * 5 * 128 * 256 + 256) + 2 * 256            # d_h2_conv 7 -> 4, d_bn2
                         + (5 * 5 * 256 * 512 + 512) + 2 * 512            # d_h3_conv 4 -> 2, d_bn3
                         + (2 * 2 * 512 + 1))                             # d_h4_lin
    assert _count(d) == 4_310_401 + 4_800 * (pack - 1)


@pytest.mark.parametrize("n_in,n_out", [(2, 4), (4, 7), (7, 14), (14, 28)])
def test_generator_layers_are_tf_same_conv2d_transpose(n_in, n_out):
    """ops.py's deconv2d is TF's conv2d_transpose(padding='SAME', output_shape=n_out): the input-gradient of the
    'SAME' stride-2 5x5 convolution from n_out to n_in."""
    k1, k2 = jax.random.split(jax.random.key(1))
    y = jax.random.normal(k1, (2, n_in, n_in, 4))
    layer = ConvTranspose(3, KERNEL, 2, (same_transpose_padding(n_in, n_out, KERNEL, 2),) * 2, use_bias=False)
    params = layer.init(k2, y)
    kernel = params["params"]["kernel"]
    conv = lambda x: lax.conv_general_dilated(x, jnp.swapaxes(kernel, 2, 3), (2, 2), "SAME",  # noqa: E731
                                              dimension_numbers=("NHWC", "HWIO", "NHWC"))
    _, vjp = jax.vjp(conv, jnp.zeros((2, n_out, n_out, 3)))
    chex.assert_trees_all_close(layer.apply(params, y), vjp(y)[0], atol=1e-5)


def test_config_nets_through_the_registry_and_their_init():
    """The config's nets (tiny widths) as the builder makes them: PacDCGAN3's generator of 3-channel samples for a
    critic of 9 channels; ops.py's initialisers: truncated N(0, 0.02) convolutions in D, N(0, 0.02) elsewhere."""
    c = stacked_mnist.get_config("pacdcgan3")
    g = build_generator({**c.model.generator, "widths": TINY_G}, pack=c.model.pack)
    d = build_critic({**c.model.critic, "widths": TINY_D})
    assert (g.pack, d.channels) == (3, 9)
    gv = jax.jit(functools.partial(g.init, train=False))(jax.random.key(0), jnp.zeros((1, 100)))
    dv = jax.jit(functools.partial(d.init, train=False))(jax.random.key(1), jnp.zeros((1, 28, 28, 9)))
    z = prior.sample_latents(jax.random.key(2), (12, 100), distribution="uniform")
    x, _ = jax.jit(functools.partial(g.apply, train=True, mutable=["batch_stats"]))(gv, z)
    chex.assert_shape(x, (12, 28, 28, 3))
    assert -3.0 <= float(jnp.min(x)) and float(jnp.max(x)) <= 1.0 and float(jnp.std(x)) > 0  # 2·tanh − 1
    scores, _ = d.apply(dv, x.reshape(4, 3, 28, 28, 3).transpose(0, 2, 3, 1, 4).reshape(4, 28, 28, 9), train=True,
                        mutable=["batch_stats"])
    chex.assert_shape(scores, (4,))
    convs = [np.asarray(dv["params"][f"Conv_{i}"]["kernel"]) for i in range(4)]
    assert max(float(np.abs(w).max()) for w in convs) <= 0.04       # cut at 2 σ
    std = np.concatenate([w.ravel() for w in convs]).std()
    assert 0.0170 < std < 0.0183                                     # 0.88 σ for a normal truncated at 2 σ
    dense = np.concatenate([np.asarray(gv["params"]["Dense_0"]["kernel"]).ravel()]
                           + [np.asarray(gv["params"][f"ConvTranspose_{i}"]["kernel"]).ravel() for i in range(4)])
    assert float(np.abs(dense).max()) > 0.05 and 0.019 < dense.std() < 0.021
    biases = [leaf for variables in (gv, dv) for path, leaf in jax.tree_util.tree_leaves_with_path(variables["params"])
              if jax.tree_util.keystr(path).endswith("['bias']")]
    # G: Dense + 4 ConvT + 4 batch norms; D: 4 Conv + 3 batch norms + Dense. All start at 0.
    assert len(biases) == (1 + 4 + 4) + (4 + 3 + 1) and not any(np.any(b) for b in biases)


def test_generator_batch_norm_takes_each_packed_slot_alone():
    """PacGAN's code runs G once per packed slot: with pack=2, samples 0, 2, 4 (slot 0 of `models.pack`) are G on
    their codes alone, and the running averages move by the slots' mean statistics."""
    net, one = DCGANTFGenerator(widths=TINY_G, pack=2), DCGANTFGenerator(widths=TINY_G, pack=1)
    variables = jax.jit(functools.partial(net.init, train=False))(jax.random.key(0), jnp.zeros((1, 100)))
    z = prior.sample_latents(jax.random.key(3), (6, 100), distribution="uniform")
    run = jax.jit(lambda m, z: m.apply(variables, z, train=True, mutable=["batch_stats"]), static_argnums=0)
    x, stats = run(net, z)
    (x0, s0), (x1, s1) = run(one, z[0::2]), run(one, z[1::2])
    chex.assert_trees_all_close(x[0::2], x0, atol=1e-5)
    chex.assert_trees_all_close(x[1::2], x1, atol=1e-5)
    chex.assert_trees_all_close(stats, jax.tree.map(lambda a, b: (a + b) / 2, s0, s1), atol=1e-6)
    whole, _ = run(one, z)
    assert float(jnp.max(jnp.abs(whole - x))) > 1e-3  # one batch of 6 normalises differently


def test_unit_pixels_nets_see_and_make_what_pacgans_code_does():
    """unit_pixels: D sees real images on the code's [0, 1] scale and G's tanh samples unchanged, while both live
    in our [−1, 1] pixels outside the nets: G returns 2·tanh − 1, D reads (x + 1) / 2 first."""
    g, g01 = DCGANTFGenerator(widths=TINY_G), DCGANTFGenerator(widths=TINY_G, unit_pixels=True)
    d, d01 = DCGANTFDiscriminator(widths=TINY_D), DCGANTFDiscriminator(widths=TINY_D, unit_pixels=True)
    gv = g.init(jax.random.key(0), jnp.zeros((1, 100)), train=False)
    dv = d.init(jax.random.key(1), jnp.zeros((1, 28, 28, 3)), train=False)
    z = prior.sample_latents(jax.random.key(2), (6, 100), distribution="uniform")
    tanh, ours = (net.apply(gv, z, train=True, mutable=["batch_stats"])[0] for net in (g, g01))
    chex.assert_trees_all_close(ours, 2.0 * tanh - 1.0, atol=1e-6)
    real = jax.random.uniform(jax.random.key(3), (6, 28, 28, 3), minval=-1.0, maxval=1.0)   # our pixels
    for x, code_view in ((real, (real + 1.0) / 2.0), (ours, tanh)):
        scores, _ = d01.apply(dv, x, train=True, mutable=["batch_stats"])
        expected, _ = d.apply(dv, code_view, train=True, mutable=["batch_stats"])
        chex.assert_trees_all_close(scores, expected, atol=1e-5)


def test_uniform_prior_range_truncation_and_refusals():
    z = np.asarray(prior.sample_latents(jax.random.key(0), (20_000, 4), distribution="uniform"))
    assert -1.0 <= z.min() < -0.99 and 0.99 < z.max() < 1.0
    np.testing.assert_allclose(z.std(), 1 / np.sqrt(3), atol=0.01)   # U(−1, 1): variance 1/3
    t = np.asarray(prior.sample_latents(jax.random.key(0), (20_000,), truncation=0.5, distribution="uniform"))
    assert -0.5 <= t.min() < -0.49 and 0.49 < t.max() < 0.5
    wide = prior.sample_latents(jax.random.key(0), (8,), truncation=3.0, distribution="uniform")
    np.testing.assert_array_equal(wide, prior.sample_latents(jax.random.key(0), (8,), distribution="uniform"))
    with pytest.raises(ValueError, match=r"^unknown latent distribution 'gaussian'; allowed: \['normal', 'uniform'\]$"):
        prior.sample_latents(jax.random.key(0), (2,), distribution="gaussian")
    with pytest.raises(ValueError, match="truncation must be None or > 0, got 0"):
        prior.sample_latents(jax.random.key(0), (2,), truncation=0, distribution="uniform")
    c = stacked_mnist.get_config("dcgan")
    assert c.model.latent_distribution == "uniform"
    c.model.latent_distribution = "Uniform"
    with pytest.raises(ValueError, match=r"^unknown config.model.latent_distribution 'Uniform'; "
                                         r"allowed: \['normal', 'uniform'\]$"):
        config_lib.validate(c)


def test_variants_follow_pacgans_code():
    for variant, pack in (("dcgan", 1), ("pacdcgan2", 2), ("pacdcgan3", 3), ("pacdcgan4", 4)):
        c = stacked_mnist.get_config(variant)
        config_lib.validate(c)
        assert (c.model.pack, c.batch_size, c.model.critic["channels"]) == (pack, 64 * pack, 3 * pack)
        assert (c.steps, c.eval_every, c.checkpoint_every, c.eval.num_samples) == (100_000, 2_000, 1_000, 26_000)
        assert (c.data.num_train, c.data.train_split, c.model.latent_dim) == (128_000, "train+test", 100)
        assert (c.model.latent_distribution, c.loss.name, c.loss.generator_updates) == ("uniform", "non_saturating", 2)
        assert c.loss.reuse_critic_codes and c.model.generator["unit_pixels"] and c.model.critic["unit_pixels"]
    with pytest.raises(ValueError, match=r"unknown variant 'pacdcgan5'; allowed: \['dcgan', 'pacdcgan2'"):
        stacked_mnist.get_config("pacdcgan5")


@pytest.fixture(scope="module")
def mnist_dirs(tmp_path_factory) -> tuple[str, str]:
    """(manual_dir, data_dir): tiny fake MNIST under its four original names (40 train, 8 test images) and the
    TFDS build of it (unverified: the files are deliberately not the published ones)."""
    root = tmp_path_factory.mktemp("mnist")
    fake_data.write_originals(root, "mnist", 40, 8)
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    data.prepare("stacked_mnist", data_dir, str(root), verify=False)
    return str(root), data_dir


# An odd pack in the CI suite (dcgan: tests/test_image_experiments.py); the others run the same code (~15 s each).
@pytest.mark.parametrize("variant", ["pacdcgan3", *(pytest.param(v, marks=pytest.mark.slow)
                                                   for v in ("dcgan", "pacdcgan2", "pacdcgan4"))])
def test_two_training_steps(variant, mnist_dirs, tmp_path):
    c = stacked_mnist.get_config(variant)
    c.data.manual_dir, c.data.data_dir = mnist_dirs
    c.data.num_train = 64
    c.steps, c.batch_size, c.log_every = 2, 4 * c.model.pack, 1
    c.model.generator["widths"], c.model.critic["widths"] = TINY_G, TINY_D
    loop.train_and_evaluate(c, str(tmp_path / "run"), devices=ONE_DEVICE)
    run = gan_jax.load(str(tmp_path / "run"))
    assert run.step == 2 and run.latent_distribution == "uniform"
    z = run.latents(0, 1000)
    assert z.shape == (1000, 100) and np.abs(z).max() < 1.0 and 0.55 < z.std() < 0.6
    x = run.sample(0, 5)
    assert x.shape == (5, 28, 28, 3) and np.all(np.isfinite(x)) and -3.0 <= x.min() and x.max() <= 1.0


def test_the_train_step_and_samples_draw_from_the_configured_prior(tmp_path):
    """The same tiny run with N(0, I) and U(−1, 1) codes takes different first steps, and a loaded run's `sample`
    draws the codes and outputs of `train.sample` with the same key."""
    from gan_jax import train
    from tests.helpers import tiny_config
    losses = {}
    for distribution in prior.DISTRIBUTIONS:
        c = tiny_config(steps=1, checkpoint_every=1)
        c.model.latent_distribution = distribution
        workdir = str(tmp_path / distribution)
        loop.train_and_evaluate(c, workdir, devices=ONE_DEVICE)
        with open(f"{workdir}/metrics.jsonl") as f:
            losses[distribution] = json.loads(f.readline())["generator_loss"]
        run = gan_jax.load(workdir)
        g, key = run.state.generator, jax.random.key(7)
        np.testing.assert_allclose(run.sample(key, 5), train.sample(run.gan, g.ema or g.params, g.batch_stats, key, 5),
                                   atol=1e-6)
    assert losses["normal"] != losses["uniform"]
    z = train._latents(jax.random.split(jax.random.key(0), 500), 3, "uniform")
    assert z.shape == (500, 3) and float(jnp.abs(z).max()) < 1.0

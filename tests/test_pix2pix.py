"""pix2pix: U-Net shapes, skip connections and dropout noise; PatchGAN output size and receptive field;
the paired tasks; one training step of the GAN and the L1-only configs.
Init keys are rbg: flax init with threefry keys compiles several times slower on XLA:CPU."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import image_to_image as i2i
from gan_jax.data import paired
from gan_jax.models import patchgan
from gan_jax.models.unet import UNet

TINY_UNET = (8, 16, 16)


def _images(n=8, seed=0):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (n, 28, 28, 1)), jnp.float32)


def _init(net, x, key=None):
    key = jax.random.key(0, impl="rbg") if key is None else key
    return jax.jit(lambda k: net.init({"params": k, "dropout": k}, x)["params"])(key)


def test_unet_shapes_and_range():
    net = UNet(features=TINY_UNET, out_channels=1)
    x = _images(2)
    params = _init(net, x)
    out = jax.jit(lambda p: net.apply({"params": p}, x, deterministic=True))(params)
    chex.assert_shape(out, (2, 28, 28, 1))
    assert float(jnp.max(jnp.abs(out))) <= 1.0
    # Decoder block i reads the previous block's output concatenated with the mirrored encoder output.
    assert params["dec1"]["kernel"].shape == (4, 4, 16 + 16, 8)
    assert params["out"]["kernel"].shape == (4, 4, 8 + 8, 1)
    no_skip = _init(UNet(features=TINY_UNET, skip=False), x)
    assert no_skip["dec1"]["kernel"].shape == (4, 4, 16, 8)


@pytest.mark.parametrize("skip", [True, False])
def test_skip_connections_carry_the_input_past_the_bottleneck(skip):
    # Zero the innermost encoder conv: the bottleneck is then constant, so the output depends on the
    # input only through the skip connections.
    net = UNet(features=TINY_UNET, skip=skip)
    x = _images(2)
    params = _init(net, x)
    params = {**params, "enc2": jax.tree.map(jnp.zeros_like, params["enc2"])}
    f = jax.jit(lambda v: net.apply({"params": params}, v, deterministic=True))
    change = float(jnp.max(jnp.abs(f(x) - f(_images(2, seed=1)))))
    if skip:
        assert change > 1e-3
    else:
        np.testing.assert_allclose(change, 0.0, atol=1e-6)


def test_dropout_is_the_noise():
    net = UNet(features=TINY_UNET)
    x = _images(2)
    params = _init(net, x)
    run = jax.jit(lambda k, det: net.apply({"params": params}, x, deterministic=det,
                                           rngs={"dropout": jax.random.key(k, impl="rbg")}), static_argnums=1)
    assert float(jnp.max(jnp.abs(run(1, False) - run(2, False)))) > 1e-4
    np.testing.assert_array_equal(np.asarray(run(1, True)), np.asarray(run(2, True)))
    np.testing.assert_array_equal(np.asarray(run(1, False)), np.asarray(run(1, False)))


def test_patchgan_output_size_and_receptive_field():
    assert patchgan.receptive_field(3, 4) == 70  # pix2pix's 70x70 PatchGAN
    assert patchgan.output_size(256, 3, 4) == 30
    assert patchgan.receptive_field(1, 3) == 11
    for size, n_layers, k in [(28, 1, 3), (32, 2, 4), (256, 3, 4)]:
        shape = jax.eval_shape(lambda: PatchOut(size, n_layers, k)).shape
        assert shape == (1, patchgan.output_size(size, n_layers, k), patchgan.output_size(size, n_layers, k), 1)
    assert patchgan.output_size(28, 1, 3) == 14


def PatchOut(size, n_layers, k):
    net = patchgan.PatchGAN(features=4, n_layers=n_layers, kernel_size=k)
    x = jnp.zeros((1, size, size, 2))
    return net.apply(net.init(jax.random.key(0, impl="rbg"), x), x)


def test_patchgan_logit_sees_one_patch():
    # The input pixels one interior logit depends on span receptive_field rows/cols. With n_layers = 0 no
    # InstanceNorm is applied (its image-wide statistics would make every logit see the whole image,
    # as in pix2pix), so the patch is exactly the convolutions' receptive field, 1 + 2 (k - 1).
    net = patchgan.PatchGAN(features=4, n_layers=0, kernel_size=4)
    x = _images(1)
    params = jax.jit(net.init)(jax.random.key(0, impl="rbg"), x)
    grad = jax.jit(jax.grad(lambda v: net.apply(params, v)[0, 12, 12, 0]))(x)[0, :, :, 0]
    rows, cols = np.nonzero(np.asarray(grad))
    assert rows.max() - rows.min() + 1 == patchgan.receptive_field(0, 4) == 7
    assert cols.max() - cols.min() + 1 == 7


def test_paired_tasks():
    y = _images(3)
    x = paired.make_pairs("inpainting", y)
    lo, hi = 7, 21
    np.testing.assert_array_equal(np.asarray(x[:, lo:hi, lo:hi]), 0.0)
    outside = np.ones((28, 28), bool)
    outside[lo:hi, lo:hi] = False
    np.testing.assert_array_equal(np.asarray(x)[:, outside], np.asarray(y)[:, outside])
    x7 = np.asarray(paired.make_pairs("superres7", y))
    block = np.asarray(y)[:, 4:8, 8:12].mean(axis=(1, 2))
    np.testing.assert_allclose(x7[:, 5, 9], block, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x7[:, 4:8, 8:12], np.broadcast_to(block[:, None, None], (3, 4, 4, 1)), atol=1e-6)
    with pytest.raises(ValueError, match="allowed"):
        paired.make_pairs("colorise", y)


def test_sklearn_digits_in_mnist_format():
    train, test = paired.load_domain("digits", "train"), paired.load_domain("digits", "test")
    assert train["image"].shape == (1437, 28, 28, 1) and test["image"].shape == (360, 28, 28, 1)
    assert train["image"].min() >= -1.0 and train["image"].max() <= 1.0
    np.testing.assert_array_equal(train["image"][:, :4], -1.0)  # the 4-px frame MNIST leaves around digits
    assert np.bincount(test["label"], minlength=10).min() >= 20  # every class in the held-out fifth (26..48 each)


def _tiny_config(gan_weight):
    c = i2i.pix2pix_config("superres7", "mnist" if gan_weight else "mnist,l1")
    c.batch_size = 8
    c.model.unet_features = (4, 8)  # compile time dominates: the smallest U-Net
    c.model.d_features = 4
    return c


@pytest.mark.parametrize("gan_weight", [1.0, 0.0])
def test_one_training_step(gan_weight):
    t = i2i.build(_tiny_config(gan_weight))
    state = i2i.init_state(t, jax.random.key(0, impl="rbg"), (28, 28, 1))
    y = _images(8)
    new, metrics = i2i.make_pix2pix_step(t)(state, {"x": paired.make_pairs("superres7", y), "y": y})
    assert int(new.step) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values())
    changed = lambda a, b: any(bool(jnp.any(u != v)) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert changed(new.generator.params, state.generator.params)
    # The L1-only baseline leaves D untouched; the cGAN trains it.
    assert changed(new.discriminator.params, state.discriminator.params) == (gan_weight > 0)
    if gan_weight:
        assert "d_loss" in metrics


@pytest.mark.parametrize("spec, task, domain, gan_weight", [
    ("experiments/pix2pix_inpainting.py:mnist", "inpainting", "mnist", 1.0),
    ("experiments/pix2pix_inpainting.py:fashion_mnist,l1", "inpainting", "fashion_mnist", 0.0),
    ("experiments/pix2pix_superres.py:mnist", "superres7", "mnist", 1.0),
    ("experiments/pix2pix_superres.py:fashion_mnist,l1,14", "superres14", "fashion_mnist", 0.0),
])
def test_experiment_configs(spec, task, domain, gan_weight):
    import os
    from gan_jax.reproduce import load_config
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    c = load_config(spec, root)
    assert (c.kind, c.data.task, c.data.domain, c.loss.gan_weight, c.loss.l1_weight) == (
        "pix2pix", task, domain, gan_weight, 100.0)
    assert i2i.build(c).kind == "pix2pix"
    with pytest.raises(ValueError, match="variant"):
        load_config(spec.split(":")[0] + ":cifar10", root)

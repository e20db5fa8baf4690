"""pix2pix: U-Net shapes, skip connections and dropout noise; PatchGAN output size and receptive field;
the paired tasks; the task's step (GAN and L1-only), configs and their validation; runs of the one loop:
logging and resuming, 1 vs 2 devices, SIGKILL then relaunch.
Init keys of the network tests are rbg: flax init with threefry keys compiles several times slower on XLA:CPU."""
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import loop, parallel, tasks
from gan_jax.config_files import load_config
from gan_jax.data import paired
from gan_jax.models import patchgan
from gan_jax.models.unet import UNet
from gan_jax.tasks import pix2pix, translation
from tests.helpers import (assert_rows_close, config_flags, logged_metrics, max_abs_diff, set_fields,
                           sigkill_after_checkpoint_and_relaunch)

TINY_UNET = (8, 16, 16)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The task tests: the smallest nets (compile time dominates), two steps, a checkpoint and a grid at each.
TINY = {"batch_size": 8, "steps": 2, "log_every": 1, "checkpoint_every": 2, "sample_every": 2,
        "model.unet_features": (4, 8), "model.d_features": 4, "eval.num_test": 16, "eval.batch_size": 16}


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


def test_an_examples_dropout_depends_on_its_index_not_on_its_batch():
    """translate draws each example's masks from its global index: a batch split in two (over two devices) gives
    the same outputs, and the same image at another index gets other masks."""
    net = UNet(features=TINY_UNET)
    x = _images(4)
    params = _init(net, x[:1])
    run = jax.jit(lambda v, index: translation.translate(net, params, v, jax.random.key(1), index))
    whole = run(x, jnp.arange(4))
    halves = jnp.concatenate([run(x[:2], jnp.arange(2)), run(x[2:], jnp.arange(2, 4))])
    np.testing.assert_allclose(np.asarray(halves), np.asarray(whole), atol=1e-6)  # float rounding of other shapes
    assert float(jnp.max(jnp.abs(run(x, jnp.arange(4, 8)) - whole))) > 1e-2


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


def _tiny_config(**overrides):
    """inpainting on scikit-learn's digits (no files) with the smallest nets: compile time dominates."""
    return set_fields(pix2pix.experiment_config("inpainting", "mnist"), {"data.domain": "digits", **TINY, **overrides})


def _one_step(config):
    task = tasks.build(config)
    step = parallel.parallelize(task.train_step, "shard_map", parallel.make_mesh(jax.devices()[:1]), batch_axis=0)
    batch = task.batches(0, 1)(0)
    state = jax.device_get(jax.jit(task.init)(jax.random.key(0), batch))  # the step donates its input
    new, metrics = step(step.put_state(state), step.put_batch(batch))
    return state, jax.device_get(new), jax.device_get(metrics)


@pytest.mark.parametrize("gan_weight", [1.0, 0.0])
def test_one_training_step(gan_weight):
    state, new, metrics = _one_step(_tiny_config(**{"loss.gan_weight": gan_weight}))
    assert int(new.step) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values())
    np.testing.assert_allclose(metrics["g_loss"], gan_weight * metrics["g_adv"] + 100 * metrics["l1"], rtol=1e-5)
    assert max_abs_diff(new.generator.params, state.generator.params) > 0
    # The L1-only baseline leaves D untouched; the cGAN trains it.
    assert (max_abs_diff(new.discriminator.params, state.discriminator.params) > 0) == (gan_weight > 0)
    assert ("d_loss" in metrics) == (gan_weight > 0)


@pytest.mark.parametrize("spec, task, domain, gan_weight", [
    ("experiments/pix2pix_inpainting.py:mnist", "inpainting", "mnist", 1.0),
    ("experiments/pix2pix_inpainting.py:fashion_mnist,l1", "inpainting", "fashion_mnist", 0.0),
    ("experiments/pix2pix_superres.py:mnist", "superres7", "mnist", 1.0),
    ("experiments/pix2pix_superres.py:fashion_mnist,l1,14", "superres14", "fashion_mnist", 0.0),
])
def test_experiment_configs(spec, task, domain, gan_weight):
    c = load_config(spec, ROOT)
    assert (c.task, c.data.task, c.data.domain, c.loss.gan_weight, c.loss.l1_weight) == (
        "pix2pix", task, domain, gan_weight, 100.0)
    pix2pix.validate(c, 1)
    with pytest.raises(ValueError, match="variant"):
        load_config(spec.split(":")[0] + ":cifar10", ROOT)


@pytest.mark.parametrize("overrides, devices, message", [
    ({"data.task": "colorise"}, 1,
     r"unknown config.data.task 'colorise'; allowed: \['inpainting', 'superres7', 'superres14'\]"),
    ({"data.domain": "cifar10"}, 1,
     r"unknown config.data.domain 'cifar10'; allowed: \['mnist', 'fashion_mnist', 'digits'\]"),
    ({"loss.l1_weight": -1.0}, 1, "config.loss.l1_weight must be a number >= 0, got -1.0"),
    ({"loss.l1_weight": 0.0, "loss.gan_weight": 0.0}, 1,
     "config.loss.l1_weight and config.loss.gan_weight are both 0"),
    ({"batch_size": 9}, 2, "config.batch_size=9 is not divisible by the 2 devices"),
    ({"model.dropout": 1.0}, 1, r"config.model.dropout must be in \[0, 1\), got 1.0"),
    ({"model.unet_features": (4,)}, 1, r"config.model.unet_features must be two or more integers >= 1 .* got \(4,\)"),
    ({"model.d_layers": 4, "model.d_kernel": 4}, 1,
     "a PatchGAN with config.model.d_layers=4, d_kernel=4 has no output on 28 px images"),
    ({"eval.num_test": -1}, 1, "config.eval.num_test must be an integer >= 0, got -1"),
    ({"optim.discriminator.name": "adamw2"}, 1, "adamw2"),
    ({"loss.cycle_weight": 10.0}, 1, "unknown config field 'loss.cycle_weight' for task 'pix2pix'"),
])
def test_bad_config_values_are_named(overrides, devices, message):
    with pytest.raises(ValueError, match=message):
        tasks.build(_tiny_config(**overrides), num_devices=devices)


def test_the_loop_logs_checkpoints_and_resumes_each_step_once(tmp_path):
    one = jax.devices()[:1]
    loop.train_and_evaluate(_tiny_config(), str(tmp_path / "resumed"), devices=one)
    assert [r["step"] for r in logged_metrics(tmp_path / "resumed") if "g_loss" in r] == [1, 2]
    assert sorted(os.listdir(tmp_path / "resumed" / "checkpoints")) == ["2"]
    final = loop.train_and_evaluate(_tiny_config(steps=4), str(tmp_path / "resumed"), devices=one)
    rows = logged_metrics(tmp_path / "resumed")
    assert [r["step"] for r in rows if "g_loss" in r] == [1, 2, 3, 4]
    assert set(final) == {"l1", "psnr", "input_l1", "input_psnr", "num_test", "protocol"} and final["num_test"] == 16
    with open(tmp_path / "resumed" / "eval.json") as f:
        assert json.load(f) == {"step": 4, **final}
    assert sorted(os.listdir(tmp_path / "resumed" / "samples")) == [f"step_000000{s}.png" for s in (2, 4)]
    # The resumed run is the uninterrupted one.
    assert loop.train_and_evaluate(_tiny_config(steps=4), str(tmp_path / "straight"), devices=one) == final
    train_rows = lambda workdir: [r for r in logged_metrics(workdir) if "g_loss" in r]  # no eval/ rows
    assert train_rows(tmp_path / "straight") == train_rows(tmp_path / "resumed")


def test_two_devices_equal_one_device(tmp_path):
    """Per-example dropout keys and per-device means averaged over devices: the run does not depend on how its
    batch is split."""
    config = _tiny_config(steps=3, checkpoint_every=3, sample_every=100)
    one = loop.train_and_evaluate(config, str(tmp_path / "one"), devices=jax.devices()[:1])
    two = loop.train_and_evaluate(config, str(tmp_path / "two"), devices=jax.devices()[:2])
    assert len(logged_metrics(tmp_path / "one")) == 4  # 3 steps and the evaluation
    assert_rows_close(logged_metrics(tmp_path / "one"), logged_metrics(tmp_path / "two"), rtol=1e-5)
    np.testing.assert_allclose(two["l1"], one["l1"], rtol=1e-5)


@pytest.mark.slow
def test_sigkill_then_relaunch_equals_uninterrupted_run(tmp_path, data_dir):
    spec = "experiments/pix2pix_inpainting.py:mnist"
    overrides = {**TINY, "data.data_dir": data_dir, "steps": 12, "checkpoint_every": 4, "sample_every": 100}
    # The uninterrupted run in this process: its 1-device step is the subprocess's, bit for bit.
    loop.train_and_evaluate(set_fields(load_config(spec, ROOT), overrides), str(tmp_path / "straight"),
                            devices=jax.devices()[:1])
    killed_at, out = sigkill_after_checkpoint_and_relaunch(tmp_path / "killed",
                                                           ["--config", spec, *config_flags(overrides)], 4)
    assert 4 <= killed_at < 12  # the kill landed mid-run
    assert f"resumed from the checkpoint at step {killed_at}" in out and "final evaluation: l1 = " in out
    assert logged_metrics(tmp_path / "straight") == logged_metrics(tmp_path / "killed")
    assert [r["step"] for r in logged_metrics(tmp_path / "killed") if "g_loss" in r] == list(range(1, 13))
    with open(tmp_path / "straight" / "eval.json") as f, open(tmp_path / "killed" / "eval.json") as g:
        assert json.load(f) == json.load(g)

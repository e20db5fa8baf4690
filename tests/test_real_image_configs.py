"""The CIFAR-10 and CelebA configs (experiments/cifar10.py, celeba.py) train on tiny files in the real formats,
and the SN-GAN standard CNN (Miyato et al. 2018, Table 3) has its shapes and spectrally normalised layers."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments import celeba, cifar10
from gan_jax import data, loop, models
from gan_jax.data import tfds_local
from gan_jax.tasks import gan as gan_task
from tests import fake_data
from tests.helpers import small

ONE_DEVICE = jax.devices()[:1]
CIFAR_ROWS = 8  # per batch file: 40 training images, enough for one step of 5 critic updates of 4 images
CELEBA_SPLITS = (0,) * 8 + (1, 2, 2)  # list_eval_partition.txt: 8 train, 1 validation, 2 test images


@pytest.fixture(scope="module")
def real_data_dir(tmp_path_factory) -> str:
    """A TFDS data dir holding CIFAR-10 and CelebA built from the tiny files (not the published ones)."""
    d, manual = tmp_path_factory.mktemp("tfds"), tmp_path_factory.mktemp("manual")
    fake_data.write_cifar(manual / "cifar10", CIFAR_ROWS, CIFAR_ROWS, tarball=True)
    fake_data.write_celeba(manual / "celeb_a", CELEBA_SPLITS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(tfds_local.UNVERIFIED_ENV, "1")
        for name in ("cifar10", "celeb_a"):
            data.prepare(name, str(d), str(manual / name))
    return str(d)


def tiny(config, data_dir: str):
    """A real-image config shrunk to one step of 4 images with tiny nets (tests.helpers.small, plus SN-GAN widths)."""
    config = small(config, data_dir)
    config.batch_size = 4
    widths = {"generator": (16, 8, 8, 8), "critic": (8, 8, 8, 16)}
    for who in ("generator", "critic"):
        if config.model[who].name == "sngan":
            config.model[who].widths = widths[who]
    return config


# One CIFAR-10 and one CelebA config in CI; the other variants (same data paths, other nets) are slow.
IN_CI = ("cifar10:sngan", "celeba:dcgan")


@pytest.mark.parametrize("spec", [pytest.param(s, marks=() if s in IN_CI else pytest.mark.slow) for s in
                                  [f"cifar10:{v}" for v in cifar10.VARIANTS] + [f"celeba:{v}" for v in celeba.VARIANTS]])
def test_one_training_step(spec, real_data_dir, tmp_path):
    name, _, variant = spec.partition(":")
    config = tiny({"cifar10": cifar10, "celeba": celeba}[name].get_config(variant), real_data_dir)
    assert "target:" in config.paper and "FID" in config.paper
    loop.train_and_evaluate(config, str(tmp_path), devices=ONE_DEVICE)
    size = config.data.image_size
    grid = np.asarray(Image.open(tmp_path / "samples" / "step_0000001.png"))
    assert grid.shape == (8 * (size + 1) + 1,) * 2 + (3,)
    with open(tmp_path / "metrics.jsonl") as f:
        first = json.loads(f.readline())
    assert first["step"] == 1 and "generator_loss" in first and "critic_loss" in first
    assert all(np.isfinite(v) for v in first.values())


def test_celeba_is_cropped_then_resized(real_data_dir):
    """DCGAN's CelebA: the central 108x108 of the 178x218 face, resized to 64 (not the whole face squeezed)."""
    config = celeba.get_config()
    config.data.data_dir = real_data_dir
    x = gan_task.make_source(config).__getitems__([0])["x"]
    assert x.shape == (1, 64, 64, 3)
    raw = np.asarray(data.make_image_source("celeb_a", real_data_dir, "train").__getitems__([0])["image"])[0]
    crop = raw[55:163, 35:143]  # rows (218 - 108) / 2, cols (178 - 108) / 2
    resized = np.asarray(Image.fromarray(np.round((crop + 1) * 127.5).astype(np.uint8)).resize((64, 64),
                                                                                                  Image.BILINEAR))
    np.testing.assert_allclose((x[0] + 1) * 127.5, resized, atol=1.0)


def test_missing_cifar_file_is_named(tmp_path):
    empty = tmp_path / "manual"
    empty.mkdir()
    with pytest.raises(FileNotFoundError) as e:
        data.make_image_source("cifar10", str(tmp_path / "tfds"), "train", manual_dir=str(empty))
    assert "cifar-10-python.tar.gz" in str(e.value) and str(empty) in str(e.value)


@pytest.mark.parametrize("size,base", [(32, 4), (64, 8)])
def test_sngan_shapes(size, base):
    """Table 3 layer for layer (shapes only, no compute): G dense -> base x base x 512, deconvs 256, 128, 64, conv
    3x3 -> 3; D convs 3x3/4x4 of 64, 128, 256, 3x3 512, dense -> 1; base = size / 8."""
    G = models.build_generator(dict(name="sngan", image_size=size))
    D = models.build_critic(dict(name="sngan", image_size=size))
    z = jax.ShapeDtypeStruct((2, 128), jnp.float32)
    g_vars = jax.eval_shape(lambda z: G.init(jax.random.key(0), z, train=False), z)
    x = jax.eval_shape(lambda v, z: G.apply(v, z, train=False), g_vars, z)
    assert x.shape == (2, size, size, 3)
    g = {k: v["kernel"].shape for k, v in g_vars["params"].items() if "kernel" in v}
    assert g == {"Dense_0": (128, base * base * 512), "ConvTranspose_0": (4, 4, 512, 256),
                 "ConvTranspose_1": (4, 4, 256, 128), "ConvTranspose_2": (4, 4, 128, 64), "Conv_0": (3, 3, 64, 3)}
    d_vars = jax.eval_shape(lambda x: D.init(jax.random.key(1), x, train=False), x)
    scores, features = jax.eval_shape(lambda v, x: D.apply(v, x, train=False, return_features=True), d_vars, x)
    assert scores.shape == (2,) and features.shape == (2, base, base, 512)
    kernels = [d_vars["params"][f"Conv_{i}"]["kernel"].shape for i in range(7)]
    assert kernels == [(3, 3, 3, 64), (4, 4, 64, 64), (3, 3, 64, 128), (4, 4, 128, 128), (3, 3, 128, 256),
                       (4, 4, 256, 256), (3, 3, 256, 512)]
    assert d_vars["params"]["Dense_0"]["kernel"].shape == (base * base * 512, 1)


def test_sngan_critic_is_spectrally_normalised():
    """Every critic layer (7 convs, the dense) is divided by its power-iteration estimate of the largest singular
    value: the normalised weight's largest singular value is ~1, and scaling a kernel leaves the scores unchanged."""
    D = models.build_critic(dict(name="sngan", image_size=32, widths=(8, 8, 8, 16)))
    x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
    variables = D.init(jax.random.key(1), x, train=False)
    params = variables["params"]

    @jax.jit
    def iterate(stats):  # 50 training calls: 50 power iterations per layer
        def body(_, s):
            return D.apply({"params": params, "batch_stats": s}, x, train=True, mutable=["batch_stats"])[1][
                "batch_stats"]
        return jax.lax.fori_loop(0, 50, body, stats)

    stats = iterate(variables["batch_stats"])
    assert len(stats) == 8
    for layer in stats.values():
        (name,) = {k.split("/")[0] for k in layer}
        kernel = np.asarray(params[name]["kernel"])
        top = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]), compute_uv=False)[0]
        assert abs(top / float(layer[f"{name}/kernel/sigma"]) - 1.0) < 0.05, name

    scaled = jax.tree_util.tree_map_with_path(lambda p, w: w * 7.0 if p[-1].key == "kernel" else w, params)
    before = D.apply({"params": params, "batch_stats": stats}, x, train=False)
    after = D.apply({"params": scaled, "batch_stats": stats}, x, train=False)
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)

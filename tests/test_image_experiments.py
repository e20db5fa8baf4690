"""Every image experiment config trains one step on CPU (tiny widths and batch, the fake MNIST of
tests/fake_data.py)."""
import glob
import importlib
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from gan_jax import data, loop
from gan_jax.tasks import gan as gan_task
from tests import fake_data
from tests.helpers import small

ONE_DEVICE = jax.devices()[:1]  # fake CPU devices share 2 cores: one is fastest
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _image_gan_configs() -> list[str]:
    """The experiments/ files whose default config is a GAN on the MNIST family (the fixture's data; the CIFAR-10
    and CelebA configs train on their own tiny files in tests/test_real_image_configs.py)."""
    from gan_jax.config_files import load_config
    names = []
    for path in sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py"))):
        if "def get_config" not in open(path).read():
            continue
        config = load_config(os.path.relpath(path, ROOT), ROOT)
        if config.task == "gan" and config.data.name in ("mnist", "fashion_mnist", "stacked_mnist"):
            names.append(os.path.basename(path)[:-3])
    return names


IMAGE_CONFIGS = _image_gan_configs()


def test_every_image_config_is_tested():
    assert {"dcgan_mnist", "dcgan_fashion_mnist", "wgan_mnist", "wgan_gp_mnist", "lsgan_mnist",
            "hinge_sn_mnist", "rasgan_mnist", "cgan_mnist", "acgan_mnist", "goodfellow2014_mnist",
            "stacked_mnist"} <= set(IMAGE_CONFIGS)


# Packed Stacked MNIST trains in tests/test_stacked_mnist_config.py.
@pytest.mark.parametrize("name", IMAGE_CONFIGS + ["acgan_mnist:fake_class",
                                          pytest.param("stacked_mnist_metz:pacdcgan2_half", marks=pytest.mark.slow)])
def test_one_training_step(name, data_dir, tmp_path):
    name, _, variant = name.partition(":")
    config = small(importlib.import_module(f"experiments.{name}").get_config(variant), data_dir)
    assert config.paper, f"experiments/{name}.py must name the paper it follows"
    loop.train_and_evaluate(config, str(tmp_path), devices=ONE_DEVICE)
    grid = np.asarray(Image.open(os.path.join(tmp_path, "samples", "step_0000001.png")))
    rows = config.model.num_classes or 8  # class-conditional grids: one row per class
    assert grid.shape == (rows * 29 + 1, rows * 29 + 1, 3)
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        first = json.loads(f.readline())
    assert first["step"] == 1 and "generator_loss" in first
    assert all(np.isfinite(v) for v in first.values())


def test_image_runs_end_with_classifier_fid(data_dir, tmp_path):
    """With eval.classifier_dir set, a run ends with FID and the classifier score of its samples."""
    from experiments.classifier_mnist import get_config as classifier_config
    cconf = classifier_config()
    cconf.data.data_dir, cconf.steps, cconf.batch_size = data_dir, 4, 32  # one epoch of the 128 images
    cconf.model.channels, cconf.model.hidden = (4, 8), 16
    loop.train_and_evaluate(cconf, str(tmp_path / "clf"), devices=ONE_DEVICE)

    config = small(importlib.import_module("experiments.dcgan_mnist").get_config(), data_dir)
    config.eval.classifier_dir = str(tmp_path / "clf")
    config.eval.num_samples = 40
    results = loop.train_and_evaluate(config, str(tmp_path / "run"), devices=ONE_DEVICE)
    assert set(results) == {"fid", "kid", "kid_std", "classifier_score", "features", "fid_num_samples", "fid_num_real", "kid_subset_size", "kid_num_subsets", "protocol"}
    assert (results["fid_num_samples"], results["fid_num_real"]) == (40, 40)
    assert results["fid"] > 0 and 1.0 <= results["classifier_score"] <= 10.0
    with open(tmp_path / "run" / "eval.json") as f:
        saved = json.load(f)
    assert saved["fid"] == results["fid"] and "40 samples vs the first 40 mnist test images" in saved["protocol"]
    # The floor: training images as the samples, same classifier and protocol; far below a 2-step generator's.
    floor = gan_task.real_data_floor(config)
    assert set(floor) == {"fid", "kid", "kid_std", "classifier_score", "features", "fid_num_samples", "fid_num_real", "kid_subset_size", "kid_num_subsets"}
    assert 0.0 <= floor["fid"] < results["fid"] / 4 and 1.0 <= floor["classifier_score"] <= 10.0
    config.eval.num_samples = 10_000
    with pytest.raises(ValueError, match="config.eval.num_samples=10000 exceeds the 128 test images of mnist"):
        gan_task.Task(config).evaluate(None)

    stacked = small(importlib.import_module("experiments.stacked_mnist").get_config("pacdcgan2"), data_dir)
    stacked.eval.classifier_dir, stacked.eval.num_samples = str(tmp_path / "clf"), 40
    results = loop.train_and_evaluate(stacked, str(tmp_path / "stacked"), devices=ONE_DEVICE)
    assert set(results) == {"modes", "kl", "confident", "protocol"} and 1 <= results["modes"] <= 40
    assert 0.0 <= results["confident"] <= 1.0
    assert np.log(1000 / 40) - 1e-6 <= results["kl"] <= np.log(1000) + 1e-6  # 40 samples hit at most 40 modes


@pytest.mark.slow
def test_goodfellow_parzen_run(tmp_path):
    """The Goodfellow 2014 experiment end to end on the full real MNIST ($GAN_JAX_DATA/mnist): 200 steps, Parzen +
    memorisation check; its bounds are real MNIST's."""
    d = str(tmp_path / "tfds")
    data.prepare("mnist", d, str(fake_data.real_originals("mnist")))
    config = importlib.import_module("experiments.goodfellow2014_mnist").get_config()
    config.data.data_dir, config.steps, config.checkpoint_every = d, 200, 200
    results = loop.train_and_evaluate(config, str(tmp_path / "run"), devices=ONE_DEVICE)
    assert set(results) == {"parzen_log_likelihood", "parzen_std_err", "parzen_sigma", "nn_distance_ratio", "protocol"}
    assert np.isfinite(results["parzen_log_likelihood"]) and results["parzen_log_likelihood"] < 242
    assert results["parzen_sigma"] in [float(s) for s in np.logspace(-1, 0, 10)]
    assert results["nn_distance_ratio"] > 0.5

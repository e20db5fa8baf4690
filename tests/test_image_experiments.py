"""Every image experiment config trains one step on CPU (tiny widths and batch, a tiny offline MNIST)."""
import glob
import importlib
import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from gan_jax import data, experiment
from tests.helpers import small

ONE_DEVICE = jax.devices()[:1]  # fake CPU devices share 2 cores: one is fastest
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_CONFIGS = sorted(
    os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "experiments", "*.py"))
    if "def get_config" in open(p).read() and ("image_config" in open(p).read() or "_mnist import" in open(p).read()))


def test_every_image_config_is_tested():
    assert {"dcgan_mnist", "dcgan_fashion_mnist", "wgan_mnist", "wgan_gp_mnist", "lsgan_mnist",
            "hinge_sn_mnist", "rasgan_mnist", "cgan_mnist", "acgan_mnist", "goodfellow2014_mnist",
            "stacked_mnist"} <= set(IMAGE_CONFIGS)


@pytest.mark.parametrize("name", IMAGE_CONFIGS + ["acgan_mnist:fake_class", "stacked_mnist:pacdcgan2",
                                          "stacked_mnist_metz:pacdcgan2_half"])
def test_one_training_step(name, data_dir, tmp_path):
    name, _, variant = name.partition(":")
    config = small(importlib.import_module(f"experiments.{name}").get_config(variant), data_dir)
    assert config.paper, f"experiments/{name}.py must name the paper it follows"
    experiment.train_and_evaluate(config, str(tmp_path), devices=ONE_DEVICE)
    grid = np.asarray(Image.open(os.path.join(tmp_path, "samples", "step_0000001.png")))
    rows = config.model.num_classes or 8  # class-conditional grids: one row per class
    assert grid.shape == (rows * 29 + 1, rows * 29 + 1, 3)
    with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
        first = json.loads(f.readline())
    assert first["step"] == 1 and "generator_loss" in first
    assert all(np.isfinite(v) for v in first.values())


def test_image_runs_end_with_classifier_fid(data_dir, tmp_path):
    """With eval.classifier_dir set, a run ends with FID and the classifier score of its samples."""
    from gan_jax.metrics import classifier
    cconf = classifier.default_config()
    cconf.data_dir, cconf.epochs, cconf.batch_size = data_dir, 1, 32
    cconf.channels, cconf.hidden = (4, 8), 16
    model, params, meta = classifier.train(cconf, log=lambda _: None)
    classifier.save_classifier(str(tmp_path / "clf"), params, meta)

    config = small(importlib.import_module("experiments.dcgan_mnist").get_config(), data_dir)
    config.eval.classifier_dir = str(tmp_path / "clf")
    config.eval.num_samples = 40
    results = experiment.train_and_evaluate(config, str(tmp_path / "run"), devices=ONE_DEVICE)
    assert set(results) == {"fid", "classifier_score"}
    assert results["fid"] > 0 and 1.0 <= results["classifier_score"] <= 10.0
    with open(tmp_path / "run" / "eval.json") as f:
        saved = json.load(f)
    assert saved["fid"] == results["fid"] and "40 samples vs the first 40 mnist test images" in saved["protocol"]
    # The floor: training images as the samples, same classifier and protocol; far below a 2-step generator's.
    floor = experiment.real_data_floor(config)
    assert set(floor) == {"fid", "classifier_score"}
    assert 0.0 <= floor["fid"] < results["fid"] / 4 and 1.0 <= floor["classifier_score"] <= 10.0
    config.eval.num_samples = 10_000
    with pytest.raises(ValueError, match="config.eval.num_samples=10000 exceeds the 128 test images of mnist"):
        experiment.evaluate(experiment.train.build(config), None, config)

    stacked = small(importlib.import_module("experiments.stacked_mnist").get_config("pacdcgan2"), data_dir)
    stacked.eval.classifier_dir, stacked.eval.num_samples = str(tmp_path / "clf"), 40
    results = experiment.train_and_evaluate(stacked, str(tmp_path / "stacked"), devices=ONE_DEVICE)
    assert set(results) == {"modes", "kl", "confident"} and 1 <= results["modes"] <= 40
    assert 0.0 <= results["confident"] <= 1.0
    assert np.log(1000 / 40) - 1e-6 <= results["kl"] <= np.log(1000) + 1e-6  # 40 samples hit at most 40 modes


def test_nearest_distance_detects_memorisation():
    rng = np.random.default_rng(0)
    train = rng.random((500, 16))
    test = rng.random((50, 16))
    assert experiment._nearest_distance(train[:50], train) < 1e-3   # copies of training images
    ratio = experiment._nearest_distance(rng.random((50, 16)), train) / experiment._nearest_distance(test, train)
    assert 0.7 < ratio < 1.4                                           # fresh samples from the same law


@pytest.mark.slow
def test_goodfellow_parzen_run(tmp_path):
    """The Goodfellow 2014 experiment end to end on the full MNIST: 200 steps, Parzen + memorisation check."""
    d = str(tmp_path / "tfds")
    data.prepare("mnist", d)
    config = importlib.import_module("experiments.goodfellow2014_mnist").get_config()
    config.data.data_dir, config.steps, config.checkpoint_every = d, 200, 200
    results = experiment.train_and_evaluate(config, str(tmp_path / "run"), devices=ONE_DEVICE)
    assert set(results) == {"parzen_log_likelihood", "parzen_std_err", "parzen_sigma", "nn_distance_ratio"}
    assert np.isfinite(results["parzen_log_likelihood"]) and results["parzen_log_likelihood"] < 242
    assert results["parzen_sigma"] in [float(s) for s in np.logspace(-1, 0, 10)]
    assert results["nn_distance_ratio"] > 0.5

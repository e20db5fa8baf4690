"""gan_jax.metrics.classifier and features: the LeNet training loop on a tiny offline MNIST, its checkpoint
round trip, the FeatureNetwork built from it, and the training CLI with an experiment config."""
import json
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.classifier_mnist import get_config
from gan_jax import data
from gan_jax.metrics import classifier, features

N_EXAMPLES = 600  # per split


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    data.prepare("mnist", str(data_dir), max_examples=N_EXAMPLES)
    return str(data_dir)


def tiny_config(data_dir, **overrides):
    c = get_config()
    c.data_dir = data_dir
    c.max_train_examples = 512
    c.batch_size = 32
    c.epochs = 20  # 320 steps
    c.channels = (8, 16)
    c.hidden = 32
    c.update(overrides)
    return c


@pytest.fixture(scope="module")
def trained(tiny_mnist):
    config = tiny_config(tiny_mnist)
    model, params, meta = classifier.train(config, log=lambda _: None)
    return config, model, params, meta


def test_training_lifts_test_accuracy_far_above_chance(tiny_mnist, trained):
    config, model, params, meta = trained
    test = classifier.load_split(config, "test")
    untrained = classifier.init_params(model, jax.random.key(config.seed))
    before = classifier.accuracy(classifier.make_apply_fn(model, untrained), test["image"], test["label"])
    after = classifier.accuracy(classifier.make_apply_fn(model, params), test["image"], test["label"])
    assert before < 0.3 and after > 0.6, (before, after)
    np.testing.assert_allclose(meta["test_accuracy"], after)
    assert meta["num_test"] == N_EXAMPLES and meta["num_train"] == 512 and meta["steps"] == 320


def test_checkpoint_round_trip_and_feature_network(tmp_path, trained):
    config, model, params, meta = trained
    classifier.save_classifier(str(tmp_path), params, meta)
    model2, params2, meta2 = classifier.load_classifier(str(tmp_path))
    chex.assert_trees_all_equal(params2, params)
    assert meta2["dataset"] == "mnist" and meta2["feature_dim"] == 32 and model2 == model

    network = features.lenet_features(str(tmp_path))
    images = jax.random.uniform(jax.random.key(1), (7, 28, 28, 1), minval=-1, maxval=1)
    feats, logits = features.extract(network, images, batch_size=3)  # 3 + 3 + 1 (padded)
    want_feats, want_logits = model.apply({"params": params}, images, train=False)
    np.testing.assert_allclose(feats, want_feats, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-5)
    assert feats.shape == (7, 32) and network.name == "lenet_mnist" and np.all(feats >= 0)  # after ReLU
    with pytest.raises(ValueError, match=r"C in \(1,\)"):
        features.extract(network, jnp.zeros((2, 28, 28, 3)))
    with pytest.raises(ValueError, match=r"\[B, 28, 28, 1\]"):
        features.extract(network, jnp.zeros((2, 32, 32, 1)))


def test_batched_apply_pads_the_last_batch_and_rejects_bad_sizes():
    calls = []

    def fn(x):
        calls.append(x.shape[0])
        return {"double": 2 * x}
    out = features.batched_apply(fn, np.arange(10.0).reshape(10, 1), batch_size=4)
    np.testing.assert_array_equal(out["double"][:, 0], 2 * np.arange(10.0))
    assert calls == [4, 4, 4]
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        features.batched_apply(fn, np.zeros((3, 1)), batch_size=0)
    with pytest.raises(ValueError, match="N = 0"):
        features.batched_apply(fn, np.zeros((0, 1)), batch_size=2)


def test_missing_checkpoint_names_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m gan_jax.metrics.classifier --config"):
        classifier.load_classifier(str(tmp_path))


def test_unknown_dataset_is_rejected(tiny_mnist):
    with pytest.raises(ValueError, match="unknown classifier dataset 'cifar10'"):
        classifier.load_split(tiny_config(tiny_mnist, dataset="cifar10"), "train")


def test_cli_trains_and_saves_from_the_experiment_config(tiny_mnist, tmp_path):
    workdir = tmp_path / "clf"
    cmd = [sys.executable, "-m", "gan_jax.metrics.classifier", "--config", "experiments/classifier_mnist.py",
           "--workdir", str(workdir), f"--config.data_dir={tiny_mnist}", "--config.max_train_examples=64",
           "--config.batch_size=32", "--config.epochs=1", "--config.channels=(4, 8)", "--config.hidden=8"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    meta = json.loads((workdir / "classifier.json").read_text())
    assert meta["steps"] == 2 and meta["config"]["hidden"] == 8 and 0 <= meta["test_accuracy"] <= 1
    assert (workdir / "params").is_dir()

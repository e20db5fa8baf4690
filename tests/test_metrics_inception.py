"""gan_jax.metrics.features' InceptionV3: weight-file loading (PyTorch layout), the .pth converter, forward
shapes, the primitives checked against torch (conv + BN layout, TF-style pools, resize), and Inception FID / KID /
IS in a GAN run chosen by `config.eval.features`. The whole network against pytorch-fid's is
tests/test_inception_reference.py; against the published weights it cannot be checked offline."""
import importlib
import json
import re
import sys

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gan_jax import loop
from gan_jax.metrics import convert_inception, features, fid, protocols
from gan_jax.tasks import gan as gan_task
from tests.helpers import small, tiny_config


def random_state_dict(rng):
    """A random state dict with pytorch-fid's key names and PyTorch layouts, built from the network's shapes."""
    shapes = jax.eval_shape(features.InceptionV3().init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        collection, *names, leaf_name = [p.key for p in path]
        prefix = ".".join(names)
        shape = leaf.shape
        if leaf_name == "kernel" and len(shape) == 4:
            out[f"{prefix}.weight"] = rng.normal(0, np.sqrt(2 / np.prod(shape[:3])), (shape[3], shape[2], *shape[:2]))
        elif leaf_name == "kernel":
            out[f"{prefix}.weight"] = rng.normal(0, 0.01, shape[::-1])
        elif collection == "batch_stats":
            out[f"{prefix}.running_{leaf_name}"] = rng.uniform(0.5, 1.5, shape) if leaf_name == "var" \
                else rng.normal(0, 0.1, shape)
        else:
            out[f"{prefix}.{'weight' if leaf_name == 'scale' else 'bias'}"] = rng.normal(
                1.0 if leaf_name == "scale" else 0.0, 0.1, shape)
        if prefix.endswith(".bn") and leaf_name == "mean":
            out[f"{prefix}.num_batches_tracked"] = np.array(0)
    return {k: v.astype(np.float32) for k, v in out.items()}


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "pt_inception.npz"
    state = random_state_dict(np.random.default_rng(0))
    np.savez(path, **state)
    return str(path), state


def test_the_state_dict_has_pytorch_fids_94_conv_blocks_and_fc(weights_file):
    _, state = weights_file
    assert sum(k.endswith(".conv.weight") for k in state) == 94
    assert state["fc.weight"].shape == (1008, 2048) and state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)


@pytest.mark.slow  # ~10 s; tests/test_inception_reference.py runs the full forward against pytorch-fid in CI
def test_forward_from_a_weights_file_gives_pool3_and_1008_logits(weights_file):
    network = features.inception_v3_features(weights_file[0])
    images = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1), minval=-1, maxval=1)  # grey, tiled to RGB
    feats, logits = features.extract(network, images, batch_size=2)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008)
    assert np.all(np.isfinite(feats)) and np.all(feats >= 0)  # a mean of ReLU outputs
    assert network.feature_dim == 2048 and network.input_size == 299


def test_missing_or_foreign_weights_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05-6726825d.pth"):
        features.inception_v3_features(str(tmp_path / "nope.npz"))
    np.savez(tmp_path / "other.npz", **{"fc.weight": np.zeros((10, 2048)), "fc.bias": np.zeros(10)})
    with pytest.raises(ValueError, match="does not hold the FID InceptionV3's weights"):
        features.load_inception_variables(str(tmp_path / "other.npz"))
    np.savez(tmp_path / "bad.npz", **{"layer.weight": np.zeros(3)})
    with pytest.raises(ValueError, match="unexpected InceptionV3 weight 'layer.weight'"):
        features.load_inception_variables(str(tmp_path / "bad.npz"))


def test_conv_bn_block_matches_torch_with_the_same_state_dict():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    state = {"conv.weight": rng.normal(size=(6, 4, 1, 7)), "bn.weight": rng.uniform(0.5, 2, 6),
             "bn.bias": rng.normal(size=6), "bn.running_mean": rng.normal(size=6),
             "bn.running_var": rng.uniform(0.5, 2, 6)}
    state = {k: v.astype(np.float32) for k, v in state.items()}
    x = rng.normal(size=(2, 4, 9, 11)).astype(np.float32)  # NCHW
    t = {k: torch.from_numpy(v) for k, v in state.items()}
    want = torch.relu(torch.nn.functional.batch_norm(
        torch.nn.functional.conv2d(torch.from_numpy(x), t["conv.weight"], padding=(0, 3)),
        t["bn.running_mean"], t["bn.running_var"], t["bn.weight"], t["bn.bias"], eps=1e-3)).numpy()
    block = features._ConvBN(6, (1, 7), padding=(0, 3))
    got = block.apply(features.inception_variables(state), jnp.asarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(np.asarray(got).transpose(0, 3, 1, 2), want, rtol=1e-4, atol=1e-4)


def test_pools_and_resize_match_pytorch_fids_operations():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = np.random.default_rng(2).normal(size=(1, 3, 7, 8)).astype(np.float32) - 2.0  # negative: padding matters
    tx, hx = torch.from_numpy(x), jnp.asarray(x.transpose(0, 2, 3, 1))

    def nchw(a):
        return np.asarray(a).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(nchw(features._avg_pool_3x3(hx)),
                               F.avg_pool2d(tx, 3, stride=1, padding=1, count_include_pad=False).numpy(), rtol=1e-5)
    np.testing.assert_allclose(nchw(features._max_pool_3x3_s2(hx)), F.max_pool2d(tx, 3, stride=2).numpy())
    grey = np.random.default_rng(3).uniform(-1, 1, size=(1, 1, 28, 28)).astype(np.float32)
    want = F.interpolate(torch.from_numpy(np.repeat(grey, 3, axis=1)), size=(299, 299), mode="bilinear",
                         align_corners=False).numpy()
    got = nchw(features.inception_preprocess(jnp.asarray(grey.transpose(0, 2, 3, 1))))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_converter_writes_the_npz_the_network_loads(weights_file, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    _, state = weights_file
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "pt_inception.pth")
    out = tmp_path / "weights"  # written as named, no .npz appended
    assert convert_inception.main([str(tmp_path / "pt_inception.pth"), str(out)]) == 0
    assert f"--config.eval.inception_weights={out}" in capsys.readouterr().out
    with np.load(out) as saved:
        chex.assert_trees_all_equal(dict(saved), state)
    chex.assert_trees_all_equal(features.load_inception_variables(str(out)), features.inception_variables(state))


def test_the_converter_refuses_what_it_cannot_convert_in_one_line(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    torch.save({"fc.weight": torch.zeros(10, 2048)}, tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    cases = [("other.pth", "other.pth does not hold the FID InceptionV3's weights"),
             ("junk.pth", "torch.load cannot read .*junk.pth as a state dict"),
             ("missing.pth", "no file .*missing.pth.*pt_inception-2015-12-05-6726825d.pth")]
    for name, message in cases:
        assert convert_inception.main([str(tmp_path / name), str(tmp_path / "out.npz")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and re.search(message, err), err
    assert not (tmp_path / "out.npz").exists()
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert convert_inception.main([str(tmp_path / "other.pth"), str(tmp_path / "out.npz")]) == 2
    assert capsys.readouterr().err == ("error: reading the .pth needs torch: pip install torch "
                                       "(or pip install -e '.[reference]')\n")


def inception_config(data_dir: str, weights: str):
    """The DCGAN MNIST experiment shrunk to one step on the fake MNIST, Inception FID / KID / IS of 16 samples."""
    config = small(importlib.import_module("experiments.dcgan_mnist").get_config(), data_dir)
    config.eval.features, config.eval.inception_weights, config.eval.num_samples = "inception", weights, 16
    return config


@pytest.mark.slow  # three 2048-d FIDs (eigh, SVD) and two compiled Inception passes: minutes on 2 CPU cores
def test_a_gan_run_records_inception_scores_with_their_counts_and_features(weights_file, data_dir, tmp_path):
    config = inception_config(data_dir, weights_file[0])
    results = loop.train_and_evaluate(config, str(tmp_path / "run"), devices=jax.devices()[:1])
    counts = {"fid_num_samples": 16, "fid_num_real": 16, "kid_subset_size": 16, "kid_num_subsets": 100}
    assert {k: results[k] for k in counts} == counts and results["features"] == "inception_v3_fid"
    assert set(results) == {"fid", "kid", "kid_std", "inception_score", "features", "protocol", *counts}
    assert results["fid"] > 0 and 1.0 <= results["inception_score"] <= 2.0  # a split of n scores at most n
    assert f"InceptionV3 (pool3, 1008 classes) with the weights {weights_file[0]}" in results["protocol"]
    with open(tmp_path / "run" / "eval.json") as f:
        assert json.load(f)["fid_num_real"] == 16
    with open(tmp_path / "run" / "metrics.jsonl") as f:
        last = json.loads(f.read().splitlines()[-1])
    assert last["eval/fid"] == results["fid"] and last["eval/fid_num_samples"] == 16

    images = gan_task.first_images(config, "test", 16)  # a set against itself
    net = features.feature_network(config)
    same = protocols.image_scores(net, images, protocols.array_sampler(images), 16)
    trace = float(jnp.trace(fid.mean_cov(fid.batch_stats(jnp.asarray(features.extract(net, images)[0])))[1]))
    assert abs(same["fid"]) < 1e-5 * trace and trace > 1.0


@pytest.mark.parametrize("fields, message", [
    ({"eval.features": "inceptionv3"},
     r"unknown config.eval.features 'inceptionv3'; allowed: \['classifier', 'inception'\]"),
    ({"eval.features": "inception"}, r"config.eval.features='inception' needs config.eval.inception_weights: download "
                                     r"pytorch-fid's FID Inception weights https://github.com/mseitzer/pytorch-fid/"
                                     r"releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth and convert "
                                     r"them once \(needs torch\): python -m gan_jax.metrics.convert_inception "),
    ({"eval.features": "inception", "eval.inception_weights": "/nonexistent/w.npz"},
     r"config.eval.inception_weights='/nonexistent/w.npz' does not exist; download .*convert_inception"),
])
def test_bad_feature_choices_are_refused_at_launch(fields, message):
    config = tiny_config(**fields)
    with pytest.raises(ValueError, match=message) as refused:
        gan_task.validate(config)
    assert "\n" not in str(refused.value)


def test_the_feature_choice_picks_the_network_and_its_protocol_line(weights_file, data_dir):
    config = inception_config(data_dir, weights_file[0])
    gan_task.validate(config)
    net = features.feature_network(config)
    assert (net.name, net.score_name, net.feature_dim, net.channels) == ("inception_v3_fid", "inception_score", 2048,
                                                                          (1, 3))
    config.eval.features = "classifier"
    assert features.feature_network(config) is None and features.feature_description(config) is None
    assert not gan_task.scores_images(config)
    config.eval.classifier_dir = "/some/classifier"
    assert features.feature_description(config) == "the classifier in /some/classifier"
    older = ml_collections.ConfigDict({"eval": {"classifier_dir": "/c"}})  # a run's config from before the fields
    features.check_feature_config(older)
    assert features.feature_description(older) == "the classifier in /c"

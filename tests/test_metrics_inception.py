"""gan_jax.metrics.features' InceptionV3: weight-file loading (PyTorch layout), forward shapes, and the
primitives checked against torch (conv + BN layout, TF-style pools, resize). Its agreement with published
Inception features cannot be checked offline: no weights are available here."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.metrics import features


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

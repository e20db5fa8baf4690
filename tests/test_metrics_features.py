"""gan_jax.metrics.features' compiled feature pass (moments, kept outputs, padding, device-count
independence), gan_jax.metrics.batching, and the KID and counts `protocols.image_scores` records, on a small
planted network."""
import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.metrics import batching, features, fid, protocols
from tests.helpers import subprocess_xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def toy_network(seed: int = 0, feature_dim: int = 6, num_classes: int = 3) -> features.FeatureNetwork:
    """ReLU of a random projection of the pixels (features, offset so their mean is far from 0) and a
    linear read-out of them (logits); 8×8×1 images."""
    rng = np.random.default_rng(seed)
    variables = {"w": jnp.asarray(rng.normal(size=(64, feature_dim)), jnp.float32),
                 "u": jnp.asarray(rng.normal(size=(feature_dim, num_classes)), jnp.float32)}

    def forward(v, images):
        feats = jax.nn.relu(images.reshape(images.shape[0], -1) @ v["w"]) + 10.0
        return feats, feats @ v["u"]
    return features.FeatureNetwork(name="toy", forward=forward, variables=variables, input_size=8, channels=(1,),
                                   feature_dim=feature_dim, num_classes=num_classes)


def toy_images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, 8, 8, 1)).astype(np.float32)


def test_pass_gives_every_images_outputs_and_their_exact_moments():
    net, images = toy_network(), toy_images(13)
    out = features.feature_pass(net, images, batch_size=4, keep_features=True, keep_logits=True,
                                devices=jax.devices()[:1])  # 4 + 4 + 4 + 1 (padded, masked)
    want_f, want_l = net.apply_fn(jnp.asarray(images))
    np.testing.assert_allclose(out.features, want_f, rtol=1e-6)
    np.testing.assert_allclose(out.logits, want_l, rtol=1e-5, atol=1e-5)
    assert int(out.stats.count) == 13
    chex.assert_trees_all_close(out.stats, fid.batch_stats(want_f), rtol=1e-5, atol=1e-4)
    only_stats = features.feature_pass(net, images, batch_size=4, devices=jax.devices()[:1])
    assert only_stats.features is None and only_stats.logits is None
    chex.assert_trees_all_close(only_stats.stats, out.stats)
    f, logits = features.extract(net, images, batch_size=5, devices=jax.devices()[:1])
    np.testing.assert_allclose(f, out.features, rtol=1e-6)
    np.testing.assert_allclose(logits, out.logits, rtol=1e-6)


def test_batch_size_is_rounded_up_to_the_device_count():
    """3 images per batch over 2 devices run as batches of 4; a batch larger than N shrinks to N."""
    seen = []
    net = toy_network()

    def forward(v, images):
        seen.append(images.shape[0])  # per device, at trace time
        return net.forward(v, images)
    counting = features.FeatureNetwork("toy", forward, net.variables, 8, (1,), 6, 3)
    out = features.feature_pass(counting, toy_images(7), batch_size=3, devices=jax.devices()[:2])
    assert seen == [2] and int(out.stats.count) == 7
    out = features.feature_pass(counting, toy_images(3), batch_size=500, devices=jax.devices()[:1])
    assert seen[1:] == [3] and int(out.stats.count) == 3


_DEVICE_SCRIPT = """
import json, sys
import jax, numpy as np
sys.path.insert(0, {root!r})
from tests.test_metrics_features import toy_images, toy_network
from gan_jax.metrics import features
assert len(jax.devices()) == 2, jax.devices()
net, images = toy_network(), toy_images(29)
out = {{}}
for n in (1, 2):
    r = features.feature_pass(net, images, batch_size=8, keep_features=True, keep_logits=True,
                              devices=jax.devices()[:n])
    out[n] = {{"count": int(r.stats.count), "mean": r.stats.mean.tolist(), "scatter": r.stats.scatter.tolist(),
               "features": r.features.tolist(), "logits": r.logits.tolist()}}
print(json.dumps(out))
"""


def test_one_and_two_devices_give_the_same_moments_and_outputs():
    """29 images in batches of 8 over 2 devices (the last one 5 real rows, 3 masked) equal 1 device."""
    env = dict(os.environ, XLA_FLAGS=subprocess_xla_flags(2) + " --xla_cpu_collective_call_warn_stuck_timeout_seconds=3"
               " --xla_cpu_collective_call_terminate_timeout_seconds=6")
    proc = subprocess.run([sys.executable, "-c", _DEVICE_SCRIPT.format(root=ROOT)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    one, two = out["1"], out["2"]
    assert one["count"] == two["count"] == 29
    for key in ("features", "logits"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(two["mean"], one["mean"], rtol=1e-6)
    np.testing.assert_allclose(two["scatter"], one["scatter"], rtol=1e-5, atol=1e-4)
    want = fid.batch_stats(jnp.asarray(one["features"]))
    np.testing.assert_allclose(two["scatter"], want.scatter, rtol=1e-5, atol=1e-4)


def test_bad_inputs_are_rejected():
    net = toy_network()
    with pytest.raises(ValueError, match=r"C in \(1,\)"):
        features.feature_pass(net, np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="N = 0"):
        features.extract(net, np.zeros((0, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        features.feature_pass(net, toy_images(2), batch_size=0)


def test_batched_apply_pads_the_last_batch_and_rejects_bad_sizes():
    calls = []

    def fn(x):
        calls.append(x.shape[0])
        return {"double": 2 * x}
    out = batching.batched_apply(fn, np.arange(10.0).reshape(10, 1), batch_size=4)
    np.testing.assert_array_equal(out["double"][:, 0], 2 * np.arange(10.0))
    assert calls == [4, 4, 4]
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        batching.batched_apply(fn, np.zeros((3, 1)), batch_size=0)
    with pytest.raises(ValueError, match="N = 0"):
        batching.batched_apply(fn, np.zeros((0, 1)), batch_size=2)


def mmd2_unbiased_float64(x: np.ndarray, y: np.ndarray) -> float:
    """Gretton et al. 2012's unbiased MMD² with KID's kernel (xᵀy / d + 1)³, in float64 by the formula."""
    k = lambda a, b: (a @ b.T / a.shape[1] + 1.0) ** 3  # noqa: E731
    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
            - 2 * k(x, y).mean())


def test_image_scores_record_kid_and_the_counts_beside_fid_and_the_score():
    """With as many samples as real images (< 1000), every KID subset is a whole set: KID is their MMD²_u,
    the same on every subset."""
    net, real, fake = toy_network(), toy_images(24, seed=3), 0.5 * toy_images(24, seed=4)
    scores = protocols.image_scores(net, real, protocols.array_sampler(fake), 24, batch_size=16)
    assert {k: scores[k] for k in ("fid_num_samples", "fid_num_real", "kid_subset_size", "kid_num_subsets")} == \
        {"fid_num_samples": 24, "fid_num_real": 24, "kid_subset_size": 24, "kid_num_subsets": 100}
    assert scores["features"] == "toy" and set(scores) >= {"fid", "classifier_score", "kid", "kid_std"}
    real_f, _ = features.extract(net, real, devices=jax.devices()[:1])
    fake_f, _ = features.extract(net, fake, devices=jax.devices()[:1])
    want = mmd2_unbiased_float64(real_f.astype(np.float64), fake_f.astype(np.float64))
    np.testing.assert_allclose(scores["kid"], want, rtol=1e-5)  # measured 2e-7
    assert want > 1.0 and scores["kid_std"] < 1e-5 * want  # float32 rounding of the permuted sums

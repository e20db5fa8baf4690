"""gan_jax.metrics.protocols: sample chunking, and each protocol's values on planted samplers (samples at
the mixture modes, real images as samples, brute-force nearest distances, the Parzen reference values)."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from gan_jax.data import mixtures
from gan_jax.metrics import features, fid, inception_score, parzen, protocols, stacked_mnist
from tests.test_metrics_features import toy_images, toy_network


def indexed_sampler(calls: list | None = None):
    """Sample i is a deterministic function of its index: any chunking gives the same samples."""
    def sample(n, offset):
        if calls is not None:
            calls.append((n, offset))
        i = np.arange(offset, offset + n, dtype=np.float32)
        return np.stack([np.sin(i), np.cos(0.5 * i)], axis=1)
    return sample


def test_draw_chunks_by_1000_and_equals_one_call():
    calls = []
    samples = protocols.draw(indexed_sampler(calls), 2500)
    assert calls == [(1000, 0), (1000, 1000), (500, 2000)]
    np.testing.assert_array_equal(samples, indexed_sampler()(2500, 0))
    np.testing.assert_array_equal(protocols.draw(indexed_sampler(), 7, chunk=3), indexed_sampler()(7, 0))
    with pytest.raises(ValueError, match="num_samples and chunk must be >= 1"):
        protocols.draw(indexed_sampler(), 0)


def test_array_sampler_reads_offsets_and_refuses_to_run_out():
    images = np.arange(10.0)[:, None]
    np.testing.assert_array_equal(protocols.draw(protocols.array_sampler(images), 10, chunk=4), images)
    with pytest.raises(ValueError, match="samples 8..12 of 10 images"):
        protocols.array_sampler(images)(4, 8)


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_samples_at_the_modes_capture_all_with_full_quality_and_zero_kl(name):
    mix = mixtures.get_mixture(name)
    k = mix.num_modes
    calls = []

    def at_modes(n, offset):
        calls.append((n, offset))
        return np.tile(mix.means, (n // k, 1)).astype(np.float32)
    scores = protocols.mixture_scores(at_modes, mix, 10 * k)
    assert calls == [(10 * k, 0)]  # one call: the samples of the current evaluation
    assert scores["modes"] == k and scores["high_quality"] == 1.0
    np.testing.assert_allclose(scores["reverse_kl"], 0.0, atol=1e-6)
    assert scores["high_quality_per_mode"] == [10] * k and scores["low_quality_per_mode"] == [0] * k


def test_mode_collapse_and_low_quality_samples_are_counted_per_mode():
    mix = mixtures.get_mixture("ring")
    far = mix.means[2] * 1.5  # 50 σ outside the ring, nearest to mode 2
    samples = np.concatenate([np.repeat(mix.means[:1], 6, axis=0), far[None].repeat(2, 0)]).astype(np.float32)
    scores = protocols.mixture_scores(lambda n, offset: samples, mix, 8)
    assert scores["modes"] == 1 and scores["high_quality"] == 0.75
    np.testing.assert_allclose(scores["reverse_kl"], np.log(8), rtol=1e-6)  # all mass on one of 8 modes
    assert scores["high_quality_per_mode"] == [6] + [0] * 7
    assert scores["low_quality_per_mode"] == [0, 0, 2] + [0] * 5


def test_nearest_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    points, reference = rng.random((37, 16)).astype(np.float32), rng.random((230, 16)).astype(np.float32)
    brute = np.median(np.min(np.linalg.norm(points[:, None] - reference[None], axis=-1), axis=1))
    for chunk in (64, 10_000):  # several reference chunks and one
        np.testing.assert_allclose(protocols.nearest_distance(points, reference, chunk=chunk), brute, rtol=1e-5)
    assert protocols.nearest_distance(reference[:50], reference) < 1e-3  # copies of training images


def scipy_parzen(points, centres, sigma):
    cov = scipy.stats.Covariance.from_diagonal(np.full(points.shape[1], sigma ** 2))
    logpdf = np.stack([scipy.stats.multivariate_normal(mean=mu, cov=cov).logpdf(points) for mu in centres])
    return scipy.special.logsumexp(logpdf, axis=0) - np.log(len(centres))


def test_parzen_scores_reproduce_the_parzen_reference_values():
    """The values of tests/test_metrics_parzen.py's σ-selection case, with the centres drawn as [−1, 1]
    samples, plus the memorisation ratio of samples that copy the training set."""
    rng = np.random.default_rng(2)
    centres = rng.normal(0.5, 0.2, size=(200, 5))
    validation, test = rng.normal(0.5, 0.2, size=(50, 5)), rng.normal(0.5, 0.2, size=(40, 5))
    images = (2.0 * centres - 1.0).astype(np.float32)
    calls = []

    def sampler(n, offset):
        calls.append((n, offset))
        return images[offset:offset + n]
    scores = protocols.parzen_scores(sampler, validation, test, centres, num_samples=200)
    assert calls == [(200, 0)]
    scipy_means = [scipy_parzen(validation, centres, s).mean() for s in parzen.GOODFELLOW_SIGMAS]
    assert scores["parzen_sigma"] == parzen.GOODFELLOW_SIGMAS[int(np.argmax(scipy_means))]
    ll = scipy_parzen(test, centres, scores["parzen_sigma"])
    np.testing.assert_allclose(scores["parzen_log_likelihood"], ll.mean(), rtol=1e-5)
    np.testing.assert_allclose(scores["parzen_std_err"], ll.std() / np.sqrt(len(ll)), rtol=1e-4)
    assert scores["nn_distance_ratio"] < 1e-2  # the samples are the training images
    assert set(scores) == {"parzen_log_likelihood", "parzen_std_err", "parzen_sigma", "nn_distance_ratio"}
    # parzen_ll.py's options: another σ grid (its --sigma_start/--sigma_end/--cross_val) and fewer samples.
    fine = parzen.sigma_grid(-1.5, 0.0, 31)
    finer = protocols.parzen_scores(sampler, validation, test, centres, num_samples=100, sigmas=fine)
    assert calls[-1] == (100, 0)
    means = [scipy_parzen(validation, centres[:100], s).mean() for s in fine]
    assert finer["parzen_sigma"] == fine[int(np.argmax(means))]
    np.testing.assert_allclose(finer["parzen_log_likelihood"],
                               scipy_parzen(test, centres[:100], finer["parzen_sigma"]).mean(), rtol=1e-5)


def test_image_scores_of_real_images_as_samples_give_fid_zero():
    net, real = toy_network(), toy_images(300)
    calls = []

    def sampler(n, offset):
        calls.append((n, offset))
        return real[offset:offset + n]
    scores = protocols.image_scores(net, real, sampler, 300, batch_size=64)
    assert calls == [(300, 0)] and set(scores) == {"fid", "kid", "kid_std", "classifier_score", "features", "fid_num_samples",
                                                 "fid_num_real", "kid_subset_size", "kid_num_subsets"}
    assert (scores["fid_num_samples"], scores["fid_num_real"]) == (300, 300)
    f, logits = net.apply_fn(jnp.asarray(real))
    trace = float(jnp.trace(fid.mean_cov(fid.batch_stats(f))[1]))
    np.testing.assert_allclose(scores["fid"] / trace, 0.0, atol=1e-5)
    want_is, _ = inception_score.inception_score(jax.nn.softmax(logits))
    np.testing.assert_allclose(scores["classifier_score"], want_is, rtol=1e-5)


def test_image_scores_equal_fid_and_is_of_the_extracted_features():
    """The streamed, device-split computation is the FID / IS of the whole feature sets."""
    net, real, fake = toy_network(), toy_images(120, seed=3), 0.5 * toy_images(2100, seed=4)
    scores = protocols.image_scores(net, real, protocols.array_sampler(fake), 2100, batch_size=500)
    real_f, _ = features.extract(net, real, devices=jax.devices()[:1])
    fake_f, fake_logits = features.extract(net, fake, devices=jax.devices()[:1])
    want = fid.fid(jnp.asarray(real_f), jnp.asarray(fake_f))
    np.testing.assert_allclose(scores["fid"], want, rtol=1e-4)
    assert float(want) > 1.0
    score, _ = inception_score.inception_score(jax.nn.softmax(jnp.asarray(fake_logits)))
    np.testing.assert_allclose(scores["classifier_score"], score, rtol=1e-5)
    with pytest.raises(ValueError, match=">= 2 samples"):
        protocols.image_scores(net, real, protocols.array_sampler(fake), 1)


def digit_reader() -> features.FeatureNetwork:
    """Reads a grey image's mean level in [−1, 1] as the digit round(9 (x + 1) / 2), confidently."""
    def forward(_, images):
        level = jnp.round((jnp.mean(images, axis=(1, 2, 3)) + 1) / 2 * 9).astype(jnp.int32)
        logits = 20.0 * jax.nn.one_hot(level, 10)
        return logits, logits
    return features.FeatureNetwork("digits", forward, {}, 28, (1,), 10, 10)


def test_stacked_mnist_scores_read_each_channel():
    digits = np.random.default_rng(0).integers(0, 10, size=(1200, 3))
    images = np.broadcast_to((digits / 9.0 * 2 - 1)[:, None, None, :], (1200, 28, 28, 3)).astype(np.float32)
    net = digit_reader()
    scores = protocols.stacked_mnist_scores(net, protocols.array_sampler(images), 1200, batch_size=512)
    ids = 100 * digits[:, 0] + 10 * digits[:, 1] + digits[:, 2]
    assert scores["modes"] == len(np.unique(ids)) and scores["confident"] == 1.0
    np.testing.assert_allclose(scores["kl"], stacked_mnist.mode_statistics(jnp.asarray(ids))["kl"], rtol=1e-6)
    reference = stacked_mnist.stacked_mnist_modes(images, lambda x: net.apply_fn(x)[1])
    chex.assert_trees_all_close({k: reference[k] for k in scores}, scores)


def test_protocol_lines_name_their_counts():
    assert protocols.mixture_protocol(2500) == "2500 samples from the generator; PacGAN's mode statistics"
    line = protocols.mixture_protocol(2500, ema_decay=0.999, precise_bn_batches=100, batch_size=64)
    assert "EMA generator (decay 0.999)" in line and "*_precise_bn: G's batch statistics recomputed from 100 " \
        "batches of 64" in line
    assert "10,000 samples, sigma from logspace(-1, 0, 10) on MNIST train[50000:51000]" in protocols.parzen_protocol()
    assert "2,000 samples, sigma from logspace(-1.5, 0, 31) on MNIST train[50000:60000]" in protocols.parzen_protocol(
        2000, (-1.5, 0.0, 31), 10_000)
    assert protocols.image_protocol(40, "mnist", "clf").startswith("40 samples vs the first 40 mnist test images")
    assert protocols.stacked_mnist_protocol(26000, "clf").startswith("26000 samples, each channel classified by clf")

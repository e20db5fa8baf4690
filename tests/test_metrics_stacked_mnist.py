"""gan_jax.metrics.stacked_mnist: modes out of 1000 and KL(p̂ ‖ uniform) on planted predictions."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.metrics import stacked_mnist as sm


def test_every_mode_equally_often_gives_1000_modes_and_zero_kl():
    stats = sm.mode_statistics(jnp.repeat(jnp.arange(1000), 26))
    assert int(stats["modes"]) == 1000
    np.testing.assert_allclose(stats["kl"], 0.0, atol=1e-6)


def test_one_mode_gives_kl_log_1000():
    stats = sm.mode_statistics(jnp.full(sm.NUM_SAMPLES, 417))
    assert int(stats["modes"]) == 1
    np.testing.assert_allclose(stats["kl"], np.log(1000), rtol=1e-6)


def test_a_perfect_uniform_sampler_sits_at_the_plug_in_floor():
    """26,000 uniform draws: all 1000 modes, and KL ≈ (K − 1) / (2N) = 0.0192 (the plug-in estimator's bias),
    averaged over 32 seeds (one seed's spread is ~0.0009)."""
    keys = jax.random.split(jax.random.key(0), 32)
    stats = jax.vmap(lambda k: sm.mode_statistics(jax.random.randint(k, (sm.NUM_SAMPLES,), 0, 1000)))(keys)
    assert np.all(np.asarray(stats["modes"]) == 1000)
    np.testing.assert_allclose(float(jnp.mean(stats["kl"])), 999 / (2 * sm.NUM_SAMPLES), rtol=0.03)


def test_kl_of_a_planted_histogram_matches_the_formula():
    """Half the samples on 10 modes, half on 490: KL = Σ p log(1000 p) computed by hand."""
    ids = jnp.concatenate([jnp.repeat(jnp.arange(10), 49), jnp.repeat(jnp.arange(10, 500), 1)])
    p = np.array([49] * 10 + [1] * 490) / 980
    stats = sm.mode_statistics(ids)
    assert int(stats["modes"]) == 500
    np.testing.assert_allclose(stats["kl"], np.sum(p * np.log(1000 * p)), rtol=1e-5)


def test_channels_are_read_as_hundreds_tens_units():
    """A planted classifier reads a channel's constant grey level as its digit; R is the hundreds."""
    rng = np.random.default_rng(0)
    digits = rng.integers(0, 10, size=(50, 3))
    images = np.broadcast_to((digits / 9.0 * 2 - 1)[:, None, None, :], (50, 28, 28, 3)).astype(np.float32)

    def classify(x):
        level = jnp.round((jnp.mean(x, axis=(1, 2, 3)) + 1) / 2 * 9).astype(jnp.int32)
        return jax.nn.one_hot(level, 10)

    np.testing.assert_array_equal(sm.channel_digits(images, classify, batch_size=64), digits)
    result = sm.stacked_mnist_modes(images, classify, batch_size=64)
    ids = 100 * digits[:, 0] + 10 * digits[:, 1] + digits[:, 2]
    assert result["modes"] == len(np.unique(ids)) and result["num_samples"] == 50
    np.testing.assert_allclose(result["kl"], sm.mode_statistics(jnp.asarray(ids))["kl"], rtol=1e-6)
    assert result["confident"] == 0.0  # one-hot logits: softmax max e / (e + 9) = 0.23
    unsure_blue = lambda x: classify(x) * 20 * jnp.where(jnp.arange(len(x)) % 3 == 2, 0.05, 1.0)[:, None]  # noqa: E731
    # Channels are classified in the order sample 0 R, G, B, sample 1 R, ...: every B gets max prob e / (e + 9) < 0.9.
    assert sm.stacked_mnist_modes(images, lambda x: classify(x) * 20, batch_size=64)["confident"] == 1.0
    assert sm.stacked_mnist_modes(images, unsure_blue, batch_size=60)["confident"] == 0.0


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        sm.channel_digits(np.zeros((2, 28, 28, 1)), lambda x: x)
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        sm.mode_ids(jnp.zeros((4, 2), jnp.int32))

"""gan_jax.metrics.inception_score: exp(E KL(p(y|x) ‖ p(y))) over splits (Salimans et al. 2016)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax.metrics.inception_score import inception_score, split_scores


def reference_numpy(preds, splits):
    """openai/improved-gan's inception_score.py loop, in float64."""
    scores = []
    for i in range(splits):
        part = preds[(i * preds.shape[0] // splits):((i + 1) * preds.shape[0] // splits), :]
        kl = part * (np.log(part) - np.log(np.expand_dims(np.mean(part, 0), 0)))
        scores.append(np.exp(np.mean(np.sum(kl, 1))))
    return np.mean(scores), np.std(scores)


def test_one_hot_predictions_over_k_balanced_classes_score_k():
    k = 10
    probs = jax.nn.one_hot(jnp.arange(500) % k, k)  # every split of 50 holds each class 5 times
    mean, std = inception_score(probs)
    np.testing.assert_allclose(mean, k, rtol=1e-5)
    np.testing.assert_allclose(std, 0.0, atol=1e-5)


def test_uniform_predictions_score_one():
    mean, std = inception_score(jnp.full((300, 7), 1 / 7))
    np.testing.assert_allclose(mean, 1.0, rtol=1e-6)
    np.testing.assert_allclose(std, 0.0, atol=1e-6)


def test_collapsed_confident_predictions_score_one():
    """One class, confidently: p(y|x) = p(y), KL = 0 (the 0 log 0 terms stay 0, not NaN)."""
    np.testing.assert_allclose(inception_score(jax.nn.one_hot(jnp.zeros(100, int), 5))[0], 1.0, rtol=1e-6)


def test_matches_the_reference_code_on_random_probabilities_and_uneven_splits():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(12, 0.3), size=1003)
    mean, std = inception_score(jnp.asarray(probs, jnp.float32), num_splits=10)
    ref_mean, ref_std = reference_numpy(probs, 10)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-4)
    np.testing.assert_allclose(std, ref_std, rtol=1e-3)
    assert split_scores(jnp.asarray(probs), 10).shape == (10,)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        inception_score(jnp.ones((4,)))
    with pytest.raises(ValueError, match="num_splits must be in 1..N=4, got 5"):
        inception_score(jnp.ones((4, 2)) / 2, num_splits=5)

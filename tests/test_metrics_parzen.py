"""gan_jax.metrics.parzen: Gaussian Parzen-window log-likelihood and Goodfellow et al.'s σ selection."""
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from gan_jax.metrics import parzen


def scipy_parzen(points, centres, sigma):
    """log (1/N) Σ_i N(x; μ_i, σ² I) with scipy's multivariate normal, float64."""
    d = points.shape[1]
    cov = scipy.stats.Covariance.from_diagonal(np.full(d, sigma ** 2))
    logpdf = np.stack([scipy.stats.multivariate_normal(mean=mu, cov=cov).logpdf(points) for mu in centres])
    return scipy.special.logsumexp(logpdf, axis=0) - np.log(len(centres))


def test_log_likelihood_matches_scipy_mixture():
    rng = np.random.default_rng(0)
    points, centres = rng.uniform(size=(9, 6)), rng.uniform(size=(13, 6))
    sigmas = [0.1, 0.3, 1.0]
    got = parzen.parzen_log_likelihoods(points, centres, sigmas, batch_size=4)  # 9 = 4 + 4 + 1 (padded)
    expected = np.stack([scipy_parzen(points, centres, s) for s in sigmas])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(parzen.parzen_log_likelihoods(points, centres, sigmas, batch_size=100), got,
                               rtol=1e-6, atol=1e-4)


def test_far_points_stay_finite_in_high_dimension():
    """784-d, σ = 0.1, points far from every centre: logsumexp keeps exp(−‖x − μ‖²/2σ²) from underflowing."""
    rng = np.random.default_rng(1)
    centres, points = rng.uniform(size=(20, 784)), rng.uniform(size=(3, 784))
    got = parzen.parzen_log_likelihoods(points, centres, [0.1])[0]
    assert np.all(np.isfinite(np.asarray(got)))
    np.testing.assert_allclose(got, scipy_parzen(points, centres, 0.1), rtol=1e-5)


def test_evaluate_picks_the_best_validation_sigma_and_reports_the_standard_error():
    rng = np.random.default_rng(2)
    centres = rng.normal(0.5, 0.2, size=(200, 5))
    validation, test = rng.normal(0.5, 0.2, size=(50, 5)), rng.normal(0.5, 0.2, size=(40, 5))
    result = parzen.parzen_evaluate(test, validation, centres)
    scipy_means = [scipy_parzen(validation, centres, s).mean() for s in parzen.GOODFELLOW_SIGMAS]
    np.testing.assert_allclose(result["validation_means"], scipy_means, rtol=1e-5)
    assert result["sigma"] == parzen.GOODFELLOW_SIGMAS[int(np.argmax(scipy_means))]
    assert result["sigma"] not in (parzen.GOODFELLOW_SIGMAS[0], parzen.GOODFELLOW_SIGMAS[-1])  # an interior optimum
    ll = scipy_parzen(test, centres, result["sigma"])
    np.testing.assert_allclose(result["mean"], ll.mean(), rtol=1e-5)
    np.testing.assert_allclose(result["std_err"], ll.std() / np.sqrt(len(ll)), rtol=1e-4)


def test_goodfellow_grid_and_pixel_scale():
    np.testing.assert_allclose(parzen.GOODFELLOW_SIGMAS, np.logspace(-1, 0, 10))
    assert parzen.sigma_grid(-2.0, 0.5, 6) == tuple(np.logspace(-2.0, 0.5, 6))
    for bad in ((0.0, -1.0, 10), (-1.0, 0.0, 0), (-1.0, 0.0, 2.5)):
        with pytest.raises(ValueError, match="a σ grid is \\(start, end, count\\) with start <= end"):
            parzen.sigma_grid(*bad)
    np.testing.assert_allclose(parzen.to_unit_interval(jnp.asarray([[[-1.0, 0.0, 1.0]]])), [[0.0, 0.5, 1.0]])


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="must share d"):
        parzen.parzen_log_likelihoods(np.zeros((2, 3)), np.zeros((2, 4)), [0.1])
    with pytest.raises(ValueError, match="sigmas must be one or more values > 0"):
        parzen.parzen_log_likelihoods(np.zeros((2, 3)), np.zeros((2, 3)), [0.1, 0.0])
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        parzen.parzen_log_likelihoods(np.zeros((2, 3)), np.zeros((2, 3)), [0.1], batch_size=0)


def test_parzen_protocol_options_are_validated_with_the_allowed_values():
    import importlib

    from gan_jax import config as config_lib
    c = importlib.import_module("experiments.goodfellow2014_mnist").get_config()
    config_lib.validate(c)
    assert (c.eval.parzen_num_samples, c.eval.parzen_num_validation, tuple(c.eval.parzen_sigma_grid)) == (
        parzen.NUM_SAMPLES, parzen.NUM_VALIDATION, parzen.SIGMA_GRID)
    for field, value, message in (("parzen_sigma_grid", (0.0, -1.0, 10), "must be \\(start, end, count\\)"),
                                  ("parzen_sigma_grid", (-1.0, 0.0), "must be \\(start, end, count\\)"),
                                  ("parzen_num_validation", 20_000, "must be an integer in 1..10000"),
                                  ("parzen_num_samples", 0, "must be an integer >= 1, got 0")):
        bad = c.copy_and_resolve_references()
        bad.eval[field] = value
        with pytest.raises(ValueError, match=f"config.eval.{field} {message}"):
            config_lib.validate(bad)

"""gan_jax.metrics.fid: streaming moments (accuracy, merge, masks, psum) and the Fréchet distance."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.sharding import NamedSharding, PartitionSpec as P

from gan_jax.metrics import fid as fid_lib


def random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def exact_moment_samples(rng, mean, cov, n):
    """n samples whose sample mean is `mean` and whose unbiased sample covariance is `cov`, exactly."""
    z = rng.normal(size=(n, len(mean)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return z @ np.linalg.cholesky(cov).T + mean


def scipy_frechet(mu1, c1, mu2, c2):
    """The reference implementations' formula (TTUR / pytorch-fid): scipy sqrtm of C₁C₂, float64."""
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2) - 2 * np.trace(covmean)


def test_streaming_moments_match_float64_on_50k_offset_features():
    rng = np.random.default_rng(0)
    d, n, b = 64, 50_000, 1000
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    feats64 = 100.0 + rng.normal(size=(n, d)) @ mixing  # ReLU-like: mean ≫ std
    feats = jnp.asarray(feats64, jnp.float32)

    @jax.jit
    def stream(x):
        return jax.lax.scan(lambda s, xb: (fid_lib.update(s, xb), None), fid_lib.init_stats(d),
                            x.reshape(n // b, b, d))[0]

    mean, cov = fid_lib.mean_cov(stream(feats))
    ref_cov = np.cov(feats64, rowvar=False)
    cov_err = np.max(np.abs(np.asarray(cov) - ref_cov)) / np.max(np.abs(ref_cov))
    np.testing.assert_allclose(mean, feats64.mean(0), rtol=1e-6)
    assert cov_err < 1e-5, cov_err
    # The design choice: float32 raw sums Σx, Σxxᵀ of the same data lose orders of magnitude more.
    naive = (feats.T @ feats - jnp.outer(feats.sum(0), feats.sum(0)) / n) / (n - 1)
    assert np.max(np.abs(np.asarray(naive) - ref_cov)) / np.max(np.abs(ref_cov)) > 100 * cov_err


def test_merge_equals_moments_of_the_concatenation():
    rng = np.random.default_rng(1)
    a, b = rng.normal(3, 2, size=(37, 5)), rng.normal(-1, 1, size=(11, 5))
    merged = fid_lib.merge(fid_lib.batch_stats(jnp.asarray(a)), fid_lib.batch_stats(jnp.asarray(b)))
    whole = fid_lib.batch_stats(jnp.asarray(np.concatenate([a, b])))
    assert int(merged.count) == 48
    chex.assert_trees_all_close(merged, whole, rtol=1e-5, atol=1e-4)
    # The empty stats are the identity of merge.
    chex.assert_trees_all_close(fid_lib.merge(fid_lib.init_stats(5), whole), whole, rtol=1e-6)


def test_masked_rows_are_left_out():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    mask = np.arange(16) < 10
    masked = fid_lib.update(fid_lib.init_stats(4), jnp.asarray(x), jnp.asarray(mask))
    chex.assert_trees_all_close(masked, fid_lib.batch_stats(jnp.asarray(x[:10])), rtol=1e-5, atol=1e-5)
    empty = fid_lib.update(fid_lib.init_stats(4), jnp.asarray(x), jnp.zeros(16, bool))
    chex.assert_trees_all_close(empty, fid_lib.init_stats(4))


def test_psum_across_devices_equals_single_device_stats():
    mesh = jax.make_mesh((2,), ("data",), devices=jax.devices()[:2])
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(5, 2, size=(2, 24, 6)), jnp.float32)
    x = jax.device_put(x.at[1].add(3.0), NamedSharding(mesh, P("data")))  # devices see different data

    @jax.jit
    @functools.partial(jax.shard_map, mesh=mesh, in_specs=P("data"), out_specs=P())
    def sharded(xs):
        return fid_lib.psum_stats(fid_lib.batch_stats(xs[0]), "data")

    total = jax.block_until_ready(sharded(x))
    single = fid_lib.batch_stats(jnp.asarray(np.asarray(x).reshape(48, 6)))
    chex.assert_trees_all_close(total, single, rtol=1e-5, atol=1e-4)


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(4)
    d = 32
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    c1, c2 = random_spd(rng, d), random_spd(rng, d, scale=3.0)
    got = fid_lib.frechet_distance(*(jnp.asarray(v, jnp.float32) for v in (mu1, c1, mu2, c2)))
    np.testing.assert_allclose(got, scipy_frechet(mu1, c1, mu2, c2), rtol=1e-4)


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    rng = np.random.default_rng(5)
    a, b = rng.uniform(0.1, 4, size=8), rng.uniform(0.1, 4, size=8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    closed = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # W₂² of diagonal Gaussians
    got = fid_lib.frechet_distance(jnp.asarray(mu1), jnp.diag(jnp.asarray(a)),
                                   jnp.asarray(mu2), jnp.diag(jnp.asarray(b)))
    np.testing.assert_allclose(got, closed, rtol=1e-5)


def test_fid_of_samples_with_exact_moments_is_the_gaussian_closed_form():
    rng = np.random.default_rng(6)
    d = 10
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d) + 1.0
    c1, c2 = random_spd(rng, d), random_spd(rng, d, scale=0.5)
    xa, xb = exact_moment_samples(rng, mu1, c1, 500), exact_moment_samples(rng, mu2, c2, 300)
    got = fid_lib.fid(jnp.asarray(xa, jnp.float32), jnp.asarray(xb, jnp.float32))
    np.testing.assert_allclose(got, scipy_frechet(mu1, c1, mu2, c2), rtol=1e-4)


def test_fid_of_a_feature_set_against_itself_is_zero():
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(2000, 64)) @ rng.normal(size=(64, 64)), jnp.float32)
    trace = float(jnp.trace(jnp.cov(x, rowvar=False)))
    value = float(fid_lib.fid(x, x))
    np.testing.assert_allclose(value / trace, 0.0, atol=2e-6)


def test_singular_covariances_match_the_nuclear_norm_formula():
    """Fewer samples than dimensions: tr((C₁C₂)^½) = ‖C₁^½ C₂^½‖_* (singular values), in float64."""
    rng = np.random.default_rng(8)
    xa, xb = rng.normal(size=(20, 48)), rng.normal(size=(30, 48)) * 2 + 1

    def sqrt_psd(c):
        w, v = np.linalg.eigh(c)
        return (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    c1, c2 = np.cov(xa, rowvar=False), np.cov(xb, rowvar=False)
    nuclear = np.linalg.svd(sqrt_psd(c1) @ sqrt_psd(c2), compute_uv=False).sum()
    expected = np.sum((xa.mean(0) - xb.mean(0)) ** 2) + np.trace(c1) + np.trace(c2) - 2 * nuclear
    got = fid_lib.fid(jnp.asarray(xa, jnp.float32), jnp.asarray(xb, jnp.float32))
    assert np.isfinite(float(got))
    np.testing.assert_allclose(got, expected, rtol=5e-6)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match=r"features must be \[N, 3\]"):
        fid_lib.update(fid_lib.init_stats(3), jnp.zeros((4, 5)))
    with pytest.raises(ValueError, match="shape"):
        fid_lib.fid(jnp.zeros((4, 3)), jnp.zeros((4, 2)))
    with pytest.raises(ValueError, match=">= 2 feature vectors"):
        fid_lib.fid(jnp.zeros((1, 3)), jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="one d"):
        fid_lib.frechet_distance(jnp.zeros(3), jnp.eye(3), jnp.zeros(2), jnp.eye(2))
    with pytest.raises(ValueError, match="dim must be >= 1"):
        fid_lib.init_stats(0)

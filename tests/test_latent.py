"""Latent tools: interpolation end points and norms, attribute vectors on planted codes, truncation bounds,
and the image grids' shapes."""
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import latent, prior


def test_interpolation_endpoints_and_slerp_geometry():
    z0, z1 = jnp.asarray([1.0, 0.0, 0.0]), jnp.asarray([0.0, 1.0, 0.0])
    for method in latent.METHODS:
        path = latent.interpolate(z0, z1, 5, method)
        chex.assert_shape(path, (5, 3))
        np.testing.assert_allclose(np.asarray(path[0]), np.asarray(z0), atol=1e-6)
        np.testing.assert_allclose(np.asarray(path[-1]), np.asarray(z1), atol=1e-6)
    # slerp between orthogonal codes: the angle moves uniformly, 90°·t.
    path = latent.interpolate(z0, z1, 5, "slerp")
    angles = np.degrees(np.arctan2(np.asarray(path[:, 1]), np.asarray(path[:, 0])))
    np.testing.assert_allclose(angles, [0, 22.5, 45, 67.5, 90], atol=1e-4)
    np.testing.assert_allclose(np.asarray(latent.interpolate(z0, z0, 3, "slerp")), np.tile(z0, (3, 1)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(latent.interpolate(z0, 2 * z1, 3, "linear")[1]), [0.5, 1.0, 0.0])
    with pytest.raises(ValueError, match="allowed"):
        latent.interpolate(z0, z1, 3, "cubic")


def test_attribute_vector_recovers_planted_offset():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 6)).astype(np.float32)
    offset = np.asarray([0, 0, 3, 0, -1, 0], np.float32)
    v = latent.attribute_vector(jnp.asarray(base[:200] + offset), jnp.asarray(base[200:]))
    np.testing.assert_allclose(np.asarray(v), offset + base[:200].mean(0) - base[200:].mean(0), rtol=1e-5, atol=1e-5)
    moved = latent.apply_attribute(jnp.zeros((2, 6)), jnp.asarray(offset), [0.0, 2.0])
    chex.assert_shape(moved, (2, 2, 6))
    np.testing.assert_allclose(np.asarray(moved[:, 1]), np.tile(2 * offset, (2, 1)))
    with pytest.raises(ValueError, match="non-empty"):
        latent.attribute_vector(jnp.zeros((0, 6)), jnp.zeros((3, 6)))


def test_truncation():
    z = latent.sample_latents(jax.random.key(0), (20000, 4), 0.5)
    assert float(jnp.max(jnp.abs(z))) <= 0.5
    # Truncated N(0, 1) on [-t, t]: variance 1 - 2 t φ(t) / (2 Φ(t) - 1).
    from scipy.stats import truncnorm
    np.testing.assert_allclose(float(jnp.var(z)), truncnorm.var(-0.5, 0.5), rtol=0.03)
    np.testing.assert_allclose(float(jnp.var(latent.sample_latents(jax.random.key(1), (20000,), None))), 1.0, rtol=0.03)
    with pytest.raises(ValueError, match="truncation"):
        latent.sample_latents(jax.random.key(0), (2,), 0.0)


def test_grids():
    generate = lambda z: jnp.tanh(jnp.broadcast_to(z[:, :1, None, None], (z.shape[0], 4, 5, 1)))
    grid = latent.interpolation_grid(generate, jax.random.key(0), rows=2, steps=4, method="linear", latent_dim=3)
    chex.assert_shape(grid, (8, 4, 5, 1))
    rows = latent.truncation_grid(generate, jax.random.key(0), [None, 0.1], num=6, latent_dim=3)
    chex.assert_shape(rows, (12, 4, 5, 1))
    assert np.max(np.abs(rows[6:])) <= np.tanh(0.1) + 1e-6
    # A loaded run (anything with latent_dim, latents and generate) draws the same grids from N(0, I) codes...
    run = types.SimpleNamespace(latent_dim=3, generate=generate,
                                latents=lambda key, n, t=None: prior.sample_latents(key, (n, 3), t))
    np.testing.assert_array_equal(latent.interpolation_grid(run, jax.random.key(0), 2, 4, "linear"), grid)
    np.testing.assert_array_equal(latent.truncation_grid(run, jax.random.key(0), [None, 0.1], 6), rows)
    # ... and from its own prior: a run of U(-1, 1) codes puts every generated value inside tanh(1).
    uniform = types.SimpleNamespace(latent_dim=3, generate=generate, latents=lambda key, n, t=None: prior.sample_latents(
        key, (n, 3), t, distribution="uniform"))
    assert np.max(np.abs(latent.interpolation_grid(uniform, jax.random.key(0), 8, 4, "linear"))) < np.tanh(1.0)
    with pytest.raises(ValueError, match="latent_dim"):
        latent.truncation_grid(generate, jax.random.key(0), [None])

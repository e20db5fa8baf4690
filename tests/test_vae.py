"""VAE: the closed-form KL against Monte Carlo, the Bernoulli likelihood against its formula, shapes,
one training step, and the shared loop's resume (a resumed run equals an uninterrupted one).
Init keys are rbg: flax init with threefry keys compiles several times slower on XLA:CPU."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import image_to_image, vae


def test_gaussian_kl_matches_monte_carlo():
    mu = jnp.asarray([[0.3, -1.0, 0.5]])
    logvar = jnp.asarray([[0.2, -0.5, 0.0]])
    z = mu + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.key(0), (200_000, 3))
    log_q = -0.5 * jnp.sum((z - mu) ** 2 / jnp.exp(logvar) + logvar + jnp.log(2 * jnp.pi), axis=-1)
    log_p = -0.5 * jnp.sum(z ** 2 + jnp.log(2 * jnp.pi), axis=-1)
    np.testing.assert_allclose(float(vae.gaussian_kl(mu, logvar)[0]), float(jnp.mean(log_q - log_p)),
                               rtol=0.02, atol=0.005)
    np.testing.assert_allclose(np.asarray(vae.gaussian_kl(jnp.zeros((2, 4)), jnp.zeros((2, 4)))), 0.0, atol=0)


def test_bernoulli_log_likelihood():
    x = jnp.asarray([[1.0, 0.0, 1.0]])
    logits = jnp.asarray([[0.5, -2.0, 3.0]])
    p = 1 / (1 + np.exp(-np.asarray(logits)))
    expected = np.log(p[0, 0]) + np.log(1 - p[0, 1]) + np.log(p[0, 2])
    np.testing.assert_allclose(float(vae.bernoulli_log_likelihood(x, logits)[0]), expected, rtol=1e-6)


def _tiny_config(workdir_steps=2):
    c = vae.default_config()
    c.batch_size, c.steps, c.log_every, c.checkpoint_every = 8, workdir_steps, 1, 1
    c.model.latent_dim, c.model.channels, c.model.hidden = 4, (4, 8), 16
    return c


def _batch(step):
    rng = np.random.default_rng(step)
    return {"image": rng.uniform(-1, 1, (8, 28, 28, 1)).astype(np.float32)}


def test_shapes_step_and_resume(tmp_path):
    c = _tiny_config()
    model, tx = vae.build(c)
    state = vae.init_state(model, tx, jax.random.key(0, impl="rbg"))
    x = jnp.asarray(_batch(0)["image"])

    @jax.jit  # one program: eager flax applies compile op by op
    def forward(params):
        logits, mu, logvar = model.apply({"params": params}, (x + 1) / 2, jax.random.key(1))
        samples = vae.sample(model, params, jax.random.key(2), 3, truncation=1.0)
        return logits, mu, logvar, samples, vae.elbo(model, params, vae.binarise(x, jax.random.key(3)),
                                                     jax.random.key(4))
    logits, mu, logvar, samples, elbo = forward(state.vae.params)
    chex.assert_shape(logits, (8, 28, 28, 1))
    chex.assert_shape([mu, logvar], (8, 4))
    chex.assert_shape(samples, (3, 28, 28, 1))
    assert float(jnp.min(samples)) >= -1 and float(jnp.max(samples)) <= 1
    assert float(jnp.max(elbo)) < 0  # ELBO <= log p(x) <= 0 for binary data

    step = vae.make_train_step(model, tx)
    straight = image_to_image.fit(step, state, _batch, c, str(tmp_path / "a"), log=lambda s: None)
    c1 = _tiny_config(1)
    image_to_image.fit(step, state, _batch, c1, str(tmp_path / "b"), log=lambda s: None)
    resumed = image_to_image.fit(step, state, _batch, c, str(tmp_path / "b"), log=lambda s: None)
    assert int(resumed.step) == 2
    chex.assert_trees_all_close(resumed.vae.params, straight.vae.params, rtol=0, atol=0)
    assert any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(straight.vae.params),
                                                     jax.tree.leaves(state.vae.params)))
    c.model.latent_dim = 5
    with pytest.raises(ValueError, match="latent_dim"):  # a workdir of another config is refused
        image_to_image.fit(step, state, _batch, c, str(tmp_path / "a"), log=lambda s: None)

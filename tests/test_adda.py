"""ADDA: the target encoder starts as the source encoder, adaptation moves only M_t and D (M_s and C stay
fixed), shapes, and one step of each stage.
Init keys are rbg: flax init with threefry keys compiles several times slower on XLA:CPU."""
import chex
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import adda


def _config():
    c = adda.default_config()
    c.model.channels, c.model.hidden, c.model.disc_hidden = (4, 8), 16, 16
    return c


def test_stages():
    a = adda.build(_config())
    r = np.random.default_rng(0)
    images = jnp.asarray(r.uniform(-1, 1, (8, 28, 28, 1)), jnp.float32)
    labels = jnp.asarray(r.integers(0, 10, 8), jnp.int32)
    logits = jax.jit(lambda p, x: adda.logits(a, p["encoder"], p["classifier"], x))
    source = adda.init_source(a, jax.random.key(0, impl="rbg"))
    chex.assert_shape(logits(source.model.params, images), (8, 10))
    trained, metrics = adda.make_source_step(a)(source, {"image": images, "label": labels})
    # Cross-entropy of the initial logits, recomputed by hand.
    out = logits(source.model.params, images)
    expected = -np.mean(np.asarray(jax.nn.log_softmax(out))[np.arange(8), np.asarray(labels)])
    np.testing.assert_allclose(float(metrics["loss"]), expected, rtol=1e-5)

    state = adda.init_adapt(a, trained.model.params, jax.random.key(1, impl="rbg"))
    chex.assert_trees_all_equal(state.target.params, trained.model.params["encoder"])
    new, m = adda.make_adapt_step(a)(state, {"source": images, "target": images[::-1] * 0.5})
    assert all(np.isfinite(float(v)) for v in m.values())
    chex.assert_trees_all_equal(new.source, state.source)  # M_s and C fixed
    for old, updated in [(state.target.params, new.target.params),
                         (state.discriminator.params, new.discriminator.params)]:
        assert any(bool(jnp.any(u != v)) for u, v in zip(jax.tree.leaves(old), jax.tree.leaves(updated)))
    acc = adda.accuracy(a, trained.model.params["encoder"], trained.model.params["classifier"],
                        np.asarray(images), np.asarray(labels))
    pred = np.argmax(np.asarray(logits(trained.model.params, images)), -1)
    np.testing.assert_allclose(acc, np.mean(pred == np.asarray(labels)), atol=0)

"""CycleGAN: the generator objective's terms in closed form (cycle loss zero for identity generators)
and one training step of a tiny config.
Init keys are rbg: flax init with threefry keys compiles several times slower on XLA:CPU."""
import jax
import jax.numpy as jnp
import numpy as np

from gan_jax import image_to_image as i2i


def _xy():
    r = np.random.default_rng(0)
    return (jnp.asarray(r.uniform(-0.5, 0.5, (4, 8, 8, 1)), jnp.float32),
            jnp.asarray(r.uniform(-0.5, 0.5, (3, 8, 8, 1)), jnp.float32))


def test_cycle_loss_zero_for_identity_generators():
    x, y = _xy()
    ident = lambda v: v
    zero_critic = lambda v: jnp.zeros((v.shape[0], 2, 2, 1))
    total, terms = i2i.cyclegan_generator_loss(ident, ident, zero_critic, zero_critic, x, y, 10.0, 0.5)
    np.testing.assert_allclose(float(terms["cycle"]), 0.0, atol=0)
    np.testing.assert_allclose(float(terms["identity"]), 0.0, atol=0)
    # LSGAN generator terms ½E(D − 1)² with D ≡ 0: ½ per direction.
    np.testing.assert_allclose(float(terms["g_adv"]), 1.0, rtol=1e-6)
    np.testing.assert_allclose(float(total), 1.0, rtol=1e-6)
    # Inverse pairs also close the cycle; a shift that F does not undo costs |0.1| per direction.
    _, inverse = i2i.cyclegan_generator_loss(lambda v: v + 0.1, lambda v: v - 0.1, zero_critic, zero_critic,
                                             x, y, 10.0)
    np.testing.assert_allclose(float(inverse["cycle"]), 0.0, atol=1e-6)
    total, shifted = i2i.cyclegan_generator_loss(lambda v: v + 0.1, ident, zero_critic, zero_critic,
                                                 x, y, 10.0, 1.0)
    np.testing.assert_allclose(float(shifted["cycle"]), 0.2, rtol=1e-5)
    np.testing.assert_allclose(float(shifted["identity"]), 0.1, rtol=1e-5)
    np.testing.assert_allclose(float(total), 1.0 + 10 * 0.2 + 0.1, rtol=1e-5)


def test_one_training_step():
    c = i2i.base_config("cyclegan")
    c.batch_size, c.model.unet_features, c.model.d_features, c.model.dropout = 8, (4, 8), 4, 0.0
    t = i2i.build(c)
    state = i2i.init_state(t, jax.random.key(0, impl="rbg"), (28, 28, 1))
    assert set(state.generator.params) == {"g", "f"} and set(state.discriminator.params) == {"x", "y"}
    r = np.random.default_rng(1)
    batch = {k: jnp.asarray(r.uniform(-1, 1, (8, 28, 28, 1)), jnp.float32) for k in ("x", "y")}
    new, metrics = i2i.make_cyclegan_step(t)(state, batch)
    assert int(new.step) == 1
    assert all(np.isfinite(float(v)) for v in metrics.values())
    np.testing.assert_allclose(float(metrics["g_loss"]), float(metrics["g_adv"] + 10 * metrics["cycle"]), rtol=1e-5)
    for old, updated in [(state.generator.params, new.generator.params),
                         (state.discriminator.params, new.discriminator.params)]:
        for name in old:
            assert any(bool(jnp.any(a != b)) for a, b in zip(jax.tree.leaves(old[name]), jax.tree.leaves(updated[name])))

"""FGSM: ε = 0 is the identity, the step is ε·sign of the analytic input gradient, clipping holds,
and accuracy under attack falls from the clean accuracy."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import adversarial


def _linear_model(seed=0, d=12, k=3):
    rng = np.random.default_rng(seed)
    w = jnp.asarray(rng.normal(size=(d, k)), jnp.float32)
    x = jnp.asarray(rng.uniform(-0.5, 0.5, size=(6, d)), jnp.float32)
    y = jnp.asarray(rng.integers(0, k, size=6), jnp.int32)
    return (lambda v: v @ w), w, x, y


def test_epsilon_zero_leaves_inputs_unchanged():
    logits_fn, _, x, y = _linear_model()
    np.testing.assert_array_equal(np.asarray(adversarial.fgsm(logits_fn, x, y, 0.0)), np.asarray(x))


def test_step_is_sign_of_analytic_gradient():
    # Softmax regression: dCE/dx = W (softmax(xW) - onehot(y)).
    logits_fn, w, x, y = _linear_model()
    grad = (jax.nn.softmax(x @ w) - jax.nn.one_hot(y, 3)) @ w.T
    adv = adversarial.fgsm(logits_fn, x, y, 0.1)
    np.testing.assert_allclose(np.asarray(adv), np.asarray(x + 0.1 * jnp.sign(grad)), rtol=0, atol=1e-6)


def test_clipped_to_range():
    logits_fn, _, x, y = _linear_model()
    adv = np.asarray(adversarial.fgsm(logits_fn, x, y, 5.0))
    np.testing.assert_array_equal(np.abs(adv), np.ones_like(adv))
    with pytest.raises(ValueError, match="lo < hi"):
        adversarial.fgsm(logits_fn, x, y, 0.1, lo=1.0, hi=-1.0)


def test_accuracy_falls_with_epsilon():
    # A perfectly separating linear model on two classes: clean accuracy 1, and at ε = 1 (the full
    # [0, 1] range, 2 in [-1, 1] units) every example is pushed across the boundary.
    rng = np.random.default_rng(1)
    w = jnp.asarray([[1.0, -1.0]] * 4, jnp.float32)
    x = rng.uniform(0.2, 0.3, size=(16, 4)).astype(np.float32) * rng.choice([-1, 1], size=(16, 1))
    y = (x[:, 0] < 0).astype(np.int32)
    acc = adversarial.accuracy_under_attack(lambda v: v @ w, x, y, [0.0, 0.1, 1.0], batch_size=8)
    assert acc[0.0] == 1.0
    assert acc[0.1] == 1.0  # a step of 0.2 per pixel cannot cross a margin of >= 0.2 per pixel
    assert acc[1.0] == 0.0
    with pytest.raises(ValueError, match="epsilons"):
        adversarial.accuracy_under_attack(lambda v: v @ w, x, y, [-0.1])

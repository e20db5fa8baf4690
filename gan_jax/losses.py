r"""GAN losses: one contract, many families.

Every adversarial loss here takes the critic's raw outputs (logits for a sigmoid
discriminator, scores for a Wasserstein / hinge / least-squares critic), real first and fake
second, and returns a scalar batch mean that the caller **minimises**. Conventions:

* Shapes: scores are ``[B, ...]``: one score per example (``[B]`` or ``[B, 1]``) or several (a
  PatchGAN's ``[B, H, W, 1]`` map); a loss is the mean over every score. Where a loss takes both
  real and fake scores they must have the same per-example layout (``[N, ...]`` and ``[M, ...]``
  with the same trailing shape); their batch sizes may differ, except in the paired relativistic
  loss (RSGAN, ``average=False``), which needs equal shapes. Anything else raises ``ValueError``
  naming the shapes.
* Weights: every adversarial loss takes optional per-example weights ``[B]`` (``weights`` for one
  batch, ``real_weights`` / ``fake_weights`` for two). Each expectation then becomes the weighted
  mean :math:`\sum_i w_i \bar l_i / \sum_i w_i` of the examples' mean losses :math:`\bar l_i`
  (their mean over their scores); without weights it is the plain mean over all scores.
* Precision: inputs are upcast to float32 at least before any log-sigmoid or square, so bf16
  models get float32-accurate losses; float64 inputs (with x64 enabled) stay float64.
* Stability: written with ``softplus``/``log_sigmoid`` so values and gradients stay finite for
  ``|logit|`` up to 1e4 (see :func:`fgan_critic_loss` for the two f-divergences whose exact
  value is exponential in the score).
* Notation: ``D = sigmoid(logit)``, natural logarithms, ``E`` = batch mean,
  ``softplus(x) = log(1 + e^x)``, so ``-log D = softplus(-logit)`` and
  ``-log(1 - D) = softplus(logit)``.
* jit / vmap / grad: all functions are pure; shape checks are static and run at trace time.
  Value checks that need concrete numbers (label ranges, probability vectors) raise eagerly
  and produce NaN under ``jit`` (see :func:`acgan_classification_loss`).

:func:`get_loss` returns a :class:`GANLoss` pair by configuration name (see ``LOSS_NAMES``).
The gradient penalties live in :mod:`gan_jax.penalties` and are re-exported here.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gan_jax.penalties import gradient_penalty, r1_penalty

Array = jax.Array

__all__ = [
    "GANLoss", "LOSS_NAMES", "FGAN_DIVERGENCES", "FDivergence", "get_loss",
    "minimax_discriminator_loss", "minimax_generator_loss", "non_saturating_generator_loss",
    "wasserstein_critic_loss", "wasserstein_generator_loss",
    "hinge_critic_loss", "hinge_generator_loss",
    "least_squares_discriminator_loss", "least_squares_generator_loss",
    "relativistic_discriminator_loss", "relativistic_generator_loss",
    "relativistic_average_least_squares_discriminator_loss",
    "relativistic_average_least_squares_generator_loss",
    "relativistic_average_hinge_discriminator_loss", "relativistic_average_hinge_generator_loss",
    "f_divergence", "fgan_critic_loss", "fgan_generator_loss", "fgan_losses",
    "acgan_classification_loss", "feature_matching_loss", "l1_reconstruction_loss",
    "cycle_consistency_loss", "gradient_penalty", "r1_penalty",
]

_LOG2 = math.log(2.0)


# --------------------------------------------------------------------------- input handling

def _upcast(x: Array) -> Array:
    x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise ValueError(f"expected real-valued scores, got dtype {x.dtype}")
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _check_scores(x: Array, fn: str, arg: str) -> None:
    shape = tuple(jnp.shape(x))
    if not shape or 0 in shape:
        raise ValueError(f"{fn}: {arg} must have shape [B, ...] with no empty axis, got {shape}")


def _scores(x: Array, fn: str, arg: str = "fake_scores") -> Array:
    """Validated scores [B, ...], in float32 at least."""
    _check_scores(x, fn, arg)
    return _upcast(x)


def _weights(weights: Array | None, scores: Array, fn: str, arg: str) -> Array | None:
    """Validated per-example weights [B] of `scores` [B, ...], or None."""
    if weights is None:
        return None
    w = _upcast(weights)
    if w.shape != scores.shape[:1]:
        raise ValueError(f"{fn}: {arg} must have shape [B] = {scores.shape[:1]}, got {tuple(w.shape)}")
    return w


def _mean(values: Array, weights: Array | None = None) -> Array:
    """E over the examples of `values` [B, ...]: the mean over all entries, or with weights [B] the weighted
    mean of each example's mean."""
    if weights is None:
        return jnp.mean(values)
    per_example = jnp.mean(values.reshape(values.shape[0], -1), axis=1)
    return jnp.sum(weights * per_example) / jnp.sum(weights)


def _pair(real: Array, fake: Array, fn: str, paired: bool = False
          ) -> tuple[Array, Array]:
    _check_scores(real, fn, "real_scores")
    _check_scores(fake, fn, "fake_scores")
    rs, fs = tuple(jnp.shape(real)), tuple(jnp.shape(fake))
    if rs[1:] != fs[1:] or (paired and rs != fs):
        need = "the same shape" if paired else "the same layout per example ([N, ...] and [M, ...])"
        raise ValueError(f"{fn}: real and fake scores must have {need}, got {rs} and {fs}")
    return _upcast(real), _upcast(fake)


def _check_label_smoothing(label_smoothing, fn: str) -> None:
    try:
        value = float(label_smoothing)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return  # traced: the caller's contract (documented)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{fn}: label_smoothing must be in [0, 1), got {label_smoothing}")


def _concrete(x: Array):
    """NumPy value of ``x`` if it is concrete (not traced), else None."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


# --------------------------------------------------------------------------- minimax (GAN)

def minimax_discriminator_loss(real_logits: Array, fake_logits: Array,
                               label_smoothing: float = 0.0, *, real_weights: Array | None = None,
                               fake_weights: Array | None = None) -> Array:
    r"""Discriminator loss of the original GAN (Goodfellow et al. 2014, Eq. 1), :math:`J_D`.

    .. math:: J_D = -E_x \log D(x) - E_z \log(1 - D(G(z)))

    i.e. binary cross-entropy with target 1 for real and 0 for fake logits.

    Args:
      real_logits, fake_logits: raw discriminator logits, ``[B, ...]``.
      label_smoothing: one-sided label smoothing (Salimans et al. 2016): the *target* of the
        real term becomes ``1 - label_smoothing``; fake targets stay 0. Off by default. Must be
        in [0, 1) (checked when concrete; a traced value is the caller's contract). The real
        term is then ``-(1-s) log D(x) - s log(1 - D(x))``.

    Returns:
      Scalar loss (float32 or wider).
    """
    fn = "minimax_discriminator_loss"
    _check_label_smoothing(label_smoothing, fn)
    r, f = _pair(real_logits, fake_logits, fn)
    rw, fw = _weights(real_weights, r, fn, "real_weights"), _weights(fake_weights, f, fn, "fake_weights")
    s = label_smoothing
    real_term = (1.0 - s) * jax.nn.softplus(-r) + s * jax.nn.softplus(r)
    return _mean(real_term, rw) + _mean(jax.nn.softplus(f), fw)


def minimax_generator_loss(fake_logits: Array, *, weights: Array | None = None) -> Array:
    r"""The saturating generator loss of the zero-sum game, to be minimised.

    .. math:: J_G = E_z \log(1 - D(G(z))) = -E_z\,\mathrm{softplus}(\mathrm{logit})

    This is exactly :math:`-J_D` up to the real term, which does not depend on G (no
    constant offset). Its gradient vanishes as ``D(G(z)) -> 0`` (the generator is losing),
    which is why :func:`non_saturating_generator_loss` is used in practice.
    """
    f = _scores(fake_logits, "minimax_generator_loss")
    return -_mean(jax.nn.softplus(f), _weights(weights, f, "minimax_generator_loss", "weights"))


def non_saturating_generator_loss(fake_logits: Array, *, weights: Array | None = None) -> Array:
    r"""Non-saturating generator loss (Goodfellow et al. 2014, Sec. 3).

    .. math:: -E_z \log D(G(z)) = E_z\,\mathrm{softplus}(-\mathrm{logit})
    """
    f = _scores(fake_logits, "non_saturating_generator_loss")
    return _mean(jax.nn.softplus(-f), _weights(weights, f, "non_saturating_generator_loss", "weights"))


# --------------------------------------------------------------------------- Wasserstein, hinge, LS

def wasserstein_critic_loss(real_scores: Array, fake_scores: Array, *, real_weights: Array | None = None,
                            fake_weights: Array | None = None) -> Array:
    r"""WGAN critic loss (Arjovsky et al. 2017): :math:`E f(G(z)) - E f(x)`.

    The Lipschitz constraint is separate: weight clipping (:func:`gan_jax.optim.weight_clipping`)
    or :func:`gradient_penalty`.
    """
    fn = "wasserstein_critic_loss"
    r, f = _pair(real_scores, fake_scores, fn)
    return _mean(f, _weights(fake_weights, f, fn, "fake_weights")) - _mean(r, _weights(real_weights, r, fn,
                                                                                        "real_weights"))


def wasserstein_generator_loss(fake_scores: Array, *, weights: Array | None = None) -> Array:
    r"""WGAN generator loss: :math:`-E f(G(z))`."""
    f = _scores(fake_scores, "wasserstein_generator_loss")
    return -_mean(f, _weights(weights, f, "wasserstein_generator_loss", "weights"))


def hinge_critic_loss(real_scores: Array, fake_scores: Array, *, real_weights: Array | None = None,
                      fake_weights: Array | None = None) -> Array:
    r"""Hinge critic loss (Lim & Ye 2017; Miyato et al. 2018).

    .. math:: E \max(0, 1 - f(x)) + E \max(0, 1 + f(G(z)))
    """
    fn = "hinge_critic_loss"
    r, f = _pair(real_scores, fake_scores, fn)
    return (_mean(jax.nn.relu(1.0 - r), _weights(real_weights, r, fn, "real_weights"))
            + _mean(jax.nn.relu(1.0 + f), _weights(fake_weights, f, fn, "fake_weights")))


def hinge_generator_loss(fake_scores: Array, *, weights: Array | None = None) -> Array:
    r"""Hinge generator loss: :math:`-E f(G(z))`."""
    f = _scores(fake_scores, "hinge_generator_loss")
    return -_mean(f, _weights(weights, f, "hinge_generator_loss", "weights"))


def least_squares_discriminator_loss(real_scores: Array, fake_scores: Array, *,
                                     real_target: float = 1.0,
                                     fake_target: float = 0.0, real_weights: Array | None = None,
                                     fake_weights: Array | None = None) -> Array:
    r"""LSGAN discriminator loss (Mao et al. 2017) on raw outputs (no sigmoid).

    .. math:: \tfrac12 E (D(x) - b)^2 + \tfrac12 E (D(G(z)) - a)^2

    with the paper's 0-1 coding by default: ``a = fake_target = 0``, ``b = real_target = 1``.
    """
    fn = "least_squares_discriminator_loss"
    r, f = _pair(real_scores, fake_scores, fn)
    return (0.5 * _mean(jnp.square(r - real_target), _weights(real_weights, r, fn, "real_weights"))
            + 0.5 * _mean(jnp.square(f - fake_target), _weights(fake_weights, f, fn, "fake_weights")))


def least_squares_generator_loss(fake_scores: Array, *, target: float = 1.0,
                                 weights: Array | None = None) -> Array:
    r"""LSGAN generator loss: :math:`\tfrac12 E (D(G(z)) - c)^2`, ``c = target = 1``."""
    f = _scores(fake_scores, "least_squares_generator_loss")
    return 0.5 * _mean(jnp.square(f - target), _weights(weights, f, "least_squares_generator_loss", "weights"))


# --------------------------------------------------------------------------- relativistic

def _f1_standard(y):
    return jax.nn.softplus(-y)  # -log sigmoid(y)


def _f1_least_squares(y):
    return jnp.square(y - 1.0)


def _f1_hinge(y):
    return jax.nn.relu(1.0 - y)


_RELATIVISTIC_F1 = {"standard": _f1_standard, "least_squares": _f1_least_squares,
                    "hinge": _f1_hinge}


def _relativistic(real: Array, fake: Array, average: bool, kind: str, fn: str, generator: bool,
                  real_weights: Array | None, fake_weights: Array | None) -> Array:
    if kind not in _RELATIVISTIC_F1:
        raise ValueError(f"{fn}: kind must be one of {tuple(_RELATIVISTIC_F1)}, got {kind!r}")
    f1 = _RELATIVISTIC_F1[kind]
    r, f = _pair(real, fake, fn, paired=not average)
    rw, fw = _weights(real_weights, r, fn, "real_weights"), _weights(fake_weights, f, fn, "fake_weights")
    if not average:
        if rw is not None and fw is not None:
            raise ValueError(f"{fn}: paired scores take one set of weights (real_weights or fake_weights), not both")
        d = f - r if generator else r - f
        return _mean(f1(d), fw if rw is None else rw)
    dr = r - _mean(f, fw)  # C(x_r) - E C(x_f)
    df = f - _mean(r, rw)  # C(x_f) - E C(x_r)
    # L = E f1(dr) + E f2(df) with f2(y) = f1(-y); the generator's swaps the roles.
    if generator:
        return _mean(f1(df), fw) + _mean(f1(-dr), rw)
    return _mean(f1(dr), rw) + _mean(f1(-df), fw)


def relativistic_discriminator_loss(real_scores: Array, fake_scores: Array, average: bool = True,
                                    *, kind: str = "standard", real_weights: Array | None = None,
                                    fake_weights: Array | None = None) -> Array:
    r"""Relativistic discriminator loss (Jolicoeur-Martineau 2018, arXiv:1807.00734).

    With critic outputs :math:`C` (logits) and :math:`f_1` given by ``kind``
    (``"standard"``: :math:`f_1(y) = -\log\sigma(y)`; ``"least_squares"``:
    :math:`(y - 1)^2`; ``"hinge"``: :math:`\max(0, 1 - y)`) and :math:`f_2(y) = f_1(-y)`:

    * ``average=False`` (RSGAN and its variants; real and fake paired, equal shapes):
      :math:`L_D = E\, f_1(C(x_r) - C(x_f))`.
    * ``average=True`` (RaSGAN, RaLSGAN, RaHingeGAN):
      :math:`L_D = E_{x_r} f_1(C(x_r) - E C(x_f)) + E_{x_f} f_2(C(x_f) - E C(x_r))`.

    These are the paper's formulas. The authors' code (``GAN_losses_iter.py``) divides each
    *average* loss by 2, a constant factor; multiply by 0.5 to match it exactly.
    All variants are invariant to adding one constant to every score.
    """
    return _relativistic(real_scores, fake_scores, average, kind, "relativistic_discriminator_loss", False,
                         real_weights, fake_weights)


def relativistic_generator_loss(real_scores: Array, fake_scores: Array, average: bool = True,
                                *, kind: str = "standard", real_weights: Array | None = None,
                                fake_weights: Array | None = None) -> Array:
    r"""Relativistic generator loss (Jolicoeur-Martineau 2018): the discriminator's with real
    and fake swapped.

    * ``average=False``: :math:`L_G = E\, f_1(C(x_f) - C(x_r))`.
    * ``average=True``:
      :math:`L_G = E_{x_f} f_1(C(x_f) - E C(x_r)) + E_{x_r} f_2(C(x_r) - E C(x_f))`.

    See :func:`relativistic_discriminator_loss` for ``kind`` and the factor of 2 in the
    authors' code.
    """
    return _relativistic(real_scores, fake_scores, average, kind, "relativistic_generator_loss", True,
                         real_weights, fake_weights)


def relativistic_average_least_squares_discriminator_loss(
        real_scores: Array, fake_scores: Array, *, real_weights: Array | None = None,
        fake_weights: Array | None = None) -> Array:
    r"""RaLSGAN discriminator loss:
    :math:`E (C(x_r) - E C(x_f) - 1)^2 + E (C(x_f) - E C(x_r) + 1)^2`."""
    return _relativistic(real_scores, fake_scores, True, "least_squares",
                         "relativistic_average_least_squares_discriminator_loss", False, real_weights,
                         fake_weights)


def relativistic_average_least_squares_generator_loss(
        real_scores: Array, fake_scores: Array, *, real_weights: Array | None = None,
        fake_weights: Array | None = None) -> Array:
    r"""RaLSGAN generator loss:
    :math:`E (C(x_f) - E C(x_r) - 1)^2 + E (C(x_r) - E C(x_f) + 1)^2`."""
    return _relativistic(real_scores, fake_scores, True, "least_squares",
                         "relativistic_average_least_squares_generator_loss", True, real_weights,
                         fake_weights)


def relativistic_average_hinge_discriminator_loss(
        real_scores: Array, fake_scores: Array, *, real_weights: Array | None = None,
        fake_weights: Array | None = None) -> Array:
    r"""RaHingeGAN discriminator loss:
    :math:`E \max(0, 1 - (C(x_r) - E C(x_f))) + E \max(0, 1 + (C(x_f) - E C(x_r)))`."""
    return _relativistic(real_scores, fake_scores, True, "hinge",
                         "relativistic_average_hinge_discriminator_loss", False, real_weights,
                         fake_weights)


def relativistic_average_hinge_generator_loss(
        real_scores: Array, fake_scores: Array, *, real_weights: Array | None = None,
        fake_weights: Array | None = None) -> Array:
    r"""RaHingeGAN generator loss:
    :math:`E \max(0, 1 - (C(x_f) - E C(x_r))) + E \max(0, 1 + (C(x_r) - E C(x_f)))`."""
    return _relativistic(real_scores, fake_scores, True, "hinge",
                         "relativistic_average_hinge_generator_loss", True, real_weights,
                         fake_weights)


# --------------------------------------------------------------------------- f-GAN

# exp(x) for x <= _EXP_LINEAR_FROM, continued linearly (value and slope continuous) above it,
# so that the exponential conjugates stay finite in float32 for scores up to 1e4.
_EXP_LINEAR_FROM = 50.0


def _exp_linear_tail(x: Array) -> Array:
    e = jnp.exp(jnp.minimum(x, _EXP_LINEAR_FROM))
    return jnp.where(x <= _EXP_LINEAR_FROM, e, e * (1.0 + (x - _EXP_LINEAR_FROM)))


class FDivergence(NamedTuple):
    r"""One row of Nowozin et al. (2016), Table 6, for :math:`D_f(P\|Q) = E_Q f(p/q)`.

    Attributes:
      name: the key in ``FGAN_DIVERGENCES``.
      f: the generator function :math:`f(u)`, convex with :math:`f(1) = 0`.
      f_prime: :math:`f'(u)`; the optimal critic is :math:`T^*(x) = f'(p(x)/q(x))`.
      conjugate: the Fenchel conjugate :math:`f^*(t)`, on its domain.
      activation: the output activation :math:`g_f(v)`, mapping a raw score into dom f*.
      conjugate_of_activation: :math:`f^*(g_f(v))`, written in a stable closed form.
      activation_inverse: :math:`g_f^{-1}(t)`, the raw score that yields critic value t.
    """
    name: str
    f: Callable[[Array], Array]
    f_prime: Callable[[Array], Array]
    conjugate: Callable[[Array], Array]
    activation: Callable[[Array], Array]
    conjugate_of_activation: Callable[[Array], Array]
    activation_inverse: Callable[[Array], Array]


_F_DIVERGENCES = {
    # KL(P||Q): f(u) = u log u, g(v) = v, f*(t) = exp(t - 1).
    "kl": FDivergence(
        "kl",
        f=lambda u: u * jnp.log(u),
        f_prime=lambda u: 1.0 + jnp.log(u),
        conjugate=lambda t: jnp.exp(t - 1.0),
        activation=lambda v: v,
        conjugate_of_activation=lambda v: _exp_linear_tail(v - 1.0),
        activation_inverse=lambda t: t),
    # Reverse KL, KL(Q||P): f(u) = -log u, g(v) = -exp(-v), f*(t) = -1 - log(-t).
    "reverse_kl": FDivergence(
        "reverse_kl",
        f=lambda u: -jnp.log(u),
        f_prime=lambda u: -1.0 / u,
        conjugate=lambda t: -1.0 - jnp.log(-t),
        activation=lambda v: -_exp_linear_tail(-v),
        conjugate_of_activation=lambda v: v - 1.0,
        activation_inverse=lambda t: -jnp.log(-t)),
    # Jensen-Shannon as in the paper's table, i.e. 2 * JSD:
    # f(u) = u log u - (u + 1) log((u + 1) / 2), g(v) = log 2 - log(1 + e^-v),
    # f*(t) = -log(2 - e^t); f*(g(v)) = softplus(v) - log 2.
    "js": FDivergence(
        "js",
        f=lambda u: u * jnp.log(u) - (u + 1.0) * jnp.log((u + 1.0) / 2.0),
        f_prime=lambda u: jnp.log(2.0 * u / (u + 1.0)),
        conjugate=lambda t: -jnp.log(2.0 - jnp.exp(t)),
        activation=lambda v: _LOG2 - jax.nn.softplus(-v),
        conjugate_of_activation=lambda v: jax.nn.softplus(v) - _LOG2,
        activation_inverse=lambda t: -jnp.log(2.0 * jnp.exp(-t) - 1.0)),
    # Pearson chi^2: f(u) = (u - 1)^2, g(v) = v, f*(t) = t^2 / 4 + t.
    "pearson": FDivergence(
        "pearson",
        f=lambda u: jnp.square(u - 1.0),
        f_prime=lambda u: 2.0 * (u - 1.0),
        conjugate=lambda t: 0.25 * jnp.square(t) + t,
        activation=lambda v: v,
        conjugate_of_activation=lambda v: 0.25 * jnp.square(v) + v,
        activation_inverse=lambda t: t),
    # Squared Hellinger (without the 1/2): f(u) = (sqrt(u) - 1)^2, g(v) = 1 - exp(-v),
    # f*(t) = t / (1 - t); f*(g(v)) = exp(v) - 1.
    "hellinger": FDivergence(
        "hellinger",
        f=lambda u: jnp.square(jnp.sqrt(u) - 1.0),
        f_prime=lambda u: 1.0 - 1.0 / jnp.sqrt(u),
        conjugate=lambda t: t / (1.0 - t),
        activation=lambda v: 1.0 - _exp_linear_tail(-v),
        conjugate_of_activation=lambda v: _exp_linear_tail(v) - 1.0,
        activation_inverse=lambda t: -jnp.log(1.0 - t)),
}

FGAN_DIVERGENCES: tuple[str, ...] = tuple(_F_DIVERGENCES)


def f_divergence(divergence: str) -> FDivergence:
    """The :class:`FDivergence` table row for a name in ``FGAN_DIVERGENCES``."""
    try:
        return _F_DIVERGENCES[divergence]
    except (KeyError, TypeError):
        raise ValueError(f"unknown f-divergence {divergence!r}; expected one of "
                         f"{FGAN_DIVERGENCES}") from None


def fgan_critic_loss(real_scores: Array, fake_scores: Array, divergence: str = "js", *,
                     real_weights: Array | None = None, fake_weights: Array | None = None) -> Array:
    r"""f-GAN critic (variational function) loss (Nowozin et al. 2016, eq. 6 and Table 6).

    The critic maximises :math:`F = E_P g_f(V(x)) - E_Q f^*(g_f(V(G(z))))`, a lower bound of
    :math:`D_f(P\|Q) = E_Q f(p/q)` (P = data, Q = model) that is tight at
    :math:`g_f(V) = f'(p/q)`; this returns :math:`-F` to be minimised. Divergences
    (``FGAN_DIVERGENCES``): ``"kl"`` KL(P‖Q), ``"reverse_kl"`` KL(Q‖P), ``"js"`` the table's
    Jensen-Shannon row, which is **2·JSD(P, Q)**, ``"pearson"`` Pearson χ² = Σ (p-q)²/q,
    ``"hellinger"`` squared Hellinger Σ (√p - √q)² (no factor 1/2).

    For ``"js"`` this equals :func:`minimax_discriminator_loss` minus ``2 log 2``.

    Numerics: the KL and Hellinger conjugates grow like :math:`e^{V}` in the fake score (and
    the reverse-KL and Hellinger activations like :math:`e^{-V}` in the real score). The
    exponential is exact for arguments up to 50 and continued linearly (value and slope
    continuous) above, where the exact value (> 5e21) is meaningless for training and would
    overflow float32 near 88; losses and gradients then stay finite for scores up to 1e4.
    """
    fn = "fgan_critic_loss"
    div = f_divergence(divergence)
    r, f = _pair(real_scores, fake_scores, fn)
    return (_mean(div.conjugate_of_activation(f), _weights(fake_weights, f, fn, "fake_weights"))
            - _mean(div.activation(r), _weights(real_weights, r, fn, "real_weights")))


def fgan_generator_loss(fake_scores: Array, divergence: str = "js", *,
                        alternative: bool = True, weights: Array | None = None) -> Array:
    r"""f-GAN generator loss (Nowozin et al. 2016).

    * ``alternative=True`` (default; the paper's Sec. 3.2 "alternative" update, which it uses
      in its experiments): maximise :math:`E_Q g_f(V(G(z)))`, i.e. return
      :math:`-E_Q g_f(V(G(z)))`. For ``"js"`` this is the non-saturating loss minus ``log 2``.
    * ``alternative=False``: the saddle-point objective, minimise
      :math:`F`, i.e. return :math:`-E_Q f^*(g_f(V(G(z))))` (the real term does not depend on
      G). For ``"js"`` this is the saturating :func:`minimax_generator_loss` plus ``log 2``.
    """
    fn = "fgan_generator_loss"
    div = f_divergence(divergence)
    f = _scores(fake_scores, fn)
    w = _weights(weights, f, fn, "weights")
    if alternative:
        return -_mean(div.activation(f), w)
    return -_mean(div.conjugate_of_activation(f), w)


# --------------------------------------------------------------------------- auxiliary losses

def acgan_classification_loss(class_logits: Array, labels: Array) -> Array:
    r"""Auxiliary-classifier loss of AC-GAN (Odena et al. 2017): mean softmax cross-entropy
    :math:`-E \log p(c = y \mid x)`.

    Args:
      class_logits: ``[B, K]`` class logits (upcast to float32 at least).
      labels: integer class indices ``[B]`` in ``[0, K)``, or class probabilities ``[B, K]``
        (non-negative rows summing to 1).

    Invalid label values raise ``ValueError`` when the labels are concrete. Under ``jit`` they
    cannot be inspected: the loss is then NaN instead of silently wrong (caller's contract).
    """
    fn = "acgan_classification_loss"
    logits = jnp.asarray(class_logits)
    labels = jnp.asarray(labels)
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise ValueError(f"{fn}: class_logits must have shape [B, K], got {logits.shape}")
    batch, classes = logits.shape
    logits = _upcast(logits)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        if labels.shape != (batch,):
            raise ValueError(f"{fn}: integer labels must have shape [B] = ({batch},) to match "
                             f"class_logits {tuple(logits.shape)}, got {labels.shape}")
        value = _concrete(labels)
        if value is not None and (value.min() < 0 or value.max() >= classes):
            raise ValueError(f"{fn}: labels must be in [0, {classes}), got values in "
                             f"[{value.min()}, {value.max()}]")
        valid = (labels >= 0) & (labels < classes)
        per_example = optax.softmax_cross_entropy_with_integer_labels(
            logits, jnp.clip(labels, 0, classes - 1))
        return jnp.mean(jnp.where(valid, per_example, jnp.nan))
    if jnp.issubdtype(labels.dtype, jnp.floating):
        if labels.shape != logits.shape:
            raise ValueError(f"{fn}: probability labels must have the shape of class_logits "
                             f"{tuple(logits.shape)}, got {labels.shape}")
        probs = _upcast(labels)
        tol = 1e-3 if probs.dtype == jnp.float32 else 1e-6
        value = _concrete(labels)
        if value is not None:
            value = value.astype(np.float64)
            if value.min() < 0 or np.max(np.abs(value.sum(axis=1) - 1.0)) > tol:
                raise ValueError(f"{fn}: probability labels must be non-negative with rows "
                                 f"summing to 1")
        valid = jnp.all(probs >= 0, axis=1) & (jnp.abs(jnp.sum(probs, axis=1) - 1.0) <= tol)
        per_example = optax.softmax_cross_entropy(logits, probs)
        return jnp.mean(jnp.where(valid, per_example, jnp.nan))
    raise ValueError(f"{fn}: labels must be integer indices or float probabilities, got dtype "
                     f"{labels.dtype}")


def feature_matching_loss(real_features: Array, fake_features: Array) -> Array:
    r"""Feature matching (Salimans et al. 2016, Sec. 3.1):
    :math:`\lVert E_x f(x) - E_z f(G(z)) \rVert_2^2`, the squared L2 distance between the
    batch means of intermediate critic features ``[B, ...]`` (all non-batch axes are features;
    batch sizes may differ). Stop the gradient on ``real_features`` if the critic is being
    differentiated and must not be.
    """
    fn = "feature_matching_loss"
    real, fake = jnp.asarray(real_features), jnp.asarray(fake_features)
    if real.ndim < 1 or fake.ndim < 1 or real.shape[1:] != fake.shape[1:] \
            or real.shape[0] == 0 or fake.shape[0] == 0:
        raise ValueError(f"{fn}: features must be non-empty batches [B, ...] with the same "
                         f"feature shape, got {real.shape} and {fake.shape}")
    diff = jnp.mean(_upcast(real), axis=0) - jnp.mean(_upcast(fake), axis=0)
    return jnp.sum(jnp.square(diff))


def _mean_abs_error(a: Array, b: Array, fn: str, names: str) -> Array:
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape or a.ndim < 1 or a.size == 0:
        raise ValueError(f"{fn}: {names} must be non-empty arrays of the same shape, got "
                         f"{a.shape} and {b.shape}")
    return jnp.mean(jnp.abs(_upcast(a) - _upcast(b)))


def l1_reconstruction_loss(target: Array, output: Array) -> Array:
    r"""L1 reconstruction loss (pix2pix, Isola et al. 2017): :math:`E |y - G(x)|`, the mean
    over every element (batch and pixels), as in the reference implementation's ``L1Loss``;
    the weight (λ = 100 in pix2pix) is the caller's."""
    return _mean_abs_error(target, output, "l1_reconstruction_loss", "target and output")


def cycle_consistency_loss(x: Array, x_reconstructed: Array) -> Array:
    r"""Cycle-consistency loss for one direction (CycleGAN, Zhu et al. 2017):
    :math:`E |F(G(x)) - x|`, mean over every element. Call once per direction and add;
    the weight (λ = 10 in CycleGAN) is the caller's."""
    return _mean_abs_error(x, x_reconstructed, "cycle_consistency_loss",
                           "x and x_reconstructed")


# --------------------------------------------------------------------------- registry

@dataclasses.dataclass(frozen=True)
class GANLoss:
    """A critic/generator loss pair; both take ``(real_scores, fake_scores)`` and return a
    scalar to minimise. ``needs_real``: whether the generator loss reads the real scores (the
    relativistic pairs, Jolicoeur-Martineau 2018); generators that do not ignore them (``None``
    is accepted there), so a train step need not score real data for them. Iterating a pair
    gives its two losses, critic first."""
    critic: Callable[[Array, Array], Array]
    generator: Callable[[Array | None, Array], Array]
    needs_real: bool = False

    def __iter__(self) -> Iterator[Callable[[Array, Array], Array]]:
        return iter((self.critic, self.generator))


def _fake_only(loss_fn: Callable[[Array], Array]) -> Callable[[Array, Array], Array]:
    @functools.wraps(loss_fn)
    def generator(real_scores, fake_scores):
        del real_scores
        return loss_fn(fake_scores)

    return generator


def fgan_losses(divergence: str, *, alternative: bool = True) -> GANLoss:
    """The f-GAN critic/generator pair for one divergence (see :func:`fgan_critic_loss` and
    :func:`fgan_generator_loss`; ``alternative`` selects the generator form)."""
    f_divergence(divergence)  # validate now
    return GANLoss(
        critic=functools.partial(fgan_critic_loss, divergence=divergence),
        generator=_fake_only(functools.partial(fgan_generator_loss, divergence=divergence,
                                               alternative=alternative)))


def _registry() -> dict[str, Callable[[], GANLoss]]:
    ra = functools.partial
    table = {
        "minimax": lambda: GANLoss(minimax_discriminator_loss,
                                   _fake_only(minimax_generator_loss)),
        "non_saturating": lambda: GANLoss(minimax_discriminator_loss,
                                          _fake_only(non_saturating_generator_loss)),
        "wasserstein": lambda: GANLoss(wasserstein_critic_loss,
                                       _fake_only(wasserstein_generator_loss)),
        "hinge": lambda: GANLoss(hinge_critic_loss, _fake_only(hinge_generator_loss)),
        "least_squares": lambda: GANLoss(least_squares_discriminator_loss,
                                         _fake_only(least_squares_generator_loss)),
        "relativistic": lambda: GANLoss(ra(relativistic_discriminator_loss, average=False),
                                        ra(relativistic_generator_loss, average=False),
                                        needs_real=True),
        "relativistic_average": lambda: GANLoss(
            ra(relativistic_discriminator_loss, average=True),
            ra(relativistic_generator_loss, average=True), needs_real=True),
        "relativistic_average_least_squares": lambda: GANLoss(
            relativistic_average_least_squares_discriminator_loss,
            relativistic_average_least_squares_generator_loss, needs_real=True),
        "relativistic_average_hinge": lambda: GANLoss(
            relativistic_average_hinge_discriminator_loss,
            relativistic_average_hinge_generator_loss, needs_real=True),
    }
    for div in FGAN_DIVERGENCES:
        table[f"fgan_{div}"] = functools.partial(fgan_losses, div)
    return table


_REGISTRY = _registry()
LOSS_NAMES: tuple[str, ...] = tuple(_REGISTRY)
_LABEL_LOSSES = ("minimax", "non_saturating")


def get_loss(name: str, *, label_smoothing: float = 0.0) -> GANLoss:
    """The :class:`GANLoss` pair for a configuration name in ``LOSS_NAMES``.

    ``"minimax"`` is the minimax discriminator with the saturating generator;
    ``"non_saturating"`` the same discriminator with the non-saturating generator;
    ``"relativistic"`` is RSGAN (paired, equal batch sizes), ``"relativistic_average"``
    RaSGAN; ``"fgan_<divergence>"`` the f-GAN pairs with the paper's alternative generator.

    Args:
      name: one of ``LOSS_NAMES``; anything else raises ``ValueError``.
      label_smoothing: one-sided label smoothing of the real target, in [0, 1). Only losses
        with label targets (``"minimax"``, ``"non_saturating"``) accept a non-zero value;
        elsewhere it raises ``ValueError`` instead of being ignored.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; expected one of {LOSS_NAMES}")
    try:
        smoothing = float(label_smoothing)
    except (TypeError, ValueError):
        raise ValueError(f"label_smoothing must be a number in [0, 1), got "
                         f"{label_smoothing!r}") from None
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    pair = _REGISTRY[name]()
    if smoothing > 0.0:
        if name not in _LABEL_LOSSES:
            raise ValueError(f"label_smoothing={label_smoothing} has no meaning for loss {name!r} "
                             f"(it has no label targets); only {_LABEL_LOSSES} accept it")
        pair = dataclasses.replace(pair, critic=functools.partial(minimax_discriminator_loss,
                                                                  label_smoothing=smoothing))
    return pair

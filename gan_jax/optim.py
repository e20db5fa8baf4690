r"""Optimisers for GAN training, matched to PyTorch's, and WGAN weight clipping.

:func:`make_optimizer` builds Adam, RMSProp or SGD with the update rules of
``torch.optim.Adam``, ``torch.optim.RMSprop`` and ``torch.optim.SGD`` (the reference
implementations the benchmarks compare against), optionally followed by
:func:`weight_clipping`.

PyTorch equivalence (g = gradient, t = step count from 1, all states start at 0):

* Adam: ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g²``,
  ``p -= lr · (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)`` — ``optax.adam`` with
  ``eps_root=0`` is exactly this (eps outside the square root, as in torch).
* RMSProp: ``v = α v + (1-α) g²``, ``p -= lr · g / (sqrt(v) + eps)`` with torch's defaults
  α = 0.99, eps = 1e-8. optax's ``rmsprop`` defaults differ on both counts (decay 0.9, and
  ``eps_in_sqrt=True``, i.e. ``g / sqrt(v + eps)``), so it is built with ``decay=α``,
  ``eps_in_sqrt=False``, ``initial_scale=0``, no bias correction.
* SGD: ``b = μ b + g`` (torch's momentum buffer with dampening 0), ``p -= lr · b``.

Learning-rate schedules (:func:`learning_rate_schedule`), for any optimiser, as optax schedules of the
optimiser's own update count t = 0, 1, ... (kept in its state, so a checkpoint carries it and a resumed
run continues the schedule exactly); T = ``total_updates``, the run's number of updates of this optimiser:

* ``"constant"``: lr_t = lr.
* ``"linear"``: lr_t = lr · (1 − t/T), to 0 at the end of the run: the decay of Miyato et al. 2018
  (SNGAN, some of their settings) and of mimicry's SNGAN / SSGAN baselines (its README).
* ``"cosine"``: lr_t = lr · ½ (1 + cos(π t/T)), to 0 at the end of the run.
* ``"exponential"``: pylearn2's (the code of Goodfellow et al. 2014) ``sgd.ExponentialDecay``: lr_t =
  max(lr · d^−t, lr_min), ``learning_rate_decay`` d > 1 dividing the rate after every update and
  ``min_learning_rate`` its floor. The schedule of a spec that gives ``learning_rate_decay``.

``warmup_steps`` w > 0 prepends a linear warm-up lr_t = lr · t/w for t < w (the first update is 0); the
schedule then runs on t − w over T − w updates. For SGD, ``final_momentum`` with
``momentum_ramp = (t0, t1)`` moves μ linearly from ``momentum`` at update t0 to ``final_momentum`` at
t1 (pylearn2's ``learning_rule.MomentumAdjustor``, which steps once per epoch; here per update).
"""
from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = ["OPTIMIZER_NAMES", "SCHEDULES", "learning_rate_schedule", "make_optimizer", "weight_clipping"]

OPTIMIZER_NAMES: tuple[str, ...] = ("adam", "rmsprop", "sgd")
SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine", "exponential")


def _positive(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{what} must be a positive number, got {value!r}")
    if not value > 0:
        raise ValueError(f"{what} must be > 0, got {value}")
    return float(value)


def _clip_update(p: jax.Array, u: jax.Array, clip: float) -> jax.Array:
    """``d`` such that ``p + d`` (as ``optax.apply_updates`` computes it) is ``clip(p + u)``.

    ``clip(p + u) - p`` alone can land one ulp outside the box once added back to ``p``
    (rounding of the difference); such entries are nudged one ulp inwards.
    """
    p = jnp.asarray(p)
    c = jnp.asarray(clip, p.dtype)
    target = optax.projections.projection_linf_ball(
        jnp.asarray(p + u).astype(p.dtype), c)
    d = (target - p).astype(p.dtype)
    for _ in range(2):
        landed = (p + d).astype(p.dtype)
        d = jnp.where(landed > c, jnp.nextafter(d, jnp.asarray(-jnp.inf, d.dtype)), d)
        d = jnp.where(landed < -c, jnp.nextafter(d, jnp.asarray(jnp.inf, d.dtype)), d)
    return d


def weight_clipping(clip: float) -> optax.GradientTransformation:
    r"""WGAN weight clipping (Arjovsky et al. 2017, Algorithm 1) as a chainable transform.

    Turns an update ``u`` into ``clip(p + u, -c, c) - p``, so that after
    ``optax.apply_updates`` every parameter is the clipped value of the unclipped step, as
    ``torch``'s ``opt.step(); p.clamp_(-c, c)``: exactly ``p + u`` where that lies inside the
    box, and within one ulp of ±c (never outside ``[-c, c]``) where it was clipped, since
    ``p + (c - p)`` need not round to ``c``. It needs ``params`` in ``update``
    and must come **last** in a chain, e.g.
    ``optax.chain(optax.rmsprop(5e-5, decay=0.99, eps_in_sqrt=False), weight_clipping(0.01))``.
    It uses :func:`optax.projections.projection_linf_ball` for the clip; optax (0.2.8) has no
    parameter-clipping transform of its own.

    Args:
      clip: the box half-width ``c > 0`` (0.01 in WGAN).
    """
    clip = _positive(clip, "weight_clipping: clip")

    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("weight_clipping needs the current parameters: call "
                             "update(updates, state, params) with params")
        return jax.tree.map(lambda u, p: _clip_update(p, u, clip), updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def _decayed(learning_rate: float, decay_factor: float | None, floor: float | None) -> optax.Schedule:
    """pylearn2's ExponentialDecay as an optax schedule."""
    if decay_factor is None:
        given = "the exponential schedule" if floor is None else f"min_learning_rate={floor}"
        raise ValueError(f"{given} needs a learning_rate_decay (the divisor per update)")
    if isinstance(decay_factor, bool) or not isinstance(decay_factor, numbers.Real) or not decay_factor > 1.0:
        raise ValueError(f"learning_rate_decay must be a number > 1 (the divisor per update), got {decay_factor!r}")
    if floor is not None and not 0.0 <= floor < learning_rate:
        raise ValueError(f"min_learning_rate must be in [0, learning_rate={learning_rate}), got {floor!r}")
    return optax.exponential_decay(learning_rate, transition_steps=1, decay_rate=1.0 / decay_factor,
                                   end_value=floor or None)


def _count(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def learning_rate_schedule(learning_rate: float, schedule: str = "constant", *, warmup_steps: int = 0,
                           total_updates: int | None = None, learning_rate_decay: float | None = None,
                           min_learning_rate: float | None = None) -> float | optax.Schedule:
    """The learning rate of each update (see the module docstring): ``learning_rate`` itself for a constant
    rate without warm-up (the optimiser's state then has no count), else an optax schedule.

    Args:
      learning_rate: the peak rate lr > 0.
      schedule: one of :data:`SCHEDULES`.
      warmup_steps: w >= 0 updates of linear warm-up from 0.
      total_updates: T, the run's updates of this optimiser; "linear" and "cosine" need T > w.
      learning_rate_decay, min_learning_rate: d > 1 and the floor of "exponential" (only there).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; allowed: {list(SCHEDULES)}")
    learning_rate = _positive(learning_rate, "learning_rate")
    warmup_steps = _count(warmup_steps, "warmup_steps", 0)
    if total_updates is not None:
        total_updates = _count(total_updates, "total_updates", 0)
    if schedule != "exponential" and (learning_rate_decay is not None or min_learning_rate is not None):
        raise ValueError(f"learning_rate_decay / min_learning_rate belong to the exponential schedule, not "
                         f"{schedule!r}; got learning_rate_decay={learning_rate_decay!r}, "
                         f"min_learning_rate={min_learning_rate!r}")
    if schedule in ("linear", "cosine"):
        if total_updates is None or not total_updates > warmup_steps:
            raise ValueError(f"the {schedule} schedule decays to 0 over the run: it needs total_updates "
                             f"> warmup_steps={warmup_steps}, got total_updates={total_updates!r}")
        decay_steps = total_updates - warmup_steps
        main = (optax.linear_schedule(learning_rate, 0.0, decay_steps) if schedule == "linear"
                else optax.cosine_decay_schedule(learning_rate, decay_steps))
    elif schedule == "exponential":
        main = _decayed(learning_rate, learning_rate_decay, min_learning_rate)
    elif not warmup_steps:
        return learning_rate
    else:
        main = optax.constant_schedule(learning_rate)
    if not warmup_steps:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, learning_rate, warmup_steps), main], [warmup_steps])


def _momentum_schedule(momentum: float | None, final: float | None, ramp: tuple[int, int] | None):
    """pylearn2's MomentumAdjustor as an optax schedule (or `momentum` itself without one)."""
    if (final is None) != (ramp is None):
        raise ValueError(f"final_momentum and momentum_ramp go together; got final_momentum={final!r}, "
                         f"momentum_ramp={ramp!r}")
    if final is None:
        return momentum
    if momentum is None:
        raise ValueError("final_momentum needs an initial momentum")
    if len(ramp) != 2 or not 0 <= ramp[0] < ramp[1]:
        raise ValueError(f"momentum_ramp must be (start, end) updates with 0 <= start < end, got {ramp!r}")
    return optax.linear_schedule(momentum, final, transition_steps=int(ramp[1] - ramp[0]),
                                 transition_begin=int(ramp[0]))


def make_optimizer(name: str, learning_rate: float | optax.Schedule, *, b1: float | None = None,
                   b2: float | None = None, eps: float | None = None,
                   weight_clip: float | None = None, decay: float | None = None,
                   momentum: float | None = None, schedule: str | None = None, warmup_steps: int = 0,
                   total_updates: int | None = None, learning_rate_decay: float | None = None,
                   min_learning_rate: float | None = None, final_momentum: float | None = None,
                   momentum_ramp: tuple[int, int] | None = None) -> optax.GradientTransformation:
    """An optimiser by name, with PyTorch's update rule and defaults.

    Args:
      name: ``"adam"``, ``"rmsprop"`` or ``"sgd"``.
      learning_rate: a positive number (the peak of ``schedule``), or an optax schedule (then no
        ``schedule`` options).
      b1, b2: Adam's moment decays (defaults 0.9, 0.999 as in torch). Adam only.
      eps: added to the root of the second moment, outside the square root (default 1e-8 as
        in torch). Adam and RMSProp only.
      weight_clip: if given, chain :func:`weight_clipping` with this ``c > 0`` after the
        optimiser (WGAN: ``make_optimizer("rmsprop", 5e-5, weight_clip=0.01)``).
      decay: RMSProp's squared-gradient decay α (default 0.99 as in torch). RMSProp only.
      momentum: SGD momentum μ (default none). SGD only.
      schedule: one of :data:`SCHEDULES` (see :func:`learning_rate_schedule`); default "exponential"
        when ``learning_rate_decay`` is given, else "constant".
      warmup_steps: updates of linear warm-up from 0 (default 0).
      total_updates: the run's updates of this optimiser, which "linear" and "cosine" decay over.
      learning_rate_decay: d > 1: lr_t = max(lr · d^−t, min_learning_rate) at update t = 0, 1, ...
        (pylearn2's ExponentialDecay; Goodfellow et al. 2014: d = 1.000004, lr_min = 1e-6).
      min_learning_rate: the floor of that decay (default 0).
      final_momentum, momentum_ramp: SGD momentum moving linearly from ``momentum`` at update
        ``momentum_ramp[0]`` to ``final_momentum`` at ``momentum_ramp[1]`` (pylearn2's
        MomentumAdjustor; Goodfellow et al. 2014: 0.5 → 0.7 over epochs 1–250). SGD only; both or neither.

    Options that do not apply to the chosen optimiser raise ``ValueError`` rather than being
    ignored.
    """
    if name not in OPTIMIZER_NAMES:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {OPTIMIZER_NAMES}")
    given = {k: v for k, v in dict(b1=b1, b2=b2, eps=eps, decay=decay, momentum=momentum,
                                   final_momentum=final_momentum, momentum_ramp=momentum_ramp).items()
             if v is not None}
    allowed = {"adam": ("b1", "b2", "eps"), "rmsprop": ("eps", "decay"),
               "sgd": ("momentum", "final_momentum", "momentum_ramp")}[name]
    extra = sorted(set(given) - set(allowed))
    if extra:
        raise ValueError(f"make_optimizer({name!r}): option(s) {extra} do not apply; "
                         f"{name} accepts {allowed}")
    if "eps" in given:
        _positive(eps, "eps")
    for key in ("b1", "b2", "decay", "momentum", "final_momentum"):
        if key in given and not 0.0 <= given[key] < 1.0:
            raise ValueError(f"{key} must be in [0, 1), got {given[key]}")
    if callable(learning_rate):
        options = [k for k, v in dict(schedule=schedule, warmup_steps=warmup_steps or None,
                                      learning_rate_decay=learning_rate_decay,
                                      min_learning_rate=min_learning_rate).items() if v is not None]
        if options:
            raise ValueError(f"{' and '.join(options)} need{'s' * (len(options) == 1)} a numeric learning_rate, "
                             f"not a schedule")
    else:
        if schedule is None:
            pylearn2 = learning_rate_decay is not None or min_learning_rate is not None
            schedule = "exponential" if pylearn2 else "constant"
        learning_rate = learning_rate_schedule(learning_rate, schedule, warmup_steps=warmup_steps,
                                               total_updates=total_updates, learning_rate_decay=learning_rate_decay,
                                               min_learning_rate=min_learning_rate)
    momentum = _momentum_schedule(momentum, final_momentum, momentum_ramp)

    if name == "adam":
        opt = optax.adam(learning_rate, b1=0.9 if b1 is None else b1,
                         b2=0.999 if b2 is None else b2, eps=1e-8 if eps is None else eps,
                         eps_root=0.0)
    elif name == "rmsprop":
        opt = optax.rmsprop(learning_rate, decay=0.99 if decay is None else decay,
                            eps=1e-8 if eps is None else eps, initial_scale=0.0,
                            eps_in_sqrt=False, centered=False, momentum=None,
                            bias_correction=False)
    elif callable(momentum):
        opt = optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate, momentum=momentum)
    else:
        opt = optax.sgd(learning_rate, momentum=momentum or None)
    if weight_clip is not None:
        opt = optax.chain(opt, weight_clipping(_positive(weight_clip, "weight_clip")))
    return opt

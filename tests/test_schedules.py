"""Learning-rate schedules of every optimiser spec (gan_jax.optim.learning_rate_schedule): the rate each
update applies equals the closed form, the pylearn2 decay is the "exponential" schedule, and a resumed run
continues its schedule exactly."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gan_jax import config as config_lib
from gan_jax.optim import SCHEDULES, learning_rate_schedule, make_optimizer

LR, T = 0.1, 12


def _applied_rates(opt: optax.GradientTransformation, updates: int) -> np.ndarray:
    """lr_t of updates t = 0 .. updates-1, measured: SGD on a loss whose gradient is 1 updates by −lr_t."""
    params = jnp.zeros(())
    state = opt.init(params)
    step = jax.jit(lambda p, s: opt.update(jnp.ones(()), s, p))
    rates = []
    for _ in range(updates):
        u, state = step(params, state)
        rates.append(-float(u))
    return np.asarray(rates)


def _closed_form(schedule: str, t: int, warmup: int) -> float:
    if t < warmup:
        return LR * t / warmup
    t, n = t - warmup, T - warmup
    return {"constant": LR,
            "linear": LR * (1 - min(t, n) / n),
            "cosine": LR * 0.5 * (1 + math.cos(math.pi * min(t, n) / n)),
            "exponential": max(LR * 1.5 ** -t, 0.02)}[schedule]


@pytest.mark.parametrize("warmup", [0, 3])
@pytest.mark.parametrize("schedule", SCHEDULES)
def test_each_update_applies_the_closed_form_rate(schedule, warmup):
    options = dict(learning_rate_decay=1.5, min_learning_rate=0.02) if schedule == "exponential" else {}
    opt = make_optimizer("sgd", LR, schedule=schedule, warmup_steps=warmup, total_updates=T, **options)
    expected = [_closed_form(schedule, t, warmup) for t in range(T + 3)]  # past the end: the last rate stays
    np.testing.assert_allclose(_applied_rates(opt, T + 3), expected, rtol=1e-5, atol=1e-8)
    if schedule in ("linear", "cosine"):
        assert _applied_rates(opt, T + 1)[-1] == 0.0
    if warmup:
        assert _applied_rates(opt, 1)[0] == 0.0


def test_a_config_entry_builds_the_same_schedule():
    spec = dict(name="sgd", learning_rate=LR, schedule="cosine", warmup_steps=2)
    np.testing.assert_array_equal(_applied_rates(config_lib.make_optimizer(spec, "spec", T), T),
                                  _applied_rates(make_optimizer("sgd", LR, schedule="cosine", warmup_steps=2,
                                                                total_updates=T), T))


def test_pylearn2_decay_is_the_exponential_schedule_and_constant_is_stateless():
    implicit = make_optimizer("adam", 1e-3, learning_rate_decay=1.000004, min_learning_rate=1e-6)
    explicit = make_optimizer("adam", 1e-3, schedule="exponential", learning_rate_decay=1.000004,
                              min_learning_rate=1e-6)
    params = {"w": jnp.arange(3.0)}
    grads = {"w": jnp.array([0.3, -1.0, 2.0])}
    a, b = implicit.init(params), explicit.init(params)
    for _ in range(3):
        (ua, a), (ub, b) = implicit.update(grads, a, params), explicit.update(grads, b, params)
        np.testing.assert_array_equal(ua["w"], ub["w"])
    # A constant rate without warm-up stays a number: the optimiser state (and old checkpoints) keep no count.
    assert learning_rate_schedule(LR) == LR
    assert jax.tree.structure(make_optimizer("adam", LR, schedule="constant").init(params)) == \
        jax.tree.structure(optax.adam(LR).init(params))


def test_the_schedule_count_is_optimiser_state():
    opt = make_optimizer("adam", 1e-3, schedule="linear", total_updates=T)
    params = {"w": jnp.zeros(2)}
    state = opt.init(params)
    for _ in range(5):
        _, state = opt.update({"w": jnp.ones(2)}, state, params)
    counts = [int(x) for x in jax.tree.leaves(state) if jnp.ndim(x) == 0 and jnp.issubdtype(x.dtype, jnp.integer)]
    assert 5 in counts


@pytest.mark.parametrize("kwargs,match", [
    (dict(schedule="step"), r"unknown learning-rate schedule 'step'; allowed: \['constant', 'linear', 'cosine', "
                            r"'exponential'\]"),
    (dict(schedule="linear"), r"linear schedule .* needs total_updates > warmup_steps=0, got total_updates=None"),
    (dict(schedule="cosine", total_updates=5, warmup_steps=5), r"total_updates > warmup_steps=5, got total_updates=5"),
    (dict(warmup_steps=-1), r"warmup_steps must be an integer >= 0, got -1"),
    (dict(warmup_steps=2.5), r"warmup_steps must be an integer >= 0, got 2.5"),
    (dict(warmup_steps=True), r"warmup_steps must be an integer >= 0, got True"),
    (dict(schedule="exponential"), r"the exponential schedule needs a learning_rate_decay"),
    (dict(schedule="linear", total_updates=10, learning_rate_decay=1.1),
     r"learning_rate_decay / min_learning_rate belong to the exponential schedule, not 'linear'"),
])
def test_bad_schedule_options_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_optimizer("adam", 1e-3, **kwargs)


def test_a_learning_rate_schedule_object_takes_no_schedule_options():
    with pytest.raises(ValueError, match="schedule and warmup_steps need a numeric learning_rate"):
        make_optimizer("adam", optax.constant_schedule(1e-3), schedule="linear", warmup_steps=3)
    with pytest.raises(ValueError, match="total_updates is not an option"):
        config_lib.make_optimizer(dict(name="adam", learning_rate=1e-3, total_updates=5), "config.optim.critic")


def test_the_critic_decays_over_n_critic_updates_per_step():
    from tests.helpers import tiny_config
    config = tiny_config("gan", steps=10, **{"loss.n_critic": 3})
    assert config_lib.total_updates(config, "generator") == 10
    assert config_lib.total_updates(config, "critic") == 30
    config.optim.critic = dict(config.optim.critic, schedule="linear", warmup_steps=30)
    with pytest.raises(ValueError, match="total_updates > warmup_steps=30, got total_updates=30"):
        config_lib.validate(config)


def test_a_resumed_run_continues_its_linear_schedule_exactly(tmp_path, capsys):
    """Stopping after the checkpoint of step 2 and resuming gives the uninterrupted run's metrics: the
    schedules' counts (one per critic update, two per step here) come back with the optimiser state."""
    import shutil
    from gan_jax import loop
    from tests.helpers import logged_metrics, tiny_config
    one = jax.devices()[:1]

    def config(scheduled: bool = True):
        c = tiny_config("gan", steps=4, checkpoint_every=2, **{"loss.n_critic": 2})
        if scheduled:
            c.optim.generator = dict(c.optim.generator, schedule="linear")
            c.optim.critic = dict(c.optim.critic, schedule="linear", warmup_steps=2)
        return c

    loop.train_and_evaluate(config(), str(tmp_path / "clean"), devices=one)
    loop.train_and_evaluate(config(), str(tmp_path / "run"), devices=one)
    shutil.rmtree(tmp_path / "run" / "checkpoints" / "4")  # as if stopped right after the checkpoint of step 2
    capsys.readouterr()
    loop.train_and_evaluate(config(), str(tmp_path / "run"), devices=one)
    assert "resumed from the checkpoint at step 2" in "".join(capsys.readouterr())
    clean, resumed = logged_metrics(tmp_path / "clean"), logged_metrics(tmp_path / "run")
    assert len(clean) >= 4 and resumed == clean
    # The schedules do shape the run (so the comparison above can fail).
    loop.train_and_evaluate(config(scheduled=False), str(tmp_path / "constant"), devices=one)
    assert logged_metrics(tmp_path / "constant") != clean

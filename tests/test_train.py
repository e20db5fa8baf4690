"""The train step: data-parallel equivalence, purity, configuration errors."""
import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax.sharding import PartitionSpec as P

from gan_jax import config as config_lib, losses, parallel, train
from gan_jax.objectives import Stream
from tests.helpers import host_batches, max_abs_diff, subprocess_xla_flags, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (variant, overrides): the three (NS GAN, WGAN with clipping, WGAN-GP) plus the
# batch-coupled cases the all-gathered losses exist for (relativistic average, packing).
CASES = {
    "non_saturating": ("gan", {}),
    "wgan_clip": ("gan", {"loss.name": "wasserstein", "loss.n_critic": 5,
                          "optim.critic": dict(name="rmsprop", learning_rate=5e-5, weight_clip=0.01),
                          "optim.generator": dict(name="rmsprop", learning_rate=5e-5)}),
    "wgan_gp": ("wgan_gp", {}),
    # SGD: relativistic losses are invariant to a shift of all scores, so the critic's output bias has
    # an exactly zero gradient, whose float noise Adam's first step would blow up to ±lr.
    "relativistic_average_pack2": ("pacgan2", {"loss.name": "relativistic_average", **{
        f"optim.{who}": dict(name="sgd", learning_rate=0.1)
        for who in ("generator", "critic")}}),
    # PacGAN's batch norm: each packed slot's statistics are reduced over the devices' rows of that slot.
    "pack2_slot_batch_norm_simultaneous": ("pacgan2", {"loss.simultaneous": True, "model.generator": dict(
        name="mlp", hidden=(16, 16), out_dim=2, batch_norm=True, bn_per_slot=True, bn_momentum=0.95, bn_epsilon=1e-4)}),
}


def run_steps(config, devices, mode: str, steps: int = 2, unroll_critic: bool = False):
    gan = train.build(config)
    mesh = parallel.make_mesh(devices)
    step = parallel.parallelize(train.make_train_step(gan, unroll_critic), mode, mesh)
    state = step.put_state(train.init_state(gan, jax.random.key(config.seed), (2,)))
    history = []
    for b in host_batches(config, steps):
        state, metrics = step(state, step.put_batch(b))
        history.append(jax.device_get(metrics))  # wait on every step (2-core collective deadlock)
    return jax.device_get(step.get_state(state)), history


@pytest.mark.parametrize("case", sorted(CASES))
def test_eight_devices_equal_one_device(case):
    variant, overrides = CASES[case]
    config = tiny_config(variant, **overrides)
    one, m_one = run_steps(config, jax.devices()[:1], "shard_map")
    eight, m_eight = run_steps(config, jax.devices()[:8], "shard_map")
    assert max_abs_diff(one, eight) < 1e-5
    assert max_abs_diff(m_one, m_eight) < 1e-5
    assert int(eight.step) == 2
    # The step changed the parameters (the comparison is not between two untouched states).
    init = train.init_state(train.build(config), jax.random.key(config.seed), (2,))
    assert max_abs_diff(init.critic.params, eight.critic.params) > 1e-7


def test_pmap_equals_shard_map():
    config = tiny_config("wgan_gp")
    a, ma = run_steps(config, jax.devices()[:2], "shard_map")
    b, mb = run_steps(config, jax.devices()[:2], "pmap")
    assert max_abs_diff(a, b) < 1e-6
    assert max_abs_diff(ma, mb) < 1e-6


def test_step_is_pure_and_deterministic():
    config = tiny_config("gan")
    gan = train.build(config)
    step = jax.jit(jax.shard_map(train.make_train_step(gan), mesh=parallel.make_mesh(jax.devices()[:1]),
                                 in_specs=(P(), P(None, train.AXIS)), out_specs=(P(), P()), check_vma=False))
    state = train.init_state(gan, jax.random.key(0), (2,))
    before = jax.tree.map(jnp.copy, state)
    batch = jax.tree.map(jnp.asarray, host_batches(config, 1)[0])
    s1, m1 = step(state, batch)
    s2, m2 = step(state, batch)
    assert max_abs_diff(before, state) == 0.0          # the input state is untouched
    assert max_abs_diff(s1, s2) == 0.0 and max_abs_diff(m1, m2) == 0.0
    assert max_abs_diff(before.generator.params, s1.generator.params) > 0


def _lowered_step_text(config, unroll_critic: bool = False) -> str:
    gan = train.build(config)
    step = parallel.parallelize(train.make_train_step(gan, unroll_critic), "shard_map",
                                parallel.make_mesh(jax.devices()[:1]))
    state = step.put_state(train.init_state(gan, jax.random.key(0), (2,)))
    return step.step.lower(state, step.put_batch(host_batches(config, 1)[0])).as_text()


def test_critic_loop_is_one_compiled_loop():
    """n_critic updates run as a loop inside the one compiled step: the program does not grow with n_critic."""
    one = _lowered_step_text(tiny_config("wgan_gp", **{"loss.n_critic": 1}))
    five = _lowered_step_text(tiny_config("wgan_gp", **{"loss.n_critic": 5}))
    assert one.count("stablehlo.dot_general") == five.count("stablehlo.dot_general") > 0
    assert "stablehlo.while" in five


def test_unrolled_critic_loop_gives_the_same_step():
    """unroll_critic (a speed option) writes the n_critic updates out: same parameters and metrics."""
    _, overrides = CASES["wgan_clip"]
    config = tiny_config("gan", **overrides)
    rolled, m_rolled = run_steps(config, jax.devices()[:1], "shard_map")
    unrolled, m_unrolled = run_steps(config, jax.devices()[:1], "shard_map", unroll_critic=True)
    assert max_abs_diff(rolled, unrolled) < 1e-6 and max_abs_diff(m_rolled, m_unrolled) < 1e-6
    loops = [_lowered_step_text(config, u).count("stablehlo.while") for u in (False, True)]
    assert loops[1] == loops[0] - 1  # the n_critic loop is gone (the others are inside library ops)


def test_wgan_clipping_keeps_critic_weights_in_the_box():
    _, overrides = CASES["wgan_clip"]
    state, _ = run_steps(tiny_config("gan", **overrides), jax.devices()[:1], "shard_map", steps=3)
    leaves = jax.tree.leaves(state.critic.params)
    assert max(float(jnp.max(jnp.abs(x))) for x in leaves) <= 0.01 + 1e-7


def test_ema_follows_the_generator():
    config = tiny_config("gan", ema_decay=0.5)
    state, _ = run_steps(config, jax.devices()[:1], "shard_map", steps=1)
    init = train.init_state(train.build(config), jax.random.key(config.seed), (2,))
    expected = jax.tree.map(lambda e, p: 0.5 * e + 0.5 * p, init.generator.ema, state.generator.params)
    assert max_abs_diff(expected, state.generator.ema) < 1e-7
    assert init.critic.ema == {}  # only the generator keeps an EMA
    # ema_decay = 0: the EMA is the parameters.
    state, _ = run_steps(tiny_config("gan"), jax.devices()[:1], "shard_map", steps=1)
    assert max_abs_diff(state.generator.ema, state.generator.params) == 0.0


def test_sampling_compiles_once_per_generator_and_size():
    """Evaluations during training sample from new weights each time; they must reuse one program."""
    config = tiny_config("gan")
    gan = train.build(config)
    state = train.init_state(gan, jax.random.key(0), (2,))
    params, stats = state.generator.params, state.generator.batch_stats
    train.sample(gan, params, stats, jax.random.key(1), 16)
    compiled = train._sample._cache_size()
    moved = jax.tree.map(lambda x: x + 0.1, params)
    again = train.sample(train.build(config), moved, stats, jax.random.key(2), 16)  # same config, rebuilt
    assert train._sample._cache_size() == compiled
    z = jax.random.normal(jax.random.key(2), (16, config.model.latent_dim))
    direct = gan.generator.apply({"params": moved, "batch_stats": stats}, z, False)
    assert max_abs_diff(direct, again) < 1e-6
    train.sample(gan, moved, stats, jax.random.key(2), 8)
    assert train._sample._cache_size() == compiled + 1


@pytest.mark.parametrize("field,value,message", [
    ("loss.n_critic", 0, "config.loss.n_critic must be an integer >= 1, got 0"),
    ("loss.name", "wasserstien", "unknown loss 'wasserstien'; allowed: ["),
    ("optim.critic", dict(name="adamw", learning_rate=1e-4), "unknown optimizer 'adamw'"),
    ("optim.critic", dict(name="sgd", learning_rate=1e-4, b1=0.5), "option(s) ['b1'] do not apply"),
    ("optim.generator", dict(name="rmsprop", learning_rate=1e-4, weight_clip=0.01), "clips the critic's weights only"),
    ("batch_size", 12, "config.batch_size=12 is not divisible by the 8 devices"),
    ("parallel", "vmap", "unknown config.parallel 'vmap'; allowed: ['shard_map', 'pmap']"),
    ("loss.label_smoothing", 1.0, "label_smoothing"),
    ("model.pack", 3, "not divisible by config.model.pack=3"),
    ("eval_every", -1, "config.eval_every must be an integer >= 0 (0: evaluate only at the end), got -1"),
    ("loss.feature_matching", -1.0, "config.loss.feature_matching must be >= 0, got -1.0"),
])
def test_bad_config_values_are_named(field, value, message):
    config = tiny_config("gan", **{field: value})
    with pytest.raises(ValueError) as e:
        config_lib.validate(config, num_devices=8)
    assert message in str(e.value)


def test_unknown_config_field_is_named():
    config = tiny_config("gan")
    config.loss.ncritic = 5
    with pytest.raises(ValueError, match=r"unknown config field 'loss.ncritic'"):
        config_lib.validate(config)


class _BatchNormCritic(nn.Module):
    @nn.compact
    def __call__(self, x, train):
        x = nn.BatchNorm(use_running_average=not train)(x)
        return nn.Dense(1)(x)[:, 0]


@pytest.mark.parametrize("field,value,message", [
    ("loss.gradient_penalty", 10.0, r"config.loss.gradient_penalty=10.0 needs a critic without batch norm "
                                    r"\(Gulrajani et al. 2017, Sec. 4: the penalty is per example; batch norm makes"),
    ("loss.r1_gamma", 1.0, r"config.loss.r1_gamma=1.0 needs a critic without batch norm \(Mescheder et al. 2018: "
                           r"the penalty is per example; batch norm makes"),
])
def test_input_gradient_penalties_with_a_batch_norm_critic_are_refused(field, value, message):
    gan = train.build(tiny_config("gan", **{field: value}))
    assert train.init_state(gan, jax.random.key(0), (2,)).critic.batch_stats == {}  # MLP critic: accepted
    with pytest.raises(ValueError, match=message):
        train.init_state(gan._replace(critic=_BatchNormCritic()), jax.random.key(0), (2,))
    # Without the penalty the same critic is accepted.
    train.init_state(train.build(tiny_config("gan"))._replace(critic=_BatchNormCritic()), jax.random.key(0), (2,))


def _one_step(config):
    state, _ = run_steps(config, jax.devices()[:1], "shard_map", steps=1)
    return state


def test_simultaneous_generator_step_does_not_see_the_critic_step():
    """Goodfellow et al. 2014's code: G's gradient is taken at the critic before its update, so G's new
    parameters do not depend on the critic's learning rate; alternating, they do."""
    sgd = lambda lr: dict(name="sgd", learning_rate=lr)  # noqa: E731
    def generator_after(simultaneous, critic_lr):
        config = tiny_config("gan", **{"loss.simultaneous": simultaneous, "optim.critic": sgd(critic_lr),
                                       "optim.generator": sgd(0.1)})
        return _one_step(config).generator.params
    assert max_abs_diff(generator_after(True, 1e-6), generator_after(True, 1.0)) < 1e-7
    assert max_abs_diff(generator_after(False, 1e-6), generator_after(False, 1.0)) > 1e-5
    # ... and it uses the critic step's own samples: with a frozen critic it differs from alternating,
    # which draws fresh z for the generator step.
    assert max_abs_diff(generator_after(True, 1e-6), generator_after(False, 1e-6)) > 1e-5
    with pytest.raises(ValueError, match="simultaneous=True takes one critic step per generator step; got n_critic=5"):
        config_lib.validate(tiny_config("gan", **{"loss.simultaneous": True, "loss.n_critic": 5}))


def test_the_generator_step_reuses_one_forward_pass(monkeypatch):
    """The generator's step differentiates through the forward pass that made its samples: simultaneous
    steps run G once per step (the critic's step reuses it), alternating steps twice (fresh samples)."""
    apply, calls = train._apply, []

    def counting_apply(module, *args, **kwargs):
        calls.append(type(module).__name__)
        return apply(module, *args, **kwargs)

    monkeypatch.setattr(train, "_apply", counting_apply)
    generator = type(train.build(tiny_config("gan")).generator).__name__
    for simultaneous, passes in ((True, 1), (False, 2)):
        calls.clear()
        _one_step(tiny_config("gan", **{"loss.simultaneous": simultaneous}))
        assert calls.count(generator) == passes, (simultaneous, calls)


def test_a_checkpoint_without_a_newer_field_counts_it_as_its_default():
    current = json.loads(json.dumps(config_lib.flatten(tiny_config("gan")), default=str))
    saved = {k: v for k, v in current.items() if k != "loss.simultaneous"}
    assert config_lib.differing_fields(saved, current) == []
    current["loss.simultaneous"] = True
    assert config_lib.differing_fields(saved, current) == [
        "loss.simultaneous: the run has False, this config has True"]
    # An architecture option added later (PacGAN's batch norm of the MLP) counts as that network's default.
    current = json.loads(json.dumps(config_lib.flatten(tiny_config("gan", **{"model.generator": dict(
        name="mlp", hidden=(16, 16), out_dim=2, batch_norm=True, bn_per_slot=False, bn_momentum=0.9)})), default=str))
    spec = current["model.generator"]
    saved = {**current, "model.generator": {k: v for k, v in spec.items() if k not in ("bn_per_slot", "bn_momentum")}}
    assert config_lib.differing_fields(saved, current) == []
    current["model.generator"] = {**spec, "bn_momentum": 0.95}
    (diff,) = config_lib.differing_fields(saved, current)
    assert diff.startswith("model.generator: the run has {") and "'bn_momentum': 0.9," in diff


def simultaneous_config(**overrides):
    """A tiny config with simultaneous updates (the generator's is taken at the critic before its update, on
    that update's samples) and a generator without batch norm: the generator update's samples and scores can
    be recomputed by hand from the initial state."""
    config = tiny_config("gan", **{"loss.simultaneous": True, **overrides})
    config.model.generator = dict(name="mlp", hidden=(16, 16), out_dim=2, batch_norm=False)
    return config


def generator_update_inputs(gan, state, batch):
    """By hand, from the initial `state` of a `simultaneous_config`: the generator update's samples of step 0
    (those of critic iteration 0) and the real batch it sees."""
    keys = train._example_keys(state.key, 0, 0, jnp.arange(batch["x"].shape[1]))
    z = jax.vmap(lambda k: jax.random.normal(k, (gan.config.model.latent_dim,)))(train._fold(keys, Stream.LATENT))
    fake = gan.generator.apply({"params": state.generator.params}, z, train=True)
    return jnp.asarray(batch["x"][-1]), fake


def test_generator_loss_follows_the_pair_the_gan_was_built_with():
    """What the generator loss reads is a property of the loss pair (`GANLoss.needs_real`), not of the config's
    loss name: a relativistic pair under a config named "non_saturating" gets the real scores."""
    config = simultaneous_config(**{"loss.name": "non_saturating"})
    gan = train.build(config)._replace(loss=losses.get_loss("relativistic_average"))
    init = train.init_state(gan, jax.random.key(config.seed), (2,))
    batch = host_batches(config, 1)[0]
    mesh = parallel.make_mesh(jax.devices()[:1])
    step = parallel.parallelize(train.make_train_step(gan), "shard_map", mesh)
    _, metrics = step(step.put_state(jax.tree.map(jnp.copy, init)), step.put_batch(batch))  # the state is donated
    real, fake = generator_update_inputs(gan, init, batch)
    critic = lambda x: gan.critic.apply({"params": init.critic.params}, x, train=True)  # noqa: E731
    real_s, fake_s = np.asarray(critic(real), np.float64), np.asarray(critic(fake), np.float64)
    # RaSGAN's generator loss (Jolicoeur-Martineau 2018):
    # E softplus(−(C(x_f) − E C(x_r))) + E softplus(C(x_r) − E C(x_f)).
    expected = (np.mean(np.logaddexp(0, -(fake_s - real_s.mean()))) + np.mean(np.logaddexp(0, real_s - fake_s.mean())))
    assert abs(float(metrics["generator_loss"]) - expected) < 1e-5
    assert abs(float(losses.non_saturating_generator_loss(fake_s)) - expected) > 1e-3  # not the config name's loss


def goodfellow_losses(num_devices: int, dropout: bool = True, steps: int = 2) -> list[dict[str, float]]:
    """The metrics of `steps` steps of the Goodfellow et al. 2014 MNIST config (maxout critic with dropout,
    simultaneous updates), shrunk (tiny nets, batch 8), on random in-memory images, over the first
    `num_devices` devices; each step is waited on."""
    from experiments import goodfellow2014_mnist
    c = goodfellow2014_mnist.get_config()
    c.batch_size = 8
    c.model.generator.hidden = (16, 16)
    c.model.critic.hidden, c.model.critic.pieces = (16, 16), 2
    c.model.critic.init_range = 0.1  # scores of order 1 (the paper's 0.005 gives ~1e-5): the losses resolve the masks
    if not dropout:
        c.model.critic.input_dropout = c.model.critic.hidden_dropout = 0.0
    images = np.random.default_rng(0).uniform(-1, 1, (steps, 1, c.batch_size, 28, 28, 1)).astype(np.float32)
    gan = train.build(c)
    mesh = parallel.make_mesh(jax.devices()[:num_devices])
    step = parallel.parallelize(train.make_train_step(gan), "shard_map", mesh)
    marginals = (images.mean(axis=(0, 1, 2)) + 1) / 2
    state = step.put_state(train.init_state(gan, jax.random.key(c.seed), (28, 28, 1), marginals=marginals))
    history = []
    for x in images:
        state, metrics = step(state, step.put_batch({"x": x}))
        history.append({k: float(v) for k, v in jax.device_get(metrics).items()})  # waits on the step
    return history


def test_dropout_masks_are_the_same_on_one_and_two_devices():
    """Dropout keys are per example (folded like the latents), so the maxout critic with dropout of Goodfellow
    et al. 2014 logs the same losses however the batch is split over devices."""
    one = goodfellow_losses(1)
    flags = (f"{subprocess_xla_flags(2)} --xla_cpu_collective_call_warn_stuck_timeout_seconds=3 "
             "--xla_cpu_collective_call_terminate_timeout_seconds=6")
    code = "import json; from tests.test_train import goodfellow_losses; print(json.dumps(goodfellow_losses(2)))"
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "XLA_FLAGS": flags},
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    two = json.loads(run.stdout.strip().splitlines()[-1])
    assert one[0].keys() == {"critic_loss", "generator_loss", "real_score", "fake_score"}
    assert max_abs_diff(one, two) < 1e-5
    # The dropout is on: without it the losses differ.
    assert max_abs_diff(one, goodfellow_losses(1, dropout=False)) > 1e-2


def test_reused_critic_codes_give_the_generator_the_samples_the_critic_just_saw():
    """loss.reuse_critic_codes (one batch_z for D's and G's steps, carpedm20/DCGAN-tensorflow): with the critic
    frozen, an alternating step on the critic's codes equals a simultaneous step (G on the critic's samples, at the
    critic before its step), and differs from one on fresh codes."""
    sgd = lambda lr: dict(name="sgd", learning_rate=lr)  # noqa: E731
    frozen = {"optim.critic": sgd(1e-30), "optim.generator": sgd(0.1)}
    config = tiny_config("gan", **frozen)
    state0 = jax.device_get(train.init_state(train.build(config), jax.random.key(0), (2,)))
    (batch,) = host_batches(config, 1)

    def generator_after_one_step(**fields):
        step = parallel.parallelize(train.make_train_step(train.build(tiny_config("gan", **frozen, **fields))),
                                    "shard_map", parallel.make_mesh(jax.devices()[:1]))
        state = jax.tree.map(lambda x: x.copy(), state0)  # the step donates its input
        return jax.device_get(step(step.put_state(state), step.put_batch(batch))[0]).generator.params

    reused = generator_after_one_step(**{"loss.reuse_critic_codes": True})
    assert max_abs_diff(reused, generator_after_one_step(**{"loss.simultaneous": True})) < 1e-7
    moved = max_abs_diff(reused, state0.generator.params)
    assert max_abs_diff(reused, generator_after_one_step()) > 0.1 * moved > 0   # other codes, another step
    with pytest.raises(ValueError, match="reuse_critic_codes=True is for alternating updates; simultaneous=True"):
        config_lib.validate(tiny_config("gan", **{"loss.simultaneous": True, "loss.reuse_critic_codes": True}))


def test_generator_updates_repeat_the_generator_step_on_the_same_codes():
    """loss.generator_updates=2 (carpedm20/DCGAN-tensorflow's "run g_optim twice"): with the critic frozen, one
    step equals a step with one generator update followed by another from its state at the same step count
    (hence the same codes)."""
    sgd = lambda lr: dict(name="sgd", learning_rate=lr)  # noqa: E731
    frozen = {"optim.critic": sgd(1e-30), "optim.generator": sgd(0.1)}  # 1e-30: the critic stays put
    steps = {}
    for updates in (1, 2):
        gan = train.build(tiny_config("gan", **frozen, **{"loss.generator_updates": updates}))
        steps[updates] = parallel.parallelize(train.make_train_step(gan), "shard_map",
                                              parallel.make_mesh(jax.devices()[:1]))
    config = tiny_config("gan", **frozen)
    state0 = jax.device_get(train.init_state(train.build(config), jax.random.key(0), (2,)))
    (batch,) = host_batches(config, 1)

    def run(updates, state):
        step = steps[updates]
        state = jax.tree.map(lambda x: x.copy(), state)  # the step donates its input (the PRNG key is a jax.Array)
        return jax.device_get(step(step.put_state(state), step.put_batch(batch))[0])

    twice = run(2, state0)
    once = run(1, state0)
    again = run(1, once.replace(step=state0.step))
    assert max_abs_diff(twice.generator.params, again.generator.params) < 1e-8
    assert max_abs_diff(twice.generator.params, once.generator.params) > 1e-5  # the second update moved G
    assert max_abs_diff(twice.critic.params, state0.critic.params) < 1e-20  # frozen (zero biases move by ~1e-32)
    with pytest.raises(ValueError, match="generator_updates must be an integer >= 1, got 0"):
        config_lib.validate(tiny_config("gan", **{"loss.generator_updates": 0}))
    with pytest.raises(ValueError, match="simultaneous=True takes one generator update per step; got generator_up"):
        config_lib.validate(tiny_config("gan", **{"loss.simultaneous": True, "loss.generator_updates": 2}))

"""launch.py end to end: exact resume after SIGKILL, SIGTERM, NaN stop, config mismatch, bad flags."""
import json
import re
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gan_jax import checkpoint, config as config_lib, loop, models, reproduce, tasks, train, workdir, writers
from gan_jax.tasks import gan as gan_task
from tests.helpers import max_abs_diff, subprocess_xla_flags, tiny_config

ONE_DEVICE = jax.devices()[:1]  # fake CPU devices share 2 cores: one is fastest
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The PacGAN ring nets at full size (≈ 20 ms a step), so that a kill lands mid-run.
RING = [sys.executable, os.path.join(ROOT, "launch.py"), "--config", os.path.join(ROOT, "experiments/mixture_ring.py"),
        "--config.steps=60", "--config.checkpoint_every=10", "--config.log_every=1", "--config.sample_every=40",
        "--config.eval.num_samples=500"]


def _env():
    env = dict(os.environ)
    env["XLA_FLAGS"] = subprocess_xla_flags(1)
    return env


def _launch(workdir, *extra, **kw):
    return subprocess.Popen(RING + ["--workdir", str(workdir), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(), cwd=ROOT, **kw)


def _run(workdir, *extra, timeout=300):
    p = _launch(workdir, *extra)
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _wait_for_line(proc, text: str) -> list[str]:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"{text!r} never printed; stdout: {lines}; stderr: {proc.stderr.read()[-3000:]}")


def _final_state(workdir, config):
    gan = train.build(config)
    abstract = jax.eval_shape(lambda k: train.init_state(gan, k, (2,)), jax.random.key(0))
    ck = checkpoint.Checkpointer(str(workdir), config)
    try:
        return ck.latest_step(), ck.restore(abstract)
    finally:
        ck.close()


def _rows(workdir):
    with open(os.path.join(workdir, writers.METRICS_FILE)) as f:
        return [json.loads(line) for line in f]


def _metrics(workdir):
    """The logged rows without their wall clock, which differs between any two runs."""
    return [{k: v for k, v in row.items() if k != writers.WALL_KEY} for row in _rows(workdir)]


def test_the_metrics_clock_sums_resumed_legs_and_counts_lost_work_once(tmp_path):
    rows = [{"step": t, "critic_loss": 1.0, writers.WALL_KEY: 10.0 * t} for t in (1, 2, 3)]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / writers.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    writer = writers.MetricWriter(str(tmp_path / "run"), resume_step=2)  # died after step 3, checkpoint at 2
    writer.write(3, {"critic_loss": 0.5})
    writer.close()
    logged = _rows(tmp_path / "run")
    assert [r["step"] for r in logged] == [1, 2, 3] and logged[:2] == rows[:2]
    assert 20.0 <= logged[2][writers.WALL_KEY] < 25.0  # continues from step 2's 20 s, not from 30 s or 0
    assert reproduce._train_seconds(str(tmp_path / "run")) == logged[2][writers.WALL_KEY]

    # Rows from before the clock existed: the total is unknown, so none is written or reported.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / writers.METRICS_FILE).write_text(json.dumps({"step": 2, "critic_loss": 1.0}) + "\n")
    writer = writers.MetricWriter(str(tmp_path / "old"), resume_step=2)
    writer.write(3, {"critic_loss": 0.5})
    writer.close()
    assert writers.WALL_KEY not in _rows(tmp_path / "old")[-1]
    assert reproduce._train_seconds(str(tmp_path / "old")) is None
    assert reproduce._train_seconds(str(tmp_path / "none")) is None


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    rc, out, err = _run(tmp_path / "straight")
    assert rc == 0, err[-3000:]

    killed = _launch(tmp_path / "killed")
    _wait_for_line(killed, "checkpoint at step 10")
    finalized = tmp_path / "killed" / "checkpoints" / "10"
    deadline = time.time() + 60
    while not finalized.is_dir() and time.time() < deadline:  # orbax renames the tmp dir when complete
        time.sleep(0.005)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    config = experiment_config()
    step_at_kill, _ = _final_state(tmp_path / "killed", config)
    assert 10 <= step_at_kill < 60  # the kill landed mid-run

    # The resumed leg takes 7 steps per compiled call: calls that end early at every checkpoint and sample step
    # must leave the trajectory and the logs exactly as single steps do.
    rc, out, err = _run(tmp_path / "killed", "--config.steps_per_call=7")
    assert rc == 0, err[-3000:]
    assert f"resumed from the checkpoint at step {step_at_kill}" in out

    step_a, a = _final_state(tmp_path / "straight", config)
    step_b, b = _final_state(tmp_path / "killed", config)
    assert step_a == step_b == 60
    assert max_abs_diff(a, b) == 0.0
    assert _metrics(tmp_path / "straight") == _metrics(tmp_path / "killed")
    clock = [row[writers.WALL_KEY] for row in _rows(tmp_path / "killed")]
    assert clock == sorted(clock) and clock[0] > 0  # the resumed leg continues the first one's clock
    logged = _metrics(tmp_path / "killed")
    assert [m["step"] for m in logged if "critic_loss" in m] == list(range(1, 61))
    assert "eval/modes" in logged[-1]
    with open(tmp_path / "straight" / "eval.json") as f, open(tmp_path / "killed" / "eval.json") as g:
        assert json.load(f) == json.load(g)
    assert "final evaluation: modes = " in out


def experiment_config():
    from experiments.mixture_ring import get_config
    c = get_config()
    c.steps, c.checkpoint_every, c.log_every, c.sample_every, c.eval.num_samples = 60, 10, 1, 40, 500
    return c


# 0.3 s after a checkpoint the loop is syncing on a step, so the signal lands between two steps' flag
# reads (the race that once skipped the save and then stopped: 7 of 8 such runs failed before the fix).
@pytest.mark.parametrize("delay_s", [0.0, 0.3])
def test_sigterm_saves_and_exits(tmp_path, delay_s):
    proc = _launch(tmp_path, "--config.steps=100000")
    _wait_for_line(proc, "checkpoint at step 10")
    time.sleep(delay_s)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "saved the checkpoint at step" in out
    stopped_at = int(out.split("saved the checkpoint at step ")[1].split(";")[0])
    config = experiment_config()
    config.steps = 100000
    step, state = _final_state(tmp_path, config)
    assert step == stopped_at == int(state.step) >= 10


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    # An SGD critic at lr 1e5 on the unbounded Wasserstein loss overflows within a few steps.
    config = tiny_config("gan", **{"loss.name": "wasserstein", "optim.critic": dict(name="sgd", learning_rate=1e5),
                                   "steps": 50, "checkpoint_every": 1, "batch_size": 8,
                                   "max_abs_loss": 1e38})   # the divergence guard off: this is the NaN stop
    with pytest.raises(loop.NonFiniteLossError, match=r"non-finite [a-z_, ]*(loss|critic state|generator state)[a-z_, ]* at step \d+") as e:
        loop.train_and_evaluate(config, str(tmp_path), devices=ONE_DEVICE)
    bad_step = int(str(e.value).split(" at step ")[1].split(" ")[0])
    gan = train.build(config)
    abstract = jax.eval_shape(lambda k: train.init_state(gan, k, (2,)), jax.random.key(0))
    ck = checkpoint.Checkpointer(str(tmp_path), config)
    assert ck.latest_step() == bad_step - 1
    state = ck.restore(abstract)
    ck.close()
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves((state.critic.params, state.generator.params)))


def test_compiled_calls_end_at_every_checkpoint_sample_and_eval_step():
    c = tiny_config("gan", steps=23, steps_per_call=5, checkpoint_every=7, sample_every=10, eval_every=0)
    assert list(loop.call_ends(0, c)) == [5, 7, 10, 14, 19, 20, 21, 23]
    assert list(loop.call_ends(21, c)) == [23]
    c.eval_every, c.steps_per_call = 4, 100
    assert list(loop.call_ends(0, c)) == [4, 7, 8, 10, 12, 14, 16, 20, 21, 23]


def test_workdir_of_another_config_or_of_a_later_step_is_refused(tmp_path):
    config = tiny_config("gan", steps=2)
    loop.train_and_evaluate(config, str(tmp_path), devices=ONE_DEVICE)
    longer = tiny_config("gan", steps=4)      # more steps: a resumption, allowed
    loop.train_and_evaluate(longer, str(tmp_path), devices=ONE_DEVICE)
    with pytest.raises(checkpoint.ConfigMismatchError, match="holds a checkpoint at step 4, past config.steps = 2"):
        loop.train_and_evaluate(config, str(tmp_path), devices=ONE_DEVICE)   # would label step 4 as step 2
    with open(os.path.join(tmp_path, "eval.json")) as f:
        recorded = json.load(f)
    assert recorded["step"] == 4
    assert recorded["protocol"] == "256 samples from the generator; PacGAN's mode statistics"   # ema_decay = 0
    # The per-mode counts behind the scalars: the same 256 samples, every one counted once.
    high, low = np.array(recorded["high_quality_per_mode"]), np.array(recorded["low_quality_per_mode"])
    assert high.shape == low.shape == (8,) and high.sum() + low.sum() == 256
    assert (high > 0).sum() == recorded["modes"] and high.sum() / 256 == pytest.approx(recorded["high_quality"])
    other = tiny_config("gan", steps=6, **{"loss.name": "hinge"})
    with pytest.raises(workdir.WorkdirError, match="loss.name: the run has 'non_saturating', "
                                                   "this config has 'hinge'"):
        loop.train_and_evaluate(other, str(tmp_path), devices=ONE_DEVICE)


def test_precise_batch_stats_are_the_mean_of_fresh_batches_statistics():
    config = tiny_config("pacgan2", **{"model.generator": dict(name="mlp", hidden=(16, 16), bn_per_slot=True)})
    gan = train.build(config)
    state = train.init_state(gan, jax.random.key(0), (2,))
    key = jax.random.key(3)
    stats = train.precise_batch_stats(gan, state.generator.params, state.generator.batch_stats, key, 3, 16)
    w = state.generator.params["Dense_0"]["kernel"]
    h = [jax.random.normal(k, (16, 2)) @ w for k in jax.random.split(key, 3)]
    slots = [hk[j::2] for hk in h for j in range(2)]   # bn_per_slot with pack 2: each slot's 8 rows alone
    np.testing.assert_allclose(stats["BatchNorm_0"]["mean"], np.mean([s.mean(0) for s in slots], 0), atol=1e-6)
    np.testing.assert_allclose(stats["BatchNorm_0"]["var"], np.mean([s.var(0) for s in slots], 0), rtol=1e-5)
    metz = gan._replace(generator=models.build_generator({"name": "metz"}))
    with pytest.raises(ValueError, match="need an unconditional generator with a bn_momentum field .*got MetzGenerator"):
        train.precise_batch_stats(metz, state.generator.params, state.generator.batch_stats, key, 3, 16)


def test_mixture_evaluation_with_precise_bn_adds_the_metrics_of_recomputed_statistics(tmp_path):
    config = tiny_config("gan", steps=2, **{"eval.precise_bn_batches": 4})
    final = loop.train_and_evaluate(config, str(tmp_path), devices=ONE_DEVICE)
    assert set(reproduce._numbers(final)) == {m + s for m in ("modes", "high_quality", "reverse_kl")
                                              for s in ("", "_precise_bn")}
    with open(os.path.join(tmp_path, "eval.json")) as f:
        assert json.load(f)["protocol"].endswith("*_precise_bn: G's batch statistics recomputed from 4 batches of 16")
    # A generator that puts its samples around the ring's mode (1, 0), spread by its normalised features: how many
    # land within 3 std depends on the batch statistics. Evaluated with running averages equal to the statistics
    # the precise evaluation recomputes, both sets agree; with the initial ones (0, 1), they differ.
    gan = train.build(config)
    state = train.init_state(gan, jax.random.key(config.seed), (2,))
    out = {"kernel": 0.02 * jax.random.normal(jax.random.key(1), (16, 2)), "bias": jnp.array([1.0, 0.0])}
    state = state.replace(generator=state.generator.replace(ema={**state.generator.ema, "Dense_2": out}))
    stats = train.precise_batch_stats(gan, state.generator.ema, state.generator.batch_stats,
                                      jax.random.fold_in(jax.random.key(config.seed), (1 << 30) - 1), 4, 16)
    for batch_stats, same in ((stats, True), (state.generator.batch_stats, False)):
        ev = gan_task.Task(config).evaluate(state.replace(generator=state.generator.replace(batch_stats=batch_stats)))
        assert 0.05 < ev["high_quality_precise_bn"] < 0.95
        assert (ev["high_quality"] == ev["high_quality_precise_bn"]) == same, ev
    with pytest.raises(ValueError, match="config.eval.precise_bn_batches must be an integer >= 0 \\(0: off\\), got -1"):
        config_lib.validate(tiny_config("gan", **{"eval.precise_bn_batches": -1}))


def test_evaluation_during_training_equals_the_end_of_a_shorter_run(tmp_path):
    every = tiny_config("gan", steps=4, eval_every=2)
    final = reproduce._numbers(loop.train_and_evaluate(every, str(tmp_path / "every"), devices=ONE_DEVICE))
    curve = reproduce._curve(str(tmp_path / "every"), tuple(final))
    assert sorted(curve, key=int) == ["2", "4"] and curve["4"] == final
    short = loop.train_and_evaluate(tiny_config("gan", steps=2), str(tmp_path / "plain"), devices=ONE_DEVICE)
    assert curve["2"] == reproduce._numbers(short)
    # Resumed to step 4 without in-training evaluations: the same end, so evaluating left the trajectory alone.
    assert reproduce._numbers(loop.train_and_evaluate(tiny_config("gan", steps=4), str(tmp_path / "plain"),
                                                      devices=ONE_DEVICE)) == final


@pytest.mark.parametrize("flag,message", [
    ("--config.loss.n_critic=0", "config.loss.n_critic must be an integer >= 1, got 0"),
    ("--config.loss.name=minmax", "unknown loss 'minmax'"),
    ("--config.batch_size=99", "is not divisible by config.model.pack"),
])
def test_bad_flags_fail_with_a_clear_message(tmp_path, flag, message):
    rc, out, err = _run(tmp_path, flag, "--config.model.pack=2")
    assert rc != 0
    assert message in err


def test_a_config_named_from_another_directory_is_found_and_its_unknown_variant_named(tmp_path):
    """`python -m gan_jax.launch` (the gan-jax-launch command) outside the checkout: the config by name."""
    p = subprocess.run([sys.executable, "-m", "gan_jax.launch", "--config", "mixture_ring:pacgan9", "--workdir",
                        str(tmp_path / "run")], capture_output=True, text=True, env=dict(_env(), PYTHONPATH=ROOT),
                       cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "error: unknown variant 'pacgan9'; allowed: ['gan', 'pacgan2'" in p.stderr


def test_configs_load_by_name_or_by_path_from_any_directory(tmp_path, monkeypatch):
    from gan_jax.config_files import load_config
    by_path = load_config("experiments/mixture_ring.py:pacgan2", ROOT).to_dict()
    monkeypatch.chdir(tmp_path)  # no experiments/ here: the installed configs answer
    for spec in ("mixture_ring:pacgan2", "mixture_ring.py:pacgan2", "experiments/mixture_ring.py:pacgan2",
                 os.path.join(ROOT, "experiments", "mixture_ring.py:pacgan2")):
        assert load_config(spec).to_dict() == by_path, spec
    # Files of one's own, by path: they import the installed configs; one at a path relative to the working
    # directory comes before the installed config of that path.
    own = ("from experiments.mixtures import mixture_config\n\n\ndef get_config(variant='gan'):\n"
           "    c = mixture_config('ring', variant, paper='mine')\n    c.steps = {steps}\n    return c\n")
    (tmp_path / "mine.py").write_text(own.format(steps=7))
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mixture_ring.py").write_text(own.format(steps=3))
    mine = load_config("mine.py:pacgan2")
    assert mine.steps == 7 and mine.paper == "mine" and mine.model.to_dict() == by_path["model"]
    assert load_config("experiments/mixture_ring.py").steps == 3
    with pytest.raises(ValueError) as err:
        load_config("mixture_rign:gan")
    assert str(err.value).startswith("unknown config 'mixture_rign'; allowed: ['acgan_mnist', ")
    assert "'mixture_ring', " in str(err.value) and "'images'" not in str(err.value)  # images.py: no get_config
    with pytest.raises(ValueError, match=re.escape(f"config file 'experiments/nope.py' not found (from {tmp_path}), "
                                                   "nor an installed config; installed: ['acgan_mnist', ")):
        load_config("experiments/nope.py")
    with pytest.raises(ValueError, match=r"config file .*experiments/images.py defines no get_config\(variant\)"):
        load_config("experiments/images.py", ROOT)


@pytest.mark.slow  # ~30 s on 2 cores; the 1-vs-2-device equalities of every task run in the CI suite
def test_two_processes_equal_one_process_with_two_devices(tmp_path):
    """jax.distributed over loopback: 2 processes x 1 CPU device = 1 process x 2 devices, exactly."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    small = ["--config.steps=12", "--config.checkpoint_every=6", "--config.model.generator.hidden=(32,32)",
             "--config.model.critic.hidden=(32,)"]
    procs = [_launch(tmp_path / "multi", *small, "--coordinator_address", f"127.0.0.1:{port}",
                     "--num_processes", "2", "--process_id", str(i)) for i in range(2)]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "process 0/2: 1 local devices of 2" in outs[0][0] and "final evaluation" in outs[0][0]
    assert "final evaluation" not in outs[1][0]  # only process 0 reports and writes logs

    env = dict(_env(), XLA_FLAGS=subprocess_xla_flags(2))
    p = subprocess.run(RING + ["--workdir", str(tmp_path / "single"), *small], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=240)
    assert p.returncode == 0, p.stderr[-3000:]
    assert _metrics(tmp_path / "multi") == _metrics(tmp_path / "single")


def test_every_config_names_a_registered_task_and_validates():
    """launch.py runs every experiments/ config on the one loop: each names a task whose schema it satisfies."""
    import glob
    from gan_jax.config_files import config_names, load_config
    files = [os.path.basename(p)[:-3] for p in sorted(glob.glob(os.path.join(ROOT, "experiments", "*.py")))]
    assert config_names() == [f for f in files if f not in ("__init__", "images", "mixtures")]
    names = []
    for name in config_names():
        config = load_config(name)
        config_lib.check_fields(config, tasks.schema(config))
        tasks.module(config.task).validate(config, 1)
        names.append(config.task)
    assert set(names) == set(tasks.TASKS), sorted(set(names))
    config = load_config("experiments/mixture_ring.py", ROOT)
    config.task = "diffusion"
    with pytest.raises(ValueError, match=r"unknown config.task 'diffusion'; allowed: \['adda', 'classifier', "
                                         r"'cyclegan', 'gan', 'pix2pix', 'vae'\]"):
        tasks.build(config)


def test_a_mistyped_field_names_the_closest_valid_one():
    config = tiny_config("gan")
    with config.unlocked():
        config.loss.gradient_penlty = 10.0
    with pytest.raises(ValueError, match=r"unknown config field 'loss.gradient_penlty' for task 'gan'; "
                                         r"did you mean 'loss.gradient_penalty'\?"):
        tasks.build(config)
    with pytest.raises(ValueError, match="config.seed must be an integer >= 0, got -1"):
        tasks.build(tiny_config("gan", seed=-1))


def test_every_network_option_is_settable_from_the_command_line():
    from gan_jax.config_files import load_experiment, split_overrides
    rest, overrides = split_overrides(["--config", "x.py", "--config.steps", "3", "--config.loss.name=hinge",
                                       "--workdir=/tmp/w"])
    assert rest == ["--config", "x.py", "--workdir=/tmp/w"] and overrides == ["steps=3", "loss.name=hinge"]
    dcgan = os.path.join(ROOT, "experiments/dcgan_mnist.py")
    config = load_experiment(dcgan, ["model.critic.spectral_norm=True", "steps=5", "optim.critic.learning_rate=1e-3",
                                     "model.generator.widths=(32, 16)", "data.data_dir=/tmp/d"], ROOT)
    assert config.model.critic.spectral_norm is True and config.steps == 5 and config.data.data_dir == "/tmp/d"
    assert config.optim.critic.learning_rate == 1e-3 and tuple(config.model.generator.widths) == (32, 16)
    assert config.model.critic.conv_impl == "auto"   # options the file does not mention are there at their defaults
    acgan = load_experiment(os.path.join(ROOT, "experiments/acgan_mnist.py"), ["model.critic.base.spectral_norm=True"],
                            ROOT)
    assert acgan.model.critic.base.spectral_norm is True
    for bad, message in [("model.critic.spectral_nrm=True", "unknown config field 'model.critic.spectral_nrm'; "
                                                             "did you mean 'model.critic.spectral_norm'?"),
                         ("steps=abc", "config.steps takes int, got 'abc'"),
                         ("steps=1.5", "config.steps takes int, got '1.5'"),
                         ("model.critic.spectral_norm=3", "config.model.critic.spectral_norm takes bool, got '3'"),
                         ("steps", "--config.steps: expected --config.FIELD=VALUE")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            load_experiment(dcgan, [bad], ROOT)
    with pytest.raises(ValueError, match="config file 'experiments/nope.py' not found"):
        load_experiment("experiments/nope.py", [], ROOT)


def test_loop_under_pmap_on_two_devices_logs_what_shard_map_on_one_logs(tmp_path):
    for mode, devices, per_call in (("shard_map", jax.devices()[:1], 1), ("pmap", jax.devices()[:2], 2)):
        loop.train_and_evaluate(tiny_config("gan", parallel=mode, steps=3, steps_per_call=per_call), str(tmp_path / mode),
                                devices=devices)
    for a, b in zip(_metrics(tmp_path / "shard_map"), _metrics(tmp_path / "pmap")):
        assert a.keys() == b.keys() and a["step"] == b["step"]
        np.testing.assert_allclose([a[k] for k in sorted(a)], [b[k] for k in sorted(b)], rtol=1e-5, atol=1e-6)

"""Faults a user meets, each through a real `launch.py` process: the exit code, the length of what it prints
and that the message names the problem; and that nothing of the run is lost.

User errors end with exit code 2 and one line on stderr ("error: ..."), no traceback (`--verbose` shows it).
"""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

from tests.helpers import subprocess_xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = [sys.executable, os.path.join(ROOT, "launch.py")]
RING = os.path.join(ROOT, "experiments/mixture_ring.py")
# The ring with tiny nets: a step costs milliseconds, a launch is mostly imports and compilation.
TINY = ["--config.model.generator.hidden=(16,16)", "--config.model.critic.hidden=(16,)", "--config.batch_size=16",
        "--config.data.num_train=1024", "--config.eval.num_samples=256", "--config.eval.precise_bn_batches=0",
        "--config.sample_every=1000", "--config.log_every=1"]


def _env(devices: int = 1) -> dict:
    return dict(os.environ, XLA_FLAGS=subprocess_xla_flags(devices))


def _launch(workdir, *args, config=RING, popen=False, timeout=240, env=None):
    cmd = LAUNCH + ["--config", str(config), "--workdir", str(workdir), *args]
    if popen:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env=env or _env())
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env or _env(), timeout=timeout)


def _user_error(p: subprocess.CompletedProcess, *fragments: str) -> str:
    """The message of a user error ("error: ..." and the lines it lists), after checking the exit code, the
    absence of a traceback, the length and the fragments."""
    assert p.returncode == 2 and "Traceback" not in p.stderr and p.stderr.count("error: ") == 1, p.stderr[-3000:]
    message = p.stderr[p.stderr.index("error: "):]
    assert len(p.stderr.strip().splitlines()) <= 6, p.stderr   # the message, at most a library warning or two
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def _rows(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _wait_for(proc: subprocess.Popen, text: str) -> None:
    for line in proc.stdout:
        if text in line:
            return
    raise AssertionError(f"{text!r} never printed; stderr: {proc.stderr.read()[-3000:]}")


@pytest.mark.parametrize("args, fragments", [
    (["--config.loss.gradient_penlty=10"], ["unknown config field 'loss.gradient_penlty'",
                                             "did you mean 'loss.gradient_penalty'?"]),
    (["--config.loss.name=minmax"], ["unknown loss 'minmax'"]),
    (["--config.loss.n_critic=0"], ["config.loss.n_critic must be an integer >= 1, got 0"]),
    (["--config.seed=-1"], ["config.seed must be an integer >= 0, got -1"]),
    (["--config.optim.critic.learning_rate=inf"], ["config.optim.critic.learning_rate must be finite, got inf"]),
    (["--config.steps=ten"], ["config.steps takes int, got 'ten'"]),
    (["--config.model.critic.name=resnet"], ["unknown critic 'resnet'"]),
])
def test_a_bad_config_value_is_one_line_naming_it(tmp_path, args, fragments):
    _user_error(_launch(tmp_path / "run", *args), *fragments)
    assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_a_missing_config_file_a_syntax_error_and_an_unknown_variant_are_one_line(tmp_path):
    _user_error(_launch(tmp_path / "run", config=tmp_path / "nope.py"), "config file", "nope.py' not found")
    bad = tmp_path / "bad.py"
    bad.write_text("def get_config(:\n    pass\n")
    _user_error(_launch(tmp_path / "run", config=bad), "config file", "bad.py, line 1")
    _user_error(_launch(tmp_path / "run", config=f"{RING}:pacgan9"), "unknown variant 'pacgan9'")
    p = _launch(tmp_path / "run", "--verbose", config=f"{RING}:pacgan9")
    assert p.returncode != 0 and "Traceback" in p.stderr    # --verbose shows where it came from


def test_a_second_launch_on_a_busy_workdir_exits_at_once_and_leaves_the_first_alone(tmp_path):
    first = _launch(tmp_path, *TINY, "--config.steps=100000", "--config.checkpoint_every=50", popen=True)
    try:
        _wait_for(first, "new run")
        second = _launch(tmp_path, *TINY, "--config.steps=100000", timeout=120)
        _user_error(second, f"workdir {tmp_path} is in use by process {first.pid}")
        _wait_for(first, "checkpoint at step 50")   # still training
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        first.kill()
    rows = _rows(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))   # every step logged once


def test_a_workdir_keeps_its_run_nothing_is_lost_silently(tmp_path):
    from gan_jax import loop, workdir
    from tests.helpers import tiny_config
    one = jax.devices()[:1]
    loop.train_and_evaluate(tiny_config("gan", steps=4, checkpoint_every=2), str(tmp_path), devices=one)
    logged = _rows(tmp_path)
    # Another config into it: refused, naming the field (launch.py: exit 2, the message).
    _user_error(_launch(tmp_path, *TINY, "--config.steps=6", "--config.seed=1"), "holds a run of another config",
                "seed", "--overwrite")
    # checkpoints/ deleted: neither another config nor the same one may start over on top of the logs.
    os.rename(tmp_path / "checkpoints", tmp_path.parent / "moved_checkpoints")
    with pytest.raises(workdir.WorkdirError, match="seed: the run has 0, this config has 1"):
        loop.train_and_evaluate(tiny_config("gan", steps=6, seed=1), str(tmp_path), devices=one)
    with pytest.raises(workdir.WorkdirError, match="logs steps up to 4 but holds no checkpoint"):
        loop.train_and_evaluate(tiny_config("gan", steps=6), str(tmp_path), devices=one)
    assert _rows(tmp_path) == logged
    # --overwrite moves the old files aside and starts afresh.
    loop.train_and_evaluate(tiny_config("gan", steps=2, seed=1), str(tmp_path), devices=one, overwrite=True)
    replaced = [d for d in os.listdir(tmp_path) if d.startswith("replaced-")]
    assert len(replaced) == 1
    with open(tmp_path / replaced[0] / "metrics.jsonl") as f:
        assert [json.loads(line) for line in f] == logged
    assert [r["step"] for r in _rows(tmp_path)][-1] == 2


def test_a_file_where_a_folder_goes_is_refused_before_training(tmp_path):
    tmp_path.joinpath("run").mkdir()
    tmp_path.joinpath("run", "checkpoints").write_text("not a folder")
    _user_error(_launch(tmp_path / "run", *TINY, "--config.steps=2"), "checkpoints is a file")
    assert not os.path.exists(tmp_path / "run" / "metrics.jsonl")


def test_a_half_written_last_metrics_line_is_dropped_and_the_run_resumes(tmp_path, capsys):
    from gan_jax import loop
    from tests.helpers import tiny_config
    one = jax.devices()[:1]
    loop.train_and_evaluate(tiny_config("gan", steps=4, checkpoint_every=2), str(tmp_path), devices=one)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "critic_lo')   # what a kill in the middle of a write leaves
    loop.train_and_evaluate(tiny_config("gan", steps=6, checkpoint_every=2), str(tmp_path), devices=one)
    assert "dropped the half-written last line" in capsys.readouterr().err
    assert [r["step"] for r in _rows(tmp_path) if "critic_loss" in r] == [1, 2, 3, 4, 5, 6]
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "critic_lo\n{"step": 8}\n')   # damage inside the file is not a torn last line
    with pytest.raises(ValueError, match=r"metrics.jsonl: line \d+ is not JSON"):
        loop.train_and_evaluate(tiny_config("gan", steps=8, checkpoint_every=2), str(tmp_path), devices=one)


def test_a_diverging_loss_stops_naming_the_loss_and_the_learning_rates(tmp_path):
    p = _launch(tmp_path, *TINY, "--config.steps=50", "--config.checkpoint_every=1", "--config.max_abs_loss=0.5")
    message = _user_error(p, "diverged at step 1:", "exceeds config.max_abs_loss = 0.5",
                          "config.optim.critic.learning_rate=0.0001")
    assert "critic_loss = 1.39" in message or "generator_loss" in message
    assert not os.path.exists(tmp_path / "checkpoints" / "1")   # the diverged state is not saved


@pytest.mark.slow
def test_preemption_of_one_host_stops_every_host_at_the_same_saved_step(tmp_path):
    """Two processes over jax.distributed on loopback; SIGTERM to process 1 alone: both save one step and exit."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [_launch(tmp_path, *TINY, "--config.steps=100000", "--config.checkpoint_every=1000",
                     "--coordinator_address", f"127.0.0.1:{port}", "--num_processes", "2", "--process_id", str(i),
                     popen=True) for i in range(2)]
    try:
        _wait_for(procs[0], "new run")
        time.sleep(3)
        procs[1].send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=120) for p in procs]
        outs = [p.stdout.read() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert codes == [128 + signal.SIGTERM] * 2, outs
    saved = [int(line.split("at step ")[1].split(";")[0]) for line in outs[0].splitlines() if "saved the checkpoint" in line]
    assert len(saved) == 1 and os.path.isdir(tmp_path / "checkpoints" / str(saved[0]))


def test_a_damaged_latest_checkpoint_resumes_from_the_previous_step_as_a_clean_run_would(tmp_path, capsys):
    from gan_jax import loop
    from tests.helpers import tiny_config
    one = jax.devices()[:1]
    loop.train_and_evaluate(tiny_config("gan", steps=6, checkpoint_every=2), str(tmp_path / "clean"), devices=one)
    loop.train_and_evaluate(tiny_config("gan", steps=4, checkpoint_every=2), str(tmp_path / "run"), devices=one)
    step = tmp_path / "run" / "checkpoints" / "4"
    with open(step / "manifest.json") as f:
        largest = max(json.load(f)["files"].items(), key=lambda item: item[1]["size"])[0]
    with open(step / largest, "r+b") as f:   # 4 KiB of noise in the middle of the largest file
        f.seek(max(0, os.path.getsize(step / largest) // 2 - 2048))
        f.write(os.urandom(4096))
    loop.train_and_evaluate(tiny_config("gan", steps=6, checkpoint_every=2), str(tmp_path / "run"), devices=one)
    err = capsys.readouterr().err
    assert "checkpoint step 4" in err and "moved to checkpoints.damaged/4; falling back to step 2" in err
    assert os.path.isdir(tmp_path / "run" / "checkpoints.damaged" / "4")
    strip = lambda rows: [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]
    assert strip(_rows(tmp_path / "run")) == strip(_rows(tmp_path / "clean"))


def test_which_failures_are_user_errors():
    import errno
    from gan_jax import errors
    full = errors.user_message(OSError(errno.ENOSPC, "No space left on device", "/w/checkpoints"))
    assert full.startswith("the disk is full (/w/checkpoints); the last checkpoint and the logs before it are intact")
    assert errors.user_message(OSError(errno.EROFS, "Read-only file system", "/w")) == \
        "the file system is read-only (/w)"
    assert errors.user_message(FileNotFoundError("missing train-images-idx3-ubyte.gz in /d")) == \
        "missing train-images-idx3-ubyte.gz in /d"
    assert errors.user_message(ValueError("config.steps must be an integer >= 1, got 0")).startswith("config.steps")
    for bug in (KeyError("x"), TypeError("unhashable"), OSError(errno.EIO, "I/O error"), AssertionError()):
        assert errors.user_message(bug) is None   # unexpected: the traceback stays

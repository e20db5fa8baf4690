"""Small configs and states shared by the training-core tests."""
import os

import jax
import numpy as np

from experiments.mixtures import mixture_config


def tiny_config(variant: str = "gan", **overrides):
    """A PacGAN-style mixture config with tiny nets, fast to compile and run on CPU."""
    c = mixture_config("ring", variant, paper="test")
    c.model.generator = dict(name="mlp", hidden=(16, 16), out_dim=2, batch_norm=True)
    c.model.critic = dict(name="mlp", hidden=(16,), pieces=2)
    c.batch_size = 16
    c.data.num_train = 1024
    c.steps = 4
    c.log_every = 1
    c.checkpoint_every = 2
    c.sample_every = 1000
    c.eval.num_samples = 256
    c.eval.precise_bn_batches = 0  # tested on its own (test_launch.py)
    return set_fields(c, overrides)


def host_batches(config, steps: int, start: int = 0):
    """The real-data host batches [n_critic, B, 2] of `steps` steps, as the training loop builds them."""
    from gan_jax.tasks import gan
    batch = gan.Task(config).batches(0, 1)
    return [batch(s) for s in range(start, start + steps)]


def as_numeric(x) -> np.ndarray:
    """A leaf as float64 numpy; PRNG keys as their key data."""
    if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(x, np.float64)


def max_abs_diff(a, b) -> float:
    """The largest absolute difference over the leaves of two pytrees of the same structure."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    return max(float(np.max(np.abs(as_numeric(x) - as_numeric(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def small(config, data_dir: str):
    """An image experiment config shrunk to one tiny step on the fake MNIST of the `data_dir` fixture."""
    config.steps = 1
    config.batch_size = 8
    config.checkpoint_every = config.log_every = config.sample_every = 1
    config.data.data_dir = data_dir
    config.data.num_train = min(config.data.num_train, 1024)  # Stacked MNIST draws that many triples
    config.eval.parzen = False  # needs the full MNIST: tests/test_image_experiments.py::test_goodfellow_parzen_run
    for who in ("generator", "critic"):
        spec = config.model[who]
        for net in (spec, spec.get("base")):
            if net is not None and net["name"] == "dcgan":
                net["widths"] = (16, 8)
            if net is not None and net["name"] == "dcgan_tf":
                net["widths"] = (16, 8, 8, 4) if who == "generator" else (4, 8, 8, 16)
            if net is not None and net["name"] == "goodfellow":
                net["hidden"] = (32, 32)
    return config


def subprocess_xla_flags(devices: int) -> str:
    """XLA_FLAGS for a subprocess with `devices` CPU devices, keeping conftest's optimisation level."""
    opt = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.startswith("--xla_backend_optimization_level")]
    return " ".join([f"--xla_force_host_platform_device_count={devices}", *opt])


LAUNCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "launch.py")


def launch_task(workdir, args: list[str], devices: int = 1):
    """`python launch.py ARGS --workdir WORKDIR` as a subprocess (a Popen, stdout and stderr piped) on `devices`
    CPU devices, stuck collectives aborting within seconds; the JAX compilation cache is shared."""
    import subprocess
    import sys
    stuck = ("--xla_cpu_collective_call_warn_stuck_timeout_seconds=3 "
             "--xla_cpu_collective_call_terminate_timeout_seconds=6")
    env = dict(os.environ, XLA_FLAGS=f"{subprocess_xla_flags(devices)} {stuck}",
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return subprocess.Popen([sys.executable, LAUNCH, *args, "--workdir", str(workdir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=os.path.dirname(LAUNCH))


def launch_task_to_end(workdir, args: list[str], devices: int = 1, timeout: float = 300) -> str:
    """Run `launch_task` to completion; its stdout (AssertionError with stderr's tail if it failed)."""
    proc = launch_task(workdir, args, devices)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def sigkill_after_checkpoint_and_relaunch(workdir, args: list[str], checkpoint_step: int) -> tuple[int, str]:
    """Launch, SIGKILL the run as soon as it reports its checkpoint of `checkpoint_step`, relaunch it to the end;
    (the step of the latest checkpoint the kill left, stdout of the relaunch)."""
    import signal
    proc = launch_task(workdir, args)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if f"checkpoint at step {checkpoint_step}" in line:
            break
    else:
        raise AssertionError(f"no checkpoint at step {checkpoint_step}; stdout: {lines}; "
                             f"stderr: {proc.stderr.read()[-3000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    checkpoints = os.path.join(workdir, "checkpoints")
    killed_at = max(int(d) for d in os.listdir(checkpoints) if d.isdigit())
    return killed_at, launch_task_to_end(workdir, args)


def logged_metrics(workdir) -> list[dict]:
    """The rows of a run's metrics.jsonl without their wall clock, which differs between any two runs."""
    import json
    from gan_jax import writers
    with open(os.path.join(workdir, writers.METRICS_FILE)) as f:
        return [{k: v for k, v in json.loads(line).items() if k != writers.WALL_KEY} for line in f]


def set_fields(config, fields: dict):
    """`config` with each dotted field of `fields` ("model.hidden": 16) set; returns it."""
    for field, value in fields.items():
        *path, last = field.split(".")
        node = config
        for p in path:
            node = node[p]
        node[last] = value
    return config


def config_flags(fields: dict) -> list[str]:
    """`fields` as launch.py flags: ["--config.model.hidden=16", ...]."""
    return [f"--config.{k}={v}" for k, v in fields.items()]


def assert_rows_close(a: list[dict], b: list[dict], rtol: float) -> None:
    """Two runs' logged rows have the same steps and metrics, with values equal to `rtol`."""
    assert [r.keys() for r in a] == [r.keys() for r in b]
    for x, y in zip(a, b):
        np.testing.assert_allclose([x[k] for k in x], [y[k] for k in x], rtol=rtol, err_msg=f"step {x['step']}")

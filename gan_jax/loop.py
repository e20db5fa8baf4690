"""The one training loop: `train_and_evaluate(config, workdir)` runs any task of `gan_jax.tasks`.

It builds the task and its compiled data-parallel step, restores the latest checkpoint of the workdir
(refusing one of another config), trains with checkpoints every `checkpoint_every` steps, at the end and on
SIGTERM/SIGINT, logs metrics (metrics.jsonl, TensorBoard, a progress bar), draws the task's visuals every
`sample_every` steps, evaluates every `eval_every` steps, stops at the first non-finite metric or parameter
without saving it, and ends with eval.json.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import numbers
import os
import signal
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from gan_jax import checkpoint, parallel, state as state_lib, tasks, visualize, writers
from gan_jax.runs import CONFIG_FILE, EVAL_FILE
from gan_jax.data.pipeline import prefetch_in_background

# On 2 cores, more than ~16 multi-device steps queued without waiting deadlock XLA:CPU's collectives;
# waiting on every 8th step keeps well clear of it.
MAX_STEPS_IN_FLIGHT = 8
FINITE = "finite"


class NonFiniteLossError(FloatingPointError):
    """A loss or parameter became NaN or Inf; the last good checkpoint is kept."""


class _StopRequested:
    """SIGTERM / SIGINT set a flag; the loop checkpoints and exits at the next step."""

    def __init__(self):
        self.signum = None

    @contextlib.contextmanager
    def installed(self):
        old = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _handle(self, signum, frame):
        self.signum = signum


def checked_step(train_step: Callable) -> Callable:
    """`train_step` with metrics["finite/<part>"]: whether every float leaf of each top-level part of the new state
    (its networks, pools, ...) is finite."""
    def step(state, batch):
        new, metrics = train_step(state, batch)
        parts = {f.name: getattr(new, f.name) for f in dataclasses.fields(new)} if dataclasses.is_dataclass(new) \
            else {"state": new}
        return new, {**metrics, **{f"{FINITE}/{name}": state_lib.all_finite(part) for name, part in parts.items()}}
    return step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, devices: list | None = None
                       ) -> dict[str, Any]:
    """Train (or resume) the experiment `config` in `workdir` on `devices` (default: all); returns the
    final evaluation."""
    mesh = parallel.make_mesh(devices)
    task = tasks.build(config, num_devices=mesh.size)
    is_chief = jax.process_index() == 0
    os.makedirs(workdir, exist_ok=True)

    batch_fn = task.batches(jax.process_index(), jax.process_count())
    step_fn = parallel.parallelize(checked_step(task.train_step), config.parallel, mesh, batch_axis=task.batch_axis)

    ckpt = checkpoint.Checkpointer(workdir, config)
    ckpt.check_config()
    key = jax.random.key(config.seed)
    example = batch_fn(0)
    init = lambda k: task.init(k, example)
    replicated = NamedSharding(mesh, P())
    state = ckpt.restore(jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                                      jax.eval_shape(init, key)))
    if state is None:
        state = jax.jit(init, out_shardings=replicated)(key)
        _say(f"new run in {workdir}")
    start = int(jax.device_get(state.step))
    if start:
        _say(f"resumed from the checkpoint at step {start} in {workdir}")
    if is_chief:
        with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
            json.dump(json.loads(config.to_json_best_effort()), f, indent=2)

    writer = writers.MetricWriter(workdir, enabled=is_chief, resume_step=start)
    progress = writers.Progress(start, config.steps, enabled=is_chief)
    sync_every = min(config.log_every, MAX_STEPS_IN_FLIGHT) if mesh.size > 1 else config.log_every
    device_state = step_fn.put_state(state)
    del state
    pending: list[tuple[int, dict]] = []
    stop = _StopRequested()
    step = start
    batches = prefetch_in_background(map(batch_fn, range(start, config.steps)), 2)
    try:
        with stop.installed():
            while step < config.steps:
                device_state, metrics = step_fn(device_state, step_fn.put_batch(next(batches)))
                step += 1
                pending.append((step, metrics))
                # Read the flag once: a signal landing between two reads would skip the save yet stop.
                signum = stop.signum
                boundary = step % config.checkpoint_every == 0 or step == config.steps or signum is not None
                if boundary or step % sync_every == 0:
                    _check_and_log(pending, writer, progress, config.log_every)
                    pending = []
                if step % config.sample_every == 0 and is_chief:
                    _draw(task, step_fn.get_state(device_state), workdir, writer, step)
                if config.eval_every and step % config.eval_every == 0 and step < config.steps:
                    writer.write(step, _scalars(task.evaluate(step_fn.get_state(device_state)), "eval/"))
                if boundary:
                    ckpt.save(step, step_fn.get_state(device_state))
                    _say(f"checkpoint at step {step}")
                if signum is not None:
                    ckpt.wait()
                    if ckpt.latest_step() != step:
                        raise RuntimeError(f"the checkpoint of step {step} is missing after the save; "
                                           f"latest is {ckpt.latest_step()}")
                    _say(f"signal {signum}: saved the checkpoint at step {step}; exiting")
                    raise SystemExit(128 + signum)
        final = step_fn.get_state(device_state)
        results = task.evaluate(final)
        if is_chief:
            _draw(task, final, workdir, writer, step)
            with open(os.path.join(workdir, EVAL_FILE), "w") as f:
                json.dump({"step": step, **results}, f, indent=2, default=_json_default)
            writer.write(step, _scalars(results, "eval/"))
        return results
    finally:
        batches.close()
        ckpt.wait()
        ckpt.close()
        progress.close()
        writer.close()


def _say(message: str) -> None:
    """A line on stdout from process 0 (the progress bar is on stderr)."""
    if jax.process_index() == 0:
        print(message, flush=True)


def _scalars(results: dict[str, Any], prefix: str = "") -> dict[str, float]:
    return {prefix + k: float(v) for k, v in results.items()
            if isinstance(v, (numbers.Number, np.number)) and not isinstance(v, bool)}


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.ndarray, np.number, jax.Array)):
        return np.asarray(x).tolist()
    if isinstance(x, (tuple, set)):
        return list(x)
    return str(x)


def _check_and_log(pending: list[tuple[int, dict]], writer: writers.MetricWriter, progress: writers.Progress,
                   log_every: int) -> None:
    """Fetch the pending steps' metrics (this waits for them), stop on a non-finite one, log."""
    fetched = jax.device_get([m for _, m in pending])
    for (step, _), m in zip(pending, fetched):
        m = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in m.items()}
        parts = {k.split("/", 1)[1]: m.pop(k) for k in [k for k in m if k.startswith(FINITE + "/")]}
        bad = sorted(k for k, v in m.items() if not np.isfinite(v)) + [f"{k} state" for k, ok in parts.items() if not ok]
        if bad:
            raise NonFiniteLossError(f"non-finite {', '.join(bad)} at step {step} ({m}); stopped without "
                                     "saving: the last checkpoint is the last good state")
        if step % log_every == 0:
            writer.write(step, m)
        last = m
    progress.update(pending[-1][0], last)


def _draw(task: tasks.Task, state: Any, workdir: str, writer: writers.MetricWriter, step: int) -> None:
    image = task.visuals(state)
    if image is None:
        return
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    visualize.save_png(image, os.path.join(workdir, "samples", f"step_{step:07d}.png"))
    writer.write_image("samples", step, image)

"""The one training loop: `train_and_evaluate(config, workdir)` runs any task of `gan_jax.tasks`.

It builds the task and its compiled data-parallel step (`config.steps_per_call` steps per call), restores the
latest checkpoint of the workdir (refusing one of another config), trains with checkpoints every `checkpoint_every`
steps, at the end and on SIGTERM/SIGINT, logs metrics (metrics.jsonl, TensorBoard, a progress bar), draws the
task's visuals every `sample_every` steps, evaluates every `eval_every` steps, stops at the first non-finite metric
or parameter without saving it, and ends with eval.json.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import numbers
import os
import signal
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

from gan_jax import checkpoint, config as config_lib, parallel, state as state_lib, tasks, visualize, writers
from gan_jax import workdir as workdir_lib
from gan_jax.runs import CONFIG_FILE, EVAL_FILE
from gan_jax.data.pipeline import prefetch_in_background

# On 2 cores, more than ~16 multi-device steps queued without waiting deadlock XLA:CPU's collectives;
# waiting on every 8th step keeps well clear of it.
MAX_STEPS_IN_FLIGHT = 8
FINITE = "finite"


class NonFiniteLossError(FloatingPointError):
    """A loss or parameter became NaN or Inf; the last good checkpoint is kept."""


class DivergedError(FloatingPointError):
    """A loss exceeded config.max_abs_loss; the last good checkpoint is kept."""


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


def scanned_step(train_step: Callable) -> Callable:
    """`train_step` over a stack of batches (leading axis: steps) in one compiled call; the metrics gain the
    same leading axis. A one-step stack skips the scan: XLA:CPU runs small convolutions inside a loop body
    several times slower (a LeNet step: 2.2 ms plain, 9.7 ms in a length-1 scan; 3.3 vs 260 ms unoptimised)."""
    def run(state, batches):
        if jax.tree.leaves(batches)[0].shape[0] == 1:
            new, metrics = train_step(state, jax.tree.map(lambda b: b[0], batches))
            return new, jax.tree.map(lambda m: m[None], metrics)
        return lax.scan(train_step, state, batches)
    return run


def call_ends(start: int, config: ml_collections.ConfigDict) -> Iterator[int]:
    """The step reached by each compiled call from `start`: at most `config.steps_per_call` steps, ending at
    every checkpoint, sample and eval step and at `config.steps`, so no call runs past where the loop acts."""
    periods = [config.checkpoint_every, config.sample_every] + ([config.eval_every] if config.eval_every else [])
    step = start
    while step < config.steps:
        step = min([step + config.steps_per_call, config.steps] + [(step // p + 1) * p for p in periods])
        yield step


def stacked_batches(batch_fn: Callable[[int], dict], start: int, config: ml_collections.ConfigDict
                    ) -> Iterator[dict[str, np.ndarray]]:
    """The host batches of each compiled call from `start`, stacked on a new leading axis."""
    first = start
    for end in call_ends(start, config):
        steps = [checked_batch(s, batch_fn(s)) for s in range(first, end)]
        yield {name: np.stack([b[name] for b in steps]) for name in steps[0]}
        first = end


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, devices: list | None = None,
                       overwrite: bool = False) -> dict[str, Any]:
    """Train (or resume) the experiment `config` in `workdir` on `devices` (default: all); returns the
    final evaluation. `overwrite`: move another run's files in `workdir` aside instead of refusing them."""
    mesh = parallel.make_mesh(devices)
    task = tasks.build(config, num_devices=mesh.size)
    is_chief = jax.process_index() == 0
    with contextlib.ExitStack() as stack:
        if is_chief:
            os.makedirs(workdir, exist_ok=True)
            stack.enter_context(workdir_lib.Lock(workdir))
            moved = workdir_lib.move_aside(workdir) if overwrite else None
            if moved:
                _say(f"moved the workdir's earlier files to {moved}")
            workdir_lib.check_writable(workdir)
            workdir_lib.claim(workdir, config)
        return _train(config, task, mesh, workdir)


def _train(config: ml_collections.ConfigDict, task: tasks.Task, mesh, workdir: str) -> dict[str, Any]:
    is_chief = jax.process_index() == 0
    batch_fn = task.batches(jax.process_index(), jax.process_count())
    step_fn = parallel.parallelize(scanned_step(checked_step(task.train_step)), config.parallel, mesh,
                                   batch_axis=task.batch_axis + 1)

    ckpt = checkpoint.Checkpointer(workdir, config)
    ckpt.check_config()
    key = jax.random.key(config.seed)
    example = checked_batch(0, batch_fn(0))
    init = lambda k: task.init(k, example)
    replicated = NamedSharding(mesh, P())
    state = ckpt.restore(jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated),
                                      jax.eval_shape(init, key)))
    if state is None:
        if is_chief:
            _refuse_unrecoverable_logs(workdir)
        state = jax.jit(init, out_shardings=replicated)(key)
        _say(f"new run in {workdir}")
    start = int(jax.device_get(state.step))
    if start:
        _say(f"resumed from the checkpoint at step {start} in {workdir}")
    if is_chief:
        workdir_lib.write_json(os.path.join(workdir, CONFIG_FILE), json.loads(config.to_json_best_effort()), indent=2)

    writer = writers.MetricWriter(workdir, enabled=is_chief, resume_step=start)
    progress = writers.Progress(start, config.steps, enabled=is_chief)
    sync_every = min(config.log_every, MAX_STEPS_IN_FLIGHT) if mesh.size > 1 else config.log_every
    guard = Guard(config)
    device_state = step_fn.put_state(state)
    del state
    pending: list[tuple[int, int, dict]] = []
    stop = _StopRequested()
    step = start
    batches = prefetch_in_background(stacked_batches(batch_fn, start, config), 2)
    try:
        with stop.installed():
            for end in call_ends(start, config):
                device_state, metrics = step_fn(device_state, step_fn.put_batch(next(batches)))
                pending.append((step, end, metrics))
                sync = end // sync_every > step // sync_every
                step = end
                # Read the flag once (a signal landing between two reads would skip the save yet stop); with
                # several processes, stop only where all have agreed, at a step every process reaches.
                signum = agree_on_stop(stop.signum, sync)
                boundary = step % config.checkpoint_every == 0 or step == config.steps or signum is not None
                if boundary or sync:
                    _check_and_log(pending, writer, progress, config.log_every, guard)
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
            workdir_lib.write_json(os.path.join(workdir, EVAL_FILE), {"step": step, **results}, indent=2,
                                   default=_json_default)
            writer.write(step, _scalars(results, "eval/"))
        return results
    finally:
        batches.close()
        ckpt.wait()
        ckpt.close()
        progress.close()
        writer.close()


def agree_on_stop(signum: int | None, sync_point: bool) -> int | None:
    """The signal to stop on: this process's own with one process; with several, the first signal any process
    got, decided only at sync points (every process reaches the same ones), so all save the same step and exit."""
    if jax.process_count() == 1:
        return signum
    if not sync_point:
        return None
    from jax.experimental import multihost_utils
    signals = np.asarray(multihost_utils.process_allgather(np.int32(signum or 0)))
    return int(signals.max()) or None


def checked_batch(step: int, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`batch`, refused when a floating-point array holds NaN or Inf (bad data must not reach the step)."""
    for name, value in batch.items():
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"the training batch of step {step} holds NaN or Inf in {name!r}: check the data files")
    return batch


def _refuse_unrecoverable_logs(workdir: str) -> None:
    """A new run must not overwrite the logs of steps it has no checkpoint for (a deleted checkpoints/ folder)."""
    path = os.path.join(workdir, writers.METRICS_FILE)
    steps = [row["step"] for row in writers.read_rows(path)] if os.path.exists(path) else []
    if steps:
        raise workdir_lib.WorkdirError(
            f"{workdir} logs steps up to {max(steps)} but holds no checkpoint to resume them from; start fresh with "
            "another --workdir, or --overwrite to move the old files aside")


class Guard:
    """Stops a diverged run: a loss whose magnitude exceeds `config.max_abs_loss`, named with the learning rates."""

    def __init__(self, config: ml_collections.ConfigDict):
        self.bound = config.max_abs_loss
        rates = {k: v for k, v in config_lib.flatten(config).items() if k.endswith("learning_rate")}
        for k, v in config_lib.flatten(config).items():   # optimiser specs are free-form dicts
            if isinstance(v, dict) and "learning_rate" in v:
                rates[f"{k}.learning_rate"] = v["learning_rate"]
        self.rates = ", ".join(f"config.{k}={v:g}" for k, v in sorted(rates.items())) or "none configured"

    def check(self, step: int, metrics: dict[str, float]) -> None:
        over = {k: v for k, v in metrics.items() if "loss" in k and abs(v) > self.bound}
        if over:
            names = ", ".join(f"{k} = {v:.3g}" for k, v in sorted(over.items()))
            raise DivergedError(f"diverged at step {step}: {names} exceeds config.max_abs_loss = {self.bound:g} "
                                f"(learning rates: {self.rates}); stopped without saving: the last checkpoint is "
                                "the last good state")


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


def _check_and_log(pending: list[tuple[int, int, dict]], writer: writers.MetricWriter, progress: writers.Progress,
                   log_every: int, guard: Guard) -> None:
    """Fetch the pending calls' metrics (this waits for them), stop on a non-finite one, log each step's."""
    fetched = jax.device_get([m for _, _, m in pending])
    for (first, end, _), stacked in zip(pending, fetched):
        # [steps] per metric, or [local devices, steps] under pmap: every device holds the same values.
        stacked = {k: np.asarray(v).reshape(-1, end - first)[0] for k, v in stacked.items()}
        for i, step in enumerate(range(first + 1, end + 1)):
            m = {k: float(v[i]) for k, v in stacked.items()}
            parts = {k.split("/", 1)[1]: m.pop(k) for k in [k for k in m if k.startswith(FINITE + "/")]}
            bad = sorted(k for k, v in m.items() if not np.isfinite(v)) + [f"{k} state" for k, ok in parts.items()
                                                                           if not ok]
            if bad:
                raise NonFiniteLossError(f"non-finite {', '.join(bad)} at step {step} ({m}); stopped without "
                                         "saving: the last checkpoint is the last good state")
            guard.check(step, m)
            if step % log_every == 0:
                writer.write(step, m)
    progress.update(pending[-1][1], m)


def _draw(task: tasks.Task, state: Any, workdir: str, writer: writers.MetricWriter, step: int) -> None:
    image = task.visuals(state)
    if image is None:
        return
    os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
    visualize.save_png(image, os.path.join(workdir, "samples", f"step_{step:07d}.png"))
    writer.write_image("samples", step, image)

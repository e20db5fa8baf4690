"""Run logs: TensorBoard event files, a JSON-lines metrics file and a terminal progress bar.

Only process 0 writes; the others get a writer that does nothing.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Mapping

import numpy as np

METRICS_FILE = "metrics.jsonl"
WALL_KEY = "wall_s"


class MetricWriter:
    """Writes scalars to `workdir/metrics.jsonl` and TensorBoard events under `workdir/tensorboard`.

    Each JSON row also holds `wall_s`: the wall seconds this run has trained to reach it, summed over its resumed legs
    (a resumed writer continues from the last row it keeps, so work lost to a crash counts once, and the time the
    run was down not at all). A run resumed from rows that lack it (older code) writes none: its total is unknown.
    """

    def __init__(self, workdir: str, *, enabled: bool = True, resume_step: int = 0):
        self.enabled = enabled
        self._path = os.path.join(workdir, METRICS_FILE)
        self._tb = None
        self._offset: float | None = 0.0
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        self._offset = _truncate_after(self._path, resume_step)
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)
        self._t0 = time.monotonic()

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in scalars.items()}
        wall = {} if self._offset is None else {WALL_KEY: self._offset + time.monotonic() - self._t0}
        with open(self._path, "a") as f:   # one write per row: a kill can tear the last row only
            f.write(json.dumps({"step": step, **values, **wall}) + "\n")
        for k, v in values.items():
            self._tb.add_scalar(k, v, step)

    def write_image(self, tag: str, step: int, image: np.ndarray) -> None:
        """An HWC uint8 image to TensorBoard."""
        if self.enabled:
            self._tb.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_rows(path: str) -> list[dict]:
    """The rows of a metrics.jsonl. A line a kill left half-written (the last one) is dropped with a note on
    stderr; an unreadable line elsewhere is a damaged file and raises ValueError naming it."""
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1 or line.endswith("\n"):
                raise ValueError(f"{path}: line {i + 1} is not JSON ({line[:60]!r}...)") from None
            print(f"note: dropped the half-written last line of {path}", file=sys.stderr)
    return rows


def _truncate_after(path: str, step: int) -> float | None:
    """Drop lines logged after `step` by a run that died before its next checkpoint (and a half-written last
    line); the `wall_s` of the last line kept (0 for a new run, None if that line has none)."""
    if not os.path.exists(path):
        return 0.0
    kept = [row for row in read_rows(path) if row["step"] <= step]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in kept)
    os.replace(tmp, path)
    return kept[-1].get(WALL_KEY) if kept else 0.0


class Progress:
    """A tqdm progress bar with steps/s and ETA (process 0 only)."""

    def __init__(self, start: int, total: int, enabled: bool = True):
        self._bar = None
        if enabled:
            from tqdm import tqdm
            self._bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, smoothing=0.1)
        self._last = start
        self._t0 = time.perf_counter()

    def update(self, step: int, postfix: Mapping[str, float] | None = None) -> None:
        if self._bar is None:
            return
        self._bar.update(step - self._last)
        self._last = step
        if postfix:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

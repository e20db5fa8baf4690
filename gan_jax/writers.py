"""Run logs: TensorBoard event files, a JSON-lines metrics file and a terminal progress bar.

Only process 0 writes; the others get a writer that does nothing.
"""
from __future__ import annotations

import json
import os
import time
from typing import Mapping

import numpy as np

METRICS_FILE = "metrics.jsonl"


class MetricWriter:
    """Writes scalars to `workdir/metrics.jsonl` and TensorBoard events under `workdir/tensorboard`."""

    def __init__(self, workdir: str, *, enabled: bool = True, resume_step: int = 0):
        self.enabled = enabled
        self._path = os.path.join(workdir, METRICS_FILE)
        self._tb = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        _truncate_after(self._path, resume_step)
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1)

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in scalars.items()}
        with open(self._path, "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        for k, v in values.items():
            self._tb.add_scalar(k, v, step)

    def write_image(self, tag: str, step: int, image: np.ndarray) -> None:
        """An HWC uint8 image to TensorBoard."""
        if self.enabled:
            self._tb.add_image(tag, image, step, dataformats="HWC")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _truncate_after(path: str, step: int) -> None:
    """Drop lines logged after `step` by a run that died before its next checkpoint."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
    with open(path, "w") as f:
        f.writelines(kept)


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

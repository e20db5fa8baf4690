"""Reading a run's workdir: its config, its final evaluation and its latest checkpointed state.

A workdir written by the training loop (`gan_jax.loop`) holds `config.json` (written at each launch),
`checkpoints/` and, once the run has finished, `eval.json`.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections

from gan_jax import checkpoint, tasks

CONFIG_FILE = "config.json"  # the run's config, written at each launch
EVAL_FILE = "eval.json"      # the final evaluation, written at the end of the run


def restore(workdir: str, task: str, example_batch: dict[str, Any]) -> tuple[ml_collections.ConfigDict, Any]:
    """(config, latest checkpointed state) of the run of `task` in `workdir`, from its config.json and
    checkpoints; `example_batch` gives the shapes `Task.init` needs (no data is read)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {CONFIG_FILE} in {workdir}: not the workdir of a run of launch.py")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    if config.task != task:
        raise ValueError(f"{workdir} holds a run of task {config.task!r}, not {task!r}")
    built = tasks.build(config)
    ckpt = checkpoint.Checkpointer(workdir, config)
    try:
        ckpt.check_config()
        state = ckpt.restore(jax.eval_shape(lambda k: built.init(k, example_batch), jax.random.key(config.seed)))
    finally:
        ckpt.close()
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {workdir}")
    return config, state

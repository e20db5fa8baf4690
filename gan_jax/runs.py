"""Reading a run's workdir: its config, its final evaluation and its latest checkpointed state.

A workdir written by the training loop (`gan_jax.loop`) holds `config.json` (written at each launch),
`checkpoints/` and, once the run has finished, `eval.json`.
"""
from __future__ import annotations

import errno
import json
import os
from typing import Any

import jax
import ml_collections

from gan_jax import checkpoint, config as config_lib, tasks

CONFIG_FILE = "config.json"  # the run's config, written at each launch
EVAL_FILE = "eval.json"      # the final evaluation, written at the end of the run


def read_config(workdir: str) -> ml_collections.ConfigDict:
    """The config.json of the run in `workdir`."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, f"no {CONFIG_FILE}: {workdir} is not the workdir of a run of launch.py",
                                path)
    with open(path) as f:
        return _with_defaults(ml_collections.ConfigDict(_tuples(json.load(f))))


def _with_defaults(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config` with its task schema's default for every field it lacks: a run saved before a field existed
    reads as it was trained, since a new field's default keeps the old behaviour."""
    have = config_lib.flatten(config)
    with config.unlocked():
        for key, value in config_lib.flatten(tasks.schema(config)).items():
            if key in have:
                continue
            *parents, leaf = key.split(".")
            node = config
            for name in parents:
                if name not in node:
                    node[name] = ml_collections.ConfigDict()
                node = node[name]
            node[leaf] = value
    return config


def _tuples(value: Any) -> Any:
    """JSON's lists as the tuples the config files write (networks built from them must hash, for `jax.jit`)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def restore_state(workdir: str, config: ml_collections.ConfigDict, abstract_state: Any) -> Any:
    """The newest usable checkpointed state of `workdir`, laid out like `abstract_state`."""
    directory = os.path.join(workdir, checkpoint.CHECKPOINT_DIR)
    if not os.path.isdir(directory):   # checked first: orbax's CheckpointManager would create the folder
        raise FileNotFoundError(errno.ENOENT, f"no checkpoint in {workdir}", directory)
    ckpt = checkpoint.Checkpointer(workdir, config, read_only=True)
    try:
        state = ckpt.restore(abstract_state)
    finally:
        ckpt.close()
    if state is None:
        raise FileNotFoundError(errno.ENOENT, f"no checkpoint in {workdir}", directory)
    return state


def restore(workdir: str, task: str, example_batch: dict[str, Any]) -> tuple[ml_collections.ConfigDict, Any]:
    """(config, newest usable checkpointed state) of the run of `task` in `workdir`; `example_batch` gives the
    shapes `Task.init` needs (no data is read). Nothing is written."""
    config = read_config(workdir)
    if config.task != task:
        raise ValueError(f"{workdir} holds a run of task {config.task!r}, not {task!r}")
    built = tasks.build(config)
    abstract = jax.eval_shape(lambda k: built.init(k, example_batch), jax.random.key(config.seed))
    return config, restore_state(workdir, config, abstract)

"""The registry of tasks: `config.task` names the module under gan_jax.tasks that trains it.

`build(config, num_devices)` checks the config against its task's schema (unknown fields name the closest
valid one), validates its values and returns the task object the loop runs.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import ml_collections

from gan_jax import config as config_lib
from gan_jax.tasks.base import Task

TASKS = {name: f"gan_jax.tasks.{name}" for name in ("gan", "pix2pix", "cyclegan", "vae", "adda", "classifier")}

__all__ = ["TASKS", "Task", "build", "module", "schema"]


def module(name: str) -> ModuleType:
    """The module of task `name`."""
    if name not in TASKS:
        raise ValueError(f"unknown config.task {name!r}; allowed: {sorted(TASKS)}")
    return importlib.import_module(TASKS[name])


def schema(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The schema (every field, with defaults) of `config`'s task."""
    return module(config.get("task", "gan")).schema()


def build(config: ml_collections.ConfigDict, num_devices: int = 1) -> Task:
    """The validated task of `config` for a run on `num_devices` devices."""
    m = module(config.get("task", "gan"))
    config_lib.check_fields(config, m.schema())
    m.validate(config, num_devices)
    return m.Task(config)

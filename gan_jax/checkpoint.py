"""Checkpoints with orbax: the full train state plus the config it was trained with.

A checkpoint is a Composite of the `GANState` (params, batch statistics, optimizer states, EMA,
PRNG key and step, which is also the data position) and the flattened config as JSON. Orbax
writes each step to a temporary directory and renames it when complete, so a crash or kill
during a save leaves the previous checkpoint intact. Saves are synchronous.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from gan_jax import config as config_lib


class ConfigMismatchError(ValueError):
    """The workdir holds a checkpoint of a different experiment, or of a step past config.steps."""


def _comparable(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return json.loads(json.dumps(config_lib.flatten(config), default=str))


class Checkpointer:
    """Saves every few steps, keeps the last `keep`, restores the latest."""

    def __init__(self, workdir: str, config: ml_collections.ConfigDict):
        self._config = _comparable(config)
        self._manager = ocp.CheckpointManager(
            os.path.join(os.path.abspath(workdir), "checkpoints"),
            # Synchronous saves: states here are small, a blocking save costs ~0.1-0.4 s per checkpoint, and a
            # save that returns is on disk before the loop exits on a signal.
            options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True,
                                                 enable_async_checkpointing=False))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def check_config(self) -> None:
        """Refuse to resume a checkpoint trained with another config, naming the fields that differ, or one
        past config.steps (evaluating it would label its numbers with config.steps)."""
        step = self.latest_step()
        if step is None:
            return
        if step > self._config["steps"]:
            raise ConfigMismatchError(
                f"{self._manager.directory} holds a checkpoint at step {step}, past config.steps = "
                f"{self._config['steps']}. Use config.steps >= {step}, or a copy of the workdir without the "
                f"checkpoints after step {self._config['steps']} to evaluate that step.")
        saved = self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
        diff = config_lib.differing_fields(saved, self._config)
        if diff:
            raise ConfigMismatchError(
                f"{self._manager.directory} holds a checkpoint (step {step}) of a different config:\n  "
                + "\n  ".join(diff) + "\nUse another --workdir, or the checkpoint's config.")

    def save(self, step: int, state) -> None:
        """Save `state` as step `step` (blocking)."""
        if not self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(self._config)), force=True):
            raise RuntimeError(f"orbax declined to save step {step} in {self._manager.directory}")

    def restore(self, abstract_state):
        """The latest state, laid out like `abstract_state` (arrays or ShapeDtypeStructs with shardings)."""
        step = self.latest_step()
        if step is None:
            return None
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        return self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))["state"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

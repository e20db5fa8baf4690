"""Checkpoints with orbax: the full train state plus the config it was trained with, verified before use.

A checkpoint is a Composite of the `GANState` (params, batch statistics, optimizer states, EMA,
PRNG key and step, which is also the data position) and the flattened config as JSON. Saves are synchronous.

What can go wrong, and what happens:

* A kill or a full disk during a save: orbax writes each step into `<step>.orbax-checkpoint-tmp…` and renames it
  when complete, so the previous steps stay intact and the unfinished folder is never read as a step. The first
  save of a later run removes such folders (a Checkpointer that only reads, as `gan_jax.runs` does, may look at a
  run still training and must not delete its save in progress). A save that fails because the disk is full
  raises an OSError with errno ENOSPC or EDQUOT, which `gan_jax.errors` reports in one line.
* Damaged files (a flipped block, a truncated or deleted file): orbax checks none of the array data (only zarr3
  shard indices carry a CRC32C; the OCDBT layout used here has none, and a flipped block restores silently), so
  after each save `checkpoints/<step>/manifest.json` records the size and SHA-256 of every file of the step.
  Before a step is read, its files are compared with its manifest; a step that differs, or that orbax fails to
  read, is moved to `<workdir>/checkpoints.damaged/<step>` (never deleted), one line on stderr names it and what
  is wrong, and the next newest step is used. When no step is usable, nothing is moved and a ValueError names
  the damaged steps: the user decides.
* A step without a manifest (saved before manifests existed, or whose manifest could not be written because the
  disk filled up right after orbax committed the step) is complete by orbax's own commit; it is read without
  verification, and falls back like a damaged one when orbax cannot read it.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import sys
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from gan_jax import config as config_lib

MANIFEST = "manifest.json"
DAMAGED_DIR = "checkpoints.damaged"   # beside checkpoints/, which the CheckpointManager scans
MIN_KEEP = 2                          # the latest step and one to fall back to
# The suffix of orbax's temporary folders (orbax.checkpoint._src.path.atomicity_types.TMP_DIR_SUFFIX).
TMP_SUFFIX = ".orbax-checkpoint-tmp"
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# TensorStore reports an OS error inside its message, e.g. "No space left on device [os_error_code='28']".
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


CHECKPOINT_DIR = "checkpoints"  # a workdir's folder of saved steps


class ConfigMismatchError(ValueError):
    """The workdir holds a checkpoint of a different experiment, or of a step past config.steps."""


def _comparable(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return json.loads(json.dumps(config_lib.flatten(config), default=str))


class Checkpointer:
    """Saves every few steps, keeps the last `max(config.keep_checkpoints, 2)`, restores the newest usable one.

    At least two steps are kept whatever `keep_checkpoints` says: with a single one, a damaged latest step would
    leave nothing to fall back to. `read_only`: a reader (evaluation, sampling) that writes nothing: it skips a
    damaged step with a note instead of moving it aside, and never creates the checkpoints folder.
    """

    def __init__(self, workdir: str, config: ml_collections.ConfigDict, read_only: bool = False):
        self._workdir = os.path.abspath(workdir)
        self._read_only = read_only
        self._directory = os.path.join(self._workdir, CHECKPOINT_DIR)
        self._config = _comparable(config)
        self._verified: set[int] = set()   # steps whose files matched their manifest (hashing is not free)
        self._unfinished_removed = False
        self._manager = ocp.CheckpointManager(
            self._directory,
            # Synchronous saves: states here are small, a blocking save costs ~0.1-0.4 s per checkpoint, and a
            # save that returns is on disk before the loop exits on a signal.
            options=ocp.CheckpointManagerOptions(max_to_keep=max(config.keep_checkpoints, MIN_KEEP),
                                                 create=not read_only, read_only=read_only,
                                                 enable_async_checkpointing=False))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def check_config(self) -> None:
        """Refuse to resume a checkpoint trained with another config, naming the fields that differ, or one
        past config.steps (evaluating it would label its numbers with config.steps). Reads the newest usable
        step, setting damaged ones aside."""
        found = self._newest_usable(
            lambda step: self._manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"])
        if found is not None:
            self._check(*found)

    def save(self, step: int, state: Any) -> None:
        """Save `state` as step `step` (blocking), then its manifest. A full disk raises an OSError with errno
        ENOSPC or EDQUOT; the steps saved before stay intact."""
        if not self._unfinished_removed and jax.process_index() == 0:
            _remove_unfinished_saves(self._directory)
        self._unfinished_removed = True
        self._verified.discard(step)
        try:
            saved = self._manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), config=ocp.args.JsonSave(self._config)), force=True)
        except Exception as e:   # orbax raises TensorStore's write errors as ValueError or bare Exception
            full = _disk_full(e, self._directory)
            if full is None or full is e:
                raise
            raise full from e
        if not saved:
            raise RuntimeError(f"orbax declined to save step {step} in {self._directory}")
        if jax.process_index() == 0:
            _write_manifest(self._step_dir(step))

    def restore(self, abstract_state: Any) -> Any:
        """The newest usable state, laid out like `abstract_state` (arrays or ShapeDtypeStructs with shardings);
        None when the workdir holds no checkpoint. Damaged steps are set aside (see the module docstring)."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        found = self._newest_usable(lambda step: self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), config=ocp.args.JsonRestore())))
        if found is None:
            return None
        step, restored = found
        self._check(step, restored["config"])
        return restored["state"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()

    def _check(self, step: int, saved: dict[str, Any]) -> None:
        if step > self._config["steps"]:
            raise ConfigMismatchError(
                f"{self._directory} holds a checkpoint at step {step}, past config.steps = "
                f"{self._config['steps']}. Use config.steps >= {step}, or a copy of the workdir without the "
                f"checkpoints after step {self._config['steps']} to evaluate that step.")
        diff = config_lib.differing_fields(saved, self._config)
        if diff:
            raise ConfigMismatchError(
                f"{self._directory} holds a checkpoint (step {step}) of a different config:\n  "
                + "\n  ".join(diff) + "\nUse another --workdir, or the checkpoint's config.")

    def _step_dir(self, step: int) -> str:
        return os.path.join(self._directory, str(step))

    def _relative(self, path: str) -> str:
        return os.path.relpath(path, self._workdir)

    def _newest_usable(self, read: Callable[[int], Any]) -> tuple[int, Any] | None:
        """(step, what `read` returned) for the newest step whose files match its manifest and that `read`
        reads; None without steps. Newer steps that fail are set aside; when all fail, a ValueError names them
        and nothing is moved. With several processes, a step is used only where every process could use it."""
        failed: list[tuple[int, str]] = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            problem = self._manifest_problem(step)
            if _on_every_process(problem is None):
                try:
                    value = read(step)
                except Exception as e:   # orbax reports unreadable data as bare Exception, ValueError, KeyError...
                    problem = (f"its files match {MANIFEST} but orbax cannot restore it: {_first_line(e)}"
                               if step in self._verified else f"orbax cannot read it: {_first_line(e)}")
                if _on_every_process(problem is None):
                    if self._read_only:
                        for bad, why in failed:
                            print(f"checkpoint step {bad} in {self._workdir} is damaged ({why}); reading step {step}",
                                  file=sys.stderr, flush=True)
                    else:
                        self._set_aside(failed, step)
                    return step, value
            failed.append((step, problem or "unusable on another process"))
        if failed:
            raise ValueError(
                f"{self._workdir} holds no usable checkpoint: "
                + "; ".join(f"step {step} ({problem})" for step, problem in failed)
                + ". Nothing was moved: repair or restore them, or start over with another --workdir (or "
                "--overwrite, which moves all of the workdir's files aside)")
        return None

    def _manifest_problem(self, step: int) -> str | None:
        """What differs between the files of `step` and its manifest; None when they match or it has none."""
        if step in self._verified:
            return None
        folder = self._step_dir(step)
        path = os.path.join(folder, MANIFEST)
        try:
            with open(path) as f:
                files = json.load(f)["files"]
            expected = {name: (int(entry["size"]), str(entry["sha256"])) for name, entry in files.items()}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            return f"{self._relative(path)}: unreadable ({_first_line(e)})"
        for name, (size, digest) in sorted(expected.items()):
            file = os.path.join(folder, name)
            try:
                actual = os.path.getsize(file)
                if actual != size:
                    return f"{self._relative(file)}: {actual} bytes, {size} expected"
                if _sha256(file) != digest:
                    return f"{self._relative(file)}: SHA-256 mismatch"
            except FileNotFoundError:
                return f"{self._relative(file)}: missing"
        self._verified.add(step)
        return None

    def _set_aside(self, failed: list[tuple[int, str]], usable: int) -> None:
        """Move the `failed` steps (newer than `usable`) to checkpoints.damaged/ on process 0, one stderr line
        each, and make the manager forget them."""
        if not failed:
            return
        if jax.process_index() == 0:
            os.makedirs(os.path.join(self._workdir, DAMAGED_DIR), exist_ok=True)
            for step, problem in failed:
                target = _unused(os.path.join(self._workdir, DAMAGED_DIR, str(step)))
                os.rename(self._step_dir(step), target)
                print(f"checkpoint step {step} in {self._workdir} is damaged ({problem}); moved to "
                      f"{self._relative(target)}; falling back to step {usable}", file=sys.stderr, flush=True)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices("gan_jax.checkpoint: damaged steps set aside")
        self._manager.reload()


def _on_every_process(ok: bool) -> bool:
    """Whether `ok` holds on every process (each decides from its own reads; all must pick the same step)."""
    if jax.process_count() == 1:
        return ok
    from jax.experimental import multihost_utils
    return bool(np.all(multihost_utils.process_allgather(np.int32(ok))))


def _first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of the innermost cause of `e`, the most specific (orbax wraps TensorStore's errors)."""
    while e.__cause__ is not None:
        e = e.__cause__
    text = str(e).strip().splitlines()
    line = f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
    return line if len(line) <= limit else line[:limit - 1] + "…"


def _unused(path: str) -> str:
    """`path`, or `path-2`, `path-3`, ... when a step of that number was set aside before."""
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = f"{path}-{n}"
    return candidate


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _write_manifest(folder: str) -> None:
    """Record the size and SHA-256 of every file under the step folder `folder`, written atomically (a temporary
    file, fsync, rename, fsync of the folder): a step has its whole manifest or none."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if relative not in (MANIFEST, MANIFEST + ".tmp"):
                files[relative] = {"size": os.path.getsize(path), "sha256": _sha256(path)}
    path = os.path.join(folder, MANIFEST)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump({"files": dict(sorted(files.items()))}, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        # A full disk: the step stays without a manifest, complete by orbax's commit (see the module docstring).
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_unfinished_saves(directory: str) -> None:
    """Delete orbax's temporary step folders: orbax renames a step's folder only once the save is complete, so
    one still carrying the temporary suffix is incomplete by construction (its save was killed or hit a full
    disk) and would only hold disk space."""
    if not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        if TMP_SUFFIX in name:
            shutil.rmtree(os.path.join(directory, name))


def _disk_full(exc: BaseException, directory: str) -> OSError | None:
    """The OSError (errno ENOSPC or EDQUOT) behind a failed save, found along the exception's chain: an OSError
    itself, or TensorStore's error message with its OS error code; None for any other failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL_ERRNOS:
            return current if current is exc else OSError(current.errno, current.strerror,
                                                           current.filename or directory)
        match = _OS_ERROR_CODE.search(str(current))
        if match and int(match.group(1)) in DISK_FULL_ERRNOS:
            code = int(match.group(1))
            return OSError(code, os.strerror(code), directory)
        current = current.__cause__ or current.__context__
    return None

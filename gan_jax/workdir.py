"""A run's workdir: an exclusive lock, an identity, and writable paths checked before the first step.

* `Lock`: an OS lock (`fcntl.flock`) on `<workdir>/.lock`, which the kernel releases when the process dies,
  so a killed run never leaves a stale lock; a second process gets `WorkdirBusy` naming the holder's PID.
* `claim`: `<workdir>/run.json` records the run at its first start (its config's hash and comparable fields,
  the code version, the creation time). A relaunch with a config that differs in a field that changes the
  trajectory, or into a workdir holding another run's files, is refused naming the fields; `move_aside`
  (launch.py's --overwrite) moves the old files into `<workdir>/replaced-<time>/` (nothing is deleted).
* `check_writable`: every folder the loop writes exists as a folder and accepts a file.
"""
from __future__ import annotations

import datetime
import errno
import fcntl
import hashlib
import json
import os
import subprocess
from typing import Any

import ml_collections

from gan_jax import config as config_lib

LOCK_FILE = ".lock"
IDENTITY_FILE = "run.json"
# What the loop writes; a workdir holding any of them without run.json holds some other run's files.
RUN_FILES = ("checkpoints", "metrics.jsonl", "tensorboard", "samples", "config.json", "eval.json")
WRITTEN_FOLDERS = ("checkpoints", "tensorboard", "samples")


class WorkdirError(ValueError):
    """The workdir cannot take this run (busy, another run's, not writable); the message says what to do."""


class WorkdirBusy(WorkdirError):
    """Another process holds the workdir's lock."""


class Lock:
    """An exclusive lock on a workdir, held from `acquire()` until `release()` or the process's death."""

    def __init__(self, workdir: str):
        self.workdir, self.path = workdir, os.path.join(workdir, LOCK_FILE)
        self._fd: int | None = None

    def acquire(self) -> Lock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise WorkdirBusy(f"workdir {self.workdir} is in use by process {holder}; wait for it to end, "
                                  "or use another --workdir") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def comparable(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config's flattened fields that change a run's trajectory (not `config.RESUMABLE_FIELDS`), as JSON."""
    flat = json.loads(json.dumps(config_lib.flatten(config), default=str))
    return {k: v for k, v in sorted(flat.items())
            if not any(k == f or k.startswith(f + ".") for f in config_lib.RESUMABLE_FIELDS)}


def config_hash(config: ml_collections.ConfigDict) -> str:
    return hashlib.sha256(json.dumps(comparable(config), sort_keys=True).encode()).hexdigest()[:16]


def code_version() -> str:
    """gan_jax's version, with the git commit of its checkout when there is one."""
    import gan_jax
    root = os.path.dirname(os.path.dirname(os.path.abspath(gan_jax.__file__)))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return gan_jax.__version__ + (f"+{commit}" if commit else "")


def claim(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Make `workdir` this run's: record its identity at the first start; refuse a relaunch with another config,
    or a workdir of another run's files."""
    path = os.path.join(workdir, IDENTITY_FILE)
    current = comparable(config)
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        diff = config_lib.differing_fields(saved["config"], current)
        if diff:
            raise WorkdirError(f"{workdir} holds a run of another config:\n  " + "\n  ".join(diff)
                               + "\nStart fresh with another --workdir, or --overwrite to move the old files aside.")
        return
    present = [name for name in RUN_FILES if _holds_something(os.path.join(workdir, name))]
    if present and not _only_checkpoints_of(workdir, present):
        raise WorkdirError(f"{workdir} holds files of a run it has no record of ({', '.join(present)}); start fresh "
                           "with another --workdir, or --overwrite to move them aside.")
    write_json(path, {"config_hash": config_hash(config), "config": current, "code_version": code_version(),
                       "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")})


def _holds_something(path: str) -> bool:
    """A file, or a folder with anything in it (the empty folders `check_writable` makes do not count)."""
    return os.path.lexists(path) and (not os.path.isdir(path) or bool(os.listdir(path)))


def _only_checkpoints_of(workdir: str, present: list[str]) -> bool:
    """A workdir written before identities existed: its checkpoints carry their config, which the checkpointer
    checks, and its other files belong to them."""
    return "checkpoints" in present and os.path.isdir(os.path.join(workdir, "checkpoints"))


def move_aside(workdir: str) -> str | None:
    """Move everything in `workdir` (but its lock) into `<workdir>/replaced-<time>/`; that folder, None if empty."""
    names = [n for n in os.listdir(workdir) if n != LOCK_FILE and not n.startswith("replaced-")]
    if not names:
        return None
    target = os.path.join(workdir, "replaced-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(target)
    for name in names:
        os.rename(os.path.join(workdir, name), os.path.join(target, name))
    return target


def write_json(path: str, value: Any, **dump_kw) -> None:
    """Write JSON atomically: a kill leaves the old file or the new one, never half of one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, **({"indent": 1} | dump_kw))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_writable(workdir: str) -> None:
    """Create the folders the loop writes and check that each takes a file, before any training."""
    for name in ("", *WRITTEN_FOLDERS):
        folder = os.path.join(workdir, name)
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise WorkdirError(f"{folder} is a file, but the run writes a folder there; move it away")
        try:
            os.makedirs(folder, exist_ok=True)
            probe = os.path.join(folder, ".write_test")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as e:
            raise WorkdirError(f"cannot write in {folder}: {e.strerror}") from None

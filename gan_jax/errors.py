"""Which failures are the user's to fix, reported in one line with exit code 2, and which are bugs.

A user error is a bad config or flag, a missing or damaged file, a workdir that cannot take the run (busy,
another run's, read-only, full), or a run that diverged: its message names the problem and what to do, so a
traceback would only bury it. Anything else is unexpected and keeps its traceback.
"""
from __future__ import annotations

import errno
import os
import sys
from typing import Callable, TypeVar

from gan_jax import checkpoint, workdir

T = TypeVar("T")
USER_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR,
               errno.EISDIR)


def user_message(exc: BaseException) -> str | None:
    """The one-line message of a user error, None for an unexpected one."""
    from gan_jax import loop
    if isinstance(exc, (ValueError, workdir.WorkdirError, checkpoint.ConfigMismatchError, loop.NonFiniteLossError,
                        loop.DivergedError)):
        return str(exc)
    if isinstance(exc, FileNotFoundError) and exc.errno is None:   # raised with a message of ours
        return str(exc)
    if isinstance(exc, OSError) and exc.errno in USER_ERRNOS:
        what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EROFS: "the file system is read-only"}.get(exc.errno, exc.strerror)
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{what}{where}; the last checkpoint and the logs before it are intact: free space or fix the path, " \
               "then relaunch to resume" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else f"{what}{where}"
    return None


def call_reporting_user_errors(call: Callable[[], T], verbose: bool) -> tuple[bool, T | None]:
    """(True, call()) or, for a user error, (False, None) after writing `error: <message>` to stderr; unexpected
    errors, and every error when `verbose` or $GAN_JAX_VERBOSE, keep their traceback."""
    try:
        return True, call()
    except Exception as e:
        message = user_message(e)
        if message is None or verbose or os.environ.get("GAN_JAX_VERBOSE"):
            raise
        sys.stderr.write(f"error: {message}\n")
        return False, None

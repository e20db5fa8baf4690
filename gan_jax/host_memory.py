"""Host-memory allocator settings for training processes (glibc ``mallopt``).

XLA:CPU allocates each step's temporary buffers with ``malloc`` and frees them when the step ends.
glibc hands large blocks back to the kernel (``mmap``/``munmap``, heap trimming, and the per-thread
arenas of XLA's worker threads shrink their heaps), so the next step gets fresh pages and takes a page
fault to zero every one: about 31,000 faults and 110 ms of kernel time per DCGAN32 step at batch 64 on
a 2-core CPU. Keeping freed memory in one arena removes them: that step ran 20 % faster, the WGAN step
19 % (BENCHMARKS.md). The price is that the process keeps its peak heap until it exits,
which is what a training job does anyway.
"""
from __future__ import annotations

import ctypes
import ctypes.util

# <malloc.h>
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX, M_ARENA_MAX = -1, -2, -4, -8
_SETTINGS = ((M_ARENA_MAX, 1),                 # XLA's worker threads share the main arena ...
             (M_MMAP_MAX, 0),                  # ... which serves large blocks too (no per-block mmap),
             (M_TRIM_THRESHOLD, 2 ** 31 - 1),  # never returns its top to the kernel,
             (M_TOP_PAD, 256 << 20))           # and grows 256 MiB at a time.


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep and reuse freed memory; True if applied, False where there is no glibc.

    Call it at the start of a process's main, before JAX starts its threads (``launch.py``,
    ``gan_jax.reproduce``, the module command lines and the benchmarks do): threads that have
    already taken their own arena keep it.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (raises AttributeError where libc is not glibc)
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in _SETTINGS)

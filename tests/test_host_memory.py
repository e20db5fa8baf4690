"""gan_jax.host_memory: after keep_freed_memory(), a freed large block is reused without new page faults."""
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="mallopt settings are glibc's")

# Touch a 64 MiB block, free it, touch a new one: the minor page faults of the second allocation.
# (malloc and memset directly: numpy asks for transparent huge pages, which would hide the faults.)
SCRIPT = """
import ctypes, resource, sys
from gan_jax import host_memory
applied = host_memory.keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
size = 64 << 20
libc.free(ctypes.memset(libc.malloc(size), 1, size))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ctypes.memset(libc.malloc(size), 1, size)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied, int(faults)


def test_freed_block_is_reused_without_page_faults():
    applied, kept = _faults("keep")
    _, default = _faults("glibc")
    assert applied == "True"
    # 64 MiB is 16,384 pages of 4 KiB: glibc's default unmaps the block and faults them all in again.
    assert default > 10_000, default
    assert kept < 100, kept

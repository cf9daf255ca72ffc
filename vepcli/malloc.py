"""The CLI's policy for the C allocator: freed tensor memory is kept for the next tensor.

Every layer allocates and frees tensors of many megabytes. Past glibc's mmap threshold each one is a
fresh mapping whose pages fault in on first touch: 5-8% of a training step here (docs/benchmarks.md).
No torch import here: `vepcli --help` stays fast.
"""

from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
KEEP_FREED_BYTES = 1 << 30


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # not a GNU C library
        return False


def keep_freed_memory() -> bool:
    """glibc: blocks under 1 GiB come from the heap, and up to 1 GiB free at its top stays mapped.

    The CLI calls this once; a library user's process is left alone. Returns whether it applied: not off
    glibc, nor where the user set malloc settings of their own (MALLOC_*, or malloc in GLIBC_TUNABLES)."""
    user_set = any(k.startswith("MALLOC_") for k in os.environ) or "malloc" in os.environ.get("GLIBC_TUNABLES", "")
    if user_set or not _glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, KEEP_FREED_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))

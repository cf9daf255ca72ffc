"""The CLI's allocator policy (vepcli.malloc): freed memory is reused instead of being mapped afresh."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# malloc, touch and free 64 MiB, then malloc and touch it again: the page faults of the second round
PROGRAM = """
import ctypes, resource, sys
from vepcli.malloc import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "on" else False
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes, libc.memset.argtypes = [ctypes.c_void_p], [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
n = 64 << 20
p = libc.malloc(n); libc.memset(p, 1, n); libc.free(p)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
p = libc.malloc(n); libc.memset(p, 1, n)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

GLIBC = sys.platform.startswith("linux") and (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")


def second_round_faults(policy: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, policy], env={**clean, **env}, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not GLIBC, reason="the policy is glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults() -> None:
    applied, faults = second_round_faults("on")
    assert applied == "True" and faults < 1000  # the 64 MiB came back from the heap, already mapped
    applied, faults = second_round_faults("off")
    assert applied == "False" and faults > 10000  # glibc's default: a fresh mapping, 16,384 pages to fault in


@pytest.mark.skipif(not GLIBC, reason="the policy is glibc's mallopt")
@pytest.mark.parametrize("env", [{"MALLOC_ARENA_MAX": "2"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}])
def test_a_users_own_malloc_settings_win(env: dict[str, str]) -> None:
    applied, _ = second_round_faults("on", **env)
    assert applied == "False"

"""`keep_freed_memory`: memory freed by one step serves the next without the kernel faulting it in again.

Each case runs in a fresh interpreter, since the setting holds for the rest of a process. The
measure is the kernel's count of minor page faults (getrusage), not time: a 256 MiB block freed and
allocated again faults all its pages in anew under glibc's defaults (65,536 of 4 KiB), and (nearly)
none once its memory is kept.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

SECOND_ROUND_FAULTS = """
import ctypes, resource, sys
from samcell_rt.train.memory import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, (ctypes.c_size_t,), (ctypes.c_void_p,)
def round_faults():  # as torch allocates a tensor: plain malloc, no huge-page advice (numpy gives some)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(256 * 2**20)
    ctypes.memset(block, 1, 256 * 2**20)
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
round_faults()
print(took, round_faults())
"""


def second_round(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", SECOND_ROUND_FAULTS, mode], capture_output=True, text=True, check=True)
    took, faults = out.stdout.split()
    return took, int(faults)


@pytest.mark.skipif(sys.platform != "linux" or platform.libc_ver()[0] != "glibc",
                    reason="the setting is glibc's; other allocators are left as they are")
def test_freed_block_is_reused_without_faults():
    default = second_round("default")[1]  # unmapped on free: every page (4 KiB, or 2 MiB with THP) faults again
    assert default >= 128
    took, faults = second_round("keep")
    assert took == "True"
    assert faults < default / 20


def test_other_systems_are_left_alone(monkeypatch):
    from samcell_rt.train import memory

    memory.keep_freed_memory.cache_clear()
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("musl", "1.2"))
    try:
        assert memory.keep_freed_memory() is False
    finally:
        memory.keep_freed_memory.cache_clear()

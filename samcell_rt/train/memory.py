"""Keep the memory torch frees inside the process, so a training step does not fault it in again.

Why: one whole-model training step of SAMCell-Lite allocates and frees gigabytes of activations
(TinyViT's first stage runs at the full 256 px with 256 channels). glibc's malloc serves every large
block with its own mmap and unmaps it on free, so each step asks the kernel for the same gigabytes
again and zero-fills them page by page. On the 2-core development CPU (AMD EPYC Zen 3) that system
time was about half of a step. With mmap off for malloc and the heap never trimmed below 2 GiB of
free top, the pages freed by one step serve the next (benchmarks/finetune_step.py measures both in
one run). The price: the process keeps its peak resident size until it exits, which a training
process reaches anyway on its first step.

Only training processes call this (`adapt`, `train`): the runtime keeps the system allocator as it is.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import sys

M_TRIM_THRESHOLD = -1  # glibc malloc.h: free top of heap kept before it is returned to the kernel
M_MMAP_MAX = -4  # glibc malloc.h: how many blocks malloc may serve with their own mmap
KEEP_TOP = 2**31 - 1  # the largest trim threshold mallopt's int takes: 2 GiB


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed memory instead of unmapping it; True where it took effect.

    A no-op (False) on other systems and C libraries, whose allocators are left as they are. Called
    once per process: the setting holds for every later allocation, so the first call is the one
    that counts.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_TOP))

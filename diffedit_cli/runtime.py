"""Process settings that make CPU inference faster without changing a single number.

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and hands it
back with ``munmap`` when freed, so each large activation of a 256 px network (a 128 x 256 x 256 fp32 map is
32 MiB) costs its page faults again at every layer of every call: measured on a 2-core Xeon, about 330,000 page
faults and a third of the wall-clock of one FFHQ-256 UNet call (docs/speed.md). :func:`tune_allocator` raises the
threshold to its maximum and stops the heap from being trimmed, so freed blocks are reused; the process keeps its
peak memory instead of returning it between calls. It is what PyTorch's CPU performance guide gets from
jemalloc / tcmalloc, without a preloaded library. Applied by :func:`diffedit_cli.pipeline.prepare` on CPUs;
``$DIFFEDIT_MALLOC=system`` leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

MALLOC_ENV = "DIFFEDIT_MALLOC"  # "system": leave glibc malloc alone
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc mallopt parameters (malloc.h)
_MMAP_THRESHOLD = 32 * 2 ** 20   # the largest value glibc accepts on 64-bit (HEAP_MAX_SIZE / 2)
_TRIM_THRESHOLD = 2 ** 62        # never give the top of the heap back
_TOP_PAD = 2 ** 28               # grow the heap 256 MiB at a time (address space; pages are touched on use)

_state = {"tuned": None}


def tune_allocator() -> bool:
    """Keep freed memory for reuse (glibc only; once per process). Returns whether the allocator is tuned: False on
    other C libraries, where ``$DIFFEDIT_MALLOC`` is ``system``, or when ``mallopt`` refuses."""
    if _state["tuned"] is not None:
        return _state["tuned"]
    tuned = False
    if os.environ.get(MALLOC_ENV, "").strip().lower() != "system" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            tuned = all(libc.mallopt(param, value) == 1 for param, value in (
                (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD)))
        except (OSError, AttributeError):
            tuned = False
    _state["tuned"] = tuned
    return tuned

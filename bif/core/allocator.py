"""The C allocator of a sampling process: freed tensors are kept for reuse instead of going back to the system.

Every SGLD step and every scoring pass allocates the same few megabyte-sized tensors (activations, logits,
gradients) and frees them. glibc's malloc serves blocks over its mmap threshold (128 KiB, raised dynamically up to
32 MiB) from fresh mmaps and trims the heap's top when it frees, so the process keeps faulting in zeroed pages:
1.4-1.8 million minor page faults and 1.6-2.0 s of system time in a 22 s demo run. With the threshold at its
maximum and trimming off, the same run has 0.12 million faults and 0.4 s of system time (bench/peer.py's fixture,
2026-12-04). The kept memory is the run's own working set, a few hundred MB on the demo.

Called by the processes that sample (`python -m bif`, the job worker), never by importing the library: a
Python user's process keeps its own allocator settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit): blocks above it still mmap
TRIM_THRESHOLD = 1024 * 1024 * 1024  # free memory at the heap's top kept up to this much


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process; True when glibc took both (False elsewhere, e.g.
    on macOS or musl, where nothing changes)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

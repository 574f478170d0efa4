"""Keep freed big blocks in the process's heap while the tests teach a tiny model in-process
(not a test module itself).

glibc hands every freed block above its mmap threshold (32 MiB at most) back to the kernel, so
the teaching's big tensors (the gradient of the tied 151,936 x 64 embedding, 39 MB, and the
optimiser's update of it, every step) are page-faulted in afresh every step. With mmap off and
the heap's free top kept, the colour model's two teaching passes took 89 s instead of 118 s, and
``teach_scaffold`` 28 s instead of 46 s (one thread, idle). Set through ``mallopt`` for the
teaching only, then restored and trimmed: as environment variables for the whole suite (every
worker, Ray, vLLM) the memory in use reached 21 of 23 GiB and Ray's memory monitor killed the
stage-3 job.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
DEFAULT_TRIM_THRESHOLD, DEFAULT_MMAP_MAX = 128 * 1024, 65536


@contextmanager
def big_blocks_kept() -> Iterator[None]:
    """Inside: no mmap for big blocks, no trimming of the heap; after: glibc's defaults and the
    kept memory returned (``malloc_trim``). A libc without ``mallopt`` (not glibc) is left alone."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallopt") or not hasattr(libc, "malloc_trim"):
        yield
        return
    libc.mallopt(M_MMAP_MAX, 0)
    libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
        libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
        libc.malloc_trim(0)

"""Freed memory goes back to the operating system after a full collection.

A reading-room PC runs Lightbox beside the PACS viewer and dictation for a whole shift. When a study or a
window closes, Python frees its arrays and objects, but glibc's allocator keeps the freed pages of its heap
and of the per-thread arenas that workers used (ONNX Runtime, decoding, PDF export), so the process's
resident size stays at its high-water mark and wanders by a few hundred MB with what happened last
(measured in the soak: about 100 MB held free at the end of a round). ``trim()`` asks glibc to return
them (``malloc_trim(0)``); the collector guard calls it after each full collection (at most once a minute),
and the soak measures after the same step. Other C libraries: a no-op.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time

log = logging.getLogger(__name__)

_libc: list = []


def _malloc_trim():
    if not _libc:
        fn = None
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            fn = getattr(lib, "malloc_trim", None)
            if fn is not None:
                fn.argtypes = [ctypes.c_size_t]
                fn.restype = ctypes.c_int
        except OSError:
            fn = None
        _libc.append(fn)
    return _libc[0]


def available() -> bool:
    return _malloc_trim() is not None


def trim() -> float:
    """Return free heap pages to the OS; the time it took in ms (0.0 where glibc is not the allocator)."""
    fn = _malloc_trim()
    if fn is None:
        return 0.0
    t = time.perf_counter()
    try:
        fn(0)
    except Exception:  # never let housekeeping take the viewer down
        log.debug("malloc_trim failed", exc_info=True)
    return round((time.perf_counter() - t) * 1000, 1)

"""Freed heap goes back to the OS after the guard's full collection (app/reliability/memory.py)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from app.reliability import gcguard, memory


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.skipif(not sys.platform.startswith("linux") or not memory.available(), reason="glibc only")
def test_trim_returns_freed_small_allocations_to_the_os():
    # many small blocks (below glibc's mmap threshold) live in the heap: freeing them leaves RSS high
    blocks = [np.ones(16_000, np.uint8) for _ in range(20_000)]  # ~320 MB of 16-kB arrays
    keep = blocks[-1]
    del blocks[:-1]
    before = _rss_mb()
    ms = memory.trim()
    after = _rss_mb()
    assert ms >= 0.0 and keep.sum() == 16_000
    assert before - after > 100, f"RSS {before:.0f} -> {after:.0f} MB"


def test_full_collect_trims_and_guard_records_it(qapp, monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "trim", lambda: calls.append(1) or 0.5)
    assert gcguard.full_collect() >= 0.0
    assert calls == [1]

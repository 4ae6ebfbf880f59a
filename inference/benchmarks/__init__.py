"""Benchmarks: ``inference.benchmarks.<name>.run()`` yields ``(label, value, unit, note)`` rows."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def best_of(fn: Callable[[], object], n: int = 5) -> tuple[float, float]:
    """(best, median) wall time of ``n`` calls, in seconds."""
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), statistics.median(ts)

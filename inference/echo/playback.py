"""Cine timing without Qt: which frame is due at a given wall-clock time (drift-free), and a
simulation of a timer schedule to count dropped frames (used by the viewer and by the benchmark).

The viewer never adds "one frame per tick": it computes the due frame from the elapsed time since
play started, so a late tick shows the right frame (and a skipped one counts as dropped) and the
loop never drifts from the file's frame rate.
"""
from __future__ import annotations

import math

import numpy as np


def due_frame(elapsed_s: float, fps: float, speed: float, start: int, lo: int, hi: int) -> int:
    """Frame due ``elapsed_s`` after play started at ``start``, looping within [lo, hi]."""
    span = hi - lo + 1
    k = int(math.floor(elapsed_s * fps * speed + 1e-9))
    return lo + ((start - lo + k) % span)


def tick_interval_ms(fps: float, speed: float) -> int:
    """Timer period: half a frame (at least 2 ms), so a frame is never shown more than half a frame late."""
    return max(2, int(500.0 / (fps * speed)))


def simulate(fps: float, seconds: float, paint_ms: float = 2.0, jitter_ms: float = 1.0,
             speed: float = 1.0, seed: int = 0) -> dict:
    """Run the viewer's schedule against a simulated timer (period ``tick_interval_ms``, late by
    up to ``jitter_ms`` plus the ``paint_ms`` the previous frame took). Returns frames due, shown
    and dropped."""
    rng = np.random.default_rng(seed)
    period = tick_interval_ms(fps, speed) / 1000.0
    n_due = int(seconds * fps * speed)
    t, last, shown, dropped = 0.0, 0, 1, 0
    busy_until = 0.0
    while t < seconds:
        t += period + rng.uniform(0, jitter_ms / 1000.0)
        t = max(t, busy_until)
        k = int(math.floor(t * fps * speed + 1e-9))
        if k >= n_due:
            break
        if k != last:
            dropped += max(0, k - last - 1)
            shown += 1
            last = k
            busy_until = t + paint_ms / 1000.0
    return {"due": n_due, "shown": shown, "dropped": dropped}

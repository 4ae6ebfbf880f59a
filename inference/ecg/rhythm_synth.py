"""Generated single-lead ECGs with a known rhythm, for tests and the demo (no dataset needed).

A beat is a sum of Gaussians (P, Q, R, S, T) placed at the beat times; ``irregular=True`` draws RR intervals
independently (irregularly irregular, as in AF) and leaves out the P wave and adds fibrillatory baseline
waves; otherwise RR varies only slightly (sinus rhythm).
"""
from __future__ import annotations

import numpy as np


def beat_times(seconds: float, rng: np.random.RandomState, irregular: bool, hr: float = 70.0) -> np.ndarray:
    rr0 = 60.0 / hr
    t, out = rng.uniform(0, rr0), []
    while t < seconds:
        out.append(t)
        if irregular:
            t += float(np.clip(rng.gamma(4.0, rr0 * 0.85 / 4.0), 0.3, 2.0))
        else:
            t += rr0 * (1.0 + 0.03 * np.sin(2 * np.pi * t / 4.0) + 0.01 * rng.randn())
    return np.asarray(out)


def synth_lead(seconds: float, fs: float, irregular: bool = False, seed: int = 0, hr: float | None = None,
               noise_mv: float = 0.02, times: np.ndarray | None = None) -> np.ndarray:
    """One lead in mV."""
    rng = np.random.RandomState(seed)
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    hr = hr if hr is not None else rng.uniform(60, 95) * (1.25 if irregular else 1.0)
    bt = beat_times(seconds, rng, irregular, hr) if times is None else times
    x = np.zeros(n)
    waves = [(-0.2, 0.025, 0.12), (-0.03, 0.008, -0.1), (0.0, 0.01, 1.0), (0.03, 0.01, -0.25), (0.25, 0.045, 0.3)]
    if irregular:
        waves = waves[1:]
    for b in bt:
        lo, hi = int(max(0, (b - 0.35) * fs)), int(min(n, (b + 0.5) * fs))
        if hi <= lo:
            continue
        tt = t[lo:hi] - b
        for c, w, a in waves:
            x[lo:hi] += a * np.exp(-0.5 * ((tt - c) / w) ** 2)
    if irregular:  # fibrillatory waves 4-8 Hz
        f = rng.uniform(4, 8)
        x += 0.05 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) * (1 + 0.3 * np.sin(2 * np.pi * 0.3 * t))
    x += 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6.3))  # baseline wander
    x += noise_mv * rng.randn(n)
    return x.astype(np.float32)


def synth_episode(seconds: float, fs: float, af_from: float, af_to: float, seed: int = 0, leads: int = 2) -> np.ndarray:
    """(leads, n) mV: sinus rhythm with an AF episode from ``af_from`` to ``af_to`` seconds (a long 'Holter')."""
    n = int(round(seconds * fs))
    out = np.zeros((leads, n), np.float32)
    parts = [(0.0, af_from, False), (af_from, af_to, True), (af_to, seconds, False)]
    for j in range(leads):
        pos = 0
        for k, (a, b, irr) in enumerate(parts):
            m = int(round(b * fs)) - int(round(a * fs))
            if m <= 0:
                continue
            seg = synth_lead(m / fs, fs, irregular=irr, seed=seed * 100 + 10 * j + k, hr=75 if not irr else 100)
            out[j, pos:pos + len(seg)] = seg * (1.0 if j == 0 else 0.7)
            pos += len(seg)
    return out

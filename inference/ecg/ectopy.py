"""Isolated premature beats in otherwise regular rhythm, for the rhythm band of long recordings.

The rhythm model learnt its "other rhythm" class from the PhysioNet/CinC 2017 labels, in which a recording
with ectopic beats is "other". On a Holter that turns every 30-s window holding one atrial or ventricular
premature beat into "Other rhythm", although a reader calls the rhythm sinus with occasional ectopy. For
recordings longer than ``LONG_RECORDING_S`` a window the model labels "other" is therefore shown as normal
when its beats are regular apart from a few isolated premature beats, and the premature beats are counted.

Beat detection (no model): on the rhythm model's band-passed lead at 150 Hz, the squared first difference
integrated over 120 ms; peaks at least 250 ms apart above 30 % of the window's 98th percentile.
Rules, fixed from common Holter conventions (not fitted): a beat is premature when its RR interval is
shorter than ``PREMATURE`` (85 %) of the window's median RR and the next interval is at least ``RESTORE``
(95 %) of it (a pause that restores the rhythm); the window is "regular with isolated ectopy" when it has
1 to ``MAX_ECTOPIC`` (3) premature beats, no two in a row, at least ``MIN_BEATS`` beats, and every other RR
interval within ``REGULAR`` (±15 %) of the median. Anything else (AF's irregularity, bigeminy, runs,
pauses, noise) is left as the model labelled it.
"""
from __future__ import annotations

import numpy as np

LONG_RECORDING_S = 60.0
PREMATURE = 0.85
RESTORE = 0.95
REGULAR = 0.15
MAX_ECTOPIC = 3
MIN_BEATS = 8


def beats(x: np.ndarray, fs: float) -> np.ndarray:
    """Beat positions (samples) in a band-passed lead."""
    from scipy.signal import find_peaks

    x = np.asarray(x, dtype=np.float64)
    if len(x) < int(fs):
        return np.zeros(0, dtype=np.int64)
    e = np.diff(x, prepend=x[0]) ** 2
    w = max(1, int(round(0.12 * fs)))
    integ = np.convolve(e, np.ones(w) / w, mode="same")
    top = np.percentile(integ, 98)
    if not np.isfinite(top) or top <= 0:
        return np.zeros(0, dtype=np.int64)
    peaks, _ = find_peaks(integ, height=0.3 * top, distance=max(1, int(round(0.25 * fs))))
    return peaks.astype(np.int64)


def isolated_ectopy(peaks: np.ndarray, fs: float) -> int:
    """Number of isolated premature beats when the beats are otherwise regular; 0 when the pattern is not
    'regular rhythm with 1-3 isolated premature beats' (see the module doc)."""
    if len(peaks) < MIN_BEATS:
        return 0
    rr = np.diff(np.asarray(peaks, dtype=np.float64)) / fs
    m = float(np.median(rr))
    if m <= 0:
        return 0
    prem = [i for i in range(len(rr) - 1) if rr[i] < PREMATURE * m and rr[i + 1] >= RESTORE * m]
    if not prem or len(prem) > MAX_ECTOPIC or any(b - a < 2 for a, b in zip(prem, prem[1:])):
        return 0
    skip = set(prem) | {i + 1 for i in prem}
    rest = np.array([r for i, r in enumerate(rr) if i not in skip])
    if len(rest) < MIN_BEATS - 3 or np.any(np.abs(rest - m) > REGULAR * m):
        return 0
    return len(prem)

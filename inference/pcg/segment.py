"""Heart-sound segmentation: S1, S2, systole and diastole from the signal envelope; heart rate.

Method (after Schmidt et al. 2010 and Springer et al. 2016, simplified; no learned emission model):
1. band-pass 25–400 Hz, resample to 1 kHz;
2. envelope = homomorphic envelope (low-pass 8 Hz of log|Hilbert|, exponentiated) combined with the
   normalised Shannon energy, at 50 Hz;
3. heart rate from the envelope's autocorrelation: the peak between 0.3 and 2 s lag (30–200 bpm)
   that also repeats at twice its lag (so the S1->S2 lag is not taken for the cycle), and the systolic interval from the highest peak between 0.2 s and half a cycle;
4. candidate sounds = envelope peaks at least 0.1 s apart above a noise floor;
5. labelling = dynamic programming over the candidates: the best alternating S1 -> S2 -> S1 chain whose
   S1->S2 intervals match systole and S2->S1 intervals match diastole (peaks that fit neither are left
   out as noise). Systole is the shorter interval: if the chain's S1->S2 intervals come out longer than
   its S2->S1 intervals, the labels are swapped.
Heart rate reported = 60 / median S1->S1 interval of the chain (autocorrelation estimate as fallback).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import signal

ENV_RATE = 50  # Hz


@dataclass
class Segmentation:
    s1: np.ndarray  # times (s) of S1 (envelope peak)
    s2: np.ndarray
    s1_bounds: np.ndarray  # (n, 2) start/end times of each S1
    s2_bounds: np.ndarray
    heart_rate_bpm: float | None
    heart_rate_autocorr_bpm: float | None
    systole_s: float | None  # median S1->S2
    diastole_s: float | None  # median S2->S1
    envelope: np.ndarray = field(repr=False)  # at ENV_RATE, 0..1
    quality: float = 0.0  # fraction of the recording covered by a consistent S1/S2 chain
    notes: list[str] = field(default_factory=list)

    def outputs(self) -> dict:
        r = lambda v: None if v is None else round(float(v), 3)  # noqa: E731
        return {"heart_rate_bpm": None if self.heart_rate_bpm is None else round(self.heart_rate_bpm, 1),
                "systole_ms": None if self.systole_s is None else round(1000 * self.systole_s),
                "diastole_ms": None if self.diastole_s is None else round(1000 * self.diastole_s),
                "s1_count": int(len(self.s1)), "s2_count": int(len(self.s2)),
                "s1_times_s": [r(t) for t in self.s1], "s2_times_s": [r(t) for t in self.s2],
                "segmentation_coverage": round(self.quality, 2)}


def envelope(x: np.ndarray, sr: int) -> np.ndarray:
    """Combined homomorphic + Shannon envelope at ENV_RATE Hz, scaled to 0..1."""
    from .features import resample

    y = resample(np.asarray(x, dtype=np.float32), sr, 1000).astype(np.float64)
    fs = 1000
    sos = signal.butter(4, [25 / (fs / 2), 400 / (fs / 2)], btype="band", output="sos")
    if len(y) > 30:
        y = signal.sosfiltfilt(sos, y)
    scale = np.percentile(np.abs(y), 99.5) or 1.0
    y = np.clip(y / scale, -1, 1)
    lp = signal.butter(1, 8 / (fs / 2), output="sos")
    homo = np.exp(signal.sosfiltfilt(lp, np.log(np.abs(signal.hilbert(y)) + 1e-6))) if len(y) > 12 else np.abs(y)
    se = -(y ** 2) * np.log(y ** 2 + 1e-10)
    k = int(0.02 * fs)
    se = np.convolve(se, np.ones(k) / k, mode="same")
    env = np.zeros_like(y)
    for e in (homo, se):
        e = (e - e.mean()) / (e.std() + 1e-12)
        env += e
    step = fs // ENV_RATE
    n = len(env) // step
    env = env[: n * step].reshape(n, step).mean(axis=1)
    env -= np.percentile(env, 5) if n else 0
    env = np.maximum(env, 0)
    return (env / (env.max() + 1e-12)).astype(np.float32)


def autocorr_rate(env: np.ndarray) -> tuple[float | None, float | None]:
    """(cycle length s, systole s) from the envelope autocorrelation; None when not periodic."""
    e = env - env.mean()
    n = len(e)
    if n < 2 * ENV_RATE:
        return None, None
    ac = signal.fftconvolve(e, e[::-1], mode="full")[n - 1:]
    ac = ac / (ac[0] + 1e-12)
    lo, hi = int(0.3 * ENV_RATE), min(int(2.0 * ENV_RATE), n - 1)
    if hi <= lo + 2:
        return None, None
    peaks, _ = signal.find_peaks(ac[lo:hi])
    if len(peaks) == 0:
        return None, None
    peaks = peaks + lo

    def at(lag: int) -> float:
        return float(ac[max(0, lag - 2):lag + 3].max())

    # a true cycle also repeats at twice its lag; the S1->S2 or S2->S1 lag does not
    def score(lag: int) -> float:
        return min(at(lag), at(2 * lag)) if 2 * lag < 0.8 * n else 0.8 * at(lag)

    cycle_lag = int(max(peaks, key=score))
    cycle = cycle_lag / ENV_RATE
    s_lo, s_hi = int(0.2 * ENV_RATE), int(cycle_lag / 2)
    systole = None
    if s_hi > s_lo + 1:
        sp, _ = signal.find_peaks(ac[s_lo:s_hi + 1])
        if len(sp):
            systole = (s_lo + sp[np.argmax(ac[s_lo:s_hi + 1][sp])]) / ENV_RATE
    if ac[cycle_lag] < 0.05:
        return None, None
    return cycle, systole


def _chain(times: np.ndarray, amps: np.ndarray, sys_s: float, dia_s: float) -> tuple[list[int], list[int]]:
    """Best alternating labelling of candidate peaks: returns (indices labelled S1, indices labelled S2)."""
    n = len(times)
    if n == 0:
        return [], []
    NEG = -1e18
    score = np.full((n, 2), NEG)  # label 0 = S1, 1 = S2
    back = np.full((n, 2), -1, dtype=int)
    expect = (sys_s, dia_s)  # interval after an S1 (to S2) and after an S2 (to S1)
    for i in range(n):
        for lab in (0, 1):
            best, arg = amps[i], -1  # a chain may start here
            prev = 1 - lab
            exp_d = expect[prev]
            sig = max(0.2 * exp_d, 0.05)
            for j in range(i - 1, -1, -1):
                d = times[i] - times[j]
                if d > exp_d + 4 * sig:
                    break
                if score[j, prev] <= NEG / 2:
                    continue
                s = score[j, prev] + amps[i] + 1.0 - ((d - exp_d) / sig) ** 2
                if s > best:
                    best, arg = s, j
            score[i, lab], back[i, lab] = best, arg
    i, lab = np.unravel_index(np.argmax(score), score.shape)
    s1, s2 = [], []
    while i >= 0:
        (s1 if lab == 0 else s2).append(int(i))
        i, lab = back[i, lab], 1 - lab
    return sorted(s1), sorted(s2)


def segment(x: np.ndarray, sr: int) -> Segmentation:
    env = envelope(x, sr)
    notes: list[str] = []
    cycle, sys_ac = autocorr_rate(env)
    hr_ac = 60.0 / cycle if cycle else None
    empty = np.zeros(0)
    if cycle is None:
        return Segmentation(empty, empty, np.zeros((0, 2)), np.zeros((0, 2)), None, None, None, None, env, 0.0,
                            ["no periodic heart sounds found (noise, or too short)"])
    sys_s = sys_ac if sys_ac and sys_ac < 0.5 * cycle else min(0.16 + 0.15 * cycle, 0.45 * cycle)
    dia_s = cycle - sys_s
    floor = max(0.1, float(np.percentile(env, 60)))
    pk, props = signal.find_peaks(env, distance=max(1, int(0.1 * ENV_RATE)), height=floor,
                                  prominence=0.05)
    times = pk / ENV_RATE
    amps = env[pk] / (env[pk].max() + 1e-12) if len(pk) else np.zeros(0)
    i1, i2 = _chain(times, amps, sys_s, dia_s)
    s1, s2 = times[i1], times[i2]
    # systole is the shorter interval: swap if the chain came out the other way round
    def med_interval(a, b):
        d = [b[b > t][0] - t for t in a if np.any(b > t)]
        return float(np.median(d)) if d else None
    sysm, diam = med_interval(s1, s2), med_interval(s2, s1)
    if sysm is not None and diam is not None and sysm > diam:
        s1, s2, i1, i2 = s2, s1, i2, i1
        sysm, diam = diam, sysm
    if sysm is not None and diam is not None and abs(sysm - diam) < 0.05:
        notes.append("systole and diastole have similar lengths (fast rate): S1/S2 labels are uncertain")
    rr = np.diff(s1)
    rr = rr[(rr > 0.6 * cycle) & (rr < 1.6 * cycle)]
    hr = 60.0 / float(np.median(rr)) if len(rr) >= 2 else hr_ac
    widths = signal.peak_widths(env, pk, rel_height=0.6)[0] / ENV_RATE if len(pk) else np.zeros(0)
    def bounds(idx):
        return np.array([[times[i] - widths[i] / 2, times[i] + widths[i] / 2] for i in idx]).reshape(-1, 2)
    dur = len(env) / ENV_RATE
    covered = float(np.sum(rr)) / dur if dur else 0.0
    if covered < 0.5:
        notes.append("S1/S2 could be placed over less than half of the recording (noise or irregular rhythm)")
    return Segmentation(s1, s2, bounds(i1), bounds(i2), hr, hr_ac, sysm, diam, env, min(1.0, covered), notes)

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
   out as noise), run for each hypothesis; the one whose chain covers most of the recording while
   labelling most of the strong envelope peaks wins (a doubled cycle covers the recording but leaves every
   other beat unlabelled; the S1->S2 lag taken as a cycle breaks the chain).
   Systole is the shorter interval: if the chain's S1->S2 intervals come out longer than its S2->S1
   intervals, the labels are swapped.
Heart rate reported = 60 / median S1->S1 interval of the chain (autocorrelation estimate as fallback).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import signal

ENV_RATE = 50  # Hz
MIN_PERIODICITY = 0.1  # envelope autocorrelation at the cycle (and twice it) below which nothing repeats


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
    from inference.pcg.features import resample

    if not np.all(np.isfinite(x)):
        raise ValueError("heart-sound signal has NaN or infinite samples")
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


def autocorr_candidates(env: np.ndarray, k: int = 3) -> list[tuple[float, float | None, float]]:
    """Up to k (cycle length s, systole s, score) candidates from the envelope autocorrelation, best first."""
    e = env - env.mean()
    n = len(e)
    if n < 2 * ENV_RATE:
        return []
    ac = signal.fftconvolve(e, e[::-1], mode="full")[n - 1:]
    ac = ac / (ac[0] + 1e-12)
    lo, hi = int(0.3 * ENV_RATE), min(int(2.0 * ENV_RATE), n - 1)
    if hi <= lo + 2:
        return []
    peaks, _ = signal.find_peaks(ac[lo:hi])
    peaks = [int(p + lo) for p in peaks if ac[p + lo] >= 0.05]

    def at(lag: int) -> float:
        return float(ac[max(0, lag - 2):lag + 3].max())

    # a true cycle also repeats at twice its lag; the S1->S2 or S2->S1 lag alone does not
    def score(lag: int) -> float:
        return min(at(lag), at(2 * lag)) if 2 * lag < 0.8 * n else 0.8 * at(lag)

    out = []
    for lag in sorted(peaks, key=score, reverse=True)[:k]:
        s_lo, s_hi = int(0.2 * ENV_RATE), int(min(lag / 2, 0.5 * ENV_RATE))  # systole lasts 0.2–0.5 s
        systole = None
        if s_hi > s_lo + 1:
            sp, _ = signal.find_peaks(ac[s_lo:s_hi + 1])
            if len(sp):
                systole = (s_lo + sp[np.argmax(ac[s_lo:s_hi + 1][sp])]) / ENV_RATE
        out.append((lag / ENV_RATE, systole, score(lag)))
    return out


def autocorr_rate(env: np.ndarray) -> tuple[float | None, float | None]:
    """(cycle length s, systole s) of the best autocorrelation candidate; None when not periodic."""
    c = autocorr_candidates(env, 1)
    return (c[0][0], c[0][1]) if c else (None, None)


def _chain(times: np.ndarray, amps: np.ndarray, sys_s: float, dia_s: float) -> tuple[list[int], list[int]]:
    """Best alternating labelling of candidate peaks: returns (indices labelled S1, indices labelled S2).

    Transitions: S1 -> S2 after about ``sys_s``, S2 -> S1 after about ``dia_s`` (Gaussian penalty, sigma 20 %),
    and S1 -> S1 / S2 -> S2 after about one cycle at a fixed cost (a sound too faint to be a candidate).
    Candidates that fit no transition are left out as noise.
    """
    n = len(times)
    if n == 0:
        return [], []
    NEG = -1e18
    SKIP_COST = 0.8
    cycle = sys_s + dia_s
    score = np.full((n, 2), NEG)  # label 0 = S1, 1 = S2
    back = np.full((n, 2, 2), -1, dtype=int)  # (previous index, previous label)
    expect = (sys_s, dia_s)  # interval after an S1 (to S2) and after an S2 (to S1)
    for i in range(n):
        for lab in (0, 1):
            best, arg = amps[i], (-1, -1)  # a chain may start here
            for prev, exp_d, cost in ((1 - lab, expect[1 - lab], 0.0), (lab, cycle, SKIP_COST)):
                sig = max(0.2 * exp_d, 0.05)
                for j in range(i - 1, -1, -1):
                    d = times[i] - times[j]
                    if d > exp_d + 4 * sig:
                        break
                    if score[j, prev] <= NEG / 2 or d < exp_d - 4 * sig:
                        continue
                    sc = score[j, prev] + amps[i] + 1.0 - cost - ((d - exp_d) / sig) ** 2
                    if sc > best:
                        best, arg = sc, (j, prev)
            score[i, lab] = best
            back[i, lab] = arg
    i, lab = (int(v) for v in np.unravel_index(np.argmax(score), score.shape))
    s1, s2 = [], []
    while i >= 0:
        (s1 if lab == 0 else s2).append(i)
        i, lab = (int(v) for v in back[i, lab])
    return sorted(s1), sorted(s2)


def _fit(env: np.ndarray, times: np.ndarray, amps: np.ndarray, cycle: float, sys_ac: float | None) -> dict:
    """Label the candidate peaks for one cycle-length hypothesis; 'covered' = fraction of the recording
    spanned by consecutive S1->S1 intervals consistent with that cycle."""
    sys_s = sys_ac if sys_ac and sys_ac < 0.5 * cycle else min(0.16 + 0.15 * cycle, 0.45 * cycle, 0.45)
    i1, i2 = _chain(times, amps, sys_s, cycle - sys_s)
    s1, s2 = times[i1], times[i2]

    def med_interval(a, b):
        d = [b[b > t][0] - t for t in a if np.any(b > t)]
        return float(np.median(d)) if d else None

    sysm, diam = med_interval(s1, s2), med_interval(s2, s1)
    if sysm is not None and diam is not None and sysm > diam:  # systole is the shorter interval
        s1, s2, i1, i2 = s2, s1, i2, i1
        sysm, diam = diam, sysm
    rr = np.diff(s1)
    rr = rr[(rr > 0.6 * cycle) & (rr < 1.6 * cycle)]
    dur = len(env) / ENV_RATE
    strong = amps >= 0.25
    explained = float(amps[np.r_[i1, i2].astype(int)][strong[np.r_[i1, i2].astype(int)]].sum() /
                      max(amps[strong].sum(), 1e-9)) if len(amps) else 0.0
    return {"cycle": cycle, "explained": explained, "s1": s1, "s2": s2, "i1": i1, "i2": i2, "sys": sysm, "dia": diam, "rr": rr,
            "covered": min(1.0, float(np.sum(rr)) / dur) if dur else 0.0}


def segment(x: np.ndarray, sr: int) -> Segmentation:
    env = envelope(x, sr)
    notes: list[str] = []
    cands = autocorr_candidates(env, 3)
    empty = np.zeros(0)
    if not cands or cands[0][2] < MIN_PERIODICITY:
        return Segmentation(empty, empty, np.zeros((0, 2)), np.zeros((0, 2)), None, None, None, None, env, 0.0,
                            ["no periodic heart sounds found (noise, or too short): no heart rate or S1/S2 marks"])
    floor = max(0.1, float(np.percentile(env, 60)))
    pk, _ = signal.find_peaks(env, distance=max(1, int(0.1 * ENV_RATE)), height=floor, prominence=0.05)
    times = pk / ENV_RATE
    amps = env[pk] / (env[pk].max() + 1e-12) if len(pk) else np.zeros(0)
    # each autocorrelation candidate is a hypothesis; keep the one whose S1/S2 chain explains most of the
    # recording (the autocorrelation alone confuses the S1->S2 lag with the cycle in noisy recordings)
    fits = [_fit(env, times, amps, c, sa) for c, sa, _ in cands]
    # a hypothesis of twice the true cycle also "covers" the recording but leaves every other beat unlabelled
    best = max(range(len(fits)), key=lambda j: (round(fits[j]["covered"] * fits[j]["explained"], 2), -j))
    f = fits[best]
    hr_ac = 60.0 / cands[0][0]
    cycle, s1, s2, i1, i2, sysm, diam, rr = (f[k] for k in ("cycle", "s1", "s2", "i1", "i2", "sys", "dia", "rr"))
    if sysm is not None and diam is not None and abs(sysm - diam) < 0.05:
        notes.append("systole and diastole have similar lengths (fast rate): S1/S2 labels are uncertain")
    hr = 60.0 / float(np.median(rr)) if len(rr) >= 2 else 60.0 / cycle
    widths = signal.peak_widths(env, pk, rel_height=0.6)[0] / ENV_RATE if len(pk) else np.zeros(0)

    def bounds(idx):
        return np.array([[times[i] - widths[i] / 2, times[i] + widths[i] / 2] for i in idx]).reshape(-1, 2)

    if cands[0][2] < 2 * MIN_PERIODICITY:
        notes.append("the heart sounds repeat only weakly (noisy recording): check S1/S2 marks and heart rate by ear")
    if f["covered"] < 0.5:
        notes.append("S1/S2 could be placed over less than half of the recording (noise or irregular rhythm): "
                     "heart rate and marks are unreliable")
    return Segmentation(s1, s2, bounds(i1), bounds(i2), hr, hr_ac, sysm, diam, env, f["covered"], notes)

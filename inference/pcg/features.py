"""Log-mel windows for the heart-sound classifier — the one preprocessing used in training and inference.

Everything here is numpy/scipy (no librosa at run time), so training, the ONNX pipeline and the tests
compute bit-for-bit the same features. The parameters live in a ``FeatureSpec`` that is written beside
each trained model (JSON) and into the manifest, and read back from there by the pipeline: nothing in
the pipeline hard-codes them.

Steps (``FeatureSpec`` defaults in brackets):
1. mono mix, resample to ``sample_rate`` [2000 Hz] with a polyphase filter;
2. zero-phase Butterworth band-pass [order 4, 25–400 Hz] — the band of S1/S2 and most murmurs;
3. scale to unit robust amplitude (99th percentile of |x|), so recording gain does not matter;
4. STFT, Hann window [n_fft 256 = 128 ms, hop 40 = 20 ms] -> power -> mel filter bank
   [32 HTK-mel triangles, 20–800 Hz] -> log(power + 1e-6);
5. windows of ``window_s`` [4 s = 200 frames] every ``hop_s`` [1 s at inference], each standardised
   to zero mean / unit variance (per window, over time and frequency).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from typing import Any

import numpy as np
from scipy import signal


@dataclass(frozen=True)
class FeatureSpec:
    sample_rate: int = 2000
    band_low_hz: float = 25.0
    band_high_hz: float = 400.0
    band_order: int = 4
    n_fft: int = 256
    hop: int = 40
    n_mels: int = 32
    fmin_hz: float = 20.0
    fmax_hz: float = 800.0
    window_s: float = 4.0
    hop_s: float = 1.0  # window hop at inference (training draws random offsets)
    log_eps: float = 1e-6

    @property
    def frames_per_s(self) -> float:
        return self.sample_rate / self.hop

    @property
    def window_frames(self) -> int:
        return int(round(self.window_s * self.frames_per_s))

    @property
    def hop_frames(self) -> int:
        return max(1, int(round(self.hop_s * self.frames_per_s)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureSpec":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown preprocessing keys {sorted(unknown)}")
        return cls(**{k: d[k] for k in d if k in names})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (anti-aliased); identity when the rates match."""
    if int(sr_in) == int(sr_out):
        return np.asarray(x, dtype=np.float32)
    frac = Fraction(int(sr_out), int(sr_in)).limit_denominator(1000)
    y = signal.resample_poly(np.asarray(x, dtype=np.float64), frac.numerator, frac.denominator, axis=0)
    return y.astype(np.float32)


def bandpass(x: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    nyq = spec.sample_rate / 2.0
    hi = min(spec.band_high_hz, 0.95 * nyq)
    sos = signal.butter(spec.band_order, [spec.band_low_hz / nyq, hi / nyq], btype="band", output="sos")
    if len(x) <= 3 * (2 * len(sos) + 1):
        return np.asarray(x, dtype=np.float32)
    return signal.sosfiltfilt(sos, np.asarray(x, dtype=np.float64)).astype(np.float32)


def normalise(x: np.ndarray) -> np.ndarray:
    scale = float(np.percentile(np.abs(x), 99)) if len(x) else 0.0
    if not np.isfinite(scale) or scale <= 1e-12:
        return np.zeros_like(x, dtype=np.float32)
    return (x / scale).astype(np.float32)


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


_MEL_CACHE: dict[tuple, np.ndarray] = {}


def mel_filterbank(spec: FeatureSpec) -> np.ndarray:
    """(n_mels, n_fft//2+1) HTK-mel triangles, each normalised to unit area."""
    key = (spec.sample_rate, spec.n_fft, spec.n_mels, spec.fmin_hz, spec.fmax_hz)
    if key in _MEL_CACHE:
        return _MEL_CACHE[key]
    n_bins = spec.n_fft // 2 + 1
    freqs = np.linspace(0, spec.sample_rate / 2.0, n_bins)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(spec.fmin_hz), _hz_to_mel(spec.fmax_hz), spec.n_mels + 2))
    fb = np.zeros((spec.n_mels, n_bins), dtype=np.float64)
    for i in range(spec.n_mels):
        lo, c, hi = edges[i], edges[i + 1], edges[i + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        fb[i] = np.maximum(0.0, np.minimum(up, down))
        s = fb[i].sum()
        if s <= 0:  # a band narrower than one bin: take the nearest bin
            fb[i, int(np.argmin(np.abs(freqs - c)))] = 1.0
        else:
            fb[i] /= s
    out = fb.astype(np.float32)
    _MEL_CACHE[key] = out
    return out


def mel_centres_hz(spec: FeatureSpec) -> np.ndarray:
    return _mel_to_hz(np.linspace(_hz_to_mel(spec.fmin_hz), _hz_to_mel(spec.fmax_hz), spec.n_mels + 2))[1:-1]


def log_mel(x: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """(n_mels, n_frames) log mel power of an already band-passed, normalised signal at spec.sample_rate.

    Frame ``t`` is centred on sample ``t * hop`` (the signal is reflect-padded by n_fft/2).
    """
    x = np.asarray(x, dtype=np.float32)
    pad = spec.n_fft // 2
    if len(x) < 2:
        x = np.zeros(spec.n_fft, dtype=np.float32)
    xp = np.pad(x, pad, mode="reflect" if len(x) > pad else "constant")
    n_frames = 1 + (len(xp) - spec.n_fft) // spec.hop
    frames = np.lib.stride_tricks.as_strided(
        xp, shape=(n_frames, spec.n_fft), strides=(xp.strides[0] * spec.hop, xp.strides[0]), writeable=False)
    win = signal.get_window("hann", spec.n_fft, fftbins=True).astype(np.float32)
    power = np.abs(np.fft.rfft(frames * win, axis=1)) ** 2
    mel = mel_filterbank(spec) @ power.T.astype(np.float32)
    return np.log(mel + spec.log_eps).astype(np.float32)


def prepare(x: np.ndarray, sr: int, spec: FeatureSpec) -> np.ndarray:
    """Mono signal at any rate -> band-passed, normalised signal at spec.sample_rate."""
    if not np.all(np.isfinite(x)):
        raise ValueError("heart-sound signal has NaN or infinite samples")
    if int(sr) <= 0:
        raise ValueError(f"sample rate {sr} Hz is not positive")
    y = resample(np.asarray(x, dtype=np.float32), sr, spec.sample_rate)
    return normalise(bandpass(y, spec))


def recording_logmel(x: np.ndarray, sr: int, spec: FeatureSpec) -> np.ndarray:
    return log_mel(prepare(x, sr, spec), spec)


def standardise(w: np.ndarray) -> np.ndarray:
    """Per-window z-score over time and frequency (works on (..., n_mels, frames))."""
    m = w.mean(axis=(-2, -1), keepdims=True)
    s = w.std(axis=(-2, -1), keepdims=True)
    return ((w - m) / np.maximum(s, 1e-3)).astype(np.float32)


def window_starts(n_frames: int, spec: FeatureSpec) -> np.ndarray:
    """Start frames of the inference windows; the last window is aligned to the end of the recording."""
    W, H = spec.window_frames, spec.hop_frames
    if n_frames <= W:
        return np.array([0])
    starts = list(range(0, n_frames - W + 1, H))
    if starts[-1] != n_frames - W:
        starts.append(n_frames - W)
    return np.array(starts)


def fit_length(m: np.ndarray, n: int) -> np.ndarray:
    """Pad a (n_mels, frames) array to n frames by wrapping it (a heart sound repeats), or crop."""
    if m.shape[1] >= n:
        return m[:, :n]
    reps = int(np.ceil(n / max(m.shape[1], 1)))
    return np.tile(m, (1, reps))[:, :n]


def windows(logmel: np.ndarray, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, n_mels, window_frames) standardised windows + their start times in seconds."""
    starts = window_starts(logmel.shape[1], spec)
    W = spec.window_frames
    ws = np.stack([fit_length(logmel[:, s:s + W], W) for s in starts])[:, None]
    return standardise(ws), starts / spec.frames_per_s


def display_spectrogram(x: np.ndarray, sr: int) -> tuple[np.ndarray, FeatureSpec]:
    """Log-mel power in dB for display (20–1000 Hz, 10 ms frames); not band-limited like the model's input."""
    rate = 4000 if sr >= 4000 else 2000 if sr >= 2000 else sr
    spec = FeatureSpec(sample_rate=rate, n_fft=512 if rate == 4000 else 256, hop=rate // 100, n_mels=96,
                       fmin_hz=20.0, fmax_hz=min(1000.0, 0.48 * rate))
    y = resample(x, sr, rate).astype(np.float64)
    if len(y) > 30:
        y = signal.sosfiltfilt(signal.butter(2, 15 / (rate / 2), btype="high", output="sos"), y)
    y = y / (np.percentile(np.abs(y), 99.5) + 1e-9)
    m = log_mel(y.astype(np.float32), spec) / np.log(10) * 10.0  # dB
    return m, spec

"""Lightbox's single-lead rhythm classifier: normal sinus rhythm / AF / other rhythm / too noisy.

Trained by ``lightbox ecg-rhythm-train`` (:mod:`inference.ecg.rhythm_train`) on the PhysioNet/CinC
Challenge 2017 recordings (AliveCor single lead, lead-I equivalent, 300 Hz, 9-61 s). Pure numpy/scipy
preprocessing and ONNX Runtime inference; no torch, no Qt.

Preprocessing (one definition, used by training and inference alike):

1. one lead in millivolts at any rate -> polyphase resampling to ``spec.fs`` (150 Hz);
2. Butterworth band-pass ``band_low_hz``-``band_high_hz`` (0.5-40 Hz), zero phase;
3. fixed windows of ``window_s`` (30 s): a recording up to one window long is one window, zero-padded at the
   end; a longer one is cut into windows every ``hop_s`` (15 s), the last one aligned to the end;
4. each window on its own: minus its median, divided by the 99th percentile of its absolute value (a robust
   amplitude scale: a few artefact spikes do not shrink the QRS complexes), clipped to +-``clip``; the
   zero-padding stays zero.

The model gives class probabilities per window. A recording's probabilities are the mean of its windows'
(the label is their argmax); for recordings longer than a window each window keeps its own label, which the
viewer draws as a coloured band so an AF episode can be seen in a long recording, and the AF burden is the
fraction of time in windows labelled AF.
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

CLASSES = ("normal", "af", "other", "noisy")
CHALLENGE_CODES = ("N", "A", "O", "~")  # REFERENCE.csv labels, in CLASSES order
LABELS = {"normal": "Normal sinus rhythm", "af": "Atrial fibrillation", "other": "Other rhythm",
          "noisy": "Too noisy to classify"}
SHORT = {"normal": "N", "af": "AF", "other": "Other", "noisy": "Noisy"}
COLOURS = {"normal": "#3fa34d", "af": "#d9342b", "other": "#e8a317", "noisy": "#8a8f98"}  # band colours
ONNX_META_KEY = "lightbox.ecg_rhythm"
MODEL_NAME = "ecg_rhythm_cnn"
MIN_SECONDS = 5.0  # shorter than the shortest training record (9 s) by a margin: refused, not guessed
TRAINED_LEAD = "I"


class RhythmError(ValueError):
    """The recording cannot be classified (too short, not finite, ...): a message for the user."""


@dataclass(frozen=True)
class RhythmSpec:
    fs: float = 150.0
    band_low_hz: float = 0.5
    band_high_hz: float = 40.0
    band_order: int = 3
    window_s: float = 30.0
    hop_s: float = 15.0
    clip: float = 8.0
    scale_percentile: float = 99.0

    @property
    def window(self) -> int:
        return int(round(self.window_s * self.fs))

    @property
    def hop(self) -> int:
        return int(round(self.hop_s * self.fs))

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "RhythmSpec":
        keys = cls.__dataclass_fields__.keys()
        return cls(**{k: d[k] for k in keys if k in d})


# -- preprocessing --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _fir(up: int, down: int) -> np.ndarray:
    """resample_poly's own default anti-aliasing filter (Kaiser, beta 5), designed once per rate pair."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def resample(x: np.ndarray, fs: float, target: float) -> np.ndarray:
    from scipy.signal import resample_poly

    if abs(fs - target) < 1e-9:
        return np.asarray(x, dtype=np.float64)
    frac = Fraction(float(target) / float(fs)).limit_denominator(1000)
    up, down = frac.numerator, frac.denominator
    g = np.gcd(up, down)
    up, down = up // g, down // g
    return resample_poly(np.asarray(x, dtype=np.float64), up, down, axis=-1, padtype="line", window=_fir(up, down))


@functools.lru_cache(maxsize=8)
def _sos(spec: RhythmSpec):
    from scipy.signal import butter

    return butter(spec.band_order, [spec.band_low_hz, spec.band_high_hz], btype="bandpass", fs=spec.fs, output="sos")


def preprocess(lead_mv: np.ndarray, fs: float, spec: RhythmSpec | None = None) -> np.ndarray:
    """One lead (mV, any rate) -> float32 at ``spec.fs``, band-passed, not yet normalised."""
    from scipy.signal import sosfiltfilt

    spec = spec or RhythmSpec()
    x = np.asarray(lead_mv, dtype=np.float64).ravel()
    if not (np.isfinite(fs) and fs > 0):
        raise RhythmError(f"sampling rate {fs!r} Hz is not a positive number")
    if not np.isfinite(x).all():
        raise RhythmError("the lead has missing (NaN) or infinite samples")
    x = resample(x, fs, spec.fs)
    if len(x) < 3 * 3 * spec.band_order + 1:
        raise RhythmError("the lead is too short to filter")
    x = sosfiltfilt(_sos(spec), x - np.median(x))
    return x.astype(np.float32)


def window_starts(n: int, spec: RhythmSpec) -> list[int]:
    """Start samples of the windows of an ``n``-sample preprocessed recording (see the module doc)."""
    W, H = spec.window, spec.hop
    if n <= W:
        return [0]
    starts = list(range(0, n - W + 1, H))
    if starts[-1] + W < n:
        starts.append(n - W)
    return starts


def normalise(w: np.ndarray, spec: RhythmSpec, valid: int | None = None) -> np.ndarray:
    """Per-window robust normalisation of a 1-D window; samples past ``valid`` (padding) stay 0."""
    w = np.asarray(w, dtype=np.float32)
    v = w if valid is None else w[:valid]
    out = np.zeros_like(w)
    if len(v) == 0:
        return out
    med = np.median(v)
    scale = float(np.percentile(np.abs(v - med), spec.scale_percentile))
    if not np.isfinite(scale) or scale < 1e-6:
        scale = 1.0  # a flat window stays (near) zero: the model sees no signal
    out[:len(v)] = np.clip((v - med) / scale, -spec.clip, spec.clip)
    return out


def make_windows(x: np.ndarray, spec: RhythmSpec) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed signal -> (windows (k, 1, W) float32 normalised, starts (k,) in model samples)."""
    W = spec.window
    starts = window_starts(len(x), spec)
    out = np.zeros((len(starts), 1, W), np.float32)
    for i, s in enumerate(starts):
        seg = x[s:s + W]
        out[i, 0, :len(seg)] = seg
        out[i, 0] = normalise(out[i, 0], spec, valid=len(seg))
    return out, np.asarray(starts, dtype=np.int64)


# -- result ---------------------------------------------------------------------------------------
@dataclass
class RhythmResult:
    label: str                       # one of CLASSES
    probabilities: dict[str, float]  # class -> recording probability (mean of windows)
    seconds: float                   # recording length analysed
    lead: str = TRAINED_LEAD
    windows: list[dict] = field(default_factory=list)  # {start_s, end_s, label, probabilities}
    af_burden: float = 0.0           # fraction of the recording in windows labelled AF
    notes: list[str] = field(default_factory=list)

    @property
    def display(self) -> str:
        return LABELS[self.label]

    def to_dict(self) -> dict:
        return {"label": self.label, "display": self.display, "probabilities": self.probabilities,
                "seconds": self.seconds, "lead": self.lead, "af_burden": self.af_burden,
                "windows": self.windows, "notes": self.notes}

    @classmethod
    def from_dict(cls, d: dict) -> "RhythmResult":
        return cls(label=d["label"], probabilities=dict(d["probabilities"]), seconds=float(d["seconds"]),
                   lead=d.get("lead", TRAINED_LEAD), windows=list(d.get("windows") or []),
                   af_burden=float(d.get("af_burden", 0.0)), notes=list(d.get("notes") or []))


def aggregate(win_probs: np.ndarray, starts: np.ndarray, n: int, spec: RhythmSpec,
              classes=CLASSES) -> tuple[np.ndarray, list[dict], float]:
    """Window probabilities -> (recording probabilities, per-window dicts, AF burden).

    Each window's band segment covers the part of the recording closest to its centre (windows overlap by
    ``window_s - hop_s``; the band shows one label per stretch of time, not overlapping bars)."""
    win_probs = np.asarray(win_probs, dtype=np.float64)
    rec = win_probs.mean(axis=0)
    W = spec.window
    centres = starts + np.minimum(W, n) / 2.0
    bounds = [0.0] + [float((centres[i] + centres[i + 1]) / 2) for i in range(len(starts) - 1)] + [float(n)]
    wins, af_time = [], 0.0
    for i, s in enumerate(starts):
        lab = classes[int(np.argmax(win_probs[i]))]
        t0, t1 = bounds[i] / spec.fs, bounds[i + 1] / spec.fs
        if lab == "af":
            af_time += t1 - t0
        wins.append({"start_s": round(t0, 3), "end_s": round(t1, 3),
                     "window_start_s": round(float(s) / spec.fs, 3),
                     "window_end_s": round(float(min(s + W, n)) / spec.fs, 3),
                     "label": lab, "probabilities": {c: round(float(p), 4) for c, p in zip(classes, win_probs[i])}})
    return rec, wins, af_time / max(n / spec.fs, 1e-9)


# -- ONNX model -----------------------------------------------------------------------------------
def read_onnx_metadata(path: str | Path) -> dict | None:
    from ..training import read_onnx_metadata as read

    return read(path, ONNX_META_KEY)


def default_model_path() -> Path:
    return Path(__file__).resolve().parents[2] / "resources" / "models" / f"{MODEL_NAME}.onnx"


class RhythmModel:
    """An ``ecg-rhythm-train`` ONNX file: preprocessing spec and classes come from its own metadata."""

    def __init__(self, path: str | Path | None = None, threads: int = 1, session=None):
        import onnxruntime as ort

        self.path = Path(path) if path else default_model_path()
        meta = read_onnx_metadata(self.path) or {}
        self.meta = meta
        self.spec = RhythmSpec.from_dict(meta.get("preprocessing") or {})
        self.classes = tuple(meta.get("classes") or CLASSES)
        if session is None:
            so = ort.SessionOptions()
            so.intra_op_num_threads = max(1, int(threads))
            so.inter_op_num_threads = 1
            session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def predict_windows(self, windows: np.ndarray, batch: int = 64) -> np.ndarray:
        if len(windows) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        out = [self.session.run(None, {self.input_name: windows[s:s + batch]})[0] for s in range(0, len(windows), batch)]
        return np.concatenate(out)

    def classify(self, lead_mv: np.ndarray, fs: float, lead: str = TRAINED_LEAD) -> RhythmResult:
        x = np.asarray(lead_mv, dtype=np.float64).ravel()
        secs = len(x) / float(fs) if fs else 0.0
        if secs < MIN_SECONDS:
            raise RhythmError(f"the recording is {secs:.1f} s; the rhythm model needs at least {MIN_SECONDS:g} s "
                              "(it was trained on 9-61 s recordings)")
        pre = preprocess(x, fs, self.spec)
        windows, starts = make_windows(pre, self.spec)
        probs = self.predict_windows(windows)
        return self.result(probs, starts, len(pre), lead, fs)

    def classify_many(self, leads: list[tuple[np.ndarray, float]], batch: int = 64) -> list[RhythmResult | RhythmError]:
        """Batched: windows of many recordings go through the network together (for batch runs/bench)."""
        prepared, pending, done = [], [], []
        total = n_pending = 0
        for x, fs in leads:
            try:
                x = np.asarray(x, dtype=np.float64).ravel()
                if len(x) / float(fs) < MIN_SECONDS:
                    raise RhythmError(f"the recording is {len(x) / float(fs):.1f} s; the rhythm model needs at least "
                                      f"{MIN_SECONDS:g} s")
                pre = preprocess(x, fs, self.spec)
                w, starts = make_windows(pre, self.spec)
                prepared.append((total, len(w), starts, len(pre), fs))
                total += len(w)
                pending.append(w)
                n_pending += len(w)
                if n_pending >= 4 * batch:  # windows go through the network as they accumulate: memory stays bounded
                    done.append(self.predict_windows(np.concatenate(pending), batch))
                    pending, n_pending = [], 0
            except RhythmError as e:
                prepared.append(e)
        if pending:
            done.append(self.predict_windows(np.concatenate(pending), batch))
        probs = np.concatenate(done) if done else np.zeros((0, len(self.classes)), np.float32)
        out: list[RhythmResult | RhythmError] = []
        for p in prepared:
            if isinstance(p, RhythmError):
                out.append(p)
                continue
            off, k, starts, n, fs = p
            out.append(self.result(probs[off:off + k], starts, n, TRAINED_LEAD, fs))
        return out

    def result(self, probs, starts, n, lead, fs) -> RhythmResult:
        rec, wins, burden = aggregate(probs, starts, n, self.spec, self.classes)
        label = self.classes[int(np.argmax(rec))]
        notes = []
        if n / self.spec.fs < 9.0:
            notes.append(f"Recording is {n / self.spec.fs:.1f} s: shorter than any training recording (9-61 s).")
        if lead != TRAINED_LEAD:
            notes.append(f"Lead {lead}: the model was trained on lead-I recordings (AliveCor); other leads are "
                         "outside what it was trained on.")
        if fs != self.spec.fs:
            notes.append(f"Resampled {fs:g} Hz -> {self.spec.fs:g} Hz for the rhythm model.")
        if len(starts) > 1:
            notes.append(f"{len(starts)} windows of {self.spec.window_s:g} s every {self.spec.hop_s:g} s; "
                         "recording probabilities are their mean.")
        return RhythmResult(label=label, probabilities={c: round(float(p), 4) for c, p in zip(self.classes, rec)},
                            seconds=round(n / self.spec.fs, 3), lead=lead, windows=wins,
                            af_burden=round(float(burden), 4), notes=notes)

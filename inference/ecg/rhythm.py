"""Lightbox's rhythm classifier: normal sinus rhythm / AF / other rhythm / too noisy, on every lead it is given.

Trained by ``lightbox ecg-rhythm-train`` (:mod:`inference.ecg.rhythm_train`) on the PhysioNet/CinC
Challenge 2017 recordings (AliveCor single lead, lead-I equivalent, 300 Hz, 9-61 s). Pure numpy/scipy
preprocessing and ONNX Runtime inference; no torch, no Qt.

Preprocessing (one definition, used by training and inference alike), per lead:

1. one lead in millivolts at any rate -> polyphase resampling to ``spec.fs`` (150 Hz);
2. Butterworth band-pass ``band_low_hz``-``band_high_hz`` (0.5-40 Hz), zero phase;
3. windows of ``window_s`` (30 s): a recording up to one window long is one window -- of its own length when
   the network takes any length (``spec.variable_length``, the v2 model: a 10-s ECG is a 10-s window, no
   padding), else zero-padded at the end (v1); a longer one is cut into windows every ``hop_s`` (15 s), the
   last one aligned to the end;
4. each window of each lead on its own: minus its median, divided by the 99th percentile of its absolute value
   (a robust amplitude scale: a few artefact spikes do not shrink the QRS complexes), clipped to +-``clip``;
   any zero-padding stays zero.

Leads: the model runs on each lead of ``decision.leads`` the recording has (v2: I, II, V1-V6, the eight
independent leads of a 12-lead ECG; a Holter's MLII (= II) and V5; an AliveCor's lead I) and a window's
probabilities are the mean over those leads (``decision.combine``). A recording's probabilities are the mean
of its windows'. The label is AF when p(AF) >= the decision's threshold for the window length (one for short
windows -- a 10-s ECG -- and one for 30-s windows, chosen on the validation split, model card), else the most
probable of the other classes; without a threshold the argmax (v1: always). For
recordings longer than a window each window keeps its own label, which the viewer draws as a coloured band,
and the AF burden is the fraction of time in windows labelled AF.
"""
from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from .ectopy import LONG_RECORDING_S, beats, isolated_ectopy

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
ALL_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
#: the independent leads of a 12-lead ECG (III, aVR, aVL, aVF are sums of I and II)
INDEPENDENT_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


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
    variable_length: bool = False  # the network takes windows of any length (v2); v1 pads to window_s

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


@dataclass(frozen=True)
class Decision:
    """How per-lead window probabilities become a label (embedded in the ONNX metadata as ``decision``).

    Two operating points, for the two uses the app makes of the model: windows up to ``short_window_s``
    (a 10-s resting ECG) call AF when p(AF) >= ``af_threshold``; longer windows (30-s windows of an AliveCor
    recording or a Holter) use ``af_threshold_long`` (None: the most probable class). Without thresholds
    (v1): argmax everywhere."""
    leads: tuple[str, ...] = (TRAINED_LEAD,)  # leads the model runs on, when the recording has them
    combine: str = "mean"                     # per-window probabilities: mean over the leads used
    af_threshold: float | None = None         # short windows: AF when p(AF) >= threshold (None: argmax)
    source: str = ""                          # where the thresholds were chosen (card)
    short_window_s: float = float("inf")      # windows up to this many seconds use af_threshold
    af_threshold_long: float | None = None    # longer windows (None: argmax)

    def threshold_for(self, window_s: float) -> float | None:
        return self.af_threshold if window_s <= self.short_window_s + 1e-9 else self.af_threshold_long

    def to_dict(self) -> dict:
        return {"leads": list(self.leads), "combine": self.combine, "af_threshold": self.af_threshold,
                "short_window_s": None if self.short_window_s == float("inf") else self.short_window_s,
                "af_threshold_long": self.af_threshold_long, "source": self.source}

    @classmethod
    def from_dict(cls, d: dict | None) -> "Decision":
        if not d:
            return cls()
        thr = None if d.get("af_threshold") is None else float(d["af_threshold"])
        short = d.get("short_window_s")
        if short is None:  # one threshold for every window length
            short, long_ = float("inf"), thr
        else:
            long_ = None if d.get("af_threshold_long") is None else float(d["af_threshold_long"])
        return cls(leads=tuple(d.get("leads") or (TRAINED_LEAD,)), combine=str(d.get("combine") or "mean"),
                   af_threshold=thr, source=str(d.get("source") or ""), short_window_s=float(short),
                   af_threshold_long=long_)


def decide(probs: np.ndarray, classes=CLASSES, af_threshold: float | None = None) -> np.ndarray:
    """Class index per row of ``probs`` (n, C): AF when p(AF) >= threshold, else the most probable other
    class; plain argmax without a threshold."""
    p = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    if af_threshold is None or "af" not in classes:
        return p.argmax(axis=1)
    a = list(classes).index("af")
    rest = p.copy()
    rest[:, a] = -np.inf
    return np.where(p[:, a] >= af_threshold, a, rest.argmax(axis=1))


# -- preprocessing --------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _fir(up: int, down: int) -> np.ndarray:
    """resample_poly's own default anti-aliasing filter (Kaiser, beta 5), designed once per rate pair."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    return firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def resample(x: np.ndarray, fs: float, target: float) -> np.ndarray:
    """Polyphase resampling along the last axis (one lead or a (leads, n) array)."""
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
    """One lead (mV, any rate) -> float32 at ``spec.fs``, band-passed, not yet normalised. A (leads, n) array
    is done lead by lead in one call (same numbers as one lead at a time)."""
    from scipy.signal import sosfiltfilt

    spec = spec or RhythmSpec()
    x = np.asarray(lead_mv, dtype=np.float64)
    x = x.ravel() if x.ndim != 2 else x
    if not (np.isfinite(fs) and fs > 0):
        raise RhythmError(f"sampling rate {fs!r} Hz is not a positive number")
    if not np.isfinite(x).all():
        raise RhythmError("the lead has missing (NaN) or infinite samples")
    x = resample(x, fs, spec.fs)
    if x.shape[-1] < 3 * 3 * spec.band_order + 1:
        raise RhythmError("the lead is too short to filter")
    x = sosfiltfilt(_sos(spec), x - np.median(x, axis=-1, keepdims=True), axis=-1)
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


def window_length(n: int, spec: RhythmSpec) -> int:
    """Samples per window of an ``n``-sample recording: its own length up to one window when the network
    takes any length, else always ``spec.window`` (zero-padded)."""
    return min(n, spec.window) if spec.variable_length else spec.window


def normalise(w: np.ndarray, spec: RhythmSpec, valid: int | None = None) -> np.ndarray:
    """Per-window robust normalisation along the last axis (one window or a stack of them); samples past
    ``valid`` (padding) stay 0."""
    w = np.asarray(w, dtype=np.float32)
    v = w if valid is None else w[..., :valid]
    out = np.zeros_like(w)
    if v.shape[-1] == 0:
        return out
    med = np.median(v, axis=-1, keepdims=True)
    # the scale_percentile-th percentile of |v - med| (numpy's linear interpolation), by partial sorting
    n = v.shape[-1]
    pos = spec.scale_percentile / 100.0 * (n - 1)
    lo = int(np.floor(pos))
    hi, frac = min(lo + 1, n - 1), np.float32(pos - lo)
    part = np.partition(np.abs(v - med), (lo, hi) if hi != lo else lo, axis=-1)
    scale = part[..., lo:lo + 1] * (1 - frac) + part[..., hi:hi + 1] * frac
    scale = np.where(np.isfinite(scale) & (scale >= 1e-6), scale, 1.0)  # a flat window stays (near) zero
    out[..., :v.shape[-1]] = np.clip((v - med) / scale, -spec.clip, spec.clip)
    return out


def make_windows(x: np.ndarray, spec: RhythmSpec) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed signal -> (windows float32 normalised, starts (k,) in model samples).

    One lead (n,): windows (k, 1, w). Several leads (L, n): windows (L * k, 1, w), lead-major (the k
    windows of the first lead, then the second's ...)."""
    x = np.asarray(x, dtype=np.float32)
    rows = x[None] if x.ndim == 1 else x
    n = rows.shape[-1]
    W = window_length(n, spec)
    starts = window_starts(n, spec)
    out = np.zeros((rows.shape[0], len(starts), W), np.float32)
    for i, s in enumerate(starts):
        seg = rows[:, s:s + W]
        out[:, i, :seg.shape[-1]] = seg
        out[:, i] = normalise(out[:, i], spec, valid=seg.shape[-1])
    return out.reshape(-1, 1, W), np.asarray(starts, dtype=np.int64)


# -- result ---------------------------------------------------------------------------------------
@dataclass
class RhythmResult:
    label: str                       # one of CLASSES
    probabilities: dict[str, float]  # class -> recording probability (mean of windows, of leads)
    seconds: float                   # recording length analysed
    lead: str = TRAINED_LEAD         # the leads used, as one display string ("II, V5"; "I, II, V1–V6")
    windows: list[dict] = field(default_factory=list)  # {start_s, end_s, label, probabilities}
    af_burden: float = 0.0           # fraction of the recording in windows labelled AF
    notes: list[str] = field(default_factory=list)
    leads: list[str] = field(default_factory=list)     # the leads used, in order
    per_lead: dict[str, dict] = field(default_factory=dict)  # lead -> {label, probabilities} (whole recording)
    af_threshold: float | None = None
    ectopic_windows: int = 0         # long recordings: 'other' windows shown as normal (isolated premature beats)

    @property
    def display(self) -> str:
        return LABELS[self.label]

    def to_dict(self) -> dict:
        return {"label": self.label, "display": self.display, "probabilities": self.probabilities,
                "seconds": self.seconds, "lead": self.lead, "leads": self.leads or [self.lead],
                "per_lead": self.per_lead, "af_threshold": self.af_threshold, "af_burden": self.af_burden,
                "ectopic_windows": self.ectopic_windows,
                "windows": self.windows, "notes": self.notes}

    @classmethod
    def from_dict(cls, d: dict) -> "RhythmResult":
        return cls(label=d["label"], probabilities=dict(d["probabilities"]), seconds=float(d["seconds"]),
                   lead=d.get("lead", TRAINED_LEAD), windows=list(d.get("windows") or []),
                   af_burden=float(d.get("af_burden", 0.0)), notes=list(d.get("notes") or []),
                   leads=list(d.get("leads") or [d.get("lead", TRAINED_LEAD)]), per_lead=dict(d.get("per_lead") or {}),
                   af_threshold=d.get("af_threshold"))


def leads_display(leads: list[str] | tuple[str, ...]) -> str:
    """'I, II, V1–V6' for the eight independent leads; otherwise the names joined."""
    leads = list(leads)
    v = [ld for ld in leads if ld.startswith("V")]
    if len(v) >= 3 and v == [f"V{i}" for i in range(int(v[0][1]), int(v[-1][1]) + 1)]:
        rest = [ld for ld in leads if not ld.startswith("V")]
        return ", ".join(rest + [f"{v[0]}–{v[-1]}"])
    return ", ".join(leads)


def aggregate(win_probs: np.ndarray, starts: np.ndarray, n: int, spec: RhythmSpec,
              classes=CLASSES, af_threshold: float | None = None) -> tuple[np.ndarray, list[dict], float]:
    """Window probabilities -> (recording probabilities, per-window dicts, AF burden).

    Each window's band segment covers the part of the recording closest to its centre (windows overlap by
    ``window_s - hop_s``; the band shows one label per stretch of time, not overlapping bars)."""
    win_probs = np.asarray(win_probs, dtype=np.float64)
    rec = win_probs.mean(axis=0)
    W = spec.window
    centres = starts + np.minimum(W, n) / 2.0
    bounds = [0.0] + [float((centres[i] + centres[i + 1]) / 2) for i in range(len(starts) - 1)] + [float(n)]
    labels = decide(win_probs, classes, af_threshold)
    wins, af_time = [], 0.0
    for i, s in enumerate(starts):
        lab = classes[int(labels[i])]
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


def _as_rows(x, leads) -> tuple[np.ndarray, list[str]]:
    """(leads, n) float64 and the lead names of one recording given as one lead or several."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        names = [leads] if isinstance(leads, str) else list(leads or [TRAINED_LEAD])
        return a[None], names[:1]
    if a.ndim != 2:
        raise RhythmError(f"expected one lead or a (leads, samples) array, got shape {a.shape}")
    names = [leads] if isinstance(leads, str) else list(leads or [])
    if len(names) != a.shape[0]:
        raise RhythmError(f"{a.shape[0]} leads given with {len(names)} lead names")
    return a, names


class RhythmModel:
    """An ``ecg-rhythm-train`` ONNX file: preprocessing spec, classes and decision from its own metadata."""

    def __init__(self, path: str | Path | None = None, threads: int = 1, session=None):
        import onnxruntime as ort

        self.path = Path(path) if path else default_model_path()
        meta = read_onnx_metadata(self.path) or {}
        self.meta = meta
        self.spec = RhythmSpec.from_dict(meta.get("preprocessing") or {})
        self.classes = tuple(meta.get("classes") or CLASSES)
        self.decision = Decision.from_dict(meta.get("decision"))
        if session is None:
            so = ort.SessionOptions()
            so.intra_op_num_threads = max(1, int(threads))
            so.inter_op_num_threads = 1
            session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def leads_to_use(self, available: list[str]) -> list[str]:
        """The leads the model runs on, of those a recording has: the decision's leads present, in the
        recording's order; a recording with none of them uses its first lead."""
        use = [ld for ld in available if ld in self.decision.leads]
        return use or list(available[:1])

    def predict_windows(self, windows: np.ndarray, batch: int = 64) -> np.ndarray:
        if len(windows) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        out = [self.session.run(None, {self.input_name: windows[s:s + batch]})[0] for s in range(0, len(windows), batch)]
        return np.concatenate(out)

    def _check_length(self, n: int, fs: float) -> None:
        if n / float(fs) < MIN_SECONDS:
            raise RhythmError(f"the recording is {n / float(fs):.1f} s; the rhythm model needs at least "
                              f"{MIN_SECONDS:g} s (it was trained on 9-61 s recordings)")

    def classify(self, lead_mv: np.ndarray, fs: float, lead: str | list[str] = TRAINED_LEAD) -> RhythmResult:
        """One lead (n,) named ``lead``, or several (L, n) named by the list ``lead``: every lead given is used."""
        rows, names = _as_rows(lead_mv, lead)
        self._check_length(rows.shape[1], fs)
        pre = preprocess(rows, fs, self.spec)
        windows, starts = make_windows(pre, self.spec)
        probs = self.predict_windows(windows)
        return self.result(probs, starts, pre.shape[1], names, fs, pre)

    def classify_many(self, items: list[tuple], batch: int = 64, chunk: int = 64) -> list[RhythmResult | RhythmError]:
        """Batched: windows of many recordings go through the network together (for batch runs/bench).

        Each item is ``(lead, fs)``, ``(lead, fs, name)`` or ``((L, n) leads, fs, [names])``. Recordings of one
        rate and length are preprocessed together (``chunk`` at a time: one resampling and one filter call for
        all their leads, the same numbers as one at a time); windows of one length run together (a 10-s ECG's
        windows are 10 s, a 30-s one's 30 s)."""
        prepared: list = [None] * len(items)
        groups: dict[tuple[float, int], list] = {}
        for k, item in enumerate(items):
            x, fs = item[0], item[1]
            names = item[2] if len(item) > 2 else TRAINED_LEAD
            try:
                rows, names = _as_rows(x, names)
                self._check_length(rows.shape[1], fs)
                if not (np.isfinite(fs) and fs > 0):
                    raise RhythmError(f"sampling rate {fs!r} Hz is not a positive number")
                if not np.isfinite(rows).all():
                    raise RhythmError("the lead has missing (NaN) or infinite samples")
                groups.setdefault((float(fs), rows.shape[1]), []).append((k, rows, names))
            except RhythmError as e:
                prepared[k] = e
        pending: dict[int, list[np.ndarray]] = {}
        counts: dict[int, int] = {}
        where: dict[int, tuple[int, int]] = {}
        for (fs, _), members in groups.items():
            for c in range(0, len(members), chunk):
                part = members[c:c + chunk]
                try:
                    pre_all = preprocess(np.concatenate([r for _, r, _ in part]), fs, self.spec)
                except RhythmError as e:
                    for k, _, _ in part:
                        prepared[k] = e
                    continue
                w_all, starts = make_windows(pre_all, self.spec)
                W, nk = w_all.shape[-1], len(starts)
                pending.setdefault(W, []).append(w_all)
                row = 0
                for k, rows, names in part:
                    L = rows.shape[0]
                    where[k] = (W, counts.get(W, 0) + row * nk)
                    pre = pre_all[row:row + L]
                    keep = pre if pre.shape[1] / self.spec.fs > LONG_RECORDING_S else None  # for the ectopy check
                    prepared[k] = (L * nk, starts, pre.shape[1], names, fs, keep)
                    row += L
                counts[W] = counts.get(W, 0) + len(w_all)
        probs = {W: self.predict_windows(np.concatenate(ws), batch) for W, ws in pending.items()}
        out: list[RhythmResult | RhythmError] = []
        for k, p in enumerate(prepared):
            if isinstance(p, RhythmError):
                out.append(p)
                continue
            m, starts, n, names, fs, keep = p
            W, off = where[k]
            out.append(self.result(probs[W][off:off + m], starts, n, names, fs, keep))
        return out

    def result(self, probs, starts, n, leads, fs, pre: np.ndarray | None = None) -> RhythmResult:
        """``probs``: (len(leads) * k, C) lead-major window probabilities of one recording; ``pre``: its
        preprocessed leads, for the isolated-ectopy check of long recordings (``inference.ecg.ectopy``)."""
        leads = [leads] if isinstance(leads, str) else list(leads)
        k = len(starts)
        per = np.asarray(probs, dtype=np.float64).reshape(len(leads), k, len(self.classes))
        win = per.mean(axis=0)  # decision.combine == "mean"
        thr = self.decision.threshold_for(min(n, self.spec.window) / self.spec.fs)
        rec, wins, burden = aggregate(win, np.asarray(starts), n, self.spec, self.classes, thr)
        label = self.classes[int(decide(rec, self.classes, thr)[0])]
        ectopic_windows = ectopic_beats = 0
        if pre is not None and n / self.spec.fs > LONG_RECORDING_S and "other" in self.classes:
            x0 = np.asarray(pre)[0] if np.asarray(pre).ndim == 2 else np.asarray(pre)
            for w in wins:
                if w["label"] != "other":
                    continue
                a, b = int(round(w["window_start_s"] * self.spec.fs)), int(round(w["window_end_s"] * self.spec.fs))
                e = isolated_ectopy(beats(x0[a:b], self.spec.fs), self.spec.fs)
                if e:
                    w.update(label="normal", model_label="other", ectopic_beats=e)
                    ectopic_windows, ectopic_beats = ectopic_windows + 1, ectopic_beats + e
        per_lead = {}
        for j, ld in enumerate(leads):
            pr = per[j].mean(axis=0)
            per_lead[ld] = {"label": self.classes[int(decide(pr, self.classes, thr)[0])],
                            "probabilities": {c: round(float(v), 4) for c, v in zip(self.classes, pr)}}
        notes = []
        secs = n / self.spec.fs
        if secs < 9.0:
            notes.append(f"Recording is {secs:.1f} s: shorter than any training recording (9-61 s).")
        if len(leads) > 1:
            notes.append(f"Leads used: {leads_display(leads)} — the model runs on each and the window probabilities "
                         "are their mean.")
        trained = self.decision.leads if len(self.decision.leads) > 1 else (TRAINED_LEAD,)
        outside = [ld for ld in leads if ld not in trained]
        if outside:
            notes.append(f"Lead {', '.join(outside)}: the model was trained on lead-I recordings (AliveCor) and is "
                         f"used on {leads_display(list(trained))}; other leads are outside what it was trained on.")
        if fs != self.spec.fs:
            notes.append(f"Resampled {fs:g} Hz -> {self.spec.fs:g} Hz for the rhythm model.")
        if k > 1:
            notes.append(f"{k} windows of {self.spec.window_s:g} s every {self.spec.hop_s:g} s; "
                         "recording probabilities are their mean.")
        if ectopic_windows:
            notes.append(f"{ectopic_windows} window(s) the model called 'other rhythm' hold a regular rhythm with "
                         f"isolated premature beats only ({ectopic_beats} in all, lead {leads[0]}): shown as normal, "
                         "the premature beats counted (long recordings; rule in inference/ecg/ectopy.py).")
        return RhythmResult(label=label, probabilities={c: round(float(p), 4) for c, p in zip(self.classes, rec)},
                            seconds=round(secs, 3), lead=leads_display(leads), windows=wins,
                            af_burden=round(float(burden), 4), notes=notes, leads=leads, per_lead=per_lead,
                            af_threshold=thr, ectopic_windows=ectopic_windows)

"""ECG pipelines: ECG2AF (the heads its file declares) and the model-free rhythm measurements.

``ecg2af``       the published Broad Institute model (Keras .h5). Its verified weights are loaded by the
                 authors' path (``load_model(..., compile=False)`` with the Keras that wrote the file);
                 its heads are decoded by the names the file declares; when an ONNX twin derived
                 from those exact weights exists (``lightbox weights export ecg2af``) it runs on ONNX
                 Runtime instead (same numbers to 1e-4, much faster start-up).
``ecg-measure``  heart rate, RR intervals and R peaks from neurokit2 on lead II (no weights).
``ecg-rhythm``   Lightbox's own single-lead rhythm classifier (normal / AF / other / too noisy), trained on
                 PhysioNet/CinC 2017 with ``lightbox ecg-rhythm-train`` and bundled
                 (resources/models/ecg_rhythm_cnn.onnx); ``clinical = false``: NOT A CLINICAL RESULT. It
                 runs on lead I (the lead it was trained on) unless another is asked for:
                 ``ecg-rhythm:II`` runs it on lead II. Any rate (resampled), any length (windows).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.ecg import ecg2af as E
from inference.registry import Registry, WeightsError
from inference.results import Result, jsonable
from inference.runtimes import KerasRuntime, OnnxRuntime, cpu_label
from inference.study import ReadError, Study

MODELS = ("ecg2af", "ecg-rhythm", "ecg-measure")  # default: the first usable (ECG2AF once installed)
MEASURE_ID = "ecg-measure"
RHYTHM_ID = "ecg-rhythm"
MEASURE_MAX_S = 1800.0  # R-peak detection covers at most the first 30 min
#: the rhythm model's lead when the caller names none: the lead it was trained on first
RHYTHM_MODEL_LEADS = ("I", "II", "aVF", "V5", "V6", "III", "aVL", "V4", "V3", "V2", "V1", "aVR")
RHYTHM_LEAD_ORDER = ("II", "I", "V5", "V2", "aVF", "III", "V1", "V6", "V3", "V4", "aVL", "aVR")

_cache: dict[tuple[str, str], Any] = {}
_cache_lock = threading.Lock()
_import_lock = threading.Lock()


def _import_serialised(name: str):
    """Import a heavy module by one thread at a time. Opening an ECG starts the measurements (neurokit2,
    which pulls in scipy and scikit-learn) and the rhythm model (ONNX Runtime, scipy.signal) on two
    workers at once, and two viewers do so together in compare-with-prior. A rare crash there had those
    first imports in flight on two threads; serialising them is a mitigation, not a proven fix (the
    crash still occurred in 1 of 4 runs of one test combination with this in place)."""
    import importlib
    import sys

    mod = sys.modules.get(name)
    # a module is in sys.modules while its first import is still running on another thread: only a
    # finished one may be returned without the lock ("partially initialized module 'neurokit2' has no
    # attribute 'ecg_clean'" when two viewers measured at once)
    if mod is not None and not getattr(getattr(mod, "__spec__", None), "_initializing", False):
        return mod
    with _import_lock:
        return importlib.import_module(name)


def _neurokit():
    return _import_serialised("neurokit2")


# -- model-free measurements --------------------------------------------------------------------
def measure(signal_mv: np.ndarray, fs: float, lead: str | None = None) -> dict[str, Any]:
    """R peaks, RR intervals and heart rate from neurokit2 (``ecg_clean`` + ``ecg_peaks``).

    Uses lead II unless it is missing or flat, then the next usable lead. Returns JSON-able values;
    ``r_peaks`` are sample indices at ``fs``.
    """
    nk = _neurokit()
    sig = np.asarray(signal_mv)  # rows are converted one at a time: a long recording is not copied whole
    order = ([lead] if lead else []) + [ld for ld in RHYTHM_LEAD_ORDER if ld != lead]
    chosen = None
    for name in order:
        i = E.LEADS.index(name)
        row = sig[i]
        if np.isfinite(row).all() and np.ptp(row) > 0.05:
            chosen = name
            break
    if chosen is None:
        raise ReadError(None, "no usable lead for rhythm measurements (all missing or flat)")
    x = sig[E.LEADS.index(chosen)]
    total_s = len(x) / fs
    if total_s > MEASURE_MAX_S:  # a Holter-length file: R peaks of its first 30 min (memory and time bounded)
        x = x[:int(MEASURE_MAX_S * fs)]
    x = np.asarray(x, dtype=np.float64)
    cleaned = nk.ecg_clean(x, sampling_rate=int(round(fs)), method="neurokit")
    _, info = nk.ecg_peaks(cleaned, sampling_rate=int(round(fs)), method="neurokit", correct_artifacts=False)
    peaks = np.asarray(info["ECG_R_Peaks"], dtype=int)
    peaks = peaks[(peaks >= 0) & (peaks < len(x))]
    out: dict[str, Any] = {"lead": chosen, "r_peaks": peaks.tolist(), "n_beats": int(len(peaks)),
                           "duration_s": round(len(x) / fs, 3), "recording_s": round(total_s, 3), "method": "neurokit2 ecg_clean + ecg_peaks (neurokit)",
                           "neurokit2": nk.__version__}
    if len(peaks) >= 2:
        rr = np.diff(peaks) / fs * 1000.0
        out.update({
            "heart_rate_bpm": float(60000.0 / rr.mean()),
            "rr_ms": [round(float(v), 1) for v in rr],
            "rr_mean_ms": float(rr.mean()),
            "rr_sd_ms": float(rr.std(ddof=1)) if len(rr) > 1 else 0.0,
            "rr_min_ms": float(rr.min()),
            "rr_max_ms": float(rr.max()),
        })
    else:
        out.update({"heart_rate_bpm": None, "rr_ms": []})
    return out


def _analyse_measure(study: Study, registry: Registry, ctx) -> Result:
    ctx.progress(0.1, "Detecting R peaks (neurokit2)")
    t0 = time.perf_counter()
    m = measure(study.data["signal_mv"], study.data["fs"])
    secs = time.perf_counter() - t0
    hr = m.get("heart_rate_bpm")
    outputs = {
        "heart_rate_bpm": round(hr, 1) if hr else None,
        "rr_mean_ms": round(m["rr_mean_ms"], 1) if hr else None,
        "rr_sd_ms": round(m["rr_sd_ms"], 1) if hr else None,
        "rr_min_ms": m.get("rr_min_ms"),
        "rr_max_ms": m.get("rr_max_ms"),
        "beats": m["n_beats"],
        "lead": m["lead"],
        "rr_ms": m["rr_ms"],
        "r_peak_times_s": [round(p / study.data["fs"], 4) for p in m["r_peaks"]],
    }
    notes = [f"R peaks by {m['method']} on lead {m['lead']} (neurokit2 {m['neurokit2']}), "
             + (f"over the whole {m['duration_s']:.1f} s recording." if m["recording_s"] <= m["duration_s"] + 1e-6
                else f"over the first {m['duration_s'] / 60:.0f} min of the {m['recording_s'] / 60:.0f}-min recording.")]
    ctx.progress(1.0, "Done")
    return Result(MEASURE_ID, "", "numpy", cpu_label(), secs, jsonable(outputs), clinical=True, notes=notes,
                  arrays={"r_peaks": np.asarray(m["r_peaks"])})


# -- ECG2AF ----------------------------------------------------------------------------------------
def model_batch(studies_or_inputs) -> np.ndarray:
    """(n, 5000, 12) float32 normalised input from Studies or raw (5000, 12) mV arrays."""
    xs = []
    for s in studies_or_inputs:
        x = s.data["model_input"] if isinstance(s, Study) else np.asarray(s)
        xs.append(x)
    return E.normalise(np.stack(xs).astype(np.float32))


def check_input(study: Study) -> None:
    x = study.data.get("model_input")
    if x is None or x.shape != (E.N_SAMPLES, len(E.LEADS)):
        raise ReadError(study.source, "this study has no 12-lead 500 Hz input for ECG2AF")
    missing = study.metadata.get("missing_leads") or []
    if missing:
        raise ReadError(study.source, f"ECG2AF needs all 12 leads; missing: {', '.join(missing)}")
    if not np.isfinite(x).all():
        raise ReadError(study.source, "the ECG2AF input has missing samples")


def onnx_path(registry: Registry, model_id: str = E.MODEL_ID) -> Path:
    return registry.derived_path(model_id, ".onnx")


def runtime_for(registry: Registry, model_id: str = E.MODEL_ID, prefer: str = "auto"):
    """(runtime, state): the ONNX twin when it exists (and prefer != 'keras'), else the Keras file."""
    st = registry.require(model_id)
    onnx = onnx_path(registry, model_id)
    use_onnx = prefer == "onnx" or (prefer == "auto" and onnx.exists())
    key = ("onnx" if use_onnx else "keras", st.sha256)
    with _cache_lock:
        rt = _cache.get(key)
    if rt is None:
        if use_onnx:
            if not onnx.exists():
                raise FileNotFoundError(f"no ONNX export yet: run 'lightbox weights export {model_id}'")
            rt = OnnxRuntime(onnx)
        else:
            rt = KerasRuntime(_load_keras(registry, st))
        with _cache_lock:
            _cache[key] = rt
    return rt, st


def _load_keras(registry: Registry, st):
    """The verified file through the authors' loader; a file Lightbox refuses (code-carrying layers,
    an output head it cannot decode) is a WeightsError naming the reason."""
    try:
        # the published file (hash verified) is trusted as released; anything else is inspected
        return E.load_keras(registry.path_of(st.entry), trusted=st.clinical)
    except E.ModelFileError as e:
        raise WeightsError(f"{st.entry.title}: {e}") from None


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def run_batch(runtime, x: np.ndarray, batch_size: int = 16) -> dict[str, np.ndarray]:
    outs: dict[str, list[np.ndarray]] = {}
    name = runtime.input_names[0]  # ECG2AF has one input; feed it whatever the file calls it
    for i in range(0, len(x), batch_size):
        r = runtime.run({name: x[i:i + batch_size]})
        for k, v in r.items():
            outs.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in outs.items()}


OUTPUT_KEYS = ("af_risk_5y", "sex_male_probability", "sex_female_probability", "age_years", "age_head_raw",
               "af_in_read_probability", "death_risk_10y", "survival_days", "af_free_survival")


def decoded_outputs(raw: dict[str, np.ndarray], index: int = 0) -> tuple[dict[str, Any], list[str]]:
    """The result outputs and notes for ECG ``index``: decoded by the head names the model declares."""
    d = E.decode(raw, index)
    outputs = {k: d[k] for k in OUTPUT_KEYS}
    outputs["heads"] = sorted(raw)
    notes = []
    if d["age_years"] is None and d["age_head_raw"] is not None:
        notes.append("Age head (2024 model, age_in_days): trained with ZeroMeanStd1 normalisation, which has no "
                     "inverse and no published scale; shown raw, not in years.")
    if d["death_risk_10y"] is not None:
        notes.append("Death risk = 1 − cumulative survival of the death head over 25 intervals (10 years).")
    return outputs, notes


def _analyse_ecg2af(study: Study, model_id: str, registry: Registry, ctx, prefer: str = "auto") -> Result:
    check_input(study)
    ctx.progress(0.05, "Loading ECG2AF")
    rt, st = runtime_for(registry, model_id, prefer)
    ctx.progress(0.4, f"Running ECG2AF on {rt.name}")
    x = model_batch([study])
    t0 = time.perf_counter()
    raw = rt.run({rt.input_names[0]: x})
    secs = time.perf_counter() - t0
    ctx.progress(0.9, "Decoding")
    outputs, head_notes = decoded_outputs(raw)
    notes = ["AF risk = 1 − cumulative AF-free survival over 25 intervals (5 years), as the ECG2AF authors "
             "decode the survival-curve head.", "Input: 12 × 5000 samples at 500 Hz, ZeroMeanStd1 normalised.",
             "Heads decoded by the names the model file declares: " + ", ".join(sorted(raw)) + "."]
    notes += head_notes
    notes += [n for n in study.notes if "ECG2AF" in n]
    if not st.clinical:
        notes.append("Computed with non-official weights.")
    ctx.progress(1.0, "Done")
    return Result(model_id, st.sha256 or "", rt.name, rt.device, secs, jsonable(outputs), clinical=st.clinical,
                  notes=notes, arrays={k: np.asarray(v) for k, v in raw.items()})


# -- Lightbox rhythm classifier ---------------------------------------------------------------------
def split_model_id(model_id: str) -> tuple[str, str | None]:
    """'ecg-rhythm:II' -> ('ecg-rhythm', 'II'); 'ecg-rhythm' -> ('ecg-rhythm', None)."""
    base, _, lead = model_id.partition(":")
    return base, (lead or None)


def usable_leads(study: Study) -> list[str]:
    """Leads with a finite, non-flat signal, in ECG2AF order."""
    sig = study.data["signal_mv"]
    out = []
    for i, name in enumerate(E.LEADS):
        row = sig[i]
        if np.isfinite(row).all() and np.ptp(row) > 0.05:
            out.append(name)
    return out


def rhythm_lead(study: Study, lead: str | None = None) -> str:
    ok = usable_leads(study)
    if lead:
        if lead not in E.LEADS:
            raise ReadError(study.source, f"no lead named {lead!r} (leads: {', '.join(E.LEADS)})")
        if lead not in ok:
            raise ReadError(study.source, f"lead {lead} is missing or flat in this ECG; usable: {', '.join(ok) or 'none'}")
        return lead
    for name in RHYTHM_MODEL_LEADS:
        if name in ok:
            return name
    raise ReadError(study.source, "no usable lead for the rhythm model (all missing or flat)")


def rhythm_model(registry: Registry, model_id: str = RHYTHM_ID):
    """(RhythmModel, weights state), the ONNX session cached per file and hash."""
    for name in ("scipy.signal", "onnxruntime"):
        _import_serialised(name)
    RhythmModel = _import_serialised("inference.ecg.rhythm").RhythmModel

    st = registry.require(model_id)
    path = registry.path_of(st.entry)
    key = ("rhythm", str(path), st.sha256 or "")
    with _cache_lock:
        m = _cache.get(key)
    if m is None:
        from inference.ecg.rhythm import RhythmSpec
        from inference.registry import WeightsError

        m = RhythmModel(path)
        pre = (st.entry.inputs or {}).get("preprocessing")
        if pre and RhythmSpec.from_dict(dict(pre)) != m.spec:
            raise WeightsError(f"{st.entry.title}: the manifest's preprocessing differs from the one {path.name} "
                               "was trained with; refusing to run a mismatched model")
        with _cache_lock:
            _cache[key] = m
    return m, st


def rhythm_outputs(r) -> dict[str, Any]:
    """Result outputs of a RhythmResult: scalars first (one CSV column each in ``lightbox batch``)."""
    from inference.ecg.rhythm import LABELS

    out: dict[str, Any] = {
        "rhythm": r.label,
        "rhythm_label": LABELS.get(r.label, r.label),
        "probability": r.probabilities[r.label],
        **{f"p_{c}": p for c, p in r.probabilities.items()},
        "probabilities": dict(r.probabilities),  # the same, as one mapping (lightbox evaluate reads it)
        "lead": r.lead,
        "duration_s": r.seconds,
        "windows": len(r.windows),
        "af_burden": r.af_burden,
        "_windows": r.windows,  # the per-window band (machine payload)
    }
    return out


def _analyse_rhythm(study: Study, model_id: str, registry: Registry, ctx, lead: str | None = None) -> Result:
    from inference.ecg.rhythm import RhythmError

    ctx.progress(0.05, "Loading the rhythm model")
    model, st = rhythm_model(registry, model_id)
    name = rhythm_lead(study, lead)
    x = study.data["signal_mv"][E.LEADS.index(name)]
    ctx.progress(0.3, f"Classifying the rhythm on lead {name}")
    t0 = time.perf_counter()
    try:
        r = model.classify(x, float(study.data["fs"]), lead=name)
    except RhythmError as e:
        raise ReadError(study.source, str(e)) from None
    secs = time.perf_counter() - t0
    notes = [f"Lightbox rhythm model on lead {name}: {model.spec.window_s:g}-s windows at {model.spec.fs:g} Hz; "
             "recording probabilities = mean of the windows'."] + r.notes
    ctx.progress(1.0, "Done")
    return Result(model_id, st.sha256 or "", "onnxruntime", cpu_label(), secs, jsonable(rhythm_outputs(r)),
                  clinical=st.clinical, notes=notes)


def _rhythm_many(studies: list[Study], model_id: str, registry: Registry) -> list[Result | Exception]:
    """Batched rhythm classification: the windows of many ECGs go through the network together."""
    from inference.ecg.rhythm import RhythmError

    model, st = rhythm_model(registry, model_id)
    out: list[Result | Exception] = [None] * len(studies)  # type: ignore[list-item]
    jobs, idx = [], []
    for i, s in enumerate(studies):
        try:
            name = rhythm_lead(s)
            jobs.append((s.data["signal_mv"][E.LEADS.index(name)], float(s.data["fs"])))
            idx.append((i, name))
        except ReadError as e:
            out[i] = e
    t0 = time.perf_counter()
    res = model.classify_many(jobs) if jobs else []
    per = (time.perf_counter() - t0) / max(len(jobs), 1)
    for (i, name), r in zip(idx, res):
        if isinstance(r, RhythmError):
            out[i] = ReadError(studies[i].source, str(r))
            continue
        r.lead = name
        if name != "I":
            r.notes.append(f"Lead {name}: the model was trained on lead-I recordings; other leads are outside what "
                           "it was trained on.")
        out[i] = Result(model_id, st.sha256 or "", "onnxruntime", cpu_label(), per, jsonable(rhythm_outputs(r)),
                        clinical=st.clinical, notes=["batch run"] + r.notes)
    return out


def analyse(study: Study, model_id: str, registry: Registry, ctx) -> Result:
    base, lead = split_model_id(model_id)
    if base == RHYTHM_ID:
        return _analyse_rhythm(study, base, registry, ctx, lead)
    if model_id == MEASURE_ID:
        return _analyse_measure(study, registry, ctx)
    if model_id == E.MODEL_ID:
        return _analyse_ecg2af(study, model_id, registry, ctx)
    raise ValueError(f"unknown ECG model {model_id!r}; known: {', '.join(MODELS)}")


def analyse_many(studies: list[Study], model_id: str, registry: Registry, ctx,
                 batch_size: int = 16) -> list[Result | Exception]:
    """Batched ECG2AF for ``lightbox batch``: one model call per ``batch_size`` ECGs (same numbers as
    ``analyse``, about twice the throughput on CPU). Returns a Result or the error for each study."""
    if model_id == RHYTHM_ID:
        return _rhythm_many(studies, model_id, registry)
    if model_id != E.MODEL_ID:
        return [_or_error(lambda s=s: analyse(s, model_id, registry, ctx)) for s in studies]
    out: list[Result | Exception] = [None] * len(studies)  # type: ignore[list-item]
    ok = []
    for i, s in enumerate(studies):
        try:
            check_input(s)
            ok.append(i)
        except ReadError as e:
            out[i] = e
    if not ok:
        return out
    rt, st = runtime_for(registry, model_id)
    t0 = time.perf_counter()
    raw = run_batch(rt, model_batch([studies[i] for i in ok]), batch_size)
    per = (time.perf_counter() - t0) / len(ok)
    for k, i in enumerate(ok):
        outputs, head_notes = decoded_outputs(raw, k)
        notes = ["batch run"] + head_notes + ([] if st.clinical else ["Computed with non-official weights."])
        out[i] = Result(model_id, st.sha256 or "", rt.name, rt.device, per, jsonable(outputs),
                        clinical=st.clinical, notes=notes)
    return out


def _or_error(fn):
    try:
        return fn()
    except Exception as e:  # the batch runner turns it into the row's error
        return e


def export_onnx(registry: Registry, model_id: str = E.MODEL_ID) -> Path:
    """Write the ONNX twin of the verified Keras weights (named after their sha256)."""
    if model_id != E.MODEL_ID:
        raise ValueError(f"{model_id}: no ONNX export")
    st = registry.require(model_id)
    model = _load_keras(registry, st)
    out = onnx_path(registry, model_id)
    tmp = out.with_name(out.name + ".part")
    try:
        E.export_onnx_file(model, tmp)
    except E.ModelFileError as e:
        raise WeightsError(f"{st.entry.title}: {e}") from None
    tmp.replace(out)
    clear_cache()
    return out

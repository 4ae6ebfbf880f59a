"""ECG pipelines: ECG2AF (the heads its file declares) and the model-free rhythm measurements.

``ecg2af-2024``, ``ecg2af``, ``ecg2af-strip-I``, ``ecg2af-strip-II``: the published Broad Institute files
                 (``inference.ecg.ecg2af_files``: the 2024 main model, the 2021 12-lead model, the single-lead
                 strip models for 1-2-lead recordings), each with its own input leads and normalisation,
                 established from ml4h's history. Verified weights are loaded by the authors' path (``load_model(..., compile=False)`` with the Keras that wrote the file);
                 its heads are decoded by the names the file declares; when an ONNX twin derived
                 from those exact weights exists (``lightbox weights export ecg2af``) it runs on ONNX
                 Runtime instead (same numbers to 1e-4, much faster start-up).
``ecg-measure``  heart rate, RR intervals and R peaks from neurokit2 on lead II (no weights).
``ecg-rhythm``   Lightbox's own rhythm classifier (normal / AF / other / too noisy), trained on
                 PhysioNet/CinC 2017 with ``lightbox ecg-rhythm-train`` and bundled
                 (resources/models/ecg_rhythm_cnn.onnx); ``clinical = false``: NOT A CLINICAL RESULT. It
                 runs on every lead of the model's decision leads the recording has (I, II, V1-V6 of a 12-lead
                 ECG, MLII + V5 of a Holter, lead I of an AliveCor) and averages them; ``ecg-rhythm:II`` runs it
                 on lead II alone. Any rate (resampled), any length (windows). The result names the leads.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.ecg import ecg2af as E
from inference.ecg import ecg2af_files as F
from inference.registry import Registry, WeightsError
from inference.results import Result, jsonable
from inference.runtimes import KerasRuntime, OnnxRuntime, cpu_label
from inference.study import ReadError, Study

#: default: the first usable (ECG2AF 2024, then 2021, once installed; the strip files for 1-2-lead recordings)
MODELS = F.MODEL_IDS + ("ecg-rhythm", "ecg-measure")
MEASURE_ID = "ecg-measure"
RHYTHM_ID = "ecg-rhythm"
MEASURE_MAX_S = 1800.0  # R-peak detection covers at most the first 30 min
#: the order of the leads the rhythm model runs on (of those its decision names and the recording has); a
#: recording with none of them uses the first it has, in this order (the lead the model was trained on first)
RHYTHM_MODEL_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "aVF", "III", "aVL", "aVR")
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

    # always under the lock: while one thread imports, sys.modules already holds the half-built module, and
    # a second thread handed that ("partially initialized module 'neurokit2' has no attribute 'ecg_clean'",
    # seen with two ECG viewers in compare-with-prior) fails; a finished import is a dictionary look-up
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
def model_batch(studies_or_inputs, model_id: str = E.MODEL_ID, how: str | None = None) -> np.ndarray:
    """(n, 5000, k) float32 normalised input of the published file ``model_id`` (its leads, its normalisation)
    from Studies or raw (5000, 12) mV arrays."""
    f = F.published(model_id)
    cols = [E.LEADS.index(ld) for ld in f.leads]
    xs = []
    for s in studies_or_inputs:
        x = s.data["model_input"] if isinstance(s, Study) else np.asarray(s)
        xs.append(x[:, cols] if x.shape[-1] == len(E.LEADS) else x)
    return E.normalise(np.stack(xs).astype(np.float32), how or f.normalisation)


def check_input(study: Study, model_id: str = E.MODEL_ID) -> None:
    f = F.published(model_id)
    x = study.data.get("model_input")
    if x is None or x.shape != (E.N_SAMPLES, len(E.LEADS)):
        raise ReadError(study.source, "this study has no 500 Hz input for ECG2AF")
    missing = [ld for ld in f.leads if ld in (study.metadata.get("missing_leads") or [])
               or ld in (study.metadata.get("flat_leads") or []) and f.is_strip]
    if missing and f.is_strip:
        other = [g for g in F.FILES.values() if g.is_strip and g.leads[0] not in missing]
        raise ReadError(study.source, f"ECG2AF {f.short} needs lead {f.leads[0]}, which this recording does not have"
                        + (f"; use ECG2AF {other[0].short}" if other else ""))
    if missing:
        present = [ld for ld in E.LEADS if ld not in (study.metadata.get("missing_leads") or [])]
        hint = ""
        if len(present) <= 2 and any(ld in present for ld in ("I", "II")):
            lead = "II" if "II" in present else "I"
            hint = f"; for a 1-2-lead recording use ECG2AF strip {lead} (the single-lead model)"
        raise ReadError(study.source, f"ECG2AF needs all 12 leads; missing: {', '.join(missing)}{hint}")
    if not np.isfinite(x[:, [E.LEADS.index(ld) for ld in f.leads]]).all():
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
    f = F.FILES.get(st.entry.id)
    try:
        # the published file (hash verified) is trusted as released; anything else is inspected
        return E.load_keras(registry.path_of(st.entry), trusted=st.clinical, input_name=f.input_name if f else None)
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


def normalisation(registry: Registry, model_id: str) -> str:
    return F.normalisation_for(model_id, registry.get(model_id).inputs)


def input_notes(model_id: str, how: str) -> list[str]:
    """What the file sees and how its input was normalised (and how that was established): on screen."""
    f = F.published(model_id)
    leads = f"lead {f.leads[0]}" if f.is_strip else "12 leads"
    src = f.established if how == f.normalisation else "set in weights/manifest.toml (not the established one)"
    return [f"Input: {leads} × 5000 samples at 500 Hz (the first 10 s), normalised per ECG by "
            f"{F.NORMALISATIONS[how].split(':')[0]} — {src}."]


def _analyse_ecg2af(study: Study, model_id: str, registry: Registry, ctx, prefer: str = "auto") -> Result:
    check_input(study, model_id)
    f = F.published(model_id)
    ctx.progress(0.05, f"Loading ECG2AF ({f.short})")
    rt, st = runtime_for(registry, model_id, prefer)
    ctx.progress(0.4, f"Running ECG2AF on {rt.name}")
    how = normalisation(registry, model_id)
    x = model_batch([study], model_id, how)
    t0 = time.perf_counter()
    raw = rt.run({rt.input_names[0]: x})
    secs = time.perf_counter() - t0
    ctx.progress(0.9, "Decoding")
    outputs, head_notes = decoded_outputs(raw)
    outputs.update({"model_file": f.file, "input_leads": list(f.leads), "normalisation": how})
    notes = ["AF risk = 1 − cumulative AF-free survival over 25 intervals (5 years), as the ECG2AF authors "
             "decode the survival-curve head."] + input_notes(model_id, how) + [
             "Heads decoded by the names the model file declares: " + ", ".join(sorted(raw)) + "."]
    if f.is_strip:
        notes.append(f"Single-lead ECG2AF ({f.file}): the authors trained it on lead {f.leads[0]} strips of 10-s "
                     "resting ECGs; on a hand-held or Holter recording it sees the first 10 s of that lead.")
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


def rhythm_leads(study: Study, model, lead: str | None = None) -> list[str]:
    """The leads the rhythm model runs on: the one asked for, else every lead of the model's decision leads
    the recording has with a signal (``RhythmModel.leads_to_use``)."""
    ok = usable_leads(study)
    if lead:
        if lead not in E.LEADS:
            raise ReadError(study.source, f"no lead named {lead!r} (leads: {', '.join(E.LEADS)})")
        if lead not in ok:
            raise ReadError(study.source, f"lead {lead} is missing or flat in this ECG; usable: {', '.join(ok) or 'none'}")
        return [lead]
    if not ok:
        raise ReadError(study.source, "no usable lead for the rhythm model (all missing or flat)")
    ordered = [ld for ld in RHYTHM_MODEL_LEADS if ld in ok]
    return model.leads_to_use(ordered)


def _rhythm_input(study: Study, leads: list[str]) -> np.ndarray:
    sig = study.data["signal_mv"]
    return np.stack([sig[E.LEADS.index(ld)] for ld in leads])


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
        "n_leads": len(r.leads or [r.lead]),
        "duration_s": r.seconds,
        "windows": len(r.windows),
        "af_burden": r.af_burden,
        "ectopic_windows": r.ectopic_windows,  # long recordings: 'other' windows with isolated premature beats only
        "_windows": r.windows,  # the per-window band (machine payload)
        "_leads": list(r.leads or [r.lead]),  # the leads used, in order
        "_per_lead": r.per_lead,  # each lead's own recording probabilities and label
        "_af_threshold": r.af_threshold,
    }
    return out


def _rhythm_notes(model, r) -> list[str]:
    how = ("mean of the per-lead probabilities" if len(r.leads) > 1 else "one lead")
    thr = (f"; AF when p(AF) >= {r.af_threshold:.3f} (chosen on validation data)" if r.af_threshold is not None
           else "")
    return [f"Lightbox rhythm model on lead{'s' if len(r.leads) > 1 else ''} {r.lead} ({how}): "
            f"{model.spec.window_s:g}-s windows at {model.spec.fs:g} Hz; recording probabilities = mean of the "
            f"windows'{thr}."]


def _analyse_rhythm(study: Study, model_id: str, registry: Registry, ctx, lead: str | None = None) -> Result:
    from inference.ecg.rhythm import RhythmError

    ctx.progress(0.05, "Loading the rhythm model")
    model, st = rhythm_model(registry, model_id)
    names = rhythm_leads(study, model, lead)
    x = _rhythm_input(study, names)
    ctx.progress(0.3, f"Classifying the rhythm on lead{'s' if len(names) > 1 else ''} {', '.join(names)}")
    t0 = time.perf_counter()
    try:
        r = model.classify(x, float(study.data["fs"]), lead=names)
    except RhythmError as e:
        raise ReadError(study.source, str(e)) from None
    secs = time.perf_counter() - t0
    notes = _rhythm_notes(model, r) + r.notes
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
            names = rhythm_leads(s, model)
            jobs.append((_rhythm_input(s, names), float(s.data["fs"]), names))
            idx.append(i)
        except ReadError as e:
            out[i] = e
    t0 = time.perf_counter()
    res = model.classify_many(jobs) if jobs else []
    per = (time.perf_counter() - t0) / max(len(jobs), 1)
    for i, r in zip(idx, res):
        if isinstance(r, RhythmError):
            out[i] = ReadError(studies[i].source, str(r))
            continue
        out[i] = Result(model_id, st.sha256 or "", "onnxruntime", cpu_label(), per, jsonable(rhythm_outputs(r)),
                        clinical=st.clinical, notes=["batch run"] + _rhythm_notes(model, r) + r.notes)
    return out


def analyse(study: Study, model_id: str, registry: Registry, ctx) -> Result:
    base, lead = split_model_id(model_id)
    if base == RHYTHM_ID:
        return _analyse_rhythm(study, base, registry, ctx, lead)
    if model_id == MEASURE_ID:
        return _analyse_measure(study, registry, ctx)
    if F.is_ecg2af(model_id):
        return _analyse_ecg2af(study, model_id, registry, ctx)
    raise ValueError(f"unknown ECG model {model_id!r}; known: {', '.join(MODELS)}")


def analyse_many(studies: list[Study], model_id: str, registry: Registry, ctx,
                 batch_size: int = 16) -> list[Result | Exception]:
    """Batched ECG2AF for ``lightbox batch``: one model call per ``batch_size`` ECGs (same numbers as
    ``analyse``, about twice the throughput on CPU). Returns a Result or the error for each study."""
    if model_id == RHYTHM_ID:
        return _rhythm_many(studies, model_id, registry)
    if not F.is_ecg2af(model_id):
        return [_or_error(lambda s=s: analyse(s, model_id, registry, ctx)) for s in studies]
    out: list[Result | Exception] = [None] * len(studies)  # type: ignore[list-item]
    ok = []
    for i, s in enumerate(studies):
        try:
            check_input(s, model_id)
            ok.append(i)
        except ReadError as e:
            out[i] = e
    if not ok:
        return out
    rt, st = runtime_for(registry, model_id)
    f, how = F.published(model_id), normalisation(registry, model_id)
    t0 = time.perf_counter()
    raw = run_batch(rt, model_batch([studies[i] for i in ok], model_id, how), batch_size)
    per = (time.perf_counter() - t0) / len(ok)
    for k, i in enumerate(ok):
        outputs, head_notes = decoded_outputs(raw, k)
        outputs.update({"model_file": f.file, "input_leads": list(f.leads), "normalisation": how})
        notes = (["batch run"] + input_notes(model_id, how) + head_notes
                 + ([] if st.clinical else ["Computed with non-official weights."]))
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
    if not F.is_ecg2af(model_id):
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

"""Heart sounds: envelope segmentation (S1/S2, heart rate) + a log-mel CNN classifier.

Models
- ``heart-sound``        Lightbox's own normal/abnormal CNN, trained on PhysioNet/CinC 2016 with
                         ``lightbox pcg-train`` and bundled (resources/models/heart_sound_cnn.onnx). It is a
                         research model, not a validated device: the manifest marks it ``clinical = false``,
                         so its results carry NOT A CLINICAL RESULT.
- ``heart-sound-local``  the active locally retrained version (Heart sounds ▸ Retrain in the app, or
                         ``lightbox pcg-train`` + activate); installed as non-official weights.
- ``heart-sound-keras``  an existing Keras ``.h5`` heart-sound model whose input spec the manifest gives
                         (TensorFlow path).

The preprocessing a model needs comes from its manifest entry (``[models.<id>.inputs.preprocessing]``)
or, for locally trained files, from the metadata ``pcg-train`` embeds in the ONNX file — never from
constants here. Whole-recording probability = mean of the window probabilities.
"""
from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.pcg.features import FeatureSpec, recording_logmel, windows
from inference.pcg.segment import segment
from inference.registry import Registry, WeightsError
from inference.results import Result, jsonable
from inference.study import Study

MODELS = ("heart-sound", "heart-sound-local", "heart-sound-keras")
BATCH = 64

_cache: dict[tuple[str, str], Any] = {}
_cache_lock = threading.Lock()


def model_spec(entry, path: Path) -> tuple[FeatureSpec, list[str], dict]:
    """(preprocessing spec, class names, embedded metadata) for an ONNX heart-sound model."""
    meta: dict = {}
    if entry.framework == "onnx" and path.exists():
        meta = _embedded(str(path), path.stat().st_mtime_ns, path.stat().st_size)
    pre = (entry.inputs or {}).get("preprocessing") or meta.get("preprocessing")
    classes = (entry.outputs or {}).get("classes") or meta.get("classes")
    if not pre or not classes:
        raise WeightsError(f"{entry.title}: no preprocessing spec / class list in the manifest or in "
                           f"{path.name}; it cannot be run")
    try:
        spec = FeatureSpec.from_dict(dict(pre))
    except (TypeError, ValueError) as e:
        raise WeightsError(f"{entry.title}: invalid preprocessing spec: {e}") from None
    if meta.get("preprocessing") and FeatureSpec.from_dict(meta["preprocessing"]) != spec:
        raise WeightsError(f"{entry.title}: the manifest's preprocessing differs from the one {path.name} was "
                           "trained with; refusing to run a mismatched model")
    return spec, list(classes), meta


@functools.lru_cache(maxsize=8)
def _embedded(path: str, _mtime: int, _size: int) -> dict:
    from inference.pcg.train import read_onnx_metadata

    return read_onnx_metadata(path) or {}


def _onnx(path: Path, sha: str):
    from inference.runtimes import OnnxRuntime

    key = (str(path), sha)
    with _cache_lock:
        rt = _cache.get(key)
        if rt is None:
            rt = OnnxRuntime(path)
            _cache[key] = rt
    return rt


def _mono(study: Study) -> tuple[np.ndarray, int]:
    return np.asarray(study.data["mono"], dtype=np.float32), int(study.data["sample_rate"])


def segmentation_outputs(study: Study) -> tuple[dict, Any]:
    x, sr = _mono(study)
    seg = segment(x, sr)
    return seg.outputs(), seg


def analyse(study: Study, model_id: str, registry: Registry, ctx) -> Result:
    if model_id not in MODELS:
        raise WeightsError(f"{model_id} is not a heart-sound model (known: {', '.join(MODELS)})")
    st = registry.require(model_id)
    entry = st.entry
    path = registry.path_of(entry)
    t0 = time.perf_counter()
    x, sr = _mono(study)
    ctx.progress(0.05, "segmenting S1/S2")
    seg_out, seg = segmentation_outputs(study)
    notes = list(seg.notes)
    ctx.progress(0.2, "log-mel features")
    if entry.framework == "keras":
        probs, starts, classes, rt, win_s = _run_keras(entry, path, x, sr, ctx)
    else:
        spec, classes, _ = model_spec(entry, path)
        if sr != spec.sample_rate:
            notes.append(f"resampled {sr} Hz -> {spec.sample_rate} Hz for the classifier")
        lm = recording_logmel(x, sr, spec)
        w, starts = windows(lm, spec)
        if len(x) / sr < spec.window_s:
            notes.append(f"recording shorter than the model's {spec.window_s:g}-s window: repeated to fill it")
        rt = _onnx(path, st.sha256 or "")
        out = []
        for s in range(0, len(w), BATCH):
            ctx.progress(0.3 + 0.65 * s / len(w), f"classifying windows {s + 1}-{min(len(w), s + BATCH)} of {len(w)}")
            out.append(rt.run({rt.input_names[0]: w[s:s + BATCH]})[rt.output_names[0]])
        probs = np.concatenate(out).astype(np.float64)
        win_s = spec.window_s
    rec = probs.mean(axis=0)
    k = int(np.argmax(rec))
    outputs = {
        "class": classes[k],
        "probability": round(float(rec[k]), 4),
        "probabilities": {c: round(float(p), 4) for c, p in zip(classes, rec)},
        **seg_out,
        "duration_s": round(len(x) / sr, 2),
        "classes": classes,
        "windows": int(len(probs)),
        "window_s": float(win_s),
        "window_starts_s": [round(float(s), 2) for s in starts],
        "window_probabilities": [[round(float(p), 4) for p in row] for row in probs],
        "aggregation": "mean of window probabilities",
    }
    ctx.progress(1.0, "done")
    return Result(model_id=model_id, weights_sha256=st.sha256 or "", runtime=rt.name, device=rt.device,
                  seconds=time.perf_counter() - t0, outputs=jsonable(outputs), clinical=st.clinical, notes=notes,
                  arrays={"envelope": seg.envelope, "window_probabilities": probs})


# -- Keras .h5 heart-sound models (input spec from the manifest) ----------------------------------
def keras_spec(entry) -> dict:
    inp = dict(entry.inputs or {})
    need = ("sample_rate", "duration_s", "n_mels", "n_fft", "hop_length")
    missing = [k for k in need if k not in inp]
    if missing or not (entry.outputs or {}).get("classes"):
        raise WeightsError(f"{entry.title}: the manifest must give inputs {', '.join(need)} and outputs.classes "
                           f"(missing: {', '.join(missing) or 'classes'})")
    return inp


def keras_features(x: np.ndarray, sr: int, inp: dict) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``duration_s`` (hop = half a window) as librosa mel spectrograms in dB,
    shaped (N, n_mels, frames, 1) — the layout of the common Keras heart-sound CNNs."""
    import librosa

    from inference.pcg.features import resample

    target = int(inp["sample_rate"])
    y = resample(x, sr, target)
    n = int(round(float(inp["duration_s"]) * target))
    hop = max(1, n // 2)
    starts = list(range(0, max(1, len(y) - n + 1), hop)) or [0]
    feats = []
    for s in starts:
        seg = y[s:s + n]
        if len(seg) < n:
            seg = np.pad(seg, (0, n - len(seg)))
        m = librosa.feature.melspectrogram(y=seg, sr=target, n_fft=int(inp["n_fft"]),
                                           hop_length=int(inp["hop_length"]), n_mels=int(inp["n_mels"]))
        m = librosa.power_to_db(m, ref=np.max)
        if inp.get("normalise", "minmax") == "minmax":
            m = (m - m.min()) / (m.max() - m.min() + 1e-9)
        frames = int(inp.get("frames", m.shape[1]))
        m = m[:, :frames] if m.shape[1] >= frames else np.pad(m, ((0, 0), (0, frames - m.shape[1])))
        feats.append(m[..., None])
    return np.stack(feats).astype(np.float32), np.array(starts) / target


def load_keras(path: Path):
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tf_keras as keras
    except ImportError:  # pragma: no cover
        from tensorflow import keras
    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as e:
        raise WeightsError(f"{path.name}: not a loadable Keras model ({type(e).__name__}: {e})") from None


def _run_keras(entry, path, x, sr, ctx):
    from inference.runtimes import KerasRuntime

    inp = keras_spec(entry)
    classes = list(entry.outputs["classes"])
    key = (str(path), "keras")
    with _cache_lock:
        rt = _cache.get(key)
    if rt is None:
        rt = KerasRuntime(load_keras(path))
        with _cache_lock:
            _cache[key] = rt
    feats, starts = keras_features(x, sr, inp)
    want = rt.model.inputs[0].shape
    if tuple(want[1:]) != tuple(feats.shape[1:]):
        raise WeightsError(f"{entry.title}: the model expects input {tuple(want[1:])}, the manifest's spec gives "
                           f"{tuple(feats.shape[1:])}; fix [models.{entry.id}.inputs]")
    ctx.progress(0.5, f"classifying {len(feats)} windows")
    out = np.asarray(list(rt.run({rt.input_names[0]: feats}).values())[0], dtype=np.float64)
    if out.shape[1] != len(classes):
        raise WeightsError(f"{entry.title}: the model has {out.shape[1]} outputs, the manifest names {len(classes)} classes")
    if np.any(out < 0) or np.any(np.abs(out.sum(1) - 1) > 1e-3):  # logits -> probabilities
        e = np.exp(out - out.max(1, keepdims=True))
        out = e / e.sum(1, keepdims=True)
    return out, starts, classes, rt, float(inp["duration_s"])


def export_onnx(registry: Registry, model_id: str) -> Path:
    """The heart-sound models run as ONNX already: the verified file itself is the export."""
    st = registry.require(model_id)
    if st.entry.framework != "onnx":
        raise WeightsError(f"{st.entry.title}: Keras models run through TensorFlow here; no ONNX export")
    return registry.path_of(st.entry)

"""Echo pipeline: view gate -> sector crop -> 112x112 -> LV segmentation per frame -> LV area curve ->
ED/ES frames -> beats -> EF per beat (one clip aligned to each beat) + whole-video EF (mean over clips).

Models (weights/manifest.toml):
- ``echonet-ef``   EchoNet-Dynamic r2plus1d_18 EF model. The full analysis: it uses ``echonet-seg``
                   as well when that is installed (beats, ED/ES, per-beat EF); without it, whole-video
                   EF only.
- ``echonet-seg``  EchoNet-Dynamic DeepLabV3 LV segmentation alone (masks, area curve, ED/ES).
- ``echo-view``    optional ONNX view classifier for the apical-4-chamber gate (not installed by default).

Whole-video EF: the reference averages every 32-frame clip (one per start frame: ~90-140 clips for a
typical loop, ~1.2 s each on a 2-core CPU). Lightbox averages the beat-aligned clips plus evenly
spaced ones, at most ``max_clips`` (on the CPU 6 by default; on a GPU every clip, as the reference;
``LIGHTBOX_ECHO_MAX_CLIPS=N`` sets it, 0 = every clip) and reports how many of how many it used.

Each model runs on ONNX Runtime when its ONNX twin has been exported (``lightbox weights export``),
on PyTorch otherwise; on the GPU when there is one.
"""
from __future__ import annotations

import base64
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from inference.echo import preprocess as P
from inference.registry import Registry, WeightsError
from inference.results import Result, jsonable, now_iso
from inference.runtimes import OnnxRuntime, TorchRuntime
from inference.study import ReadError, Study

MODELS = ("echonet-ef", "echonet-seg")
VIEW_MODEL = "echo-view"
DEFAULT_MAX_CLIPS = 6
SEG_BATCH = 16
CLIP_BATCH = 3  # EF clips per model call (cancellation is checked between calls)
MIN_FRAMES = P.CLIP_FRAMES

def default_max_clips(runtime) -> int:
    """How many 32-frame clips whole-video EF averages: ``LIGHTBOX_ECHO_MAX_CLIPS`` when set; else every
    clip (0, the reference's test-time evaluation) on a GPU, where ~100 clips take about a second, and
    ``DEFAULT_MAX_CLIPS`` on the CPU, where they would take a minute or more."""
    env = os.environ.get("LIGHTBOX_ECHO_MAX_CLIPS", "").strip()
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            pass
    return 0 if runtime.on_gpu else DEFAULT_MAX_CLIPS


# output keys (the results panel shows them with '_' as spaces; '_'-prefixed keys stay hidden)
K_EF = "LVEF_whole_video_%"
K_EF_BEATS = "LVEF_per_beat_%"
K_SPREAD = "LVEF_beat_spread_%"
K_CAT = "LVEF_category"
K_CLIPS = "EF_clips_used"
K_ED = "ED_frames"  # 1-based frame numbers (hidden _beats and _key_masks use 0-based indices)
K_ES = "ES_frames"
K_HR = "heart_rate_bpm"
K_FAC = "LV_area_change_per_beat_%"
K_GATE = "view_gate"
K_CROP = "crop_box_px"
K_SEGW = "segmentation_weights"
K_AREA = "_lv_area"
K_AREA_UNIT = "_lv_area_unit"
K_MASKS = "_key_masks"
K_BEATS = "_beats"
K_FPS = "_fps"
EF_KEYS = (K_EF, K_EF_BEATS, K_SPREAD, K_CAT)  # what blinded practice hides


class ViewGateRequired(WeightsError):
    """EF is withheld until the view is confirmed as apical 4-chamber (or a view model decides)."""


# -- runtimes -----------------------------------------------------------------------------------
_cache: dict[tuple, Any] = {}
_cache_lock = threading.Lock()


def _stats(entry) -> tuple[tuple, tuple]:
    inp = entry.inputs or {}
    mean = tuple(float(v) for v in inp.get("mean", P.MEAN))
    std = tuple(float(v) for v in inp.get("std", P.STD))
    return mean, std


def runtime_for(registry: Registry, model_id: str):
    """(runtime, ModelState) for an EchoNet model; ONNX twin when exported, torch otherwise."""
    st = registry.require(model_id)
    kind = "ef" if model_id == "echonet-ef" else "seg"
    onnx = registry.derived_path(model_id, ".onnx")
    key = (model_id, st.sha256, onnx.exists(), str(registry.weights_dir))
    with _cache_lock:
        if key in _cache:
            return _cache[key], st
    if onnx.exists():
        rt = OnnxRuntime(onnx)
    else:
        from inference.echo.echonet import CheckpointError, SegOut, load_model

        try:
            model, _ = load_model(kind, registry.path_of(st.entry))
        except CheckpointError as e:
            raise WeightsError(str(e)) from None
        if kind == "seg":
            rt = TorchRuntime(SegOut(model), ["frames"], ["logits"])
        else:
            rt = TorchRuntime(model, ["clip"], ["ef"])
    with _cache_lock:
        for k in [k for k in _cache if k[0] == model_id]:
            _cache.pop(k)
        _cache[key] = rt
    return rt, st


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def export_onnx(registry: Registry, model_id: str) -> Path:
    """Write the ONNX twin of an installed EchoNet model next to its weights (name carries the hash)."""
    from inference.echo.echonet import CheckpointError, export_onnx_file, load_model

    if model_id not in MODELS:
        raise WeightsError(f"{model_id}: no ONNX export (EchoNet models: {', '.join(MODELS)})")
    st = registry.require(model_id)
    kind = "ef" if model_id == "echonet-ef" else "seg"
    try:
        model, _ = load_model(kind, registry.path_of(st.entry))
    except CheckpointError as e:
        raise WeightsError(str(e)) from None
    out = export_onnx_file(kind, model, registry.derived_path(model_id, ".onnx"))
    clear_cache()
    return out


# -- the view gate ------------------------------------------------------------------------------
def view_gate(study: Study, registry: Registry, small: np.ndarray, mean, std) -> dict:
    """Is this an apical 4-chamber view? Classifier when installed, else the user's recorded decision."""
    if VIEW_MODEL in registry.entries:
        st = registry.state(VIEW_MODEL)
        if st.usable:
            entry = st.entry
            idx = np.linspace(0, len(small) - 1, min(8, len(small))).round().astype(int)
            rt = OnnxRuntime(registry.path_of(entry))
            x = P.frame_batch(small[idx], mean, std)
            out = next(iter(rt.run({rt.input_names[0]: x}).values()))
            out = np.asarray(out, np.float64).reshape(len(idx), -1)
            a4c = int(entry.extra.get("a4c_index", 0))
            if out.shape[1] == 1:
                p = 1.0 / (1.0 + np.exp(-out[:, 0]))
            else:
                e = np.exp(out - out.max(axis=1, keepdims=True))
                p = (e / e.sum(axis=1, keepdims=True))[:, a4c]
            prob = float(p.mean())
            thr = float(entry.extra.get("threshold", 0.5))
            return {"decision": "A4C" if prob >= thr else "not A4C", "method": "view classifier",
                    "model": VIEW_MODEL, "weights": st.sha256[:16], "probability": round(prob, 3),
                    "threshold": thr, "clinical": st.clinical, "at": now_iso()}
    user = study.data.get("view_gate") or study.metadata.get("view_gate")
    if user and user.get("decision") in ("A4C", "not A4C"):
        return {"decision": user["decision"], "method": "confirmed by user", "by": user.get("by", "user"),
                "at": user.get("at", now_iso())}
    env = os.environ.get("LIGHTBOX_ECHO_VIEW", "").strip().upper()
    if env in ("A4C", "NOT A4C"):
        return {"decision": "A4C" if env == "A4C" else "not A4C", "method": "confirmed by operator (command line)",
                "by": os.environ.get("USER", "operator"), "at": now_iso()}
    raise ViewGateRequired(
        "View gate: EchoNet-Dynamic was trained on apical 4-chamber views only. Confirm the view "
        "('Apical 4-chamber' in the echo viewer's View gate box) before EF is computed, or install a view "
        f"classifier ('{VIEW_MODEL}'). Headless: set LIGHTBOX_ECHO_VIEW=A4C to record the operator's confirmation.")


# -- helpers ------------------------------------------------------------------------------------
def pack_mask(m: np.ndarray) -> str:
    return base64.b64encode(np.packbits(m.astype(bool).ravel()).tobytes()).decode("ascii")


def unpack_mask(s: str, size: int = P.SIZE) -> np.ndarray:
    b = np.frombuffer(base64.b64decode(s), np.uint8)
    return np.unpackbits(b)[: size * size].reshape(size, size).astype(bool)



def _crop_box(study: Study) -> tuple[P.CropBox, bool]:
    frames = study.data["frames"]
    user = study.data.get("crop_box")
    if user:
        return P.CropBox.from_list(user).clamp(frames.shape[2], frames.shape[1]), True
    box = study.data.get("auto_crop_box")
    if box is None:
        box = P.find_sector(frames).as_list()
        study.data["auto_crop_box"] = box
    return P.CropBox.from_list(box), False


def prepared(study: Study) -> tuple[np.ndarray, P.CropBox, bool]:
    """(F, 112, 112, 3) uint8 model-grid frames, the crop box and whether the user set it (cached)."""
    box, by_user = _crop_box(study)
    cached = study.data.get("_small")
    if cached is not None and cached[0] == box.as_list():
        return cached[1], box, by_user
    small = P.crop_resize(study.data["frames"], box)
    study.data["_small"] = (box.as_list(), small)
    return small, box, by_user


def segment(rt, small: np.ndarray, mean, std, ctx=None, lo: float = 0.1, hi: float = 0.5) -> np.ndarray:
    """Per-frame LV masks (F, 112, 112) bool (logit > 0, as the reference)."""
    masks = np.empty(small.shape[:3], bool)
    n = len(small)
    for i in range(0, n, SEG_BATCH):
        if ctx is not None:
            ctx.progress(lo + (hi - lo) * i / n, f"LV segmentation {i}/{n} frames")
        x = P.frame_batch(small[i:i + SEG_BATCH], mean, std)
        out = rt.run({"frames": x})
        logits = next(iter(out.values()))
        masks[i:i + SEG_BATCH] = logits[:, 0] > 0
    return masks


def _area_scale(study: Study, box: P.CropBox) -> tuple[float, str]:
    """cm^2 per model-grid pixel when the DICOM carries a calibration, else px^2 of the 112 grid."""
    sp = study.metadata.get("pixel_spacing_cm")
    if sp:
        _, _, scale = P.square_geometry(box)
        return float(sp["dx_cm"] * sp["dy_cm"] * scale * scale), "cm²"
    return 1.0, "px², 112-grid"


# -- analysis -----------------------------------------------------------------------------------
def analyse(study: Study, model_id: str, registry: Registry, ctx) -> Result:
    if model_id not in MODELS:
        raise WeightsError(f"unknown echo model {model_id!r}; known: {', '.join(MODELS)}")
    t0 = time.perf_counter()
    frames = study.data.get("frames")
    if frames is None or len(frames) == 0:
        raise ReadError(study.source, "no frames to analyse")
    n = len(frames)
    fps = float(study.data.get("fps") or study.metadata.get("fps") or 50.0)
    if n < MIN_FRAMES:
        raise ReadError(study.source, f"the loop has {n} frames; EchoNet-Dynamic needs at least {MIN_FRAMES} "
                                      f"(one 32-frame clip)")
    want_ef = model_id == "echonet-ef"
    ef_state = registry.require("echonet-ef") if want_ef else None
    seg_state = registry.state("echonet-seg")
    if not want_ef:
        seg_state = registry.require("echonet-seg")
    entry = (ef_state or seg_state).entry
    mean, std = _stats(entry)
    notes: list[str] = []
    ctx.progress(0.02, "finding the ultrasound sector")
    small, box, by_user = prepared(study)
    outputs: dict[str, Any] = {}
    gate = None
    if want_ef:
        gate = view_gate(study, registry, small, mean, std)
        outputs[K_GATE] = gate
        if gate["decision"] != "A4C":
            notes.append("EF not computed: the view gate says this is not an apical 4-chamber view")
            outputs[K_CROP] = box.as_list()
            return Result(model_id=model_id, weights_sha256=ef_state.sha256, runtime="none", device="-",
                          seconds=time.perf_counter() - t0, outputs=jsonable(outputs),
                          clinical=ef_state.clinical, notes=notes)
    outputs[K_CROP] = box.as_list()
    if by_user:
        notes.append(f"crop box set by the user: {box.as_list()}")
    if abs(fps - P.TRAIN_FPS) / P.TRAIN_FPS > 0.2:
        notes.append(f"{fps:.0f} fps loop: clips are sampled every {2 / P.TRAIN_FPS * 1000:.0f} ms as in "
                     f"EchoNet-Dynamic's ~50 fps training videos")
    arrays: dict[str, np.ndarray] = {}
    clinical = True
    runtimes = []
    ed: list[int] = []
    es: list[int] = []
    beats: list[dict] = []
    if seg_state.usable:
        seg_rt, seg_st = runtime_for(registry, "echonet-seg")
        runtimes.append(seg_rt)
        clinical &= seg_st.clinical
        masks = segment(seg_rt, small, mean, std, ctx, 0.05, 0.5 if want_ef else 0.9)
        scale, unit = _area_scale(study, box)
        area = masks.reshape(n, -1).sum(axis=1).astype(float) * scale
        ed, es = P.ed_es_frames(area, fps)
        beats = P.beats_from(ed, es)
        arrays.update(masks=masks, lv_area=area)
        outputs[K_ED] = [i + 1 for i in ed]  # frame numbers as the viewer shows them (1-based)
        outputs[K_ES] = [i + 1 for i in es]
        if len(ed) >= 2:
            outputs[K_HR] = round(60.0 * fps / float(np.median(np.diff(ed))), 1)
        fac = [round(100.0 * (area[b["ed"]] - area[b["es"]]) / area[b["ed"]], 1) for b in beats if area[b["ed"]] > 0]
        if fac:
            outputs[K_FAC] = fac
        # per-frame masks stay in Result.arrays (not stored); the ED/ES masks travel with the outputs
        # (~2 kB each) so a stored result still shows its key frames and the report can draw them
        keys = sorted(set(ed) | set(es))[:8]
        outputs[K_MASKS] = {str(i): pack_mask(masks[i]) for i in keys}
        outputs[K_AREA] = [round(float(a), 4) for a in area]
        outputs[K_AREA_UNIT] = unit
        outputs[K_SEGW] = f"{seg_st.entry.id} {seg_st.sha256[:16]}"
        outputs[K_BEATS] = beats
        if not beats:
            notes.append("no complete beat (ED -> ES -> ED) found in the LV area curve")
    elif want_ef:
        notes.append("LV segmentation model not installed: whole-video EF only (no beats, no ED/ES). "
                     + registry.how_to_install(seg_state.entry).splitlines()[0])
    outputs[K_FPS] = fps
    if want_ef:
        ef_rt, _ = runtime_for(registry, "echonet-ef")
        runtimes.insert(0, ef_rt)
        clinical &= ef_state.clinical
        norm = P.normalise(small, mean, std)
        beat_starts = [P.beat_clip_start(b, fps, n) for b in beats]
        max_clips = default_max_clips(ef_rt)
        max_clips = max(max_clips, len(beat_starts)) if max_clips > 0 else 0
        starts = P.choose_clip_starts(n, fps, max_clips, must=beat_starts)
        n_all = len(P.all_clip_starts(n, fps))
        if P.clip_span_frames(fps) > n:
            notes.append(f"the loop is shorter than one clip ({P.clip_span_frames(fps)} frames): the last frame "
                         "is repeated to fill it")
        preds: dict[int, float] = {}
        for j in range(0, len(starts), CLIP_BATCH):
            chunk = [int(s) for s in starts[j:j + CLIP_BATCH]]
            ctx.progress(0.5 + 0.48 * j / len(starts), f"EF clips {j + 1}-{j + len(chunk)} of {len(starts)}")
            batch = np.concatenate([P.make_clip(norm, P.clip_indices(s / fps, fps, n)) for s in chunk])
            out = np.asarray(next(iter(ef_rt.run({"clip": batch}).values()))).reshape(-1)
            preds.update({s: float(v) for s, v in zip(chunk, out)})
        whole = float(np.mean(list(preds.values())))
        outputs[K_EF] = round(whole, 1)
        outputs[K_CAT] = P.ef_category(whole)
        outputs[K_CLIPS] = f"{len(preds)} of {n_all}"
        if beats:
            per_beat = [round(preds[s], 1) for s in beat_starts]
            outputs[K_EF_BEATS] = per_beat
            outputs[K_SPREAD] = round(max(per_beat) - min(per_beat), 1) if len(per_beat) > 1 else 0.0
            for b, s in zip(beats, beat_starts):
                b["clip_start"] = int(s)
        arrays["clip_starts"] = np.array(sorted(preds))
        arrays["clip_ef"] = np.array([preds[s] for s in sorted(preds)])
    ctx.progress(1.0, "done")
    rt0 = runtimes[0]
    order = [K_EF, K_CAT, K_EF_BEATS, K_SPREAD, K_CLIPS, K_ED, K_ES, K_HR, K_FAC, K_GATE, K_CROP, K_SEGW]
    ordered = {k: outputs[k] for k in order if k in outputs}
    ordered.update({k: v for k, v in outputs.items() if k not in ordered})
    main_state = ef_state or seg_state
    return Result(model_id=model_id, weights_sha256=main_state.sha256 or "", runtime=rt0.name,
                  device=rt0.device, seconds=time.perf_counter() - t0, outputs=jsonable(ordered),
                  clinical=bool(clinical), notes=notes, arrays=arrays)

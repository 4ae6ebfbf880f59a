"""Echo pipeline: view gate -> model input (112x112) -> LV segmentation per frame -> LV size curve ->
end-systole frames -> beats -> EF per beat (clip from ES - 32) + whole-video EF (mean over clips).

It follows EchoNet-Dynamic's own procedure (``inference.echo.reference``; tested against an oracle
of the reference's steps in tests/test_echo_fidelity.py):

- input: 112x112 loops reach the network unchanged; DICOM loops get the reference's conversion;
  other full-size video Lightbox's sector crop (``preprocess.choose_path``; the result says which);
- clips of 32 frames every 2nd frame, zero-padded (after normalisation) to 64 frames when shorter;
- end-systole: ``find_peaks`` on the raw LV pixel count with the reference's distance/prominence
  rule; each beat's EF from the clip starting 32 frames before its end-systole; the beat-by-beat EF
  is their mean. Lightbox's older smoothed ED/ES rule with beat-centred clips stays available as
  a labelled alternative (option ``beat_rule = "lightbox"``).

Models (weights/manifest.toml):
- ``echonet-ef``   EchoNet-Dynamic r2plus1d_18 EF model. The full analysis: it uses ``echonet-seg``
                   as well when that is installed (beats, ED/ES, per-beat EF); without it, whole-video
                   EF only.
- ``echonet-seg``  EchoNet-Dynamic DeepLabV3 LV segmentation alone (masks, size curve, ED/ES).
- ``echo-view``    optional ONNX view classifier for the apical-4-chamber gate (not installed by default).

Whole-video EF: the reference averages every clip (one per start frame: ~90-160 for a typical loop,
seconds each on a 2-core CPU). On the CPU Lightbox averages the beat clips plus evenly spaced ones,
at most ``DEFAULT_MAX_CLIPS`` by default, and says "k of n clips"; the option ``all_clips`` (the echo
viewer's "All clips" box, or ``LIGHTBOX_ECHO_MAX_CLIPS=0``) runs every clip, with progress. On a GPU
every clip is the default.

Options: ``study.data["echo_options"]`` (set by the viewer) over the environment:
``all_clips`` / ``LIGHTBOX_ECHO_MAX_CLIPS``; ``beat_rule`` / ``LIGHTBOX_ECHO_BEAT_RULE``
("reference" | "lightbox"); ``input_path`` / ``LIGHTBOX_ECHO_INPUT`` ("auto" | "reference-dicom" |
"sector").

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
from inference.echo import reference as R
from inference.registry import Registry, WeightsError
from inference.results import Result, jsonable, now_iso
from inference.runtimes import OnnxRuntime, TorchRuntime
from inference.study import ReadError, Study

MODELS = ("echonet-ef", "echonet-seg")
VIEW_MODEL = "echo-view"
DEFAULT_MAX_CLIPS = 6
SEG_BATCH = 16
CLIP_BATCH = 3  # EF clips per model call (cancellation is checked between calls)
MIN_FRAMES = 16  # shorter loops are padded with zero frames like the reference, down to this floor
BEAT_RULES = ("reference", "lightbox")

def options(study: Study | None = None) -> dict:
    """The analysis options: the study's (set in the viewer) over the environment's."""
    o = dict((study.data.get("echo_options") or {}) if study is not None else {})
    rule = str(o.get("beat_rule") or os.environ.get("LIGHTBOX_ECHO_BEAT_RULE", "") or "reference").lower()
    path = str(o.get("input_path") or os.environ.get("LIGHTBOX_ECHO_INPUT", "") or "auto").lower()
    return {"all_clips": bool(o.get("all_clips", False)),
            "beat_rule": rule if rule in BEAT_RULES else "reference",
            "input_path": path if path in ("auto",) + P.PATHS else "auto"}


def default_max_clips(runtime, study: Study | None = None) -> int:
    """How many 32-frame clips whole-video EF averages (0 = every clip, the reference's test-time
    evaluation): the study's ``all_clips`` option; else ``LIGHTBOX_ECHO_MAX_CLIPS`` when set; else every
    clip on a GPU, where ~100 clips take about a second, and ``DEFAULT_MAX_CLIPS`` on the CPU, where
    they take minutes."""
    if study is not None and options(study)["all_clips"]:
        return 0
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
K_EF_BBB = "LVEF_beat_by_beat_%"  # mean over the beats, the reference's beat-by-beat EF
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
K_INPUT = "model_input"
K_NORM = "normalisation"
K_RULE = "beat_rule"
K_PROV = "_provenance"  # short tags Result.provenance() shows after the runtime
K_CLIP_S = "_seconds_per_clip"
K_AREA = "_lv_area"
K_AREA_UNIT = "_lv_area_unit"
K_MASKS = "_key_masks"
K_BEATS = "_beats"
K_FPS = "_fps"
EF_KEYS = (K_EF, K_EF_BEATS, K_EF_BBB, K_SPREAD, K_CAT)  # what blinded practice hides


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



def _crop_box(study: Study, path: str) -> tuple[P.CropBox, bool]:
    frames = study.data["frames"]
    user = study.data.get("crop_box")
    if user:
        return P.CropBox.from_list(user).clamp(frames.shape[2], frames.shape[1]), True
    box = study.data.get("auto_crop_box")
    if box is None or study.metadata.get("input_path", path) != path:
        box = P.auto_box(frames, path).as_list()
        if study.metadata.get("input_path", path) == path:
            study.data["auto_crop_box"] = box
    return P.CropBox.from_list(box), False


def input_path(study: Study) -> str:
    """The preparation this study gets (a crop box drawn by the user means Lightbox's sector crop)."""
    if study.data.get("crop_box"):
        return P.PATH_SECTOR
    return P.choose_path(study.data["frames"], study.metadata.get("container", ""), options(study)["input_path"])


def prepared(study: Study) -> tuple[np.ndarray, P.CropBox, bool]:
    """(F, 112, 112, 3) uint8 model-grid frames, the region they come from and whether the user drew
    it (cached). The path taken and its description are in ``study.data["_input"]``."""
    path = input_path(study)
    box, by_user = _crop_box(study, path)
    key = (path, box.as_list())
    cached = study.data.get("_small")
    if cached is not None and cached[0] == key:
        return cached[1], box, by_user
    frames = study.data["frames"]
    notes: list[str] = []
    plan = None
    if path == P.PATH_DICOM:
        try:
            plan = R.dicom_plan(frames)
        except ValueError as e:
            notes.append(f"the reference's DICOM conversion does not fit this loop ({e}): Lightbox's sector crop used")
            path = P.PATH_SECTOR
            box = P.find_sector(frames)
    if path == P.PATH_NATIVE:
        small = np.ascontiguousarray(frames)
    elif path == P.PATH_DICOM:
        small, plan = R.convert_dicom(frames, plan)
        notes.extend(plan.notes)
        box = P.CropBox(*plan.box)
    else:
        small = P.crop_resize(frames, box)
    study.data["_input"] = {"path": path, "text": P.describe_path(path, plan, by_user), "notes": notes}
    study.data["_small"] = (key, small)
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


# -- beats ----------------------------------------------------------------------------------------
def find_beats(counts: np.ndarray, fps: float, n_frames: int, rule: str = "reference") -> tuple[list[int], list[int], list[dict]]:
    """(ED frames, ES frames, beats) from the raw LV pixel counts.

    ``reference``: ES by the reference's rule; each beat is one ES with the clip starting at
    ``max(ES - 32, 0)`` (beats whose clip would start past the last clip are dropped, as the
    reference's merge drops them). ED (not detected by the reference) by the same rule mirrored, for
    display and the area change only. ``lightbox``: the older smoothed rule; beats are ED -> ES -> ED
    with the clip centred on the beat."""
    if rule == "lightbox":
        ed, es = P.ed_es_frames(counts.astype(float), fps)
        beats = P.beats_from(ed, es)
        for b in beats:
            b["clip_start"] = P.beat_clip_start(b, n_frames)
        return ed, es, beats
    es = R.systole_frames(counts)
    ed = R.diastole_frames(counts)
    beats = []
    for e, start in R.beat_starts(es, n_frames):
        before = [d for d in ed if d < e]
        after = [d for d in ed if d > e]
        beats.append({"es": e, "clip_start": start, "ed": before[-1] if before else None,
                      "ed_next": after[0] if after else None})
    return ed, es, beats


def _norm_source(entry) -> tuple[str, bool]:
    """Where the mean/std come from (manifest ``mean_std_source``) and whether they are approximate."""
    inp = entry.inputs or {}
    src = str(inp.get("mean_std_source", "") or "Lightbox defaults (approximate)")
    approx = not bool(inp.get("mean_std_exact", False))
    return src, approx


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
        raise ReadError(study.source, f"the loop has {n} frames; Lightbox analyses loops of at least {MIN_FRAMES} "
                                      f"frames (shorter ones are padded with blank frames to EchoNet-Dynamic's "
                                      f"{R.FRAMES * R.PERIOD}-frame clip, as the reference does)")
    opts = options(study)
    want_ef = model_id == "echonet-ef"
    ef_state = registry.require("echonet-ef") if want_ef else None
    seg_state = registry.state("echonet-seg")
    if not want_ef:
        seg_state = registry.require("echonet-seg")
    entry = (ef_state or seg_state).entry
    mean, std = _stats(entry)
    norm_src, approx = _norm_source(entry)
    notes: list[str] = []
    ctx.progress(0.02, "preparing the model input")
    small, box, by_user = prepared(study)
    prep = study.data.get("_input") or {"path": input_path(study), "text": "", "notes": []}
    notes.extend(prep["notes"])
    outputs: dict[str, Any] = {}
    prov = [f"input: {prep['path']}"] + (["approximate normalisation"] if approx else [])
    gate = None
    if want_ef:
        gate = view_gate(study, registry, small, mean, std)
        outputs[K_GATE] = gate
        if gate["decision"] != "A4C":
            notes.append("EF not computed: the view gate says this is not an apical 4-chamber view")
            outputs[K_CROP] = box.as_list()
            outputs[K_INPUT] = prep["text"]
            outputs[K_PROV] = prov
            return Result(model_id=model_id, weights_sha256=ef_state.sha256, runtime="none", device="-",
                          seconds=time.perf_counter() - t0, outputs=jsonable(outputs),
                          clinical=ef_state.clinical, notes=notes)
    outputs[K_CROP] = box.as_list()
    outputs[K_INPUT] = prep["text"]
    outputs[K_NORM] = (f"{'approximate: ' if approx else ''}mean {list(mean)}, std {list(std)} — {norm_src}"
                       + ("; the reference computes them from its training split" if approx else ""))
    if by_user:
        notes.append(f"crop box set by the user: {box.as_list()}")
    if abs(fps - P.TRAIN_FPS) / P.TRAIN_FPS > 0.2:
        notes.append(f"{fps:.0f} fps loop: like the reference, clips take every 2nd frame, so one clip spans "
                     f"{(R.FRAMES - 1) * R.PERIOD / fps:.2f} s instead of ~1.24 s in EchoNet-Dynamic's mostly "
                     "~50 fps training videos (outside what the model was trained on)")
    arrays: dict[str, np.ndarray] = {}
    clinical = True
    runtimes = []
    ed: list[int] = []
    es: list[int] = []
    beats: list[dict] = []
    rule = opts["beat_rule"]
    if seg_state.usable:
        seg_rt, seg_st = runtime_for(registry, "echonet-seg")
        runtimes.append(seg_rt)
        clinical &= seg_st.clinical
        masks = segment(seg_rt, small, mean, std, ctx, 0.05, 0.5 if want_ef else 0.9)
        counts = masks.reshape(n, -1).sum(axis=1)
        scale, unit = _area_scale(study, box)
        area = counts.astype(float) * scale
        ed, es, beats = find_beats(counts, fps, n, rule)
        arrays.update(masks=masks, lv_area=area)
        outputs[K_ED] = [i + 1 for i in ed]  # frame numbers as the viewer shows them (1-based)
        outputs[K_ES] = [i + 1 for i in es]
        outputs[K_RULE] = ("reference: ES = find_peaks on the LV pixel count (distance 20 frames, prominence "
                           "0.5 × range), beat clip from ES − 32; ED by the same rule mirrored (Lightbox's)"
                           if rule == "reference" else
                           "Lightbox's alternative (not the reference's): smoothed curve, own extrema rule, "
                           "clip centred on ED → ES → ED")
        beat_marks = es if rule == "reference" else ed
        if len(beat_marks) >= 2:
            outputs[K_HR] = round(60.0 * fps / float(np.median(np.diff(beat_marks))), 1)
        fac = [round(100.0 * (area[b["ed"]] - area[b["es"]]) / area[b["ed"]], 1)
               for b in beats if b.get("ed") is not None and area[b["ed"]] > 0]
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
            notes.append("no end-systole found in the LV size curve" if rule == "reference" else
                         "no complete beat (ED -> ES -> ED) found in the LV area curve")
    elif want_ef:
        notes.append("LV segmentation model not installed: whole-video EF only (no beats, no ED/ES). "
                     + registry.how_to_install(seg_state.entry).splitlines()[0])
    outputs[K_FPS] = fps
    if want_ef:
        ef_rt, _ = runtime_for(registry, "echonet-ef")
        runtimes.insert(0, ef_rt)
        clinical &= ef_state.clinical
        norm, n_pad = R.pad_video(P.normalise(small, mean, std))
        if n_pad:
            notes.append(f"the loop has {n} frames: like the reference, blank frames (the training mean colour) "
                         f"complete it to {n + n_pad} frames for a {R.FRAMES}-frame clip"
                         + (" — less than half a clip is real video, outside what the model was trained on"
                            if n < R.FRAMES else ""))
        beat_starts = [int(b["clip_start"]) for b in beats]
        max_clips = default_max_clips(ef_rt, study)
        max_clips = max(max_clips, len(set(beat_starts))) if max_clips > 0 else 0
        starts = R.pick_starts(n, max_clips, must=beat_starts)
        n_all = len(R.all_starts(n))
        preds: dict[int, float] = {}
        tc = time.perf_counter()
        for j in range(0, len(starts), CLIP_BATCH):
            chunk = [int(s) for s in starts[j:j + CLIP_BATCH]]
            ctx.progress(0.5 + 0.48 * j / len(starts), f"EF clips {j + 1}-{j + len(chunk)} of {len(starts)}"
                         + (" (all, as the reference)" if len(starts) == n_all else f" ({n_all} in all)"))
            batch = np.ascontiguousarray(np.stack([norm[:, R.clip_frames(s)] for s in chunk]))
            out = np.asarray(next(iter(ef_rt.run({"clip": batch}).values()))).reshape(-1)
            preds.update({s: float(v) for s, v in zip(chunk, out)})
        per_clip_s = (time.perf_counter() - tc) / max(1, len(preds))
        whole = float(np.mean(list(preds.values())))
        outputs[K_EF] = round(whole, 1)
        outputs[K_CAT] = P.ef_category(whole)
        outputs[K_CLIPS] = f"{len(preds)} of {n_all}" + (" (all, as the reference)" if len(preds) == n_all else "")
        outputs[K_CLIP_S] = round(per_clip_s, 3)
        if len(preds) < n_all:
            notes.append(f"whole-video EF averages {len(preds)} of the {n_all} clips the reference averages "
                         f"(about {per_clip_s * n_all:.0f} s for all on this machine: tick 'All clips')")
        if beats:
            per_beat = [round(preds[s], 1) for s in beat_starts]
            outputs[K_EF_BEATS] = per_beat
            outputs[K_EF_BBB] = round(float(np.mean([preds[s] for s in beat_starts])), 1)
            outputs[K_SPREAD] = round(max(per_beat) - min(per_beat), 1) if len(per_beat) > 1 else 0.0
        arrays["clip_starts"] = np.array(sorted(preds))
        arrays["clip_ef"] = np.array([preds[s] for s in sorted(preds)])
    outputs[K_PROV] = prov
    ctx.progress(1.0, "done")
    rt0 = runtimes[0]
    order = [K_EF, K_CAT, K_EF_BBB, K_EF_BEATS, K_SPREAD, K_CLIPS, K_ED, K_ES, K_HR, K_FAC, K_RULE, K_INPUT,
             K_NORM, K_GATE, K_CROP, K_SEGW]
    ordered = {k: outputs[k] for k in order if k in outputs}
    ordered.update({k: v for k, v in outputs.items() if k not in ordered})
    main_state = ef_state or seg_state
    return Result(model_id=model_id, weights_sha256=main_state.sha256 or "", runtime=rt0.name,
                  device=rt0.device, seconds=time.perf_counter() - t0, outputs=jsonable(ordered),
                  clinical=bool(clinical), notes=notes, arrays=arrays)

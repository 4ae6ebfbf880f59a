"""Endoscopy review: the whole video on a worker, frame selection first, then the frame model.

``analyse(study, "endo-quality")``  frame quality only (needs no weights): how many frames are
                                     usable, and why the others were skipped.
``analyse(study, "endo-polyp")``    the same selection, then the ONNX polyp model on the kept frames;
                                     detections on consecutive analysed frames merge into one finding
                                     (the frame with the highest confidence is its key frame).

Outputs (JSON, stored with the result): frames_total, frames_analysed, frames_skipped (total),
skipped (per reason), duration_s, fps, findings_count; hidden keys (``_``-prefixed, not shown in the
results table but stored): ``_bands`` (timeline quality bands) and ``_findings`` (the model's
proposed findings, which the viewer files into the store's ``findings`` table for the clinician to
confirm or reject). Arrays (not stored): per-frame status code, Laplacian variance, mean luma, glare.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from inference.endo.models import POLYP_ID, QUALITY_ID, Detection, PolypOnnx, load_quality_config
from inference.endo.quality import STATUS_CODE, FrameSelector, bands, skipped_counts
from inference.registry import Registry
from inference.results import Result, jsonable
from inference.runtimes import cpu_label
from inference.study import ReadError, Study

MODELS = (QUALITY_ID, POLYP_ID)
MERGE_GAP_S = 0.5  # detections closer than this (in analysed frames) are one finding


def _source(study: Study):
    src = study.data.get("source")
    if src is None:
        raise ReadError(study.source, "this study holds no frames (re-open the file)")
    return src.reopen()  # own decoder: the viewer keeps using its own on the UI thread


def merge_detections(per_frame: list[tuple[int, float, list[Detection]]], fps: float, source: str,
                     gap_s: float = MERGE_GAP_S) -> list[dict[str, Any]]:
    """[(frame index, time, detections)] in frame order -> findings (one per run of detections)."""
    findings: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    for idx, t, dets in per_frame:
        for d in dets:
            cur = open_.get(d.label)
            if cur is not None and t - cur["_last_t"] <= gap_s:
                cur["_last_t"], cur["_last"] = t, idx
                cur["_n"] += 1
                if d.confidence > cur["confidence"]:
                    cur.update(frame_index=idx, time_s=round(t, 3), confidence=d.confidence, box=d.box)
                continue
            cur = {"time_s": round(t, 3), "frame_index": idx, "label": d.label, "confidence": d.confidence,
                   "source": source, "box": d.box, "note": d.note, "_first": idx, "_last": idx, "_last_t": t, "_n": 1}
            open_[d.label] = cur
            findings.append(cur)
    for f in findings:
        a, b, n = f.pop("_first"), f.pop("_last"), f.pop("_n")
        f.pop("_last_t")
        span = f"seen on {n} analysed frame{'s' if n != 1 else ''}, frames {a}-{b} ({a / fps:.2f}-{b / fps:.2f} s)"
        f["note"] = f"{f['note']}; {span}" if f["note"] else span
    return findings


def analyse(study: Study, model_id: str, registry: Registry, ctx) -> Result:
    if model_id not in MODELS:
        raise ValueError(f"unknown endoscopy model {model_id!r}")
    t0 = time.perf_counter()
    cfg, q_sha = load_quality_config(registry)
    model: PolypOnnx | None = None
    if model_id == POLYP_ID:
        st = registry.require(POLYP_ID)
        model = PolypOnnx.from_registry(registry)
        weights_sha, runtime, device, clinical = st.sha256 or "", "onnxruntime", model.device, st.clinical
        batch = int(st.entry.outputs.get("batch", 8))
        # a heavy network on a CPU cannot see every frame of an hour of video: the manifest may cap the
        # rate of frames given to the model (per second of video; 0 = every usable frame)
        model_fps = float(st.entry.outputs.get("model_fps", 0) or 0)
    else:
        st = registry.require(QUALITY_ID)
        weights_sha, runtime, device, clinical = q_sha, "numpy", cpu_label(), st.clinical
        batch, model_fps = 1, 0.0
    src = _source(study)
    n, fps = len(src), src.fps
    sel = FrameSelector(cfg, fps)
    status = np.zeros(n, np.uint8)
    per_frame: list[tuple[int, float, list[Detection]]] = []
    pending: list[tuple[int, np.ndarray]] = []
    step = max(1, n // 200)
    notes: list[str] = []

    def flush() -> None:
        if model is not None and pending:
            dets = model.detect([f for _, f in pending])
            per_frame.extend((i, i / fps, d) for (i, _), d in zip(pending, dets))
        pending.clear()

    decoded = to_model = 0
    next_model_t = 0.0
    try:
        for i, frame in src.iter_frames():
            if i % step == 0:
                ctx.progress(i / n, f"frame {i + 1} of {n}")
            rec = sel.measure(i, frame)
            status[i] = STATUS_CODE[rec.status]
            decoded += 1
            if rec.ok and model is not None and (model_fps <= 0 or i / fps >= next_model_t):
                next_model_t = i / fps + 1.0 / model_fps if model_fps > 0 else 0.0
                to_model += 1
                pending.append((i, frame))
                if len(pending) >= batch:
                    flush()
        flush()
    except ReadError as e:
        if decoded == 0:
            raise
        notes.append(f"decoding stopped at frame {decoded}: {e.problem}; frames after it were not analysed")
    finally:
        src.close()
    ctx.progress(1.0, "done")
    recs = sel.records
    counts = skipped_counts(recs)
    analysed = sum(r.ok for r in recs)
    findings = merge_detections(per_frame, fps, model_id) if model is not None else []
    outputs = {
        "frames_total": n,
        "frames_analysed": analysed,
        "frames_skipped": len(recs) - analysed,
        "skipped": counts,
        "fps": round(fps, 4),
        "duration_s": round(n / fps, 3) if fps else 0.0,
        "findings_count": len(findings),
        "_bands": bands([r.status for r in recs], fps),
        "_findings": findings,
    }
    if model is not None:
        outputs["frames_to_model"] = to_model
        if model_fps > 0:
            outputs["model_rate_fps"] = model_fps
        outputs["quality_thresholds_sha256"] = q_sha
    if decoded < n:
        outputs["frames_not_decoded"] = n - decoded
    arrays = {
        "status": status,
        "blur_var": np.array([r.blur_var for r in recs], np.float32),
        "mean_luma": np.array([r.mean_luma for r in recs], np.float32),
        "glare_fraction": np.array([r.glare_fraction for r in recs], np.float32),
    }
    return Result(model_id=model_id, weights_sha256=weights_sha, runtime=runtime, device=device,
                  seconds=time.perf_counter() - t0, outputs=jsonable(outputs), clinical=clinical,
                  notes=notes, arrays=arrays)

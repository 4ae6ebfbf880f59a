"""Endoscopy review: the whole video on a worker, frame selection first, then the frame model.

``analyse(study, "endo-quality")``  frame quality only (needs no weights): how many frames are
                                     usable, and why the others were skipped.
``analyse(study, "endo-polyp-lightbox")``  (the default) the same selection, then Lightbox's bundled
                                     polyp segmenter on the kept frames, behind its out-of-domain gate; a
                                     polyp on ``persist_frames`` consecutive analysed frames is one finding
                                     (time, key frame = most confident, confidence, box, area).
``analyse(study, "endo-polyp")``    the same with a user-installed ONNX polyp model; detections on
                                     consecutive analysed frames merge into one finding.

Findings match events (:mod:`inference.endo.persistence`): a scene cut (:mod:`inference.endo.scenes`,
measured between consecutive usable frames) ends a finding; a frozen / duplicate frame repeats the
last analysed frame's result instead of breaking the persistence rule.

What is analysed depends on the study (:func:`study_mode`): a video or a folder of one video's frames
is a **sequence** (selection, persistence, cuts); a single **still** image, or a folder opened as a
**set** of stills, is analysed image by image: every image goes to the model whatever its quality
(the quality is noted), each image with a polyp is its own finding, and the outputs carry the verdict
of each image (``polyp``, ``confidence``, ``area_fraction`` for a still; ``_per_image`` for a set).

Outputs (JSON, stored with the result): frames_total, frames_analysed, frames_skipped (total),
skipped (per reason), duration_s, fps, findings_count; hidden keys (``_``-prefixed, not shown in the
results table but stored): ``_bands`` (timeline quality bands), ``_findings`` (the model's
proposed findings, which the viewer files into the store's ``findings`` table for the clinician to
confirm or reject) and ``_scene_cuts``. Blob (stored beside the result, ``Store.result_blob``):
``polyp_masks``, the :class:`inference.endo.masks.MaskTrack` of every analysed frame, so playback
shows the masks without running the model again. Arrays (not stored): per-frame status code,
Laplacian variance, mean luma, glare.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from inference.endo.models import (LIGHTBOX_POLYP_ID, POLYP_ID, QUALITY_ID, Detection, PolypOnnx,
                                   load_quality_config, polyp_model)
from inference.endo.masks import BLOB_NAME, MaskTrack
from inference.endo.persistence import Persistence
from inference.endo.polyp import OUT_OF_DOMAIN, PolypSegmenter
from inference.endo.quality import STATUS_CODE, FrameSelector, bands, skipped_counts
from inference.endo.scenes import CutDetector
from inference.registry import Registry
from inference.results import Result, jsonable
from inference.runtimes import cpu_label
from inference.study import ReadError, Study

# the bundled Lightbox segmenter is the default (always usable: it ships with Lightbox); live mode uses a
# user-installed endo-polyp instead when there is one (models.default_polyp_id)
MODELS = (LIGHTBOX_POLYP_ID, QUALITY_ID, POLYP_ID)
MERGE_GAP_S = 0.5  # detections closer than this (in analysed frames) are one finding


def _source(study: Study):
    src = study.data.get("source")
    if src is None:
        raise ReadError(study.source, "this study holds no frames (re-open the file)")
    return src.reopen()  # own decoder: the viewer keeps using its own on the UI thread


def merge_detections(per_frame: list[tuple[int, float, list[Detection]]], fps: float, source: str,
                     gap_s: float = MERGE_GAP_S, cuts: list[int] | tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """[(frame index, time, detections)] in frame order -> findings (one per run of detections). A scene
    cut (frame index in ``cuts``: the view changed abruptly before it) ends every open run."""
    findings: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    cut_set = sorted(set(int(c) for c in cuts))
    ci = 0
    for idx, t, dets in per_frame:
        while ci < len(cut_set) and cut_set[ci] <= idx:
            open_.clear()
            ci += 1
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
        f.update(first_frame=a, last_frame=b)
        span = f"seen on {n} analysed frame{'s' if n != 1 else ''}, frames {a}-{b} ({a / fps:.2f}-{b / fps:.2f} s)"
        f["note"] = f"{f['note']}; {span}" if f["note"] else span
    return findings


def study_mode(study: Study) -> str:
    """'still' (one image), 'set' (a folder of unrelated stills: each image on its own) or 'sequence'
    (a video, or a folder of the frames of one)."""
    m = study.metadata
    if m.get("format") == "image":
        return "still"
    return "set" if m.get("folder_as") == "set" else "sequence"


def analyse(study: Study, model_id: str, registry: Registry, ctx) -> Result:
    if model_id not in MODELS:
        raise ValueError(f"unknown endoscopy model {model_id!r}")
    t0 = time.perf_counter()
    cfg, q_sha = load_quality_config(registry)
    model: PolypOnnx | PolypSegmenter | None = None
    mode = study_mode(study)
    if model_id in (POLYP_ID, LIGHTBOX_POLYP_ID):
        st = registry.require(model_id)
        model = polyp_model(registry, model_id, stills=mode != "sequence")
        weights_sha, runtime, device, clinical = st.sha256 or "", "onnxruntime", model.device, st.clinical
        batch = int(st.entry.outputs.get("batch", 8))
        # a heavy network on a CPU cannot see every frame of an hour of video: the manifest may cap the
        # rate of frames given to the model (per second of video; 0 = every usable frame)
        model_fps = float(st.entry.outputs.get("model_fps", 0) or 0) if mode == "sequence" else 0.0
    else:
        st = registry.require(QUALITY_ID)
        weights_sha, runtime, device, clinical = q_sha, "numpy", cpu_label(), st.clinical
        batch, model_fps = 1, 0.0
    src = _source(study)
    n, fps = len(src), src.fps
    run = _Run(model, model_id, fps, n, mode, st)
    sel = FrameSelector(cfg, fps)
    cuts = CutDetector()
    status = np.zeros(n, np.uint8)
    step = max(1, n // 200)
    notes: list[str] = []
    decoded = 0
    next_model_t = 0.0
    try:
        for i, frame in src.iter_frames():
            if i % step == 0:
                ctx.progress(i / n, f"{'image' if mode != 'sequence' else 'frame'} {i + 1} of {n}")
            if mode == "sequence":
                rec = sel.measure(i, frame)
            else:  # every still on its own: no duplicate test against the image before it
                rec = FrameSelector(cfg, fps).measure(i, frame)
                sel.records.append(rec)
            status[i] = STATUS_CODE[rec.status]
            decoded += 1
            if model is None:
                continue
            if mode != "sequence":
                run.cut(i)  # an image is never the same polyp as the image before it
                run.frame(i, frame)
            elif rec.ok:
                if cuts.update(i, frame):
                    run.cut(i)
                if model_fps <= 0 or i / fps >= next_model_t:
                    next_model_t = i / fps + 1.0 / model_fps if model_fps > 0 else 0.0
                    run.frame(i, frame)
            elif rec.status == "duplicate":
                run.hold(i)
            if run.pending_frames >= batch:
                run.flush()
        run.flush()
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
    findings = run.findings(getattr(src, "files", None))
    to_model = run.to_model
    still_quality = mode == "sequence" or model is None  # a still given to the model is analysed whatever its quality
    if model is not None and to_model and run.out_of_domain > to_model / 2:
        notes.append(f"{run.out_of_domain} of {to_model} frames are {OUT_OF_DOMAIN}; they were given no finding")
    outputs = {
        "frames_total": n,
        "frames_analysed": analysed if still_quality else to_model,
        "frames_skipped": len(recs) - analysed if still_quality else n - to_model,
        "skipped": counts if still_quality else {k: 0 for k in counts},
        "fps": round(fps, 4),
        "duration_s": round(n / fps, 3) if fps else 0.0,
        "findings_count": len(findings),
        "_bands": bands([r.status for r in recs], fps),
        "_findings": findings,
    }
    if mode != "sequence":  # stills have no time
        outputs.pop("fps")
        outputs.pop("duration_s")
        outputs["images"] = n
        poor = {k: v for k, v in counts.items() if v and k != "duplicate"}
        if poor:
            notes.append("image quality: " + ", ".join(f"{v} {k}" for k, v in poor.items())
                         + " (analysed all the same: a still is analysed as it is)")
    if model is not None:
        outputs["frames_to_model"] = to_model
        outputs["frames_out_of_domain"] = run.out_of_domain
        if run.persist is not None and mode == "sequence":
            outputs["persistence"] = (f"a polyp on {run.persist.min_frames} consecutive analysed or held (frozen) "
                                      "frames" + (f" with median confidence >= {run.persist.min_confidence:g}"
                                                  if run.persist.min_confidence > 0 else "")
                                      + "; a scene cut ends a finding")
        if mode == "sequence":
            outputs["frames_held"] = run.held
            outputs["scene_cuts"] = len(cuts.cuts)
            outputs["_scene_cuts"] = cuts.cuts[:5000]
        if model_fps > 0:
            outputs["model_rate_fps"] = model_fps
        outputs["masks_stored"] = len(run.track)
        if isinstance(model, PolypSegmenter):
            outputs["test_time_augmentation"] = model.tta
        outputs.update(run.still_outputs(mode, src))
        outputs["quality_thresholds_sha256"] = q_sha
    if decoded < n:
        outputs["frames_not_decoded"] = n - decoded
    arrays = {
        "status": status,
        "blur_var": np.array([r.blur_var for r in recs], np.float32),
        "mean_luma": np.array([r.mean_luma for r in recs], np.float32),
        "glare_fraction": np.array([r.glare_fraction for r in recs], np.float32),
    }
    if model is not None and mode == "still":  # the image's mask (lightbox evaluate scores it against a label)
        m = run.track.mask(0)
        arrays["mask"] = m if m is not None else np.zeros((run.track.side or 128,) * 2, bool)
    blobs = {BLOB_NAME: run.track.to_bytes()} if model is not None else {}
    return Result(model_id=model_id, weights_sha256=weights_sha, runtime=runtime, device=device,
                  seconds=time.perf_counter() - t0, outputs=jsonable(outputs), clinical=clinical,
                  notes=notes, arrays=arrays, blobs=blobs)


class _Run:
    """The model's side of one analysis: frames wait in a batch, and the frame / held-frame / scene-cut
    events are replayed in order once the batch has run, into the persistence rule and the mask track."""

    def __init__(self, model, model_id: str, fps: float, n: int, mode: str, st):
        self.model, self.model_id, self.fps, self.mode = model, model_id, fps, mode
        self.events: list[tuple] = []
        self.pending_frames = 0
        self.to_model = self.out_of_domain = self.held = 0
        self.track = MaskTrack(n)
        self.per_frame: list[tuple[int, float, list[Detection]]] = []
        self.cut_frames: list[int] = []
        self.per_image: list[dict[str, Any]] = []
        self._last: int | None = None
        self._last_dets: list[Detection] = []
        self.persist: Persistence | None = None
        if isinstance(model, PolypSegmenter):
            o = st.entry.outputs or {}
            seq = mode == "sequence"
            self.persist = Persistence(fps, min_frames=int(o.get("persist_frames", 3)) if seq else 1,
                                       max_gap_s=float(o.get("persist_gap_s", 0.5)), source=model_id,
                                       min_confidence=float(o.get("persist_confidence", 0.0)) if seq else 0.0)

    def frame(self, i: int, rgb: np.ndarray) -> None:
        self.events.append(("frame", i, rgb))
        self.pending_frames += 1
        self.to_model += 1

    def hold(self, i: int) -> None:
        self.events.append(("hold", i))

    def cut(self, i: int) -> None:
        self.events.append(("cut", i))

    def flush(self) -> None:
        frames = [e[2] for e in self.events if e[0] == "frame"]
        if isinstance(self.model, PolypSegmenter):
            outs = iter(self.model.analyse(frames) if frames else [])
        else:
            outs = iter(self.model.detect_with_masks(frames) if frames else [])
        for e in self.events:
            kind, i = e[0], e[1]
            if kind == "cut":
                self._last = None
                self.cut_frames.append(i)
                if self.persist is not None:
                    self.persist.cut(i)
            elif kind == "hold":
                if self._last is None:
                    continue
                self.held += 1
                self.track.hold(i, self._last)
                if self.persist is not None:
                    self.persist.hold(i)
                else:  # the user's model: the held frame repeats the last analysed frame's detections
                    self.per_frame.append((i, i / self.fps, self._last_dets))
            elif isinstance(self.model, PolypSegmenter):
                r = next(outs)
                self._last = i
                self.out_of_domain += not r.in_domain
                self.track.add(i, r.mask if r.polyp else None)
                self.persist.add(i, r)
                if self.mode != "sequence":
                    self.per_image.append({"index": i, "in_domain": r.in_domain, "polyp": bool(r.polyp),
                                           "confidence": r.confidence, "area": r.area,
                                           **({"note": r.domain_note} if r.domain_note else {})})
            else:
                dets, mask = next(outs)
                self._last, self._last_dets = i, dets
                self.track.add(i, mask if dets else None)
                self.per_frame.append((i, i / self.fps, dets))
                if self.mode != "sequence":
                    top = dets[0] if dets else None
                    self.per_image.append({"index": i, "in_domain": True, "polyp": bool(dets),
                                           "confidence": top.confidence if top else 0.0})
        self.events.clear()
        self.pending_frames = 0

    def findings(self, files: list | None = None) -> list[dict[str, Any]]:
        if self.model is None:
            return []
        if self.persist is not None:
            out = [dict(f) for f in self.persist.findings]
        else:
            out = merge_detections(self.per_frame, self.fps, self.model_id,
                                   gap_s=0.0 if self.mode != "sequence" else MERGE_GAP_S, cuts=self.cut_frames)
        if self.mode != "sequence":  # a still has no time: say which image, not which frames
            for f in out:
                i = int(f["frame_index"])
                name = files[i].name if files is not None and i < len(files) else f"image {i + 1}"
                area = f.get("area")
                f["note"] = (f"{'image ' + str(i + 1) + ': ' if self.mode == 'set' else ''}{name}"
                             + (f"; area {100 * area:.1f} % of the image" if area else ""))
        return out

    def still_outputs(self, mode: str, src) -> dict[str, Any]:
        """A still: its verdict as plain outputs (columns of a batch table); a set: one entry per image."""
        if mode == "sequence":
            return {}
        files = getattr(src, "files", None)
        for p in self.per_image:
            if files is not None and p["index"] < len(files):
                p["file"] = files[p["index"]].name
        out: dict[str, Any] = {"images_with_polyp": sum(p["polyp"] for p in self.per_image),
                               "_per_image": self.per_image}
        if mode == "still" and self.per_image:
            p = self.per_image[0]
            out.update(polyp=p["polyp"], confidence=round(float(p["confidence"]), 4),
                       area_fraction=round(float(p.get("area", 0.0)), 5), in_domain=p["in_domain"])
        return out

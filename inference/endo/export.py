"""The endoscopy export bundle (pure: no Qt, no store — the caller passes the rows).

One zip with the five files the reference system (MedVision AI) defines, keeping its key names so a
tool written for that bundle reads ours, plus Lightbox's own keys (frame index, video time, status,
provenance):

- ``metadata.json``  study/session facts (video, sha256, fps, frames, who/what produced the analysis)
- ``summary.json``   frames total/analysed/skipped by reason, findings by status, key findings
- ``findings.csv``   Excel-compatible, one row per finding (reference columns first)
- ``findings.json``  the same findings as structured data
- ``report.txt``     human-readable report
- ``frames/frame_NNNNNN.jpg`` (optional) the key frame of each finding, with the polyp mask the model
  drew on it (translucent cyan fill + outline) when a model made the finding

The zip is written to a temporary file beside the destination and renamed over it, so a reader
never sees half a bundle. Full shapes: README.md, "Endoscopy".
"""
from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from inference import __version__
from inference.atomic import atomic_path
from inference.results import DISCLAIMER, NOT_CLINICAL, Result, jsonable

BUNDLE_FILES = ("metadata.json", "summary.json", "findings.csv", "findings.json", "report.txt")
CSV_COLUMNS = ["Frame_Index", "Timestamp", "Finding", "Location", "Risk Level", "Suggested Action",
               "Time_s", "Confidence", "Source", "Status", "Note", "Box", "Finding_Id"]


def fmt_time(t: float | None) -> str:
    """Video time as mm:ss.ss (h:mm:ss.ss past an hour)."""
    if t is None:
        return ""
    t = max(float(t), 0.0)
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h)}:{int(m):02d}:{s:05.2f}" if h else f"{int(m):02d}:{s:05.2f}"


def finding_span(f: dict) -> tuple[int, int] | None:
    """(first, last) frame a model's finding was seen on, from its note ("... frames 81-119 ...")."""
    import re

    m = re.search(r"frames (\d+)-(\d+)", f.get("note") or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _box(v: Any) -> list[float] | None:
    if v in (None, "", "null"):
        return None
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return None
    return [float(x) for x in v] if isinstance(v, (list, tuple)) and len(v) == 4 else None


def _note_fields(note: str) -> dict[str, str | None]:
    """location / risk level / suggested action when a finding's note carries them
    ("location: ...; risk level: ...; suggested action: ..." as the VLM backend writes it)."""
    out: dict[str, str | None] = {"location": None, "risk_level": None, "suggested_action": None}
    for part in (note or "").split(";"):
        k, _, v = part.partition(":")
        key = k.strip().lower().replace(" ", "_")
        if key in out and v.strip():
            out[key] = v.strip()
    return out


def _area(note: str) -> float | None:
    """The lesion's area as a fraction of the frame when the note states it ("area 4.2 % of the frame")."""
    import re

    m = re.search(r"area ([0-9.]+) % of the (?:frame|image)", note or "")
    return round(float(m.group(1)) / 100, 5) if m else None


def finding_record(f: dict[str, Any]) -> dict[str, Any]:
    """A store ``findings`` row -> findings.json entry (reference keys + Lightbox keys)."""
    nf = _note_fields(f.get("note") or "")
    conf = f.get("confidence")
    conf = None if conf is None or (isinstance(conf, float) and not np.isfinite(conf)) else float(conf)
    return {
        "id": f.get("id"),
        "finding": f.get("label") or "",
        "location": nf["location"],
        "risk_level": nf["risk_level"],
        "suggested_action": nf["suggested_action"],
        "timestamp": fmt_time(f.get("time_s")),
        "time_s": None if f.get("time_s") is None else round(float(f["time_s"]), 3),
        "frame_index": f.get("frame_index"),
        "confidence": conf,
        "model": f.get("source") or "",
        "status": f.get("status") or "proposed",
        "note": f.get("note") or "",
        "box": _box(f.get("box")),
        "area_fraction": _area(f.get("note") or ""),
        "created_at": f.get("created_at"),
    }


def _quality(results: Iterable[Result]) -> Result | None:
    qs = [r for r in results if "frames_total" in r.outputs]
    return qs[-1] if qs else None


def build_bundle_files(study_meta: dict[str, Any], findings: list[dict[str, Any]], results: list[Result],
                       session_type: str = "review", now: _dt.datetime | None = None) -> dict[str, str]:
    """The five files as text. ``study_meta``: name, source, sha256, study_id, created_at and the
    reader's metadata (fps, frame_count, duration_s, width, height)."""
    now = now or _dt.datetime.now()
    recs = [finding_record(f) for f in sorted(findings, key=lambda f: (f.get("time_s") or 0.0, f.get("id") or 0))]
    q = _quality(results)
    qo = q.outputs if q else {}
    by_status: dict[str, int] = {}
    for r in recs:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    high = sum(1 for r in recs if (r["risk_level"] or "").lower() == "high")
    non_clinical = any(not r.clinical for r in results)
    key = [r for r in recs if r["status"] == "confirmed"] or [r for r in recs if r["status"] != "rejected"]
    key_lines = [f"{r['timestamp']} (frame {r['frame_index']}): {r['finding']}"
                 + (f" [{r['confidence']:.2f}]" if r["confidence"] is not None else "")
                 + f" — {r['status']}, {r['model']}" for r in key[:20]]
    skipped = qo.get("skipped", {})
    overall = []
    if qo:
        overall.append((f"{qo.get('frames_total')} frames ({fmt_time(qo.get('duration_s'))}); "
                        if qo.get("duration_s") is not None else f"{qo.get('frames_total')} still image(s); ")
                       + f"{qo.get('frames_analysed')} analysed, {qo.get('frames_skipped')} skipped"
                       + (" (" + ", ".join(f"{k} {v}" for k, v in skipped.items() if v) + ")" if skipped else "")
                       + ".")
    else:
        overall.append("No frame analysis stored for this video.")
    overall.append(f"{len(recs)} finding{'s' if len(recs) != 1 else ''}: "
                   + (", ".join(f"{v} {k}" for k, v in sorted(by_status.items())) or "none") + ".")
    overall_text = " ".join(overall)
    models = [{"result_id": r.id, "model": r.model_id, "weights_sha256": r.weights_sha256, "runtime": r.runtime,
               "device": r.device, "seconds": round(r.seconds, 3), "created_at": r.created,
               "clinical": r.clinical, "stamp": r.stamp} for r in results]

    metadata = {
        "session_id": (study_meta.get("sha256") or "")[:16] or study_meta.get("name"),  # anonymised: the code
        "title": study_meta.get("name"),
        "procedure_type": study_meta.get("procedure_type", "endoscopy"),
        "session_type": session_type,
        "created_at": study_meta.get("created_at"),
        "duration_seconds": study_meta.get("duration_s"),
        "total_frames": study_meta.get("frame_count"),
        "frames_analyzed": qo.get("frames_analysed"),
        "total_findings": len(recs),
        "high_risk_findings": high,
        "frames_included": bool(study_meta.get("frames_included", False)),
        "frame_count": study_meta.get("frames_exported", 0),
        "frames_with_mask": study_meta.get("frames_with_mask", 0),
        "export_generated_at": now.isoformat(timespec="seconds"),
        # Lightbox
        "study_id": study_meta.get("study_id"),
        "source": study_meta.get("source"),
        "sha256": study_meta.get("sha256"),
        "fps": study_meta.get("fps"),
        "width": study_meta.get("width"),
        "height": study_meta.get("height"),
        "software": f"Lightbox {__version__}",
        "models": models,
        "not_a_clinical_result": non_clinical,
        "disclaimer": DISCLAIMER,
    }
    summary = {
        "overall_summary": overall_text,
        "total_frames_analyzed": qo.get("frames_analysed"),
        "high_risk_findings_count": high,
        "key_findings": key_lines,
        # Lightbox
        "frames_total": qo.get("frames_total", study_meta.get("frame_count")),
        "frames_analysed": qo.get("frames_analysed"),
        "frames_skipped": qo.get("frames_skipped"),
        "skipped_by_reason": skipped,
        "findings_count": len(recs),
        "findings_by_status": by_status,
        "quality_result_id": q.id if q else None,
        "quality_model": q.model_id if q else None,
        "stamp": NOT_CLINICAL if non_clinical else "",
    }
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in recs:
        w.writerow([r["frame_index"], r["timestamp"], r["finding"], r["location"] or "", r["risk_level"] or "",
                    r["suggested_action"] or "", r["time_s"], "" if r["confidence"] is None else r["confidence"],
                    r["model"], r["status"], r["note"], "" if r["box"] is None else json.dumps(r["box"]), r["id"]])
    rule = "=" * 80
    lines = [rule, "ENDOSCOPY VIDEO REVIEW REPORT", rule, ""]
    if non_clinical:
        lines += [f"*** {NOT_CLINICAL}: some results come from non-official weights ***", ""]
    lines += [f"Study: {study_meta.get('name')}", f"Source: {study_meta.get('source')}",
              f"File sha256: {study_meta.get('sha256') or '(withheld: anonymised export)'}",
              f"Video: {study_meta.get('width')}x{study_meta.get('height')}, {study_meta.get('fps')} fps, "
              f"{study_meta.get('frame_count')} frames, {fmt_time(study_meta.get('duration_s'))}",
              f"Session type: {session_type}", f"Exported: {now.strftime('%Y-%m-%d %H:%M:%S')}", "",
              rule, "SUMMARY", rule, "", overall_text, ""]
    if skipped:
        lines += ["Frames skipped before analysis:"] + [f"  {k:<12} {v:>6}" for k, v in skipped.items()] + [""]
    lines += [rule, "DETAILED FINDINGS", rule, ""]
    if not recs:
        lines.append("No findings.")
    for i, r in enumerate(recs, 1):
        conf = f"{r['confidence']:.2f}" if r["confidence"] is not None else "-"
        lines += [f"--- Finding #{i} ({r['timestamp']}, frame {r['frame_index']}) ---",
                  f"Finding: {r['finding']}", f"Status: {r['status']}", f"Confidence: {conf}",
                  f"Source: {r['model']}", f"Location: {r['location'] or 'Not specified'}",
                  f"Risk Level: {r['risk_level'] or 'Not graded'}",
                  f"Suggested Action: {r['suggested_action'] or '-'}"]
        if r["note"]:
            lines.append(f"Note: {r['note']}")
        if r["box"]:
            lines.append("Box (fractions x0, y0, x1, y1): " + ", ".join(f"{v:.3f}" for v in r["box"]))
        lines.append("")
    lines += [rule, "PROVENANCE", rule, ""]
    for m in models:
        lines.append(f"result #{m['result_id']}: {m['model']} · weights {m['weights_sha256'] or '(none)'} · "
                     f"{m['runtime']} on {m['device']} · {m['seconds']} s · {m['created_at']}"
                     + (f" · {m['stamp']}" if m["stamp"] else ""))
    if not models:
        lines.append("No model results.")
    lines += ["", rule, "EXPORT CONTENTS", rule, "", "- metadata.json (session information)",
              "- summary.json (analysis summary)", "- findings.csv (Excel-compatible findings)",
              "- findings.json (detailed structured data)", "- report.txt (this file)"]
    if study_meta.get("frames_exported"):
        lines.append(f"- frames/ directory ({study_meta['frames_exported']} JPEG key frames"
                     + (f", {study_meta['frames_with_mask']} with the model's polyp mask drawn"
                        if study_meta.get("frames_with_mask") else "") + ")")
    lines += ["", DISCLAIMER, f"Generated by Lightbox {__version__}", ""]
    return {
        "metadata.json": json.dumps(jsonable(metadata), indent=2),
        "summary.json": json.dumps(jsonable(summary), indent=2),
        "findings.csv": buf.getvalue(),
        "findings.json": json.dumps(jsonable(recs), indent=2),
        "report.txt": "\n".join(lines),
    }


def write_bundle(dest: str | Path, study_meta: dict[str, Any], findings: list[dict[str, Any]],
                 results: list[Result], frame_getter: Callable[[int], np.ndarray] | None = None,
                 session_type: str = "review", max_frames: int = 50,
                 masks: dict[int, np.ndarray] | None = None) -> Path:
    """Write the zip atomically; ``frame_getter(index) -> RGB`` adds each finding's key frame, with the
    mask of ``masks`` ({finding id: bool mask}, :func:`inference.endo.keyframes.key_frame_masks`) drawn."""
    from inference.endo.masks import overlay

    dest = Path(dest)
    frames: dict[str, bytes] = {}
    masks = masks or {}
    by_frame = {int(f["frame_index"]): masks[f["id"]] for f in findings
                if f.get("frame_index") is not None and f.get("id") in masks}
    if frame_getter is not None:
        import cv2

        for idx in sorted({int(f["frame_index"]) for f in findings if f.get("frame_index") is not None})[:max_frames]:
            try:
                rgb = frame_getter(idx)
            except Exception:
                continue
            if idx in by_frame:
                rgb = overlay(rgb, by_frame[idx])
            ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            if ok:
                frames[f"frames/frame_{idx:06d}.jpg"] = jpg.tobytes()
    meta = dict(study_meta, frames_included=bool(frames), frames_exported=len(frames),
                frames_with_mask=len({i for i in by_frame if f"frames/frame_{i:06d}.jpg" in frames}))
    files = build_bundle_files(meta, findings, results, session_type)
    with atomic_path(dest) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for name in BUNDLE_FILES:
                z.writestr(name, files[name])
            for name, data in frames.items():
                z.writestr(name, data)
    return dest


def read_bundle(path: str | Path) -> dict[str, Any]:
    """Parse a bundle back (tests, and anyone checking an export): json files as objects, the CSV
    as a list of dicts, report.txt as text."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        out: dict[str, Any] = {"_names": names}
        for n in ("metadata.json", "summary.json", "findings.json"):
            out[n] = json.loads(z.read(n))
        out["findings.csv"] = list(csv.DictReader(io.StringIO(z.read("findings.csv").decode("utf-8"))))
        out["report.txt"] = z.read("report.txt").decode("utf-8")
    return out


def study_meta(study, study_id: int | None = None, created_at: str | None = None) -> dict[str, Any]:
    m = study.metadata
    return {"name": study.name, "source": study.source, "sha256": study.sha256, "study_id": study_id,
            "created_at": created_at, "fps": m.get("fps"), "frame_count": m.get("frame_count"),
            "duration_s": m.get("duration_s"), "width": m.get("width"), "height": m.get("height")}


def export_from_store(store, study, study_id: int, dest: str | Path, with_frames: bool = True,
                      session_type: str = "review", registry=None) -> Path:
    """The bundle for a stored study: findings and endoscopy results straight from the store; each model
    finding's key frame with its mask."""
    from inference.endo.keyframes import key_frame_masks
    from inference.endo.pipeline import MODELS

    row = store.study(study_id) or {}
    findings = store.findings(study_id)
    results = [r for r in store.results(study_id) if r.model_id in MODELS or r.model_id.startswith("endo-")]
    getter = None
    src = study.data.get("source") if with_frames else None
    if src is not None:
        src = src.reopen()
        getter = src.frame
    try:
        masks = key_frame_masks(findings, store.result_blob, getter, registry) if getter is not None else {}
        return write_bundle(dest, study_meta(study, study_id, row.get("created_at")), findings, results,
                            frame_getter=getter, session_type=session_type, masks=masks)
    finally:
        if src is not None:
            src.close()

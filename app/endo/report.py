"""Endoscopy PDF section: video facts, frame selection, quality/findings timeline, findings table and
key frames (the frame of each finding with the polyp mask its model drew and its box, confirmed findings
first)."""
from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import Image, KeepTogether, Paragraph, Spacer, Table, TableStyle

from app.report.base import BODY, H2, SMALL, figure, latest, table
from inference.endo.export import finding_span, fmt_time
from inference.results import NOT_CLINICAL

QUALITY_COLOURS = {"ok": "#4c9a6a", "blur": "#d29922", "dark": "#3b4a8a", "overexposed": "#c9c9c9",
                   "glare": "#39c5cf", "duplicate": "#8b949e"}
STATUS_COLOURS = {"proposed": "#d29922", "confirmed": "#2e7d32", "rejected": "#8b949e"}
STATUS_BGR = {"proposed": (34, 153, 210), "confirmed": (50, 125, 46), "rejected": (158, 148, 139)}
MAX_KEY_FRAMES = 6


def _box(v) -> list[float] | None:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return None
    return v if isinstance(v, list) and len(v) == 4 else None


def _timeline_fig(n: int, fps: float, bands: list[dict], findings: list[dict], cuts: list[int] = ()):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    dur = n / fps if fps else 0
    fig = Figure(figsize=(7.2, 1.5))  # not pyplot: its global registry kept every report's figure
    ax = fig.subplots()
    for b in bands:
        ax.broken_barh([(b["start"] / fps, (b["end"] - b["start"]) / fps)], (1.1, 0.8),
                       facecolors=QUALITY_COLOURS.get(b["status"], "#999999"))
    for c in cuts:  # scene cuts: a finding never spans one
        ax.plot([c / fps, c / fps], [1.05, 1.95], color="white", lw=1.2)
    for f in findings:
        t = (f.get("frame_index") or 0) / fps
        c = STATUS_COLOURS.get(f.get("status") or "proposed", "#d29922")
        span = finding_span(f)
        if span:  # the frames the finding was seen on
            ax.broken_barh([(span[0] / fps, (span[1] + 1 - span[0]) / fps)], (0.05, 0.18), facecolors=c, alpha=0.45)
        ax.plot([t, t], [0.1, 0.9], color=c, lw=1.5)
        ax.plot([t], [0.5], marker="D", color=c, ms=4)
    ax.set_xlim(0, max(dur, 1e-3))
    ax.set_ylim(0, 2)
    ax.set_yticks([0.5, 1.5])
    ax.set_yticklabels(["findings", "quality"], fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _p: fmt_time(x)[:-3]))
    ax.set_xlabel("video time (mm:ss)", fontsize=7)
    handles = [matplotlib.patches.Patch(color=c, label=k) for k, c in QUALITY_COLOURS.items()]
    handles += [matplotlib.lines.Line2D([], [], color=c, marker="D", lw=0, label=k) for k, c in STATUS_COLOURS.items()]
    ax.legend(handles=handles, fontsize=6, ncol=9, loc="upper center", bbox_to_anchor=(0.5, 1.42), frameon=False)
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    fig.tight_layout()
    return fig


def _key_frame(rgb: np.ndarray, f: dict | None, width_px: int = 480, mask: np.ndarray | None = None) -> bytes:
    import cv2

    from inference.endo.masks import overlay

    h, w = rgb.shape[:2]
    s = width_px / w
    img = cv2.resize(rgb, (width_px, int(round(h * s))), interpolation=cv2.INTER_AREA)
    if mask is not None:
        img = overlay(img, mask, outline_px=2)
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    box = _box(f.get("box")) if f else None
    if box:
        H, W = bgr.shape[:2]
        colour = STATUS_BGR.get(f.get("status") or "proposed", (34, 153, 210))
        p0 = (int(box[0] * W), int(box[1] * H))
        p1 = (int(box[2] * W), int(box[3] * H))
        cv2.rectangle(bgr, p0, p1, colour, 3)
    ok, png = cv2.imencode(".png", bgr)
    return png.tobytes()


def _selection_section(q, flow: list) -> list[dict]:
    """Frame selection of a video: counts per skip reason. Returns the timeline bands."""
    flow.append(Paragraph("Frame selection", H2))
    if q is None:
        flow.append(Paragraph("No frame analysis is stored for this video (run Frame quality or the polyp "
                              "model in review mode).", BODY))
        return []
    o = q.outputs
    sk = o.get("skipped", {})
    rows = [["Frames", "Analysed", "Skipped", *[k for k in sk]],
            [str(o.get("frames_total")), str(o.get("frames_analysed")), str(o.get("frames_skipped")),
             *[str(v) for v in sk.values()]]]
    flow.append(table(rows))
    cuts = o.get("scene_cuts")
    flow.append(Paragraph(f"From result #{q.id} ({q.model_id}). Skipped frames are not shown to the model: "
                          "dark/overexposed (exposure), blur (Laplacian variance), glare (specular "
                          "white-out), duplicate (near-identical to the last analysed frame: it repeats that "
                          "frame's verdict)." + (f" {cuts} scene cut(s): a finding never spans one."
                                                 if cuts is not None else ""), SMALL))
    return o.get("_bands") or []


def _images_section(q, files) -> list:
    """Still images: the verdict of each image."""
    out: list = [Paragraph("Images", H2)]
    if q is None or "_per_image" not in q.outputs:
        out.append(Paragraph("No image analysis is stored (Analyse image).", BODY))
        return out
    rows = [["#", "Image", "Verdict", "Conf.", "Area", "Note"]]
    for p in q.outputs["_per_image"][:200]:
        i = int(p["index"])
        name = p.get("file") or (files[i].name if i < len(files) else f"image {i + 1}")
        verdict = ("polyp" if p["polyp"] else "no polyp") if p.get("in_domain", True) else "not analysed"
        rows.append([str(i + 1), name, verdict, f"{p['confidence']:.2f}",
                     f"{100 * p['area']:.1f} %" if p.get("area") else "—", p.get("note", "")])
    out.append(table(rows, col_widths=[8 * mm, 62 * mm, 22 * mm, 14 * mm, 16 * mm, 64 * mm]))
    out.append(Paragraph(f"From result #{q.id} ({q.model_id}). Every image is given to the model whatever "
                         "its quality; an image outside the model's domain gets no verdict.", SMALL))
    return out


def sections(study, results, store, study_id, extra: dict[str, Any]) -> list:
    m = study.metadata
    fps = float(m.get("fps") or 25.0)
    n = int(m.get("frame_count") or 0)
    still = m.get("format") == "image" or m.get("folder_as") == "set"
    files = getattr(study.data.get("source"), "files", None) or []
    flow: list = []
    if still:
        flow.append(table([["Images", "Kind", "Size (first)", "Type"],
                           [study.name, "one still" if n == 1 else f"{n} stills, each analysed on its own",
                            f"{m.get('width')} × {m.get('height')} px",
                            str(m.get("file_type") or (files[0].suffix.lstrip(".") if files else "")).upper()]],
                          col_widths=[70 * mm, 56 * mm, 28 * mm, 20 * mm]))
    else:
        flow.append(table([["Video", "Size", "Frame rate", "Frames", "Duration", "Codec"],
                           [study.name, f"{m.get('width')} × {m.get('height')} px", f"{fps:g} fps", str(n),
                            fmt_time(n / fps if fps else 0), str(m.get("codec", m.get("format", "")))]],
                          col_widths=[58 * mm, 26 * mm, 22 * mm, 18 * mm, 22 * mm, 28 * mm]))
    for note in study.notes:
        flow.append(Paragraph(f"Note: {note}", SMALL))
    flow.append(Spacer(1, 3 * mm))

    q = latest(results, needs="frames_total")
    findings = store.findings(study_id) if store is not None and study_id is not None else []

    if still:
        flow += _images_section(q, files)
        bands: list[dict] = []
    else:
        bands = _selection_section(q, flow)
    flow.append(Spacer(1, 2 * mm))
    if n and not still:
        cuts = (q.outputs.get("_scene_cuts") or []) if q is not None else []
        flow.append(figure(_timeline_fig(n, fps, bands, findings, cuts), 180))

    flow.append(Paragraph(f"Findings ({len(findings)})", H2))
    ood = int((q.outputs.get("frames_out_of_domain") or 0) if q is not None else 0)
    if ood and not still:
        flow.append(Paragraph(f"{ood} of {q.outputs.get('frames_to_model')} frames given to the model ({q.model_id}) were "
                              "<b>outside what this model was trained on</b>: they got no verdict, so no finding on them "
                              "does not mean no polyp there.", BODY))
    if not findings:
        flow.append(Paragraph("No findings recorded.", BODY))
    else:
        rows = [["#", "Time", "Frame", "Finding", "Conf.", "Source", "Status", "Note"] if not still else
                ["#", "", "Image", "Finding", "Conf.", "Source", "Status", "Note"]]
        for i, f in enumerate(findings, 1):
            c = f.get("confidence")
            st = f.get("status") or "proposed"
            fi = f.get("frame_index")
            rows.append([str(i), "" if still else fmt_time(f.get("time_s")),
                         str(fi + 1 if still and isinstance(fi, int) else fi), f.get("label") or "",
                         f"{c:.2f}" if isinstance(c, (int, float)) else "—", f.get("source") or "",
                         Paragraph(f"<font color='{STATUS_COLOURS.get(st, '#000000')}'><b>{st}</b></font>", BODY),
                         f.get("note") or ""])
        widths = [7 * mm, 16 * mm, 12 * mm, 26 * mm, 11 * mm, 34 * mm, 20 * mm, 60 * mm]
        if still:  # no time column: a still has none
            rows = [r[:1] + r[2:] for r in rows]
            widths = [7 * mm, 14 * mm, 26 * mm, 11 * mm, 34 * mm, 20 * mm, 74 * mm]
        flow.append(table(rows, col_widths=widths))
        if any("live" in (f.get("source") or "") or "result #" in (f.get("source") or "") for f in findings):
            flow.append(Paragraph("Model findings stay 'proposed' until a clinician confirms or rejects them.", SMALL))

    # key frames
    src = study.data.get("source")
    if src is not None and n:
        order = {"confirmed": 0, "proposed": 1}
        keyed = sorted((f for f in findings if f.get("status") != "rejected" and f.get("frame_index") is not None),
                       key=lambda f: (order.get(f.get("status"), 2), f.get("time_s") or 0))[:MAX_KEY_FRAMES]
        items: list[tuple[int, dict | None]] = [(int(f["frame_index"]), f) for f in keyed]
        if not items:
            items = [(int(extra.get("frame_index", 0) or 0), None)]
        from inference.endo.keyframes import key_frame_masks

        rd = src.reopen()
        cells = []
        try:
            masks = key_frame_masks([f for _, f in items if f], store.result_blob, rd.frame) if store else {}
            for idx, f in items:
                try:
                    rgb = rd.frame(min(max(idx, 0), n - 1))
                except Exception:
                    continue
                mask = masks.get(f.get("id")) if f else None
                img = Image(io.BytesIO(_key_frame(rgb, f, mask=mask)))
                wmm = 58 * mm
                img.drawWidth, img.drawHeight = wmm, wmm * img.imageHeight / img.imageWidth
                if f:
                    c = f.get("confidence")
                    where = (f"{fmt_time(f.get('time_s'))} · frame {idx}" if not still
                             else f"image {idx + 1}" + (f" · {files[idx].name}" if idx < len(files) else ""))
                    cap = (f"{where}<br/><b>{f.get('label')}</b>"
                           + (f" {c:.2f}" if isinstance(c, (int, float)) else "") + f" · {f.get('status')}"
                           + f"<br/>{f.get('source')}" + ("<br/>cyan: the model's polyp mask" if mask is not None else ""))
                else:
                    cap = f"Frame on screen: {fmt_time(idx / fps)} · frame {idx}"
                cells.append([img, Paragraph(cap, SMALL)])
        finally:
            rd.close()
        if cells:
            grid, row = [], []
            for c in cells:
                row.append(c)
                if len(row) == 3:
                    grid.append(row)
                    row = []
            if row:
                grid.append(row + [""] * (3 - len(row)))
            t = Table(grid, colWidths=[61 * mm] * 3, hAlign="LEFT")
            t.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
            flow.append(KeepTogether([Paragraph("Key frames", H2), t]))
    if any(not r.clinical for r in results):
        flow.append(Paragraph(f"<font color='#c62828'><b>{NOT_CLINICAL}</b></font>: at least one model result on "
                              "this study comes from non-official weights.", BODY))
    return flow

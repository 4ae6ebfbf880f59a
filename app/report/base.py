"""The shared page frame: header (study, date, modality, software version), footer with the
disclaimer, a red NOT A CLINICAL RESULT stamp on every page when any result on it came from
non-official weights, and a provenance table (model id + weights sha256 for every number)."""
from __future__ import annotations

import datetime as _dt
import io
from xml.sax.saxutils import escape
from pathlib import Path
from typing import Any, Callable, Iterable

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (Image, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table,
                                TableStyle)

from inference import __version__
from inference.atomic import atomic_path
from inference.results import DISCLAIMER, NOT_CLINICAL, Result
from inference.study import MODALITY_TITLES

styles = getSampleStyleSheet()
H1 = styles["Heading1"]
H2 = ParagraphStyle("h2", parent=styles["Heading2"], spaceBefore=6, spaceAfter=4)
BODY = ParagraphStyle("body", parent=styles["BodyText"], fontSize=9, leading=11)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7, leading=9, textColor=colors.HexColor("#555555"))
STAMP_RED = colors.HexColor("#c62828")


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) >= 1e-2 or v == 0 else f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return f"[{len(v)} values]" if len(v) > 8 else ", ".join(fmt(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {fmt(x)}" for k, x in v.items())
    return str(v)


def table(rows: list[list[Any]], col_widths: list[float] | None = None, header: bool = True) -> Table:
    data = [[Paragraph(str(c), BODY) if isinstance(c, str) else c for c in r] for r in rows]
    t = Table(data, colWidths=col_widths, hAlign="LEFT")
    style = [("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#999999")),
             ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3)]
    if header:
        style.append(("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8edf3")))
    t.setStyle(TableStyle(style))
    return t


MONO = ParagraphStyle("mono", parent=BODY, fontName="Courier", fontSize=7, leading=9)


def latest(results: Iterable[Result], model_id: str | None = None, needs: str | None = None) -> Result | None:
    """The newest of a study's results (they come oldest first) from ``model_id`` and/or carrying the
    output ``needs``; None when there is none."""
    for r in reversed(list(results)):
        if (model_id is None or r.model_id == model_id) and (needs is None or needs in r.outputs):
            return r
    return None


def provenance_table(results: Iterable[Result], validation: Callable[[Result], str] | None = None) -> Table:
    """One block per result: model, runtime/device, time and status, then the full weights sha256
    on its own line (and, given ``validation``, what this site's own validation of the model says),
    so every number in the report traces to a stored result row."""
    rows: list[list[Any]] = [["Result", "Model", "Runtime / device", "Computed", "Status"]]
    spans = []
    for r in results:
        rows.append([f"#{r.id}" if r.id else "-", r.model_id, f"{r.runtime} / {r.device}",
                     f"{r.created.replace('T', ' ')} · {r.seconds:.2f} s",
                     (NOT_CLINICAL if not r.clinical else "official weights" if r.weights_sha256 else "no weights needed")])
        local = f" · {validation(r)}" if validation else ""
        rows.append([Paragraph(f"weights sha256 {r.weights_sha256 or '(no weights: signal analysis)'}{local}", MONO),
                     "", "", "", ""])
        spans.append(("SPAN", (0, len(rows) - 1), (-1, len(rows) - 1)))
    t = table(rows, col_widths=[16 * mm, 34 * mm, 52 * mm, 44 * mm, 40 * mm])
    t.setStyle(TableStyle(spans))
    return t


def result_table(r: Result) -> Table:
    rows = [["Output", "Value"]] + [[k.replace("_", " "), fmt(v)] for k, v in r.outputs.items()
                                     if not k.startswith("_")]
    return table(rows, col_widths=[60 * mm, 110 * mm])


def generic_sections(results: list[Result]) -> list:
    flow: list = []
    if not results:
        flow.append(Paragraph("No model results are stored for this study.", BODY))
    for r in results:
        flow += [Paragraph(f"{r.model_id} (result #{r.id})", H2), result_table(r), Spacer(1, 4 * mm)]
    return flow


def figure(fig_or_png: Any, width_mm: float) -> Image:
    """A matplotlib figure or PNG bytes as a flowable of the given width."""
    if hasattr(fig_or_png, "savefig"):
        buf = io.BytesIO()
        fig_or_png.savefig(buf, format="png", dpi=200, bbox_inches="tight")
        data = buf.getvalue()
    else:
        data = fig_or_png
    img = Image(io.BytesIO(data))
    ratio = img.imageHeight / img.imageWidth
    img.drawWidth = width_mm * mm
    img.drawHeight = width_mm * mm * ratio
    return img


def build_pdf(path: str | Path, study, results: list[Result], flow: list, pagesize=None, patient: str = "",
              anonymised: str = "", validation: Callable[[Result], str] | None = None) -> None:
    """``patient``: the identity line under the title ("Patient: DOE, JOHN · ID … · born …"); ``anonymised``:
    the line that stands for it in an anonymised report (study code, patient code) — then the file's path
    and hash are left out too. ``validation``: what this site's own validation of each result's model says."""
    pagesize = pagesize or A4
    non_clinical = any(not r.clinical for r in results)
    title = f"{MODALITY_TITLES[study.modality]} report — {study.name}"

    head = [Paragraph(escape(title), H1)]
    if anonymised:
        head.append(Paragraph(f"{escape(anonymised)}<br/>Modality: {MODALITY_TITLES[study.modality]}", SMALL))
    else:
        if patient:
            head.append(Paragraph(f"<b>{escape(patient)}</b>", BODY))
        head.append(Paragraph(f"Source: {escape(study.source)}<br/>Modality: {MODALITY_TITLES[study.modality]} · "
                              f"file sha256 {study.sha256}", SMALL))
    head.append(Spacer(1, 3 * mm))
    if non_clinical:
        head.append(Paragraph(f"<font color='#c62828'><b>{NOT_CLINICAL}</b>: computed with non-official or not "
                              "clinically validated weights — for software testing and teaching only.</font>", BODY))
    tail = [Spacer(1, 5 * mm), KeepTogether([Paragraph("Provenance", H2), provenance_table(results, validation)])] if results else []
    short = title if len(title) <= 70 else title[:67] + "…"
    write_pdf(path, head + flow + tail, title, non_clinical, pagesize=pagesize, header=short)


def page_frame(header: str, non_clinical: bool, pagesize=A4, now: str | None = None) -> Callable:
    """The drawing of every page (reportlab's onFirstPage / onLaterPages): "Lightbox", ``header`` and the
    print time and version at the top, the disclaimer and page number at the bottom, and the red
    NOT A CLINICAL RESULT stamp under the header when ``non_clinical``."""
    now = now or _dt.datetime.now().strftime("%Y-%m-%d %H:%M")

    def frame(canvas, doc):
        w, h = pagesize
        canvas.saveState()
        canvas.setFont("Helvetica-Bold", 11)
        canvas.drawString(12 * mm, h - 10 * mm, "Lightbox")
        canvas.setFont("Helvetica", 8)
        canvas.drawString(32 * mm, h - 10 * mm, header)
        canvas.drawRightString(w - 12 * mm, h - 10 * mm, f"printed {now}   ·   Lightbox {__version__}")
        canvas.setStrokeColor(colors.HexColor("#888888"))
        canvas.line(12 * mm, h - 12 * mm, w - 12 * mm, h - 12 * mm)
        canvas.setFont("Helvetica", 7)
        canvas.drawString(12 * mm, 7 * mm, DISCLAIMER)
        canvas.drawRightString(w - 12 * mm, 7 * mm, f"page {doc.page}")
        if non_clinical:
            canvas.setFillColor(STAMP_RED)
            canvas.setStrokeColor(STAMP_RED)
            canvas.setFont("Helvetica-Bold", 12)
            tw = canvas.stringWidth(NOT_CLINICAL, "Helvetica-Bold", 12)
            x, y = w - 12 * mm - tw - 6, h - 21 * mm
            canvas.rect(x - 4, y - 4, tw + 8, 17, stroke=1, fill=0)
            canvas.drawString(x, y + 1, NOT_CLINICAL)
        canvas.restoreState()

    return frame


def write_pdf(path: str | Path, flow: list, title: str, non_clinical: bool, pagesize=A4,
              header: str | None = None) -> None:
    """``flow`` as a PDF at ``path`` (written atomically) in the shared page frame; ``header``: the title
    as the page header shows it (default: ``title``)."""
    frame = page_frame(title if header is None else header, non_clinical, pagesize)
    with atomic_path(path) as tmp:
        doc = SimpleDocTemplate(str(tmp), pagesize=pagesize, leftMargin=12 * mm, rightMargin=12 * mm,
                                topMargin=(26 if non_clinical else 16) * mm,  # room for the stamp under the header
                                bottomMargin=14 * mm, title=title, author="Lightbox")
        doc.build(flow, onFirstPage=frame, onLaterPages=frame)

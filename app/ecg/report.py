"""ECG report: landscape A4, the 12-lead at true scale first, then measurements and ECG2AF.

The tracing is drawn as vector graphics straight onto the PDF canvas in millimetres (reportlab ``mm``),
so printed at 100 % the grid is exactly 1 mm / 5 mm, the paper speed 25 mm/s and the gain 10 mm/mV.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, KeepTogether, PageBreak, Paragraph, Spacer

from app.report.base import BODY, H2, SMALL, figure, latest, table
from inference.ecg.ecg2af import LEADS
from inference.results import NOT_CLINICAL, Result

PAGESIZE = landscape(A4)
SPEED = 25.0  # mm/s
GAIN = 10.0  # mm/mV
PITCH = 36.0  # mm between rows
WINDOW_S = 10.0
LEFT = 10.0  # mm for the calibration pulse
GRID_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
MINOR = colors.HexColor("#f4c7c3")
MAJOR = colors.HexColor("#e0837a")


class EcgPaper(Flowable):
    """3x4 + lead II rhythm strip at 25 mm/s and 10 mm/mV, on a 1 mm / 5 mm grid, in vector graphics."""

    def __init__(self, signal_mv: np.ndarray, fs: float, t0: float = 0.0, rhythm_lead: str = "II",
                 r_peaks: list[int] | None = None):
        super().__init__()
        self.sig = np.asarray(signal_mv, dtype=np.float64)
        self.fs = float(fs)
        self.t0 = t0
        self.rhythm = rhythm_lead
        self.r_peaks = r_peaks or []
        self.width_mm = LEFT + WINDOW_S * SPEED + 1
        self.height_mm = 4 * PITCH
        self.width, self.height = self.width_mm * mm, self.height_mm * mm

    def wrap(self, aw, ah):
        return self.width, self.height

    def _grid(self, c):
        w, h = int(np.floor(self.width_mm)), int(round(self.height_mm))
        for step, col, lw in ((1, MINOR, 0.2), (5, MAJOR, 0.45)):
            c.setStrokeColor(col)
            c.setLineWidth(lw)
            for x in range(0, w + 1, step):
                if step == 1 and x % 5 == 0:
                    continue
                c.line(x * mm, 0, x * mm, h * mm)
            for y in range(0, h + 1, step):
                if step == 1 and y % 5 == 0:
                    continue
                c.line(0, y * mm, w * mm, y * mm)

    def _trace(self, c, lead, ts, te, x0, yb):
        i = LEADS.index(lead)
        n = self.sig.shape[1]
        a, b = int(round(ts * self.fs)), min(n, int(round(te * self.fs)))
        seg = self.sig[i, a:b] if a < n else np.array([])
        c.setFont("Helvetica-Bold", 8)
        c.setFillColor(colors.black)
        lx = x0 + 1.0
        c.drawString(lx * mm, (yb + PITCH / 2 - 4) * mm, lead)
        if x0 > LEFT + 0.1:
            c.setLineWidth(0.6)
            c.line(x0 * mm, (yb - 2.5) * mm, x0 * mm, (yb + 2.5) * mm)
        if seg.size == 0 or not np.isfinite(seg).all():
            c.setFillColor(colors.HexColor("#9a3b30"))
            c.setFont("Helvetica-Oblique", 8)
            c.drawString((x0 + 8) * mm, yb * mm, f"{lead} missing")
            return
        seg = seg - np.median(seg)
        x = (x0 + np.arange(seg.size) / self.fs * SPEED) * mm
        y = (yb + np.clip(seg * GAIN, -PITCH * 0.75, PITCH * 0.75)) * mm
        p = c.beginPath()
        p.moveTo(x[0], y[0])
        for xi, yi in zip(x[1:], y[1:]):
            p.lineTo(xi, yi)
        c.setStrokeColor(colors.black)
        c.setLineWidth(0.55)
        c.drawPath(p, stroke=1, fill=0)

    def draw(self):
        c = self.canv
        c.saveState()
        c.setFillColor(colors.HexColor("#fffaf5"))
        c.rect(0, 0, self.width, self.height, stroke=0, fill=1)
        self._grid(c)
        col_s = WINDOW_S / 4
        baselines = []
        for r, row in enumerate(GRID_3X4):
            yb = self.height_mm - (r + 0.5) * PITCH
            baselines.append(yb)
            for k, lead in enumerate(row):
                ts = self.t0 + k * col_s
                self._trace(c, lead, ts, ts + col_s, LEFT + k * col_s * SPEED, yb)
        yb = self.height_mm - 3.5 * PITCH
        baselines.append(yb)
        self._trace(c, self.rhythm, self.t0, self.t0 + WINDOW_S, LEFT, yb)
        # calibration pulses: 1 mV (10 mm) for 200 ms (5 mm)
        c.setStrokeColor(colors.black)
        c.setLineWidth(0.55)
        for yb in baselines:
            p = c.beginPath()
            pts = [(0.5, yb), (2, yb), (2, yb + GAIN), (2 + 0.2 * SPEED, yb + GAIN), (2 + 0.2 * SPEED, yb),
                   (3.5 + 0.2 * SPEED, yb)]
            p.moveTo(pts[0][0] * mm, pts[0][1] * mm)
            for px, py in pts[1:]:
                p.lineTo(px * mm, py * mm)
            c.drawPath(p, stroke=1, fill=0)
        # R-peak ticks above the rhythm strip
        if self.r_peaks:
            c.setFillColor(colors.HexColor("#1565c0"))
            top = yb + PITCH / 2 - 3
            for s in self.r_peaks:
                t = s / self.fs - self.t0
                if 0 <= t < WINDOW_S:
                    x = LEFT + t * SPEED
                    p = c.beginPath()
                    p.moveTo((x - 0.8) * mm, (top + 1.2) * mm)
                    p.lineTo((x + 0.8) * mm, (top + 1.2) * mm)
                    p.lineTo(x * mm, top * mm)
                    p.close()
                    c.drawPath(p, stroke=0, fill=1)
        c.restoreState()


def survival_figure(outputs: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    years = np.concatenate([[0.0], np.asarray(outputs["survival_days"], dtype=float) / 365.0])
    risk = np.concatenate([[0.0], 100 * (1 - np.asarray(outputs["af_free_survival"], dtype=float))])
    fig, ax = plt.subplots(figsize=(4.2, 2.4))
    ax.plot(years, risk, color="#c62828", lw=2)
    ax.scatter([years[-1]], [risk[-1]], color="#c62828", zorder=3)
    ax.annotate(f"{risk[-1]:.1f} % at 5 years", (years[-1], risk[-1]), textcoords="offset points",
                xytext=(-8, 6), ha="right", fontsize=8)
    ax.set_xlim(0, 5.1)
    ax.set_ylim(0, max(10.0, min(100.0, risk[-1] * 1.2)))
    ax.set_xlabel("years after this ECG", fontsize=8)
    ax.set_ylabel("cumulative AF risk (%)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def band_figure(windows: list[dict], duration_s: float):
    """The per-window rhythm labels over the whole recording, as in the viewer's band."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from inference.ecg.rhythm import COLOURS, LABELS

    fig = Figure(figsize=(7.5, 1.1))
    ax = fig.add_axes([0.03, 0.36, 0.94, 0.34])
    minutes = duration_s > 300
    k = 60.0 if minutes else 1.0
    for w in windows:
        ax.axvspan(w["start_s"] / k, w["end_s"] / k, color=COLOURS.get(w["label"], "#888888"), lw=0)
    ax.set_xlim(0, duration_s / k)
    ax.set_yticks([])
    ax.set_xlabel("minutes" if minutes else "seconds", fontsize=7, labelpad=1)
    ax.tick_params(labelsize=7)
    from matplotlib.patches import Patch

    fig.legend(handles=[Patch(color=COLOURS[c], label=LABELS[c]) for c in LABELS], fontsize=6.5, ncol=4,
               loc="upper center", frameon=False)
    return fig


def _rhythm_leads_row(o: dict) -> str:
    """The leads a rhythm result used, and how (results before v2 name one lead)."""
    leads = list(o.get("_leads") or ([o["lead"]] if o.get("lead") else []))
    if len(leads) > 1:
        return f"{o.get('lead')}: the model on each lead, probabilities averaged"
    lead = leads[0] if leads else "?"
    outside = lead not in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    return lead + (" (outside the leads the model is used on: I, II, V1–V6)" if outside else "")


def rhythm_section(r: Result | None) -> list:
    """The Lightbox rhythm model's result: label, probabilities, lead, and the band for long recordings."""
    from inference.ecg.rhythm import LABELS

    flow: list = [Spacer(1, 4 * mm)]
    if r is None:
        return flow + [Paragraph("Rhythm (Lightbox model)", H2),
                       Paragraph("The rhythm model was not run on this ECG (no stored result).", BODY)]
    o = r.outputs
    stamp = f" <font color='#c62828'><b>{NOT_CLINICAL}</b></font>" if not r.clinical else ""
    rows = [["Rhythm model output", "Value"],
            ["Rhythm", f"<b>{o.get('rhythm_label')}</b> ({100 * (o.get('probability') or 0):.0f} %)"],
            ["Probabilities", " · ".join(f"{LABELS[c]} {100 * float(o.get(f'p_{c}') or 0):.1f} %" for c in LABELS)],
            ["Leads", _rhythm_leads_row(o)]]
    if (o.get("windows") or 0) > 1:
        ect = (f"; {o['ectopic_windows']} windows the model called other hold only isolated premature beats "
               "(shown as normal)" if o.get("ectopic_windows") else "")
        rows.append(["Windows", f"{o['windows']} windows (30 s, every 15 s) over {o.get('duration_s', 0) / 60:.1f} min; "
                                f"AF in {100 * (o.get('af_burden') or 0):.0f} % of the time{ect}"])
    block = [Paragraph(f"Rhythm — Lightbox model (result #{r.id}){stamp}" if r.id else f"Rhythm — Lightbox model{stamp}", H2),
             table(rows, col_widths=[45 * mm, 180 * mm])]
    if (o.get("windows") or 0) > 1 and o.get("_windows"):
        block += [Spacer(1, 1 * mm), figure(band_figure(o["_windows"], float(o.get("duration_s") or 0)), 190)]
    block.append(Paragraph("CNN trained by Lightbox on the PhysioNet/CinC Challenge 2017 single-lead recordings "
                           "(AliveCor, lead I), run on each lead used: normal sinus rhythm / atrial fibrillation / "
                           "other rhythm / too noisy. "
                           "A research model, not a validated device; see resources/models/ecg_rhythm_cnn.md.", SMALL))
    return flow + [KeepTogether(block)]


def sections(study, results: list[Result], store, study_id, extra: dict[str, Any]) -> list:
    from inference.ecg.pipeline import measure

    flow: list = []
    md = study.metadata
    meas_r = latest(results, "ecg-measure")
    if meas_r is not None:
        fs = study.data["fs"]
        peaks = [int(round(t * fs)) for t in meas_r.outputs.get("r_peak_times_s", [])]
        m = {"heart_rate_bpm": meas_r.outputs.get("heart_rate_bpm"), "rr_mean_ms": meas_r.outputs.get("rr_mean_ms"),
             "rr_sd_ms": meas_r.outputs.get("rr_sd_ms"), "rr_min_ms": meas_r.outputs.get("rr_min_ms"),
             "rr_max_ms": meas_r.outputs.get("rr_max_ms"), "n_beats": meas_r.outputs.get("beats"),
             "lead": meas_r.outputs.get("lead")}
        m_src = f"stored result #{meas_r.id}" if meas_r.id else "stored result"
    else:
        try:
            mm_ = measure(study.data["signal_mv"], study.data["fs"])
            peaks = mm_["r_peaks"]
            m = dict(mm_)
            m_src = "computed for this report"
        except Exception as e:  # the report must still print the tracing
            m, peaks, m_src = {}, [], f"not available ({e})"
    t0 = float(extra.get("t0", 0.0) or 0.0)
    dur = md.get("duration_s", 0)
    shown = f"{t0:.0f}–{min(dur, t0 + WINDOW_S):.0f} s of {dur:.1f} s" if dur > WINDOW_S else f"{dur:.1f} s"
    flow.append(Paragraph(
        f"<b>12-lead ECG</b> · 25 mm/s · 10 mm/mV · grid 1 mm / 5 mm · {md.get('fs', 0):g} Hz {md.get('format', '')} · "
        f"{shown} · no display filters (raw signal, DC offset removed) — print at 100 % (no fit-to-page) for true scale",
        SMALL))
    flow.append(Spacer(1, 1 * mm))
    flow.append(EcgPaper(study.data["signal_mv"], study.data["fs"], t0=t0, rhythm_lead=m.get("lead") or "II",
                         r_peaks=peaks))
    flow.append(PageBreak())

    # measurements
    rows = [["Measurement", "Value"]]
    if m.get("heart_rate_bpm"):
        rows += [["Heart rate", f"{m['heart_rate_bpm']:.0f} bpm"],
                 ["RR interval", f"{m['rr_mean_ms']:.0f} ms (SD {m.get('rr_sd_ms') or 0:.0f} ms, "
                                 f"range {m.get('rr_min_ms') or 0:.0f}–{m.get('rr_max_ms') or 0:.0f} ms)"],
                 ["Beats detected", f"{m.get('n_beats')} (lead {m.get('lead')}, whole recording)"]]
    else:
        rows.append(["Heart rate", "not measurable"])
    rows.append(["Method", f"neurokit2 ecg_clean + ecg_peaks, no model weights — {m_src}"])
    flow += [Paragraph("Rhythm measurements", H2), table(rows, col_widths=[45 * mm, 140 * mm])]
    notes = list(study.notes)
    if notes:
        flow.append(Spacer(1, 2 * mm))
        flow += [Paragraph("Signal notes: " + " ".join(notes), SMALL)]

    flow += rhythm_section(latest(results, "ecg-rhythm"))

    # ECG2AF
    from inference.ecg.ecg2af_files import is_ecg2af

    r = next((x for x in reversed(list(results)) if is_ecg2af(x.model_id)), None)
    flow.append(Spacer(1, 4 * mm))
    if r is None:
        flow += [Paragraph("ECG2AF", H2),
                 Paragraph("ECG2AF was not run on this ECG (no stored result).", BODY)]
        return flow
    o = r.outputs
    stamp = f" <font color='#c62828'><b>{NOT_CLINICAL}</b></font>" if not r.clinical else ""
    from inference.ecg.ecg2af import result_rows

    rows = [["ECG2AF output", "Value"]] + [list(r) for r in result_rows(o)]
    if o.get("model_file"):
        rows.append(["Model file", f"{o['model_file']} (input: {', '.join(o.get('input_leads') or [])}; "
                                   f"normalisation {o.get('normalisation')})"])
    block = [Paragraph(f"ECG2AF (result #{r.id}){stamp}" if r.id else f"ECG2AF{stamp}", H2),
             table(rows, col_widths=[55 * mm, 60 * mm]), Spacer(1, 2 * mm),
             figure(survival_figure(o), 110),
             Paragraph("AF risk = 1 − cumulative AF-free survival from the survival-curve head (25 intervals, "
                       "5 years), decoded as the ECG2AF authors do. Khurshid S, et al. Circulation 2022;145:122–133. "
                       + " ".join(n for n in r.notes if n.startswith("Input:")), SMALL)]
    flow.append(KeepTogether(block))
    return flow

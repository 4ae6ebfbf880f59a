"""Echo report section: EF numbers, key frames (ED/ES with the LV mask), the LV area curve, the view
gate decision and, in practice mode, the trainee's locked estimate and its delta to the AI."""
from __future__ import annotations

from typing import Any

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether, Paragraph, Spacer

from app.report.base import BODY, H2, SMALL, figure, fmt, latest, table
from inference.echo.preprocess import CropBox, ef_category, mask_to_frame
from inference.echo import pipeline as pipe
from inference.results import NOT_CLINICAL

LABELS = {
    pipe.K_EF: "LVEF, whole video (%)", pipe.K_CAT: "LVEF category (ASE/EACVI)",
    pipe.K_EF_BEATS: "LVEF per beat (%)", pipe.K_SPREAD: "Beat-to-beat spread (max − min, %-points)",
    pipe.K_EF_BBB: "LVEF, beat-by-beat (mean over beats, %)", pipe.K_RULE: "Beat rule",
    pipe.K_INPUT: "Model input", pipe.K_NORM: "Normalisation",
    pipe.K_CLIPS: "32-frame clips averaged", pipe.K_ED: "ED frames (LV area peaks)",
    pipe.K_ES: "ES frames (LV area troughs)", pipe.K_HR: "Heart rate from beat intervals (bpm)",
    pipe.K_FAC: "LV area change per beat (%)", pipe.K_CROP: "Sector crop box (x0, y0, x1, y1 px)",
    pipe.K_SEGW: "Segmentation weights",
}


def _gate_text(g: dict | None) -> str:
    if not g:
        return "not recorded"
    s = f"{g.get('decision')} — {g.get('method')}"
    if "probability" in g:
        s += f" (p = {g['probability']:.2f})"
    if g.get("by"):
        s += f" by {g['by']}"
    if g.get("at"):
        s += f" at {g['at']}"
    return s


def _key_frames_figure(study, result, masks_full: np.ndarray | None):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    o = result.outputs
    frames = study.data.get("frames")
    ed = [int(i) - 1 for i in o.get(pipe.K_ED) or []]
    es = [int(i) - 1 for i in o.get(pipe.K_ES) or []]
    beats = o.get(pipe.K_BEATS) or []
    if beats and beats[0].get("ed") is not None:
        pick = [("ED", beats[0]["ed"]), ("ES", beats[0]["es"])]
    else:
        pick = ([("ED", ed[0])] if ed else []) + ([("ES", es[0])] if es else [])
    if frames is None:
        return None
    if not pick:  # no beat detected: show the first frame with its crop, so the input can be judged
        pick = [("first frame (no ED/ES found)", 0)]
    box = CropBox.from_list(o.get(pipe.K_CROP) or [0, 0, frames.shape[2], frames.shape[1]])
    key = {int(k): pipe.unpack_mask(v) for k, v in (o.get(pipe.K_MASKS) or {}).items()}
    fps = float(o.get(pipe.K_FPS) or study.data.get("fps") or 50)
    fig = Figure(figsize=(4 * len(pick), 3.3))
    for j, (name, i) in enumerate(pick):
        ax = fig.add_subplot(1, len(pick), j + 1)
        img = frames[i][box.y0:box.y1, box.x0:box.x1]
        ax.imshow(img, interpolation="bilinear")
        m = masks_full[i] if masks_full is not None and i < len(masks_full) else key.get(i)
        if m is not None:
            full = mask_to_frame(m, box, frames.shape[1:3])[box.y0:box.y1, box.x0:box.x1]
            ax.contour(full.astype(float), levels=[0.5], colors=["#3d8bfd"], linewidths=1.5)
        ax.set_title(f"{name}: frame {i + 1} ({i / fps:.2f} s)", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def _area_figure(result):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    o = result.outputs
    area = o.get(pipe.K_AREA)
    if not area:
        return None
    fps = float(o.get(pipe.K_FPS) or 50)
    a = np.asarray(area, float)
    t = np.arange(len(a)) / fps
    fig = Figure(figsize=(8, 2.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(t, a, color="#1f6feb", lw=1.5)
    ed = [int(i) - 1 for i in o.get(pipe.K_ED) or []]
    es = [int(i) - 1 for i in o.get(pipe.K_ES) or []]
    ax.plot(t[ed], a[ed], "^", color="#c62828", label="ED (area peak)")
    ax.plot(t[es], a[es], "v", color="#2e7d32", label="ES (area trough)")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"LV area ({o.get(pipe.K_AREA_UNIT, 'px²')})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def _practice_rows(store, study_id: int, extra: dict) -> list[dict]:
    if extra.get("practice"):
        return [extra["practice"]]
    return []


def _practice_flow(p: dict, ai) -> list:
    """The trainee's locked estimate against the expert's EF (teaching sets) and the AI's, when present."""
    txt = (f"Trainee <b>{p.get('trainee', '')}</b> locked a visual estimate of <b>{p['ef_estimate']:.0f} %</b>"
           + (f" ({p['category']})" if p.get("category") else "") + f" at {p.get('locked_at', '')}")
    ex = p.get("expert_ef")
    if isinstance(ex, (int, float)):
        txt += f"; expert {ex:.1f} % ({ef_category(ex)}); delta <b>{p['ef_estimate'] - ex:+.1f}</b> %-points"
    if isinstance(ai, (int, float)):
        txt += (f"; AI {ai:.1f} % ({ef_category(ai)}); delta <b>{p['ef_estimate'] - ai:+.1f}</b> %-points"
                + (f"; category {'agrees' if p.get('category') == ef_category(ai) else 'differs'}"
                   if p.get("category") else ""))
        if isinstance(ex, (int, float)):
            txt += f"; AI vs expert {ai - ex:+.1f}"
    return [Paragraph("Deliberate practice", H2), Paragraph(txt + ".", BODY)]


def sections(study, results, store, study_id: int, extra: dict[str, Any]) -> list:
    flow: list = []
    echo = [r for r in results if r.model_id in pipe.MODELS]
    if not echo:
        meta = study.metadata
        flow.append(Paragraph(f"{meta.get('frames')} frames, {meta.get('width')}×{meta.get('height')} px, "
                              f"{meta.get('fps')} fps. No EchoNet-Dynamic result is stored for this study.", BODY))
        for p in _practice_rows(store, study_id, extra):  # practice against the expert alone
            flow += _practice_flow(p, None)
        return flow
    r = latest(echo, "echonet-ef") or echo[-1]
    o = r.outputs
    meta = study.metadata
    if extra.get("blinded"):
        return [Paragraph(f"Loop: {meta.get('frames')} frames, {meta.get('fps')} fps.", BODY),
                Paragraph("<b>Blinded practice:</b> the AI results are withheld from this report until the "
                          "trainee's estimate is locked.", BODY)]
    flow.append(Paragraph(f"Loop: {meta.get('frames')} frames, {meta.get('width')}×{meta.get('height')} px, "
                          f"{meta.get('fps')} fps ({meta.get('duration_s')} s).", BODY))
    flow.append(Paragraph(f"<b>View gate</b> (apical 4-chamber): {_gate_text(o.get(pipe.K_GATE))}", BODY))
    practice = _practice_rows(store, study_id, extra)
    flow.append(Paragraph(f"EchoNet-Dynamic (result #{r.id})" + ("" if r.clinical else f" — {NOT_CLINICAL}"), H2))
    rows = [["Measure", "Value"]]
    for k in (pipe.K_EF, pipe.K_CAT, pipe.K_EF_BBB, pipe.K_EF_BEATS, pipe.K_SPREAD, pipe.K_CLIPS, pipe.K_ED, pipe.K_ES,
              pipe.K_HR, pipe.K_FAC, pipe.K_RULE, pipe.K_INPUT, pipe.K_NORM, pipe.K_CROP, pipe.K_SEGW):
        if k in o:
            v = o[k]
            rows.append([LABELS.get(k, k), fmt(v) if v not in ([], None) else "none found"])
    flow.append(table(rows, col_widths=[75 * mm, 100 * mm]))
    for n in r.notes:
        flow.append(Paragraph(f"Note: {n}", SMALL))
    if practice:
        flow += _practice_flow(practice[0], o.get(pipe.K_EF))
    kf = _key_frames_figure(study, r, extra.get("masks"))
    if kf is not None:
        n_panels = len(kf.axes)  # one frame is printed at half width, not blown up to the page
        flow.append(KeepTogether([Paragraph("Key frames (sector crop, LV contour from the segmentation)", H2),
                                  figure(kf, 90 * n_panels)]))
    af = _area_figure(r)
    if af is not None:
        flow.append(KeepTogether([Paragraph("LV area over time", H2), figure(af, 180)]))
    flow.append(Spacer(1, 2 * mm))
    flow.append(Paragraph("EF by EchoNet-Dynamic (Ouyang et al., Nature 2020), following the reference's procedure: "
                          "r2plus1d_18 on 32-frame clips (every 2nd frame, 112×112; loops under 64 frames padded with "
                          "blank frames), whole-video EF = mean over the clips listed; per-beat EF from the clip "
                          "starting 32 frames before each end-systole found in the DeepLabV3 LV size curve "
                          "(unless the beat rule above says Lightbox's alternative).", SMALL))
    return flow

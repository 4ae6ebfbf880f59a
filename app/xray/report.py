"""Chest X-ray PDF section: the three panels (original | heatmap | overlay) with a scale bar; Lightbox's
pneumonia classifier (P(pneumonia), threshold, label or the out-of-distribution message, population) and/or
the MedSight fused anomaly score with its components; the image credit for the shipped demo radiographs;
and the clinical note with its entities."""
from __future__ import annotations

from xml.sax.saxutils import escape

import numpy as np
from reportlab.lib.units import mm
from reportlab.lib.styles import ParagraphStyle
from reportlab.platypus import Paragraph, Spacer

from app.report.base import BODY, H2, SMALL, figure, latest, table
from inference.results import NOT_CLINICAL
from inference.xray import imaging
from inference.xray.entities import extract, highlight_html

SCORE = ParagraphStyle("xray_score", parent=BODY, fontSize=10, leading=20, spaceAfter=3)
ENTITY_SOURCE = "symptoms-entity"
NOTE_SOURCE = "symptoms-note"


def _scale_bar(ax, shape, spacing):
    if not spacing:
        return
    h, w = shape
    mm_per_px = float(spacing[1])
    length_mm = 50.0 if w * mm_per_px > 150 else 10.0
    px = length_mm / mm_per_px
    x0, y0 = w * 0.05, h * 0.95
    ax.plot([x0, x0 + px], [y0, y0], color="white", lw=2.5, solid_capstyle="butt")
    ax.text(x0 + px / 2, y0 - h * 0.015, f"{length_mm:.0f} mm", color="white", ha="center", va="bottom", fontsize=7)


def panels_figure(study, result, extra: dict | None = None):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    from inference.xray.pipeline import heat_is_fixed, heatmap_from_result

    extra = extra or {}
    disp = study.data["display"]
    spacing = study.metadata.get("pixel_spacing_mm")
    heat = heatmap_from_result(result, disp.shape[:2]) if result is not None else None
    cmap_name = extra.get("colormap", "clinical")
    n = 3 if heat is not None else 1
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.6), dpi=150)
    axes = np.atleast_1d(axes)
    axes[0].imshow(disp, cmap="gray", vmin=0, vmax=255, interpolation="lanczos")
    axes[0].set_title("Original (header window)", fontsize=8)
    if heat is not None:
        lut = imaging.colormap_lut(cmap_name) / 255.0
        cmap = colors.ListedColormap(lut)
        im = axes[1].imshow(heat, cmap=cmap, vmin=0, vmax=1)
        pneu = result.model_id == "xray-pneumonia"
        fixed = heat_is_fixed(result)
        axes[1].set_title("Evidence map (0 = threshold, 1 = typical pneumonia)" if fixed else
                          "Class activation map, pneumonia unit (relative)" if pneu
                          else "Grad-CAM of fused score (relative)", fontsize=8)
        cb = fig.colorbar(cm.ScalarMappable(norm=colors.Normalize(0, 1), cmap=cmap), ax=axes[1],
                          fraction=0.046, pad=0.02)
        cb.ax.tick_params(labelsize=6)
        del im
        ov = imaging.overlay(disp, heat, float(extra.get("opacity", 0.65)), cmap_name, use_clahe=True, fixed=fixed)
        axes[2].imshow(ov, interpolation="lanczos")
        o = result.outputs
        what = (f"P(pneumonia) {o['p_pneumonia']:.3f}" if pneu and o.get("p_pneumonia") is not None
                else f"score {o['anomaly_score']:.3f}" if "anomaly_score" in o else "")
        axes[2].set_title(f"Overlay on CLAHE image · {what}", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        _scale_bar(ax, disp.shape[:2], spacing)
    fig.tight_layout()
    return fig


def _note_and_entities(store, study_id, extra):
    note = (extra or {}).get("note")
    ents = (extra or {}).get("entities")
    if note is None and store is not None and study_id is not None:
        for f in store.findings(study_id):
            if f.get("source") == NOTE_SOURCE:
                note = f.get("note") or ""
    if note and not ents:
        ents = [e.as_dict() for e in extract(note)]
    return note or "", ents or []


def pneumonia_section(r) -> list:
    o = r.outputs
    stamp = "" if r.clinical else f" <font color='#c62828'><b>{NOT_CLINICAL}</b></font>"
    flow = [Paragraph("Pneumonia classifier (Lightbox, paediatric chest X-ray, EfficientNet-Lite0)", H2)]
    if not o.get("in_distribution", True) or o.get("p_pneumonia") is None:
        flow.append(Paragraph(f"<b>Not assessed:</b> {o.get('ood_message') or 'outside what this model was trained on'}. "
                              f"No pneumonia label and no heatmap are given.{stamp}", SCORE))
    else:
        p, thr = float(o["p_pneumonia"]), float(o["threshold"])
        pos = p >= thr
        col = "#c62828" if pos else "#2e7d32"
        flow.append(Paragraph(
            f"P(pneumonia) <font size='14'><b>{p:.3f}</b></font> · threshold {thr:.3f} → "
            f"<font color='{col}'><b>{'PNEUMONIA' if pos else 'normal'}</b></font> ·{stamp}", SCORE))
        src = o.get("threshold_source") or "the model's own, chosen on its validation films"
        flow.append(Paragraph(f"Threshold: {escape(src)} (see the model card, which also gives its results on an "
                              f"external test set). "
                              "Heatmap: class activation map of the decision (the network's stride-16 logit map), "
                              "upsampled; it shows where the network's evidence lies, not a lesion outline.", SMALL))
    flow.append(Paragraph(f"Population: {o.get('population', '')}. Model card: resources/models/{CARD}. "
                          f"Weights sha256 {r.weights_sha256}.", SMALL))
    return flow


CARD = "xray_pneumonia_effnet.md"


def sections(study, results, store, study_id, extra):
    import matplotlib.pyplot as plt

    flow: list = []
    results = list(results)
    rp = latest(results, "xray-pneumonia", needs="threshold")
    r = latest(results, "xray-anomaly", needs="anomaly_score")
    md = study.metadata
    spacing = md.get("pixel_spacing_mm")
    flow.append(Paragraph(
        f"{md.get('columns')} × {md.get('rows')} px · {md.get('bits_stored')}-bit {md.get('photometric')} · "
        f"{md.get('dicom_modality') or md.get('format')} · view {md.get('view_position') or '—'} · "
        + (f"pixel spacing {spacing[0]:.3f} × {spacing[1]:.3f} mm ({md.get('spacing_source')})" if spacing
           else "no pixel spacing") + f" · display: {md.get('voi_source', '')}", SMALL))
    from inference.xray.demo import attribution_for

    credit = attribution_for(study)
    fig = panels_figure(study, rp if rp is not None and "_gradcam_grid" in rp.outputs else r, extra)
    flow.append(figure(fig, 186))
    plt.close(fig)
    if credit:
        flow.append(Paragraph(credit, SMALL))
    flow.append(Spacer(1, 3 * mm))
    if rp is not None:
        flow += pneumonia_section(rp)
    if r is None:
        if rp is None:
            flow.append(Paragraph("No chest X-ray model result is stored for this study.", BODY))
    else:
        o = r.outputs
        stamp = "" if r.clinical else f" <font color='#c62828'><b>{NOT_CLINICAL}</b></font>"
        band_col = {"low": "#2e7d32", "intermediate": "#b26a00", "high": "#c62828"}.get(o["risk_band"], "#000000")
        flow.append(Paragraph("Anomaly score (VGG16 → VAE → ViT, fused)", H2))
        flow.append(Paragraph(
            f"<font size='14'><b>{o['anomaly_score']:.3f}</b></font> &nbsp; risk band "
            f"<font color='{band_col}'><b>{o['risk_band']}</b></font> · threshold {o['threshold']:.3f} → "
            f"<b>{'flagged' if o['flagged'] else 'not flagged'}</b>{stamp}", SCORE))
        cal = o.get("_calibration", {})
        rows = [["Component", "Raw value", "Calibration (mean / sd)", "Normalised (0–1)", "Weight", "Contribution"],
                ["Feature reconstruction error (MSE)", f"{o['recon_error']:.5g}",
                 f"{cal.get('recon_mean', float('nan')):.4g} / {cal.get('recon_std', float('nan')):.3g}",
                 f"{o['recon_component']:.3f}", "0.4", f"{0.4 * o['recon_component']:.3f}"],
                ["Latent KL divergence", f"{o['kl_divergence']:.5g}",
                 f"{cal.get('kl_mean', float('nan')):.4g} / {cal.get('kl_std', float('nan')):.3g}",
                 f"{o['kl_component']:.3f}", "0.2", f"{0.2 * o['kl_component']:.3f}"],
                ["ViT latent score", f"{o['vit_score']:.4f}", "—", f"{o['vit_score']:.3f}", "0.4",
                 f"{0.4 * o['vit_score']:.3f}"],
                ["Fused score", "", "", "", "", f"<b>{o['anomaly_score']:.3f}</b>"]]
        flow.append(table(rows, col_widths=[52 * mm, 22 * mm, 38 * mm, 26 * mm, 14 * mm, 26 * mm]))
        bands = o.get("_risk_bands") or []
        if bands:
            txt = ", ".join(f"{b[1]} ≥ {float(b[0]):.3f}" for b in bands)
            src = o.get("_threshold_source", "checkpoint")
            thr_src = ("from the checkpoint (the publisher's Youden index on its validation set)"
                       if src == "checkpoint" else src)
            auroc = o.get("_reference_auroc")
            rec = f" Checkpoint's recorded test AUROC {auroc:.3f}." if auroc is not None else ""
            flow.append(Paragraph(f"Risk bands: {txt}. Threshold {o['threshold']:.3f} {thr_src}; flagged when the "
                                  f"score is above it.{rec} Heatmap: Grad-CAM of the fused score on VGG16 "
                                  "conv5_3, upsampled; it shows where the score is sensitive, not a lesion outline.",
                                  SMALL))
        w = o.get("_weights", {})
        if w:
            flow.append(Paragraph("Weights: " + " · ".join(f"{k} {v}" for k, v in w.items()), SMALL))
    note, ents = _note_and_entities(store, study_id, extra)
    flow.append(Paragraph("Clinical note and entities", H2))
    if not note.strip():
        flow.append(Paragraph("No clinical note was entered.", BODY))
    else:
        from inference.xray.entities import Entity

        objs = [Entity(**{k: v for k, v in e.items() if k != "status"}) for e in ents]
        flow.append(Paragraph(highlight_html(note, objs, for_pdf=True), BODY))
        flow.append(Spacer(1, 2 * mm))
        rows = [["Entity (as written)", "Concept", "Category", "Status", "Trigger"]]
        for e in ents:
            rows.append([e["text"], e["canonical"], e["category"], e.get("status", ""),
                         ", ".join(e.get("triggers", [])) or "—"])
        flow.append(table(rows, col_widths=[45 * mm, 40 * mm, 28 * mm, 24 * mm, 40 * mm]))
        flow.append(Paragraph("Entities from Lightbox's offline rule-based extractor (NegEx/ConText with the "
                              "project lexicon); they are text mining, not a diagnosis.", SMALL))
    return flow

"""The local-validation PDF: drawn from ``evaluation.json`` (``inference.evaluate``), no Qt.

Page 1: what was checked (model, weights sha256, device, date, label file sha256, the decision rule) and
the headline numbers; then the plots (ROC + calibration, or scatter + Bland–Altman, or Dice per case), the
confusion matrix, the per-case table and every failure with its reason."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from app.report.base import BODY, H1, H2, MONO, SMALL, figure, table, write_pdf
from inference.evaluate import fmt
from inference.results import NOT_CLINICAL

BLUE, RED, GREY = "#1f6feb", "#c62828", "#888888"
MAX_CASE_ROWS = 400  # longer tables: the first 400 here, every case in cases.csv


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure


def classifier_figure(b: dict):
    fig = _plt()(figsize=(8, 3.4))
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    roc = b.get("roc") or {}
    a1.plot(roc.get("fpr", []), roc.get("tpr", []), color=BLUE, lw=1.6, drawstyle="steps-post")
    a1.plot([0, 1], [0, 1], color=GREY, lw=0.8, ls="--")
    se, sp = b.get("sensitivity"), b.get("specificity")
    if se is not None and sp is not None and se == se and sp == sp:
        a1.plot([1 - sp], [se], "o", color=RED, label=f"threshold {b['threshold']:g}")
        a1.legend(loc="lower right", fontsize=8, frameon=False)
    ci = b.get("auroc_ci") or [None, None]
    a1.set_title(f"ROC — AUROC {fmt(b.get('auroc'))} (95% CI {fmt(ci[0])}–{fmt(ci[1])})", fontsize=9)
    a1.set_xlabel("1 − specificity")
    a1.set_ylabel("sensitivity")
    a1.set_xlim(0, 1)
    a1.set_ylim(0, 1.01)
    a1.grid(alpha=0.3)
    cal = b.get("calibration")
    if cal:
        x = [c["mean_pred"] for c in cal]
        y = [c["frac_pos"] for c in cal]
        a2.plot([0, 1], [0, 1], color=GREY, lw=0.8, ls="--")
        a2.plot(x, y, "o-", color=BLUE)
        for c in cal:
            a2.annotate(str(c["n"]), (c["mean_pred"], c["frac_pos"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        a2.set_title(f"Calibration (Brier {fmt(b.get('brier'))}; n per bin)", fontsize=9)
        a2.set_xlabel(f"mean predicted p({b['positive']})")
        a2.set_ylabel(f"observed fraction {b['positive']}")
        a2.set_xlim(0, 1)
        a2.set_ylim(0, 1)
    else:
        a2.text(0.5, 0.5, "scores are not probabilities:\nno calibration plot", ha="center", va="center",
                fontsize=9, color=GREY)
        a2.set_axis_off()
    a2.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def ef_figure(cases: list[dict], a: dict, reference: str = "reference", estimate: str = "model"):
    ref = np.array([c["reference"] for c in cases], float)
    est = np.array([c["estimate"] for c in cases], float)
    fig = _plt()(figsize=(8, 3.4))
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    a1.scatter(ref, est, s=12, color=BLUE)
    lo, hi = (min(ref.min(), est.min()) - 5, max(ref.max(), est.max()) + 5) if len(ref) else (0, 100)
    a1.plot([lo, hi], [lo, hi], color=GREY, lw=0.8, ls="--")
    for cut in (30, 41, 53):
        a1.axvline(cut, color="#dddddd", lw=0.6)
        a1.axhline(cut, color="#dddddd", lw=0.6)
    a1.set_xlabel(f"{reference} EF (%)")
    a1.set_ylabel(f"{estimate} EF (%)")
    a1.set_title(f"R² {fmt(a.get('r2'))} · MAE {fmt(a.get('mae'), '.1f')} · RMSE {fmt(a.get('rmse'), '.1f')}",
                 fontsize=9)
    a1.grid(alpha=0.3)
    draw_bland_altman(a2, ref, est, a, reference, estimate)
    fig.tight_layout()
    return fig


def draw_bland_altman(ax, ref, est, a: dict, reference: str = "reference", estimate: str = "model") -> None:
    ref, est = np.asarray(ref, float), np.asarray(est, float)
    ax.scatter((ref + est) / 2, est - ref, s=12, color=BLUE)
    if a.get("n"):
        for y, ls in ((a["bias"], "-"), (a["loa_low"], "--"), (a["loa_high"], "--")):
            if y is not None and y == y:
                ax.axhline(y, color=RED, ls=ls, lw=1)
        ax.set_title(f"Bland–Altman: bias {fmt(a['bias'], '+.1f')}, 95% LoA {fmt(a['loa_low'], '+.1f')} to "
                     f"{fmt(a['loa_high'], '+.1f')}", fontsize=9)
    ax.axhline(0, color=GREY, lw=0.6)
    ax.set_xlabel(f"mean of {estimate} and {reference} EF (%)")
    ax.set_ylabel(f"{estimate} − {reference} (%-points)")
    ax.grid(alpha=0.3)


def segmentation_figure(cases: list[dict], s: dict):
    d = np.array([c["dice"] for c in cases], float)
    fig = _plt()(figsize=(8, 2.8))
    a1 = fig.add_subplot(1, 1, 1)
    a1.hist(d, bins=np.linspace(0, 1, 21), color=BLUE)
    a1.axvline(s["dice_mean"], color=RED, lw=1, label=f"mean {s['dice_mean']:.3f}")
    a1.set_xlabel("Dice per case")
    a1.set_ylabel("cases")
    a1.legend(fontsize=8, frameon=False)
    a1.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def _confusion(cm: list[list[int]], classes: list[str], rows_are: str = "reference", cols_are: str = "model") -> Any:
    head = [f"{rows_are} ↓ / {cols_are} →"] + list(classes)
    return table([head] + [[c] + [str(v) for v in row] for c, row in zip(classes, cm)])


def _pct(v) -> str:
    return fmt(None if v is None else 100 * v, ".1f") + (" %" if v is not None and v == v else "")


def sections(ev: dict) -> list:
    m = ev.get("metrics") or {}
    lab = ev["labels"]
    ad = ev.get("adapter") or {}
    flow: list = []
    prov = [["Model", f"{ev['model_title']} ({ev['model_id']})"],
            ["Weights sha256", Paragraph(ev.get("weights_sha256") or "(no weights)", MONO)],
            ["Runtime / device", f"{ev.get('runtime') or '-'} / {ev.get('device') or '-'}"],
            ["Run", f"{ev['date'].replace('T', ' ')} · Lightbox {ev.get('lightbox_version', '')} · "
                    f"{ev.get('seconds', 0):.0f} s"],
            ["Label file", f"{lab['path']} ({lab['layout']}, {lab['rows']} rows"
                           + (f", split {lab['split']}: {lab['excluded_by_split']} rows outside it" if lab.get("split")
                              else "") + ")"],
            ["Label file sha256", Paragraph(lab["sha256"], MONO)],
            ["Compared", ad.get("says") or "-"]]
    if ad.get("threshold") is not None:
        prov.append(["Threshold", f"{ad['threshold']:g} — {ad.get('threshold_source', '')}"])
    prov.append(["Cases", f"{ev['n_cases']} evaluated · {ev['n_failures']} could not be evaluated (listed below)"])
    flow += [table(prov, col_widths=[34 * mm, 152 * mm], header=False), Spacer(1, 4 * mm)]

    b = m.get("binary")
    if b:
        flow.append(Paragraph(f"Classification: {b['positive']} vs {b['negative']}", H2))
        ci = b.get("auroc_ci") or [None, None]
        rows = [["Metric", "Value", "95 % CI"],
                ["AUROC", fmt(b.get("auroc")), f"{fmt(ci[0])} – {fmt(ci[1])} (stratified bootstrap)"],
                ["Sensitivity", _pct(b.get("sensitivity")),
                 " – ".join(_pct(x) for x in b.get("sensitivity_ci", [None, None])) + " (Wilson)"],
                ["Specificity", _pct(b.get("specificity")),
                 " – ".join(_pct(x) for x in b.get("specificity_ci", [None, None])) + " (Wilson)"],
                ["PPV", _pct(b.get("ppv")), ""], ["NPV", _pct(b.get("npv")), ""],
                ["Accuracy", _pct(b.get("accuracy")), ""],
                ["Prevalence", _pct(b.get("prevalence")), f"{b['positives']} of {b['n']} cases {b['positive']}"]]
        if b.get("brier") is not None:
            rows.append(["Brier score", fmt(b["brier"]), ""])
        flow += [table(rows, col_widths=[34 * mm, 30 * mm, 122 * mm]), Spacer(1, 3 * mm),
                 figure(classifier_figure(b), 180), Spacer(1, 2 * mm),
                 Paragraph(f"Confusion at threshold {b['threshold']:g}", BODY),
                 _confusion(b["confusion"], [b["negative"], b["positive"]])]
        ops = b.get("operating_points") or []
        if ops:
            flow += [Spacer(1, 3 * mm), Paragraph("Operating points read off these cases", H2),
                     Paragraph("For each sensitivity, the highest threshold that reaches it on these cases. They are "
                               "chosen on these cases, so their figures are optimistic here: a site that wants to "
                               "adopt one should confirm it on other cases of its own first.", BODY),
                     table([["Sensitivity ≥", "Threshold", "Sensitivity (95 % CI)", "Specificity (95 % CI)"]]
                           + [[f"{op['target_sensitivity']:.2f}", f"{op['threshold']:.4g}",
                               f"{_pct(op['sensitivity'])} ({' – '.join(_pct(x) for x in op['sensitivity_ci'])})",
                               f"{_pct(op['specificity'])} ({' – '.join(_pct(x) for x in op['specificity_ci'])})"]
                              for op in ops])]
    mc = m.get("multiclass")
    if mc:
        flow += [Paragraph("All classes (the model's class = the most probable)", H2),
                 Paragraph(f"Accuracy {fmt(mc['accuracy'])} · balanced accuracy {fmt(mc['balanced_accuracy'])} · "
                           f"macro F1 {fmt(mc['macro_f1'])}", BODY), Spacer(1, 2 * mm),
                 _confusion(mc["confusion"], mc["classes"]), Spacer(1, 2 * mm),
                 table([["Class", "Precision", "Recall", "F1", "Cases"]]
                       + [[c, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), str(v["support"])]
                          for c, v in mc["per_class"].items()])]
    a = m.get("agreement")
    if a:
        cat = m["categories"]
        flow += [Paragraph("Ejection fraction", H2),
                 table([["MAE", "RMSE", "R²", "Bias (model − reference)", "95 % limits of agreement", "n"],
                        [fmt(a["mae"], ".2f"), fmt(a["rmse"], ".2f"), fmt(a["r2"]), fmt(a["bias"], "+.2f"),
                         f"{fmt(a['loa_low'], '+.2f')} to {fmt(a['loa_high'], '+.2f')}", str(a["n"])]]),
                 Spacer(1, 3 * mm), figure(ef_figure(ev["cases"], a), 180), Spacer(1, 2 * mm),
                 Paragraph(f"EF category agreement {_pct(cat['agreement'])} (95 % CI "
                           f"{' – '.join(_pct(x) for x in cat['agreement_ci'])}); within one category "
                           f"{_pct(cat['within_one'])}. Bands: {cat['cutoffs']} — {cat['source']}.", BODY),
                 _confusion(cat["confusion"], cat["classes"])]
    s = m.get("segmentation")
    if s:
        flow += [Paragraph("Segmentation", H2),
                 table([["", "Mean", "Median", "95 % CI of the mean"],
                        ["Dice", fmt(s["dice_mean"]), fmt(s.get("dice_median")),
                         " – ".join(fmt(x) for x in s.get("dice_ci", [None, None]))],
                        ["IoU", fmt(s["iou_mean"]), fmt(s.get("iou_median")),
                         " – ".join(fmt(x) for x in s.get("iou_ci", [None, None]))]]),
                 Spacer(1, 3 * mm), figure(segmentation_figure(ev["cases"], s), 170)]
    if not m:
        flow.append(Paragraph("No case could be evaluated: see the failures below.", BODY))

    flow += [Spacer(1, 4 * mm), Paragraph("Per case", H2)]
    cases = ev.get("cases") or []
    if ev["kind"] == "classification":
        tab = [["Line", "File", "Reference", "Score", "Model says"]] + [
            [str(c["line"]), c["file"], c["reference"], fmt(c.get("score")), c.get("predicted") or ""]
            for c in cases[:MAX_CASE_ROWS]]
        widths = [12 * mm, 92 * mm, 30 * mm, 20 * mm, 32 * mm]
    elif ev["kind"] == "ef":
        tab = [["Line", "File", "Reference %", "Model %", "Δ", "Ref. cat.", "Model cat."]] + [
            [str(c["line"]), c["file"], fmt(c["reference"], ".1f"), fmt(c["estimate"], ".1f"),
             fmt(c["difference"], "+.1f"), c["reference_category"], c["estimate_category"]]
            for c in cases[:MAX_CASE_ROWS]]
        widths = [12 * mm, 66 * mm, 22 * mm, 20 * mm, 16 * mm, 25 * mm, 25 * mm]
    else:
        tab = [["Line", "File", "Reference mask", "Dice", "IoU"]] + [
            [str(c["line"]), c["file"], c["reference"], fmt(c["dice"]), fmt(c["iou"])] for c in cases[:MAX_CASE_ROWS]]
        widths = [12 * mm, 82 * mm, 52 * mm, 20 * mm, 20 * mm]
    flow.append(table(tab, col_widths=widths))
    if len(cases) > MAX_CASE_ROWS:
        flow.append(Paragraph(f"… {len(cases) - MAX_CASE_ROWS} more cases in cases.csv", SMALL))
    flow += [Spacer(1, 4 * mm), Paragraph(f"Could not be evaluated ({ev['n_failures']})", H2)]
    if ev["failures"]:
        flow.append(table([["Line", "File", "Reason"]] + [[str(f["line"]), f["file"], f["error"]]
                                                         for f in ev["failures"]],
                          col_widths=[12 * mm, 60 * mm, 114 * mm]))
    else:
        flow.append(Paragraph("Every case in the label file was evaluated.", BODY))
    return flow


def build(ev: dict, path: str | Path) -> Path:
    path = Path(path)
    non_clinical = ev.get("clinical") is False
    title = f"Local validation — {ev['model_id']} on {ev['n_cases']} cases"

    head = [Paragraph(title, H1),
            Paragraph(f"Headline: <b>{ev['headline']}</b>. These figures describe this model on these cases only; "
                      "small sets give wide intervals.", BODY), Spacer(1, 3 * mm)]
    if non_clinical:
        head.append(Paragraph(f"<font color='#c62828'><b>{NOT_CLINICAL}</b>: the model's results are not clinical "
                              "(non-official or research weights).</font>", BODY))
    write_pdf(path, head + sections(ev), title, non_clinical, header=title[:80])
    return path

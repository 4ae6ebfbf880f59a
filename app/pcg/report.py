"""Heart-sound report: waveform + spectrogram + window probabilities (one time axis) with S1/S2 marks,
heart rate, class probabilities and the model version that produced them."""
from __future__ import annotations

from typing import Any

import numpy as np
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, Spacer

from app.report.base import BODY, H2, SMALL, figure, fmt, latest, table
from inference.results import NOT_CLINICAL, Result

MAX_PLOT_S = 12.0  # longer recordings: the first 12 s are drawn, legibly (the numbers cover the whole recording)


def _figure(study, result: Result | None, seg: dict, selection: list | None = None):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from inference.pcg.features import display_spectrogram, mel_centres_hz

    sr = int(study.data["sample_rate"])
    x = np.asarray(study.data["mono"], dtype=np.float32)
    dur = len(x) / sr
    show = min(dur, MAX_PLOT_S)
    xs = x[: int(show * sr)]
    out = result.outputs if result else {}
    rows = 3 if out.get("window_probabilities") else 2
    # a bare Figure, not pyplot: pyplot keeps every figure in a global registry until closed (the soak
    # found one kept per PDF) and is not meant for worker threads, where reports are written
    fig = Figure(figsize=(10, 2.0 * rows + 1.2))
    axes = fig.subplots(rows, 1, sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.4][:rows]})
    ax = axes[0]
    t = np.arange(len(xs)) / sr
    ax.plot(t, xs, lw=0.4, color="#1f4e8c")
    peak = float(np.max(np.abs(xs))) or 1.0
    ax.set_ylim(-1.1 * peak, 1.1 * peak)
    ax.set_ylabel("amplitude (FS)")
    for key, col, lab in (("s1_times_s", "#c62828", "S1"), ("s2_times_s", "#1565c0", "S2")):
        ts = [v for v in (out.get(key) or seg.get(key) or []) if v is not None and v <= show]
        for i, tt in enumerate(ts):
            ax.axvspan(tt - 0.035, tt + 0.035, color=col, alpha=0.18, lw=0, label=lab if i == 0 else None)
    ax.legend(loc="upper right", fontsize=7, ncol=2, frameon=False)
    if selection:
        ax.axvspan(selection[0], selection[1], color="#f0c000", alpha=0.12, lw=0)
    ax.set_title(f"{study.name} — {dur:.1f} s at {sr} Hz" + (f" (first {show:.0f} s shown)" if dur > show else ""),
                 fontsize=9, loc="left")
    ax = axes[1]
    db, spec = display_spectrogram(xs, sr)
    top = float(np.percentile(db, 99.5))
    ax.imshow(db, origin="lower", aspect="auto", cmap="inferno", vmin=top - 60, vmax=top,
              extent=(0, db.shape[1] / spec.frames_per_s, 0, spec.n_mels))
    centres = mel_centres_hz(spec)
    ticks = [f for f in (25, 50, 100, 200, 400, 800) if centres[0] <= f <= centres[-1]]
    ax.set_yticks([float(np.interp(f, centres, np.arange(len(centres)))) + 0.5 for f in ticks])
    ax.set_yticklabels([str(f) for f in ticks])
    ax.set_ylabel("frequency (Hz, mel)")
    if rows == 3:
        ax = axes[2]
        classes = out.get("classes") or list(out["probabilities"])
        j = 1 if len(classes) == 2 and classes[0] == "normal" else int(np.argmax(list(out["probabilities"].values())))
        P = np.asarray(out["window_probabilities"], dtype=float)[:, j]
        c = np.asarray(out["window_starts_s"], dtype=float) + float(out.get("window_s", 4)) / 2
        ax.plot(c, P, "o-", ms=2.5, lw=1.2, color="#c62828")
        ax.axhline(0.5, ls="--", lw=0.6, color="#777777")
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"P({classes[j]})", fontsize=8)
    axes[-1].set_xlabel("time (s)")
    axes[-1].set_xlim(0, show)
    for a in axes:
        a.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _model_version(store, r: Result) -> str:
    if r.model_id != "heart-sound-local" or store is None:
        return r.model_id
    for v in store.model_versions(r.model_id):
        if v["sha256"] == r.weights_sha256:
            return f"{r.model_id} v{v['version']} (trained {v['created_at']})"
    return f"{r.model_id} (version not in this database)"


def sections(study, results: list[Result], store, study_id: int, extra: dict[str, Any]) -> list:
    from inference.pcg.pipeline import segmentation_outputs

    flow: list = []
    r = latest(results, needs="probabilities")
    seg = r.outputs if r else segmentation_outputs(study)[0]
    m = study.metadata
    flow.append(Paragraph(f"Recording: {m.get('duration_s')} s · {m.get('sample_rate')} Hz · {m.get('channels')} "
                          f"channel(s) · {m.get('format', '')} {m.get('subtype', '')}", BODY))
    for n in study.notes:
        flow.append(Paragraph(n, SMALL))
    flow.append(Spacer(1, 2 * mm))
    flow.append(figure(_figure(study, r, seg, extra.get("selection_s")), 186))
    flow.append(Paragraph("Red bands: S1, blue bands: S2 (envelope segmentation). Bottom strip: probability per "
                          f"{(r.outputs.get('window_s', 4) if r else 4):g}-s window.", SMALL))
    flow.append(Paragraph("Heart sounds", H2))
    hr = seg.get("heart_rate_bpm")
    rows = [["Measure", "Value"],
            ["Heart rate", f"{hr:.0f} bpm" if hr else "no regular S1/S2 found"],
            ["Systole (median S1→S2)", f"{seg.get('systole_ms')} ms" if seg.get("systole_ms") else "–"],
            ["Diastole (median S2→S1)", f"{seg.get('diastole_ms')} ms" if seg.get("diastole_ms") else "–"],
            ["S1 / S2 marked", f"{seg.get('s1_count', 0)} / {seg.get('s2_count', 0)}"],
            ["Segmentation coverage", fmt(seg.get("segmentation_coverage"))]]
    flow.append(table(rows, col_widths=[60 * mm, 110 * mm]))
    if r is None:
        flow.append(Spacer(1, 3 * mm))
        flow.append(Paragraph("No classifier result is stored for this recording.", BODY))
        return flow
    o = r.outputs
    flow.append(Paragraph("Classifier", H2))
    stamp = "" if r.clinical else f" <font color='#c62828'><b>{NOT_CLINICAL}</b></font>"
    flow.append(Paragraph(f"<b>{o['class']}</b> — probability {100 * o['probability']:.0f} % (mean of {o['windows']} "
                          f"windows){stamp}", BODY))
    rows = [["Class", "Probability"]] + [[c, f"{100 * p:.1f} %"] for c, p in o["probabilities"].items()]
    flow.append(table(rows, col_widths=[60 * mm, 40 * mm]))
    flow.append(Spacer(1, 2 * mm))
    flow.append(Paragraph(f"Model: {_model_version(store, r)} · weights sha256 {r.weights_sha256} · result #{r.id}",
                          SMALL))
    if r.model_id == "heart-sound":
        flow.append(Paragraph("Lightbox's own research model (PhysioNet/CinC 2016 training data; held-out metrics in "
                              "its model card). Not a validated medical device.", SMALL))
    for n in r.notes:
        flow.append(Paragraph(n, SMALL))
    return flow

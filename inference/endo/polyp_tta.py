"""``lightbox polyp-train DATA --out DIR --stage tta``: choose the test-time augmentation still images get,
on the VALIDATION split, then score it once on the test split (a logged look) and add it to the card.

The rule (fixed in code before the test look; every step but the last reads validation frames only):

1. Each mode of :data:`inference.endo.polyp.TTA_MODES` (none, flips4, d4: 1, 4 and 8 views) is scored on
   the validation frames with a polyp: Dice per frame at its original size, as the card's segmentation.
2. The chosen mode is the one with the highest mean validation Dice (both sources together), except that a
   costlier mode must beat every cheaper one by at least :data:`MIN_GAIN` Dice, and its paired gain over
   ``none`` (bootstrap over whole groups: CVC examinations, Kvasir near-duplicate groups) must have a
   95 % interval above 0; otherwise the cheaper mode stays.
3. The frame-level operating point (``min_confidence``) is re-chosen for that mode on validation, with the
   card's rule (:func:`inference.endo.polyp_eval.operating_point`).
4. The test split is scored once with that mode at that operating point: Dice per source, frame
   sensitivity / specificity / confusion matrix with the gate on. The look goes into the ledger and the card.

Video sweeps and live mode keep the single view (their speed bar), so the card's video figures and
operating points (``persist_confidence``) stay those of the single view.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..metrics import bootstrap_ci
from .polyp import TTA_MODES, TTA_VIEWS, PolypSegmenter
from .polyp_eval import _originals, detection, frame_dice_iou, operating_point, segmentation, speed

MIN_GAIN = 0.002


def _per_frame_dice(seg: PolypSegmenter, pairs) -> np.ndarray:
    return np.asarray([frame_dice_iou(seg, img, m)[0] for img, m in pairs], float)


def choose_mode(dice: dict[str, np.ndarray], groups: np.ndarray) -> dict:
    """Step 2 of the rule, on per-frame validation Dice of each mode (same frames, same order)."""
    rows, chosen = [], "none"
    base = dice["none"]
    for mode in TTA_MODES:
        d = dice[mode]
        gain = d - base
        ci = [None, None] if mode == "none" else \
            [round(v, 4) for v in bootstrap_ci(np.mean, gain, n=2000, seed=0, clusters=groups)]
        rows.append({"mode": mode, "val_dice": round(float(d.mean()), 4),
                     "gain_vs_none": round(float(gain.mean()), 4), "gain_ci95": ci})
        if mode == "none":
            continue
        cheaper = TTA_MODES[:TTA_MODES.index(mode)]
        beats = d.mean() - max(dice[m].mean() for m in cheaper) >= MIN_GAIN and ci[0] > 0
        if beats:
            chosen = mode
    return {"chosen": chosen, "rows": rows, "min_gain": MIN_GAIN}


def stage_tta(data: dict, out_dir, name: str, *, emit: Callable[[dict], None] = lambda e: None) -> dict:
    out_dir = Path(out_dir)
    onnx_path = out_dir / f"{name}.onnx"
    card_json = out_dir / f"{name}.json"
    meta = json.loads(card_json.read_text())
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    if meta.get("onnx_sha256") != sha:
        raise ValueError(f"{onnx_path} is not the file its card describes (sha256 {sha[:12]} vs "
                         f"{str(meta.get('onnx_sha256'))[:12]})")
    source, split, group = data["source"], data["split"], data["group"]
    val = np.flatnonzero(split == "val")
    val_pos = val[source[val] != "normal"]

    # 1-2: the mode, on validation
    pairs = _originals(data, val_pos)
    dice = {}
    for mode in TTA_MODES:
        dice[mode] = _per_frame_dice(PolypSegmenter(onnx_path, threads=1, gate=False, tta=mode), pairs)
        emit({"event": "tta_val", "mode": mode, "dice": round(float(dice[mode].mean()), 4)})
    choice = choose_mode(dice, np.asarray([str(g) for g in group[val_pos]]))
    mode = choice["chosen"]
    choice["per_source"] = {m: {s: round(float(dice[m][source[val_pos] == s].mean()), 4)
                                for s in sorted(set(source[val_pos]))} for m in TTA_MODES}
    emit({"event": "tta_choice", "chosen": mode})
    stills = {"rule": __doc__.split("The rule")[1].split("Video sweeps")[0].strip(), "choice": choice,
              "command": "lightbox polyp-train DATA_DIR --out " + str(out_dir) + " --stage tta"}
    if mode != "none":  # more views earned their cost on validation: 3-4; else stills keep the single view, no look
        scored, meta["test_looks"] = _score_mode(data, onnx_path, sha, name, mode, meta.get("test_looks", []), emit)
        stills.update(scored)
    meta["metrics"]["stills_tta"] = {**stills, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    meta["updated"] = meta["metrics"]["stills_tta"]["time"]
    card_json.write_text(json.dumps(meta, indent=1, default=float) + "\n")
    emit({"event": "card", "tta": mode, "json": str(card_json)})
    return meta


def _score_mode(data: dict, onnx_path: Path, sha: str, name: str, mode: str, earlier_looks: list[dict],
                emit: Callable[[dict], None]) -> tuple[dict, list[dict]]:
    """Steps 3-4 of the rule for the chosen mode: its operating point on validation, then the test split once
    (a logged look). -> (the card's figures for the mode, the ledger of looks)."""
    from .polyp_eval import log_look

    source, split, group = data["source"], data["split"], data["group"]
    val, test = np.flatnonzero(split == "val"), np.flatnonzero(split == "test")

    # 3: the operating point of that mode, on validation
    op = operating_point(PolypSegmenter(onnx_path, threads=1, gate=True, tta=mode), data["images"][val],
                         source[val] != "normal")
    op.pop("persistence", None)  # video findings keep the single view (and its persist_confidence)
    emit({"event": "tta_operating_point", "min_confidence": op["min_confidence"],
          "val_specificity": op["val_specificity"]})

    # 4: the test split, once
    seg = PolypSegmenter(onnx_path, threads=1, gate=False, tta=mode)
    gated = PolypSegmenter(onnx_path, threads=1, gate=True, tta=mode, min_confidence=op["min_confidence"])
    pos_te, neg_te = test[source[test] != "normal"], test[source[test] == "normal"]
    pos_pairs = _originals(data, pos_te)
    seg_test = segmentation(seg, pos_pairs, pos_te, source, group)
    det, _, _ = detection(gated, [img for img, _ in pos_pairs], source[pos_te],
                          [img for img, _ in _originals(data, neg_te)])
    emit({"event": "tta_test", **{k: v["dice"] for k, v in seg_test.items()}, "confusion": det["confusion"]})
    looks = log_look(name, {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "onnx_sha256": sha,
                            "what": f"still-image test-time augmentation '{mode}' (chosen on validation): Dice and "
                                    "frame detection of the test split",
                            "dice": {k: v["dice"] for k, v in seg_test.items()}},
                     earlier_looks)
    sp = speed(gated, pos_pairs[0][0])
    sp["what"] = (f"1280x720 still, test-time augmentation '{mode}' ({TTA_VIEWS[mode]} views): domain gate + "
                  "resize + ONNX Runtime + decoding, one CPU thread")
    return {"operating_point": op, "segmentation_test": seg_test, "detection_test": det, "speed": sp}, looks


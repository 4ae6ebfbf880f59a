"""``lightbox xray-train``: fine-tune the chest X-ray pneumonia network and export it to ONNX.

    lightbox xray-train /work/data/kermany/train --out resources/models \\
        --external /work/data/kermany_test/dataset/test          # the shipped model and its card

Data: one sub-folder per class (``NORMAL`` / ``PNEUMONIA``; see ``pneumonia_data``), split **by patient**
(stratified by label, fixed seed) into train / validation (early stopping, calibration, threshold, gate
limits) / internal test (scored once, at the end, on the exported ONNX file). ``--external`` names a second
labelled folder (Kermany's official ``test/`` split) that is scored once on the exported ONNX file and never
used for any choice.

Network: :mod:`pneumonia_net` (EfficientNet-Lite0, ImageNet weights, blocks 0-10 frozen and cached by
:mod:`pneumonia_features`, blocks 11-15 + head trained with :func:`inference.training.fit`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..training import event_printer, fit_whitening, print_fields, seed_everything
from . import pneumonia_data as pdata
from . import pneumonia_features as pfeat

ONNX_META_KEY = "lightbox.xray_pneumonia"
NAME = "xray_pneumonia_effnet"
SIZE = 192
CLASSES = ["normal", "pneumonia"]
ATTRIBUTION = ("Kermany DS, Zhang K, Goldbaum M, et al. Identifying medical diagnoses and treatable diseases by "
               "image-based deep learning. Cell 2018;172(5):1122-1131. Data: Kermany D, Zhang K, Goldbaum M. "
               "Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for Classification. "
               "Mendeley Data 2018, v2, doi 10.17632/rscbjbr9sj.2. Licence CC BY 4.0.")


# Fixed before the second v2 run was scored on the external set (issue 23, second attempt); printed by
# --compare and written on the card.
CHOICE_RULE = (
    "Between the first v2 model (xray_pneumonia_effnet as first merged, commit 7facad3) and a new run, the "
    "shipped model is the one with the higher AUROC on the shifted validation set B (the 743 validation films "
    "of the patient split, each passed once through pneumonia_shift.shifted with seed 2018 * 1000 + 502; no "
    "model was stopped early or given its threshold on B), each exported ONNX file scored through the app's "
    "path (`lightbox xray-train DATA --compare OLD.onnx NEW.onnx`); a tie keeps the first model. Each model "
    "keeps the operating point chosen on validation at its own training (first: validation sensitivity >= "
    "0.96; new: sensitivity >= 0.95 on the shifted validation set A). The external set is scored once for the "
    "new model after this choice is made, whatever it is; nothing is chosen again after that look.")


# Fixed before the third v2 run (augmentation v2, threshold on the validation films as they are) had any
# validation or test figure (2026-12-05); printed by --compare and written on the card.
CHOICE_RULE_V3 = (
    "The third v2 run (augmentation v2: detector noise and a tighter field of view; early stopping on the "
    "shifted validation set A; operating point = highest threshold with sensitivity >= 0.96 on the validation "
    "films as they are, the shipped file's own rule) replaces the shipped file (first v2 model) only if, "
    "through the app's path on validation films only (`lightbox xray-train DATA --compare OLD.onnx NEW.onnx`): "
    "(a) its AUROC on the shifted validation set B is at least the shipped file's, and (b) on the noise check "
    "(every validation film at 224 px with uncorrelated Gaussian noise of 8 grey levels, seed 2018 * 1000 + "
    "503) its specificity at its own threshold is >= 95 % (the shipped file: 81 %) with sensitivity >= 93 %. "
    "If the rule keeps the shipped file, the new run is not scored on the external set. If it chooses the new "
    "run, the external set is scored once for it after the choice, and the choice stands whatever that look "
    "shows (no override after the look, unlike the second run); the card then reports the external figures "
    "as they are, met or not.")

# Added after the first recipe-v2 run (run 3) failed part (a) of the rule above (shifted validation B AUROC
# 0.973 against the shipped file's 0.979; noise check met), before any further run (2026-12-05).
CHOICE_RULE_V3_AMENDMENT = (
    "Run 3 failed part (a) and was not scored on the external set. Further recipe-v2 runs (settings listed "
    "on the card) are compared with one another on the shifted validation set A only (the best epoch's AUROC, "
    "the figure early stopping watched); the best of them is put to the rule above once, against the shipped "
    "file (a second look at set B, after run 3's). Nothing else changes: if it fails, no recipe-v2 model is "
    "scored on the external set.")

# Written after run 4 failed part (b) of CHOICE_RULE_V3 (its noise-check sensitivity 89.4 % was seen), before
# run 5 had any figure (2026-12-05); printed by --compare and written on the card.
CHOICE_RULE_V4 = (
    "Run 5 repeats run 4's training exactly (recipe v2, lr 3e-4, 4 augmented copies, patience 4, 16 epochs at "
    "most, early stopping on the shifted validation set A, seed 2018) and changes only the operating point: "
    "the highest threshold with sensitivity >= 0.96 on the validation films as they are and the same films "
    "once more with uncorrelated Gaussian noise of 4-12 grey levels (drawn per film, seed 2018 * 1000 + 504), "
    "taken together (`--threshold-on val+noise`). It replaces the shipped file only if both parts of "
    "CHOICE_RULE_V3 hold through the app's path (`--compare`): (a) shifted validation B AUROC >= the shipped "
    "file's; (b) on the noise check (seed 2018 * 1000 + 503, 8 grey levels) specificity >= 95 % with "
    "sensitivity >= 93 %. Part (b) is weaker evidence than before: the threshold's noisy copy and the noise "
    "check share the films and the kind of noise (different draws), and this rule was written knowing run 4's "
    "noise figures; the external look is what binds. If both hold, the external set is scored once for run 5 "
    "and it ships whatever that look shows (no override after it); the card then reports the external figures "
    "as they are, met or not. If either fails, run 5 is not scored on the external set and no further run is "
    "tried in this session.")


def aug_subset(ytr: np.ndarray, seed: int, copy: int) -> np.ndarray:
    """Training images that get augmented copy ``copy``: every normal film and as many pneumonia films
    (seeded), i.e. what a class-balanced epoch needs (sorted indices into the training split)."""
    neg, pos = np.flatnonzero(ytr == 0), np.flatnonzero(ytr == 1)
    r = np.random.RandomState(seed * 100 + copy)
    n = min(len(neg), len(pos))
    return np.sort(np.concatenate([neg, r.choice(pos, n, replace=False)] if len(neg) <= len(pos) else
                                  [r.choice(neg, n, replace=False), pos]))


def prepare(data_dir, *, size: int = SIZE, seed: int = 2018, n_aug: int = 3, val_frac: float = 0.15,
            test_frac: float = 0.15, emit: Callable[[dict], None] | None = None, items=None, classes=None,
            pretrained: bool = True, cache: bool = True, shifted_val: bool = True, recipe: str = "v1",
            noisy_val: bool = False) -> dict:
    """Scan, split by patient, decode (cached), and compute the frozen features of the clean copies of
    every split, of ``n_aug`` augmented copies of the training images and (``shifted_val``) of the shifted
    validation set A (:mod:`pneumonia_shift`) and (``noisy_val``) of the noisy validation copy an operating
    point ``val+noise`` is chosen on, all cached. ``recipe``: the augmentation recipe
    (:func:`pneumonia_net.augment`; part of the cache key). Returns the pieces."""
    emit = emit or (lambda e: None)
    if items is None:
        items, classes = pdata.scan(data_dir)
    classes = list(classes or CLASSES)
    parts = pdata.split(items, seed=seed, val=val_frac, test=test_frac)
    y_all = np.array([it.label for it in items], np.int64)
    split_info = {k: {"images": len(v), "patients": len({items[i].patient for i in v}),
                      classes[0]: int((y_all[v] == 0).sum()), classes[1]: int((y_all[v] == 1).sum())}
                  for k, v in parts.items()}
    emit({"event": "split", "classes": classes, **split_info})
    pt = {k: {items[i].patient for i in v} for k, v in parts.items()}
    assert not (pt["train"] & pt["val"] or pt["train"] & pt["test"] or pt["val"] & pt["test"]), "patient leak"
    if len(parts["train"]) < 4 or not parts["val"]:
        raise pdata.DatasetError("too few images to split into training and validation sets")
    x_all, shapes = pdata.load_images(items, max(size, 224), emit, cache=cache)
    from .pneumonia_net import build

    low, high = build(pretrained=pretrained)
    cdir = pdata.cache_dir() / "features"
    cdir.mkdir(parents=True, exist_ok=True)
    k = pfeat.key([str(it.path) for it in items], size, seed, recipe) + ("" if pretrained else "-rand")
    idx = {p: np.asarray(parts[p], np.int64) for p in ("train", "val", "test")}
    feats = {}
    for p in ("val", "test", "train"):
        if len(idx[p]):
            feats[(p, 0)] = pfeat.ensure(low, cdir, k, p, 0, lambda p=p: pfeat.resized(x_all[idx[p]], size), emit)
    ytr = y_all[idx["train"]]
    for c in range(1, n_aug + 1):
        sub = aug_subset(ytr, seed, c)
        feats[("train", c)] = pfeat.ensure(
            low, cdir, k, "train-sub", c,
            lambda c=c, sub=sub: pfeat.augmented_copy(x_all[idx["train"]][sub], size, seed, c, recipe), emit)
        feats[("train_sub", c)] = sub
        emit({"event": "copy_done", "copy": c, "images": len(sub)})
    if shifted_val and len(idx["val"]):
        from . import pneumonia_shift as pshift

        feats[("val_shiftA", 0)] = pfeat.ensure(
            low, cdir, k, f"val-shift{pshift.VERSION}A", 0,
            lambda: pshift.model_inputs(pshift.shifted_set(x_all[idx["val"]], seed, "A"), size), emit)
    if noisy_val and len(idx["val"]):
        from . import pneumonia_shift as pshift

        x224 = x_all[idx["val"]] if x_all.shape[1] == 224 else pfeat.resized(x_all[idx["val"]], 224)
        feats[("val_noiseT", 0)] = pfeat.ensure(
            low, cdir, k, f"val-noiseT{pshift.SEED_NOISE_THRESHOLD}", 0,
            lambda: pshift.model_inputs(pshift.threshold_noise_set(x224, seed), size), emit)
    return {"items": items, "classes": classes, "parts": parts, "idx": idx, "y": y_all, "x": x_all,
            "shapes": shapes, "split_info": split_info, "low": low, "high": high, "feats": feats, "key": k,
            "cache": cdir, "size": size}



# -- small numeric helpers ----------------------------------------------------------------------------------
def fit_platt(logit: np.ndarray, y: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """Platt scaling P = sigmoid(a * logit + b) fitted on validation logits: damped Newton on the
    log-likelihood with Platt's smoothed targets (never a perfect-separation blow-up); a > 0 always."""
    z = np.asarray(logit, np.float64)
    y = np.asarray(y, np.float64)
    n1, n0 = y.sum(), len(y) - y.sum()
    t = np.where(y > 0, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))
    X = np.stack([z, np.ones_like(z)], 1)

    def nll(w):
        u = X @ w
        return float(np.sum(np.logaddexp(0, u) - t * u))

    w = np.array([1.0, 0.0])
    f = nll(w)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(X @ w, -500, 500)))
        g = X.T @ (p - t)
        H = (X * (p * (1 - p) + 1e-9)[:, None]).T @ X + 1e-6 * np.eye(2)
        step = np.linalg.solve(H, g)
        lam = 1.0
        while lam > 1e-6 and nll(w - lam * step) > f:
            lam /= 2
        w_new = w - lam * step
        f_new = nll(w_new)
        if f - f_new < 1e-10:
            break
        w, f = w_new, f_new
    if not (np.isfinite(w).all() and w[0] > 0):
        return 1.0, 0.0
    return float(w[0]), float(w[1])


def platt_prob(platt: tuple[float, float], logit: np.ndarray) -> np.ndarray:
    """P = sigmoid(a * logit + b) of a Platt fit (logits clipped so the exponential never overflows)."""
    return 1 / (1 + np.exp(-np.clip(platt[0] * np.asarray(logit) + platt[1], -60, 60)))


def heat_reference(logit_maps: np.ndarray, y: np.ndarray, thr: float, platt: tuple[float, float]) -> dict:
    """The fixed heat scale of the heatmap (see :func:`inference.xray.pneumonia.heat_scale`): 0 at the
    threshold's logit, 1 at the median over the validation pneumonia films of each film's 95th-percentile
    local logit (the logit map cell)."""
    a, b = platt
    t = min(max(float(thr), 1e-12), 1 - 1e-12)
    zero = (np.log(t / (1 - t)) - b) / a
    pos = np.asarray(logit_maps)[np.asarray(y) == 1]
    full = float(np.median([np.quantile(m, 0.95) for m in pos])) if len(pos) else zero + 4.0
    return {"zero_logit": round(float(zero), 4), "full_logit": round(max(full, float(zero) + 1.0), 4),
            "rule": "0 at the threshold's logit; 1 at the median over validation pneumonia films of each film's "
                    "95th-percentile logit-map cell"}


def predict_high(high, feats, batch: int = 64) -> dict[str, np.ndarray]:
    """Logit, logit map and pooled features of cached frozen features (eval mode)."""
    import torch

    high.eval()
    lg, lm, pooled = [], [], []
    with torch.no_grad():
        for i in range(0, len(feats), batch):
            a = torch.from_numpy(np.asarray(feats[i:i + batch], np.float32))
            o = high(a)
            lg.append(o[0].numpy()), lm.append(o[1].numpy()), pooled.append(o[2].numpy())
    return {"logit": np.concatenate(lg), "map": np.concatenate(lm), "pooled": np.concatenate(pooled)}


# -- training -----------------------------------------------------------------------------------------
def train(data_dir: str | Path, out_dir: str | Path, name: str = NAME, *, size: int = SIZE, seed: int = 2018,
          epochs: int = 10, patience: int = 4, batch: int = 32, lr: float = 1e-3, threads: int = 2,
          n_aug: int = 2, epoch_images: int = 0, max_minutes: float = 0.0, val_frac: float = 0.15,
          test_frac: float = 0.15, sens_target: float = 0.96, external: str | Path | None = None,
          emit: Callable[[dict], None] | None = None, cache: bool = True, items=None, classes=None,
          pretrained: bool = True, data_description: str = "", evaluate_test: bool = True,
          gate_extra=(), full_checks: bool = True, from_checkpoint: str | Path | None = None,
          resumed_history: list[dict] | None = None, monitor: str = "shifted",
          overlap_with: str | Path | None = None, recipe: str = "v1", threshold_on: str = "monitor") -> dict:
    """Fine-tune, calibrate, choose the threshold and the gate limits on validation, export, evaluate.

    ``monitor``: ``"shifted"`` stops early and picks the operating point on the shifted validation set A
    (:mod:`pneumonia_shift`); ``"val"`` on the validation films as they are (the first v2 model's rule).
    ``overlap_with``: a folder (the external test set) compared pixel-wise with the training folder first
    (:mod:`pneumonia_overlap`); the patients of training films found in it are left out of training.
    ``recipe``: the augmentation recipe (:func:`pneumonia_net.augment`). ``threshold_on``: ``"monitor"``
    puts the operating point on the set early stopping watched; ``"val"`` on the validation films as they
    are (with the shifted set A still watched by early stopping and reported); ``"val+noise"`` on the
    validation films as they are and a copy with Gaussian noise (:func:`pneumonia_shift.threshold_noise_set`)
    taken together, so the threshold holds on noisy films too."""
    import torch

    from ..training import fit

    emit = emit or (lambda e: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    rng = seed_everything(seed, threads)
    d = prepare(data_dir, size=size, seed=seed, n_aug=n_aug, val_frac=val_frac, test_frac=test_frac, emit=emit,
                items=items, classes=classes, pretrained=pretrained, cache=cache, shifted_val=monitor == "shifted",
                recipe=recipe, noisy_val=threshold_on == "val+noise")
    items, classes, idx, y_all, high = d["items"], d["classes"], d["idx"], d["y"], d["high"]
    ytr, yva = y_all[idx["train"]], y_all[idx["val"]]
    d["overlap"] = overlap(d, overlap_with, emit) if overlap_with else None
    excluded = set(d["overlap"]["train_patients"]) if d["overlap"] else set()
    keep = np.array([items[i].patient not in excluded for i in idx["train"]], bool)
    d["train_keep"] = keep
    copies = [c for c in range(n_aug + 1) if ("train", c) in d["feats"]]
    ftr = [np.asarray(d["feats"][("train", c)]) for c in copies]
    # where image i's copy c sits in ftr[c] (-1: no such copy); copy 0 holds every training image
    pos_of = np.full((len(copies), len(ytr)), -1, np.int64)
    pos_of[0] = np.arange(len(ytr))
    for j, c in enumerate(copies[1:], start=1):
        pos_of[j, d["feats"][("train_sub", c)]] = np.arange(len(d["feats"][("train_sub", c)]))
    fva = np.asarray(d["feats"][("val", 0)])
    n_pos, n_neg = int(ytr.sum()), int(len(ytr) - ytr.sum())
    # balanced epochs: every normal image and as many pneumonia images (drawn anew each epoch), so both
    # classes weigh the same and an epoch costs about 2 x the normal count
    per_class = min(n_neg, n_pos) if not epoch_images else max(1, epoch_images // 2)
    neg_i, pos_i = np.flatnonzero((ytr == 0) & keep), np.flatnonzero((ytr == 1) & keep)
    per_class = min(per_class, len(neg_i), len(pos_i)) if not epoch_images else per_class
    loss_fn = torch.nn.BCEWithLogitsLoss()
    trainable = [p for p in high.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in high.parameters()) + sum(p.numel() for p in d["low"].parameters())
    emit({"event": "start", "params": n_params, "trainable": sum(p.numel() for p in trainable),
          "train": len(ytr), "val": len(yva), "copies": len(copies), "epoch_images": 2 * per_class,
          "size": size, "epochs": epochs})

    def batches(epoch: int):
        r = np.random.RandomState(seed + 7919 * (epoch + 1))
        sel = np.concatenate([r.choice(neg_i, per_class, replace=per_class > len(neg_i)),
                              r.choice(pos_i, per_class, replace=per_class > len(pos_i))])
        r.shuffle(sel)
        have = pos_of[:, sel] >= 0  # (copies, n): which copies each drawn image has
        cp = np.array([r.choice(np.flatnonzero(h)) for h in have.T], np.int64)
        for b in range(0, len(sel) - 1, batch):
            ii, cc = sel[b:b + batch], cp[b:b + batch]
            if len(ii) < 2:
                continue
            a = np.stack([ftr[c][pos_of[c, i]] for i, c in zip(ii, cc)]).astype(np.float32)
            yield torch.from_numpy(a), torch.from_numpy(ytr[ii].astype(np.float32))

    def step(net, b):
        return loss_fn(net(b[0])[0], b[1])

    fsh = d["feats"].get(("val_shiftA", 0))

    def validate(net):
        from ..metrics import roc_auc

        o = predict_high(net, fva)
        out = {"auroc": roc_auc(yva, o["logit"]),
               "loss": float(loss_fn(torch.from_numpy(o["logit"]), torch.from_numpy(yva.astype(np.float32))))}
        if fsh is not None:
            s = predict_high(net, np.asarray(fsh))["logit"]
            out["auroc_shift"] = roc_auc(yva, s)
            out["loss_shift"] = float(loss_fn(torch.from_numpy(s), torch.from_numpy(yva.astype(np.float32))))
        return out

    key_monitor = "auroc_shift" if fsh is not None else "auroc"
    ckpt = pdata.cache_dir() / f"{name}-seed{seed}-best.pt"
    if from_checkpoint:  # finish a run whose best weights were saved (its epoch log gives the history)
        from ..training import FitResult

        high.load_state_dict(torch.load(str(from_checkpoint), map_location="cpu", weights_only=True))
        high.eval()
        hist = list(resumed_history or [])
        mk = f"val_{key_monitor}"
        best = max(hist, key=lambda h: h.get(mk, -1)) if hist else {"epoch": -1, mk: float("nan")}
        res = FitResult({}, best["epoch"], best[mk], hist,
                        f"{len(hist)} epochs logged; finished from the saved best checkpoint (--from-checkpoint)",
                        sum(float(h.get("seconds", 0)) for h in hist))
    else:
        res = fit(high, batches, step, validate, epochs=epochs, patience=patience, lr=lr, weight_decay=1e-4,
                  params=trainable, warmup_epochs=1, monitor=key_monitor, emit=emit, checkpoint=ckpt,
                  time_budget_s=max_minutes * 60 if max_minutes else None, grad_clip=5.0)
    emit({"event": "trained", "best_epoch": res.best_epoch, f"val_{key_monitor}": res.best_score, "stopped": res.stopped,
          "minutes": round(res.seconds / 60, 1)})
    return finish(d, res.as_dict(), out_dir, name, seed=seed, sens_target=sens_target, external=external,
                  emit=emit, t_start=t_start, threads=threads, data_description=data_description,
                  evaluate_test=evaluate_test, gate_extra=gate_extra, full_checks=full_checks,
                  threshold_on=threshold_on,
                  hyper={"augmentation": recipe, "threshold_on": threshold_on, "epochs_max": epochs, "patience": patience, "batch": batch, "lr": lr, "n_aug": n_aug,
                         "epoch_images": 2 * per_class, "threads": threads, "copies": len(copies),
                         "params": n_params, "trainable": sum(p.numel() for p in trainable),
                         "torch": torch.__version__, "monitor": key_monitor, "max_minutes": max_minutes,
                         "excluded_patients": sorted(excluded), "excluded_images": int((~keep).sum())})


def _full_pooled(low, high, imgs: list[np.ndarray] | np.ndarray, size: int, batch: int = 32) -> np.ndarray:
    """Pooled features of whole images (any size, uint8) through the run-time preprocessing and both parts."""
    import torch

    x = np.stack([pdata.model_input(np.asarray(im, np.uint8), size) for im in imgs])
    out = []
    high.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch):
            t = torch.from_numpy(x[i:i + batch].astype(np.float32))[:, None]
            out.append(high(low(t))[2].numpy())
    return np.concatenate(out)


def finish(d: dict, training: dict, out_dir: Path, name: str, *, seed: int, sens_target: float,
           external, emit, t_start: float, threads: int, data_description: str, evaluate_test: bool,
           gate_extra, hyper: dict, full_checks: bool = True, threshold_on: str = "monitor") -> dict:
    """Validation-only choices (calibration, threshold, gate limits), export, agreement, the one look at
    the internal test split and the external set, the checks, the card."""
    from ..metrics import sensitivity_threshold, youden_threshold
    from ..training import agreement_check, export_onnx, file_facts
    from . import pneumonia_cases as cases
    from .pneumonia import fit_image_stats, image_stats
    from .pneumonia_net import export_module, fit_gate

    items, classes, idx, y_all, low, high, size = (d[k] for k in ("items", "classes", "idx", "y", "low", "high",
                                                                  "size"))
    rng = np.random.RandomState(seed)
    ytr, yva = y_all[idx["train"]], y_all[idx["val"]]
    o_va = predict_high(high, np.asarray(d["feats"][("val", 0)]))
    fsh = d["feats"].get(("val_shiftA", 0))
    shift_info = None
    if fsh is not None:  # calibrated on both, operating point on the shifted validation set A
        from ..metrics import binary_summary

        o_sh = predict_high(high, np.asarray(fsh))
        platt = fit_platt(np.concatenate([o_va["logit"], o_sh["logit"]]),
                          np.concatenate([yva, yva]).astype(np.float64))
        psh = platt_prob(platt, o_sh["logit"])
    else:
        platt = fit_platt(o_va["logit"], yva.astype(np.float64))
    pva = platt_prob(platt, o_va["logit"])
    fnz = d["feats"].get(("val_noiseT", 0))
    if threshold_on == "val+noise":
        if fnz is None:
            raise ValueError("--threshold-on val+noise needs the noisy validation copy (prepare(noisy_val=True))")
        from . import pneumonia_shift as pshift

        o_nz = predict_high(high, np.asarray(fnz))
        pnz = platt_prob(platt, o_nz["logit"])
        thr = sensitivity_threshold(np.concatenate([yva, yva]), np.concatenate([pva, pnz]), sens_target)
        rule = (f"highest threshold with sensitivity >= {sens_target:.2f} on the validation films as they are and "
                f"once more with Gaussian noise of 4-12 grey levels (seed {seed} * 1000 + "
                f"{pshift.SEED_NOISE_THRESHOLD}), together")
    elif fsh is not None and threshold_on != "val":
        thr = sensitivity_threshold(yva, psh, sens_target)
        rule = f"highest threshold with sensitivity >= {sens_target:.2f} on the shifted validation set A"
    else:
        thr = sensitivity_threshold(yva, pva, sens_target)
        rule = f"highest threshold with validation sensitivity >= {sens_target:.2f}"
    if fsh is not None:
        shift_info = {k: v for k, v in binary_summary(yva, psh, thr, n_boot=200).items()
                      if k in ("n", "auroc", "sensitivity", "specificity", "confusion")}
        shift_info["youden"] = float(youden_threshold(yva, psh))
    thr_youden = youden_threshold(yva, pva)
    heat = heat_reference(o_va["map"], yva, thr, platt)
    emit({"event": "calibrated", "platt": platt, "threshold": thr, "youden": thr_youden, "shifted_A": shift_info})

    # feature-distance OOD score (training films' features, limit from validation)
    keep = d.get("train_keep")
    ftr0 = np.asarray(d["feats"][("train", 0)])
    o_tr = predict_high(high, ftr0 if keep is None or keep.all() else ftr0[keep])
    mu, proj = fit_whitening(o_tr["pooled"])
    ood_va = (((o_va["pooled"] - mu) @ proj) ** 2).sum(1)
    ood_limit = float(np.quantile(ood_va, 0.995) * 1.5)

    # image-statistics gate on the model inputs
    x_tr = pfeat.resized(d["x"][idx["train"]], size)
    x_va = pfeat.resized(d["x"][idx["val"]], size)
    img_gate = fit_image_stats(np.stack([image_stats(im) for im in x_tr]))
    img_va = np.array([img_gate.distance(image_stats(im)) for im in x_va])
    img_gate.limit = float(np.quantile(img_va, 0.995) * 1.5)

    # learned gate: chest (clean + augmented training films) vs rotated / inverted / not a chest film
    films = d["x"][idx["train"]][rng.permutation(len(idx["train"]))[:min(480, len(idx["train"]))]]
    neg_imgs, neg_lab = cases.gate_training_negatives(
        films, rng, extra_dirs=[p for p in (gate_extra or []) if p], n_generated=96)
    emit({"event": "gate_negatives", "n": len(neg_imgs)})
    neg_pooled = _full_pooled(low, high, neg_imgs, size)
    aug_pos = []
    for c in range(1, hyper.get("copies", 1)):
        f = d["feats"][("train", c)]
        sub = np.sort(rng.permutation(len(f))[:400])
        aug_pos.append(predict_high(high, np.asarray(f)[sub])["pooled"])
    pos_pooled = np.concatenate([o_tr["pooled"]] + aug_pos)
    gX = np.concatenate([pos_pooled, neg_pooled])
    gy = np.concatenate([np.zeros(len(pos_pooled), np.int64), np.asarray(neg_lab, np.int64)])
    gw, gb, gmu, gsd = fit_gate(gX, gy)

    def gate_probs(pooled):
        z = ((pooled - gmu) / gsd) @ gw + gb
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    p_chest_va = gate_probs(o_va["pooled"])[:, 0]
    gate_limit = float(min(0.5, np.quantile(p_chest_va, 0.005)))
    emit({"event": "gate", "limit": gate_limit, "val_refused": int((p_chest_va < gate_limit).sum())})

    spec = {"size": size, "crop_borders": True,
            "resize": "uniform edge bands cropped (crop_flat_borders), then cv2.INTER_AREA to size x size "
                      "(aspect not kept)",
            "input": "8-bit default-display greyscale as float32 0-255, shape (N, 1, size, size)",
            "normalisation": "inside the network: per-image (x - mean) / (std + 1)",
            "classes": [c.lower() for c in classes], "threshold": round(thr, 6), "platt": platt,
            "threshold_rule": rule,
            "threshold_youden_val": round(thr_youden, 6),
            "ood_feature_limit": ood_limit, "image_gate": img_gate.to_dict(),
            "gate_classes": list(cases.GATE_CLASSES), "gate_chest_limit": gate_limit,
            "cam_grid": [size // 16, size // 16], "heat_scale": heat}
    import torch

    exp = export_module(low, high, platt, mu, proj, gw, gb, gmu, gsd)
    onnx_path = out_dir / f"{name}.onnx"
    tmp = out_dir / f"{name}.tmp.onnx"
    export_onnx(exp, (torch.zeros(1, 1, size, size),), tmp, input_names=["image"],
                output_names=["prob", "cam", "features", "ood", "gate"], meta_key=ONNX_META_KEY, meta=spec,
                producer="lightbox xray-train")
    tmp.replace(onnx_path)
    agreement = agreement_check(exp, onnx_path, {"image": x_va[:24].astype(np.float32)[:, None]}, tol=1e-3,
                                threads=threads, rtol={"ood": 1e-2})
    emit({"event": "exported", "file": str(onnx_path), "agreement": agreement})

    from .pneumonia import PneumoniaModel
    from . import pneumonia_checks as checks

    model = PneumoniaModel(onnx_path, threads=threads)
    preds = {"val": checks.predict_files(model, [items[i] for i in idx["val"]])}
    if evaluate_test and len(idx["test"]):
        preds["test"] = checks.predict_files(model, [items[i] for i in idx["test"]])
    ext_items = None
    if external:
        ext_items, _ = pdata.scan(external)
        preds["external"] = checks.predict_files(model, ext_items)
    np.savez(pdata.cache_dir() / f"{name}-seed{seed}-preds.npz",
             **{f"{k}_{f}": np.asarray(v[f]) for k, v in preds.items() for f in v})
    card = {
        "name": name, "classes": [c.lower() for c in classes], "preprocessing": spec,
        "input": {"name": "image", "shape": [None, 1, size, size], "dtype": "float32"},
        "outputs": {"prob": [None], "cam": [None, size // 16, size // 16], "features": [None, 1280],
                    "ood": [None], "gate": [None, len(cases.GATE_CLASSES)]},
        "data": data_description or "Kermany paediatric chest X-ray set, train/ folder only (5216 images)",
        "external_data": str(external) if external else None,
        "attribution": ATTRIBUTION,
        "split": {"by": "patient", "seed": seed, **d["split_info"],
                  "test_files": [items[i].path.name for i in idx["test"]]},
        "training": {**hyper, **training, "sens_target": sens_target},
        "agreement_torch_onnx": agreement, **file_facts(onnx_path),
        "shifted_val_A": shift_info, "overlap": d.get("overlap"),
    }
    card["metrics"] = checks.metrics(preds, thr)
    card["checks"] = checks.run_all(model, x_va=d["x"][idx["val"]], y_va=yva, ext_items=ext_items,
                                    preds=preds, seed=seed, emit=emit, endo=checks.ENDO if full_checks else None,
                                    n_gate=120 if full_checks else 12)
    card["minutes_total"] = round((time.time() - t_start) / 60, 1)
    from .pneumonia_card import write_card

    write_card(card, out_dir)
    emit({"event": "done", **{k: {m: card["metrics"].get(k, {}).get(m) for m in
                                  ("auroc", "auroc_ci", "sensitivity", "specificity")} for k in preds}})
    return card


def overlap(d: dict, folder, emit) -> dict:
    """Pixel near-duplicates between the training folder and ``folder`` (:mod:`pneumonia_overlap`), on the
    224-px model inputs of both."""
    from . import pneumonia_overlap as po

    ext, _ = pdata.scan(folder)
    x_ext, _ = pdata.load_images(ext, 224, emit)
    x = d["x"] if d["x"].shape[1] == 224 else pfeat.resized(d["x"], 224)
    r = po.check(x, [it.path.name for it in d["items"]], [it.patient for it in d["items"]], x_ext,
                 [it.path.name for it in ext], seed=0, emit=emit)
    emit({"event": "overlap_done", "near_duplicates": len(r["pairs"]), "train_patients": len(r["train_patients"])})
    return r


def compare(data_dir, onnx_paths: list[str], seed: int = 2018, threads: int = 2, val_frac: float = 0.15,
            test_frac: float = 0.15) -> dict:
    """The model-choice figures of each exported file on the **shifted validation set B** (a draw no model
    was stopped or thresholded on) and on the validation films as they are, through the app's path."""
    from ..metrics import binary_summary
    from . import pneumonia_shift as pshift
    from .pneumonia import PneumoniaModel

    items, _ = pdata.scan(data_dir)
    parts = pdata.split(items, seed=seed, val=val_frac, test=test_frac)
    iv = np.asarray(parts["val"], np.int64)
    x, _ = pdata.load_images(items, 224)
    y = np.array([items[i].label for i in iv])
    xb = pshift.shifted_set(x[iv], seed, "B")
    xn = pshift.noisy_set(x[iv], seed)
    out = {"set": f"shifted validation B (seed {seed} * 1000 + {pshift.SEED_B}), {len(iv)} films",
           "noise_set": f"validation films at 224 px with Gaussian noise of {pshift.NOISE_SIGMA:g} grey levels "
                        f"(seed {seed} * 1000 + {pshift.SEED_NOISE})", "models": {}}
    for path in onnx_paths:
        m = PneumoniaModel(path, threads=threads)
        pb = pshift.score_onnx(m, xb)
        pc = pshift.score_onnx(m, x[iv])
        pn = pshift.score_onnx(m, xn)
        sb = binary_summary(y, pb, m.threshold, n_boot=500)
        sc = binary_summary(y, pc, m.threshold, n_boot=500)
        sn = binary_summary(y, pn, m.threshold, n_boot=500)
        out["models"][str(path)] = {
            "threshold": m.threshold,
            "shifted_B": {k: sb[k] for k in ("auroc", "auroc_ci", "sensitivity", "specificity", "confusion")},
            "val_224": {k: sc[k] for k in ("auroc", "sensitivity", "specificity")},
            "noise": {**{k: sn[k] for k in ("auroc", "sensitivity", "specificity", "confusion")},
                        "normal_median_p": float(np.median(pn[y == 0]))}}
    return out


def score_external(out_dir, name: str, external, threads: int = 2, emit=None) -> dict:
    """Score ``external`` once on the exported file in ``out_dir`` and add it (metrics, heat in the lung
    fields) to the card there: the step run *after* the model-choice rule was written down."""
    from . import pneumonia_checks as checks
    from .pneumonia import PneumoniaModel
    from .pneumonia_card import write_card

    emit = emit or (lambda e: None)
    out_dir = Path(out_dir)
    card = json.loads((out_dir / f"{name}.json").read_text())
    model = PneumoniaModel(out_dir / f"{name}.onnx", threads=threads)
    ext_items, _ = pdata.scan(external)
    pe = checks.predict_files(model, ext_items)
    np.savez(pdata.cache_dir() / f"{name}-external-preds.npz", **{f: np.asarray(v) for f, v in pe.items()})
    card["metrics"]["external"] = checks.metrics({"external": pe}, model.threshold)["external"]
    sel = np.flatnonzero(np.asarray(pe["y"]) == 1)
    card.setdefault("checks", {})["lung_heat_external_pneumonia"] = checks.lung_heat(
        model, [ext_items[i] for i in sel], np.asarray(pe["cam"])[sel])
    card["external_data"] = str(external)
    write_card(card, out_dir)
    m = card["metrics"]["external"]
    emit({"event": "external", **{k: m.get(k) for k in ("auroc", "auroc_ci", "sensitivity", "specificity",
                                                         "confusion")}})
    return card


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lightbox xray-train", description=__doc__.split("\n")[0])
    ap.add_argument("data", help="folder with NORMAL/ and PNEUMONIA/ sub-folders (or the release's top folder)")
    ap.add_argument("--out", help="output folder for the .onnx, .json and .md (not needed with --compare)")
    ap.add_argument("--external", help="a second labelled folder (NORMAL/, PNEUMONIA/) scored once on the "
                                       "exported file, e.g. Kermany's official test/ split")
    ap.add_argument("--gate-negatives", action="append", default=[],
                    help="folder of non-chest images for the gate's training (repeatable)")
    ap.add_argument("--name", default=NAME)
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--size", type=int, default=SIZE)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--aug-copies", type=int, default=2, help="augmented copies of each training image")
    ap.add_argument("--epoch-images", type=int, default=0, help="images per epoch (default: 2 x normal count)")
    ap.add_argument("--sens-target", type=float, default=0.96, help="validation sensitivity the threshold keeps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop after this long (keeps the best epoch)")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--no-test", action="store_true", help="development export: do not score the test split")
    ap.add_argument("--card-only", action="store_true", help="rewrite the card in --out from its JSON")
    ap.add_argument("--jsonl", action="store_true", help="one JSON event per line")
    ap.add_argument("--prepare-only", action="store_true", help="only decode and cache the frozen features")
    ap.add_argument("--from-checkpoint", help="skip training: finish from this saved best-weights file")
    ap.add_argument("--history-log", help="with --from-checkpoint: the run's --jsonl log, for the card's history")
    ap.add_argument("--monitor", choices=["shifted", "val"], default="shifted",
                    help="early stopping and operating point on the shifted validation set A (default) or on "
                         "the validation films as they are")
    ap.add_argument("--augmentation", choices=["v1", "v2"], default="v1",
                    help="augmentation recipe: v1 (the shipped model's) or v2 (adds detector noise and a tighter "
                         "field of view)")
    ap.add_argument("--threshold-on", choices=["monitor", "val", "val+noise"], default="monitor",
                    help="operating point on the set early stopping watches (default), on the validation films "
                         "as they are, or on those films and a noisy copy of them together (val+noise)")
    ap.add_argument("--overlap-check", metavar="DIR",
                    help="compare DIR (the external set) pixel-wise with the training folder first; training "
                         "films found in it leave training with their patients")
    ap.add_argument("--compare", nargs="+", metavar="ONNX",
                    help="no training: print each file's AUROC on the shifted validation set B (model choice)")
    ap.add_argument("--score-external", metavar="DIR",
                    help="no training: score DIR once on the file in --out and add it to its card")
    a = ap.parse_args(argv)
    if not a.compare and not a.out:
        ap.error("--out is required (except with --compare)")
    if a.compare:
        r = compare(a.data, a.compare, seed=a.seed, threads=a.threads)
        r["rule"] = CHOICE_RULE
        r["rule_v3"] = CHOICE_RULE_V3
        r["rule_v3_amendment"] = CHOICE_RULE_V3_AMENDMENT
        r["rule_v4"] = CHOICE_RULE_V4
        print(json.dumps(r, indent=1, default=float))
        return 0
    if a.score_external:
        score_external(a.out, a.name, a.score_external, threads=a.threads, emit=event_printer(a.jsonl, print_fields,
                                                                                                default=float))
        return 0
    if a.card_only:
        from .pneumonia_card import write_card

        write_card(json.loads((Path(a.out) / f"{a.name}.json").read_text()), Path(a.out))
        return 0

    def human(e):
        if e["event"] not in ("images", "features") or e.get("done") == e.get("total"):
            print_fields(e)

    emit = event_printer(a.jsonl, human, default=float)
    try:
        if a.prepare_only:
            import torch

            torch.set_num_threads(a.threads)
            prepare(a.data, size=a.size, seed=a.seed, n_aug=a.aug_copies, emit=emit, cache=not a.no_cache,
                    recipe=a.augmentation)
            return 0
        hist = None
        if a.history_log:
            hist = [{k: v for k, v in e.items() if k != "event"}
                    for e in (json.loads(ln) for ln in open(a.history_log) if ln.startswith("{"))
                    if e.get("event") == "epoch"]
        train(a.data, a.out, a.name, size=a.size, seed=a.seed, epochs=a.epochs, patience=a.patience,
              batch=a.batch, lr=a.lr, threads=a.threads, n_aug=a.aug_copies, epoch_images=a.epoch_images,
              max_minutes=a.max_minutes, sens_target=a.sens_target, external=a.external, emit=emit,
              cache=not a.no_cache, evaluate_test=not a.no_test, gate_extra=a.gate_negatives,
              from_checkpoint=a.from_checkpoint, resumed_history=hist, monitor=a.monitor,
              overlap_with=a.overlap_check, recipe=a.augmentation, threshold_on=a.threshold_on)
    except pdata.DatasetError as e:
        print(f"lightbox xray-train: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

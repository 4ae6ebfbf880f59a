"""``lightbox polyp-train``: train the Lightbox polyp segmenter (U-Net on an ImageNet EfficientNet-Lite0
encoder) on colonoscopy frames, export it to ONNX, evaluate it and write its model card.

    lightbox polyp-train DATA_DIR --out resources/models          # the shipped model + the cross-site run
    lightbox polyp-train DATA_DIR --out /tmp/run --epochs 2 --no-cross-site   # a quick run

DATA_DIR = the ``datasets/`` folder of the snapshot named in :mod:`inference.endo.polyp_data` (what is
read, what is left out and why). Steps:

1. every frame is decoded once and cached as uint8 at ``--cache-size`` px under ``$LIGHTBOX_POLYP_CACHE``
   (default: the temp folder);
2. grouping: CVC-ClinicDB sequences merged into examinations (:func:`cvc_video_groups`); Kvasir-SEG and
   the polyp-free crops linked into near-duplicate groups by the cosine similarity of ImageNet Lite0
   embeddings (``--dup-threshold``); whole groups go to train / validation / test (seeded);
3. offline augmentation: ``--views`` augmented views per training frame go once through the frozen
   part of the encoder (:class:`inference.endo.polyp_views.ViewCache`);
4. :func:`inference.training.fit` trains the rest (AdamW, cosine schedule, early stop on validation
   Dice minus 0.1 x the validation false-positive rate on polyp-free crops);
5. ONNX export (contract of ``[models.endo-polyp-lightbox]``: input ``image`` [N,3,S,S] RGB /255 ImageNet
   mean/std, output ``mask`` [N,1,S,S] logits), torch-vs-ONNX agreement check;
6. unless ``--no-cross-site``: the same recipe trained WITHOUT CVC-ClinicDB (Kvasir-SEG + polyp-free
   crops only), scored on every CVC-ClinicDB frame: the external, other-centre figure of the card;
7. :func:`inference.endo.polyp_eval.evaluate_and_card`: the held-out test split, scored once with the
   exported ONNX file through the class the app uses; every look at the test split is logged.

Writes ``<name>.onnx``, ``<name>.json`` and ``<name>.md`` in ``--out``; checkpoints, view caches and the
cross-site model stay under the cache folder. ``--jsonl`` prints one JSON event per line.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..training import cache_dir as _cache_dir, event_printer, print_fields, seed_everything
from .polyp_data import (DUP_THRESHOLDS, PolypDataError, build_cache, cvc_video_groups, near_duplicate_groups,
                         scan, split_groups)
from .polyp_views import ViewCache, resize_all, to_input, view_folder, view_rows

NAME = "polyp_unet"
ONNX_META_KEY = "lightbox.polyp"
ALL_SOURCES = ("kvasir", "cvc", "normal")


def cache_dir() -> Path:
    return _cache_dir("LIGHTBOX_POLYP_CACHE", "lightbox-polyp-cache")


def load_data(cache_file: Path, seed: int, dup_thresholds: dict[str, float] | None = None,
              emit: Callable[[dict], None] = lambda e: None, split_from: Path | None = None) -> dict:
    """The cached frames with their groups and split (see the module docstring, step 2).

    ``split_from``: another frame cache of the same frames (at another size) whose groups and split are
    taken as they are. Grouping reads the cached pixels, so a cache at another size can link a borderline
    near-duplicate pair differently and the seeded split then moves frames between parts; a network
    trained at another size must keep the split its predecessors were tested on."""
    from .polyp_views import embeddings

    z = np.load(cache_file)
    d = {k: z[k] for k in z.files}
    d["cache_file"] = str(cache_file)
    if split_from is not None:
        ref = load_data(Path(split_from), seed, dup_thresholds, emit)
        if not (np.array_equal(ref["source"], d["source"]) and np.array_equal(ref["ids"], d["ids"])):
            raise PolypDataError(f"{Path(split_from).name} does not hold the frames of {Path(cache_file).name} "
                                 "in the same order: its split cannot be taken")
        d["group"], d["split"] = ref["group"], ref["split"]
        d["grouping"] = {**ref["grouping"], "split_from": Path(split_from).name}
        return d
    g, cvc_rows = cvc_video_groups(d["images"], d["source"], d["ids"], d["group"])
    thr = dict(DUP_THRESHOLDS if dup_thresholds is None else dup_thresholds)
    rows = np.flatnonzero(np.isin(d["source"], list(thr)))
    emb = np.zeros((len(d["source"]), 1280), np.float32)
    emb[rows] = embeddings(d["images"][rows], Path(cache_file).with_suffix(".emb.npy"), emit=emit)
    g, linked = near_duplicate_groups(g, d["source"], emb, thr)
    d["group"] = g
    d["split"] = split_groups(g, d["source"], seed)
    d["grouping"] = {"cvc_adjacent_pairs": cvc_rows, "dup_thresholds": thr, "dup_pairs_linked": linked,
                     "groups": {s: int(len(set(g[d["source"] == s]))) for s in ALL_SOURCES}}
    return d


# -- loss / metrics on the cached views ------------------------------------------------------------------
def seg_loss(logits, target):
    """BCE over all pixels + soft Dice on frames with a polyp (the BCE keeps polyp-free frames quiet)."""
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    den = (p + target).sum((1, 2, 3))
    has = (target.sum((1, 2, 3)) > 0).float()
    dice = ((1 - (2 * inter + 1) / (den + 1)) * has).sum() / has.sum().clamp(min=1)
    return bce + dice


def _largest_region(p: np.ndarray, thr: float = 0.5) -> float:
    import cv2

    n, _, stats, _ = cv2.connectedComponentsWithStats((p >= thr).astype(np.uint8), connectivity=8)
    return float(stats[1:, cv2.CC_STAT_AREA].max() / p.size) if n > 1 else 0.0


def _dice(p: np.ndarray, t: np.ndarray) -> float:
    s = p.sum() + t.sum()
    return 1.0 if s == 0 else float(2 * (p & t).sum() / s)


def val_metrics(p: np.ndarray, src: np.ndarray, true: np.ndarray, sources) -> dict:
    """The early-stop score of a validation pass: probability maps p [N,S,S], their sources and true masks.
    Dice at 0.5 per frame with a polyp (mean, overall and per source); the share of polyp-free frames with
    a region of >= 0.2 % of the frame; score = Dice - 0.1 x that rate."""
    out: dict = {}
    dices = {s: [] for s in sources if s != "normal"}
    fp = []
    for k in range(len(p)):
        if src[k] == "normal":
            fp.append(_largest_region(p[k]) >= 0.002)
        else:
            dices[src[k]].append(_dice(p[k] >= 0.5, true[k]))
    alld = [d for v in dices.values() for d in v]
    out["dice"] = float(np.mean(alld)) if alld else 0.0
    for s, v in dices.items():
        if v:
            out[f"dice_{s}"] = float(np.mean(v))
    out["neg_fp_rate"] = float(np.mean(fp)) if fp else 0.0
    out["score"] = out["dice"] - 0.1 * out["neg_fp_rate"]
    return out


# -- training ----------------------------------------------------------------------------------------------
def train(data: dict, out_dir: str | Path | None, name: str = NAME, *, sources=ALL_SOURCES, size: int = 224,
          seed: int = 2020, epochs: int = 20, patience: int = 6, batch: int = 16, lr: float = 1e-3,
          encoder_lr_scale: float = 0.3, threads: int = 1, views: int = 6, neg_views: int = 2,
          negatives_per_epoch: int = 250, warmup_epochs: int = 1, max_minutes: float = 0.0,
          pretrained: bool = True, init_state: str | Path | None = None, previous_log: str | Path | None = None,
          emit: Callable[[dict], None] | None = None) -> dict:
    """Train on data['split'] == 'train' frames of ``sources``, early-stop on their validation frames,
    export ONNX (to ``out_dir``, or the cache folder when None). Returns a JSON-able summary.

    ``init_state``: start from this state dict (plain tensors, e.g. a run's ``-best.pt`` checkpoint); several,
    comma-separated, with ``epochs=0``: their networks read as one (:class:`~.polyp_net.MeanUNet`, the mean of
    their probability maps; the gate reads the first one's features).
    With ``epochs=0`` that finalises a run that was stopped before its end (its best checkpoint is
    validated once more, exported and checked); ``previous_log`` (that run's ``event=epoch`` log) then
    supplies its training history for the card."""
    import torch

    from ..training import agreement_check, export_onnx, fit
    from .polyp_net import FROZEN_UPTO, LiteUNet, MeanUNet, n_params

    emit = emit or (lambda e: None)
    t_start = time.time()
    rng = seed_everything(seed, threads)
    split, source = data["split"], data["source"]
    use = np.isin(source, list(sources))
    emit({"event": "split", "sources": list(sources),
          **{s: {src: int(((split == s) & (source == src)).sum()) for src in sorted(set(source))}
             for s in ("train", "val", "test")}})
    members = [p for p in str(init_state).split(",") if p] if init_state else []
    if len(members) > 1:  # several finished checkpoints read as one (MeanUNet): finalised only, never trained
        if epochs:
            raise PolypDataError("several --init checkpoints are averaged as they are: use --epochs 0")
        net = MeanUNet([LiteUNet.from_state(torch.load(p, weights_only=True), size) for p in members])
    else:
        if init_state:  # the checkpoint's own encoder (Lite0 or Lite2)
            net = LiteUNet.from_state(torch.load(str(init_state), weights_only=True), size)
        else:
            net = LiteUNet(size, pretrained=pretrained)
        if epochs and net.encoder_name != "lite0":
            raise PolypDataError("the 2-core recipe's cached views are Lite0's: train other encoders with polyp_online")
        net.freeze_encoder()  # its encoder's stride-8 stage (Lite0: FROZEN_UPTO, what the cached views assume)

    folder = None
    if epochs:
        # offline augmentation through the frozen encoder (shared by every run on this split)
        rows = view_rows(split, source, views, neg_views)
        folder = view_folder(cache_dir(), Path(data["cache_file"]), rows, size, FROZEN_UPTO, seed)
        vc = ViewCache.build(net, data["images"], data["masks"], rows, size, seed, folder, emit=emit)
        item = vc.rows[:, 0]
        on = use[item]
        tr_pos = np.flatnonzero(on & (split[item] == "train") & (source[item] != "normal"))
        tr_neg = np.flatnonzero(on & (split[item] == "train") & (source[item] == "normal"))
        va = np.flatnonzero(on & (split[item] == "val"))
        if len(tr_pos) < 2 or not len(va):
            raise PolypDataError("too few frames with polyps to train and validate")
        pos_items = np.unique(item[tr_pos])
        by_item = {i: tr_pos[item[tr_pos] == i] for i in pos_items}

        def batches(epoch: int):
            chosen = np.array([rng.choice(by_item[i]) for i in pos_items])
            neg = rng.choice(tr_neg, min(negatives_per_epoch, len(tr_neg)), replace=False) if len(tr_neg) else tr_neg
            order = rng.permutation(np.concatenate([chosen, neg]))
            for s in range(0, len(order), batch):
                b = order[s:s + batch]
                if len(b) >= 2:
                    yield vc.batch(b)

        def step(net, b):
            feats, m = b
            return seg_loss(net.tail(*feats), m)

        va_sorted = np.sort(va)
        va_src = source[item[va_sorted]]
        va_true = np.asarray(vc.mask[va_sorted]) > 127

        def validate(net):
            probs = []
            for s in range(0, len(va_sorted), 32):
                feats, _ = vc.batch(va_sorted[s:s + 32])
                probs.append(torch.sigmoid(net.tail(*feats))[:, 0].numpy())
            return val_metrics(np.concatenate(probs), va_src, va_true, sources)

    else:
        # finalising a checkpoint: validate the whole network on the plain frames (its frozen part may have been
        # trained too, e.g. by polyp_online, so cached frozen features would not be its own)
        va_items = np.flatnonzero(use & (split == "val"))
        if not len(va_items):
            raise PolypDataError("no validation frames")
        va_x = to_input(resize_all(data["images"][va_items], size))
        va_src = source[va_items]
        va_true = resize_all(data["masks"][va_items], size) > 127

        def batches(epoch: int):
            return iter(())

        def step(net, b):
            raise AssertionError("no training when finalising")

        def validate(net):
            probs = [torch.sigmoid(net(torch.from_numpy(va_x[s:s + 32])))[:, 0].numpy() for s in range(0, len(va_x), 32)]
            return val_metrics(np.concatenate(probs), va_src, va_true, sources)

    enc_params = [p for m in getattr(net, "blocks", [])[getattr(net, "frozen_upto", FROZEN_UPTO) + 1:] for p in m.parameters()]
    enc_ids = {id(p) for p in enc_params}
    dec_params = [p for p in net.parameters() if p.requires_grad and id(p) not in enc_ids]
    ckpt = cache_dir() / f"{name}-seed{seed}-best.pt"
    res = fit(net, batches, step, validate, epochs=epochs, patience=patience, lr=lr, warmup_epochs=warmup_epochs,
              params=[{"params": enc_params, "lr_scale": encoder_lr_scale}, {"params": dec_params, "lr_scale": 1.0}],
              time_budget_s=60 * max_minutes if max_minutes else None, emit=emit,
              checkpoint=ckpt if epochs else None)
    training = res.as_dict()
    views_seconds = None
    if not epochs:  # finalising a checkpoint: validate it once more, take the history from its log
        net.eval()
        with torch.no_grad():
            val_now = validate(net)
        emit({"event": "finalise", "init": str(init_state), **{f"val_{k}": v for k, v in val_now.items()}})
        training = finalised_training(previous_log, init_state, val_now)
        views_seconds = training.pop("views_seconds", None)

    # export the whole network (frozen part included) and check ONNX against torch on validation frames
    out_dir = Path(out_dir) if out_dir is not None else cache_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{name}.onnx"
    meta = {"name": name, "input": {"name": "image", "layout": "NCHW", "size": size, "colour": "RGB",
                                    "scale": "1/255", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                    "resize": "whole frame to size x size, area interpolation, aspect ignored"},
            "output": {"name": "mask", "meaning": "polyp logits per pixel (sigmoid -> probability)"},
            "sources": list(sources)}
    # the feature gate: fitted on the training frames, its limit on the validation frames (polyp_gate)
    from .polyp_gate import fit_gate
    from .polyp_net import GatedUNet

    net.eval()
    gate = fit_gate(net, data, use, size, emit=emit)
    meta["output"]["features"] = f"pooled stride-32 bottleneck features [N, {gate['facts']['channels']}]"
    encoders = [n.encoder_name for n in (net.members if isinstance(net, MeanUNet) else [net])]
    meta["encoders"] = encoders
    meta["output"]["ood"] = "[N, 1] whitened distance of the features from the training frames'; > domain_gate.limit: out of domain"
    meta["domain_gate"] = gate["facts"]
    exported = GatedUNet(net, gate["mu"], gate["proj"]).eval()
    facts = export_onnx(exported, torch.zeros(1, 3, size, size), onnx_path, input_names=["image"],
                        output_names=["mask", "features", "ood"], meta_key=ONNX_META_KEY, meta=meta,
                        producer="lightbox polyp-train")
    vi = np.flatnonzero(use & (split == "val"))[:8]
    chk = to_input(resize_all(data["images"][vi], size))
    ag = agreement_check(exported, onnx_path, {"image": chk}, tol=1e-3, threads=threads, rtol={"ood": 1e-3})
    from ..training import onnx_session

    ol = onnx_session(onnx_path, threads).run(None, {"image": chk})[0]
    with torch.no_grad():
        tl = net(torch.from_numpy(chk)).numpy()
    ag["mask_pixels_disagreeing"] = float(((tl >= 0) != (ol >= 0)).mean())
    emit({"event": "exported", "onnx": str(onnx_path), "agreement": ag})
    summary = {"onnx": str(onnx_path), "checkpoint": str(init_state if not epochs else ckpt), **facts, "agreement": ag,
               "domain_gate": gate["facts"],
               "training": training, "views_folder": folder and str(folder),
               "settings": {"sources": list(sources), "size": size, "seed": seed, "epochs": epochs,
                            "patience": patience, "batch": batch, "lr": lr, "encoder_lr_scale": encoder_lr_scale,
                            "threads": threads, "views": views, "neg_views": neg_views,
                            "negatives_per_epoch": negatives_per_epoch, "warmup_epochs": warmup_epochs,
                            "max_minutes": max_minutes, "frozen_upto_block": FROZEN_UPTO,
                            "encoders": encoders,
                            "params": n_params(net), "trainable_params": int(sum(p.numel() for p in enc_params + dec_params)),
                            "seconds": round(time.time() - t_start, 1) if epochs else
                            round((views_seconds or 0) + sum(r.get("seconds", 0) for r in training["history"]), 1)}}
    (cache_dir() / f"{name}-seed{seed}-train.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


def read_log(path: str | Path) -> list[dict]:
    """The events a training command printed -> dicts: ``event=... key=value`` lines (without --jsonl) or
    JSON lines (with it)."""
    import ast

    out = []
    for line in Path(path).read_text().splitlines():
        if line.startswith("{"):
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and "event" in row:
                out.append(row)
            continue
        if not line.startswith("event="):
            continue
        row = {}
        for k, v in re.findall(r"(\w+)=(\S+)", line):
            try:
                row[k] = ast.literal_eval(v)
            except (ValueError, SyntaxError):
                row[k] = v
        out.append(row)
    return out


def finalised_training(previous_log, init_state, val_now: dict) -> dict:
    """The ``training`` facts of a run finalised from its best checkpoint: history from its log (when
    given), the best epoch = the last one marked best (the checkpoint fit() saved), the score re-measured."""
    rows = read_log(previous_log) if previous_log else []
    hist = [{k: v for k, v in r.items() if k != "event"} for r in rows if r.get("event") == "epoch"]
    views = [r for r in rows if r.get("event") == "views"]
    recipe = [{k: v for k, v in r.items() if k != "event"} for r in rows if r.get("event") == "recipe"]
    best = [h["epoch"] for h in hist if h.get("best") is True]
    n = len(hist)
    members = [m for m in str(init_state).split(",") if m]
    if len(members) > 1:
        return {"epochs_run": 0, "best_epoch": -1, "best_val": float(val_now["score"]),
                "stopped": f"no training: {len(members)} finished networks averaged (MeanUNet), finalised with --epochs 0",
                "seconds": 0.0, "history": [], "members": members, "finalised_from": str(init_state),
                "validation_on_finalise": val_now}
    finished = any(r.get("event") == "done" for r in rows)  # the run ended by itself (schedule, patience, time cap)
    return {"epochs_run": n, "best_epoch": int(best[-1]) if best else -1, "best_val": float(val_now["score"]),
            "stopped": ((f"ran to its end ({n} epochs); its best checkpoint {Path(str(init_state)).name} finalised "
                         "with --epochs 0") if finished else
                        (f"stopped from outside after {n} epochs (session end); finalised from its best checkpoint "
                         f"{Path(str(init_state)).name} with --epochs 0")),
            "finished": finished,
            "seconds": round(sum(h.get("seconds", 0) for h in hist), 1), "history": hist,
            "finalised_from": str(init_state), "validation_on_finalise": val_now,
            "views_seconds": float(views[-1]["seconds"]) if views else None,
            **({"recipe": recipe[-1]} if recipe else {})}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lightbox polyp-train", description=__doc__.split("\n")[0])
    ap.add_argument("data_dir", help="folder with Kvasir-SEG/, CVC-ClinicDB/, Children_NoPolip/")
    ap.add_argument("--out", required=True, help="output folder for the .onnx/.json/.md")
    ap.add_argument("--name", default=NAME)
    ap.add_argument("--size", type=int, default=224, help="model input size (px, multiple of 32)")
    ap.add_argument("--cache-size", type=int, default=288, help="size frames are cached at (px)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--encoder-lr-scale", type=float, default=0.3, help="encoder blocks learn at lr x this")
    ap.add_argument("--views", type=int, default=6, help="augmented views per training frame with a polyp")
    ap.add_argument("--neg-views", type=int, default=2, help="augmented views per polyp-free training crop")
    ap.add_argument("--negatives-per-epoch", type=int, default=250)
    ap.add_argument("--dup-threshold", type=str, nargs=2, action="append", metavar=("SOURCE", "COS"), default=None,
                    help="embedding cosine similarity at which two frames of SOURCE (kvasir, normal) are "
                         f"near-duplicates (default {DUP_THRESHOLDS})")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--split-from", default=None, metavar="CACHE.npz",
                    help="take groups and split from this frame cache (the same frames cached at another size)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop each training after this long (0 = no limit)")
    ap.add_argument("--no-cross-site", action="store_true",
                    help="skip the second training without CVC-ClinicDB (the card then has no cross-site figure)")
    ap.add_argument("--stage", choices=("all", "main", "cross-site", "evaluate", "gate", "tta", "bundle"), default="all",
                    help="run one stage only (the others are read from the cache folder); 'gate': add the feature "
                         "gate's figures to the existing card in --out without rescoring the test split's Dice or "
                         "detection (after a re-export with --stage main/cross-site --epochs 0 --init CKPT); 'tta': choose "
                         "the still-image test-time augmentation on validation and score it once on the test split "
                         "(inference.endo.polyp_tta); 'bundle': write the train + validation frames and the ImageNet "
                         "start to --out for training on an accelerator (inference.endo.polyp_online)")
    ap.add_argument("--previous-onnx", default=None, help="with --stage gate: the file the re-export replaces "
                                                             "(its mask output is compared with the new one's)")
    ap.add_argument("--evaluate-only", action="store_true", help="same as --stage evaluate (a logged look at the test split)")
    ap.add_argument("--demo-video", default="", help="a polyp-free video to measure the false finding rate on")
    ap.add_argument("--init", default=None, metavar="CKPT",
                    help="start the main run from this state dict; with --epochs 0: finalise that checkpoint (validate, "
                         "export, agreement check, evaluation) without training")
    ap.add_argument("--init-log", default=None, metavar="LOG", help="the log of the run --init comes from (its history)")
    ap.add_argument("--cross-init", default=None, metavar="CKPT", help="the same for the cross-site run")
    ap.add_argument("--cross-init-log", default=None, metavar="LOG")
    ap.add_argument("--jsonl", action="store_true", help="one JSON event per line")
    a = ap.parse_args(argv)
    if a.evaluate_only:
        a.stage = "evaluate"

    emit = event_printer(a.jsonl, print_fields)
    kw = dict(size=a.size, seed=a.seed, epochs=a.epochs, patience=a.patience, batch=a.batch, lr=a.lr,
              encoder_lr_scale=a.encoder_lr_scale, threads=a.threads, views=a.views, neg_views=a.neg_views,
              negatives_per_epoch=a.negatives_per_epoch, max_minutes=a.max_minutes, emit=emit)
    xname = f"{a.name}_without_cvc"
    try:
        items, notes = scan(a.data_dir)
        for n in notes:
            emit({"event": "note", "note": n})
        cpath = build_cache(items, a.cache_size, cache_dir(), emit)
        thr = dict(DUP_THRESHOLDS)
        for src, v in a.dup_threshold or []:
            thr[str(src)] = float(v)
        data = load_data(cpath, a.seed, thr, emit, split_from=a.split_from)
        emit({"event": "grouping", **{k: v for k, v in data["grouping"].items() if k != "cvc_adjacent_pairs"}})

        def done(nm: str) -> dict:
            p = cache_dir() / f"{nm}-seed{a.seed}-train.json"
            if not p.exists():
                raise PolypDataError(f"no finished training run at {p} (run --stage main / cross-site first)")
            return json.loads(p.read_text())

        if a.stage == "bundle":
            from .polyp_online import write_bundle

            write_bundle(data, a.out, a.size, a.seed, emit=emit)
            return 0
        if a.stage == "tta":
            from .polyp_tta import stage_tta

            meta = stage_tta(data, a.out, a.name, emit=emit)
            emit({"event": "done", "tta": meta["metrics"]["stills_tta"]["choice"]["chosen"]})
            return 0
        if a.stage == "gate":
            from .polyp_gate import card_update

            meta = card_update(data, done(a.name), None if a.no_cross_site else done(xname), a.out, a.name,
                               previous_onnx=a.previous_onnx, emit=emit, argv=list(argv or sys.argv[1:]))
            emit({"event": "done", "onnx": str(Path(a.out) / f"{a.name}.onnx"), "sha256": meta["onnx_sha256"]})
            return 0
        res = (train(data, a.out, a.name, init_state=a.init, previous_log=a.init_log, **kw)
               if a.stage in ("all", "main") else None)
        xres = None
        if not a.no_cross_site and a.stage in ("all", "cross-site"):
            xres = train(data, None, xname, sources=("kvasir", "normal"), init_state=a.cross_init,
                         previous_log=a.cross_init_log, **kw)
        if a.stage == "main" or a.stage == "cross-site":
            return 0
        res = res or done(a.name)
        if not a.no_cross_site:
            xres = xres or done(xname)
        from .polyp_eval import evaluate_and_card

        meta = evaluate_and_card(data, res, a.out, a.name, notes=notes, cross_site=xres,
                                 demo_video=a.demo_video or None, emit=emit, argv=list(argv or sys.argv[1:]))
    except PolypDataError as e:
        print(f"polyp-train: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("polyp-train: stopped", file=sys.stderr)
        return 130
    emit({"event": "done", "onnx": meta["onnx"], "sha256": meta["onnx_sha256"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

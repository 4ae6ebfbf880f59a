"""``lightbox polyp-train``: train the Lightbox polyp segmenter on colonoscopy frames, export it to ONNX.

    lightbox polyp-train /work/data/polyp/datasets --out resources/models     # the shipped model
    lightbox polyp-train DATA_DIR --out /tmp/run --epochs 5                   # a quick run

Data: see :mod:`inference.endo.polyp_data` (Kvasir-SEG, CVC-ClinicDB, Children_NoPolip; what is left out
and why). Every frame is decoded once and cached, resized to ``--cache-size`` px, as uint8 .npz under
``$LIGHTBOX_POLYP_CACHE`` (default: the temp folder). Split: Kvasir by image (near-duplicates grouped),
CVC by video sequence, the polyp-free crops by blocks of 50 numbers; train / validation (early stopping
on validation Dice) / test (held out, evaluated once, with the exported ONNX file, at the end).
Fixed seed and one thread: the command reproduces the shipped model on the same torch build.

Writes ``<name>.onnx`` (contract of ``[models.endo-polyp]``: input ``image`` [N,3,S,S], output ``mask``
[N,1,S,S] logits), ``<name>.json`` (split, history, metrics) and ``<name>.md`` (model card). The best
checkpoint (.pt) is kept under the cache folder, never beside the ONNX file. ``--jsonl`` prints one
JSON event per line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..metrics import dice_iou
from ..training import cache_dir as _cache_dir, event_printer, onnx_session, print_fields, seed_everything
from .polyp_data import PolypDataError, build_cache, merge_near_duplicates, scan, split_groups

NAME = "polyp_unet"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def cache_dir() -> Path:
    return _cache_dir("LIGHTBOX_POLYP_CACHE", "lightbox-polyp-cache")


def load_cache(path: Path, seed: int) -> dict:
    z = np.load(path)
    d = {k: z[k] for k in z.files}
    d["group"] = merge_near_duplicates(d["group"], d["thumbs"], d["source"])
    d["split"] = split_groups(d["group"], d["source"], seed)
    return d


# -- augmentation ----------------------------------------------------------------------------------
def augment(img: np.ndarray, msk: np.ndarray, size: int, rng: np.random.RandomState):
    """Random resized crop (area 55-100 %, aspect 3/4-4/3), flips, 90-degree turns, small rotation,
    brightness / contrast / saturation / hue-ish channel gains, blur. uint8 in, uint8 out at size."""
    import cv2

    H, W = msk.shape
    area = rng.uniform(0.55, 1.0) * H * W
    ar = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(min(H, round(np.sqrt(area / ar))))
    cw = int(min(W, round(np.sqrt(area * ar))))
    y0, x0 = rng.randint(0, H - ch + 1), rng.randint(0, W - cw + 1)
    img = img[y0:y0 + ch, x0:x0 + cw]
    msk = msk[y0:y0 + ch, x0:x0 + cw]
    if rng.rand() < 0.4:
        M = cv2.getRotationMatrix2D((cw / 2, ch / 2), rng.uniform(-25, 25), rng.uniform(1.0, 1.15))
        img = cv2.warpAffine(img, M, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        msk = cv2.warpAffine(msk, M, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    msk = cv2.resize(msk, (size, size), interpolation=cv2.INTER_AREA)
    if rng.rand() < 0.5:
        img, msk = img[:, ::-1], msk[:, ::-1]
    if rng.rand() < 0.5:
        img, msk = img[::-1], msk[::-1]
    k = rng.randint(4)
    img, msk = np.rot90(img, k), np.rot90(msk, k)
    x = img.astype(np.float32)
    x = x * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20)                 # contrast, brightness
    x = x * rng.uniform(0.9, 1.1, size=3)                                   # colour balance
    g = x.mean(axis=2, keepdims=True)
    x = g + (x - g) * rng.uniform(0.7, 1.3)                                 # saturation
    if rng.rand() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.5))
    return np.clip(x, 0, 255).astype(np.uint8), np.ascontiguousarray(msk)


def to_input(imgs: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W,3] RGB -> float32 [N,3,H,W] normalised."""
    x = imgs.astype(np.float32) / 255.0
    return np.ascontiguousarray(((x - MEAN) / STD).transpose(0, 3, 1, 2))


def resize_all(imgs: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if imgs.shape[1] == size:
        return imgs
    return np.stack([cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA) for a in imgs])


# -- training --------------------------------------------------------------------------------------
def train(data: dict, out_dir: str | Path, name: str = NAME, *, size: int = 160, seed: int = 2020,
          epochs: int = 24, patience: int = 24, batch: int = 16, lr: float = 3e-3, threads: int = 1,
          negatives_per_epoch: int = 200, max_minutes: float = 0.0, widths=(16, 32, 64, 128),
          emit: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None) -> dict:
    """Train on data['split'] == 'train', early-stop on validation Dice, export ONNX. Returns a dict
    with the ONNX path, the checkpoint path, the history and the training settings."""
    import torch
    import torch.nn.functional as F

    from .polyp_net import PolypUNet, export_onnx

    emit = emit or (lambda e: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = seed_everything(seed, threads)
    t_start = time.time()
    split, source = data["split"], data["source"]
    pos_tr = np.flatnonzero((split == "train") & (source != "normal"))
    neg_tr = np.flatnonzero((split == "train") & (source == "normal"))
    va = np.flatnonzero(split == "val")
    if len(pos_tr) < 2 or len(va) < 1:
        raise PolypDataError("too few frames with polyps to train and validate")
    emit({"event": "split", **{s: {src: int(((split == s) & (source == src)).sum()) for src in sorted(set(source))}
                               for s in ("train", "val", "test")}})
    imgs, masks = data["images"], data["masks"]
    va_x = to_input(resize_all(imgs[va], size))
    va_m = resize_all(masks[va], size) > 127

    net = PolypUNet(tuple(widths))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = int(np.ceil((len(pos_tr) + min(negatives_per_epoch, len(neg_tr))) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.1)

    def predict(x: np.ndarray) -> np.ndarray:
        net.eval()
        with torch.inference_mode():
            return np.concatenate([torch.sigmoid(net(torch.from_numpy(x[s:s + 32]))).numpy()[:, 0]
                                   for s in range(0, len(x), 32)])

    ckpt = cache_dir() / f"{name}-seed{seed}-best.pt"
    best, best_epoch, stale, history, stopped = -1.0, 0, 0, [], "max epochs"
    for ep in range(1, epochs + 1):
        t0 = time.time()
        neg = rng.choice(neg_tr, min(negatives_per_epoch, len(neg_tr)), replace=False) if len(neg_tr) else neg_tr
        order = rng.permutation(np.concatenate([pos_tr, neg]))
        net.train()
        tot, nb = 0.0, 0
        for s in range(0, len(order), batch):
            b = order[s:s + batch]
            if len(b) < 2:
                continue
            pairs = [augment(imgs[i], masks[i], size, rng) for i in b]
            xb = torch.from_numpy(to_input(np.stack([p[0] for p in pairs])))
            yb = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.float32)[:, None] / 255.0)
            logits = net(xb)
            bce = F.binary_cross_entropy_with_logits(logits, yb)
            p = torch.sigmoid(logits)
            inter = (p * yb).sum((1, 2, 3))
            den = (p + yb).sum((1, 2, 3))
            has = (yb.sum((1, 2, 3)) > 0).float()  # soft Dice on frames with a polyp; BCE keeps the rest quiet
            dice = ((1 - (2 * inter + 1) / (den + 1)) * has).sum() / has.sum().clamp(min=1)
            loss = bce + dice
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched.last_epoch + 1 < sched.total_steps:
                sched.step()
            tot += float(loss.detach()) * len(b)
            nb += len(b)
            if should_stop and should_stop():
                raise KeyboardInterrupt("stopped")
        pv = predict(va_x)
        dices = []
        fp_frames = 0
        for k, i in enumerate(va):
            pm = pv[k] >= 0.5
            if source[i] == "normal":
                fp_frames += int(pm.mean() > 0.002)
            else:
                dices.append(dice_iou(pm, va_m[k])[0])
        vd = float(np.mean(dices)) if dices else 0.0
        n_neg = int((source[va] == "normal").sum())
        row = {"event": "epoch", "epoch": ep, "train_loss": round(tot / max(nb, 1), 4), "val_dice": round(vd, 4),
               "val_neg_fp_rate": round(fp_frames / n_neg, 4) if n_neg else None,
               "lr": round(opt.param_groups[0]["lr"], 6), "seconds": round(time.time() - t0, 1),
               "frames_per_s": round(nb / max(time.time() - t0, 1e-6), 1)}
        score = vd - 0.1 * (row["val_neg_fp_rate"] or 0.0)
        if score > best:
            best, best_epoch, stale = score, ep, 0
            torch.save(net.state_dict(), ckpt)
        else:
            stale += 1
        row["best_epoch"] = best_epoch
        history.append(row)
        emit(row)
        if stale >= patience:
            stopped = f"early stop: no validation improvement for {patience} epochs"
            break
        if max_minutes and time.time() - t_start > 60 * max_minutes:
            stopped = f"time limit of {max_minutes:g} min"
            break
    net.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    net.eval()
    onnx_path = export_onnx(net, out_dir / f"{name}.onnx", size)
    # torch vs ONNX on validation frames
    sess = onnx_session(onnx_path, threads)
    chk = va_x[:8]
    with torch.inference_mode():
        tl = net(torch.from_numpy(chk)).numpy()
    ol = sess.run(None, {"image": chk})[0]
    sig = lambda a: 1 / (1 + np.exp(-a))
    agreement = {"frames": int(len(chk)), "max_abs_diff_logit": float(np.abs(tl - ol).max()),
                 "max_abs_diff_prob": float(np.abs(sig(tl) - sig(ol)).max()),
                 "mask_pixels_disagreeing": float(((sig(tl) >= 0.5) != (sig(ol) >= 0.5)).mean())}
    emit({"event": "exported", "onnx": str(onnx_path), "agreement": agreement})
    res = {"onnx": str(onnx_path), "checkpoint": str(ckpt), "history": history, "best_epoch": best_epoch,
            "stopped": stopped, "agreement": agreement,
            "settings": {"size": size, "seed": seed, "epochs": epochs, "patience": patience, "batch": batch,
                         "lr": lr, "threads": threads, "negatives_per_epoch": negatives_per_epoch,
                         "widths": list(widths), "max_minutes": max_minutes,
                         "params": int(sum(p.numel() for p in net.parameters())),
                         "seconds": round(time.time() - t_start, 1)}}
    (cache_dir() / f"{name}-seed{seed}-train.json").write_text(json.dumps(res, indent=1))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lightbox polyp-train", description=__doc__.split("\n")[0])
    ap.add_argument("data_dir", help="folder with Kvasir-SEG/, CVC-ClinicDB/, Children_NoPolip/")
    ap.add_argument("--out", required=True, help="output folder for the .onnx/.json/.md")
    ap.add_argument("--name", default=NAME)
    ap.add_argument("--size", type=int, default=160, help="model input size (px)")
    ap.add_argument("--cache-size", type=int, default=192, help="size frames are cached at (px)")
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--patience", type=int, default=24)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop training after this long (0 = no limit)")
    ap.add_argument("--demo-video", default="", help="a polyp-free video to measure the false finding rate on")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="re-run the held-out evaluation and the model card of the last finished run")
    ap.add_argument("--jsonl", action="store_true", help="one JSON event per line")
    a = ap.parse_args(argv)

    emit = event_printer(a.jsonl, print_fields)

    try:
        items, notes = scan(a.data_dir)
        for n in notes:
            emit({"event": "note", "note": n})
        cpath = build_cache(items, a.cache_size, cache_dir(), emit)
        data = load_cache(cpath, a.seed)
        done = cache_dir() / f"{a.name}-seed{a.seed}-train.json"
        if a.evaluate_only:
            if not done.exists():
                raise PolypDataError(f"--evaluate-only: no finished training run at {done}")
            res = json.loads(done.read_text())
        else:
            res = train(data, a.out, a.name, size=a.size, seed=a.seed, epochs=a.epochs, patience=a.patience,
                        batch=a.batch, lr=a.lr, threads=a.threads, max_minutes=a.max_minutes, emit=emit)
        from .polyp_eval import evaluate_and_card

        meta = evaluate_and_card(data, res, a.out, a.name, notes=notes, demo_video=a.demo_video or None,
                                 emit=emit)
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

"""Training the polyp segmenter on an accelerator (torch; training only): every layer learns, and each
epoch draws fresh augmented views on the device.

The 2-core recipe (:func:`inference.endo.polyp_train.train`) freezes the stem and blocks 0..4 and reuses a
fixed set of augmented views whose frozen features were computed once (:mod:`polyp_views`). On a GPU
neither shortcut is needed. Here, the whole U-Net trains from the same ImageNet start on the same
train/validation split, and each epoch each training frame gets a new view. The views are drawn on the
device: a random resized crop, turn, 90-degree turn, flip, brightness, contrast, colour-balance,
saturation and gamma jitter, and blur. The loss, sampling, validation score and early stop are
:func:`polyp_train.train`'s, through the one loop :func:`inference.training.fit`.

Workflow (the test split never leaves this machine):

    lightbox polyp-train DATA --out BUNDLE_DIR --size 288 --stage bundle    # here: train+val frames
    python -m inference.endo.polyp_online BUNDLE_DIR --out RUN --device cuda --minutes 6
    lightbox polyp-train DATA --out resources/models --size 288 --stage main --epochs 0 \\
        --init RUN/polyp_unet-online-best.pt --init-log RUN/polyp_unet.log          # here: finalise

The bundle (:func:`write_bundle`) contains:
- the training and validation frames of the cache, as WebP (quality 85) so that it travels;
- their masks as PNG;
- source and split;
- the ImageNet start (:class:`~inference.endo.polyp_net.LiteUNet` with the Lite0 checkpoint, decoder
  seeded).

The finalise step validates the returned checkpoint again on the exact cached frames, exports it, fits
the gate and checks the agreement: what ships is measured here, not on the device.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

BUNDLE = "polyp-bundle.npz"
INIT = "polyp-init.pt"
WEBP_QUALITY = 85


# -- the bundle ----------------------------------------------------------------------------------------
def _pack(arrays: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    off = np.cumsum([0] + [len(a) for a in arrays]).astype(np.int64)
    return np.frombuffer(b"".join(arrays), np.uint8), off


def _unpack(blob: np.ndarray, off: np.ndarray, i: int) -> np.ndarray:
    return blob[off[i]:off[i + 1]]


def imagenet_start(size: int, seed: int, encoder: str = "lite0"):
    """The U-Net at its ImageNet start (Lite0 or Lite2 encoder weights, decoder drawn with ``seed``): what a
    bundle carries as its INIT, and what a run on the frame cache starts from."""
    from ..training import seed_everything
    from .polyp_net import LiteUNet

    seed_everything(seed, 1)
    return LiteUNet(size, pretrained=True, encoder=encoder)


def write_bundle(data: dict, out_dir: str | Path, size: int, seed: int,
                 emit: Callable[[dict], None] = lambda e: None) -> Path:
    """The train + validation frames of ``data`` (``load_data``'s dict) and the ImageNet start -> out_dir."""
    import cv2
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    keep = np.flatnonzero(data["split"] != "test")
    ims, mks = [], []
    for i in keep:
        ok, b = cv2.imencode(".webp", cv2.cvtColor(data["images"][i], cv2.COLOR_RGB2BGR),
                             [cv2.IMWRITE_WEBP_QUALITY, WEBP_QUALITY])
        ok2, m = cv2.imencode(".png", data["masks"][i])
        if not (ok and ok2):
            raise RuntimeError(f"could not encode frame {i}")
        ims.append(b.tobytes())
        mks.append(m.tobytes())
    ib, io = _pack(ims)
    mb, mo = _pack(mks)
    np.savez(out / BUNDLE, images=ib, images_off=io, masks=mb, masks_off=mo, source=data["source"][keep],
             split=data["split"][keep], item=keep, cache_file=str(Path(data["cache_file"]).name),
             cache_size=int(data["images"].shape[1]), size=size, seed=seed)
    net = imagenet_start(size, seed)
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, str(out / INIT))
    facts = {"event": "bundle", "folder": str(out), "frames": int(len(keep)),
             "bytes": int((out / BUNDLE).stat().st_size + (out / INIT).stat().st_size),
             **{s: int((data["split"][keep] == s).sum()) for s in ("train", "val")}}
    emit(facts)
    return out


def read_bundle(folder: str | Path) -> dict:
    import cv2

    from concurrent.futures import ThreadPoolExecutor

    z = np.load(Path(folder) / BUNDLE)
    n = len(z["source"])
    ib, io, mb, mo = z["images"], z["images_off"], z["masks"], z["masks_off"]

    def one(i: int):
        im = cv2.cvtColor(cv2.imdecode(_unpack(ib, io, i), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return im, cv2.imdecode(_unpack(mb, mo, i), cv2.IMREAD_GRAYSCALE)

    with ThreadPoolExecutor(8) as ex:
        pairs = list(ex.map(one, range(n)))
    images = np.stack([p[0] for p in pairs])
    masks = np.stack([p[1] for p in pairs])
    return {"images": images, "masks": masks, "source": z["source"].astype(str), "split": z["split"].astype(str),
            "item": z["item"], "size": int(z["size"]), "seed": int(z["seed"]), "cache_file": str(z["cache_file"])}


def read_cache(cache_file: str | Path, seed: int, size: int, split_from: str | Path | None = None) -> dict:
    """The same training and validation frames as a bundle, exact (from the frame cache on this machine);
    ``split_from``: the frame cache whose groups and split are kept (see :func:`polyp_train.load_data`)."""
    from .polyp_train import load_data

    d = load_data(Path(cache_file), seed, split_from=split_from)
    keep = np.flatnonzero(d["split"] != "test")
    return {"images": d["images"][keep], "masks": d["masks"][keep], "source": d["source"][keep],
            "split": d["split"][keep], "item": keep, "size": size, "seed": seed, "cache_file": Path(cache_file).name,
            "frames": "exact (frame cache)"}


# -- augmentation on the device ------------------------------------------------------------------------
def augment_batch(x, m, size: int, gen):
    """uint8 [B,H,W,3] frames and uint8 [B,H,W] masks (torch, on the device) -> normalised float input
    [B,3,S,S] and mask in 0..1 [B,1,S,S]. One affine warp per frame: crop of 45-100 % of the area (aspect
    3/4-4/3), a turn of k x 90 degrees plus, 40 % of the time, up to +-30 degrees, flips. Then colour."""
    import torch
    import torch.nn.functional as F

    dev = x.device
    B = x.shape[0]

    def U(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(B, *shape, generator=gen, device=dev)

    img = x.permute(0, 3, 1, 2).float() / 255.0
    msk = m[:, None].float() / 255.0
    area = U(0.45, 1.0)
    ar = torch.exp(U(math.log(3 / 4), math.log(4 / 3)))
    sx = torch.sqrt(area * ar).clamp(max=1.0)
    sy = torch.sqrt(area / ar).clamp(max=1.0)
    tx = (1 - sx) * U(-1.0, 1.0)
    ty = (1 - sy) * U(-1.0, 1.0)
    k = torch.randint(0, 4, (B,), generator=gen, device=dev).float()
    small = torch.where(U(0.0, 1.0) < 0.4, U(-30.0, 30.0), torch.zeros(B, device=dev))
    ang = (k * 90.0 + small) * math.pi / 180.0
    fx = torch.where(U(0.0, 1.0) < 0.5, -1.0, 1.0)
    fy = torch.where(U(0.0, 1.0) < 0.5, -1.0, 1.0)
    c, s = torch.cos(ang), torch.sin(ang)
    # output (u, v) in [-1, 1] -> input: crop scale, then rotation about the crop centre, flips first
    theta = torch.stack([torch.stack([c * sx * fx, -s * sx * fy, tx], 1),
                         torch.stack([s * sy * fx, c * sy * fy, ty], 1)], 1)
    grid = F.affine_grid(theta, (B, 3, size, size), align_corners=False)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    msk = F.grid_sample(msk, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    v = lambda lo, hi: U(lo, hi, 1, 1, 1)  # noqa: E731  (per frame, broadcast over C, H, W)
    img = img * v(0.75, 1.25) + v(-0.1, 0.1)                          # contrast, brightness
    img = img * U(0.88, 1.12, 3, 1, 1)                                  # colour balance
    g = img.mean(1, keepdim=True)
    img = g + (img - g) * v(0.7, 1.3)                                   # saturation
    img = img.clamp(0, 1) ** torch.exp(v(-0.25, 0.25))                  # gamma
    blur = (U(0.0, 1.0) < 0.2).float()[:, None, None, None]
    img = blur * F.avg_pool2d(img, 3, 1, 1, count_include_pad=False) + (1 - blur) * img
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev)[None, :, None, None]
    std = torch.tensor([0.229, 0.224, 0.225], device=dev)[None, :, None, None]
    return (img.clamp(0, 1) - mean) / std, msk


def plain_input(x, size: int):
    """uint8 [B,H,W,3] on the device -> the app's input (area resize to size, ImageNet normalisation)."""
    import torch
    import torch.nn.functional as F

    img = x.permute(0, 3, 1, 2).float() / 255.0
    if img.shape[-1] != size:
        img = F.interpolate(img, size=(size, size), mode="area")
    mean = torch.tensor([0.485, 0.456, 0.406], device=x.device)[None, :, None, None]
    std = torch.tensor([0.229, 0.224, 0.225], device=x.device)[None, :, None, None]
    return (img - mean) / std


# -- training ------------------------------------------------------------------------------------------
def train_online(b: dict, out_dir: str | Path, name: str, *, sources, device: str = "cuda", minutes: float = 6.0,
                 epochs: int | None = None, max_epochs: int = 200, patience: int = 40, batch: int = 16, lr: float = 1e-3,
                 encoder_lr_scale: float = 0.3, negatives_per_epoch: int = 250, warmup_epochs: int = 3,
                 init: str | Path | None = None, threads: int = 4, train_seed: int | None = None,
                 freeze_bn_stats: bool = False,
                 encoder: str | None = None, emit: Callable[[dict], None] = lambda e: None) -> dict:
    """Train the whole U-Net on ``b`` (:func:`read_bundle`) on ``device``; the number of epochs is set from a
    timed trial epoch so that the cosine schedule ends inside ``minutes`` (unless ``epochs`` is given;
    ``minutes`` still stops it between epochs). Saves ``<name>-online-best.pt``
    (CPU tensors) in out_dir whenever validation improves; returns a JSON-able summary. ``init``: start from
    this state dict instead of the bundle's ImageNet start (e.g. to go on training a device run on the exact
    frames, :func:`read_cache`); ``freeze_bn_stats``: BatchNorms stay in inference mode
    (:meth:`LiteUNet.freeze_batchnorm_stats`), for a start recovered from an ONNX file."""
    import torch

    from ..training import fit, seed_everything
    from .polyp_net import LiteUNet, n_params
    from .polyp_train import seg_loss, val_metrics

    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = b["size"]
    seed = b["seed"] if train_seed is None else int(train_seed)  # the split's seed unless told otherwise
    rng = seed_everything(seed, threads)
    torch.backends.cudnn.benchmark = True
    dev = torch.device(device)
    gen = torch.Generator(device=dev)
    gen.manual_seed(seed)
    in_bundle = Path(b["folder"]).is_dir()  # else a frame cache on this machine: no INIT file beside it
    if init or in_bundle:  # the checkpoint's own encoder
        start = torch.load(str(init or Path(b["folder"]) / INIT), map_location="cpu", weights_only=True)
        net = LiteUNet.from_state(start, size)
        if encoder not in (None, net.encoder_name):
            raise ValueError(f"--encoder {encoder}, but the start checkpoint has a {net.encoder_name} encoder")
    else:
        net = imagenet_start(size, seed, encoder or "lite0")  # what write_bundle would have saved
        seed_everything(seed, threads)
    if freeze_bn_stats:  # a start recovered from an ONNX file has its BatchNorms folded (polyp_recover)
        net.freeze_batchnorm_stats()
    net.to(dev)
    src, split = b["source"], b["split"]
    use = np.isin(src, list(sources))
    X = torch.from_numpy(b["images"]).to(dev)
    M = torch.from_numpy(b["masks"]).to(dev)
    pos = np.flatnonzero(use & (split == "train") & (src != "normal"))
    neg = np.flatnonzero(use & (split == "train") & (src == "normal"))
    va = np.flatnonzero(use & (split == "val"))
    va_src = src[va]
    Xv = plain_input(X[va], size)
    va_true = (torch.nn.functional.interpolate(M[va][:, None].float(), size=(size, size), mode="area")[:, 0]
               > 127).cpu().numpy()
    emit({"event": "split", "sources": list(sources), "device": str(dev),
          "train": {s: int(((split == "train") & use & (src == s)).sum()) for s in sorted(set(src))},
          "val": {s: int(((split == "val") & use & (src == s)).sum()) for s in sorted(set(src))}})

    def batches(epoch: int):
        nn_ = rng.choice(neg, min(negatives_per_epoch, len(neg)), replace=False) if len(neg) else neg
        order = rng.permutation(np.concatenate([pos, nn_]))
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            if len(idx) >= 2:
                t = torch.from_numpy(idx).to(dev)
                yield augment_batch(X[t], M[t], size, gen)

    def step(net, bt):
        x, m = bt
        return seg_loss(net(x), m)

    def validate(net):
        p = torch.cat([torch.sigmoid(net(Xv[s:s + 64]))[:, 0] for s in range(0, len(va), 64)]).float().cpu().numpy()
        return val_metrics(p, va_src, va_true, sources)

    enc = [p for m in net.encoder_modules() for p in m.parameters()]
    enc_ids = {id(p) for p in enc}
    dec = [p for p in net.parameters() if id(p) not in enc_ids]
    groups = [{"params": enc, "lr_scale": encoder_lr_scale}, {"params": dec, "lr_scale": 1.0}]
    per_epoch = None
    if epochs is None:
        # two timed trial epochs (weights thrown away; the first one pays the kernel autotuning) set how many
        # epochs fit the budget
        trial_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        fit(net, batches, step, validate, epochs=1, patience=1, lr=lr * 0.1, params=groups)
        tt = time.time()
        fit(net, batches, step, validate, epochs=1, patience=1, lr=lr * 0.1, params=groups)
        per_epoch = time.time() - tt
        net.load_state_dict(trial_state)
        budget = 60 * minutes - (time.time() - t0)
        epochs = int(max(warmup_epochs + 2, min(max_epochs, budget / (per_epoch * 1.08))))
    emit({"event": "recipe", "device": str(dev), "init": str(init or ("ImageNet (bundle)" if in_bundle else "ImageNet")), "frames": b.get("frames", "bundle"), "epoch_seconds_trial": per_epoch and round(per_epoch, 2), "batchnorm_stats_frozen": freeze_bn_stats, "epochs": epochs,
          "batch": batch, "lr": lr, "encoder_lr_scale": encoder_lr_scale, "warmup_epochs": warmup_epochs,
          "patience": patience, "negatives_per_epoch": negatives_per_epoch, "frozen_upto_block": -1,
          "augmentation": "online on the device (polyp_online.augment_batch)", "params": n_params(net),
          "split_seed": b["seed"], "train_seed": seed, "encoder": net.encoder_name})
    ckpt = out / f"{name}-online-best.pt"

    def save_best(epoch: int, row: dict) -> None:
        if row["best"]:
            torch.save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, str(ckpt))

    res = fit(net, batches, step, validate, epochs=epochs, patience=patience, lr=lr, warmup_epochs=warmup_epochs,
              params=groups, emit=emit, on_epoch=save_best, time_budget_s=60 * minutes - (time.time() - t0))
    summary = {"name": name, "checkpoint": str(ckpt), "device": str(dev), "sources": list(sources),
               "training": res.as_dict(), "epochs_planned": epochs, "seconds": round(time.time() - t0, 1)}
    (out / f"{name}-online.json").write_text(json.dumps(summary, indent=1, default=float))
    return summary


def main(argv: list[str] | None = None) -> int:
    from ..training import event_printer, print_fields

    ap = argparse.ArgumentParser(prog="python -m inference.endo.polyp_online", description=__doc__.split("\n")[0])
    ap.add_argument("bundle", help="folder written by `lightbox polyp-train DATA --stage bundle`, or the frame "
                                   "cache (.npz) on this machine (exact frames, same split)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", default="polyp_unet")
    ap.add_argument("--cross-site", action="store_true", help="train without CVC-ClinicDB (the card's cross-site twin)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--epochs", type=int, default=None, help="epochs of the schedule (default: fit --minutes from trial epochs)")
    ap.add_argument("--max-epochs", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--encoder-lr-scale", type=float, default=0.3)
    ap.add_argument("--init", default=None, metavar="CKPT", help="start from this state dict")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--size", type=int, default=288, help="with a frame cache: the model input size")
    ap.add_argument("--seed", type=int, default=2020, help="with a frame cache: the split seed")
    ap.add_argument("--split-from", default=None, metavar="CACHE.npz",
                    help="with a frame cache: take groups and split from this cache of the same frames (another size)")
    ap.add_argument("--warmup-epochs", type=int, default=3)
    ap.add_argument("--train-seed", type=int, default=None,
                    help="seed of the decoder start, augmentation and sampling (default: the split seed)")
    ap.add_argument("--encoder", choices=("lite0", "lite2"), default=None,
                    help="ImageNet encoder of a fresh start (default lite0; a --init checkpoint keeps its own)")
    ap.add_argument("--freeze-bn-stats", action="store_true",
                    help="BatchNorms stay in inference mode (to fine-tune a network recovered from an ONNX file)")
    ap.add_argument("--jsonl", action="store_true")
    a = ap.parse_args(argv)
    emit = event_printer(a.jsonl, print_fields)
    b = (read_cache(a.bundle, a.seed, a.size, a.split_from) if str(a.bundle).endswith(".npz")
         else read_bundle(a.bundle))
    b["folder"] = a.bundle
    sources = ("kvasir", "normal") if a.cross_site else ("kvasir", "cvc", "normal")
    name = f"{a.name}_without_cvc" if a.cross_site else a.name
    s = train_online(b, a.out, name, sources=sources, device=a.device, minutes=a.minutes, epochs=a.epochs, max_epochs=a.max_epochs,
                     batch=a.batch, lr=a.lr, encoder_lr_scale=a.encoder_lr_scale, init=a.init, threads=a.threads,
                     warmup_epochs=a.warmup_epochs, train_seed=a.train_seed, encoder=a.encoder,
                     freeze_bn_stats=a.freeze_bn_stats, emit=emit)
    emit({"event": "done", "checkpoint": s["checkpoint"], "best_epoch": s["training"]["best_epoch"],
          "best_val": s["training"]["best_val"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())

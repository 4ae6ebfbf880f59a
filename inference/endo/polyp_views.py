"""What the frozen ImageNet encoder computes once, so that training on 2 CPU cores fits (torch; training only).

- :func:`embeddings`: one EfficientNet-Lite0 ImageNet embedding per cached frame (the 1280-channel
  feature map at 224 px, averaged over the 7x7 grid without its bottom-left 3x3 cells, where Kvasir-SEG
  frames carry a black/green overlay box that would otherwise make unrelated frames look alike);
  :func:`inference.endo.polyp_data.near_duplicate_groups` links frames by its cosine similarity.
- :class:`ViewCache`: offline augmentation. The stem and blocks 0..F of the encoder are frozen (ImageNet
  weights, BatchNorm in eval mode), so their outputs for a given input never change: every training
  frame is augmented K times (random resized crop, flips, 90-degree turns, small rotations, colour /
  brightness / contrast / saturation jitter, blur; view 0 is the plain frame), each view goes through the
  frozen part once, and the skip features (strides 2, 4, 8) are stored as float16 memory-mapped arrays with
  the augmented mask. An epoch then runs only the trainable tail (blocks F+1.. and the decoder) on one
  stored view per frame. Validation frames get view 0 only.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def to_input(imgs: np.ndarray) -> np.ndarray:
    """uint8 [N,H,W,3] RGB -> float32 [N,3,H,W] (/255, ImageNet mean/std: the endo-polyp contract)."""
    x = imgs.astype(np.float32) / 255.0
    return np.ascontiguousarray(((x - MEAN) / STD).transpose(0, 3, 1, 2))


def resize_all(imgs: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if imgs.shape[1] == size:
        return imgs
    return np.stack([cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA) for a in imgs])


# -- augmentation --------------------------------------------------------------------------------------
def augment(img: np.ndarray, msk: np.ndarray, size: int, rng: np.random.RandomState):
    """Random resized crop (area 45-100 %, aspect 3/4-4/3), small rotation + zoom, flips, 90-degree turns,
    brightness / contrast / saturation / colour-balance jitter, blur. uint8 in, uint8 out at size."""
    import cv2

    H, W = msk.shape
    area = rng.uniform(0.45, 1.0) * H * W
    ar = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(min(H, round(np.sqrt(area / ar))))
    cw = int(min(W, round(np.sqrt(area * ar))))
    y0, x0 = rng.randint(0, H - ch + 1), rng.randint(0, W - cw + 1)
    img = img[y0:y0 + ch, x0:x0 + cw]
    msk = msk[y0:y0 + ch, x0:x0 + cw]
    if rng.rand() < 0.4:
        M = cv2.getRotationMatrix2D((cw / 2, ch / 2), rng.uniform(-30, 30), rng.uniform(1.0, 1.2))
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
    x = x * rng.uniform(0.75, 1.25) + rng.uniform(-25, 25)                 # contrast, brightness
    x = x * rng.uniform(0.88, 1.12, size=3)                                 # colour balance
    g = x.mean(axis=2, keepdims=True)
    x = g + (x - g) * rng.uniform(0.7, 1.3)                                 # saturation
    if rng.rand() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.5))
    return np.clip(x, 0, 255).astype(np.uint8), np.ascontiguousarray(msk)


# -- embeddings for near-duplicate search ----------------------------------------------------------------
def embeddings(images: np.ndarray, cache_file: Path | None = None, size: int = 224, batch: int = 32,
               emit: Callable[[dict], None] = lambda e: None) -> np.ndarray:
    """float32 [N, 1280]: Lite0 ImageNet feature map (224 px input), averaged over the 7x7 cells except
    the bottom-left 3x3 (overlay box). Cached in ``cache_file`` when given."""
    if cache_file is not None and Path(cache_file).exists():
        e = np.load(cache_file)
        if len(e) == len(images):
            return e
    import torch

    from .polyp_net import lite_encoder

    enc = lite_encoder(size, encoder="lite0").eval()
    keep = torch.ones(7, 7)
    keep[4:, :3] = 0
    out = []
    t0 = time.time()
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(to_input(resize_all(images[s:s + batch], size)))
            f = enc.extract_features(x)
            w = torch.nn.functional.interpolate(keep[None, None], size=f.shape[-2:], mode="nearest")
            out.append(((f * w).sum((2, 3)) / w.sum()).numpy())
            if s % (10 * batch) == 0:
                emit({"event": "embeddings", "done": s + len(x), "total": len(images),
                      "seconds": round(time.time() - t0, 1)})
    e = np.concatenate(out).astype(np.float32)
    if cache_file is not None:
        np.save(cache_file, e)
    return e


# -- the view cache --------------------------------------------------------------------------------------
class ViewCache:
    """Frozen-encoder features of augmented views, memory-mapped float16 under ``folder``.

    ``rows`` is a list of (item, view) pairs; view 0 is the plain frame. ``s1``/``s2``/``s3`` hold the
    stride-2/4/8 features, ``mask`` the augmented mask (uint8 0..255 at the input size)."""

    SHAPES = ((16, 2), (24, 4), (40, 8))   # (channels, stride) of the three stored skips

    def __init__(self, folder: Path, rows: np.ndarray, size: int):
        self.folder, self.rows, self.size = Path(folder), np.asarray(rows, np.int64), size
        n = len(self.rows)
        mode = "r+" if (self.folder / "s1.f16").exists() else "w+"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.s = [np.memmap(self.folder / f"s{k + 1}.f16", np.float16, mode, shape=(n, c, size // st, size // st))
                  for k, (c, st) in enumerate(self.SHAPES)]
        self.mask = np.memmap(self.folder / "mask.u8", np.uint8, mode, shape=(n, size, size))
        np.save(self.folder / "rows.npy", self.rows)

    @property
    def done(self) -> int:
        p = self.folder / "done.json"
        return json.loads(p.read_text())["done"] if p.exists() else 0

    def _mark(self, k: int) -> None:
        for a in (*self.s, self.mask):
            a.flush()
        (self.folder / "done.json").write_text(json.dumps({"done": k}))

    @classmethod
    def build(cls, net, images: np.ndarray, masks: np.ndarray, rows: np.ndarray, size: int, seed: int,
              folder: Path, batch: int = 16, emit: Callable[[dict], None] = lambda e: None) -> "ViewCache":
        """Compute (or resume) the cache. The augmentation of (item, view) is seeded by (seed, item, view),
        so the same rows give the same views whatever the order or interruption."""
        import torch

        vc = cls(folder, rows, size)
        start = vc.done
        t0 = time.time()
        net.eval()
        for b0 in range(start - start % batch, len(rows), batch):
            rb = vc.rows[b0:b0 + batch]
            ims, mks = [], []
            for item, view in rb:
                if view == 0:
                    ims.append(resize_all(images[item:item + 1], size)[0])
                    mks.append(resize_all(masks[item:item + 1], size)[0])
                else:
                    rng = np.random.RandomState([seed, int(item), int(view)])
                    im, mk = augment(images[item], masks[item], size, rng)
                    ims.append(im)
                    mks.append(mk)
            with torch.no_grad():
                feats = net.frozen_features(torch.from_numpy(to_input(np.stack(ims))))
            for a, f in zip(vc.s, feats):
                a[b0:b0 + len(rb)] = f.numpy().astype(np.float16)
            vc.mask[b0:b0 + len(rb)] = np.stack(mks)
            if (b0 // batch) % 20 == 0 or b0 + len(rb) == len(rows):
                vc._mark(b0 + len(rb))
                el = time.time() - t0
                k = b0 + len(rb) - start
                emit({"event": "views", "done": b0 + len(rb), "total": len(rows), "seconds": round(el, 1),
                      "eta_min": round(el / max(k, 1) * (len(rows) - b0 - len(rb)) / 60, 1)})
        vc._mark(len(rows))
        return vc

    def batch(self, idx: np.ndarray):
        """float32 torch tensors (s1, s2, s3) and the mask in 0..1 [n, 1, S, S] for cache rows idx."""
        import torch

        o = np.sort(idx)
        feats = [torch.from_numpy(np.asarray(a[o], np.float32)) for a in self.s]
        m = torch.from_numpy(np.asarray(self.mask[o], np.float32)[:, None] / 255.0)
        return feats, m


def view_rows(split: np.ndarray, source: np.ndarray, k_pos: int, k_neg: int) -> np.ndarray:
    """(item, view) rows for every non-test item: k_pos views per training frame with a polyp, k_neg per
    polyp-free training frame, view 0 only for validation frames. Test frames never enter the cache."""
    rows = []
    for i in np.flatnonzero(split != "test"):
        k = 1 if split[i] == "val" else (k_neg if source[i] == "normal" else k_pos)
        rows += [(int(i), v) for v in range(k)]
    return np.array(rows, np.int64).reshape(-1, 2)


def view_folder(base: Path, cache_file: Path, rows: np.ndarray, size: int, freeze: int, seed: int) -> Path:
    h = hashlib.sha256(f"views-v1|{Path(cache_file).name}|{size}|{freeze}|{seed}|".encode() + rows.tobytes())
    return Path(base) / f"views-{size}-f{freeze}-{h.hexdigest()[:12]}"

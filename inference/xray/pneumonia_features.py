"""Training-time cache of the frozen part of the pneumonia network (what makes 2 CPU cores enough).

The stem and blocks 0-10 of EfficientNet-Lite0 stay at their ImageNet weights, so their output for one
image copy never changes during training: it is computed once per copy and stored (float16, under the
X-ray cache folder). Copy 0 of every image is the clean model input; copies 1..n of the training images
are independent random acquisitions (:func:`pneumonia_net.augment`, seeded per copy). An epoch draws, for
each training image, one of its copies at random, so the trained blocks see a fresh mix every epoch.

Files: ``<cache>/low-<key>-<part>-c<copy>.npy`` with ``key`` a hash of the image list, size, seed and the
network code version; a missing file is computed, an existing one is reused (the job can be stopped and
resumed between copies).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Callable

import numpy as np

VERSION = "lite0-f11-v1"


def key(files: list[str], size: int, seed: int, recipe: str = "v1") -> str:
    tag = f"{VERSION}|{size}|{seed}" + ("" if recipe == "v1" else f"|aug-{recipe}")
    h = hashlib.sha256(tag.encode())
    for f in files:
        h.update(f"{f}\n".encode())
    return h.hexdigest()[:12]


def path(cache: Path, k: str, part: str, copy: int) -> Path:
    return cache / f"low-{k}-{part}-c{copy}.npy"


def resized(x224: np.ndarray, size: int) -> np.ndarray:
    """Clean copy: the cached model inputs at ``size`` (INTER_AREA; identity when the sizes match)."""
    import cv2

    if x224.shape[1] == size:
        return x224
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in x224])


def run_low(low, x8: np.ndarray, batch: int = 32, emit: Callable[[dict], None] | None = None,
            label: str = "") -> np.ndarray:
    """(N, S, S) uint8 -> (N, 112, S/16, S/16) float16 frozen features."""
    import torch

    outs = []
    t0 = time.time()
    with torch.no_grad():
        for i in range(0, len(x8), batch):
            t = torch.from_numpy(np.asarray(x8[i:i + batch], np.float32))[:, None]
            outs.append(low(t).numpy().astype(np.float16))
            if emit and (i // batch) % 20 == 0:
                emit({"event": "features", "part": label, "done": i + len(t), "total": len(x8),
                      "seconds": round(time.time() - t0, 1)})
    return np.concatenate(outs) if outs else np.zeros((0,), np.float16)


def ensure(low, cache: Path, k: str, part: str, copy: int, make: Callable[[], np.ndarray],
           emit: Callable[[dict], None] | None = None) -> np.ndarray:
    """The cached features of one copy of one part, computed (and saved atomically) when missing."""
    p = path(cache, k, part, copy)
    if p.exists():
        return np.load(p, mmap_mode="r")
    feats = run_low(low, make(), emit=emit, label=f"{part} copy {copy}")
    tmp = p.with_suffix(".tmp.npy")
    np.save(tmp, feats)
    tmp.replace(p)
    return np.load(p, mmap_mode="r")


def augmented_copy(x224: np.ndarray, size: int, seed: int, copy: int, recipe: str = "v1") -> np.ndarray:
    from .pneumonia_net import augment

    rng = np.random.RandomState(seed * 1000 + copy)
    return np.stack([augment(im, size, rng, recipe) for im in x224])


def available_copies(cache: Path, k: str, part: str) -> list[int]:
    out = []
    c = 0
    while path(cache, k, part, c).exists():
        out.append(c)
        c += 1
    return out

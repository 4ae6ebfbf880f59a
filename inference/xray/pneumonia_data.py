"""Data for the chest X-ray pneumonia classifier: file scan, patient ids, patient-level split, decode cache.

The shipped model is trained on the Kermany paediatric chest X-ray set (Kermany DS, Zhang K, Goldbaum M
et al., Cell 2018;172:1122-1131; Mendeley Data doi 10.17632/rscbjbr9sj.2; CC BY 4.0), ``train/`` only,
laid out as ``DATA_DIR/{NORMAL,PNEUMONIA}/*.jpeg``. Any folder with one sub-folder per class works the
same way (the first class in sorted order is the negative one unless it is named NORMAL).

Patient id from the file name (several images of one child must stay in one split):

- ``person1000_bacteria_2931.jpeg`` / ``person447_virus_921_1.jpeg``  -> ``person1000`` / ``person447``
- ``IM-0115-0001.jpeg`` / ``IM-0429-0001-0002.jpeg``                  -> ``IM-0115`` / ``IM-0429``
- ``NORMAL2-IM-0383-0001.jpeg``                                        -> ``IM-0383``

``NORMAL2-IM-nnnn`` and ``IM-nnnn`` numbers overlap (about 200 numbers occur in both series). Nothing
in the release says whether they are the same children, so they are merged into one id: a coarser
grouping can only make the split stricter, never leak a patient across splits.
Any other name is its own patient (the stem).
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

IMAGE_EXTS = (".jpeg", ".jpg", ".png")
_PERSON = re.compile(r"^(person\d+)_", re.I)
_IM = re.compile(r"^(?:NORMAL\d*-)?(IM-\d+)(?:-\d+)*$", re.I)


class DatasetError(Exception):
    pass


@dataclass(frozen=True)
class Item:
    path: Path
    label: int  # 1 = positive (pneumonia)
    patient: str


def patient_id(name: str) -> str:
    stem = Path(name).stem
    m = _PERSON.match(stem)
    if m:
        return m.group(1).lower()
    m = _IM.match(stem)
    if m:
        return m.group(1).upper()
    return stem


def scan(data_dir: str | Path) -> tuple[list[Item], list[str]]:
    """Items of a class-per-sub-folder tree; classes (negative first). Exactly two classes."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    if (root / "train").is_dir() and not any((root / c).is_dir() for c in ("NORMAL", "PNEUMONIA")):
        root = root / "train"  # the Kermany release's top folder: use train/ only
    subs = sorted(d.name for d in root.iterdir()
                  if d.is_dir() and any(f.suffix.lower() in IMAGE_EXTS for f in d.iterdir()))
    if len(subs) != 2:
        raise DatasetError(f"{root}: expected exactly two class sub-folders with images "
                           f"(e.g. NORMAL and PNEUMONIA), found {subs or 'none'}")
    if subs[1].upper() == "NORMAL":
        subs = subs[::-1]
    items = []
    for label, c in enumerate(subs):
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() in IMAGE_EXTS and f.is_file():
                items.append(Item(f, label, patient_id(f.name)))
    return items, subs


def split(items: list[Item], seed: int = 2018, val: float = 0.15, test: float = 0.15) -> dict[str, list[int]]:
    """Indices per split, by patient, stratified by the patient's label (a patient with any positive
    image counts as positive). Deterministic for a seed."""
    pats: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        pats.setdefault(it.patient, []).append(i)
    out = {"train": [], "val": [], "test": []}
    rng = np.random.RandomState(seed)
    for lab in (0, 1):
        group = sorted(p for p, idx in pats.items() if max(items[i].label for i in idx) == lab)
        rng.shuffle(group)
        n = len(group)
        n_test = int(round(n * test))
        n_val = int(round(n * val))
        if n >= 3:
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        for k, p in enumerate(group):
            part = "test" if k < n_test else "val" if k < n_test + n_val else "train"
            out[part] += pats[p]
    return {k: sorted(v) for k, v in out.items()}


def decode_grey(path: str | Path) -> np.ndarray:
    """uint8 greyscale exactly as the X-ray reader builds ``data["display"]`` for an 8-bit PNG/JPEG
    (OpenCV decode, colour -> BT.601 luminance)."""
    import cv2

    raw = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise DatasetError(f"{path}: cannot be decoded")
    if arr.ndim == 3:
        if arr.shape[2] == 4:
            arr = arr[..., :3]
        arr = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY) if arr.shape[2] >= 3 else arr[..., 0]
    if arr.dtype != np.uint8:
        lo, hi = np.percentile(arr, [0.5, 99.5])
        arr = np.clip((arr.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255 + 0.5, 0, 255).astype(np.uint8)
    return arr


def resize_square(grey8: np.ndarray, size: int) -> np.ndarray:
    """The model's resize: whole image squashed to size x size (aspect not kept), OpenCV INTER_AREA."""
    import cv2

    return cv2.resize(grey8, (size, size), interpolation=cv2.INTER_AREA)


def model_input(grey8: np.ndarray, size: int) -> np.ndarray:
    """The run-time preprocessing of the model, in one place: uniform edge bands cropped
    (:func:`inference.xray.pneumonia.crop_flat_borders`), then :func:`resize_square`."""
    from .pneumonia import crop_flat_borders

    return resize_square(crop_flat_borders(grey8)[0], size)


def cache_dir() -> Path:
    from ..training import cache_dir as shared

    return shared("LIGHTBOX_XRAY_CACHE", "lightbox-xray-cache", default="/work/cache/xray")


def load_images(items: list[Item], size: int, emit: Callable[[dict], None] | None = None,
                cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size) uint8 model inputs (:func:`model_input`) and (N, 2) original (rows, cols) - decoded
    once per file list + size and cached (uint8, compressed)."""
    emit = emit or (lambda e: None)
    h = hashlib.sha256(f"v2-crop|{size}".encode())
    for it in items:
        st = it.path.stat()
        h.update(f"{it.path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    path = cache_dir() / f"xray-{size}-{h.hexdigest()[:16]}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            emit({"event": "images", "done": len(items), "total": len(items), "cached": str(path)})
            return z["x"], z["shape"]
    x = np.zeros((len(items), size, size), np.uint8)
    shape = np.zeros((len(items), 2), np.int32)
    t0 = time.time()
    for i, it in enumerate(items):
        g = decode_grey(it.path)
        shape[i] = g.shape[:2]
        x[i] = model_input(g, size)
        if i % 200 == 0 or i == len(items) - 1:
            emit({"event": "images", "done": i + 1, "total": len(items), "seconds": round(time.time() - t0, 1)})
    if cache:
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, x=x, shape=shape)
        os.replace(tmp, path)
    return x, shape

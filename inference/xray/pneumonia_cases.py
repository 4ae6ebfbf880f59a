"""Images the pneumonia model must not answer for, and films it must answer for unchanged.

Used twice: to *train* the learned gate (kinds marked ``train``: radiographs turned 90/180/270 degrees,
inverted films, greyscale endoscopy frames from a folder given on the command line, generated non-images)
and to *measure* the whole gate on held-out material (validation-split radiographs transformed each way,
other non-chest sources, a lateral-view proxy) - never the same images for both.

numpy + OpenCV only. Every generator is seeded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

# gate classes (the order of the ONNX ``gate`` output)
GATE_CLASSES = ("chest", "rotated", "inverted", "not_chest")


def rotated(img: np.ndarray, k: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(img, k))


def rotated_by(img: np.ndarray, deg: float) -> np.ndarray:
    """Rotated about the centre by ``deg`` degrees, canvas kept, corners filled with black (a film turned
    on a scanner)."""
    import cv2

    h, w = img.shape[:2]
    M = cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0)
    return cv2.warpAffine(img, M, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def inverted(img: np.ndarray) -> np.ndarray:
    return (255 - np.asarray(img, np.uint8)).astype(np.uint8)


def lateral_proxy(img: np.ndarray, side: int = 0) -> np.ndarray:
    """A **proxy** for a lateral view (no lateral radiographs are available to Lightbox): one hemithorax of
    a frontal film, stretched to the full width, so the picture has one lung field and no midline
    mediastinum between two lungs. It is not a lateral radiograph; its refusal rate says only that the gate
    needs the frontal two-lung layout."""
    import cv2

    h, w = img.shape[:2]
    half = img[:, : w // 2] if side == 0 else img[:, w // 2:]
    return cv2.resize(half, (w, h), interpolation=cv2.INTER_LINEAR)


def with_bands(img: np.ndarray, frac: float = 0.12, value: int = 0, sides=("left", "right"),
               noisy: bool = False, seed: int = 0) -> np.ndarray:
    """The film on a wider/taller canvas with uniform (or noisy) bands added on the given sides."""
    import cv2

    h, w = img.shape[:2]
    t = int(round(frac * h)) if "top" in sides else 0
    b = int(round(frac * h)) if "bottom" in sides else 0
    l_ = int(round(frac * w)) if "left" in sides else 0
    r = int(round(frac * w)) if "right" in sides else 0
    out = cv2.copyMakeBorder(img, t, b, l_, r, cv2.BORDER_CONSTANT, value=int(value))
    if noisy:
        mask = np.ones(out.shape, bool)
        mask[t:t + h, l_:l_ + w] = False
        noise = np.random.default_rng(seed).normal(0, 8, out.shape)
        out = np.where(mask, np.clip(out + noise, 0, 255), out).astype(np.uint8)
    return out


def with_marker(img: np.ndarray, text: str = "R", where: str = "top-left") -> np.ndarray:
    import cv2

    out = np.asarray(img, np.uint8).copy()
    h, w = out.shape[:2]
    scale = max(h, w) / 224 * 0.9
    x = int(0.05 * w) if "left" in where else int(0.8 * w)
    y = int(0.12 * h) if "top" in where else int(0.95 * h)
    cv2.putText(out, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 255, max(1, int(2 * scale)))
    return out


def generated(seed: int, n: int, size: int = 256) -> Iterator[tuple[str, np.ndarray]]:
    """Non-images and non-radiographs made here: noise, flat, ramps, shapes, a text page, a checkerboard,
    smooth random blobs. ``seed`` separates the training set of the gate from its test set."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    kinds = ("uniform noise", "Gaussian noise", "flat", "ramp", "shapes", "text page", "checkerboard", "blobs")
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "uniform noise":
            im = rng.integers(0, 256, (size, size))
        elif kind == "Gaussian noise":
            im = rng.normal(rng.uniform(60, 190), rng.uniform(10, 60), (size, size))
        elif kind == "flat":
            im = np.full((size, size), rng.uniform(0, 255))
        elif kind == "ramp":
            a = rng.uniform(0, 2 * np.pi)
            im = 255 * ((np.cos(a) * xx + np.sin(a) * yy) % 1.0)
        elif kind == "shapes":
            im = np.full((size, size), rng.uniform(0, 255), np.float64)
            for _ in range(rng.integers(3, 12)):
                c = (int(rng.uniform(0, size)), int(rng.uniform(0, size)))
                if rng.random() < 0.5:
                    cv2.circle(im, c, int(rng.uniform(5, size / 3)), float(rng.uniform(0, 255)), -1)
                else:
                    cv2.rectangle(im, c, (int(rng.uniform(0, size)), int(rng.uniform(0, size))),
                                  float(rng.uniform(0, 255)), -1)
        elif kind == "text page":
            im = np.full((size, size), 240, np.uint8)
            for r in range(12, size, 16):
                words = "".join(chr(int(c)) for c in rng.integers(65, 91, 18))
                cv2.putText(im, words, (6, r), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 20, 1)
        elif kind == "checkerboard":
            k = int(rng.integers(4, 32))
            im = 255.0 * (((np.arange(size)[:, None] // k) + (np.arange(size)[None] // k)) % 2)
        else:
            im = cv2.GaussianBlur(rng.normal(128, 80, (size, size)), (0, 0), rng.uniform(4, 20))
            im = (im - im.min()) / (np.ptp(im) + 1e-6) * 255
        yield f"generated: {kind}", np.clip(im, 0, 255).astype(np.uint8)


def folder_images(folder: str | Path, n: int, seed: int = 0, size: int = 256) -> list[np.ndarray]:
    """Up to ``n`` images of a folder (sorted, then a seeded sample), as 8-bit greyscale at ``size``."""
    import cv2

    from .pneumonia_data import decode_grey

    folder = Path(folder)
    if not folder.is_dir():
        return []
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff"))
    if not files:
        return []
    pick = np.random.default_rng(seed).permutation(len(files))[:n]
    out = []
    for i in sorted(pick):
        try:
            g = decode_grey(files[i])
        except Exception:  # a file that does not decode is skipped
            continue
        out.append(cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA))
    return out


def gate_training_negatives(films: np.ndarray, rng: np.random.RandomState, extra_dirs=(), n_extra: int = 150,
                            n_generated: int = 96) -> tuple[list[np.ndarray], list[int]]:
    """Images and gate labels (indices into GATE_CLASSES) for the gate's negative classes, from training
    films (rotations 90/180/270, inversions: about a third each) and non-chest material."""
    imgs, labels = [], []
    for i, im in enumerate(films):
        r = i % 4
        if r < 3:
            imgs.append(rotated(im, r + 1))
            labels.append(1)
        else:
            imgs.append(inverted(im))
            labels.append(2)
        if i % 5 == 0:  # some inverted films that are also turned
            imgs.append(inverted(rotated(im, 1 + rng.randint(3))))
            labels.append(2)
    for d in extra_dirs:
        for im in folder_images(d, n_extra, seed=1):
            imgs.append(im)
            labels.append(3)
    for _, im in generated(seed=11, n=n_generated):
        imgs.append(im)
        labels.append(3)
    return imgs, labels

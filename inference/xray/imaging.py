"""Chest X-ray image operations shared by the pipeline, the viewer and the report (numpy + OpenCV).

- ``preprocess``: MedSight's input from the default-display 8-bit image (``medsight.preprocess``:
  the reference's torchvision Resize((224, 224)), bilinear on an RGB image, ImageNet normalisation).
- ``clahe``: contrast-limited adaptive histogram equalisation for the overlay base image.
- ``clinical_colormap``: black -> dark red -> red -> orange -> yellow (the reference's clinical map).
- ``upsample_cam`` / ``overlay``: a Grad-CAM grid at image size, and an overlay whose alpha rises
  only above the 30th percentile of the map (a map relative to its own peak: MedSight) or from 0 (a map on a
  fixed scale: Lightbox's pneumonia model, where a cold map must stay invisible).
"""
from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
INPUT_SIZE = 224


def to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    a = img.astype(np.float32)
    if not np.isfinite(a).all():
        raise ValueError("image has NaN or infinite pixel values")
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo + 1e-12) * 255 + 0.5).astype(np.uint8)


def preprocess(display8: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """uint8 greyscale (H, W) -> float32 (1, 3, size, size): MedSight's input (``medsight.preprocess``)."""
    from inference.xray.medsight import preprocess as medsight_preprocess

    return medsight_preprocess(display8, size)


def clahe(gray8: np.ndarray, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    import cv2

    return cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(to_uint8(gray8))


def _clinical_lut() -> np.ndarray:
    t = np.linspace(0.0, 1.0, 256)
    r = np.interp(t, [0.0, 0.25, 0.55, 0.80, 1.0], [0, 120, 255, 255, 255])
    g = np.interp(t, [0.0, 0.25, 0.55, 0.80, 1.0], [0, 0, 20, 180, 255])
    b = np.interp(t, [0.0, 0.25, 0.55, 0.80, 1.0], [0, 15, 0, 0, 80])
    return np.stack([r, g, b], axis=1).astype(np.uint8)


COLORMAPS = ("clinical", "inferno", "jet", "viridis")


def colormap_lut(name: str = "clinical") -> np.ndarray:
    """(256, 3) uint8 RGB lookup table."""
    if name == "clinical":
        return _clinical_lut()
    import cv2

    code = {"inferno": cv2.COLORMAP_INFERNO, "jet": cv2.COLORMAP_JET, "viridis": cv2.COLORMAP_VIRIDIS}.get(name)
    if code is None:
        raise ValueError(f"unknown colormap {name!r}; known: {', '.join(COLORMAPS)}")
    bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], code)[:, 0, :]
    return bgr[:, ::-1].copy()


def colorize(heat: np.ndarray, name: str = "clinical") -> np.ndarray:
    """heat in [0, 1] (H, W) -> (H, W, 3) uint8 RGB."""
    idx = np.clip(heat * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return colormap_lut(name)[idx]


def upsample_cam(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Grad-CAM grid (h, w) -> map at image size (H, W), scaled to [0, 1] by its own peak
    (an all-zero map stays zero: nothing pushed the score up)."""
    import cv2

    cam = np.maximum(np.asarray(cam, np.float32), 0)
    peak = float(cam.max())
    if peak <= 0 or not np.isfinite(peak):
        return np.zeros(shape, np.float32)
    up = cv2.resize(cam / peak, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_CUBIC)
    return np.clip(up, 0.0, 1.0).astype(np.float32)


def alpha_map(heat: np.ndarray, opacity: float = 0.65, floor_percentile: float | None = 30.0) -> np.ndarray:
    """Per-pixel alpha rising (power 1.3) to ``opacity`` at heat 1: from 0 below the map's 30th percentile
    (a map relative to its own peak), or (``floor_percentile=None``, a map on a fixed scale) from 0 at heat 0,
    so a cold map stays invisible."""
    p = float(np.percentile(heat, floor_percentile)) if floor_percentile is not None else 0.0
    a = np.clip((heat - p) / (1.0 - p + 1e-8), 0.0, 1.0) ** 1.3
    return (a * float(opacity)).astype(np.float32)


def overlay(base8: np.ndarray, heat: np.ndarray, opacity: float = 0.65, cmap: str = "clinical",
            use_clahe: bool = True, fixed: bool = False) -> np.ndarray:
    """Heatmap over the (CLAHE-enhanced) radiograph: (H, W, 3) uint8 RGB (``fixed``: see :func:`alpha_map`)."""
    base = clahe(base8) if use_clahe else to_uint8(base8)
    rgb = np.repeat(base[:, :, None], 3, axis=2).astype(np.float32)
    col = colorize(heat, cmap).astype(np.float32)
    a = alpha_map(heat, opacity, None if fixed else 30.0)[:, :, None]
    return (a * col + (1.0 - a) * rgb + 0.5).clip(0, 255).astype(np.uint8)


def top_regions(heat: np.ndarray, n: int = 3, percentile: float = 85.0, min_area_frac: float = 0.002,
                floor: float = 1e-6):
    """Bounding boxes (x, y, w, h in image pixels) of the hottest connected regions, hottest first: above the
    map's ``percentile`` and at least ``floor`` (on a fixed-scale map, what counts as hot at all)."""
    import cv2

    thr = float(np.percentile(heat, percentile))
    binary = (heat >= max(thr, floor)).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    out = []
    min_area = min_area_frac * heat.size
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i])
        if area < min_area:
            continue
        peak = float(heat[labels == i].max())
        out.append({"x": x, "y": y, "width": w, "height": h, "peak": round(peak, 3)})
    out.sort(key=lambda r: -r["peak"])
    return out[:n]

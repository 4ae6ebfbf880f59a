"""Still endoscopy images: telling a colour endoscopy photograph from a radiograph by its content, and
a folder of unrelated stills from the frames of one video (no Qt).

A still captured by an endoscopy processor (or exported from a report) has three signs, measured on a
256-px copy by :func:`evidence`:

``colour``    most lit pixels saturated (a radiograph has none: grey, or grey stored as RGB) and the
              saturated ones red / pink / orange (mucosa), not blue or green (a photograph of a scene).
``vignette``  the endoscope's black mask: the four corners dark (a round or octagonal field of view),
              while the middle is lit.
``text``      the processor's text overlay (patient, date, settings) in the dark border: small bright,
              unsaturated marks inside the dark corner/side regions.

:func:`endo_still_score` combines them into 0..1 (the endoscopy reader's ``sniff`` for image files);
a grey image scores 0. Measured by ``python -m inference.endo.calibrate DATA_DIR XRAY_DIR...``: Kvasir-SEG
(300 images) 0.90-0.97, CVC-ClinicDB (204) 0.74-0.97, polyp-free close-ups without a scope mask (200)
0.70; Kermany chest radiographs (400, train and external test) 0.00; synthetic outdoor photographs 0.35
(ambiguous: the app asks). ``AMBIGUOUS`` is the score under which the app asks which modality to open a
file as rather than guessing (:func:`inference.detect.detect_modality`).

:func:`folder_is_set` says whether a folder of images holds unrelated stills (one result per image)
or the frames of one video (a sequence): stills are separated by scene cuts
(:mod:`inference.endo.scenes`) between most consecutive images.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

STILL_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
AMBIGUOUS = 0.5          # below this no modality is sure enough: ask
SET_CUT_FRACTION = 0.5   # a folder whose consecutive images are cuts this often is a set of stills
SET_SAMPLE = 12          # images looked at to decide


def _small(rgb: np.ndarray, side: int = 256) -> np.ndarray:
    import cv2

    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, -1)
    rgb = np.ascontiguousarray(rgb[..., :3])
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    if s < 1:
        rgb = cv2.resize(rgb, (max(8, int(w * s)), max(8, int(h * s))), interpolation=cv2.INTER_AREA)
    return rgb


def evidence(rgb: np.ndarray) -> dict[str, float]:
    """The measurements :func:`endo_still_score` combines (all 0..1)."""
    import cv2

    small = _small(rgb)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0].astype(np.int32), hsv[..., 1], hsv[..., 2]
    lit = v > 40
    n_lit = max(int(lit.sum()), 1)
    sat = lit & (s > 64)
    n_sat = max(int(sat.sum()), 1)
    red = sat & ((h <= 25) | (h >= 150))
    spread = float(np.abs(small.astype(np.int16) - small.mean(axis=2, keepdims=True)).mean())
    H, W = v.shape
    k = max(2, int(0.07 * min(H, W)))
    corners = np.concatenate([v[:k, :k].ravel(), v[:k, -k:].ravel(), v[-k:, :k].ravel(), v[-k:, -k:].ravel()])
    centre = v[H // 4: 3 * H // 4, W // 4: 3 * W // 4]
    dark_corners = float((corners < 30).mean())
    vignette = dark_corners if float((centre > 40).mean()) > 0.6 else 0.0
    # text overlay: bright unsaturated marks inside the dark border (the black mask around the view)
    border = np.zeros_like(lit)
    bw = max(2, int(0.2 * W))
    border[:, :bw] = True
    border[:, -bw:] = True
    dark = cv2.dilate((v < 30).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    region = border & dark
    marks = region & (v > 110) & (s < 80)
    text = 0.0
    if region.sum() > 0.03 * H * W:
        frac = marks.sum() / region.sum()  # a few per mille of the border: characters (not a lit area)
        text = float(min(frac / 0.002, 1.0)) if frac <= 0.15 else 0.0
    return {"saturated": round(sat.sum() / n_lit, 4), "reddish": round(red.sum() / n_sat, 4),
            "lit": round(n_lit / (H * W), 4), "colour_spread": round(spread, 2),
            "vignette": round(vignette, 4), "text": round(text, 3)}


def endo_still_score(rgb: np.ndarray) -> float:
    """0..1: how much an image looks like a colour endoscopy photograph (0 for a grey image)."""
    e = evidence(rgb)
    if e["colour_spread"] < 3.0 or e["saturated"] < 0.05:  # grey, or grey stored as RGB: a radiograph
        return 0.0
    if e["lit"] < 0.15:
        return 0.1
    score = (0.2 + 0.35 * min(e["reddish"] / 0.7, 1.0) + 0.15 * min(e["saturated"] / 0.5, 1.0)
             + 0.2 * e["vignette"] + 0.1 * e["text"])
    if e["reddish"] < 0.3:  # colourful but not mucosa-coloured: a photograph of something else
        score = min(score, 0.35)
    return round(float(min(score, 0.97)), 3)


def read_image(path: str | Path) -> np.ndarray | None:
    """RGB uint8 of an image file (PNG/JPEG/TIFF/BMP), None when it cannot be decoded."""
    import cv2

    from inference.png_guard import png_problem

    data = np.fromfile(str(path), dtype=np.uint8)
    if not data.size or png_problem(data.data):
        return None
    if Path(path).suffix.lower() in (".tif", ".tiff"):
        # a processor's TIFF may declare one colour channel and carry three samples (CVC-ClinicDB's
        # frames do): read the samples as stored when the file is a plain uncompressed TIFF
        from inference.endo.polyp_data import PolypDataError, read_tiff

        try:
            raw = read_tiff(path)
            if raw.ndim == 3 and raw.shape[2] >= 3:
                return np.ascontiguousarray(raw[..., :3])
        except (PolypDataError, ValueError, IndexError, KeyError, struct.error):
            pass  # compressed or unusual: OpenCV's decoder below
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    if img.dtype != np.uint8:  # 16-bit: keep the top byte (a photograph; a radiograph goes to the X-ray reader)
        img = (img / 257).astype(np.uint8) if img.dtype == np.uint16 else np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, -1)
    if img.shape[2] == 4:
        img = img[..., :3]
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def sniff_image(path: str | Path) -> float:
    """The endoscopy score of an image file (0 when it cannot be decoded)."""
    try:
        img = read_image(path)
    except Exception:
        return 0.0
    return 0.0 if img is None else endo_still_score(img)


def folder_is_set(files: list[Path], reader=read_image, sample: int = SET_SAMPLE) -> tuple[bool, float]:
    """(is a set of unrelated stills?, fraction of cuts among the first ``sample`` consecutive pairs)."""
    from inference.endo.scenes import cut_fraction

    if len(files) < 2:
        return True, 1.0
    imgs = [im for im in (reader(f) for f in files[:sample]) if im is not None]
    frac = cut_fraction(imgs)
    return frac >= SET_CUT_FRACTION, round(frac, 3)

"""Lightbox's chest X-ray pneumonia classifier at run time: preprocessing, ONNX inference, heatmap, OOD gate.

numpy + OpenCV + onnxruntime only (no torch at run time). The model file carries its own spec (size,
threshold, calibration, gate limits) as ONNX metadata, written by ``pneumonia_train``.

Preprocessing (stated once, used by training and the app alike): the 8-bit default-display greyscale image
(``data["display"]`` of the X-ray reader: VOI window applied, MONOCHROME1 inverted, colour -> luminance) ->
uniform edge bands cropped (``crop_flat_borders``: a black/white frame or padding added by a scanner or an
export never reaches the network) -> resized to size x size (192) with OpenCV INTER_AREA, aspect not kept ->
float32 0-255. The network standardises each image itself ((x - mean) / (std + 1)).

Heatmap: the ``cam`` output is the network's stride-16 logit map (12 x 12 at 192 px) without its constant
term; the pneumonia logit is its mean (plus the constant), so the map is an exact decomposition of the
decision over the film (a class activation map at a finer layer than the last one). The map is drawn on a
**fixed scale**, never relative to its own peak: each cell's local logit (the logit a film made entirely of
such regions would get) is 0 at the decision threshold's logit and 1 at ``heat_scale.full_logit`` (the
typical strength of the evidence on validation pneumonia films: the median over them of each film's 95th
percentile cell), clipped to 0-1 and upsampled over the part of the image the model read. A normal film's
map therefore stays cold instead of drawing its faint spots as hot as a consolidation (:func:`heat_scale`).

Out-of-distribution gate, checked in this order, any one refuses the answer:
1. a colour image (the reader converted colour to grey) or a non-radiograph DICOM modality (hint from the
   caller);
2. the learned gate (``gate`` output: chest / rotated / inverted / not a chest film, a logistic layer on the
   network's pooled features): P(chest) below the limit set on validation films;
3. image statistics of the resized image (``image_stats``) too far (Mahalanobis) from the training images';
4. the network's pooled features too far (whitened distance) from the training images' (``ood`` output).
The message is then "outside what this model was trained on" and no pneumonia label is given.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ONNX_META_KEY = "lightbox.xray_pneumonia"
OUTSIDE = "outside what this model was trained on"

THUMB = 6
STAT_NAMES = ("mean", "std", "dark_fraction", "bright_fraction", "lr_symmetry", "tb_symmetry", "edge_density",
              "centre_minus_border", "top_minus_bottom", "mediastinum_column", "mediastinum_row", "entropy",
              "flat_fraction", "laplacian") + tuple(f"thumb_{i}_{j}" for i in range(THUMB) for j in range(THUMB))


def image_stats(img8: np.ndarray) -> np.ndarray:
    """Statistics of a resized 8-bit greyscale image (S, S): brightness, contrast, clipping, symmetry, edges,
    the layout of a frontal chest film (bright central column = mediastinum and spine between dark lungs, and
    not the same across rows, which a rotated image has) and a 6 x 6 standardised thumbnail."""
    import cv2

    x = img8.astype(np.float32)
    s = x.shape[0]
    m, sd = float(x.mean()), float(x.std())
    dark = float((x < 20).mean())
    bright = float((x > 235).mean())
    a = x - m

    def corr(u, v):
        return float((u * v).sum() / (np.sqrt((u * u).sum() * (v * v).sum()) + 1e-6))

    sym_lr, sym_tb = corr(a, a[:, ::-1]), corr(a, a[::-1, :])
    gx = np.abs(np.diff(x, axis=1))
    gy = np.abs(np.diff(x, axis=0))
    edge = float((gx.mean() + gy.mean()) / (sd + 1.0))
    q = s // 4
    inner = x[q:s - q, q:s - q]
    centre = float(inner.mean())
    border = float((x.sum() - inner.sum()) / (x.size - inner.size))
    tb = float(x[:q].mean() - x[s - q:].mean())
    c0, c1, l0, l1 = int(s * 0.44), int(s * 0.56), int(s * 0.2), int(s * 0.36)
    band = slice(int(s * 0.25), int(s * 0.7))
    med_col = float(x[band, c0:c1].mean() - (x[band, l0:l1].mean() + x[band, s - l1:s - l0].mean()) / 2)
    med_row = float(x[c0:c1, band].mean() - (x[l0:l1, band].mean() + x[s - l1:s - l0, band].mean()) / 2)
    hist = np.bincount(img8.ravel(), minlength=256).astype(np.float64) / img8.size
    ent = float(-(hist[hist > 0] * np.log2(hist[hist > 0])).sum())
    flat = float(((gx == 0).mean() + (gy == 0).mean()) / 2)
    lap = np.abs(4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:])
    lapm = float(lap.mean() / (sd + 1.0))
    thumb = (cv2.resize(x, (THUMB, THUMB), interpolation=cv2.INTER_AREA) - m) / (sd + 1.0)
    return np.concatenate([np.array([m / 255, sd / 255, dark, bright, sym_lr, sym_tb, edge, (centre - border) / 255,
                                     tb / 255, med_col / (sd + 1.0), med_row / (sd + 1.0), ent / 8, flat, lapm]),
                           thumb.ravel()]).astype(np.float64)


@dataclass
class ImageGate:
    mean: np.ndarray
    prec: np.ndarray
    limit: float = float("inf")
    names: tuple = field(default=STAT_NAMES)

    def distance(self, stats: np.ndarray) -> float:
        d = np.asarray(stats, np.float64) - self.mean
        return float(d @ self.prec @ d)

    def to_dict(self) -> dict:
        return {"names": list(self.names), "mean": [float(v) for v in self.mean],
                "prec": [[float(v) for v in r] for r in self.prec], "limit": float(self.limit)}

    @classmethod
    def from_dict(cls, d: dict) -> "ImageGate":
        return cls(np.asarray(d["mean"], np.float64), np.asarray(d["prec"], np.float64), float(d["limit"]),
                   tuple(d.get("names", STAT_NAMES)))


def fit_image_stats(stats: np.ndarray, shrink: float = 0.05) -> ImageGate:
    mu = stats.mean(0)
    c = np.cov(stats, rowvar=False)
    c = (1 - shrink) * c + shrink * np.diag(np.diag(c)) + 1e-8 * np.eye(len(c))
    return ImageGate(mu, np.linalg.inv(c))


def flat_border_box(grey8: np.ndarray, tol: int = 4, min_band: float = 0.02, keep: float = 0.5
                    ) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the image without its uniform edge bands: rows/columns at the edges
    in which at least 98 % of the pixels lie within ``tol`` grey levels of the band's own value (a black or
    white frame, a padded canvas, a flat collimation strip added by a scanner or an export). Real
    collimation shading and anatomy are never that flat, so a radiograph without added bands keeps its
    full extent. A band thinner than ``min_band`` of the side is left alone; at least ``keep`` of each
    side always stays. Vectorised (a few ms on a 2000-px film)."""
    a = np.asarray(grey8)
    h, w = a.shape[:2]

    def flat(lines: np.ndarray) -> np.ndarray:  # lines: (n, L) -> bool per line
        med = np.median(lines, axis=1, keepdims=True)
        return (np.abs(lines.astype(np.int16) - med) <= tol).mean(axis=1) >= 0.98

    def run(flags: np.ndarray, limit: int) -> int:
        n = int(np.argmin(flags)) if not flags.all() else len(flags)
        return n if n >= 1 and n <= limit else (limit if n > limit else 0)

    step_r, step_c = max(1, h // 400), max(1, w // 400)
    sub = a[::step_r, ::step_c]
    rows, cols = flat(sub), flat(sub.T)
    lim_r, lim_c = int(len(rows) * (1 - keep) / 2), int(len(cols) * (1 - keep) / 2)
    t, b = run(rows, lim_r), run(rows[::-1], lim_r)
    l_, r = run(cols, lim_c), run(cols[::-1], lim_c)
    t, b = (t if t >= min_band * len(rows) else 0), (b if b >= min_band * len(rows) else 0)
    l_, r = (l_ if l_ >= min_band * len(cols) else 0), (r if r >= min_band * len(cols) else 0)
    return t * step_r, h - b * step_r, l_ * step_c, w - r * step_c


def crop_flat_borders(grey8: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The image without uniform edge bands (see :func:`flat_border_box`) and the box kept."""
    t, b, l_, r = flat_border_box(grey8)
    return np.asarray(grey8)[t:b, l_:r], (t, b, l_, r)


def resize_square(grey8: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(grey8, (size, size), interpolation=cv2.INTER_AREA)


def to_grey8(img: np.ndarray) -> tuple[np.ndarray, bool]:
    """(uint8 greyscale, was_colour). Colour -> BT.601 luminance; other dtypes scaled to 0-255."""
    a = np.asarray(img)
    colour = False
    if a.ndim == 3:
        if a.shape[2] >= 3:
            rgb = a[..., :3].astype(np.float32)
            colour = bool(np.abs(rgb[..., 0] - rgb[..., 1]).max() > 2 or np.abs(rgb[..., 1] - rgb[..., 2]).max() > 2)
            a = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        else:
            a = a[..., 0]
    if a.dtype != np.uint8:
        a = a.astype(np.float32)
        if not np.isfinite(a).all():
            raise ValueError("image has NaN or infinite pixel values")
        if a.min() >= 0 and a.max() <= 255 and a.max() > 1.0:
            a = np.round(a)
        else:
            lo, hi = float(a.min()), float(a.max())
            a = (a - lo) / (hi - lo + 1e-12) * 255
        a = np.clip(a, 0, 255).astype(np.uint8)
    return a, colour


def cam_to_heatmap(cam: np.ndarray, shape: tuple[int, int], fixed: bool = False) -> np.ndarray:
    """(h, w) map -> (H, W) float32 0-1. ``fixed``: the grid is already on the fixed heat scale
    (:meth:`PneumoniaModel.heat_grid`): upsampled (bilinear) and clipped, never rescaled. Otherwise (older
    stored results): negative evidence clipped, scaled by its own maximum, cubic up."""
    import cv2

    size = (int(shape[1]), int(shape[0]))
    if fixed:
        return np.clip(cv2.resize(np.asarray(cam, np.float32), size, interpolation=cv2.INTER_LINEAR), 0, 1)
    c = np.maximum(np.asarray(cam, np.float32), 0)
    mx = float(c.max())
    c = c / mx if mx > 0 else c
    return np.clip(cv2.resize(c, size, interpolation=cv2.INTER_CUBIC), 0, 1)


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    return float(np.log(p / (1 - p)))


def heat_scale(spec: dict, threshold: float | None = None) -> tuple[float, float]:
    """(zero_logit, full_logit) of the fixed heat scale of a model file. ``zero``: the logit at the decision
    threshold (the file's, or ``threshold`` - a site operating point - through the file's Platt scaling);
    ``full``: the file's ``heat_scale.full_logit`` (set on validation pneumonia films at training), else - a
    file written before it existed - the logit at which the calibrated P(pneumonia) is 0.999."""
    a, b = (float(v) for v in spec.get("platt", (1.0, 0.0)))
    zero = (_logit(float(spec["threshold"] if threshold is None else threshold)) - b) / a
    hs = spec.get("heat_scale") or {}
    full = float(hs["full_logit"]) if "full_logit" in hs else (_logit(0.999) - b) / a
    return zero, max(full, zero + 1.0)


GATE_REASONS = {"rotated": "it looks turned by 90 or 180 degrees (the model reads upright frontal films only)",
                "inverted": "it looks inverted (a negative: bone dark, lungs bright)",
                "not_chest": "it does not look like a chest radiograph"}


def heat_on_image(cam: np.ndarray, shape: tuple[int, int], box: tuple[int, int, int, int] | None = None,
                  fixed: bool = False) -> np.ndarray:
    """The map as a 0-1 heatmap over the whole image of ``shape``: upsampled over the part the model read
    (``box`` = top, bottom, left, right after the border crop), zero on cropped bands (``fixed``: see
    :func:`cam_to_heatmap`)."""
    h, w = int(shape[0]), int(shape[1])
    if box is None or tuple(box) == (0, h, 0, w):
        return cam_to_heatmap(cam, (h, w), fixed)
    t, b, l_, r = (int(v) for v in box)
    out = np.zeros((h, w), np.float32)
    out[t:b, l_:r] = cam_to_heatmap(cam, (b - t, r - l_), fixed)
    return out


class PneumoniaModel:
    """The exported ONNX file with its embedded spec."""

    OUTPUTS = ("prob", "cam", "features", "ood", "gate")

    def __init__(self, path: str | Path, threads: int | None = None, session=None):
        import onnxruntime as ort

        self.path = Path(path)
        if session is None:
            so = ort.SessionOptions()
            if threads:
                so.intra_op_num_threads = threads
                so.inter_op_num_threads = 1
            session = ort.InferenceSession(str(self.path), so, providers=["CPUExecutionProvider"])
        self.session = session
        meta = session.get_modelmeta().custom_metadata_map
        if ONNX_META_KEY not in meta:
            raise ValueError(f"{self.path.name}: not a Lightbox X-ray pneumonia model (no {ONNX_META_KEY} metadata)")
        self.spec = json.loads(meta[ONNX_META_KEY])
        self.size = int(self.spec["size"])
        self.threshold = float(self.spec["threshold"])
        self.gate = ImageGate.from_dict(self.spec["image_gate"])
        self.feature_limit = float(self.spec["ood_feature_limit"])
        self.crop_borders = bool(self.spec.get("crop_borders", False))
        self.gate_classes = tuple(self.spec.get("gate_classes", ()))
        self.gate_limit = float(self.spec.get("gate_chest_limit", 0.0))
        self.outputs = [o.name for o in session.get_outputs()]
        self.heat_zero, self.heat_full = heat_scale(self.spec)
        self._cam_bias: float | None = None

    def cam_bias(self) -> float:
        """The constant the ``cam`` output leaves out (logit = mean(cam) + bias), read once from a mid-grey
        image through the file's own calibration."""
        if self._cam_bias is None:
            o = PneumoniaModel.run_batch(self, np.full((1, self.size, self.size), 128, np.uint8))
            a, b = (float(v) for v in self.spec.get("platt", (1.0, 0.0)))
            self._cam_bias = (_logit(float(o["prob"][0])) - b) / a - float(np.mean(o["cam"][0]))
        return self._cam_bias

    def heat_grid(self, cam: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """The CAM on the fixed heat scale: (local logit - zero) / (full - zero); 0 at the decision threshold
        (the file's, or ``threshold``), 1 at the typical pneumonia evidence (see :func:`heat_scale`); not
        clipped."""
        zero, full = (self.heat_zero, self.heat_full) if threshold is None else heat_scale(self.spec, threshold)
        local = np.asarray(cam, np.float32) + self.cam_bias()
        return ((local - zero) / (full - zero)).astype(np.float32)

    def preprocess_box(self, img: np.ndarray) -> tuple[np.ndarray, bool, tuple[int, int, int, int]]:
        """(model input (S, S) uint8, was_colour, box read (top, bottom, left, right))."""
        grey, colour = to_grey8(img)
        h, w = grey.shape[:2]
        if self.crop_borders:
            grey, box = crop_flat_borders(grey)
        else:
            box = (0, h, 0, w)
        return resize_square(grey, self.size), colour, box

    def preprocess(self, img: np.ndarray) -> tuple[np.ndarray, bool]:
        small, colour, _ = self.preprocess_box(img)
        return small, colour

    def run_batch(self, x8: np.ndarray) -> dict[str, np.ndarray]:
        """(N, S, S) uint8 model inputs -> dict of the model's outputs (prob, cam, features, ood[, gate])."""
        out: dict[str, list] = {k: [] for k in self.outputs}
        for i in range(0, len(x8), 32):
            xin = np.asarray(x8[i:i + 32], np.float32)[:, None]
            for k, v in zip(self.outputs, self.session.run(None, {"image": xin})):
                out[k].append(v)
        return {k: np.concatenate(v) for k, v in out.items()}

    def ood_check(self, small8: np.ndarray, feature_distance: float, colour: bool = False,
                  modality_hint: str = "", gate: np.ndarray | None = None) -> tuple[bool, str, dict]:
        """(in_distribution, reason, scores)."""
        img_d = self.gate.distance(image_stats(small8))
        scores = {"image_stats_distance": round(img_d, 3), "image_stats_limit": round(self.gate.limit, 3),
                  "feature_distance": round(float(feature_distance), 3),
                  "feature_limit": round(self.feature_limit, 3)}
        if gate is not None and self.gate_classes:
            g = np.asarray(gate, np.float64)
            scores["gate"] = {c: round(float(v), 4) for c, v in zip(self.gate_classes, g)}
            scores["gate_chest_limit"] = round(self.gate_limit, 4)
        if colour:
            return False, "a colour image, not a radiograph", scores
        if modality_hint and modality_hint.upper() not in ("CR", "DX", "DR", "RG", "OT", "SC", ""):
            return False, f"a {modality_hint} image, not a chest radiograph", scores
        if gate is not None and self.gate_classes:
            g = np.asarray(gate, np.float64)
            p_chest = float(g[self.gate_classes.index("chest")])
            if not np.isfinite(p_chest) or p_chest < self.gate_limit:
                other = max((c for c in self.gate_classes if c != "chest"), key=lambda c: g[self.gate_classes.index(c)])
                return False, GATE_REASONS.get(other, "it does not look like an upright frontal chest film"), scores
        if not np.isfinite(img_d) or img_d > self.gate.limit:
            return False, "its brightness, contrast and structure do not look like a frontal chest radiograph", scores
        if not np.isfinite(feature_distance) or feature_distance > self.feature_limit:
            return False, "the network's features are far from those of its training radiographs", scores
        return True, "", scores

    def analyse(self, img: np.ndarray, colour: bool | None = None, modality_hint: str = "",
                threshold: float | None = None) -> dict:
        """One image (H, W) or (H, W, 3) -> result dict (probability, label, heatmap, OOD verdict).
        ``threshold``: a site operating point in place of the file's threshold (label and heat scale)."""
        thr = self.threshold if threshold is None else float(threshold)
        small, was_colour, box = self.preprocess_box(img)
        colour = was_colour if colour is None else (colour or was_colour)
        o = self.run_batch(small[None])
        prob = float(o["prob"][0])
        gate = o["gate"][0] if "gate" in o else None
        ok, reason, scores = self.ood_check(small, float(o["ood"][0]), colour, modality_hint, gate)
        h, w = np.asarray(img).shape[:2]
        cropped = tuple(box) != (0, h, 0, w)
        label = ("pneumonia" if prob >= thr else "normal") if ok else "outside"
        grid = self.heat_grid(o["cam"][0], None if threshold is None else thr)
        zero, full = (self.heat_zero, self.heat_full) if threshold is None else heat_scale(self.spec, thr)
        return {"probability": prob, "threshold": thr, "label": label, "in_distribution": ok,
                "ood_reason": reason, "ood_message": "" if ok else f"{OUTSIDE}: {reason}",
                "ood_scores": scores, "heatmap": heat_on_image(grid, (h, w), box, fixed=True), "heat_grid": grid,
                "heat_scale": {"zero_logit": round(zero, 4), "full_logit": round(full, 4)},
                "cam": o["cam"][0], "features": o["features"][0], "box": [int(v) for v in box],
                "bands_cropped": cropped}

"""Lightbox polyp segmenter at inference time (ONNX Runtime; no torch, no Qt).

``PolypSegmenter(onnx_path).analyse(frames)`` -> one :class:`PolypFrame` per RGB uint8 frame:

- ``in_domain`` / ``domain_note``: the out-of-domain gate, two steps. (1) :func:`domain_check`, a colour
  rule before the model: a frame that does not look like a white-light colonoscopy frame (a grey X-ray,
  an echo frame, a photo of something else) never reaches it. (2) The feature gate, when the ONNX file
  has an ``ood`` output and its metadata a ``domain_gate.limit``: the whitened (Mahalanobis) distance of
  the frame's pooled bottleneck features from the training frames' (``domain_distance``) must not exceed
  the limit chosen on the validation split. Either way the frame gets no verdict: no mask, no finding,
  and the note says it is outside what this model was trained on.
- ``prob``: the polyp probability map (uint8 0..255 at the model's size; resize it to the frame to
  draw the overlay), ``confidence`` (the frame score: peak of the 5x5-smoothed probability inside the
  kept regions), ``box`` (x0, y0, x1, y1 as fractions of the frame, of the most confident region),
  ``area`` (fraction of the frame covered by the kept regions) and ``polyp`` (a region of at least
  ``min_area`` of the frame at probability >= ``threshold`` whose confidence is >= ``min_confidence``,
  the frame-level operating point chosen on the validation split and stated in the manifest).

``detect(frames)`` is the :class:`inference.endo.models.PolypOnnx` interface (list of Detection per
frame) with the gate applied. :class:`inference.endo.persistence.Persistence` turns per-frame
detections into findings (scene cuts end them, frozen frames carry them).

``tta`` (test-time augmentation): ``"flips4"`` runs each frame as it is, mirrored left-right, up-down and
both, and averages the four probability maps after undoing each flip; ``"d4"`` adds the four 90-degree
turned views (8 in all). The feature gate always reads the frame as it is. The manifest says which mode the
analysis of still images uses (``tta_stills``, chosen on the validation split, see the model card); live
mode and video sweeps run the single view, whose cost is what the live speed bar measures.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .models import IMAGENET_MEAN, IMAGENET_STD, Detection

OUT_OF_DOMAIN = "outside what this model was trained on (not a white-light colonoscopy frame)"
UNLIKE_TRAINING = "unlike every frame it was trained on"
ONNX_META_KEY = "lightbox.polyp"
LABEL = "polyp"
TTA_VIEWS = {"none": 1, "flips4": 4, "d4": 8}  # test-time augmentation mode -> number of views
TTA_MODES = tuple(TTA_VIEWS)


def check_tta(mode: str) -> str:
    if mode not in TTA_VIEWS:
        raise ValueError(f"unknown test-time augmentation {mode!r} (known: {', '.join(TTA_MODES)})")
    return mode


def _turn(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(a, -1, -2)


def tta_views(x: np.ndarray, mode: str) -> list[tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]]:
    """The views of a preprocessed batch ``x`` [N, C, S, S] for a TTA mode, each with the function that maps
    probability maps [..., S, S] of that view back onto the frame. The first view is the frame as it is."""
    views: list = [(x, lambda p: p)]
    if check_tta(mode) in ("flips4", "d4"):
        views += [(x[..., ::-1], lambda p: p[..., ::-1]), (x[..., ::-1, :], lambda p: p[..., ::-1, :]),
                  (x[..., ::-1, ::-1], lambda p: p[..., ::-1, ::-1])]
    if mode == "d4":
        t = _turn(x)
        views += [(t, _turn), (t[..., ::-1], lambda p: _turn(p[..., ::-1])),
                  (t[..., ::-1, :], lambda p: _turn(p[..., ::-1, :])), (t[..., ::-1, ::-1], lambda p: _turn(p[..., ::-1, ::-1]))]
    return views


# -- out-of-domain gate ----------------------------------------------------------------------------
@dataclass
class DomainThresholds:
    lit_v: int = 40            # HSV value above which a pixel is 'lit' (the scope's black border is not)
    min_lit: float = 0.15      # at least this fraction of the frame lit
    red_h_low: int = 25        # OpenCV hue (0..180): red-orange-pink = h <= 25 or h >= 155
    red_h_high: int = 155
    red_s: int = 50            # ... with saturation >= 50 / 255
    min_red: float = 0.60      # fraction of lit pixels that are reddish
    min_sat: float = 60.0      # median saturation of lit pixels (a grey image has ~0)


def domain_stats(frame: np.ndarray, th: DomainThresholds | None = None) -> dict[str, float]:
    import cv2

    th = th or DomainThresholds()
    f = frame
    if f.ndim == 2:
        f = np.repeat(f[..., None], 3, -1)
    if max(f.shape[:2]) > 256:  # the statistics need no detail
        s = 256 / max(f.shape[:2])
        f = cv2.resize(f, (max(1, int(f.shape[1] * s)), max(1, int(f.shape[0] * s))), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(np.ascontiguousarray(f[..., :3]), cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    lit = v > th.lit_v
    lit_frac = float(lit.mean())
    if lit.sum() < 16:
        return {"lit": lit_frac, "red": 0.0, "sat": 0.0}
    red = ((h <= th.red_h_low) | (h >= th.red_h_high)) & (s >= th.red_s)
    return {"lit": round(lit_frac, 4), "red": round(float(red[lit].mean()), 4), "sat": float(np.median(s[lit]))}


def domain_check(frame: np.ndarray, th: DomainThresholds | None = None) -> tuple[bool, str, dict[str, float]]:
    """(in domain?, why not, statistics). Colonoscopy frames are lit, saturated and mostly red-pink."""
    th = th or DomainThresholds()
    if frame is None or frame.ndim not in (2, 3) or frame.size == 0:
        return False, "not an image", {}
    st = domain_stats(frame, th)
    if frame.ndim == 2 or st["sat"] < th.min_sat:
        return False, f"{OUT_OF_DOMAIN}: a grey-scale image", st
    if st["lit"] < th.min_lit:
        return False, f"{OUT_OF_DOMAIN}: too dark", st
    if st["red"] < th.min_red:
        return False, f"{OUT_OF_DOMAIN}: colours unlike colonic mucosa", st
    return True, "", st


# -- the model -------------------------------------------------------------------------------------
@dataclass
class PolypFrame:
    in_domain: bool
    domain_note: str = ""
    polyp: bool = False
    confidence: float = 0.0
    box: list[float] | None = None
    area: float = 0.0
    prob: np.ndarray | None = None      # uint8 [S, S] probability * 255 (None when out of domain)
    regions: int = 0
    mask: np.ndarray | None = None      # bool [S, S]: the kept regions (what is drawn; None when none)
    domain_distance: float | None = None  # the feature gate's distance (None: no feature gate, or not reached)

    def detections(self) -> list[Detection]:
        if not self.polyp:
            return []
        return [Detection(LABEL, round(self.confidence, 4), self.box, "",
                          {"area": round(self.area, 5)})]


class PolypSegmenter:
    """Any ONNX segmenter in the ``endo-polyp`` contract (input image [N,3,S,S], output mask logits)."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None, threshold: float = 0.5,
                 min_area: float = 0.002, mean=IMAGENET_MEAN, std=IMAGENET_STD, gate: bool = True,
                 size: int | None = None, min_confidence: float = 0.5, tta: str = "none"):
        from ..runtimes import OnnxRuntime

        self.runtime = OnnxRuntime(onnx_path, threads=threads)
        self.input_name = self.runtime.input_names[0]
        shape = self.runtime.session.get_inputs()[0].shape
        fixed = len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int)
        self.size = int(shape[2]) if fixed else int(size or 352)
        if "mask" not in self.runtime.output_names:
            from ..registry import WeightsError

            raise WeightsError(f"{Path(onnx_path).name}: outputs {self.runtime.output_names}; "
                               "the endo-polyp contract needs an output named 'mask' [N, 1, H, W]")
        self.threshold, self.min_area, self.gate = float(threshold), float(min_area), gate
        self.domain_limit = self._domain_limit(onnx_path)
        self.min_confidence = float(min_confidence)
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        self.tta = check_tta(tta)

    def _domain_limit(self, onnx_path) -> float | None:
        """The feature gate's limit from the file's metadata (None: this file has no feature gate)."""
        if "ood" not in self.runtime.output_names:
            return None
        raw = self.runtime.session.get_modelmeta().custom_metadata_map.get(ONNX_META_KEY)
        try:
            limit = float(json.loads(raw)["domain_gate"]["limit"]) if raw else None
        except (ValueError, KeyError, TypeError):
            limit = None
        if limit is None or not np.isfinite(limit) or limit <= 0:
            from ..registry import WeightsError

            raise WeightsError(f"{Path(onnx_path).name}: an 'ood' output without a valid domain_gate.limit in its "
                               f"'{ONNX_META_KEY}' metadata")
        return limit

    @property
    def device(self) -> str:
        return self.runtime.device

    def preprocess(self, frames: list[np.ndarray]) -> np.ndarray:
        import cv2

        x = np.empty((len(frames), 3, self.size, self.size), np.float32)
        for i, f in enumerate(frames):
            a = cv2.resize(f[..., :3], (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32)
            x[i] = ((a / 255.0 - self.mean) / self.std).transpose(2, 0, 1)
        return x

    def probabilities(self, frames: list[np.ndarray]) -> np.ndarray:
        """float32 [N, h, w] polyp probability (no gate)."""
        return self.run(frames)[0]

    def run(self, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """(float32 [N, h, w] polyp probability, float32 [N] feature distance or None), no gate."""
        if not frames:
            return np.zeros((0, self.size, self.size), np.float32), None
        n = len(frames)
        views = tta_views(self.preprocess(frames), self.tta)
        x = views[0][0] if len(views) == 1 else np.ascontiguousarray(np.concatenate([v for v, _ in views]))
        out = self.runtime.run({self.input_name: x})
        p = (1.0 / (1.0 + np.exp(-np.clip(out["mask"][:, 0].astype(np.float32), -30, 30)))).astype(np.float32)
        if len(views) > 1:  # undo each view's flip/turn and average the probabilities
            p = np.mean([back(p[k * n:(k + 1) * n]) for k, (_, back) in enumerate(views)], axis=0).astype(np.float32)
        ood = out.get("ood")  # the gate reads the frame as it is (the first view)
        return p, (np.asarray(ood, np.float32)[:n].reshape(n) if ood is not None else None)

    def decode(self, p: np.ndarray) -> PolypFrame:
        """A probability map -> regions, box, area, confidence (in domain)."""
        import cv2

        h, w = p.shape
        n, lab, stats, _ = cv2.connectedComponentsWithStats((p >= self.threshold).astype(np.uint8), connectivity=8)
        smooth = cv2.blur(p, (5, 5))
        keep, best, best_box, area = 0, 0.0, None, 0
        kept: list[int] = []
        for j in range(1, n):
            x, y, bw, bh, a = stats[j]
            if a < self.min_area * h * w:
                continue
            keep += 1
            kept.append(j)
            area += int(a)
            c = float(smooth[lab == j].max())
            if c > best:
                best = c
                best_box = [round(x / w, 4), round(y / h, 4), round((x + bw) / w, 4), round((y + bh) / h, 4)]
        if not keep:  # no region: the frame score is the smoothed peak (below threshold or too small)
            best = float(smooth.max())
        found = keep > 0 and best >= self.min_confidence
        return PolypFrame(True, "", found, round(best, 4), best_box if found else None,
                          round(area / (h * w), 5) if found else 0.0, (np.clip(p, 0, 1) * 255).astype(np.uint8), keep,
                          np.isin(lab, kept) if found else None)

    def analyse(self, frames: list[np.ndarray]) -> list[PolypFrame]:
        out: list[PolypFrame | None] = [None] * len(frames)
        todo = []
        for i, f in enumerate(frames):
            if self.gate:
                ok, why, _ = domain_check(f)
                if not ok:
                    out[i] = PolypFrame(False, why)
                    continue
            todo.append(i)
        if todo:
            probs, dist = self.run([frames[i] for i in todo])
            for k, (i, p) in enumerate(zip(todo, probs)):
                d = None if dist is None else float(dist[k])
                if self.gate and d is not None and self.domain_limit is not None and not d <= self.domain_limit:
                    out[i] = PolypFrame(False, f"{OUT_OF_DOMAIN}: {UNLIKE_TRAINING} (feature distance {d:.0f}, "
                                               f"limit {self.domain_limit:.0f})", domain_distance=round(d, 2))
                    continue
                out[i] = self.decode(p)
                out[i].domain_distance = None if d is None else round(d, 2)
        return out  # type: ignore[return-value]

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        return [r.detections() for r in self.analyse(frames)]


# the persistence rule lives in inference.endo.persistence (with scene cuts and held frames)
from .persistence import Persistence  # noqa: E402,F401  (re-exported: the older import path)

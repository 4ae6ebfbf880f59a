"""Scene cuts: an abrupt change of view between two frames (no Qt).

A finding is one polyp seen over time; when the view changes abruptly (the recording was cut, a still
sequence jumps to another image, the scope is withdrawn into another segment between captures) the
polyp before the change and the one after it are not the same finding.

The measure, between a frame and the last usable frame before it (dark/blurred/glare frames are
not compared: they change the look of a frame without changing the view):

``hist``   Bhattacharyya distance (0 same .. 1 disjoint) between the 2-D hue x saturation histograms
           (18 x 8 bins) of the lit pixels (V > 40) of a 64 x 64 thumbnail: the colours in view.
           Brightness changes (auto-exposure) move V, not H/S; camera motion keeps the colours.
``corr``   motion-tolerant structure similarity: the best normalised cross-correlation of the centre of
           one 32 x 32 grey thumbnail anywhere within +-6 px (19 % of the frame) in the other, both ways
           round. Pan, small zoom and rotation between two frames keep it high; another view drops it.
``score``  ``hist / 0.30 + max(0, 1 - corr) / 0.60``; a cut when ``score > 1``.

Calibrated (``CUT_CALIBRATION``, ``python -m inference.endo.calibrate DATA_DIR``) on real frames:
1320 pairs of consecutive frames of simulated camera motion over 40 Kvasir-SEG / CVC-ClinicDB images
(pan 2, 5 and 10 % of the frame per frame, rotation 2 deg/frame, zoom, exposure jitter 5 %, motion blur in 20 % of frames) against 800 pairs of
different images (Kvasir-SEG x Kvasir-SEG, Kvasir-SEG x CVC-ClinicDB, polyp-free x polyp-free): no
false cut on motion (highest score 0.92, at 10 % of the frame per frame); 99.6 % of the changes of
image found (3 of 800 missed). Real 25-fps colonoscopy video was not available to calibrate on: the
motion pairs stand in for it (CVC-ClinicDB's "sequences" are frames seconds apart, not video).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HIST_SCALE = 0.30
CORR_SCALE = 0.60
CUT_SCORE = 1.0
THUMB = 32
SHIFT = 6
# measured by ``python -m inference.endo.calibrate DATA_DIR`` (the data sets of DATA.md)
CUT_CALIBRATION = {
    "motion pairs": 1320, "false cuts on motion": 0, "highest motion score": 0.92,
    "different-image pairs": 800, "cuts found between different images": 0.9962,
}


@dataclass(frozen=True)
class Signature:
    """What the cut measure keeps of a frame: a colour histogram and a small grey thumbnail."""

    hist: np.ndarray   # float32 [18, 8], sums to 1 (all zeros for a black frame)
    thumb: np.ndarray  # float32 [32, 32] grey


def signature(rgb: np.ndarray) -> Signature:
    import cv2

    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, -1)
    step = max(rgb.shape[:2]) // 256
    if step > 1:  # a 64-px summary needs no more than every step-th pixel of a large frame (and is 8x faster)
        rgb = rgb[::step, ::step]
    small = cv2.resize(np.ascontiguousarray(rgb[..., :3]), (64, 64), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    lit = (hsv[..., 2] > 40).astype(np.uint8)
    h = cv2.calcHist([hsv], [0, 1], lit, [18, 8], [0, 180, 0, 256]).astype(np.float32)
    h /= max(float(h.sum()), 1.0)
    grey = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
    return Signature(h, thumb)


def _matched(a: np.ndarray, b: np.ndarray, m: int = SHIFT) -> float:
    import cv2

    if float(a.std()) < 1e-3 or float(b.std()) < 1e-3:  # a flat image has no structure to match
        return 1.0 if abs(float(a.mean()) - float(b.mean())) < 8 else 0.0
    r1 = cv2.matchTemplate(b, a[m:-m, m:-m], cv2.TM_CCOEFF_NORMED).max()
    r2 = cv2.matchTemplate(a, b[m:-m, m:-m], cv2.TM_CCOEFF_NORMED).max()
    r = float(max(r1, r2))
    return r if np.isfinite(r) else 0.0


def distance(a: Signature, b: Signature) -> dict[str, float]:
    """{hist, corr, score} between two frames (see the module docstring)."""
    import cv2

    if a.hist.sum() <= 0 or b.hist.sum() <= 0:
        hd = 0.0 if a.hist.sum() == b.hist.sum() else 1.0
    else:
        hd = float(cv2.compareHist(a.hist, b.hist, cv2.HISTCMP_BHATTACHARYYA))
    corr = _matched(a.thumb, b.thumb)
    score = hd / HIST_SCALE + max(0.0, 1.0 - corr) / CORR_SCALE
    return {"hist": round(hd, 4), "corr": round(corr, 4), "score": round(score, 4)}


def is_cut(a: Signature, b: Signature, threshold: float = CUT_SCORE) -> bool:
    return distance(a, b)["score"] > threshold


class CutDetector:
    """Feed usable frames in order; ``update`` says whether this frame starts a new scene (the first
    frame does not: there is nothing before it)."""

    def __init__(self, threshold: float = CUT_SCORE):
        self.threshold = threshold
        self._last: Signature | None = None
        self.cuts: list[int] = []
        self.last_distance: dict[str, float] | None = None

    def update(self, index: int, rgb: np.ndarray) -> bool:
        sig = signature(rgb)
        cut = False
        if self._last is not None:
            self.last_distance = distance(self._last, sig)
            cut = self.last_distance["score"] > self.threshold
            if cut:
                self.cuts.append(int(index))
        self._last = sig
        return cut

    def reset(self) -> None:
        self._last = None
        self.last_distance = None


def cut_fraction(frames: list[np.ndarray], threshold: float = CUT_SCORE) -> float:
    """The fraction of consecutive pairs that are cuts: near 1 for a folder of unrelated stills, near 0
    for the frames of one video."""
    if len(frames) < 2:
        return 0.0
    sigs = [signature(f) for f in frames]
    return sum(distance(a, b)["score"] > threshold for a, b in zip(sigs, sigs[1:])) / (len(sigs) - 1)

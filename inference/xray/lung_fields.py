"""A simple, stated estimate of the lung fields on a frontal chest film (no lung masks exist in the data).

Used only to *measure* where the pneumonia heatmap lies (the model card's "heat in the lung fields"), never
by the model. Definition, on the model input (the film after the border crop, squashed to S x S):

1. smooth (Gaussian, sigma = S/64) and look only inside the thorax box: rows 8-92 %, columns 6-94 %;
2. a pixel is *lung-dark* when it is darker than the 50th percentile of that box;
3. the mediastinum/spine column (the 16 % of the width around the darkest-flanked bright column near the
   centre, searched in 40-60 %) is removed, which splits the field into a right and a left side;
4. on each side the largest lung-dark connected component that reaches the middle third of the rows is kept
   and replaced by its **convex hull** (so a consolidated, bright part of a lung that the hull spans still
   counts as lung), then closed and slightly dilated (3 % of S);
5. if a side yields nothing usable (< 3 % of the image), that side falls back to a fixed ellipse (centre
   28 % / 72 % of the width, 50 % of the height; half-axes 17 % x 32 %).

It is an estimate: it misses lung behind the heart and diaphragm domes, and on a film whose lung is almost
entirely white the hull may be small. The card shows overlays from it and states the heat share next to the
share of the image the fields cover (what a uniform heatmap would score).
"""
from __future__ import annotations

import numpy as np


def _ellipse(s: int, cx: float) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s] / s
    return ((xx - cx) / 0.17) ** 2 + ((yy - 0.5) / 0.32) ** 2 <= 1


def _walk(profile: np.ndarray, thr: float, max_start: int) -> tuple[int, int] | None:
    """On a row profile running from the mediastinum outward: the first dark run (< thr) that starts
    within ``max_start`` pixels, up to where the profile turns bright again (the chest wall)."""
    dark = profile < thr
    start = int(np.argmax(dark)) if dark.any() else -1
    if start < 0 or start > max_start:
        return None
    rest = dark[start:]
    end = start + (int(np.argmin(rest)) if not rest.all() else len(rest))
    return start, end


def lung_fields(img8: np.ndarray) -> tuple[np.ndarray, dict]:
    """(mask (S, S) bool, facts) for a square uint8 model input."""
    import cv2

    s = img8.shape[0]
    g = cv2.GaussianBlur(img8.astype(np.float32), (0, 0), max(1.0, s / 64))
    r0, r1, c0, c1 = int(0.08 * s), int(0.92 * s), int(0.06 * s), int(0.94 * s)
    thr = float(np.percentile(g[r0:r1, c0:c1], 55))
    prof = g[int(0.25 * s):int(0.75 * s)].mean(axis=0)
    lo, hi = int(0.40 * s), int(0.60 * s)
    mid = lo + int(np.argmax(prof[lo:hi]))
    half = int(0.04 * s)
    facts = {"midline_col": mid / s, "threshold": thr, "fallback": []}
    mask = np.zeros((s, s), bool)
    k = max(3, int(0.03 * s)) | 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    for side, cx in (("right", 0.28), ("left", 0.72)):
        part = np.zeros((s, s), np.uint8)
        for r in range(r0, r1):
            if side == "right":
                inner = mid - half
                seg = _walk(g[r, inner:c0 - 1 if c0 > 0 else None:-1], thr, int(0.25 * s))
                if seg:
                    part[r, inner - seg[1] + 1:inner - seg[0] + 1] = 1
            else:
                inner = mid + half
                seg = _walk(g[r, inner:c1], thr, int(0.25 * s))
                if seg:
                    part[r, inner + seg[0]:inner + seg[1]] = 1
        part = cv2.morphologyEx(part, cv2.MORPH_OPEN, kernel)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
        best, best_area = 0, 0
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            cy = y + h / 2
            if 0.3 * s < cy < 0.7 * s and h >= 0.3 * s and area > best_area:
                best, best_area = i, area
        if best and best_area >= 0.03 * s * s:
            side_mask = np.zeros((s, s), np.uint8)
            cv2.fillConvexPoly(side_mask, cv2.convexHull(cv2.findNonZero((lab == best).astype(np.uint8))), 1)
            side_mask = cv2.morphologyEx(side_mask, cv2.MORPH_CLOSE, kernel)
        else:
            side_mask = _ellipse(s, cx).astype(np.uint8)
            facts["fallback"].append(side)
        mask |= side_mask.astype(bool)
    facts["area_fraction"] = float(mask.mean())
    return mask, facts


def heat_share(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive heat (the CAM's positive part, bilinearly upsampled to the mask) inside the mask."""
    import cv2

    c = np.maximum(np.asarray(cam, np.float32), 0)
    if c.max() <= 0:
        return float("nan")
    up = np.maximum(cv2.resize(c, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_LINEAR), 0)
    tot = float(up.sum())
    return float(up[mask].sum() / tot) if tot > 0 else float("nan")

"""Endoscopy test clips with a known answer, built at test time from the five committed Kvasir-SEG
fixtures (tests/fixtures/endo, see ATTRIBUTION.md), a held-out polyp-free close-up (tests/fixtures/polyp) and
Lightbox's synthetic demo tunnel."""
from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "endo"
W, H = 256, 224


def kvasir_fixtures() -> list[tuple[np.ndarray, np.ndarray]]:
    """[(RGB uint8, bool mask)] of the five committed Kvasir-SEG polyps, sorted by id."""
    import cv2

    out = []
    for p in sorted(FIXTURES.glob("kvasir_*.jpg")):
        img = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        m = cv2.imread(str(p.with_name(p.stem + "_mask.png")), cv2.IMREAD_GRAYSCALE) > 0
        out.append((img, m))
    assert len(out) == 5, f"expected the five Kvasir fixtures in {FIXTURES}"
    return out


def moving(img: np.ndarray, mask: np.ndarray, n: int, k: int, speed: float = 3.0):
    """n frames of a slow camera move over one image (pan ``speed`` px/frame, zoom, roll) and the polyp
    mask moved with it: a polyp in view for n frames."""
    import cv2

    frames, masks = [], []
    h, w = img.shape[:2]
    for t in range(n):
        m = cv2.getRotationMatrix2D((w / 2 + speed * t - 12 * speed, h / 2 + 0.5 * speed * t * (-1) ** k),
                                    0.4 * t, 1.12 + 0.004 * t)
        f = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
        g = cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)
        frames.append(cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(g, (W, H), interpolation=cv2.INTER_NEAREST) > 0)
    return frames, masks


def held(img: np.ndarray, mask: np.ndarray, n: int):
    """The same frame n times (a frozen image)."""
    import cv2

    f = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA)
    g = cv2.resize(mask.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
    return [f] * n, [g] * n


def tunnel(n: int):
    """n polyp-free frames of the demo's synthetic tunnel (demo frames 0..n-1: no blob there)."""
    import cv2

    from inference.endo import demo

    fr = demo.frames()[:n]
    return [cv2.resize(f, (W, H), interpolation=cv2.INTER_AREA) for f in fr], [np.zeros((H, W), bool)] * n


def mucosa(n: int):
    """n polyp-free frames: a slow camera move over a real polyp-free close-up of the polyp model's held-out
    test split (tests/fixtures/polyp/normal_551_full.jpg, full size: the half-size copies blur into frames
    the selector skips). The demo's synthetic tunnel served here before; the v2 polyp model marks most of
    that tunnel as polyp (its model card), so it is no polyp-free reference."""
    import cv2

    img = cv2.cvtColor(cv2.imread(str(FIXTURES.parent / "polyp" / "normal_551_full.jpg")), cv2.COLOR_BGR2RGB)
    f, _ = moving(img, np.zeros(img.shape[:2], bool), n, 0)
    return f, [np.zeros((H, W), bool)] * n


def clip(kind: str, per: int = 25, lead_in: int = 0):
    """(frames, gt masks, segments): the five polyps joined by hard cuts, each ``per`` frames, moving
    (``kind="moving"``) or frozen (``kind="held"``); ``lead_in`` real polyp-free frames first (:func:`mucosa`).
    ``segments``: [(first, end)) of each polyp."""
    frames, masks, segs = [], [], []
    if lead_in:
        f, m = mucosa(lead_in)
        frames += f
        masks += m
    for k, (img, mask) in enumerate(kvasir_fixtures()):
        f, m = moving(img, mask, per, k) if kind == "moving" else held(img, mask, per)
        segs.append((len(frames), len(frames) + len(f)))
        frames += f
        masks += m
    return frames, masks, segs


def iou(a: np.ndarray, b: np.ndarray) -> float:
    import cv2

    a = cv2.resize(a.astype(np.uint8), (b.shape[1], b.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    u = (a | b).sum()
    return float((a & b).sum() / u) if u else 1.0

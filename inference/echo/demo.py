"""A synthetic apical-4-chamber-like phantom: a beating ellipse (the LV) in a fan-shaped sector with
speckle, burnt-in text labels and an ECG trace at the bottom, so the sector-crop step matters.

Everything is generated here (no third-party media). The ground truth is exported for tests:
``lv_mask(i)`` is the LV cavity of frame ``i`` on the full frame, ``ED_FRAMES`` / ``ES_FRAMES`` the
true end-diastolic and end-systolic frames.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.atomic import atomic_path

NAME = "demo_echo_a4c_phantom.mp4"
W, H = 480, 360
FPS = 50.0
SECONDS = 3.0
N = int(SECONDS * FPS)
HR_BPM = 60.0
SYSTOLE_FRAC = 0.35  # of the cycle
APEX = (W * 0.5, 24.0)
RADIUS = 270.0
HALF_ANGLE = np.deg2rad(38.0)
PHASE0 = 0.7  # the loop starts in diastole, so ED frames fall inside the loop
# LV cavity (semi-axes in px): long axis along the beam, ED and ES sizes
LV_CENTRE = (W * 0.56, 145.0)
LV_ED = (34.0, 92.0)  # (short, long) semi-axes at end-diastole
LV_ES = (24.0, 78.0)


def _phase(i: int) -> float:
    """0..1 position in the cardiac cycle; 0 = end-diastole."""
    t = i / FPS
    return (t * HR_BPM / 60.0 + PHASE0) % 1.0


def _contraction(i: int) -> float:
    """0 at ED, 1 at ES: smooth ejection then slower filling."""
    p = _phase(i)
    if p < SYSTOLE_FRAC:
        return 0.5 - 0.5 * np.cos(np.pi * p / SYSTOLE_FRAC)
    q = (p - SYSTOLE_FRAC) / (1 - SYSTOLE_FRAC)
    return 0.5 + 0.5 * np.cos(np.pi * min(1.0, q * 1.4))


def lv_axes(i: int) -> tuple[float, float]:
    c = _contraction(i)
    return (LV_ED[0] + (LV_ES[0] - LV_ED[0]) * c, LV_ED[1] + (LV_ES[1] - LV_ED[1]) * c)


def lv_mask(i: int, shape: tuple[int, int] = (H, W)) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    a, b = lv_axes(i)
    cx, cy = LV_CENTRE
    cy = cy + (LV_ED[1] - b) * 0.6  # the base moves toward the apex in systole; the apex stays put
    return ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0


def _truth_frames() -> tuple[list[int], list[int]]:
    c = np.array([_contraction(i) for i in range(N)])
    ed = [i for i in range(1, N - 1) if c[i] <= c[i - 1] and c[i] < c[i + 1] and c[i] < 0.05]
    es = [i for i in range(1, N - 1) if c[i] >= c[i - 1] and c[i] > c[i + 1] and c[i] > 0.95]
    return ed, es


ED_FRAMES, ES_FRAMES = _truth_frames()


def area_length_volume(i: int) -> float:
    """Single-plane area-length volume of the phantom LV (px^3), for the phantom's true EF."""
    a, b = lv_axes(i)
    area = np.pi * a * b
    return 8.0 * area ** 2 / (3.0 * np.pi * (2 * b))


TRUE_EF = round(100.0 * (1 - area_length_volume(ES_FRAMES[0]) / area_length_volume(ED_FRAMES[0])), 1)


def _sector_mask() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    dx, dy = xx - APEX[0], yy - APEX[1]
    r = np.hypot(dx, dy)
    ang = np.arctan2(dx, dy)
    return (r <= RADIUS) & (np.abs(ang) <= HALF_ANGLE) & (dy > 0)


def _ecg(t: np.ndarray) -> np.ndarray:
    p = (t * HR_BPM / 60.0 + PHASE0 - 0.03) % 1.0  # R wave just before mechanical ED
    g = lambda mu, s, a: a * np.exp(-0.5 * ((p - mu) / s) ** 2)  # noqa: E731
    return (g(0.84, 0.025, 0.15) + g(0.97, 0.006, -0.12) + g(0.985, 0.008, 1.0) + g(0.0, 0.008, 1.0)
            + g(1.0, 0.008, 1.0) + g(0.015, 0.008, -0.25) + g(0.3, 0.05, 0.3))


def frames() -> np.ndarray:
    import cv2

    rng = np.random.default_rng(6)
    sector = _sector_mask()
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    depth = np.hypot(xx - APEX[0], yy - APEX[1]) / RADIUS
    speckle_a = rng.gamma(1.2, 1.0, (H, W)).astype(np.float32)
    speckle_b = rng.gamma(1.2, 1.0, (H, W)).astype(np.float32)
    # static anatomy: RV (left), atria (below), septum and walls are the bright tissue left around them
    rv = ((xx - W * 0.38) / 30) ** 2 + ((yy - 160) / 72) ** 2 <= 1
    la = ((xx - W * 0.57) / 36) ** 2 + ((yy - 262) / 30) ** 2 <= 1
    ra = ((xx - W * 0.39) / 30) ** 2 + ((yy - 258) / 28) ** 2 <= 1
    ecg_t = np.linspace(-2.0, 0.0, 240)
    out = np.empty((N, H, W, 3), np.uint8)
    for i in range(N):
        w = 0.5 + 0.5 * np.sin(2 * np.pi * i / N)
        sp = speckle_a * w + speckle_b * (1 - w)
        tissue = 70 + 55 * sp * (1.1 - 0.5 * depth)
        cav = lv_mask(i) | rv | la | ra
        img = np.where(cav, 6 + 6 * sp, tissue)
        img = np.where(sector, img, 0).clip(0, 255).astype(np.uint8)
        rgb = np.repeat(img[..., None], 3, axis=2)
        # burnt-in labels (white text) and a depth scale
        font = cv2.FONT_HERSHEY_SIMPLEX
        cv2.putText(rgb, "LIGHTBOX PHANTOM", (8, 18), font, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
        cv2.putText(rgb, "A4C  50 Hz", (8, 36), font, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
        cv2.putText(rgb, "Gn 55  DR 60", (W - 110, 18), font, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
        cv2.putText(rgb, "16 cm", (W - 60, 36), font, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
        for k in range(1, 9):
            y = int(APEX[1] + k * RADIUS / 8 * np.cos(HALF_ANGLE))
            cv2.circle(rgb, (int(W * 0.5 + RADIUS * np.sin(HALF_ANGLE) + 14), y), 2, (200, 200, 200), -1)
        # ECG trace (green) with the current-time cursor at the right end
        t_now = i / FPS
        e = _ecg(t_now + ecg_t)
        pts = np.stack([np.linspace(40, W - 40, len(e)), H - 22 - 26 * e], axis=1).astype(np.int32)
        cv2.polylines(rgb, [pts], False, (40, 220, 60), 1, cv2.LINE_AA)
        cv2.circle(rgb, tuple(int(v) for v in pts[-1]), 3, (255, 240, 60), -1)
        cv2.putText(rgb, f"HR {HR_BPM:.0f}", (8, H - 8), font, 0.4, (40, 220, 60), 1, cv2.LINE_AA)
        out[i] = rgb
    return out


def write(path: Path, video: np.ndarray, fps: float = FPS) -> Path:
    from inference.demo import write_rgb_video

    return write_rgb_video(path, video, fps)


def make(folder) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / NAME
    if p.exists() and p.stat().st_size > 0:
        return p
    with atomic_path(p) as tmp:
        write(tmp, frames())
    return p

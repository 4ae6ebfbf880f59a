"""From a full-size cine loop to EchoNet-Dynamic's input.

EchoNet-Dynamic (Ouyang et al., Nature 2020) was trained on 112x112 RGB videos cropped to the
ultrasound sector (labels, ECG trace and borders removed), normalised per channel with the training
set's mean and std, and fed to the EF model as clips of 32 frames taken every 2nd frame
(``(C, F, H, W)``, channels first). At test time the EF is the mean over all clips (one clip per start
frame). This module reproduces those steps in numpy/OpenCV and adds what a real file needs first:
finding the sector in the full frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 112
CLIP_FRAMES = 32
CLIP_PERIOD = 2
TRAIN_FPS = 50.0  # EchoNet-Dynamic videos are ~50 fps: 32 frames x period 2 span ~1.26 s

# Per-channel mean / std of the EchoNet-Dynamic training videos (0..255 scale). The reference computes
# them at run time (get_mean_and_std on the train split) and does not store them in the checkpoint;
# these defaults are approximate and unverified. The manifest ([models.echonet-ef.inputs] mean/std)
# is what the pipeline uses: recompute them from the dataset before clinical use.
MEAN = (32.6, 32.7, 33.0)
STD = (49.9, 50.0, 50.2)


@dataclass(frozen=True)
class CropBox:
    x0: int
    y0: int
    x1: int  # exclusive
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]

    @classmethod
    def from_list(cls, v) -> "CropBox":
        return cls(*[int(round(x)) for x in v])

    def clamp(self, w: int, h: int, min_side: int = 16) -> "CropBox":
        x0 = max(0, min(self.x0, w - min_side))
        y0 = max(0, min(self.y0, h - min_side))
        x1 = max(x0 + min_side, min(self.x1, w))
        y1 = max(y0 + min_side, min(self.y1, h))
        return CropBox(x0, y0, x1, y1)


def _grey(frames: np.ndarray) -> np.ndarray:
    return frames.mean(axis=3) if frames.ndim == 4 else frames.astype(np.float32)


def find_sector(frames: np.ndarray, max_frames: int = 16) -> CropBox:
    """The bounding box of the ultrasound sector in full-size frames (F, H, W, 3).

    The sector is the union of the large bright, grey regions of the temporal median frame once thin
    structures are opened away: burnt-in text, calipers and the (usually coloured) ECG trace are
    small or thin and do not survive a morphological opening; colour pixels are excluded outright. The box is made square around the
    sector (EchoNet's 112x112 input is square) and clipped to the frame.
    """
    import cv2

    f = frames[np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int)]
    h, w = f.shape[1:3]
    chroma = np.median(f.max(axis=3) - f.min(axis=3), axis=0)
    level = np.median(f.mean(axis=3, dtype=np.float32), axis=0)
    mask = ((level > 15) & (chroma < 40)).astype(np.uint8)
    k = max(3, int(round(min(h, w) / 30)) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k * 3, k * 3)))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return CropBox(0, 0, w, h)
    # cavities (dark) split the bright tissue into several pieces; the sector is all pieces of
    # a substantial size together (text and the ECG trace are gone after the opening)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = 1 + np.flatnonzero(areas >= max(0.2 * areas.max(), 0.005 * w * h))
    if keep.size == 0:  # only specks survive the opening (a tiny or damaged frame): keep the whole frame
        return CropBox(0, 0, w, h)
    x = int(stats[keep, cv2.CC_STAT_LEFT].min())
    y = int(stats[keep, cv2.CC_STAT_TOP].min())
    bw = int((stats[keep, cv2.CC_STAT_LEFT] + stats[keep, cv2.CC_STAT_WIDTH]).max()) - x
    bh = int((stats[keep, cv2.CC_STAT_TOP] + stats[keep, cv2.CC_STAT_HEIGHT]).max()) - y
    if bw * bh < 0.05 * w * h:  # nothing sector-like: keep the whole frame
        return CropBox(0, 0, w, h)
    return CropBox(x, y, x + bw, y + bh).clamp(w, h)


def square_geometry(box: CropBox, size: int = SIZE) -> tuple[float, float, float]:
    """How the model grid maps back to the frame: the box is centred in a black square (no aspect
    distortion, nothing outside the box enters), so grid (u, v) is frame
    ``(x_off + u * scale, y_off + v * scale)``; returns (x_off, y_off, scale)."""
    side = max(box.width, box.height)
    return box.x0 - (side - box.width) / 2.0, box.y0 - (side - box.height) / 2.0, side / float(size)


def crop_resize(frames: np.ndarray, box: CropBox, size: int = SIZE) -> np.ndarray:
    """(F, H, W, 3) uint8 -> (F, size, size, 3) uint8: the crop box, letterboxed to a square with
    black (the background of an echo) and resized."""
    import cv2

    box = box.clamp(frames.shape[2], frames.shape[1])
    side = max(box.width, box.height)
    ox, oy = (side - box.width) // 2, (side - box.height) // 2
    canvas = np.zeros((side, side, 3), np.uint8)
    out = np.empty((len(frames), size, size, 3), np.uint8)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    for i, fr in enumerate(frames):
        canvas[oy:oy + box.height, ox:ox + box.width] = fr[box.y0:box.y1, box.x0:box.x1]
        out[i] = cv2.resize(canvas, (size, size), interpolation=interp)
    return out


def mask_to_frame(mask: np.ndarray, box: CropBox, frame_shape: tuple[int, int]) -> np.ndarray:
    """A (112, 112) model-grid mask back onto the full frame (H, W) bool."""
    import cv2

    h, w = frame_shape
    box = box.clamp(w, h)
    side = max(box.width, box.height)
    big = cv2.resize(mask.astype(np.uint8), (side, side), interpolation=cv2.INTER_NEAREST)
    ox, oy = (side - box.width) // 2, (side - box.height) // 2
    out = np.zeros((h, w), bool)
    out[box.y0:box.y1, box.x0:box.x1] = big[oy:oy + box.height, ox:ox + box.width] > 0
    return out


def normalise(small: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    """(F, 112, 112, 3) uint8 -> float32 (3, F, 112, 112): (x - mean) / std per channel."""
    if small.ndim != 4 or small.shape[-1] != 3:
        raise ValueError(f"frames must be (F, H, W, 3), got shape {small.shape}")
    x = small.astype(np.float32).transpose(3, 0, 1, 2)
    if small.dtype != np.uint8 and not np.isfinite(x).all():
        raise ValueError("frames have NaN or infinite pixel values")
    m = np.asarray(mean, np.float32).reshape(3, 1, 1, 1)
    s = np.asarray(std, np.float32).reshape(3, 1, 1, 1)
    return (x - m) / s


def frame_batch(small: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    """Frames for the segmentation model: (F, 3, 112, 112) float32."""
    return np.ascontiguousarray(normalise(small, mean, std).transpose(1, 0, 2, 3))


def clip_indices(start_time_s: float, fps: float, n_frames: int, frames: int = CLIP_FRAMES,
                 period: int = CLIP_PERIOD, train_fps: float | None = TRAIN_FPS) -> np.ndarray:
    """Frame indices of one clip. At ~50 fps this is ``start + period * arange(frames)`` exactly as in
    the reference; at other rates the clip keeps the same duration (period / 50 s between samples),
    so a 30 fps loop is not fed to the model as if it were slowed down. Indices past the end repeat
    the last frame (the reference pads short videos with black frames; we keep the heart visible
    and say so)."""
    if not (np.isfinite(fps) and fps > 0 and np.isfinite(start_time_s)):
        raise ValueError(f"frame rate {fps!r} / start {start_time_s!r} s are not usable")
    if n_frames <= 0:
        raise ValueError("the loop has no frames")
    step_s = period / train_fps if train_fps else period / fps
    t = start_time_s + step_s * np.arange(frames)
    idx = np.round(t * fps).astype(int)
    return np.clip(idx, 0, n_frames - 1)


def clip_span_frames(fps: float, frames: int = CLIP_FRAMES, period: int = CLIP_PERIOD,
                     train_fps: float | None = TRAIN_FPS) -> int:
    """How many source frames one clip spans."""
    step = period / train_fps * fps if train_fps else period
    return int(round(step * (frames - 1))) + 1


def all_clip_starts(n_frames: int, fps: float, train_fps: float | None = TRAIN_FPS) -> np.ndarray:
    """Every start frame the reference's test-time 'all clips' would use."""
    span = clip_span_frames(fps, train_fps=train_fps)
    return np.arange(max(1, n_frames - span + 1))


def choose_clip_starts(n_frames: int, fps: float, max_clips: int, must: list[int] | None = None,
                       train_fps: float | None = TRAIN_FPS) -> np.ndarray:
    """A subset of the all-clips starts: the ``must`` starts (one per beat) + evenly spaced others,
    at most ``max_clips`` in all (0 = every start, as the reference)."""
    starts = all_clip_starts(n_frames, fps, train_fps)
    if max_clips <= 0 or len(starts) <= max_clips:
        return starts
    chosen = sorted(set(int(s) for s in (must or []) if 0 <= s <= starts[-1]))[:max_clips]
    rest = max_clips - len(chosen)
    if rest > 0:
        grid = np.linspace(starts[0], starts[-1], rest + len(chosen)).round().astype(int)
        for g in grid:
            if len(chosen) >= max_clips:
                break
            if all(abs(g - c) > 2 for c in chosen):
                chosen.append(int(g))
    return np.array(sorted(set(chosen)), int)


def make_clip(norm: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(3, F, H, W) normalised video + indices -> (1, 3, 32, H, W) float32."""
    return np.ascontiguousarray(norm[:, idx][None])


# -- beats from the LV area curve -------------------------------------------------------------
def smooth(x: np.ndarray, fps: float, window_s: float = 0.06) -> np.ndarray:
    k = max(1, int(round(window_s * fps)))
    if k <= 1 or len(x) < 3 * k:
        return x.astype(float)
    ker = np.ones(k) / k
    pad = np.pad(x.astype(float), (k, k), mode="edge")
    return np.convolve(pad, ker, mode="same")[k:-k]


def _extrema(x: np.ndarray, dist: int, thr: float, last_of_plateau: bool) -> list[int]:
    """Local maxima of ``x`` at least ``dist`` apart that rise ``thr`` above the curve on at least one
    side within two cycles' reach (so a peak at the loop's start or end still counts)."""
    from scipy.signal import find_peaks

    pk, props = find_peaks(x, distance=dist, plateau_size=1)
    out = []
    for j, p in enumerate(pk):
        lo, hi = max(0, p - 2 * dist), min(len(x), p + 2 * dist + 1)
        if max(x[p] - x[lo:p + 1].min(), x[p] - x[p:hi].min()) >= thr:
            out.append(int(props["right_edges"][j] if last_of_plateau else p))
    return out


def ed_es_frames(area: np.ndarray, fps: float, min_cycle_s: float = 0.3) -> tuple[list[int], list[int]]:
    """End-diastole = LV area peaks, end-systole = troughs (frame indices in the area curve).

    Extrema must be at least ``min_cycle_s`` apart and stand out by a quarter of the curve's range
    (speckle noise and partial masks do not make beats). On a flat top (diastasis) ED is the last
    frame before the area falls: end-diastole is the frame just before contraction starts.
    """
    a = smooth(np.asarray(area, float), fps)
    if len(a) < 3 or not np.isfinite(a).all():
        return [], []
    rng = float(np.percentile(a, 95) - np.percentile(a, 5))
    if rng <= 0 or rng < 0.05 * float(np.median(a)):  # <5 % area change: no measurable beat
        return [], []
    dist = max(1, int(round(min_cycle_s * fps)))
    thr = 0.25 * rng
    return _extrema(a, dist, thr, True), _extrema(-a, dist, thr, False)


def beats_from(ed: list[int], es: list[int]) -> list[dict]:
    """Beats as ED -> ES -> next ED triples (a beat needs one ES between two EDs)."""
    out = []
    for a, b in zip(ed[:-1], ed[1:]):
        inside = [s for s in es if a < s < b]
        if inside:
            out.append({"ed": int(a), "es": int(inside[0]), "ed_next": int(b)})
    if not out and ed and es:  # a single systole seen: ED then ES (no closing ED in the loop)
        first = ed[0]
        after = [s for s in es if s > first]
        if after:
            out.append({"ed": int(first), "es": int(after[0]), "ed_next": None})
    return out


def beat_clip_start(beat: dict, fps: float, n_frames: int, train_fps: float | None = TRAIN_FPS) -> int:
    """Start frame of the clip aligned to a beat: the clip is centred on the beat (ED .. next ED),
    so it covers the ejection and the filling around it."""
    span = clip_span_frames(fps, train_fps=train_fps)
    end = beat["ed_next"] if beat.get("ed_next") is not None else beat["es"] + (beat["es"] - beat["ed"])
    centre = (beat["ed"] + end) / 2
    start = int(round(centre - (span - 1) / 2))
    return int(max(0, min(start, max(0, n_frames - span))))


def ef_category(ef: float | None) -> str:
    """ASE/EACVI 2015 LVEF ranges (both sexes, simplified): normal >= 53 %, mildly 41-52,
    moderately 30-40, severely < 30."""
    if ef is None:
        return ""
    if ef >= 53:
        return "normal"
    if ef >= 41:
        return "mild"
    if ef >= 30:
        return "moderate"
    return "severe"


CATEGORIES = ("normal", "mild", "moderate", "severe")

"""From a cine loop to EchoNet-Dynamic's input.

EchoNet-Dynamic (Ouyang et al., Nature 2020) was trained on 112x112 videos (the dataset's AVIs, made
from DICOM by the reference's conversion: ``reference.convert_dicom``), normalised per channel with
the training set's mean and std, and fed to the EF model as clips of 32 frames taken every 2nd frame
(``reference`` holds those facts). Lightbox prepares a loop along one of three paths, and every
result says which (``describe_path``):

- ``native``           the frames are already 112x112 (EchoNet's own format): unchanged;
- ``reference-dicom``  a DICOM loop: the reference's DICOM-to-AVI conversion steps;
- ``sector``           any other full-size video, or a crop box the user drew: Lightbox's sector
                       finder + letterboxed resize (the reference has no step for non-DICOM video).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIZE = 112
CLIP_FRAMES = 32
CLIP_PERIOD = 2
TRAIN_FPS = 50.0  # EchoNet-Dynamic videos are mostly ~50 fps: 32 frames x period 2 span ~1.26 s there

PATH_NATIVE = "native"
PATH_DICOM = "reference-dicom"
PATH_SECTOR = "sector"
PATHS = (PATH_NATIVE, PATH_DICOM, PATH_SECTOR)

# Per-channel mean / std of the EchoNet-Dynamic training videos (0..255 scale). The reference computes
# them at run time (get_mean_and_std over 128 random training videos) and does not store them in the
# checkpoint; these defaults are approximate and unverified. The manifest ([models.echonet-ef.inputs]
# mean/std, with mean_std_source) is what the pipeline uses, and results say "approximate
# normalisation" until a site replaces them with values computed on the training split.
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


def choose_path(frames: np.ndarray, container: str = "", mode: str = "auto") -> str:
    """Which preparation a loop gets: ``mode`` "auto" picks native for 112x112 frames, the reference's
    DICOM conversion for DICOM, Lightbox's sector crop otherwise; "reference-dicom" / "sector" force one
    (a 112x112 loop stays native unless "sector" is forced)."""
    from inference.echo import reference as R

    if mode == PATH_SECTOR:
        return PATH_SECTOR
    if R.is_native(frames):
        return PATH_NATIVE
    if mode == PATH_DICOM or container == "dicom":
        return PATH_DICOM
    return PATH_SECTOR


def auto_box(frames: np.ndarray, path: str) -> CropBox:
    """The region of the full frame that becomes the 112x112 model grid on ``path``."""
    from inference.echo import reference as R

    if path == PATH_NATIVE:
        return CropBox(0, 0, frames.shape[2], frames.shape[1])
    if path == PATH_DICOM:
        try:
            return CropBox(*R.dicom_plan(frames).box)
        except ValueError:
            pass
    return find_sector(frames)


def describe_path(path: str, plan=None, by_user: bool = False) -> str:
    """One line for the result: how the frames were made into the model's input."""
    if path == PATH_NATIVE:
        return "EchoNet 112×112 format: frames passed to the model unchanged"
    if path == PATH_DICOM:
        cut = ""
        if plan is not None:
            cut = (f" (banner cut at row {plan.y_crop}, {plan.side_cut} px off each end of the "
                   f"{plan.side_axis or 'no side'}, margin {plan.margin} px)")
        return ("reference DICOM conversion: banner cut, centre square, 10 % margins, channel 0, bicubic "
                f"112×112, sector mask{cut}; no MJPG round trip")
    who = "crop box set by the user" if by_user else "sector found automatically"
    return (f"Lightbox sector crop ({who}), letterboxed and resized to 112×112 in colour — not a step of "
            "the reference, which has none for non-DICOM video")


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
    """Lightbox's own ED/ES rule, kept as a labelled alternative to the reference's
    (``reference.systole_frames``): end-diastole = LV area peaks, end-systole = troughs.

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


def beat_clip_start(beat: dict, n_frames: int, frames: int = CLIP_FRAMES, period: int = CLIP_PERIOD) -> int:
    """Lightbox's alternative beat clip (not the reference's ES - 32): the clip centred on the beat
    (ED .. next ED), every 2nd frame as the reference samples."""
    span = (frames - 1) * period + 1
    end = beat["ed_next"] if beat.get("ed_next") is not None else beat["es"] + (beat["es"] - beat["ed"])
    centre = (beat["ed"] + end) / 2
    start = int(round(centre - (span - 1) / 2))
    return int(max(0, min(start, max(0, max(n_frames, frames * period) - span))))


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

"""EchoNet-Dynamic's own test-time procedure, written for Lightbox from the reference's documented steps.

The reference implementation (github.com/echonet/dynamic) may not be redistributed or modified, so
nothing here is copied from it: these are the facts of its procedure, re-implemented and tested
against an independent oracle (tests/test_echo_fidelity.py).

Facts this module follows (reference file in brackets):

- Clips [datasets/echo.py]: a video (3, F, 112, 112) normalised per channel is cut into clips of
  ``FRAMES`` = 32 frames taken every ``PERIOD`` = 2nd *frame* (the frame rate plays no part). A video
  shorter than ``FRAMES * PERIOD`` = 64 frames is padded at the end with zero frames *after*
  normalisation (zero = the training set's mean colour). Test-time evaluation ("all clips") uses
  every start frame ``0 .. F - 1 - (FRAMES - 1) * PERIOD`` and the whole-video EF is the mean of the
  clip outputs [utils/video.py].
- Systole [utils/segmentation.py]: the LV size is the count of pixels with logit > 0 in every frame
  (no smoothing). With ``s`` the sizes sorted ascending and ``n`` frames, the trim range is
  ``s[round(n ** 0.95)] - s[round(n ** 0.05)]`` (powers, as written in the reference: the lower index
  is 1 for any usual length, the upper ~77 % of n); end-systole frames are the peaks of ``-size``
  found by ``scipy.signal.find_peaks`` with ``distance=20`` frames and ``prominence=0.5 * range``.
  The reference detects no end-diastole.
- Beat-by-beat EF [scripts/beat_by_beat_analysis.R]: for every end-systole frame, the clip starting
  at ``ES - 32`` (clamped to 0) is taken from the all-clips predictions; a start with no clip (past
  the last start) drops the beat; the beat-by-beat EF is the mean over the beats.
- DICOM conversion [scripts/ConvertDICOMToAVI.ipynb]: cut the top rows down to the first row of the
  first frame whose mean (over width and channels) is below 1; cut the longer side symmetrically by
  ``int(|W - H| / 2)`` on each end; take channel 0; cut a margin of ``int(height / 10)`` (height after
  the previous cuts, used for rows and columns alike); resize to 112x112 bicubic; zero the pixels
  outside the sector (``col + row > 67`` and ``col - row < 67`` on the 112 grid); write three equal
  channels (the reference then stores them as an MJPG AVI).
- Checkpoints [utils/video.py, utils/segmentation.py]: ``torch.save`` of ``{epoch, state_dict
  (DataParallel "module." keys), period, frames, best_loss, loss, r2, opt_dict, scheduler_dict}``;
  ``r2`` is ``sklearn.metrics.r2_score`` (a numpy float64), so the file pickles a numpy scalar and
  its dtype. ``NUMPY_SAFE_GLOBALS`` lets ``torch.load(weights_only=True)`` accept exactly those.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FRAMES = 32
PERIOD = 2
SIZE = 112
SYSTOLE_DISTANCE = 20  # frames, whatever the frame rate
SYSTOLE_PROMINENCE = 0.5  # of the trimmed size range
BEAT_OFFSET = 32  # beat clip starts this many frames before end-systole


# -- clips ----------------------------------------------------------------------------------------
def padded_length(n_frames: int, frames: int = FRAMES, period: int = PERIOD) -> int:
    """Frames the video has once padded: at least ``frames * period``."""
    return max(int(n_frames), frames * period)


def pad_video(norm: np.ndarray, frames: int = FRAMES, period: int = PERIOD) -> tuple[np.ndarray, int]:
    """(3, F, H, W) normalised video -> (padded video, number of zero frames appended)."""
    c, f, h, w = norm.shape
    need = padded_length(f, frames, period) - f
    if need <= 0:
        return norm, 0
    return np.concatenate([norm, np.zeros((c, need, h, w), norm.dtype)], axis=1), need


def all_starts(n_frames: int, frames: int = FRAMES, period: int = PERIOD) -> np.ndarray:
    """Every clip start of the reference's test-time 'all clips' (on the padded video)."""
    return np.arange(padded_length(n_frames, frames, period) - (frames - 1) * period)


def clip_frames(start: int, frames: int = FRAMES, period: int = PERIOD) -> np.ndarray:
    """Frame indices (into the padded video) of the clip starting at ``start``."""
    return int(start) + period * np.arange(frames)


def pick_starts(n_frames: int, max_clips: int, must=(), frames: int = FRAMES,
                period: int = PERIOD) -> np.ndarray:
    """A bounded subset of :func:`all_starts` (Lightbox's CPU default; 0 = all, as the reference):
    the ``must`` starts (beat clips) first, then starts evenly spread over the loop."""
    starts = all_starts(n_frames, frames, period)
    if max_clips <= 0 or len(starts) <= max_clips:
        return starts
    chosen = sorted({int(s) for s in must if 0 <= int(s) <= int(starts[-1])})[:max_clips]
    for g in np.linspace(starts[0], starts[-1], max_clips).round().astype(int):
        if len(chosen) >= max_clips:
            break
        if int(g) not in chosen and all(abs(int(g) - c) > 2 for c in chosen):
            chosen.append(int(g))
    for g in starts:  # crowded by the beat starts: fill from the remaining starts
        if len(chosen) >= max_clips:
            break
        if int(g) not in chosen:
            chosen.append(int(g))
    return np.array(sorted(chosen), int)


# -- systole, beats -------------------------------------------------------------------------------
def trim_range(size: np.ndarray) -> float:
    """The reference's size range: sorted[round(n ** 0.95)] - sorted[round(n ** 0.05)].

    For n <= 5 the reference's upper index runs past the end (it raises); Lightbox clamps it to the
    last element (the pipeline never gets there: it needs 16 frames)."""
    s = np.sort(np.asarray(size))
    n = len(s)
    if n == 0:
        return 0.0
    lo = min(round(n ** 0.05), n - 1)
    hi = min(round(n ** 0.95), n - 1)
    return float(s[hi]) - float(s[lo])


def _peaks(curve: np.ndarray, prominence: float, distance: int) -> list[int]:
    from scipy.signal import find_peaks

    if len(curve) < 3:
        return []
    return [int(i) for i in find_peaks(curve, distance=distance, prominence=prominence)[0]]


def systole_frames(size, distance: int = SYSTOLE_DISTANCE, prominence: float = SYSTOLE_PROMINENCE) -> list[int]:
    """End-systole frames exactly as the reference finds them (peaks of the negated raw LV size)."""
    size = np.asarray(size)
    return _peaks(-size, prominence * trim_range(size), distance)


def diastole_frames(size, distance: int = SYSTOLE_DISTANCE, prominence: float = SYSTOLE_PROMINENCE) -> list[int]:
    """End-diastole frames: the reference has no ED rule; Lightbox mirrors its systole rule (peaks of
    the raw LV size, same distance and prominence). Labelled as Lightbox's where shown."""
    size = np.asarray(size)
    return _peaks(size, prominence * trim_range(size), distance)


def beat_starts(es_frames, n_frames: int, offset: int = BEAT_OFFSET, frames: int = FRAMES,
                period: int = PERIOD) -> list[tuple[int, int]]:
    """(ES frame, clip start) for every end-systole whose clip ``max(ES - 32, 0)`` exists."""
    last = int(all_starts(n_frames, frames, period)[-1])
    out = []
    for es in es_frames:
        s = max(int(es) - offset, 0)
        if s <= last:
            out.append((int(es), s))
    return out


# -- DICOM conversion -----------------------------------------------------------------------------
def sector_mask(d: int = SIZE) -> np.ndarray:
    """(d, d) bool: the pixels the reference's conversion keeps (a triangle opening downwards)."""
    cut = d // 2 + d // 10
    row, col = np.mgrid[0:d, 0:d]
    return ((col + row) > cut) & ((col - row) < cut)


@dataclass
class DicomPlan:
    """Where the reference's conversion cuts one loop (full-frame pixel coordinates)."""

    y_crop: int  # rows cut from the top (the banner)
    side_cut: int  # int(|W - H| / 2) cut from each end of the longer side
    side_axis: str  # "columns" | "rows" | ""
    margin: int  # int(height / 10)
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) region resized to 112x112
    notes: list[str] = field(default_factory=list)


def dicom_plan(frames: np.ndarray) -> DicomPlan:
    """The cuts for (F, H, W[, C]) frames, decided on the first frame as the reference does."""
    f0 = np.asarray(frames[0], np.float64)
    row_mean = f0.reshape(f0.shape[0], -1).mean(axis=1)
    notes = []
    dark = np.flatnonzero(row_mean < 1)
    if dark.size:
        y_crop = int(dark[0])
    else:  # the reference fails on such a file; Lightbox keeps every row
        y_crop = 0
        notes.append("no black row below the banner: no rows cut (the reference's conversion would fail here)")
    h = frames.shape[1] - y_crop
    w = frames.shape[2]
    cut = int(abs(w - h) / 2)
    x0, y0, x1, y1 = 0, y_crop, w, frames.shape[1]
    axis = ""
    if cut > 0:
        if h < w:
            x0, x1, axis = cut, w - cut, "columns"
        else:
            y0, y1, axis = y_crop + cut, frames.shape[1] - cut, "rows"
    height = y1 - y0
    m = int(height / 10)
    bx0, by0 = x0 + m, y0 + m
    bx1, by1 = min(x0 + height - m, x1), min(y0 + height - m, y1)
    if bx1 - bx0 < 16 or by1 - by0 < 16:
        raise ValueError(f"the reference's DICOM cuts leave {max(0, bx1 - bx0)}x{max(0, by1 - by0)} px")
    return DicomPlan(y_crop, cut, axis, m, (bx0, by0, bx1, by1), notes)


def convert_dicom(frames: np.ndarray, plan: DicomPlan | None = None, size: int = SIZE) -> tuple[np.ndarray, DicomPlan]:
    """(F, H, W, 3) uint8 RGB -> (F, size, size, 3) uint8 grey (3 equal channels), the reference's
    conversion steps. Returns the frames and the cuts used."""
    import cv2

    plan = plan or dicom_plan(frames)
    x0, y0, x1, y1 = plan.box
    mask = sector_mask(size)
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, fr in enumerate(frames):
        ch0 = fr[y0:y1, x0:x1, 0] if fr.ndim == 3 else fr[y0:y1, x0:x1]
        g = cv2.resize(np.ascontiguousarray(ch0), (size, size), interpolation=cv2.INTER_CUBIC)
        g[~mask] = 0
        out[i] = g[..., None]
    return out, plan


def is_native(frames: np.ndarray, size: int = SIZE) -> bool:
    """Frames already on EchoNet's grid (the dataset's 112x112 AVIs): they go to the model unchanged."""
    return frames.ndim == 4 and frames.shape[1] == size and frames.shape[2] == size


# -- checkpoints -----------------------------------------------------------------------------------
_SCALAR_KINDS = "biuf"  # bool, int, uint, float: what r2 / loss / epoch values can be


def _numpy_scalar(dtype, data=None):
    """numpy's scalar reconstructor, for numeric dtypes only."""
    import pickle

    if not isinstance(dtype, np.dtype) or dtype.kind not in _SCALAR_KINDS or dtype.hasobject:
        raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype!r} is not allowed in a checkpoint")
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return scalar(dtype, data) if data is not None else scalar(dtype)


def _numpy_dtype(spec, align=False, copy=False):
    """numpy.dtype for the numeric kinds a checkpoint's scalars use."""
    import pickle

    if not isinstance(spec, str) or len(spec) > 4:
        raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not allowed in a checkpoint")
    dt = np.dtype(spec, align, copy)
    if dt.kind not in _SCALAR_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not allowed in a checkpoint")
    return dt


def numpy_safe_globals() -> list:
    """What ``torch.serialization.safe_globals`` needs for a checkpoint holding numpy numbers:
    the scalar reconstructor (under its numpy 1.x and 2.x names), ``numpy.dtype`` and the numeric
    dtype classes (their state is set on load). Both callables refuse anything non-numeric."""
    out: list = [(_numpy_scalar, "numpy.core.multiarray.scalar"),
                 (_numpy_scalar, "numpy._core.multiarray.scalar"),
                 (_numpy_dtype, "numpy.dtype")]
    for code in ("?", "b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "e", "f", "d"):
        cls = type(np.dtype(code))
        out.append((cls, f"{cls.__module__}.{cls.__qualname__}"))
    return out


def plain(value):
    """A checkpoint's numpy scalars as Python numbers (info shown to the user, stored as JSON)."""
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value

"""Frame selection without weights: which frames are worth showing to a model (or a reader)?

Each frame gets a :class:`FrameQuality` record and one status, checked in this order (the first
that applies wins, so every skipped frame is counted once):

``dark``         under-exposed: mean luma of the field of view < ``dark_mean`` or more than
                 ``dark_fraction`` of it below ``dark_level``
``overexposed``  mean luma > ``bright_mean`` or more than ``bright_fraction`` of pixels >= ``bright_level``
``blur``         variance of the Laplacian (grey frame resized to ``work_width`` px) < ``blur_var``
``glare``        specular white-out: more than ``glare_fraction`` of the field is near-white and
                 unsaturated (V >= ``glare_level``, S <= ``glare_sat``)
``duplicate``    near-duplicate of the last *kept* frame: 64-bit difference hash (dHash) within
                 ``hash_bits`` bits AND mean absolute difference of 64x64 thumbnails below
                 ``dup_mad`` grey levels (the hash finds candidates fast; the thumbnail check keeps a
                 moving but self-similar tunnel view from being called a duplicate)
``ok``           kept for analysis

The field of view is the lit part of the frame: the black border/mask of the scope image is left
out of the exposure and glare fractions. All thresholds live in :class:`QualityConfig` (numbers
are for 8-bit frames measured at ``work_width`` = 256 px).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

import numpy as np

STATUSES = ("ok", "dark", "overexposed", "blur", "glare", "duplicate")
SKIP_REASONS = STATUSES[1:]
STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}


@dataclass(frozen=True)
class QualityConfig:
    work_width: int = 256
    dark_mean: float = 40.0
    dark_level: int = 30
    dark_fraction: float = 0.85
    bright_mean: float = 215.0
    bright_level: int = 245
    bright_fraction: float = 0.6
    blur_var: float = 150.0
    glare_level: int = 240
    glare_sat: int = 40
    glare_fraction: float = 0.08
    hash_bits: int = 6
    dup_mad: float = 2.0
    mask_level: int = 12  # pixels darker than this in the time-invariant border are "outside the scope"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FrameQuality:
    index: int
    time_s: float
    status: str
    mean_luma: float
    dark_fraction: float
    bright_fraction: float
    blur_var: float
    glare_fraction: float
    dhash: int
    hash_distance: int | None  # to the last kept frame
    mad: float | None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["dhash"] = f"{self.dhash:016x}"
        return d


def dhash(grey: np.ndarray, size: int = 8) -> int:
    """Difference hash: sign of horizontal gradients of a (size x size+1) thumbnail -> 64-bit int."""
    import cv2

    small = cv2.resize(grey, (size + 1, size), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0]) if size == 8 else int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return int(bin(a ^ b).count("1"))


@dataclass
class FrameSelector:
    """Stateful per-video frame selection (the duplicate test needs the last kept frame)."""

    config: QualityConfig = field(default_factory=QualityConfig)
    fps: float = 25.0
    _ref_hash: int | None = None
    _ref_thumb: np.ndarray | None = None
    _fov: np.ndarray | None = None
    records: list[FrameQuality] = field(default_factory=list)

    def reset(self) -> None:
        self._ref_hash = self._ref_thumb = None
        self.records = []

    def _prepare(self, rgb: np.ndarray):
        import cv2

        c = self.config
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 1:
            raise ValueError(f"a frame must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        if w != c.work_width:
            nh = max(8, int(round(h * c.work_width / w)))
            rgb = cv2.resize(rgb, (c.work_width, nh), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return grey, hsv

    def _field_of_view(self, grey: np.ndarray) -> np.ndarray:
        """The round/octagonal lit area of the scope image: estimated once from the first frames
        as the pixels that are not pitch black; the border is the same on every frame."""
        if self._fov is None or self._fov.shape != grey.shape:
            fov = grey > self.config.mask_level
            if fov.mean() < 0.2:  # a dark first frame says nothing about the mask: use all pixels
                return np.ones_like(grey, dtype=bool)
            import cv2

            # fill holes (the dark lumen in the middle belongs to the field of view)
            cnts, _ = cv2.findContours(fov.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            filled = np.zeros(grey.shape, np.uint8)
            if cnts:
                big = max(cnts, key=cv2.contourArea)
                cv2.drawContours(filled, [big], -1, 1, thickness=-1)
            # stay clear of the mask's edge: its step would dominate the blur measure
            filled = cv2.erode(filled, np.ones((9, 9), np.uint8))
            self._fov = filled.astype(bool) if filled.mean() > 0.2 else np.ones_like(grey, dtype=bool)
        return self._fov

    def measure(self, index: int, rgb: np.ndarray) -> FrameQuality:
        import cv2

        c = self.config
        grey, hsv = self._prepare(rgb)
        fov = self._field_of_view(grey)
        g = grey[fov]
        n = max(g.size, 1)
        mean_luma = float(g.mean()) if g.size else 0.0
        dark_frac = float((g < c.dark_level).sum() / n)
        bright_frac = float((g >= c.bright_level).sum() / n)
        lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
        blur_var = float(lap[fov].var()) if g.size else 0.0
        s, v = hsv[..., 1][fov], hsv[..., 2][fov]
        glare_frac = float(((v >= c.glare_level) & (s <= c.glare_sat)).sum() / n)
        h = dhash(grey)
        thumb = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)

        if mean_luma < c.dark_mean or dark_frac > c.dark_fraction:
            status = "dark"
        elif mean_luma > c.bright_mean or bright_frac > c.bright_fraction:
            status = "overexposed"
        elif blur_var < c.blur_var:
            status = "blur"
        elif glare_frac > c.glare_fraction:
            status = "glare"
        else:
            status = "ok"
        dist = mad = None
        if self._ref_hash is not None:
            dist = hamming(h, self._ref_hash)
            mad = float(np.abs(thumb - self._ref_thumb).mean())
        if status == "ok" and dist is not None and dist <= c.hash_bits and mad <= c.dup_mad:
            status = "duplicate"
        if status == "ok":
            self._ref_hash, self._ref_thumb = h, thumb
        rec = FrameQuality(index, index / self.fps if self.fps else 0.0, status, round(mean_luma, 2),
                           round(dark_frac, 4), round(bright_frac, 4), round(blur_var, 2), round(glare_frac, 4),
                           h, dist, None if mad is None else round(mad, 3))
        self.records.append(rec)
        return rec


def measure_single(rgb: np.ndarray, config: QualityConfig | None = None) -> FrameQuality:
    """Quality of one frame on its own (no duplicate test): for live mode and a frame under review."""
    return FrameSelector(config or QualityConfig()).measure(0, rgb)


def skipped_counts(records: Iterable[FrameQuality]) -> dict[str, int]:
    counts = {r: 0 for r in SKIP_REASONS}
    for rec in records:
        if rec.status != "ok":
            counts[rec.status] += 1
    return counts


def bands(statuses: Iterable[str], fps: float) -> list[dict]:
    """Runs of equal status as timeline bands: [{status, start, end (exclusive), t0, t1}]."""
    out: list[dict] = []
    for i, s in enumerate(statuses):
        if out and out[-1]["status"] == s and out[-1]["end"] == i:
            out[-1]["end"] = i + 1
        else:
            out.append({"status": s, "start": i, "end": i + 1})
    for b in out:
        b["t0"] = round(b["start"] / fps, 3) if fps else 0.0
        b["t1"] = round(b["end"] / fps, 3) if fps else 0.0
    return out

"""The per-frame polyp masks of an analysis, stored compactly so that playback can show them without
running the model again (no Qt).

A :class:`MaskTrack` holds, for one video:

- which frames the model analysed (runs of frame indices),
- the mask of each analysed frame on which the model found a polyp (the kept regions), downsampled to
  at most ``MAX_SIDE`` x ``MAX_SIDE`` (the model's own grid when smaller) and stored as a bit-packed,
  zlib-compressed plane (a typical polyp mask: 100-400 bytes; a frame without a polyp: nothing),
- held (frozen / duplicate) frames and the analysed frame each one repeats.

``to_bytes()`` / ``from_bytes()`` give the stored form (magic ``LBMT1``, a JSON header, then the
planes); the store keeps it beside the result (``Store.result_blob``). Masks are square: the model
sees the frame stretched to a square, so a mask is stretched back over the frame to draw it.
Decoding is lazy (a few planes are kept decoded for stepping back and forth).
"""
from __future__ import annotations

import collections
import json
import struct
import zlib
from bisect import bisect_right

import numpy as np

MAGIC = b"LBMT1\n"
MAX_SIDE = 128
BLOB_NAME = "polyp_masks"


class MaskFormatError(ValueError):
    pass


def _runs(indices: list[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for i in sorted(set(indices)):
        if out and out[-1][1] == i:
            out[-1][1] = i + 1
        else:
            out.append([i, i + 1])
    return out


def downsample(mask: np.ndarray, side: int = MAX_SIDE) -> np.ndarray:
    """A bool/uint8 mask -> bool [s, s] with s = min(side, its size); area-averaged, then >= 0.5."""
    import cv2

    m = np.asarray(mask)
    m = (m >= 128) if m.dtype == np.uint8 and m.max(initial=0) > 1 else m.astype(bool)
    s = min(side, max(m.shape))
    if m.shape == (s, s):
        return m
    return cv2.resize(m.astype(np.float32), (s, s), interpolation=cv2.INTER_AREA) >= 0.5


class MaskTrack:
    def __init__(self, n_frames: int = 0, side: int | None = None):
        self.n_frames = int(n_frames)
        self.side = side
        self._analysed: list[int] = []          # in the order added (normally increasing)
        self._planes: dict[int, bytes] = {}     # frame -> zlib(packbits(mask))
        self._held: dict[int, int] = {}         # held frame -> analysed frame it repeats
        self._runs: list[list[int]] | None = None
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()

    # -- building ----------------------------------------------------------------------------------
    def add(self, index: int, mask: np.ndarray | None) -> None:
        """An analysed frame and its polyp mask (None or empty: analysed, no polyp)."""
        index = int(index)
        self._analysed.append(index)
        self._runs = None
        self.n_frames = max(self.n_frames, index + 1)
        if mask is None:
            return
        m = downsample(mask, self.side or MAX_SIDE)
        if not m.any():
            return
        if self.side is None:
            self.side = m.shape[0]
        elif m.shape[0] != self.side:
            m = downsample(m, self.side)
        self._planes[index] = zlib.compress(np.packbits(m.ravel()).tobytes(), 6)
        self._cache.pop(index, None)

    def hold(self, index: int, source: int) -> None:
        """A held (frozen) frame that repeats analysed frame ``source``."""
        self._held[int(index)] = int(source)
        self.n_frames = max(self.n_frames, int(index) + 1)

    # -- reading -----------------------------------------------------------------------------------
    def analysed_runs(self) -> list[list[int]]:
        if self._runs is None:
            self._runs = _runs(self._analysed)
        return self._runs

    def is_analysed(self, index: int) -> bool:
        runs = self.analysed_runs()
        k = bisect_right([r[0] for r in runs], index) - 1
        return k >= 0 and runs[k][0] <= index < runs[k][1]

    def source_of(self, index: int) -> int | None:
        """The analysed frame whose mask applies to ``index`` (itself, or the frame a held frame repeats)."""
        if self.is_analysed(index):
            return int(index)
        return self._held.get(int(index))

    def mask(self, index: int) -> np.ndarray | None:
        """bool [side, side] polyp mask shown on frame ``index``, or None (no polyp, or not analysed)."""
        src = self.source_of(index)
        if src is None or src not in self._planes:
            return None
        m = self._cache.get(src)
        if m is None:
            bits = np.unpackbits(np.frombuffer(zlib.decompress(self._planes[src]), np.uint8))
            m = bits[: self.side * self.side].reshape(self.side, self.side).astype(bool)
            self._cache[src] = m
            while len(self._cache) > 32:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(src)
        return m

    @property
    def frames_with_mask(self) -> list[int]:
        return sorted(self._planes)

    @property
    def n_analysed(self) -> int:
        return sum(b - a for a, b in self.analysed_runs())

    def __len__(self) -> int:
        return len(self._planes)

    # -- stored form -------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        idx = sorted(self._planes)
        held_runs: list[list[int]] = []
        for i in sorted(self._held):
            s = self._held[i]
            if held_runs and held_runs[-1][1] == i and held_runs[-1][2] == s:
                held_runs[-1][1] = i + 1
            else:
                held_runs.append([i, i + 1, s])
        header = {"version": 1, "n_frames": self.n_frames, "side": self.side or 0,
                  "analysed": self.analysed_runs(), "held": held_runs,
                  "masks": [[i, len(self._planes[i])] for i in idx]}
        h = json.dumps(header, separators=(",", ":")).encode()
        return MAGIC + struct.pack("<I", len(h)) + h + b"".join(self._planes[i] for i in idx)

    @classmethod
    def from_bytes(cls, data: bytes) -> "MaskTrack":
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
            raise MaskFormatError("not a Lightbox mask track")
        (n,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
        start = len(MAGIC) + 4
        try:
            header = json.loads(data[start:start + n])
        except ValueError:
            raise MaskFormatError("mask track header is damaged") from None
        t = cls(int(header.get("n_frames", 0)), int(header.get("side") or 0) or None)
        for a, b in header.get("analysed", []):
            t._analysed.extend(range(int(a), int(b)))
        for a, b, s in header.get("held", []):
            for i in range(int(a), int(b)):
                t._held[i] = int(s)
        off = start + n
        for i, ln in header.get("masks", []):
            if off + ln > len(data):
                raise MaskFormatError("mask track is truncated")
            t._planes[int(i)] = bytes(data[off:off + ln])
            off += ln
        return t


def contours(mask: np.ndarray, upscale: int = 4) -> list[np.ndarray]:
    """Outline polygons of a mask in fractions of the frame (x, y in 0..1), smoothed by drawing them
    from a bilinearly upscaled copy (a 128-px mask stretched over a 1080p frame would show its steps)."""
    import cv2

    m = np.asarray(mask)
    if m.dtype != bool:
        m = m >= (128 if m.dtype == np.uint8 and m.max(initial=0) > 1 else 0.5)
    if not m.any():
        return []
    h, w = m.shape
    big = cv2.resize(m.astype(np.float32), (w * upscale, h * upscale), interpolation=cv2.INTER_LINEAR) >= 0.5
    cnts, _ = cv2.findContours(big.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in cnts:
        if len(c) < 3:
            continue
        p = c[:, 0, :].astype(np.float32)
        p[:, 0] = (p[:, 0] + 0.5) / (w * upscale)
        p[:, 1] = (p[:, 1] + 0.5) / (h * upscale)
        out.append(p)
    return out


def overlay(rgb: np.ndarray, mask: np.ndarray | None, colour=(57, 197, 207), opacity: float = 0.35,
            outline_px: int | None = None) -> np.ndarray:
    """The frame with the mask drawn on it (translucent fill + outline), RGB uint8, for key frames in
    the export bundle and the PDF."""
    import cv2

    out = np.ascontiguousarray(rgb[..., :3]).copy()
    if mask is None:
        return out
    h, w = out.shape[:2]
    m = cv2.resize(np.asarray(mask, np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
    if not m.any():
        return out
    col = np.array(colour, np.float32)
    out[m] = (out[m].astype(np.float32) * (1 - opacity) + col * opacity).astype(np.uint8)
    lw = outline_px or max(1, round(max(h, w) / 240))
    polys = [np.round(p * [w, h]).astype(np.int32) for p in contours(mask)]
    cv2.polylines(out, polys, True, tuple(int(c) for c in colour), lw, cv2.LINE_AA)
    return out

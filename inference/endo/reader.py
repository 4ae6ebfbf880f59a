"""Endoscopy reader: video (MP4 / AVI / MOV / MKV through OpenCV), folders of frames or of stills, and
single still images (PNG / JPEG / TIFF / BMP).

A procedure video can be an hour long (90 000 frames of 1080p = 560 GB as raw RGB), so nothing
here loads a whole video. ``read()`` checks the file, measures it and returns a Study whose
``data["source"]`` is a lazy :class:`FrameSource`: ``source.frame(i)`` decodes one frame on demand
(frame-accurate seek, LRU cache of recent frames), ``source.iter_frames()`` decodes sequentially for
whole-video analysis. Each consumer that runs on its own thread takes its own decoder with
``source.reopen()`` (an OpenCV capture is not thread-safe).

Frames are RGB uint8 arrays (H, W, 3).

``sniff`` tells endoscopy from echo for the extensions both readers claim (.mp4, .avi):
endoscopy is colourful (saturated red/pink mucosa), echo is greyscale (a fan-shaped sector, at
most a small colour-Doppler box), so a grey video scores low here. For an image file it scores the
content as an endoscopy photograph (:mod:`inference.endo.stills`: colour, the scope's black mask,
text overlay in the border), so a colour endoscopy JPEG opens here and a grey radiograph does not.

A folder is read as a **sequence** (the frames of one video) or as a **set** of unrelated stills (one
verdict per image); ``folder_as="auto"`` (the default) decides by the scene cuts between its first
images (:func:`inference.endo.stills.folder_is_set`). A set is its own study (its identity is the
folder's hash with "set:" before it), so a folder read both ways keeps two sets of results.
"""
from __future__ import annotations

import collections
import hashlib
import re
import threading
from pathlib import Path
from typing import Iterator

import numpy as np

from inference.study import ReadError, Study, sha256_file
from inference.reading import require_file

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v")
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
EXTENSIONS = VIDEO_EXTENSIONS + FRAME_EXTENSIONS
FOLDER_AS = ("auto", "sequence", "set")
FOLDER_FPS = 25.0  # a folder of frames carries no rate; assumed (and said so in the notes)
MAX_PIXELS = 4096 * 4096
CACHE_FRAMES = 64
CACHE_BYTES = 256 << 20  # the LRU cache holds at most this much decoded video (64 frames of 720p, 21 of 1080p)


def _cv2():
    try:
        import cv2
    except ImportError:  # pragma: no cover - dependency of the project
        raise ReadError(None, "OpenCV (opencv-python-headless) is not installed; video cannot be read") from None
    return cv2


# -- frame sources ----------------------------------------------------------------------------
class FrameSource:
    """A lazily decoded sequence of RGB frames with an LRU cache (thread-safe per instance)."""

    path: Path
    fps: float
    n_frames: int
    width: int
    height: int

    def __init__(self, cache_frames: int = CACHE_FRAMES):
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._cache_size = cache_frames
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return self.n_frames

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps if self.fps else 0.0

    def time_of(self, index: int) -> float:
        return index / self.fps if self.fps else 0.0

    def index_at(self, t: float) -> int:
        return int(min(max(round(t * self.fps), 0), self.n_frames - 1))

    def frame(self, index: int) -> np.ndarray:
        if not 0 <= index < self.n_frames:
            raise IndexError(f"frame {index} outside 0..{self.n_frames - 1}")
        with self._lock:
            f = self._cache.get(index)
            if f is not None:
                self._cache.move_to_end(index)
                return f
            f = self._decode(index)
            self._cache[index] = f
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return f

    def cached(self, index: int) -> np.ndarray | None:
        with self._lock:
            return self._cache.get(index)

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Sequential decode (fast path for whole-video analysis); does not fill the cache."""
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        for i in range(start, stop):
            yield i, self._decode(i)

    def reopen(self) -> "FrameSource":
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _decode(self, index: int) -> np.ndarray:
        raise NotImplementedError


class VideoSource(FrameSource):
    """OpenCV decoder over one video file. Sequential reads continue the stream; any other index
    seeks (OpenCV's FFmpeg backend seeks to the previous key frame and decodes forward, so the
    frame returned is exactly frame ``index``)."""

    def __init__(self, path: str | Path, fps: float, n_frames: int, width: int, height: int,
                 cache_frames: int = CACHE_FRAMES):
        super().__init__(cache_frames)
        self.path = Path(path)
        self.fps, self.n_frames, self.width, self.height = fps, n_frames, width, height
        self._cache_size = max(4, min(cache_frames, CACHE_BYTES // max(width * height * 3, 1)))
        self._cap = None
        self._next = 0  # index the capture will decode next

    def _capture(self):
        if self._cap is None:
            cv2 = _cv2()
            self._cap = cv2.VideoCapture(str(self.path))
            self._next = 0
            if not self._cap.isOpened():
                raise ReadError(self.path, "the video can no longer be opened")
        return self._cap

    def _decode(self, index: int) -> np.ndarray:
        cv2 = _cv2()
        with self._lock:
            cap = self._capture()
            if index != self._next:
                if 0 < index - self._next <= 12:  # a short hop forward: decoding is cheaper than seeking
                    for _ in range(index - self._next):
                        cap.grab()
                else:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                self._next = index
            ok, bgr = cap.read()
            if not ok or bgr is None:
                self._next = -1  # force a seek next time
                raise ReadError(self.path, f"frame {index} could not be decoded (damaged or truncated video)")
            self._next = index + 1
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def reopen(self) -> "VideoSource":
        return VideoSource(self.path, self.fps, self.n_frames, self.width, self.height, self._cache_size)

    def close(self) -> None:
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None


class FolderSource(FrameSource):
    """A folder of still frames (png/jpg/...), in natural sort order; also one still image (a list of
    one file). ``keep_size``: each image keeps its own size (a set of stills); otherwise every frame
    is resized to the first one's (the frames of one video)."""

    def __init__(self, path: str | Path, files: list[Path], fps: float, width: int, height: int,
                 cache_frames: int = CACHE_FRAMES, keep_size: bool = False):
        super().__init__(cache_frames)
        self.path = Path(path)
        self.files = files
        self.keep_size = keep_size
        self.fps, self.n_frames, self.width, self.height = fps, len(files), width, height
        self._cache_size = max(4, min(cache_frames, CACHE_BYTES // max(width * height * 3, 1)))

    def _decode(self, index: int) -> np.ndarray:
        img = _imread(self.files[index])
        if img is None:
            raise ReadError(self.files[index], "this image cannot be decoded")
        if img.shape[0] * img.shape[1] > MAX_PIXELS:
            raise ReadError(self.files[index], f"the image is {img.shape[1]}x{img.shape[0]}; Lightbox opens "
                                               "images up to 4096x4096")
        if not self.keep_size and img.shape[:2] != (self.height, self.width):
            img = _cv2().resize(img, (self.width, self.height), interpolation=_cv2().INTER_AREA)
        return img

    def reopen(self) -> "FolderSource":
        return FolderSource(self.path, self.files, self.fps, self.width, self.height, self._cache_size,
                            self.keep_size)


def _imread(path: Path) -> np.ndarray | None:
    """RGB uint8, or None when the file cannot be decoded (PNG chunk bombs refused before decoding;
    processor TIFFs that mislabel their colour samples read as stored)."""
    from inference.endo.stills import read_image

    try:
        return read_image(path)
    except (OSError, ValueError):
        return None


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


# -- colourfulness (sniff) --------------------------------------------------------------------
def colour_stats(rgb: np.ndarray) -> dict[str, float]:
    """How colourful a frame is, over its non-black pixels.

    ``saturated``: fraction of lit pixels with HSV saturation > 0.25; ``reddish``: fraction of lit
    pixels whose hue is red/pink/orange (the colour of mucosa) and saturated.
    """
    cv2 = _cv2()
    small = cv2.resize(rgb, (96, 96), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)  # H 0..179, S, V 0..255
    h, s, v = hsv[..., 0].astype(np.int32), hsv[..., 1], hsv[..., 2]
    lit = v > 30
    n = max(int(lit.sum()), 1)
    sat = (s > 64) & lit
    red = sat & ((h <= 25) | (h >= 150))
    blue = sat & (h >= 90) & (h <= 135)
    return {"lit": float(lit.mean()), "saturated": float(sat.sum() / n), "reddish": float(red.sum() / n),
            "blue": float(blue.sum() / n)}


def endo_score(frames: list[np.ndarray]) -> float:
    """0..1: how much these frames look like endoscopy (colourful, red-dominant) rather than grey."""
    if not frames:
        return 0.0
    stats = [colour_stats(f) for f in frames]
    sat = float(np.median([s["saturated"] for s in stats]))
    red = float(np.median([s["reddish"] for s in stats]))
    blue = float(np.median([s["blue"] for s in stats]))
    if sat < 0.05:  # greyscale video (echo, fluoroscopy): not endoscopy
        return 0.05
    if sat < 0.25 or blue > 0.25 * sat:
        # mostly grey with a coloured patch, or red AND blue: a colour-Doppler echo box, not mucosa
        return 0.15
    score = 0.3 + 0.4 * min(sat / 0.4, 1.0) + 0.3 * min(red / 0.3, 1.0)
    return float(min(score, 0.95))


def _sample_frames(path: Path, k: int = 4) -> list[np.ndarray]:
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return []
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        out = []
        idx = sorted({int(i) for i in np.linspace(0, max(n - 1, 0) * 0.8, k)}) if n > 0 else [0]
        for i in idx:
            if i:
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, bgr = cap.read()
            if ok and bgr is not None:
                out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        return out
    finally:
        cap.release()


def sniff(path: str | Path, head: bytes = b"") -> float:
    path = Path(path)
    if path.is_dir():
        return 0.9 if any(p.suffix.lower() in FRAME_EXTENSIONS for p in path.iterdir()) else 0.0
    if path.suffix.lower() in FRAME_EXTENSIONS:
        from inference.endo.stills import sniff_image

        return sniff_image(path)
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        return 0.0
    try:
        return endo_score(_sample_frames(path))
    except Exception:
        return 0.0


# -- read -------------------------------------------------------------------------------------
def frame_files(path: Path) -> list[Path]:
    """A frame folder's images in frame order (natural sort: 2.png before 10.png)."""
    return sorted((p for p in Path(path).iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS),
                  key=_natural_key)


def folder_sha256(path: Path, files: list[Path] | None = None) -> str:
    """A frame folder's identity: its frame images' names and contents, in frame order."""
    h = hashlib.sha256()
    for f in frame_files(path) if files is None else files:
        h.update(f.name.encode())
        h.update(bytes.fromhex(sha256_file(f)))
    return h.hexdigest()


def read_folder(path: Path, folder_as: str = "auto") -> Study:
    if folder_as not in FOLDER_AS:
        raise ReadError(path, f"a folder is read as {' or '.join(FOLDER_AS)}, not {folder_as!r}")
    files = frame_files(path)
    if not files:
        raise ReadError(path, "the folder holds no frame images (.png, .jpg, .bmp, .tif)")
    first = _imread(files[0])
    if first is None:
        raise ReadError(files[0], "the first frame image cannot be decoded")
    h, w = first.shape[:2]
    if h * w > MAX_PIXELS:
        raise ReadError(path, f"frames are {w}x{h}; Lightbox opens frames up to 4096x4096")
    how = ""
    if folder_as == "auto":
        from inference.endo.stills import folder_is_set

        is_set, frac = folder_is_set(files, _imread)
        folder_as = "set" if is_set else "sequence"
        how = (f" ({100 * frac:.0f} % of its first consecutive images are scene cuts; File > Open folder as… "
               "reads it the other way)")
    sha = folder_sha256(path, files)
    if folder_as == "set":
        src = FolderSource(path, files, FOLDER_FPS, w, h, keep_size=True)
        meta = {"format": "frames", "folder_as": "set", "fps": FOLDER_FPS, "frame_count": len(files),
                "duration_s": src.duration_s, "width": w, "height": h, "first_file": files[0].name,
                "last_file": files[-1].name}
        notes = [f"read as a set of stills, each analysed on its own{how}"]
        return Study("endo", str(path), hashlib.sha256(f"set:{sha}".encode()).hexdigest(),
                     f"{path.name} ({len(files)} stills)", meta, {"source": src}, notes)
    src = FolderSource(path, files, FOLDER_FPS, w, h)
    meta = {"format": "frames", "folder_as": "sequence", "fps": FOLDER_FPS, "frame_count": len(files),
            "duration_s": src.duration_s, "width": w, "height": h, "first_file": files[0].name,
            "last_file": files[-1].name}
    notes = [f"folder of {len(files)} frames: no frame rate stored, {FOLDER_FPS:g} fps assumed{how}"]
    return Study("endo", str(path), sha, path.name, meta, {"source": src}, notes)


def read_still(path: Path) -> Study:
    """One still image (PNG / JPEG / TIFF / BMP) as a one-frame study."""
    size = require_file(path)
    img = _imread(path)
    if img is None:
        raise ReadError(path, "the image cannot be decoded (damaged, or not an image)")
    h, w = img.shape[:2]
    if h * w > MAX_PIXELS:
        raise ReadError(path, f"the image is {w}x{h}; Lightbox opens images up to 4096x4096")
    src = FolderSource(path, [path], FOLDER_FPS, w, h, keep_size=True)
    meta = {"format": "image", "fps": FOLDER_FPS, "frame_count": 1, "duration_s": 0.0, "width": w, "height": h,
            "bytes": size, "file_type": path.suffix.lower().lstrip(".")}
    return Study("endo", str(path), sha256_file(path), path.name, meta, {"source": src}, [])


def _probe_last(cap, n: int) -> bool:
    cv2 = _cv2()
    cap.set(cv2.CAP_PROP_POS_FRAMES, n - 1)
    ok, _ = cap.read()
    return bool(ok)


def read(path: str | Path, folder_as: str = "auto") -> Study:
    path = Path(path)
    if path.is_dir():
        return read_folder(path, folder_as)
    if path.suffix.lower() in FRAME_EXTENSIONS:
        return read_still(path)
    size = require_file(path)
    cv2 = _cv2()
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ReadError(path, "the video cannot be opened: it is truncated, damaged or not a video "
                                  "(MP4 files cut short lose their index and cannot be played)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        codec = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
        fourcc = "".join(chr((codec >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") if codec else ""
        ok, first = cap.read()
        if not ok or first is None:
            raise ReadError(path, "the video holds no decodable frame (0 frames: empty, truncated or "
                                  "an unsupported codec)")
        if w <= 0 or h <= 0:
            h, w = first.shape[:2]
        if w * h > MAX_PIXELS:
            raise ReadError(path, f"the video is {w}x{h}; Lightbox opens video up to 4096x4096")
        notes: list[str] = []
        if not (0.5 <= fps <= 1000):
            notes.append(f"the file states no usable frame rate ({fps:g}); {FOLDER_FPS:g} fps assumed")
            fps = FOLDER_FPS
        if n <= 0:
            # no frame count in the container: count by decoding (grab() does not convert)
            n = 1
            while cap.grab():
                n += 1
        elif n > 1 and not _probe_last(cap, n):
            # the header promises n frames but the end is missing: find the last decodable frame
            lo, hi = 0, n - 1  # lo decodes, hi does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _probe_last(cap, mid + 1):
                    lo = mid
                else:
                    hi = mid
            missing = n - (lo + 1)
            if missing <= max(2, n // 200):  # containers often round their frame count: not damage
                notes.append(f"the header lists {n} frames; {lo + 1} decode (frame count corrected)")
            else:
                notes.append(f"the video is truncated: {lo + 1} of the {n} frames its header lists can be "
                             "decoded; the rest are missing")
            n = lo + 1
    finally:
        cap.release()
    src = VideoSource(path, fps, n, w, h)
    meta = {"format": path.suffix.lower().lstrip("."), "codec": fourcc, "fps": round(fps, 4), "frame_count": n,
            "duration_s": round(n / fps, 3), "width": w, "height": h, "bytes": size}
    return Study("endo", str(path), sha256_file(path), path.name, meta, {"source": src}, notes)

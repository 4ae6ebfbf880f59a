"""Echocardiogram cine loops: MP4 / AVI / GIF (OpenCV, Pillow for GIF timing) and DICOM multiframe
ultrasound (pydicom; YBR / RGB / MONOCHROME; frame time from the header).

The study holds the decoded frames as one ``uint8`` array ``data["frames"]`` of shape (F, H, W, 3), RGB,
plus ``data["fps"]``. Memory is bounded: the frame count and size are read from the container header
first and a file whose decoded frames would not fit in ``MAX_DECODED_BYTES`` is refused before any
frame is decoded.

``sniff`` tells an echo loop from an endoscopy video (both arrive as .mp4/.avi): an echo is mostly
grey, dark around a bright fan-shaped sector; endoscopy is colourful and fills the frame.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.study import ReadError, Study, sha256_file
from inference.reading import read_head, require_file

EXTENSIONS = (".mp4", ".avi", ".gif", ".m4v", ".mov", ".dcm", ".dicom")
VIDEO_EXT = (".mp4", ".avi", ".m4v", ".mov")
DICOM_EXT = (".dcm", ".dicom")

MAX_DECODED_BYTES = 1_500_000_000  # 1.5 GB of RGB frames
MAX_FRAMES = 20_000
MAX_SIDE = 4096
DEFAULT_FPS = 30.0
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
US_SINGLE = "1.2.840.10008.5.1.4.1.1.6.1"


# -- content sniffing -------------------------------------------------------------------------
def frame_echo_score(rgb: np.ndarray) -> float:
    """0..1: how much one RGB frame looks like B-mode ultrasound (grey, dark background, bright
    centre sector, dark top corners)."""
    f = rgb.astype(np.int16)
    grey = f.mean(axis=2)
    chroma = (f.max(axis=2) - f.min(axis=2)).astype(np.float32)
    lit = grey > 20
    # colourfulness measured on lit pixels: B-mode is grey, colour Doppler covers a small part
    colourful = float((chroma[lit] > 40).mean()) if lit.any() else 0.0
    greyness = 1.0 - min(1.0, colourful / 0.25)
    dark = float((grey < 20).mean())
    darkness = min(1.0, dark / 0.35)
    h, w = grey.shape
    ch, cw = max(1, h // 5), max(1, w // 6)
    corners = np.concatenate([grey[:ch, :cw].ravel(), grey[:ch, -cw:].ravel()])
    centre = grey[h // 4: 3 * h // 4, w // 3: 2 * w // 3]
    fan = 1.0 if (corners.mean() < 25 and centre.mean() > corners.mean() + 8) else 0.0
    return 0.5 * greyness + 0.25 * darkness + 0.25 * fan


def _sample_video_frames(path: Path, n: int = 5) -> list[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return []
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        idx = np.linspace(0, max(0, total - 1), n).astype(int) if total > n else range(n)
        out = []
        for i in idx:
            if total > n:
                cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
            ok, fr = cap.read()
            if not ok or fr is None:
                break
            out.append(cv2.cvtColor(fr, cv2.COLOR_BGR2RGB))
        return out
    finally:
        cap.release()


def sniff(path, head: bytes) -> float:
    path = Path(path)
    ext = path.suffix.lower()
    if ext in DICOM_EXT or head[128:132] == b"DICM":
        return _sniff_dicom(path)
    if ext == ".gif":
        if head[:4] != b"GIF8":
            return 0.0
        return 0.9 if _gif_frames(path) > 1 else 0.05  # one frame is a still image: the X-ray viewer's
    frames = _sample_video_frames(path)
    if not frames:
        return 0.0
    s = float(np.mean([frame_echo_score(f) for f in frames]))
    # 0.15 (colourful, full frame: endoscopy) .. 0.95 (grey fan on black: echo)
    return round(0.15 + 0.8 * s, 3)


def _sniff_dicom(path: Path) -> float:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception:
        return 0.0
    sop = str(ds.get("SOPClassUID", ""))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if sop == US_MULTIFRAME or (ds.get("Modality") == "US" and frames > 1):
        return 0.95
    if frames > 1 and "PixelData" in ds:
        return 0.5
    return 0.05  # single images and waveforms belong to other readers


# -- reading ----------------------------------------------------------------------------------
def _check_size(path: Path, n: int, h: int, w: int) -> None:
    if n <= 0:
        raise ReadError(path, "the file contains no video frames")
    if n > MAX_FRAMES:
        raise ReadError(path, f"the file claims {n} frames; Lightbox opens cine loops up to {MAX_FRAMES} frames")
    if h <= 0 or w <= 0 or h > MAX_SIDE or w > MAX_SIDE:
        raise ReadError(path, f"implausible frame size {w}x{h}")
    need = n * h * w * 3
    if need > MAX_DECODED_BYTES:
        raise ReadError(path, f"{n} frames of {w}x{h} would need {need / 2**30:.1f} GiB decoded; "
                              f"the limit is {MAX_DECODED_BYTES / 2**30:.1f} GiB — trim the loop first")


def _read_video(path: Path) -> tuple[np.ndarray, float, dict, list[str]]:
    import cv2

    notes: list[str] = []
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ReadError(path, "not a readable video (damaged file or unsupported codec)")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC) or 0)
        codec = "".join(chr((fourcc >> 8 * i) & 0xFF) for i in range(4)).strip("\x00 ") if fourcc else ""
        if n <= 0 and w > 0 and h > 0:
            n = MAX_FRAMES  # container without a frame count: bound by size below while decoding
        else:
            _check_size(path, n, h, w)
        cap_frames = n
        buf: np.ndarray | None = None
        got = 0
        while got < cap_frames:
            ok, fr = cap.read()
            if not ok or fr is None:
                break
            if fr.shape[0] != h or fr.shape[1] != w:
                h, w = fr.shape[:2]
                if buf is not None:
                    raise ReadError(path, "frame size changes inside the video")
            if buf is None:
                cap_frames = min(cap_frames, max(1, MAX_DECODED_BYTES // (h * w * 3)))
                buf = np.empty((cap_frames, h, w, 3), np.uint8)
            cv2.cvtColor(fr, cv2.COLOR_BGR2RGB, dst=buf[got])
            got += 1
    finally:
        cap.release()
    if buf is None or got == 0:
        raise ReadError(path, "no frame could be decoded (truncated or damaged video)")
    if got < n and n != MAX_FRAMES:
        notes.append(f"decoded {got} of {n} frames announced by the container (file truncated?)")
    frames = buf[:got]
    if not (1.0 <= fps <= 1000.0):
        notes.append(f"frame rate missing from the file; assumed {DEFAULT_FPS:g} fps")
        fps = DEFAULT_FPS
    meta = {"container": path.suffix.lower().lstrip("."), "codec": codec}
    return frames, fps, meta, notes


def _gif_frames(path: Path) -> int:
    try:
        from PIL import Image

        with Image.open(str(path)) as im:
            return int(getattr(im, "n_frames", 1) or 1)
    except Exception:
        return 2  # let read() say what is wrong with it


def _read_gif(path: Path) -> tuple[np.ndarray, float, dict, list[str]]:
    from PIL import Image, ImageSequence

    notes: list[str] = []
    try:
        im = Image.open(str(path))
        n = int(getattr(im, "n_frames", 1))
        w, h = im.size
        _check_size(path, n, h, w)
        frames = np.empty((n, h, w, 3), np.uint8)
        durations = []
        for i, fr in enumerate(ImageSequence.Iterator(im)):
            if i >= n:
                break
            frames[i] = np.asarray(fr.convert("RGB"))
            durations.append(float(fr.info.get("duration", 0) or 0))
    except ReadError:
        raise
    except Exception as e:
        raise ReadError(path, f"not a readable GIF ({e})") from None
    d = [x for x in durations if x > 0]
    if d:
        fps = 1000.0 / float(np.median(d))
    else:
        fps = DEFAULT_FPS
        notes.append(f"GIF has no frame durations; assumed {DEFAULT_FPS:g} fps")
    return frames, fps, {"container": "gif", "codec": "gif"}, notes


def _dicom_fps(ds) -> tuple[float | None, str]:
    ft = ds.get("FrameTime")
    if ft:
        try:
            v = float(ft)
            if v > 0:
                return 1000.0 / v, "FrameTime (0018,1063)"
        except (TypeError, ValueError):
            pass
    ftv = ds.get("FrameTimeVector")
    if ftv:
        try:
            vals = [float(x) for x in ftv][1:]
            vals = [x for x in vals if x > 0]
            if vals:
                return 1000.0 / float(np.median(vals)), "FrameTimeVector (0018,1065)"
        except (TypeError, ValueError):
            pass
    for kw, tag in (("CineRate", "(0018,0040)"), ("RecommendedDisplayFrameRate", "(0008,2144)")):
        v = ds.get(kw)
        if v:
            try:
                if float(v) > 0:
                    return float(v), f"{kw} {tag}"
            except (TypeError, ValueError):
                pass
    return None, ""


def _dicom_spacing_cm(ds) -> dict | None:
    """Physical size of a pixel from the first 2D B-mode ultrasound region (cm per pixel)."""
    try:
        for reg in ds.get("SequenceOfUltrasoundRegions", []) or []:
            ux, uy = int(reg.get("PhysicalUnitsXDirection", 0)), int(reg.get("PhysicalUnitsYDirection", 0))
            if ux == 3 and uy == 3:  # 3 = cm
                dx, dy = float(reg.PhysicalDeltaX), float(reg.PhysicalDeltaY)
                if dx > 0 and dy > 0:
                    return {"dx_cm": abs(dx), "dy_cm": abs(dy),
                            "region": [int(reg.RegionLocationMinX0), int(reg.RegionLocationMinY0),
                                       int(reg.RegionLocationMaxX1), int(reg.RegionLocationMaxY1)]}
    except Exception:
        return None
    return None


def _read_dicom(path: Path) -> tuple[np.ndarray, float, dict, list[str]]:
    try:
        return _read_dicom_checked(path)
    except (ReadError, MemoryError):
        raise
    except Exception as e:  # pydicom parses lazily: a damaged element surfaces wherever it is first read
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ReadError(path, f"the DICOM file is damaged ({type(e).__name__}{': ' + first if first else ''})") from None


def _read_dicom_checked(path: Path) -> tuple[np.ndarray, float, dict, list[str]]:
    import pydicom

    notes: list[str] = []
    try:
        hdr = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as e:
        raise ReadError(path, f"not a readable DICOM file ({type(e).__name__})") from None
    if "Rows" not in hdr or "Columns" not in hdr:
        raise ReadError(path, "DICOM file holds no image (no Rows/Columns): not an ultrasound cine loop")
    try:
        n = int(hdr.get("NumberOfFrames", 1) or 1)
        h, w = int(hdr.Rows), int(hdr.Columns)
        spp = int(hdr.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        raise ReadError(path, "DICOM header has invalid NumberOfFrames/Rows/Columns") from None
    _check_size(path, n, h, w)
    if n < 2:
        raise ReadError(path, "DICOM file holds a single image, not a cine loop")
    photometric = str(hdr.get("PhotometricInterpretation", ""))
    try:
        ds = pydicom.dcmread(str(path))
        arr = ds.pixel_array  # pydicom 3 converts YBR_* to RGB by default
    except Exception as e:
        raise ReadError(path, f"DICOM pixel data cannot be decoded ({type(e).__name__}: {e}); "
                              f"transfer syntax {hdr.file_meta.get('TransferSyntaxUID', '?') if hasattr(hdr, 'file_meta') else '?'}") from None
    arr = np.asarray(arr)
    if arr.ndim == 2 or (arr.ndim == 3 and spp == 3 and n == 1):
        arr = arr[None]
    if spp == 1:
        if arr.ndim != 3:
            raise ReadError(path, f"unexpected pixel array shape {arr.shape}")
        if arr.dtype != np.uint8:
            lo, hi = float(arr.min()), float(arr.max())
            arr = ((arr.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1.0))).astype(np.uint8)
        if photometric == "MONOCHROME1":
            arr = 255 - arr
        frames = np.repeat(arr[..., None], 3, axis=3)
    else:
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ReadError(path, f"unexpected pixel array shape {arr.shape}")
        frames = arr.astype(np.uint8, copy=False)
    if frames.shape[0] != n:
        notes.append(f"header announces {n} frames, pixel data holds {frames.shape[0]}")
    fps, fps_src = _dicom_fps(hdr)
    if fps is None or not (1.0 <= fps <= 1000.0):
        notes.append(f"no frame time in the DICOM header; assumed {DEFAULT_FPS:g} fps")
        fps, fps_src = DEFAULT_FPS, "assumed"
    meta = {"container": "dicom", "codec": str(getattr(hdr, "file_meta", {}).get("TransferSyntaxUID", "")),
            "photometric": photometric, "fps_source": fps_src,
            "manufacturer": str(hdr.get("Manufacturer", "")), "sop_class": str(hdr.get("SOPClassUID", ""))}
    from ..patients import identity_from_dicom

    ident = identity_from_dicom(hdr).as_dict()
    if len(ident) > 1:  # more than its source
        meta["patient"] = ident
    sp = _dicom_spacing_cm(hdr)
    if sp and not (sp["region"][2] < w and sp["region"][3] < h):
        notes.append("ultrasound region calibration does not fit the image size; areas shown uncalibrated")
        sp = None
    if sp:
        meta["pixel_spacing_cm"] = sp
    return np.ascontiguousarray(frames), fps, meta, notes


def read(path) -> Study:
    path = Path(path)
    require_file(path)
    head = read_head(path)
    ext = path.suffix.lower()
    if ext in DICOM_EXT or head[128:132] == b"DICM":
        frames, fps, meta, notes = _read_dicom(path)
    elif ext == ".gif":
        frames, fps, meta, notes = _read_gif(path)
    elif ext in VIDEO_EXT:
        frames, fps, meta, notes = _read_video(path)
    else:
        raise ReadError(path, f"'{ext}' is not an echo format (MP4, AVI, GIF, DICOM)")
    n, h, w = frames.shape[:3]
    if n < 2:
        raise ReadError(path, "holds a single still image, not a cine loop: there is nothing to play. "
                              "A still image opens in the image (X-ray) viewer: PNG, JPEG, one-frame GIF or DICOM")
    from inference.echo.preprocess import auto_box, choose_path

    # on the reading thread, not the UI's: which preparation the loop gets and the region it uses
    input_path = choose_path(frames, meta.get("container", ""))
    box = auto_box(frames, input_path).as_list()
    meta["sector_box"] = box
    meta["input_path"] = input_path
    meta.update({"frames": int(n), "width": int(w), "height": int(h), "fps": round(float(fps), 3),
                 "duration_s": round(n / fps, 3)})
    return Study(modality="echo", source=str(path), sha256=sha256_file(path), name=path.name,
                 metadata=meta, data={"frames": frames, "fps": float(fps), "auto_crop_box": box}, notes=notes)

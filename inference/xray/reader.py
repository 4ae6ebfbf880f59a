"""Chest radiograph reader: DICOM (CR/DX and other single-frame greyscale images), PNG, JPEG.

What a reader of a radiograph must get right, and what this module does:

- **Modality values.** Stored values go through Rescale Slope/Intercept (or the Modality LUT) to
  modality values (``data["image"]``, float32), which is what the viewer windows and what the
  "pixel value under the cursor" shows.
- **Default display.** The header's VOI LUT Sequence is applied when present, else its first
  Window Center/Width (with VOI LUT Function LINEAR / LINEAR_EXACT / SIGMOID), else a 0.5–99.5 %
  percentile window; MONOCHROME1 is inverted so bone is always white. The result is
  ``data["display"]`` (uint8), the image a radiologist would see first and what the model is fed.
- **Spacing.** Pixel Spacing, else Imager Pixel Spacing (corrected by Estimated Radiographic
  Magnification Factor when given) — the source is recorded in ``metadata["spacing_source"]`` so a
  ruler never claims more than the header says.
- **Bad input.** Dimensions are checked from the header *before* any pixel data is decoded;
  compressed transfer syntaxes without an installed decoder give a message naming the syntax and
  the package that would decode it. Everything bad is a ``ReadError``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.study import ReadError, Study, sha256_file
from inference.reading import read_head, require_file

EXTENSIONS = (".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", ".gif")  # .gif: a one-frame still only
DICOM_EXTENSIONS = (".dcm", ".dicom", ".dic")

MAX_SIDE = 12_000  # px; the largest CR/DX plates are ~4300 px at 0.1 mm
MAX_PIXELS = 80_000_000  # refuse anything larger before decoding (about 320 MB as float32)
XRAY_MODALITIES = ("CR", "DX", "RG", "DR")
#: SOP classes that are projection radiographs (CR, DX for presentation/processing, DX mammo excluded)
XRAY_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
}

# decoder a compressed transfer syntax needs, for the message when it is missing
_DECODER_HINT = {
    "JPEG-LS": "pylibjpeg + pylibjpeg-libjpeg, or python-gdcm",
    "JPEG Extended": "pylibjpeg + pylibjpeg-libjpeg, or python-gdcm (Pillow decodes only 8-bit JPEG)",
    "JPEG Lossless": "pylibjpeg + pylibjpeg-libjpeg, or python-gdcm",
    "JPEG 2000": "pylibjpeg + pylibjpeg-openjpeg, or Pillow built with OpenJPEG",
    "High-Throughput JPEG 2000": "pylibjpeg + pylibjpeg-openjpeg >= 2.0",
    "Deflated": "(zlib, part of Python)",
}


def _is_dicom_head(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def sniff(path, head: bytes) -> float:
    path = Path(path)
    ext = path.suffix.lower()
    if ext in DICOM_EXTENSIONS or _is_dicom_head(head):
        if not _is_dicom_head(head):
            return 0.05
        try:
            import pydicom

            ds = pydicom.dcmread(str(path), stop_before_pixels=True,
                                 specific_tags=["Modality", "SOPClassUID", "NumberOfFrames",
                                                "SamplesPerPixel", "PhotometricInterpretation"])
        except Exception:
            return 0.05
        modality = str(ds.get("Modality", "")).upper()
        sop = str(ds.get("SOPClassUID", ""))
        if modality in XRAY_MODALITIES or sop in XRAY_SOP_CLASSES:
            return 0.97
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        if modality in ("US", "ECG", "ES", "XC", "GM") or frames > 1:
            return 0.0
        if spp == 1 and frames == 1 and modality in ("OT", "SC", ""):
            return 0.4  # a secondary-capture greyscale image: plausibly a digitised film
        return 0.0
    if ext in (".png", ".jpg", ".jpeg", ".gif"):
        try:
            from PIL import Image

            with Image.open(path) as im:
                if int(getattr(im, "n_frames", 1) or 1) > 1:
                    return 0.0  # an animation: a cine loop, not a radiograph
                if im.mode in ("L", "I;16", "I;16B", "I;16L", "I", "LA"):
                    return 0.9
                if im.mode in ("RGB", "RGBA", "P"):
                    im.draft("RGB", (128, 128))
                    small = np.asarray(im.convert("RGB").resize((64, 64)))
                    spread = np.abs(small.astype(np.int16) - small.mean(axis=2, keepdims=True)).mean()
                    return 0.75 if spread < 3.0 else 0.1  # grey stored as RGB: a radiograph
        except Image.DecompressionBombError:
            return 0.5  # absurd size: let read() refuse it with a clear message
        except Exception:
            return 0.0
        return 0.1
    return 0.0


def read(path) -> Study:
    path = Path(path)
    require_file(path)
    head = read_head(path)
    if _is_dicom_head(head) or path.suffix.lower() in DICOM_EXTENSIONS:
        return _read_dicom(path)
    return _read_raster(path)


# -- shared helpers ---------------------------------------------------------------------------------
def _check_dims(path, rows: int, cols: int, frames: int = 1, spp: int = 1) -> None:
    if rows <= 0 or cols <= 0:
        raise ReadError(path, f"the header gives an empty image ({rows} x {cols} pixels)")
    if rows > MAX_SIDE or cols > MAX_SIDE or rows * cols * max(frames, 1) * max(spp, 1) > MAX_PIXELS:
        raise ReadError(path, f"the image is {cols} x {rows} pixels"
                              f"{f' x {frames} frames' if frames > 1 else ''}; Lightbox opens radiographs "
                              f"up to {MAX_SIDE} px a side and {MAX_PIXELS // 1_000_000} Mpixel — refused before "
                              "decoding")


def percentile_window(img: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> tuple[float, float]:
    """(center, width) covering the lo..hi percentiles (on a subsample, for speed)."""
    flat = img.ravel()
    if flat.size > 1_000_000:
        flat = flat[:: flat.size // 1_000_000]
    a, b = np.percentile(flat, [lo, hi])
    if b <= a:
        a, b = float(flat.min()), float(flat.max())
        if b <= a:
            b = a + 1.0
    return (float(a) + float(b)) / 2.0, float(b) - float(a)


def apply_window(img: np.ndarray, center: float, width: float, function: str = "LINEAR",
                 invert: bool = False) -> np.ndarray:
    """Modality values -> uint8 display per DICOM PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT, SIGMOID)."""
    x = img.astype(np.float32, copy=False)
    if not (np.isfinite(center) and np.isfinite(width)):
        raise ValueError(f"window centre/width {center!r}/{width!r} are not finite numbers")
    if not np.isfinite(x).all():
        raise ValueError("image has NaN or infinite pixel values")
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(np.clip(-4.0 * (x - center) / max(width, 1e-6), -80.0, 80.0)))
    elif function == "LINEAR_EXACT":
        y = (x - (center - width / 2.0)) / max(width, 1e-6)
    else:  # LINEAR: centre - 0.5, width - 1
        w = max(width - 1.0, 1e-6)
        y = (x - (center - 0.5)) / w + 0.5
    y = np.clip(y, 0.0, 1.0)
    if invert:
        y = 1.0 - y
    return (y * 255.0 + 0.5).astype(np.uint8)


# -- DICOM ------------------------------------------------------------------------------------------
def _first(v, default=None):
    if v is None:
        return default
    try:
        if isinstance(v, (list, tuple)) or hasattr(v, "__len__") and not isinstance(v, (str, bytes)):
            return float(v[0]) if len(v) else default
        return float(v)
    except (TypeError, ValueError):
        return default


def _all_floats(v) -> list[float]:
    if v is None:
        return []
    try:
        if isinstance(v, (str, bytes)):
            return [float(v)]
        return [float(x) for x in v]
    except TypeError:
        return [float(v)]
    except ValueError:
        return []


def _syntax_problem(path, ds, err: Exception | None = None) -> ReadError:
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    name = getattr(ts, "name", str(ts)) if ts else "unknown"
    hint = next((h for k, h in _DECODER_HINT.items() if k.lower() in name.lower()), None)
    msg = (f"the pixel data use the compressed transfer syntax '{name}' ({ts}), which this installation "
           "cannot decode")
    if hint:
        msg += f"; install {hint}, or export the image uncompressed (Explicit VR Little Endian)"
    if err is not None:
        detail = str(err).strip().splitlines()[0][:160]
        if detail:
            msg += f" [decoder: {detail}]"
    return ReadError(path, msg)


def _read_dicom(path: Path) -> Study:
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            st = _read_dicom_checked(path)
        # pydicom's complaints about non-conformant values become user-visible notes (a few, short)
        msgs = []
        for w in caught:
            m = str(w.message).split(". Please see")[0].strip()
            m = m if len(m) < 120 else m[:117] + "…"
            if m and m not in msgs:
                msgs.append(m)
        st.notes += [f"DICOM: {m}" for m in msgs[:3]]
        return st
    except (ReadError, MemoryError):
        raise
    except Exception as e:  # a damaged element anywhere in the header (pydicom parses lazily)
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ReadError(path, f"the DICOM file is damaged ({type(e).__name__}{': ' + first if first else ''})") from None


def _read_dicom_checked(path: Path) -> Study:
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:  # pragma: no cover
        raise ReadError(path, "DICOM support needs the 'pydicom' package") from None
    try:
        ds = pydicom.dcmread(str(path), defer_size="1 MB")
    except InvalidDicomError:
        raise ReadError(path, "not a DICOM file (no 'DICM' preamble/file meta information)") from None
    except Exception as e:
        raise ReadError(path, f"the DICOM header cannot be parsed ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:160] if str(e) else 'truncated?'})") from None
    if "PixelData" not in ds:
        kind = str(ds.get("Modality", "")) or str(getattr(ds.get("SOPClassUID", ""), "name", "")) or "DICOM"
        raise ReadError(path, f"this {kind} object holds no image (no Pixel Data element)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    _check_dims(path, rows, cols, frames, spp)
    if frames > 1:
        raise ReadError(path, f"a multi-frame object ({frames} frames) is not a projection radiograph; "
                              "open cine loops in the echo or endoscopy viewer")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    bits_stored = int(ds.get("BitsStored", ds.get("BitsAllocated", 8)) or 8)
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError) as e:
        if ts is not None and getattr(ts, "is_compressed", False):
            raise _syntax_problem(path, ds, e) from None
        raise ReadError(path, f"the pixel data cannot be decoded: {str(e).splitlines()[0][:200]}") from None
    except (ValueError, AttributeError, EOFError, OSError) as e:
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ReadError(path, f"the pixel data are damaged or truncated ({first})") from None
    except MemoryError:
        raise ReadError(path, "the image is too large to decode in memory") from None
    arr = np.asarray(arr)
    notes: list[str] = []
    if arr.ndim == 3 and spp >= 3:
        # colour radiograph (e.g. a secondary-capture screenshot): luminance
        rgb = arr[..., :3].astype(np.float32)
        if photometric.startswith("YBR"):
            try:
                from pydicom.pixels import convert_color_space

                rgb = convert_color_space(arr, photometric, "RGB").astype(np.float32)
            except Exception:
                pass
        arr = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
        notes.append(f"colour image ({photometric}) converted to greyscale")
        photometric = "MONOCHROME2"
    if arr.ndim != 2:
        raise ReadError(path, f"unexpected pixel array shape {arr.shape}; a radiograph is one 2-D greyscale frame")

    # modality LUT / rescale
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    if "ModalityLUTSequence" in ds:
        try:
            from pydicom.pixels import apply_modality_lut

            image = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
            notes.append("Modality LUT applied")
        except Exception as e:
            raise ReadError(path, f"the Modality LUT cannot be applied ({e})") from None
    else:
        image = arr.astype(np.float32)
        if slope != 1.0 or intercept != 0.0:
            image = image * np.float32(slope) + np.float32(intercept)

    invert = photometric == "MONOCHROME1"
    centers = _all_floats(ds.get("WindowCenter"))
    widths = _all_floats(ds.get("WindowWidth"))
    explanations = ds.get("WindowCenterWidthExplanation")
    if explanations is not None and isinstance(explanations, (str, bytes)):
        explanations = [explanations]
    explanations = [str(e) for e in explanations] if explanations is not None else []
    voi_function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    windows = []
    for i, (c, w) in enumerate(zip(centers, widths)):
        if w > 0:
            windows.append({"center": c, "width": w,
                            "name": explanations[i] if i < len(explanations) else f"Header window {i + 1}"})
    voi_source = ""
    display = None
    if "VOILUTSequence" in ds:
        try:
            from pydicom.pixels import apply_voi_lut

            out = np.asarray(apply_voi_lut(arr if "ModalityLUTSequence" not in ds else image, ds, index=0),
                             dtype=np.float32)
            item = ds.VOILUTSequence[0]
            nbits = int(item.LUTDescriptor[2]) if "LUTDescriptor" in item else 16
            top = float(2 ** nbits - 1)
            lut = item.get("LUTData")
            if isinstance(lut, (list, tuple)) or hasattr(lut, "__iter__") and not isinstance(lut, (bytes, str)):
                # vendors often declare 16 bits and fill 12: scale by what the LUT actually reaches
                top = float(max(lut)) if len(lut) else top
            y = np.clip(out / max(top, 1.0), 0, 1)
            if invert:
                y = 1.0 - y
            display = (y * 255 + 0.5).astype(np.uint8)
            voi_source = "VOI LUT Sequence"
        except Exception as e:
            notes.append(f"header VOI LUT could not be applied ({type(e).__name__}); window used instead")
    if windows:
        center, width = windows[0]["center"], windows[0]["width"]
        if display is None:
            voi_source = f"Window Center/Width ({voi_function})"
    else:
        center, width = percentile_window(image)
        if display is None:
            voi_source = "automatic 0.5–99.5 % window (no VOI in header)"
            voi_function = "LINEAR"
    if display is None:
        display = apply_window(image, center, width, voi_function, invert)

    # spacing
    spacing, spacing_source = None, ""
    ps = _all_floats(ds.get("PixelSpacing"))
    ips = _all_floats(ds.get("ImagerPixelSpacing"))
    if len(ps) == 2 and min(ps) > 0:
        spacing, spacing_source = ps, "Pixel Spacing"
    elif len(ips) == 2 and min(ips) > 0:
        emf = _first(ds.get("EstimatedRadiographicMagnificationFactor"), None)
        if emf and emf > 0:
            spacing = [v / emf for v in ips]
            spacing_source = f"Imager Pixel Spacing / magnification {emf:g} (at the patient)"
        else:
            spacing = ips
            spacing_source = "Imager Pixel Spacing (at the detector; anatomy is magnified ~10 %)"
    if spacing is None:
        notes.append("no pixel spacing in the header: measurements in pixels only")

    modality = str(ds.get("Modality", "")).upper()
    if modality and modality not in XRAY_MODALITIES + ("OT", "SC"):
        notes.append(f"DICOM modality is {modality}, not a projection radiograph (CR/DX)")
    name = str(ds.get("SeriesDescription", "") or ds.get("StudyDescription", "") or "")
    view = str(ds.get("ViewPosition", "") or "")
    metadata = {
        "format": "DICOM",
        "transfer_syntax": getattr(ts, "name", str(ts)) if ts else "",
        "dicom_modality": modality,
        "rows": rows, "columns": cols,
        "bits_stored": bits_stored,
        "bits_allocated": int(ds.get("BitsAllocated", 0) or 0),
        "pixel_representation": int(ds.get("PixelRepresentation", 0) or 0),
        "photometric": photometric,
        "invert": invert,
        "rescale_slope": slope, "rescale_intercept": intercept,
        "rescale_type": str(ds.get("RescaleType", "") or ""),
        "window": [float(center), float(width)],
        "windows": windows,
        "voi_function": voi_function,
        "voi_source": voi_source,
        "pixel_spacing_mm": spacing,
        "spacing_source": spacing_source,
        "view_position": view,
        "body_part": str(ds.get("BodyPartExamined", "") or ""),
        "value_range": [float(image.min()), float(image.max())],
    }
    from ..patients import identity_from_dicom

    ident = identity_from_dicom(ds).as_dict()
    if len(ident) > 1:  # more than its source
        metadata["patient"] = ident
    return Study("xray", str(path), sha256_file(path), name or path.name, metadata,
                 {"image": image, "display": display}, notes)


# -- PNG / JPEG -------------------------------------------------------------------------------------
def _read_raster(path: Path) -> Study:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:  # pragma: no cover
        raise ReadError(path, "PNG/JPEG support needs Pillow") from None
    try:
        with Image.open(path) as im:  # header only: no pixels decoded yet
            cols, rows = im.size
            fmt = im.format or path.suffix.lstrip(".").upper()
            mode = im.mode
            n_frames = int(getattr(im, "n_frames", 1) or 1)
    except UnidentifiedImageError:
        raise ReadError(path, "not a PNG or JPEG image (unrecognised content)") from None
    except Image.DecompressionBombError as e:
        raise ReadError(path, f"the header declares an absurdly large image ({str(e).split('(')[0].strip()}); "
                              "refused before decoding") from None
    except Exception as e:
        raise ReadError(path, f"the image header cannot be read ({type(e).__name__})") from None
    _check_dims(path, rows, cols)
    if n_frames > 1:
        raise ReadError(path, f"an animated {fmt} of {n_frames} frames is a cine loop, not a radiograph: "
                              "open it as an echo loop")
    import cv2

    from inference.png_guard import png_problem

    raw = np.fromfile(str(path), dtype=np.uint8)
    problem = png_problem(raw.data)
    if problem:
        raise ReadError(path, problem)
    arr = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ReadError(path, f"the {fmt} pixel data cannot be decoded (truncated or damaged file)")
    notes: list[str] = []
    if arr.ndim == 3:
        ch = arr.shape[2]
        if ch == 4:
            arr = arr[..., :3]
        if ch >= 3:
            b, g, r = arr[..., 0].astype(np.int32), arr[..., 1].astype(np.int32), arr[..., 2].astype(np.int32)
            if not (np.abs(b - g).max() <= 2 and np.abs(g - r).max() <= 2):
                notes.append("colour image converted to greyscale")
            arr = cv2.cvtColor(arr, cv2.COLOR_BGR2GRAY)
        elif ch == 2:
            arr = arr[..., 0]
    if arr.dtype not in (np.uint8, np.uint16):
        raise ReadError(path, f"unsupported sample type {arr.dtype} (8- or 16-bit greyscale expected)")
    bits = 8 if arr.dtype == np.uint8 else 16
    image = arr.astype(np.float32)
    if bits == 8:
        center, width = 127.5, 256.0
        display = arr.astype(np.uint8)
        voi_source = "8-bit image shown as stored"
    else:
        center, width = percentile_window(image)
        display = apply_window(image, center, width)
        voi_source = "automatic 0.5–99.5 % window (16-bit image)"
        used = int(arr.max()).bit_length()
        notes.append(f"16-bit image ({used} bits used): automatic window")
    metadata = {
        "format": fmt, "mode": mode, "rows": int(arr.shape[0]), "columns": int(arr.shape[1]),
        "bits_stored": bits, "photometric": "MONOCHROME2", "invert": False,
        "window": [float(center), float(width)], "windows": [], "voi_function": "LINEAR",
        "voi_source": voi_source, "pixel_spacing_mm": None, "spacing_source": "",
        "value_range": [float(image.min()), float(image.max())],
    }
    if fmt == "GIF":
        notes.append("a single still image (one-frame GIF): shown as an image, not as a cine loop")
    notes.append("no pixel spacing in a PNG/JPEG: measurements in pixels only")
    return Study("xray", str(path), sha256_file(path), path.name, metadata,
                 {"image": image, "display": display}, notes)

"""What a DICOM object is to Lightbox, from its header alone, and which encodings this installation decodes.

``lightbox_modality(sop_class, modality)`` -> ("xray" | "echo" | "ecg" | "endo" | None, why):

- CR / DX (Computed Radiography, Digital X-Ray for presentation or processing) -> chest X-ray viewer
- US (Ultrasound Image, Ultrasound Multi-frame) -> echo
- 12-lead / General / Ambulatory / 32-bit ECG waveforms -> ECG
- VL Endoscopic, Video Endoscopic, VL Photographic / Video Photographic (XC), or any image whose Modality
  is ES -> endoscopy
- everything else (CT, MR, SR, PDF, Secondary Capture of another modality, …) -> None: kept on disk and
  listed as received but not readable, never dropped.

``receivable_transfer_syntaxes()``: the transfer syntaxes the node accepts, i.e. those pydicom can decode
here (uncompressed, deflate, RLE, and the JPEG / JPEG 2000 / JPEG-LS decoders that are installed). A
peer offering only something else (JPEG Lossless without pylibjpeg, MPEG video, …) has its presentation
context refused and the refusal logged; modalities normally offer an uncompressed fallback.
"""
from __future__ import annotations

from functools import lru_cache

from pydicom import uid as U

XRAY_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image (presentation)",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image (processing)",
}
ECHO_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image",
}
ECG_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG Waveform",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG Waveform",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG Waveform",
    "1.2.840.10008.5.1.4.1.1.9.1.4": "General 32-bit ECG Waveform",
}
ENDO_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.77.1.1": "VL Endoscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": "Video Endoscopic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "Video Photographic Image",
}
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"

# the DICOM Modality values a Lightbox modality's studies carry (priors are searched with these)
DICOM_MODALITIES = {"xray": ("CR", "DX"), "echo": ("US",), "ecg": ("ECG",), "endo": ("ES", "XC")}
XRAY_MODALITIES = {"CR", "DX"}


def sop_class_name(sop_class: str) -> str:
    s = str(sop_class or "")
    for table in (XRAY_CLASSES, ECHO_CLASSES, ECG_CLASSES, ENDO_CLASSES):
        if s in table:
            return table[s]
    try:
        name = U.UID(s).name
        return name if name != s else s or "unknown SOP class"
    except Exception:
        return s or "unknown SOP class"


def lightbox_modality(sop_class: str, modality: str = "") -> tuple[str | None, str]:
    """Which viewer a received object goes to, from its SOP Class UID and Modality; None and the reason
    when Lightbox does not read it."""
    sop_class, modality = str(sop_class or ""), str(modality or "").strip().upper()
    if sop_class in XRAY_CLASSES:
        if modality and modality not in XRAY_MODALITIES:
            return None, f"{sop_class_name(sop_class)} with Modality {modality}: not a radiograph Lightbox reads"
        return "xray", XRAY_CLASSES[sop_class]
    if sop_class in ECHO_CLASSES:
        return "echo", ECHO_CLASSES[sop_class]
    if sop_class in ECG_CLASSES:
        return "ecg", ECG_CLASSES[sop_class]
    if sop_class in ENDO_CLASSES:
        return "endo", ENDO_CLASSES[sop_class]
    if modality == "ES" and sop_class.startswith("1.2.840.10008.5.1.4.1.1.7"):
        return "endo", "Secondary Capture, Modality ES (endoscopy)"
    what = sop_class_name(sop_class) + (f", Modality {modality}" if modality else "")
    return None, f"{what}: not a kind of study Lightbox reads (kept, not opened)"


UNCOMPRESSED = (U.ExplicitVRLittleEndian, U.ImplicitVRLittleEndian, U.DeflatedExplicitVRLittleEndian,
                U.ExplicitVRBigEndian)
_COMPRESSED_CANDIDATES = (U.RLELossless, U.JPEGBaseline8Bit, U.JPEGExtended12Bit, U.JPEGLosslessSV1,
                          U.JPEGLossless, U.JPEG2000Lossless, U.JPEG2000, U.JPEGLSLossless, U.JPEGLSNearLossless,
                          U.HTJ2KLossless, U.HTJ2K)


@lru_cache(maxsize=1)
def receivable_transfer_syntaxes() -> tuple[str, ...]:
    """Uncompressed first (what Lightbox prefers), then every compressed syntax with a working decoder."""
    from pydicom.pixels.decoders.base import get_decoder

    out = [str(u) for u in UNCOMPRESSED]
    for ts in _COMPRESSED_CANDIDATES:
        try:
            dec = get_decoder(ts)
            plugins = set(dec.available_plugins)
            if ts == U.JPEGExtended12Bit and plugins <= {"pillow"}:
                continue  # Pillow decodes 8-bit JPEG only: a 12-bit radiograph would fail after receipt
            if dec.is_available:
                out.append(str(ts))
        except (NotImplementedError, ValueError):
            continue
    return tuple(out)


def transfer_syntax_name(ts: str) -> str:
    try:
        return U.UID(str(ts)).name
    except Exception:
        return str(ts)

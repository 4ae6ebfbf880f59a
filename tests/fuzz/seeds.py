"""Small valid files, one per reader format, for the fuzzer's seed corpus and the property tests.

Each ``make_<kind>(path)`` writes a file of a few KB that its reader opens; mutating its bytes
reaches far deeper into the decoders than random bytes do.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _ecg(n: int, fs: float) -> np.ndarray:
    t = np.arange(n) / fs
    beat = np.exp(-((t % 0.8) - 0.2) ** 2 / 2e-4)  # a spike every 0.8 s
    return np.stack([(0.5 + 0.1 * i) * beat + 0.05 * np.sin(2 * np.pi * t) for i in range(12)])


def make_ecg_hd5(path: Path) -> Path:
    from inference.ecg.reader import write_ml4h_hd5

    return write_ml4h_hd5(path, _ecg(250, 100.0), 100.0, text="seed")


def make_ecg_csv(path: Path) -> Path:
    sig = _ecg(250, 100.0)[:3]
    rows = "\n".join(",".join(f"{v:.3f}" for v in col) for col in sig.T)
    Path(path).write_text("# fs=100\nI,II,III\n" + rows + "\n")
    return Path(path)


def make_pcg_wav(path: Path, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    sr = 2000
    t = np.arange(int(1.2 * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * 60 * t) * np.exp(-((t % 0.8) / 0.05))
    sf.write(str(path), x.astype(np.float32), sr, subtype=subtype)
    return Path(path)


def make_pcg_flac(path: Path) -> Path:
    return make_pcg_wav(path, subtype="PCM_16")  # soundfile picks FLAC from the extension


def _video(path: Path, fourcc: str, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    import cv2

    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    for f in frames:
        vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    vw.release()
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        raise RuntimeError(f"OpenCV could not write {path} with {fourcc}")
    return Path(path)


def echo_frames(n: int = 4, size: int = 32) -> list[np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    fan = (np.abs(xx - size / 2) < (yy + 2) * 0.6) & (yy > 2)
    out = []
    for i in range(n):
        g = (fan * (90 + 40 * np.sin(xx / 3.0 + i))).astype(np.uint8)
        out.append(np.repeat(g[..., None], 3, axis=2))
    return out


def endo_frames(n: int = 4, size: int = 32) -> list[np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    out = []
    for i in range(n):
        f = np.zeros((size, size, 3), np.uint8)
        f[..., 0] = 180 + (30 * np.sin(xx / 4.0 + i)).astype(np.int16)
        f[..., 1] = 60 + (20 * np.cos(yy / 5.0)).astype(np.int16)
        f[..., 2] = 70
        out.append(f)
    return out


def make_echo_avi(path: Path) -> Path:
    return _video(path, "MJPG", echo_frames())


def make_endo_mp4(path: Path) -> Path:
    return _video(path, "mp4v", endo_frames())


def make_xray_png(path: Path) -> Path:
    import cv2

    yy, xx = np.mgrid[:32, :32]
    img = (60 + 3 * xx + 2 * yy).astype(np.uint8)
    cv2.imwrite(str(path), img)
    return Path(path)


CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def new_dicom(path: Path, sop_class_uid: str, modality: str):
    """An explicit-VR little-endian DICOM dataset with file meta and SOP identity filled in."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    return ds


def make_xray_dcm(path: Path) -> Path:
    ds = new_dicom(path, CR_IMAGE, "CR")
    ds.Rows, ds.Columns = 16, 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4000
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    ds.PixelSpacing = [0.2, 0.2]
    ds.PixelData = (np.arange(256, dtype=np.uint16) * 16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)


def make_echo_dcm(path: Path) -> Path:
    ds = new_dicom(path, US_MULTIFRAME, "US")
    ds.Rows, ds.Columns = 16, 16
    ds.NumberOfFrames = 3
    ds.FrameTime = 40
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.stack([np.asarray(f[:16, :16, 0]) for f in echo_frames(3)]).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)


#: (modality, extension) -> writer
SEEDS = {
    ("ecg", ".hd5"): make_ecg_hd5,
    ("ecg", ".csv"): make_ecg_csv,
    ("pcg", ".wav"): make_pcg_wav,
    ("pcg", ".flac"): make_pcg_flac,
    ("echo", ".avi"): make_echo_avi,
    ("echo", ".dcm"): make_echo_dcm,
    ("xray", ".png"): make_xray_png,
    ("xray", ".dcm"): make_xray_dcm,
    ("endo", ".mp4"): make_endo_mp4,
}


def seed_bytes(modality: str, ext: str, folder: Path) -> bytes | None:
    fn = SEEDS.get((modality, ext))
    if fn is None:
        return None
    p = Path(folder) / f"seed_{modality}{ext}"
    fn(p)
    return p.read_bytes()

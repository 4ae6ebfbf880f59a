"""A malformed-file corpus the tests generate (nothing downloaded), for every reader.

``build(folder)`` returns ``[(case_id, modality, path)]``: truncated, zero-length, wrong-extension,
wrong dtype/shape, absurd headers (a DICOM claiming 10^9 frames, a WAV claiming ~10^12 samples,
a PNG claiming 100 000 x 100 000 pixels, an HDF5 dataset of 10^9 samples), NaN/Inf samples.
Cases whose reader is not built are left out.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from inference import modalities


def _have(modality: str) -> bool:
    return modality in modalities.KEYS


def _demo(modality: str, folder: Path) -> Path | None:
    mod = modalities.part(modality, "demo")
    d = folder / f"demo_{modality}"
    d.mkdir(exist_ok=True)
    return Path(mod.make(d))


def _truncate(src: Path, dst: Path, frac: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: max(1, int(len(data) * frac))])
    return dst


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(path: Path, w: int = 100_000, h: int = 100_000) -> Path:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1000)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
                     + _png_chunk(b"IEND", b""))
    return path


def wav_claiming(path: Path, data_bytes: int = 0xFFFFFFF0, rate: int = 2000) -> Path:
    """A 16-bit mono WAV whose header claims ~2^32 bytes (10^9+ samples) but holds 1000."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"\x01\x00" * 1000
    path.write_bytes(b"RIFF" + struct.pack("<I", 0xFFFFFFF8) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
                     + b"data" + struct.pack("<I", data_bytes) + body)
    return path


def float_wav(path: Path, samples: np.ndarray, rate: int = 4000) -> Path:
    import soundfile as sf

    sf.write(str(path), samples.astype(np.float32), rate, subtype="FLOAT")
    return path


def dicom_claiming_frames(path: Path, frames: int = 1_000_000_000, rows: int = 480, cols: int = 640,
                          modality: str = "US") -> Path:
    from tests.fuzz.seeds import CR_IMAGE, US_MULTIFRAME, new_dicom

    ds = new_dicom(path, US_MULTIFRAME if modality == "US" else CR_IMAGE, modality)
    ds.Rows, ds.Columns = rows, cols
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = b"\0" * min(rows * cols, 640 * 480)  # a little data, whatever the header claims
    ds.save_as(str(path), enforce_file_format=True)
    return path


def build(folder: Path) -> list[tuple[str, str, Path]]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[tuple[str, str, Path]] = []

    def add(case: str, modality: str, path: Path) -> None:
        cases.append((case, modality, path))

    exts = {"ecg": [".hd5", ".csv", ".hea"], "pcg": [".wav", ".flac", ".ogg", ".mp3"],
            "echo": [".avi", ".gif", ".dcm"], "xray": [".png", ".jpg", ".dcm"], "endo": [".mp4", ".mkv"]}
    for m, es in exts.items():
        if not _have(m):
            continue
        for e in es:
            z = folder / f"zero_{m}{e}"
            z.write_bytes(b"")
            add(f"{m}-zero-length{e}", m, z)
            g = folder / f"garbage_{m}{e}"
            g.write_bytes(np.random.default_rng(len(e)).integers(0, 256, 3000, dtype=np.uint8).tobytes())
            add(f"{m}-random-bytes{e}", m, g)
        demo = _demo(m, folder)
        if demo is not None and demo.is_file():
            for frac in (0.5, 0.05):
                add(f"{m}-truncated-{int(frac * 100)}pct{demo.suffix}", m,
                    _truncate(demo, folder / f"trunc{int(frac * 100)}_{demo.name}", frac))
            wrong = folder / f"wrong_ext_{m}.txt"
            wrong.write_bytes(demo.read_bytes()[:2000])
            add(f"{m}-wrong-extension.txt", m, wrong)

    if _have("ecg"):
        import h5py

        p = folder / "not_ecg.hd5"
        with h5py.File(p, "w") as f:
            f.create_dataset("images/mri", data=np.zeros((4, 4), np.float32))
        add("ecg-hd5-without-ecg", "ecg", p)
        p = folder / "huge_ecg.hd5"
        with h5py.File(p, "w") as f:  # 10^9 samples declared, nothing allocated on disk
            for lead in ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"):
                f.create_dataset(f"ukb_ecg_rest/strip_{lead}/instance_0", shape=(1_000_000_000,), dtype="f4")
        add("ecg-hd5-1e9-samples", "ecg", p)
        p = folder / "nan_ecg.csv"
        leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
        arr = np.full((5000, 12), np.nan)
        np.savetxt(p, arr, delimiter=",", header=",".join(leads), comments="")
        add("ecg-csv-all-nan", "ecg", p)
        p = folder / "text_ecg.csv"
        p.write_text("I,II,III\nfoo,bar,baz\n")
        add("ecg-csv-non-numeric", "ecg", p)
        p = folder / "huge.hea"
        p.write_text("huge 12 500 1000000000000\n" + "".join(
            f"huge.dat 16 200 16 0 0 0 0 {lead}\n" for lead in leads))
        (folder / "huge.dat").write_bytes(b"\0" * 1000)
        add("ecg-wfdb-1e12-samples", "ecg", p)

    if _have("pcg"):
        add("pcg-wav-claims-1e9-samples", "pcg", wav_claiming(folder / "claims_huge.wav"))
        add("pcg-wav-nan", "pcg", float_wav(folder / "nan.wav", np.full(8000, np.nan)))
        add("pcg-wav-inf", "pcg", float_wav(folder / "inf.wav", np.full(8000, np.inf)))
        add("pcg-wav-silent", "pcg", float_wav(folder / "silent.wav", np.zeros(8000)))

    if _have("echo"):
        add("echo-dicom-1e9-frames", "echo", dicom_claiming_frames(folder / "frames_1e9.dcm"))
        add("echo-dicom-65535-square", "echo",
            dicom_claiming_frames(folder / "dims_huge.dcm", frames=200, rows=65535, cols=65535))

    if _have("xray"):
        add("xray-png-100000-square", "xray", huge_png(folder / "huge.png"))
        add("xray-dicom-65535-square", "xray",
            dicom_claiming_frames(folder / "xray_huge.dcm", frames=1, rows=65535, cols=65535, modality="CR"))
    return cases

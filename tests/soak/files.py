"""The studies a soak session opens: every modality's demo, real-format files the project can make
itself, and real recordings from the machine's reference folders when they are there (read in place,
never copied into the project).

``build(folder, level)`` returns ``{modality: [paths]}``; the ECG list holds two DICOM waveforms of one
patient on two dates (compare with prior needs a prior).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from tests.conftest import ROOT, SHARED as _SHARED

SHARED = _SHARED if _SHARED.is_dir() else Path("/work/shared")

MIRROR = ROOT.parent.parent / ".mirror" if (ROOT.parent.parent / ".mirror").is_dir() else Path("/work/.mirror")
DATA = Path("/work/data")


def _ecg_pair(folder: Path) -> list[Path]:
    """Two 12-lead DICOM waveforms (pydicom's test file) of patient SOAK on two dates."""
    import pydicom
    from pydicom.data import get_testdata_file

    out = []
    for i, day in enumerate(("20190101", "20230101")):
        ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
        ds.PatientID, ds.PatientName, ds.StudyDate, ds.SOPInstanceUID = "SOAK", "SOAK^TEST", day, f"1.2.826.0.1.9.{i}"
        p = folder / f"ecg_{day}.dcm"
        ds.save_as(p)
        out.append(p)
    return out


def _echo_gif(folder: Path) -> Path:
    from PIL import Image

    p = folder / "echo_loop.gif"
    base = np.zeros((96, 96), np.uint8)
    base[24:72, 24:72] = 200
    imgs = [Image.fromarray(np.roll(base, k % 12, axis=1)) for k in range(24)]
    imgs[0].save(p, save_all=True, append_images=imgs[1:], duration=40, loop=0)
    return p


def _echonet_avi(folder: Path, n: int) -> list[Path]:
    """EchoNet-Dynamic 112x112 AVIs (the original none_dealloc symptom) from the local git mirror."""
    repo = MIRROR / "Mengyu8042+Spar-Sink" / "repo"
    if not repo.is_dir():
        return []
    try:
        names = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD", "data/200data/"],
                               capture_output=True, text=True, timeout=60).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return []
    out = []
    for name in [x for x in names if x.endswith(".avi")][:n]:
        p = folder / Path(name).name
        if not p.exists():
            data = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{name}"], capture_output=True, timeout=60)
            if data.returncode != 0 or not data.stdout.startswith(b"RIFF"):
                continue
            p.write_bytes(data.stdout)
        out.append(p)
    return out


def _endo_720p(folder: Path) -> Path:
    """A few seconds of 1280x720 video at 25 fps (the size the polyp live-mode bar is set for)."""
    from inference.endo.demo import frames, write_video

    import cv2

    src = frames()[:50]
    big = [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_LINEAR) for f in src]
    return write_video(folder / "endo_720p.mp4", big, fps=25.0)


def _first(pattern_dir: Path, glob: str, n: int = 1) -> list[Path]:
    if not pattern_dir.is_dir():
        return []
    return sorted(pattern_dir.glob(glob))[:n]


def build(folder: Path, level: str = "full") -> dict[str, list[Path]]:
    """``full``: demos, real-format files and local real recordings; ``quick``: the demos and the ECG
    pair; ``tiny`` (the default suite's smoke round): the ECG demo and pair, an echo GIF, the X-ray demo."""
    from inference import modalities
    from inference.demo import ensure_demo_studies
    from inference.xray.demo import make_dicom

    folder.mkdir(parents=True, exist_ok=True)
    if level == "tiny":
        demo = {m: modalities.part(m, "demo").make(folder / "demo") for m in ("ecg", "xray")}
        files: dict[str, list[Path]] = {m: [Path(p)] for m, p in demo.items()}
        files["echo"] = [_echo_gif(folder)]
        files["ecg"] += _ecg_pair(folder)
        return files
    demo = dict(zip(("ecg", "pcg", "echo", "xray", "endo"), ensure_demo_studies(folder / "demo")))
    files = {m: [p] for m, p in demo.items()}
    files["ecg"] += _ecg_pair(folder)
    if level == "quick":
        return files
    files["echo"] += [_echo_gif(folder)] + _echonet_avi(folder, 2)
    files["xray"] += [make_dicom(folder)] + _first(DATA / "kermany_test/dataset/test/PNEUMONIA", "*.jpeg")
    files["endo"] += [_endo_720p(folder)]
    files["ecg"] += _first(SHARED / "reference/ecg", "*.hea") + _first(DATA / "cinc2017/training2017", "A0000[1-2].hea", 2)
    files["pcg"] += _first(SHARED / "reference/pcg/recordings", "a000*.wav", 2)
    return files

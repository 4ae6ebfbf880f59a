"""X-ray demo studies.

``make(folder)``: the app's demo, a **real** paediatric chest radiograph (bacterial pneumonia) from the Kermany
set (CC BY 4.0), downsized to 512 px and shipped in ``resources/xray/`` with a normal one (``make(folder,
"normal")``). Both are held-out test-split images of Lightbox's pneumonia model. ``attribution_for(study)``
gives the credit line the viewer and the PDF show for them.

``make_dicom(folder)``: a synthetic PA chest radiograph as a small 16-bit DICOM (CR, MONOCHROME2, pixel
spacing), for the reader, ruler and MedSight tests. Drawn by this code (no patient data): thorax outline with soft tissue, two lung fields, posterior and
anterior ribs, clavicles, spine, heart shadow, diaphragm domes, and a planted round opacity in the
right lower zone (image left) so the heatmap has something to find. 512 x 512 px at 0.70 mm
(35.8 cm field), 12 bits stored in 16, Window Center/Width in the header; ~0.5 MB. Deterministic.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.atomic import atomic_path

NAME = "demo_chest_xray.dcm"
RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "xray"
REAL = {"pneumonia": "kermany_pneumonia_person1031_bacteria_2963.jpeg",
        "normal": "kermany_normal_IM-0129-0001.jpeg"}
ATTRIBUTION = ("Image: Kermany DS, Zhang K, Goldbaum M, et al. Cell 2018;172:1122–1131; data doi "
               "10.17632/rscbjbr9sj.2, CC BY 4.0 (downsized to 512 px). Paediatric AP chest radiograph, "
               "test split of Lightbox's pneumonia model.")


def make(folder, which: str = "pneumonia") -> Path:
    """Copy a real demo radiograph (``pneumonia`` or ``normal``) into ``folder``; its path."""
    import shutil

    src = RESOURCES / REAL[which]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / src.name
    if not dest.exists() or dest.stat().st_size != src.stat().st_size:
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
    return dest


def _real_hashes() -> dict[str, str]:
    from inference.study import sha256_file

    global _HASHES
    if _HASHES is None:
        _HASHES = {sha256_file(RESOURCES / f): k for k, f in REAL.items() if (RESOURCES / f).exists()}
    return _HASHES


_HASHES: dict[str, str] | None = None


def attribution_for(study) -> str:
    """The credit line when ``study`` is one of the shipped Kermany radiographs (matched by content), else ''."""
    sha = getattr(study, "sha256", "") or ""
    return ATTRIBUTION if sha and sha in _real_hashes() else ""
SIZE = 1024
SPACING_MM = 0.35
#: the planted opacity: centre (row, col) and radius, in pixels of the 1024 drawing grid
OPACITY = (640, 330, 55)


def _ellipse(yy, xx, cy, cx, ry, rx):
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2


def render(size: int = SIZE) -> np.ndarray:
    """Attenuation-like image, 0..4095 (brighter = more attenuating), float32."""
    import cv2

    rng = np.random.default_rng(7)
    s = size / 1024.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.full((size, size), 250.0, np.float32)  # air outside the body
    # body / soft tissue of the thorax
    body = _ellipse(yy, xx, 560 * s, 512 * s, 520 * s, 440 * s) < 1.0
    img[body] = 2300.0
    # shoulders and neck
    sh = _ellipse(yy, xx, 210 * s, 512 * s, 150 * s, 500 * s) < 1.0
    img[sh] = 2300.0
    neck = (np.abs(xx - 512 * s) < 110 * s) & (yy < 200 * s)
    img[neck] = 2300.0
    # lung fields (dark): two tilted ellipses, clipped above the diaphragm domes
    lungs = np.zeros_like(img, dtype=bool)
    for cx, sign in ((340 * s, -1), (684 * s, 1)):
        e = _ellipse(yy, xx, 500 * s, cx, 330 * s, 165 * s) < 1.0
        dome = yy < (760 * s - 60 * s * np.cos((xx - cx) / (165 * s) * np.pi / 2) ** 2)
        lungs |= e & dome & (yy > 190 * s)
    img[lungs] = 700.0
    # heart shadow (left of the patient = image right), overlapping the left lung
    rot = ((xx - 575 * s) * 0.94 + (yy - 610 * s) * 0.34, -(xx - 575 * s) * 0.34 + (yy - 610 * s) * 0.94)
    heart = (rot[0] / (190 * s)) ** 2 + (rot[1] / (140 * s)) ** 2 < 1.0
    img[heart & (yy > 440 * s)] = 1900.0
    # mediastinum and spine
    med = (np.abs(xx - 512 * s) < 55 * s) & (yy > 150 * s) & (yy < 900 * s)
    img[med] = np.maximum(img[med], 2200.0)
    spine = (np.abs(xx - 512 * s) < 32 * s) & (yy > 100 * s)
    img[spine & body] += 250.0
    for v in range(12):  # vertebral end plates
        y0 = (200 + v * 60) * s
        img[(np.abs(yy - y0) < 3 * s) & (np.abs(xx - 512 * s) < 32 * s)] -= 250.0
    # below the diaphragm: abdomen
    below = (yy > 740 * s) & body & ~lungs
    img[below] = np.maximum(img[below], 2350.0)
    # ribs: posterior arcs + anterior arcs, both sides
    ribs = np.zeros_like(img)
    for k in range(10):
        y0 = (215 + k * 52) * s
        for side in (-1, 1):
            cx = 512 * s + side * 20 * s
            t = np.linspace(0, 1, 200)
            px = cx + side * t * 330 * s
            py = y0 + 80 * s * np.sin(t * np.pi * 0.85) - 30 * s * t
            pts = np.stack([px, py], 1).astype(np.int32)
            cv2.polylines(ribs, [pts], False, 1.0, thickness=max(2, int(16 * s)), lineType=cv2.LINE_AA)
            # anterior rib, fainter, sloping down towards the midline
            ax = cx + side * (330 * s - t * 250 * s)
            ay = y0 + 80 * s * np.sin(0.85 * np.pi) - 30 * s + t * 110 * s
            pts = np.stack([ax, ay], 1).astype(np.int32)
            cv2.polylines(ribs, [pts], False, 0.55, thickness=max(2, int(11 * s)), lineType=cv2.LINE_AA)
    ribs = cv2.GaussianBlur(ribs, (0, 0), 1.5 * s) * (yy < 760 * s)
    img += ribs * 650.0 * (body | lungs)
    # clavicles
    clav = np.zeros_like(img)
    for side in (-1, 1):
        t = np.linspace(0, 1, 100)
        px = 512 * s + side * (60 * s + t * 300 * s)
        py = 210 * s - 40 * s * t + 20 * s * t ** 2
        cv2.polylines(clav, [np.stack([px, py], 1).astype(np.int32)], False, 1.0,
                      thickness=max(2, int(20 * s)), lineType=cv2.LINE_AA)
    img += cv2.GaussianBlur(clav, (0, 0), 2 * s) * 600.0
    # vascular markings in the lungs: fine random branches from the hila
    vessels = np.zeros_like(img)
    for side in (-1, 1):
        hx, hy = 512 * s + side * 95 * s, 470 * s
        for _ in range(28):
            ang = rng.uniform(-np.pi * 0.45, np.pi * 0.45) + (0 if side > 0 else np.pi)
            ln = rng.uniform(120, 260) * s
            ex, ey = hx + np.cos(ang) * ln, hy + np.sin(ang) * ln * 0.9
            cv2.line(vessels, (int(hx), int(hy)), (int(ex), int(ey)), 1.0, max(1, int(3 * s)), cv2.LINE_AA)
    img += cv2.GaussianBlur(vessels, (0, 0), 2.5 * s) * 260.0 * lungs
    # the planted opacity: a soft-edged round consolidation in the right lower zone
    cy, cx, r = (v * s for v in OPACITY)
    d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
    img += (1.0 / (1.0 + np.exp(np.clip((d - r) / (6 * s), -50, 50)))) * 1100.0 * lungs
    # smooth, then quantum-like noise
    img = cv2.GaussianBlur(img, (0, 0), 2.0 * s)
    img += rng.normal(0, 18.0, img.shape).astype(np.float32)
    return np.clip(img, 0, 4095).astype(np.float32)


def make_dicom(folder) -> Path:
    """The synthetic 16-bit CR DICOM (drawn here, no patient data) in ``folder``; its path."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / NAME
    if path.exists():
        return path
    # 512 x 512 keeps the file < 1 MB (16-bit: 512 KB)
    size = 512
    img = render(size).astype(np.uint16)
    spacing = SPACING_MM * SIZE / size
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR Image Storage
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.7000001.1"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.7000001.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.7000001.3"
    ds.Modality = "CR"
    ds.PatientName = "DEMO^SYNTHETIC"
    ds.PatientID = "LIGHTBOX-DEMO"  # the demo ECG names the same synthetic patient
    ds.StudyDate = "20260101"
    ds.StudyDescription = "Synthetic chest PA (Lightbox demo)"
    ds.SeriesDescription = "Demo chest PA - synthetic, planted right lower zone opacity"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelSpacing = [f"{spacing:.3f}", f"{spacing:.3f}"]
    ds.ImagerPixelSpacing = [f"{spacing:.3f}", f"{spacing:.3f}"]
    ds.RescaleSlope = "1"
    ds.RescaleIntercept = "0"
    ds.RescaleType = "US"
    ds.WindowCenter = "2000"
    ds.WindowWidth = "3600"
    ds.WindowCenterWidthExplanation = "CHEST"
    ds.PixelData = img.tobytes()  # fixed UIDs above keep the file deterministic
    with atomic_path(path) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
    return path

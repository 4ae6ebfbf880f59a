"""Lightbox's demo studies as DICOM, as modalities would send them: one synthetic patient (DEMO^SYNTHETIC,
ID LIGHTBOX-DEMO), one study per modality, deterministic content (name-based UUID UIDs under 2.25).

- X-ray: the shipped real Kermany radiograph (bacterial pneumonia, CC BY 4.0) as an 8-bit CR image
- ECG: the demo 12-lead ECG (``inference.ecg.demo.synth_ecg``) as a 12-Lead ECG Waveform (500 Hz, 1 µV/LSB)
- Echo: the demo apical-4-chamber phantom loop as an Ultrasound Multi-frame image (RGB, frame time,
  320 x 240, JPEG-LS lossless)
- Endoscopy: the demo colonoscopy clip's first polyp (frames 84-107) as a series of 24 VL Endoscopic images

``lightbox demo --dicom DIR`` writes them (to push into a PACS or send to the node with ``storescu``);
the tests and ``lightbox bench`` use them as Orthanc's and the node's traffic.
"""
from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np

from inference.atomic import atomic_path

# demo UIDs are name-based UUIDs (RFC 4122 v5) under 2.25: deterministic, and no one else's root
DEMO_NAMESPACE = "lightbox-demo-dicom"
PATIENT = {"PatientName": "DEMO^SYNTHETIC", "PatientID": "LIGHTBOX-DEMO", "PatientBirthDate": "19700101",
           "PatientSex": "O"}
MODALITIES = ("xray", "ecg", "echo", "endo")


def _uid(*parts: object) -> str:
    import uuid

    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, DEMO_NAMESPACE + '/' + '/'.join(map(str, parts))).int}"


def _base(sop_class: str, modality: str, key: str, series: int = 1, instance: int = 1, study_date: str = "20250301"):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from inference.dicomnet.uids import IMPLEMENTATION_CLASS_UID

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = _uid(key, "instance", series, instance)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    for k, v in PATIENT.items():
        setattr(ds, k, v)
    ds.StudyInstanceUID = _uid(key, "study")
    ds.SeriesInstanceUID = _uid(key, "series", series)
    ds.StudyID, ds.AccessionNumber = f"DEMO{key.upper()[:4]}", f"LBXDEMO-{key.upper()}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesNumber, ds.InstanceNumber = series, instance
    ds.Manufacturer = "Lightbox (synthetic demo)"
    ds.StudyDescription = f"Lightbox demo ({key})"
    ds.PatientOrientation = ""
    return ds


def _save(ds, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
    return path


def ecg_dicom(folder: Path) -> Path:
    from pydicom.dataset import Dataset

    from inference.ecg.demo import synth_ecg
    from inference.ecg.reader import LEADS

    fs = 500
    sig = synth_ecg(fs=fs)  # (12, n) mV
    data = np.clip(np.round(sig * 1000.0), -32768, 32767).astype("<i2")  # µV, 1 µV per LSB
    ds = _base("1.2.840.10008.5.1.4.1.1.9.1.1", "ECG", "ecg")
    ds.AcquisitionDateTime = ds.StudyDate + ds.StudyTime
    w = Dataset()
    w.MultiplexGroupLabel = "RHYTHM"
    w.WaveformOriginality = "ORIGINAL"
    w.NumberOfWaveformChannels, w.NumberOfWaveformSamples = 12, data.shape[1]
    w.SamplingFrequency = fs
    w.WaveformBitsAllocated, w.WaveformSampleInterpretation = 16, "SS"
    channels = []
    for i, lead in enumerate(LEADS):
        ch = Dataset()
        src = Dataset()
        src.CodeValue, src.CodingSchemeDesignator = f"5.6.3-9-{i + 1}", "SCPECG"
        src.CodingSchemeVersion, src.CodeMeaning = "1.3", f"Lead {lead}"
        ch.ChannelSourceSequence = [src]
        ch.ChannelSensitivity = "1"
        unit = Dataset()
        unit.CodeValue, unit.CodingSchemeDesignator, unit.CodeMeaning = "uV", "UCUM", "microvolt"
        ch.ChannelSensitivityUnitsSequence = [unit]
        ch.ChannelSensitivityCorrectionFactor, ch.ChannelBaseline, ch.ChannelSampleSkew = "1", "0", "0"
        ch.WaveformBitsStored = 16
        channels.append(ch)
    w.ChannelDefinitionSequence = channels
    w.WaveformData = data.T.tobytes()  # interleaved: sample-major, channel-minor
    ds.WaveformSequence = [w]
    return _save(ds, folder / "demo_ecg_12lead.dcm")


def echo_dicom(folder: Path, size: tuple[int, int] = (240, 320)) -> Path:
    """The echo phantom loop, downsized to ``size`` (rows, columns), JPEG-LS lossless (as many cart-based
    systems send): about 8 MB instead of 76."""
    import cv2
    from pydicom.uid import JPEGLSLossless

    from inference.echo import demo as edemo

    video = np.stack([cv2.resize(f, size[::-1], interpolation=cv2.INTER_AREA) for f in edemo.frames()])
    ds = _base("1.2.840.10008.5.1.4.1.1.3.1", "US", "echo")
    n, h, w = video.shape[:3]
    ds.NumberOfFrames, ds.Rows, ds.Columns = n, h, w
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = f"{1000.0 / edemo.FPS:.3f}"
    ds.FrameIncrementPointer = (0x0018, 0x1063)
    ds.CineRate = int(round(edemo.FPS))
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SeriesDescription = "Apical 4 chamber (synthetic phantom)"
    ds.PixelData = np.ascontiguousarray(video).tobytes()
    try:
        ds.compress(JPEGLSLossless, encoding_plugin="pyjpegls")
    except Exception:  # no JPEG-LS encoder here: send it uncompressed
        pass
    return _save(ds, folder / "demo_echo_a4c.dcm")


ENDO_FRAMES = range(84, 108)  # 24 clean frames of the demo clip around its first polyp (blob from frame 88)


def _endo_frames(indices) -> list[np.ndarray]:
    """The endoscopy demo's frames at ``indices`` (the same pixels as ``inference.endo.demo.frames()``),
    computed alone when the whole clip has not been made in this process (it takes seconds)."""
    from inference.endo import demo as ndemo

    if ndemo._frames.cache_info().currsize:
        allf = ndemo.frames()
        return [allf[i] for i in indices]
    clean = all(not any(a <= i < b for a, b in ndemo.SEGMENTS.values()) for i in indices)
    if not clean:
        allf = ndemo.frames()
        return [allf[i] for i in indices]
    tex = ndemo._texture(np.random.default_rng(20240508))
    return [ndemo._frame(tex, float(i), any(a <= i < b for a, b in ndemo.BLOB_FRAMES)) for i in indices]


def endo_dicoms(folder: Path, indices=ENDO_FRAMES) -> list[Path]:
    from inference.endo import demo as ndemo

    out = []
    for k, (i, f) in enumerate(zip(indices, _endo_frames(list(indices))), 1):
        ds = _base("1.2.840.10008.5.1.4.1.1.77.1.1", "ES", "endo", instance=k)
        a = np.ascontiguousarray(np.asarray(f, np.uint8)[..., :3])
        ds.Rows, ds.Columns = a.shape[:2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.SeriesDescription = "Colonoscopy stills (synthetic)"
        ds.AcquisitionDateTime = ds.StudyDate + (_dt.datetime(2025, 3, 1, 10, 15) +
                                                 _dt.timedelta(seconds=i / ndemo.FPS)).strftime("%H%M%S.%f")
        ds.PixelData = a.tobytes()
        out.append(_save(ds, folder / "endo" / f"demo_endo_{k:04d}.dcm"))
    return out


def xray_dicom(folder: Path) -> Path:
    """The shipped real demo radiograph (Kermany et al., paediatric bacterial pneumonia, CC BY 4.0; see
    ``inference.xray.demo``) as a CR image of the demo patient, 8 bits stored, as a digitiser would send it.
    Real rather than the drawn phantom: the pneumonia model calls the phantom outside what it was trained on,
    and the network demo should show a result with its heatmap going back to the PACS."""
    from PIL import Image

    from inference.xray import demo as xdemo

    src = xdemo.RESOURCES / xdemo.REAL["pneumonia"]
    with Image.open(src) as im:
        a = np.asarray(im.convert("L"), np.uint8)
    ds = _base("1.2.840.10008.5.1.4.1.1.1", "CR", "xray", study_date="20260101")
    # the UIDs the phantom carried (fixed: other demos and tests name this study)
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.7000001.2"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.7000001.3"
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.7000001.1"
    ds.AccessionNumber = "LBXDEMO-XRAY"
    ds.StudyDescription = "Chest AP (Lightbox demo)"
    ds.SeriesDescription = "Kermany et al. 2018 image, CC BY 4.0"  # LO: 64 characters at most
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "AP"
    ds.ImageComments = xdemo.ATTRIBUTION
    ds.Manufacturer = "Lightbox (demo; real image, see ImageComments)"
    ds.Rows, ds.Columns = a.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = "128", "256"
    ds.PixelData = a.tobytes()
    return _save(ds, folder / "demo_chest_cr.dcm")


def make_all(folder: str | Path, only: tuple[str, ...] = MODALITIES) -> dict[str, list[Path]]:
    """Write the demo DICOMs into ``folder``; {modality: [files]}."""
    folder = Path(folder)
    out: dict[str, list[Path]] = {}
    for m in only:
        if m == "xray":
            out[m] = [xray_dicom(folder)]
        elif m == "ecg":
            out[m] = [ecg_dicom(folder)]
        elif m == "echo":
            out[m] = [echo_dicom(folder)]
        elif m == "endo":
            out[m] = endo_dicoms(folder)
        else:
            raise ValueError(f"no DICOM demo for {m}")
    return out

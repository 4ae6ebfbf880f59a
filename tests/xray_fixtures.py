"""Chest X-ray fixtures shared by the X-ray test modules (imported there by name)."""
from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory):
    """The synthetic CR DICOM (spacing, window, 16 bits): what the reader and MedSight tests need."""
    from inference.xray.demo import make_dicom

    return make_dicom(tmp_path_factory.mktemp("xdemo"))


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """VGG16 features + MedSight heads in the reference layouts, seeded random weights."""
    from inference.xray.synthetic_weights import HEADS_FILE, VGG_FILE, make_heads_file, make_vgg16_file

    d = tmp_path_factory.mktemp("xweights")
    vgg = make_vgg16_file(d / VGG_FILE, seed=0)
    yield vgg, make_heads_file(d / HEADS_FILE, seed=1, vgg_path=vgg)
    shutil.rmtree(d, ignore_errors=True)


def cr_dicom(path, img, date: str, name: str = "DOE^JOHN", patient_id: str = "P1"):
    """A minimal CR DICOM of ``img`` (uint8 -> 8 bits stored, uint16 -> 12 bits) for patient/compare tests."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "CR"
    ds.PatientName, ds.PatientID, ds.StudyDate = name, patient_id, date
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    bits = (8, 8, 7) if img.dtype.itemsize == 1 else (16, 12, 11)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits
    ds.PixelRepresentation = 0
    ds.PixelData = img.tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path

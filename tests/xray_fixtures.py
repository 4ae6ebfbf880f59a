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

"""PDF base: header, results, provenance and the NOT A CLINICAL RESULT stamp, checked on the rendered page."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from app.report.base import build_pdf, generic_sections
from inference.results import DISCLAIMER, NOT_CLINICAL, Result
from inference.study import Study

needs_poppler = pytest.mark.skipif(not shutil.which("pdftoppm") or not shutil.which("pdftotext"),
                                   reason="poppler-utils (pdftoppm, pdftotext) not installed")


def _study():
    return Study("ecg", "/data/demo.hd5", "f" * 64, "demo.hd5")


def _render(pdf, tmp_path):
    subprocess.run(["pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(pdf), str(tmp_path / "p")], check=True)
    png = sorted(tmp_path.glob("p*.png"))[0]
    import cv2

    return cv2.imread(str(png))[:, :, ::-1]


def _text(pdf):
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout


@needs_poppler
def test_pdf_header_disclaimer_and_stamp(tmp_path):
    r = Result("ecg2af", "ab" * 32, "onnxruntime", "CPU, 2 threads", 0.12, {"af_risk": 0.031}, clinical=False, id=7)
    pdf = tmp_path / "r.pdf"
    build_pdf(pdf, _study(), [r], generic_sections([r]))
    text = _text(pdf)
    assert "Lightbox" in text and "demo.hd5" in text and "ECG report" in text
    assert DISCLAIMER in text
    assert NOT_CLINICAL in text
    assert "ab" * 32 in text.replace("\n", "")  # the weights hash of every number
    img = _render(pdf, tmp_path).astype(int)
    red = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
    assert red.sum() > 50, "the red stamp is not on the page"


@needs_poppler
def test_official_result_has_no_stamp(tmp_path):
    r = Result("ecg2af", "ab" * 32, "onnxruntime", "CPU", 0.1, {"af_risk": 0.031}, clinical=True, id=1)
    pdf = tmp_path / "ok.pdf"
    build_pdf(pdf, _study(), [r], generic_sections([r]))
    assert NOT_CLINICAL not in _text(pdf)
    img = _render(pdf, tmp_path).astype(int)
    red = (img[..., 0] > 150) & (img[..., 1] < 90) & (img[..., 2] < 90)
    assert red.sum() == 0


def test_failed_build_leaves_no_file(tmp_path):
    pdf = tmp_path / "broken.pdf"

    class Bad:
        def wrap(self, *a):
            raise RuntimeError("layout failed")

    with pytest.raises(Exception):
        build_pdf(pdf, _study(), [], [Bad()])
    assert not pdf.exists() and list(tmp_path.glob("*.part*")) == []

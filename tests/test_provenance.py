"""Provenance, per modality: a result from non-official weights carries NOT A CLINICAL RESULT in the UI,
the database, the PDF and the CSV export, and each of them names the model and the weights sha256."""
from __future__ import annotations

import csv
import shutil
import subprocess

import pytest

from inference.registry import Registry
from inference.results import NOT_CLINICAL


def _ecg(tmp_path, reg):
    from inference.ecg import demo
    from inference.ecg.ecg2af import OFFICIAL_FILE, make_test_checkpoint

    reg.install(make_test_checkpoint(tmp_path / OFFICIAL_FILE, seed=3), "ecg2af", unofficial=True)
    return demo.make(tmp_path), "ecg2af"


def _pcg(tmp_path, reg):
    from inference.pcg import demo

    return demo.make(tmp_path), "heart-sound"  # bundled, not clinically validated: clinical = false


def _xray(tmp_path, reg):
    from inference.xray import demo
    from inference.xray.synthetic_weights import HEADS_FILE, VGG_FILE, make_heads_file, make_vgg16_file

    vgg = make_vgg16_file(tmp_path / VGG_FILE, seed=0)
    reg.install(vgg, "vgg16-imagenet", unofficial=True)
    reg.install(make_heads_file(tmp_path / HEADS_FILE, seed=1, vgg_path=vgg), "xray-anomaly", unofficial=True)
    return demo.make(tmp_path), "xray-anomaly"


def _echo(tmp_path, reg, monkeypatch):
    import torch

    from inference.echo import demo
    from inference.echo import echonet as E

    torch.manual_seed(6)
    reg.install(E.save_official_format(E.build_ef_model(), tmp_path / "r2plus1d_18_32_2_pretrained.pt",
                                       frames=32, period=2), "echonet-ef", unofficial=True)
    reg.install(E.save_official_format(E.build_seg_model(), tmp_path / "deeplabv3_resnet50_random.pt"),
                "echonet-seg", unofficial=True)
    monkeypatch.setenv("LIGHTBOX_ECHO_VIEW", "A4C")  # the operator's view confirmation, headless
    return demo.write(tmp_path / "short.mp4", demo.frames()[5:45]), "echonet-ef"


def _endo(tmp_path, reg):
    from inference.endo import demo
    from inference.endo.models import make_test_polyp_onnx

    reg.install(make_test_polyp_onnx(tmp_path / "endo-polyp.onnx", size=64, bias=4.0), "endo-polyp", unofficial=True)
    return demo.make(tmp_path), "endo-polyp"


SETUPS = {"ecg": _ecg, "pcg": _pcg, "xray": _xray, "echo": _echo, "endo": _endo}


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="poppler-utils (pdftotext) not installed")
@pytest.mark.parametrize("modality", list(SETUPS))
def test_non_official_result_is_stamped_everywhere(modality, tmp_path, monkeypatch, qtbot):
    from app.cli import main
    from app.store import Store

    reg = Registry()
    setup = SETUPS[modality]
    path, model = setup(tmp_path, reg, monkeypatch) if modality == "echo" else setup(tmp_path, reg)
    db, pdf, out = tmp_path / "p.sqlite", tmp_path / "r.pdf", tmp_path / "rows.csv"

    # database + PDF (headless analyse: the same pipeline and report the app uses)
    assert main(["analyse", str(path), "--model", model, "--db", str(db), "--pdf", str(pdf)]) == 0
    store = Store(db)
    sid = store.studies()[0]["id"]
    r = store.latest_result(sid, model)
    row = store.conn.execute("SELECT clinical, stamp, weights_sha256, device, runtime FROM results WHERE id=?",
                             (r.id,)).fetchone()
    assert row[0] == 0 and row[1] == NOT_CLINICAL and len(row[2]) == 64 and row[3] and row[4]
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert NOT_CLINICAL in text
    assert row[2] in text.replace("\n", "").replace(" ", ""), "the PDF must name the weights sha256"

    # CSV export (lightbox batch)
    assert main(["batch", model, str(path), "--out", str(out), "--workers", "1", "--no-store"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 1 and rows[0]["error"] == ""
    assert rows[0]["stamp"] == NOT_CLINICAL and rows[0]["clinical"] == "False"
    assert rows[0]["weights_sha256"] == row[2] and rows[0]["model_id"] == model

    # UI: the stored result is shown, stamped, with its provenance, without recomputing
    from app.main import MainWindow

    w = MainWindow(store, reg)
    w.quiet_errors = True
    qtbot.addWidget(w)
    w.show()
    w.open_path(path)
    qtbot.waitUntil(lambda: w.study_id == sid, timeout=60000)
    if w.results.current_model() != model:
        w.results.model_box.setCurrentIndex(w.results.model_box.findData(model))
        w._show_result(store.latest_result(sid, model))
    assert w.results.stamp.isVisibleTo(w) and w.results.stamp.text() == NOT_CLINICAL
    assert model in w.results.prov.text() and row[2][:12] in w.results.prov.text()
    w.ctx.jobs.wait(20000)

"""Lightbox's chest X-ray pneumonia classifier: patient split, tiny training on generated images, ONNX
agreement, the OOD gate and the shipped model. No dataset needed (the real-data check skips without it)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.xray import pneumonia_data as pdata
from inference.xray.pneumonia import OUTSIDE, PneumoniaModel, cam_to_heatmap, image_stats

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "resources" / "models" / "xray_pneumonia_cnn.onnx"
DATA = Path("/work/data/xray/train")


@pytest.mark.parametrize("name,pid", [
    ("person1000_bacteria_2931.jpeg", "person1000"),
    ("person447_virus_921_1.jpeg", "person447"),
    ("IM-0115-0001.jpeg", "IM-0115"),
    ("IM-0429-0001-0002.jpeg", "IM-0429"),
    ("NORMAL2-IM-0383-0001.jpeg", "IM-0383"),
    ("scan_7.png", "scan_7"),
])
def test_patient_id(name, pid):
    assert pdata.patient_id(name) == pid


def _items(n_pat=40, per=2):
    items = []
    for p in range(n_pat):
        for k in range(per):
            items.append(pdata.Item(Path(f"/x/person{p}_{k}.png"), int(p % 3 == 0), f"person{p}"))
    return items


def test_split_is_by_patient_stratified_and_deterministic():
    items = _items()
    a, b = pdata.split(items, seed=3), pdata.split(items, seed=3)
    assert a == b
    pats = {k: {items[i].patient for i in v} for k, v in a.items()}
    assert not (pats["train"] & pats["val"]) and not (pats["train"] & pats["test"]) and not (pats["val"] & pats["test"])
    assert sorted(sum(a.values(), [])) == list(range(len(items)))
    for k in a:
        assert any(items[i].label == 1 for i in a[k]) and any(items[i].label == 0 for i in a[k])


def _chest(rng, sick: bool, size=64):
    """A generated 'radiograph': dark lungs in a bright body; the sick class has a bright opacity in a lung."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 200 - 120 * (np.exp(-((xx - 0.33) ** 2 / 0.015 + (yy - 0.5) ** 2 / 0.06))
                       + np.exp(-((xx - 0.67) ** 2 / 0.015 + (yy - 0.5) ** 2 / 0.06)))
    if sick:
        cx, cy = rng.choice([0.33, 0.67]) + rng.uniform(-0.04, 0.04), rng.uniform(0.4, 0.65)
        img += 110 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.006)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Train on 72 generated images (two classes), export, evaluate: a few seconds on one thread."""
    import cv2

    tmp = tmp_path_factory.mktemp("xray_tiny")
    rng = np.random.default_rng(0)
    for c, sick in (("NORMAL", False), ("PNEUMONIA", True)):
        (tmp / "data" / c).mkdir(parents=True)
        for i in range(36):
            name = f"person{i}_bacteria_{i}.png" if sick else f"IM-{i:04d}-0001.png"
            cv2.imwrite(str(tmp / "data" / c / name), _chest(rng, sick))
    mp = pytest.MonkeyPatch()
    mp.setenv("LIGHTBOX_XRAY_CACHE", str(tmp / "cache"))
    from inference.xray.pneumonia_train import train

    events = []
    card = train(tmp / "data", tmp / "out", size=48, width=6, epochs=8, patience=8, batch=16, lr=3e-3,
                 emit=events.append, cache=False)
    mp.undo()
    return tmp, card, events


def test_tiny_training_learns_to_separate_generated_classes(tiny_run):
    tmp, card, events = tiny_run
    assert card["split"]["by"] == "patient"
    assert card["metrics"]["test"]["auroc"] >= 0.9
    assert card["metrics"]["val"]["auroc"] >= 0.9
    assert {e["event"] for e in events} >= {"split", "start", "epoch", "trained", "exported", "done"}
    for f in ("xray_pneumonia_cnn.onnx", "xray_pneumonia_cnn.json", "xray_pneumonia_cnn.md"):
        assert (tmp / "out" / f).stat().st_size > 0
    assert not list((tmp / "out").glob("*.pt"))  # checkpoints never land next to the model
    md = (tmp / "out" / "xray_pneumonia_cnn.md").read_text()
    assert "NOT A CLINICAL RESULT" in md and "Adults" in md and "CC BY 4.0" in md


def test_tiny_model_onnx_agrees_with_torch_and_gives_a_heatmap(tiny_run):
    tmp, card, _ = tiny_run
    assert card["agreement_torch_onnx"]["max_abs_diff"]["prob"] < 1e-4
    m = PneumoniaModel(tmp / "out" / "xray_pneumonia_cnn.onnx")
    assert m.size == 48 and 0 < m.threshold < 1
    img = _chest(np.random.default_rng(5), True, size=300)
    r = m.analyse(img)
    assert r["heatmap"].shape == img.shape and 0 <= r["heatmap"].min() and r["heatmap"].max() <= 1
    assert 0 <= r["probability"] <= 1


def test_cam_to_heatmap():
    cam = np.array([[-1.0, 0.0], [0.5, 2.0]], np.float32)
    h = cam_to_heatmap(cam, (20, 30))
    assert h.shape == (20, 30) and h.min() >= 0 and h.max() <= 1
    assert h[-1, -1] > h[0, 0]
    assert cam_to_heatmap(np.zeros((3, 3)), (5, 5)).max() == 0


def test_image_stats_are_finite_for_degenerate_images():
    for img in (np.zeros((32, 32), np.uint8), np.full((32, 32), 255, np.uint8)):
        assert np.isfinite(image_stats(img)).all()


# -- the shipped model -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.exists():
        pytest.skip("shipped X-ray pneumonia model not present")
    return PneumoniaModel(SHIPPED)


def test_shipped_model_card_and_spec(shipped):
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    assert card["split"]["by"] == "patient"
    assert card["metrics"]["test"]["auroc"] >= 0.9
    assert card["preprocessing"]["threshold"] == pytest.approx(shipped.threshold)
    assert SHIPPED.stat().st_size < 5_000_000


def test_ood_gate_refuses_colour_photo_and_noise(shipped):
    yy, xx = np.mgrid[0:300, 0:400]
    photo = np.stack([(xx * 0.6) % 255, (yy * 0.8) % 255, 255 - (xx * 0.6) % 255], -1).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (400, 400)).astype(np.uint8)
    for img in (photo, noise, np.zeros((256, 256), np.uint8)):
        r = shipped.analyse(img)
        assert not r["in_distribution"] and r["label"] == "outside"
        assert OUTSIDE in r["ood_message"]


def test_demo_radiographs_are_in_distribution(shipped):
    import cv2

    for f in sorted((ROOT / "resources" / "xray").glob("kermany_*.jpeg")):
        g = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        r = shipped.analyse(g)
        assert r["in_distribution"], (f.name, r["ood_scores"])
        assert r["label"] in ("normal", "pneumonia")
        assert f.stat().st_size < 100_000


@pytest.mark.skipif(not DATA.is_dir(), reason="Kermany data not present at /work/data/xray")
def test_real_data_test_split_auroc(shipped):
    """The card's test split, re-run from the JPEGs through the run-time path (decode, resize, ONNX)."""
    from inference.metrics import roc_auc

    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    names = card["split"]["test_files"][::8]
    ys, ps = [], []
    for n in names:
        p = next(DATA.glob(f"*/{n}"))
        r = shipped.analyse(pdata.decode_grey(p))
        ys.append(int(p.parent.name.upper() == "PNEUMONIA"))
        ps.append(r["probability"])
    assert roc_auc(np.array(ys), np.array(ps)) >= 0.9


# -- pipeline, viewer, PDF, batch --------------------------------------------------------------------------
def test_pipeline_default_model_is_xray_pneumonia(shipped):
    from inference.pipeline import default_model, models_for
    from inference.registry import Registry

    assert models_for("xray")[0] == "xray-pneumonia" and "xray-anomaly" in models_for("xray")
    reg = Registry()
    st = reg.state("xray-pneumonia")
    assert st.usable and st.entry.bundled and not st.entry.clinical
    assert default_model("xray", reg) == "xray-pneumonia"


@pytest.fixture(scope="module")
def demo_result(shipped, tmp_path_factory):
    from inference.pipeline import analyse
    from inference.xray.demo import make
    from inference.xray.reader import read

    st = read(make(tmp_path_factory.mktemp("xr_demo")))
    return st, analyse(st)


def test_pipeline_on_the_demo_radiograph(demo_result):
    from inference.xray.demo import attribution_for

    st, r = demo_result
    o = r.outputs
    assert r.model_id == "xray-pneumonia" and r.clinical is False and r.runtime == "onnxruntime"
    assert o["in_distribution"] is True and 0 <= o["p_pneumonia"] <= 1
    assert o["label"] in ("PNEUMONIA", "normal") and o["finding"] in ("pneumonia", "normal")
    assert r.arrays["heatmap"].shape == st.data["display"].shape[:2]
    assert np.asarray(o["_gradcam_grid"]).shape == (10, 10)
    assert "CC BY 4.0" in attribution_for(st) and "Kermany" in attribution_for(st)


def test_pipeline_refuses_a_colour_photo(shipped, tmp_path):
    import cv2

    from inference.pipeline import analyse
    from inference.xray.reader import read

    yy, xx = np.mgrid[0:300, 0:400]
    photo = np.stack([(xx * 0.6) % 255, (yy * 0.8) % 255, 255 - (xx * 0.6) % 255], -1).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    r = analyse(read(tmp_path / "photo.png"), "xray-pneumonia")
    assert r.outputs["in_distribution"] is False and r.outputs["p_pneumonia"] is None
    assert OUTSIDE in r.outputs["ood_message"] and "_gradcam_grid" not in r.outputs and not r.arrays


def test_pdf_shows_the_pneumonia_result_and_the_image_credit(demo_result, tmp_path):
    import shutil
    import subprocess

    from app.report import build_report
    from app.store import Store

    st, r = demo_result
    store = Store(tmp_path / "s.sqlite")
    sid = store.add_study(st)
    store.add_result(sid, r)
    pdf = tmp_path / "cxr.pdf"
    build_report(st, store, sid, pdf)
    store.close()
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        return
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, timeout=30).stdout
    flat = " ".join(text.split())
    assert "P(pneumonia)" in flat and "NOT A CLINICAL RESULT" in flat and f"{r.outputs['p_pneumonia']:.3f}" in flat
    assert "Kermany" in flat and "CC BY 4.0" in flat and "adults are out of distribution" in flat


def test_batch_csv_carries_the_pneumonia_columns(shipped, tmp_path):
    import csv

    from inference.batch import run_batch
    from inference.xray.demo import make

    make(tmp_path / "in", "pneumonia")
    make(tmp_path / "in", "normal")
    out = tmp_path / "out.csv"
    run_batch("xray-pneumonia", [str(tmp_path / "in")], out, workers=1, store=False, progress=False)
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 2
    for row in rows:
        assert row["p_pneumonia"] and row["label"] in ("PNEUMONIA", "normal") and row["in_distribution"] == "True"
        assert row["stamp"] == "NOT A CLINICAL RESULT"


def test_viewer_shows_probability_label_heatmap_credit_and_ood(main_window, demo_result, tmp_path):
    import cv2

    from inference.pipeline import analyse
    from inference.xray.reader import read

    st, r = demo_result
    sid = main_window.ctx.store.add_study(st)
    main_window.show_study(st, sid)
    v = main_window.current_viewer()
    assert "Kermany" in v.attribution.text() and "CC BY 4.0" in v.attribution.text()
    main_window._analysis_done(sid, r)
    assert v.heat is not None and v.mode.currentText() == "Three panels"
    assert f"{r.outputs['p_pneumonia']:.3f}" in v.anomaly.score.text()
    band = v.anomaly.band.text()
    assert "threshold" in band and "NOT A CLINICAL RESULT" in band and r.outputs["label"] in band
    # an image outside the training domain: message, no label, no heatmap
    noise = np.random.default_rng(1).integers(0, 256, (300, 300)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "noise.png"), noise)
    st2 = read(tmp_path / "noise.png")
    r2 = analyse(st2, "xray-pneumonia")
    sid2 = main_window.ctx.store.add_study(st2)
    main_window.show_study(st2, sid2)
    v = main_window.current_viewer()
    assert v.attribution.text() == ""
    v.set_result(r2)
    assert v.heat is None and "not assessed" in v.anomaly.score.text()
    assert OUTSIDE in v.anomaly.band.text()

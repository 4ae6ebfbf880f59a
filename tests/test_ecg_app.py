"""ECG viewer (pytest-qt, offscreen), PDF report, and file -> store -> PDF end to end."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from inference.ecg import demo
from inference.ecg import ecg2af as E
from inference.pipeline import JobContext, analyse
from inference.ecg import reader as R
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory):
    return demo.make(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return E.make_test_checkpoint(tmp_path_factory.mktemp("ckpt") / E.OFFICIAL_FILE, seed=2)


def test_caliper_math():
    from app.ecg.paper import caliper_readout

    # 21.5 mm at 25 mm/s = 860 ms = 69.8 bpm; 12 mm at 10 mm/mV = 1.2 mV
    v = caliper_readout(10.0, 31.5, 5.0, 17.0, speed=25.0, gain=10.0)
    assert v["dt_ms"] == pytest.approx(860.0) and v["rate_bpm"] == pytest.approx(69.77, abs=0.01)
    assert v["dv_mv"] == pytest.approx(1.2)
    v = caliper_readout(0, 50, 0, 10, speed=50.0, gain=20.0)
    assert v["dt_ms"] == pytest.approx(1000.0) and v["rate_bpm"] == pytest.approx(60.0) and v["dv_mv"] == 0.5


def test_layouts_geometry():
    from app.ecg.paper import layout_panels

    panels, (w, h, rows) = layout_panels("3x4 + II", gain=10, speed=25, t0=0)
    assert len(panels) == 13 and len(rows) == 4
    assert [p[0] for p in panels[:4]] == ["I", "aVR", "V1", "V4"] and panels[-1][0] == "II"
    # each column is 2.5 s = 62.5 mm of paper at 25 mm/s
    assert panels[1][3] - panels[0][3] == pytest.approx(62.5)
    assert panels[-1][2] - panels[-1][1] == pytest.approx(10.0)
    panels, (w, h, rows) = layout_panels("12x1", gain=20, speed=50, t0=0)
    assert len(panels) == 12 and len(rows) == 12
    assert panels[0][3] > 0.2 * 50  # traces start after the calibration pulse


def test_display_filters_never_touch_the_model_input(demo_path):
    from app.ecg.paper import display_filter

    s = R.read(demo_path)
    before = s.data["model_input"].copy()
    sig = s.data["signal_mv"].copy()
    t = np.arange(sig.shape[1]) / 500
    noisy = sig + 0.3 * np.sin(2 * np.pi * 50 * t) + 0.8 * np.sin(2 * np.pi * 0.2 * t)
    out = display_filter(noisy, 500, baseline=True, mains_hz=50)
    lp = display_filter(sig + 0.2 * np.sin(2 * np.pi * 120 * t), 500, baseline=False, mains_hz=None, lowpass_hz=40)
    assert np.abs(lp - sig)[:, 500:-500].std() < 0.05
    # mains and wander are gone on the display copy, within the QRS-preserving tolerance
    assert np.abs(out - (sig - sig.mean(axis=1, keepdims=True)))[:, 500:-500].std() < 0.05
    np.testing.assert_array_equal(s.data["model_input"], before)


def test_viewer_shows_demo_and_switches(qtbot, demo_path, store):
    from app.context import AppContext
    from app.jobs import Jobs
    from app.modalities import viewer_class
    from app.ecg.viewer import EcgViewer
    from inference.registry import Registry

    assert viewer_class("ecg") is EcgViewer
    ctx = AppContext(store, Registry(), Jobs())
    v = EcgViewer(ctx)
    qtbot.addWidget(v)
    v.resize(1200, 800)
    v.show()
    s = R.read(demo_path)
    v.set_study(s, store.add_study(s))
    x, y = v.traces.getData()
    assert x is not None and np.isfinite(y).sum() > 9000  # 3x4 (12 × 1250) + rhythm strip (5000)
    qtbot.waitUntil(lambda: v.measure is not None, timeout=30000)
    assert abs(v.measure["heart_rate_bpm"] - 70) < 1.5
    px, _ = v.peaks.getData()
    assert len(px) == 12
    assert "HR 70 bpm" in v.info.text()
    v.set_layout("6x2")
    assert np.isfinite(v.traces.getData()[1]).sum() == 12 * 2500
    v.set_layout("12x1")
    x2, y2 = v.traces.getData()
    assert np.isfinite(y2).sum() == 12 * 5000
    v.set_speed(50.0)
    v.set_gain(20.0)
    assert v._geometry[0] > 500  # 10 s at 50 mm/s
    v.true_scale()
    assert v.zoom_vs_true() == pytest.approx(1.0, rel=0.02)
    v.zoom(2.0)
    assert v.zoom_vs_true() == pytest.approx(2.0, rel=0.05)
    v.set_speed(25.0)
    v.set_gain(10.0)
    v.caliper_btn.setChecked(True)
    v.cal_x[0].setValue(10.0)
    v.cal_x[1].setValue(31.5)
    v.cal_y[0].setValue(0.0)
    v.cal_y[1].setValue(10.0)
    assert "860 ms" in v.readout.text() and "70 bpm" in v.readout.text() and "1.00 mV" in v.readout.text()
    v.baseline_chk.setChecked(True)
    v.mains_box.setCurrentIndex(1)
    v.lowpass_box.setCurrentIndex(1)
    assert "display filters: HP 0.67 Hz, notch 50 Hz, LP 40 Hz" in v.info.text()
    # keyboard: L cycles the layout, 0 returns to true scale
    from PySide6.QtCore import Qt

    v.activateWindow()
    v.view.setFocus()
    before = v.layout_name
    qtbot.keyClick(v.view, Qt.Key_L)
    assert v.layout_name != before
    v.zoom(3.0)
    qtbot.keyClick(v.view, Qt.Key_0)
    assert v.zoom_vs_true() == pytest.approx(1.0, rel=0.02)
    ctx.jobs.wait(10000)


def test_viewer_shows_missing_lead_as_missing(qtbot, tmp_path, store):
    from app.context import AppContext
    from app.jobs import Jobs
    from app.ecg.viewer import EcgViewer
    from inference.registry import Registry

    sig = demo.synth_ecg()
    sig[R.LEADS.index("V3")] = np.nan
    p = R.write_ml4h_hd5(tmp_path / "nov3.hd5", sig)
    s = R.read(p)
    ctx = AppContext(store, Registry(), Jobs())
    v = EcgViewer(ctx)
    qtbot.addWidget(v)
    v.set_study(s, store.add_study(s))
    texts = [t.textItem.toPlainText() for t in v._labels]
    assert "V3 missing" in texts
    assert "missing: V3" in v.info.text()
    ctx.jobs.wait(10000)


def test_result_widget_shows_four_outputs(qtbot, registry, checkpoint, demo_path):
    from app.ecg.results import EcgResultWidget

    registry.install(checkpoint, "ecg2af", unofficial=True)
    r = analyse(R.read(demo_path), "ecg2af", registry, JobContext())
    w = EcgResultWidget()
    qtbot.addWidget(w)
    w.show_result(r)
    assert w.table.rowCount() == 4
    names = [w.table.item(i, 0).text() for i in range(4)]
    assert names == ["AF risk within 5 years", "Sex (from ECG)", "Age (from ECG)", "AF in this ECG"]
    assert f"{100 * r.outputs['af_risk_5y']:.1f} %" == w.table.item(0, 1).text()
    x, y = w.curve.getData()
    assert len(x) == 26 and x[-1] == pytest.approx(5.0) and y[-1] == pytest.approx(100 * r.outputs["af_risk_5y"])
    assert "NOT A CLINICAL RESULT" in w.hint.text()


def _pdf_text(path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True).stdout


def test_end_to_end_file_store_pdf(tmp_path, store, registry, checkpoint, demo_path):
    from app.report import build_report
    from inference.detect import open_study

    registry.install(checkpoint, "ecg2af", unofficial=True)
    s = open_study(demo_path)
    sid = store.add_study(s)
    for mid in ("ecg-measure", "ecg2af"):
        store.add_result(sid, analyse(s, mid, registry, JobContext()))
    # reopening shows stored results without recomputing
    stored = store.latest_result(sid, "ecg2af")
    assert stored.clinical is False and len(stored.outputs["af_free_survival"]) == 25
    out = build_report(s, store, sid, tmp_path / "ecg.pdf")
    text = _pdf_text(out)
    for needle in ("12-lead ECG", "25 mm/s", "10 mm/mV", "Heart rate", "70 bpm", "AF risk within 5 years",
                   "Age (from ECG)", "AF in this ECG", "NOT A CLINICAL RESULT", "ecg2af", stored.weights_sha256):
        assert needle in text, needle
    info = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True).stdout
    assert "841.89 x 595.276" in info  # A4 landscape
    subprocess.run(["pdftoppm", "-png", "-r", "30", "-f", "1", "-l", "1", str(out), str(tmp_path / "p")], check=True)
    assert (tmp_path / "p-1.png").stat().st_size > 10000


def test_pdf_paper_is_true_scale():
    from reportlab.lib.units import mm

    from app.ecg.report import EcgPaper

    paper = EcgPaper(demo.synth_ecg(), 500)
    w, h = paper.wrap(0, 0)
    # 10 s at 25 mm/s + the calibration margin, 4 rows of 36 mm, in PDF points
    assert w == pytest.approx((10 + 250 + 1) * mm) and h == pytest.approx(4 * 36 * mm)


def test_pdf_for_real_record_without_results(tmp_path, store):
    from app.report import build_report

    s = R.read(shared_file("reference", "ecg", "s0010_re.hea"))
    sid = store.add_study(s)
    text = _pdf_text(build_report(s, store, sid, tmp_path / "real.pdf"))
    assert "0–10 s of 38.4 s" in text and "82 bpm" in text and "ECG2AF was not run" in text


def test_main_window_demo_analyse_and_reopen(main_window, qtbot, checkpoint):
    """The app's own flow: open the demo, run ECG2AF via jobs, result stored; reopening shows it."""
    from app.ecg.viewer import EcgViewer

    win = main_window
    win.ctx.registry.install(checkpoint, "ecg2af", unofficial=True)
    path = demo.make(win.ctx.registry.weights_dir.parent / "demo")
    win.open_path(path)
    qtbot.waitUntil(lambda: win.study is not None, timeout=30000)
    v = win.current_viewer()
    assert isinstance(v, EcgViewer) and win.results.current_model() == "ecg2af"
    win.run_analysis("ecg2af")
    qtbot.waitUntil(lambda: win.ctx.store.latest_result(win.study_id, "ecg2af") is not None, timeout=60000)
    qtbot.waitUntil(lambda: v._result_widget.table.rowCount() == 4, timeout=10000)
    assert win.results.stamp.isVisibleTo(win.results)
    sid = win.study_id
    win.study_id = None
    win.open_path(path)  # reopening: stored result shown without recomputing
    qtbot.waitUntil(lambda: win.study_id == sid, timeout=30000)
    assert len(win.ctx.store.results(sid, "ecg2af")) == 1
    assert v._result_widget.table.rowCount() == 4
    win.ctx.jobs.wait(10000)


def test_headless_batch_to_csv(tmp_path, registry, checkpoint, demo_path):
    """``lightbox batch ecg2af FOLDER --out CSV``: batched ECG2AF, one row per file, bad files as rows."""
    import csv

    from app.cli import main

    registry.install(checkpoint, "ecg2af", unofficial=True)
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(3):
        R.write_ml4h_hd5(folder / f"ecg{k}.hd5", demo.synth_ecg(hr=60 + 15 * k, seed=k))
    (folder / "bad.hd5").write_bytes(b"not hdf5 at all")
    out = tmp_path / "out.csv"
    assert main(["batch", "ecg2af", str(folder), "--out", str(out), "--workers", "1", "--no-store"]) == 0
    rows = list(csv.DictReader(open(out)))
    ok = {r["path"].split("/")[-1]: r for r in rows if not r["error"]}
    assert set(ok) == {"ecg0.hd5", "ecg1.hd5", "ecg2.hd5"}
    assert ok["ecg0.hd5"]["clinical"] == "False" and 0 <= float(ok["ecg0.hd5"]["af_risk_5y"]) <= 1
    bad = [r for r in rows if r["error"]][0]
    assert "bad.hd5" in bad["path"] and "bad.hd5" in bad["error"]
    # batched and one-at-a-time inference give the same numbers
    from inference.pipeline import JobContext, analyse
    from inference.ecg.reader import read

    single = analyse(read(folder / "ecg1.hd5"), "ecg2af", registry, JobContext())
    assert abs(single.outputs["af_risk_5y"] - float(ok["ecg1.hd5"]["af_risk_5y"])) < 1e-5


def test_viewer_pages_through_long_real_record(qtbot, store):
    from app.context import AppContext
    from app.jobs import Jobs
    from app.ecg.viewer import EcgViewer
    from inference.registry import Registry

    s = R.read(shared_file("reference", "ecg", "s0010_re.hea"))
    ctx = AppContext(store, Registry(), Jobs())
    v = EcgViewer(ctx)
    qtbot.addWidget(v)
    v.set_study(s, store.add_study(s))
    assert not v.prev_btn.isEnabled() and v.next_btn.isEnabled()
    v.page(+1)
    assert v.t0 == 10.0 and "showing 10–20 s" in v.info.text()
    v.page(+5)
    assert v.t0 == pytest.approx(28.4) and not v.next_btn.isEnabled()
    qtbot.waitUntil(lambda: v.measure is not None, timeout=30000)
    assert 80 < v.measure["heart_rate_bpm"] < 84
    ctx.jobs.wait(10000)


# -- rhythm strips: recordings with few leads ---------------------------------------------------------
def test_rhythm_strip_geometry():
    from app.ecg.paper import STRIPS, layout_panels, page_seconds, strip_panels

    panels, (w, h, rows), blocks = strip_panels(["I"], gain=10, speed=25, t0=20.0)
    assert [p[0] for p in panels] == ["I"] * 3 and len(rows) == 3  # 30 s of one lead: three 10-s rows
    assert [(p[1], p[2]) for p in panels] == [(20.0, 30.0), (30.0, 40.0), (40.0, 50.0)]
    assert [b[:2] for b in blocks] == [(20.0, 30.0), (30.0, 40.0), (40.0, 50.0)]
    assert all(p[3] == panels[0][3] for p in panels)  # full width, same start
    panels, _, blocks = strip_panels(["II", "V1"], gain=10, speed=25, t0=0.0)
    assert [p[0] for p in panels] == ["II", "V1", "II", "V1"] and len(blocks) == 2
    assert page_seconds(STRIPS, 1) == 30 and page_seconds(STRIPS, 2) == 20 and page_seconds(STRIPS, 12) == 10
    assert page_seconds("3x4 + II", 1) == 10
    panels, _ = layout_panels(STRIPS, 10, 25, 0.0, leads=list(E.LEADS))
    assert len(panels) == 12


def _viewer(qtbot, store):
    from app.context import AppContext
    from app.jobs import Jobs
    from app.ecg.viewer import EcgViewer
    from inference.registry import Registry

    ctx = AppContext(store, Registry(), Jobs())
    v = EcgViewer(ctx)
    qtbot.addWidget(v)
    v.resize(1200, 800)
    return v, ctx


def _texts(v):
    return [t.textItem.toPlainText() for t in v._labels]


def test_one_lead_recording_opens_as_rhythm_strips(qtbot, tmp_path, store):
    from inference.ecg.rhythm_synth import synth_lead

    p = tmp_path / "alivecor.csv"
    x = synth_lead(45, 300.0, seed=5)
    p.write_text("# fs=300\nI\n" + "\n".join(f"{val:.4f}" for val in x) + "\n")
    s = R.read(p)
    v, ctx = _viewer(qtbot, store)
    v.set_study(s, store.add_study(s))
    assert v.layout_name == "Rhythm strips" and v.layout_box.currentText() == "Rhythm strips"
    assert not any("missing" in t for t in _texts(v))
    assert "missing:" not in v.info.text() and "1-lead recording: I" in v.info.text()
    assert v.page_s == 30.0
    _, y = v.traces.getData()
    assert np.isfinite(y).sum() == 3 * 3000  # three 10-s rows of lead I at 300 Hz
    assert "showing 0–30 s" in v.info.text()
    v.page(+1)  # 45 s: the last page shows 15–45 s
    assert v.t0 == pytest.approx(15.0) and not v.next_btn.isEnabled()
    # speed, gain, calipers and the other layouts still work
    v.set_speed(50.0)
    v.set_gain(20.0)
    assert v._geometry[0] > 500
    v.caliper_btn.setChecked(True)
    v.cal_x[0].setValue(10.0)
    v.cal_x[1].setValue(60.0)
    assert "1000 ms" in v.readout.text()
    v.baseline_chk.setChecked(True)
    assert np.isfinite(v.traces.getData()[1]).sum() == 3 * 3000
    v.set_layout("3x4 + II")
    assert "V1 missing" in _texts(v) and v.page_s == 10.0
    qtbot.waitUntil(lambda: v.measure is not None, timeout=30000)
    ctx.jobs.wait(10000)


def test_two_lead_holter_opens_as_rhythm_strips(qtbot, tmp_path, store):
    import wfdb

    from inference.ecg.rhythm_synth import synth_episode

    x = synth_episode(60, 360.0, 20, 40, seed=1, leads=2)
    wfdb.wrsamp("mit", fs=360, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=x.T.astype(np.float64),
                fmt=["16", "16"], adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(tmp_path))
    s = R.read(tmp_path / "mit.hea")
    v, ctx = _viewer(qtbot, store)
    v.set_study(s, store.add_study(s))
    assert v.layout_name == "Rhythm strips" and v.present_leads() == ["II", "V1"]
    texts = _texts(v)
    assert not any("missing" in t for t in texts)
    assert sum(t.startswith("II ") for t in texts) == 2 and sum(t.startswith("V1 ") for t in texts) == 2
    assert np.isfinite(v.traces.getData()[1]).sum() == 4 * 3600  # 2 leads × two 10-s rows at 360 Hz
    qtbot.waitUntil(lambda: v.measure is not None, timeout=30000)
    px, _ = v.peaks.getData()
    assert len(px) > 20  # R peaks on both 10-s rows of the measured lead
    ctx.jobs.wait(10000)


def test_twelve_lead_stays_3x4_after_a_one_lead_recording(qtbot, tmp_path, demo_path, store):
    from inference.ecg.rhythm_synth import synth_lead

    v, ctx = _viewer(qtbot, store)
    p = tmp_path / "one.csv"
    p.write_text("# fs=300\nI\n" + "\n".join(f"{val:.4f}" for val in synth_lead(20, 300.0, seed=1)) + "\n")
    s1 = R.read(p)
    v.set_study(s1, store.add_study(s1))
    assert v.layout_name == "Rhythm strips"
    s = R.read(demo_path)
    v.set_study(s, store.add_study(s))
    assert v.layout_name == "3x4 + II" and v.page_s == 10.0
    assert len([t for t in _texts(v) if t in E.LEADS]) == 13
    v.set_layout("12x1", chosen=True)  # the user's pick sticks for the next full ECG, not for a one-lead one
    v.set_study(s1, store.add_study(s1))
    assert v.layout_name == "Rhythm strips"
    v.set_study(s, store.add_study(s))
    assert v.layout_name == "12x1"
    ctx.jobs.wait(10000)

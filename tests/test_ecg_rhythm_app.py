"""The ECG viewer runs the bundled rhythm model on opening, draws the per-window band over a long
recording with an overview to page through it, reruns on a picked lead; batch CSV and PDF carry it."""
from __future__ import annotations

import numpy as np
import pytest

from inference.ecg.rhythm_synth import synth_episode, synth_lead

FS = 360.0


@pytest.fixture
def rhythm_ready(registry):
    if not registry.state("ecg-rhythm").usable:
        pytest.skip("rhythm model not bundled in this checkout")


def _holter(folder, minutes=30):
    import wfdb

    x = synth_episode(minutes * 60, FS, minutes * 20, minutes * 30, seed=2, leads=2)
    wfdb.wrsamp("holter", fs=FS, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=x.T.astype(np.float64),
                fmt=["16", "16"], adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(folder))
    return folder / "holter.hea"


def test_viewer_runs_rhythm_on_open_and_draws_the_band(main_window, qtbot, tmp_path, rhythm_ready):
    from app.ecg.viewer import EcgViewer

    win = main_window
    path = _holter(tmp_path)
    win.open_path(path)
    qtbot.waitUntil(lambda: win.study is not None, timeout=60000)
    v = win.current_viewer()
    assert isinstance(v, EcgViewer)
    qtbot.waitUntil(lambda: v.rhythm is not None, timeout=60000)
    r = win.ctx.store.latest_result(win.study_id, "ecg-rhythm")
    # both leads of the Holter (MLII read as II, and V1), their probabilities averaged; the screen says so
    assert r is not None and not r.clinical and r.outputs["_leads"] == ["II", "V1"] and r.outputs["lead"] == "II, V1"
    assert len(r.outputs["_windows"]) >= 100
    assert v.rhythm_box.itemText(0) == "Rhythm leads: auto (II, V1)" and v.rhythm_box.currentIndex() == 0
    assert "mean of leads II, V1" in v.info.text() and "mean of leads II, V1" in v._result_widget.rhythm.text()
    assert v.overview.isVisibleTo(v) and v.band.bars.isVisible()
    assert "Rhythm:" in v.info.text() and "NOT A CLINICAL" in v.info.text()
    assert "NOT A CLINICAL RESULT" in v._result_widget.rhythm.text()
    # a 2-lead Holter opens as rhythm strips: MLII and V1 over two consecutive 10-s blocks per page
    assert v.layout_name == "Rhythm strips" and v.page_s == 20.0
    # N jumps to the AF episode (600-900 s in the synthetic record), Shift+N back; none after it
    assert v.af_episodes()
    assert v.jump_af(+1) and 580.0 <= v.t0 <= 660.0
    assert any(w["label"] == "af" and w["start_s"] < v.t0 + v.page_s and w["end_s"] > v.t0
               for w in r.outputs["_windows"])
    v.go_to(905.0)  # page through the 30 min: the page holding 15:05
    assert v.t0 == pytest.approx(900.0)
    lo, hi = v.overview.page.getRegion()
    assert lo == pytest.approx(900.0) and hi == pytest.approx(920.0)
    # the user picks lead V1: a new result on that lead
    i = v.rhythm_box.findData("V1")
    assert i > 0
    v.rhythm_box.setCurrentIndex(i)
    v._rhythm_lead_chosen(i)
    qtbot.waitUntil(lambda: v.rhythm is not None and v.rhythm.outputs["lead"] == "V1", timeout=60000)
    assert v.rhythm.outputs["_leads"] == ["V1"] and v.rhythm_box.currentData() == "V1"
    assert "lead V1" in v.info.text()
    win.ctx.jobs.wait(10000)


def test_short_ecg_gets_a_label_without_overview(main_window, qtbot, tmp_path, rhythm_ready):
    p = tmp_path / "short.csv"
    x = synth_lead(30, 300.0, seed=3)
    p.write_text("# fs=300\nI\n" + "\n".join(f"{v:.4f}" for v in x) + "\n")
    win = main_window
    win.open_path(p)
    qtbot.waitUntil(lambda: win.study is not None, timeout=60000)
    v = win.current_viewer()
    qtbot.waitUntil(lambda: v.rhythm is not None, timeout=60000)
    assert v.rhythm.outputs["lead"] == "I" and v.rhythm.outputs["windows"] == 1
    assert set(v.rhythm.outputs) >= {"rhythm", "p_normal", "p_af", "p_other", "p_noisy"}
    win.ctx.jobs.wait(10000)


def test_batch_csv_and_pdf_carry_the_rhythm(tmp_path, registry, store, rhythm_ready):
    import csv

    from app.cli import main
    from app.report import build_report
    from inference.detect import open_study
    from inference.pipeline import analyse

    d = tmp_path / "in"
    d.mkdir()
    for i in range(3):
        x = synth_lead(30, 300.0, irregular=bool(i % 2), seed=i)
        (d / f"r{i}.csv").write_text("# fs=300\nI\n" + "\n".join(f"{v:.4f}" for v in x) + "\n")
    out = tmp_path / "rhythm.csv"
    assert main(["batch", "ecg-rhythm", str(d), "--out", str(out), "--db", str(tmp_path / "b.sqlite")]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 and all(r["rhythm"] in ("normal", "af", "other", "noisy") for r in rows)
    assert all(abs(sum(float(r[f"p_{c}"]) for c in ("normal", "af", "other", "noisy")) - 1) < 1e-3 for r in rows)
    assert all(r["stamp"] for r in rows)  # NOT A CLINICAL RESULT
    s = open_study(_holter(tmp_path, minutes=12))
    sid = store.add_study(s)
    store.add_result(sid, analyse(s, "ecg-rhythm", registry))
    pdf = build_report(s, store, sid, tmp_path / "r.pdf")
    import subprocess

    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout
    assert "Rhythm — Lightbox model" in text and "NOT A CLINICAL RESULT" in text and "AF in" in text


def _af_result(windows):
    from inference.results import Result

    wins = [{"start_s": a, "end_s": a + 30.0, "label": lab, "probabilities": {lab: 0.9}} for a, lab in windows]
    return Result("ecg-rhythm", "", "numpy", "cpu", 0.0,
                  {"lead": "II", "rhythm": "af", "rhythm_label": "Atrial fibrillation", "probability": 0.9,
                   "windows": len(wins), "af_burden": 0.2, "_windows": wins}, clinical=False)


def test_af_jump_keys_move_the_page_to_the_next_episode(qtbot, tmp_path, store):
    """N / Shift+N on a long record with a band (two AF episodes; the band is given, no model needed)."""
    from PySide6.QtCore import Qt

    from app.context import AppContext
    from app.jobs import Jobs
    from app.ecg.viewer import EcgViewer
    from inference.ecg import reader as R
    from inference.registry import Registry

    path = _holter(tmp_path, minutes=10)  # synthetic AF from 200 to 300 s
    s = R.read(path)
    ctx = AppContext(store, Registry(), Jobs())
    v = EcgViewer(ctx)
    qtbot.addWidget(v)
    v.resize(1200, 800)
    v.show()
    v.set_study(s, store.add_study(s))
    messages = []
    v.status_message.connect(messages.append)
    assert not v.jump_af(+1) and "No rhythm band" in messages[-1]
    # 30-s windows: one AF episode 180-300 s (covering the synthetic one), a second at 480-540 s
    labels = ["af" if 180 <= t < 300 or 480 <= t < 540 else "normal" for t in range(0, 600, 30)]
    v._set_rhythm(_af_result([(30.0 * i, lab) for i, lab in enumerate(labels)]))
    assert v.af_episodes() == [(180.0, 300.0), (480.0, 540.0)]
    assert v.layout_name == "Rhythm strips" and v.band.bars.isVisible()
    v.activateWindow()
    qtbot.waitUntil(v.isActiveWindow, timeout=5000)
    v.view.setFocus()
    qtbot.keyClick(v.view, Qt.Key_N)
    assert v.t0 == pytest.approx(180.0) and "AF episode 1 of 2" in messages[-1]
    assert "showing 180–200 s" in v.info.text()
    x0, x1 = v.overview.page.getRegion()
    assert (x0, x1) == (pytest.approx(180.0), pytest.approx(200.0))
    qtbot.keyClick(v.view, Qt.Key_N)
    assert v.t0 == pytest.approx(480.0) and "AF episode 2 of 2" in messages[-1]
    qtbot.keyClick(v.view, Qt.Key_N)
    assert v.t0 == pytest.approx(480.0) and "No later AF episode" in messages[-1]
    qtbot.keyClick(v.view, Qt.Key_N, Qt.ShiftModifier)
    assert v.t0 == pytest.approx(180.0)
    qtbot.keyClick(v.view, Qt.Key_N, Qt.ShiftModifier)
    assert v.t0 == pytest.approx(180.0) and "No earlier AF episode" in messages[-1]
    v.set_layout("3x4 + II")  # the jump works on any layout
    v.t0 = 0.0
    assert v.jump_af(+1) and v.t0 == pytest.approx(180.0)
    v._set_rhythm(_af_result([(30.0 * i, "normal") for i in range(20)]))
    assert not v.jump_af(+1) and "No AF episode in this recording" in messages[-1]
    ctx.jobs.wait(10000)

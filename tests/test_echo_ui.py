"""Echo viewer (pytest-qt, offscreen): the demo plays; blinded practice never shows the AI EF before the
estimate is locked; the crop box and the view gate reach the pipeline's input."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QComboBox, QLabel, QLineEdit, QTableWidget, QWidget

from inference.echo import demo

from test_echo import _fake_result  # noqa: E402  (same folder)


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    return demo.make(tmp_path_factory.mktemp("echo_ui_demo"))


def _open(main_window, qtbot, path):
    main_window.open_path(path)
    qtbot.waitUntil(lambda: main_window.study is not None, timeout=30000)
    v = main_window.current_viewer()
    assert type(v).__name__ == "EchoViewer"
    return v


def _all_text(root: QWidget) -> str:
    """Every string a user could read in the window (labels, tables, buttons, fields, plot data)."""
    parts = []
    for w in root.findChildren(QWidget):
        if isinstance(w, QLabel):
            parts.append(w.text())
        elif isinstance(w, QTableWidget):
            for i in range(w.rowCount()):
                for j in range(w.columnCount()):
                    it = w.item(i, j)
                    if it:
                        parts.append(it.text())
        elif isinstance(w, QAbstractButton):
            parts.append(w.text())
        elif isinstance(w, QLineEdit):
            parts.append(w.text())
        elif isinstance(w, QComboBox):
            parts.append(w.currentText())
    return "\n".join(parts)


def test_demo_plays_steps_and_loops(main_window, qtbot, demo_file):
    v = _open(main_window, qtbot, demo_file)
    assert len(v.canvas.images) == demo.N and v.fps == pytest.approx(50)
    v.play()
    qtbot.wait(400)
    assert v.timer.isActive() and v.canvas.index > 3
    v.pause()
    i = v.canvas.index
    qtbot.keyClick(v, Qt.Key_Right)
    assert v.canvas.index == i + 1
    qtbot.keyClick(v, Qt.Key_Left)
    assert v.canvas.index == i
    v.loop.setValue((10, 20))
    v.show_frame(20)
    v.step(1)
    assert v.canvas.index == 10  # wraps inside the loop range
    v.speed_box.setCurrentIndex(0)
    assert v.speed == 0.25
    v.canvas.grab()  # paints without error


def test_practice_mode_never_shows_ai_ef_before_lock(main_window, qtbot, demo_file):
    v = _open(main_window, qtbot, demo_file)
    v.set_trainee("Dr Blind")
    v.set_practice_mode(True)
    res = _fake_result(ef=42.4)
    main_window._analysis_done(main_window.study_id, res)  # as if the analysis had just finished
    assert v.hides_results()
    text = _all_text(main_window)
    assert "42.4" not in text and "42" not in v.panel.reveal.text()
    assert main_window.results.table.rowCount() == 0
    assert "hidden" in main_window.results.prov.text().lower()
    assert v.curve.getData()[0] is None or len(v.curve.getData()[0]) == 0  # area curve hidden too
    assert not v.canvas.show_mask
    # nor does a PDF exported while blinded
    from app.echo import report as rep

    flow = rep.sections(main_window.study, main_window.ctx.store.results(main_window.study_id),
                        main_window.ctx.store, main_window.study_id, v.report_extra())
    assert not any("42.4" in getattr(f, "text", "") for f in flow)
    assert any("withheld" in getattr(f, "text", "") for f in flow)
    # re-opening the study while blinded keeps it hidden
    main_window.show_study(main_window.study, main_window.study_id)
    assert "42.4" not in _all_text(main_window)
    # nothing pre-filled (a default number would anchor the trainee), and a blank estimate is not locked
    est = v.panel.estimate
    assert est.value() == 0 and est.text() == "" and "estimate" in est.placeholderText()
    assert v.lock_estimate() is None and v.hides_results()
    qtbot.keyClick(est, Qt.Key_Up)
    assert est.text() == ""  # stepping needs a typed number: no default to start from
    est.setFocus()
    qtbot.keyClicks(est, "48")  # what a trainee does: click and type
    assert est.value() == 48
    qtbot.keyClick(est, Qt.Key_Up)
    assert est.value() == 49
    est.clear()
    qtbot.keyClicks(est, "x7%")  # only digits are taken
    assert est.text() == "7"
    assert main_window.ctx.store.db["estimates"].count == 0
    # lock -> reveal with delta and category agreement
    v.panel.estimate.setValue(50)
    v.panel.category.setCurrentIndex(v.panel.category.findData("normal"))
    eid = v.lock_estimate()
    assert eid is not None and not v.hides_results()
    text = _all_text(main_window)
    assert "42.4" in text
    assert "+7.6" in v.panel.reveal.text() and "disagree" in v.panel.reveal.text()
    row = main_window.ctx.store.db["estimates"].get(eid)
    assert row["ai_ef"] == pytest.approx(42.4) and row["delta"] == pytest.approx(7.6)
    assert main_window.results.table.rowCount() > 0
    # a locked estimate cannot be changed afterwards
    assert not v.panel.estimate.isEnabled() and not v.panel.lock.isEnabled()


def test_not_blinded_shows_result_and_clickable_marks(main_window, qtbot, demo_file):
    v = _open(main_window, qtbot, demo_file)
    res = _fake_result(ef=61.0)
    main_window._analysis_done(main_window.study_id, res)
    assert not v.hides_results()
    assert "61" in _all_text(main_window)
    assert len(v.ed) == 3 and len(v.es) == 3
    pts = v.ed_marks.points()
    v._mark_clicked(v.ed_marks, [pts[1]])
    assert v.canvas.index == v.ed[1]
    assert "ED" in v.canvas.caption
    assert [t.toPlainText() for t in v._beat_labels] == ["EF 60 %", "EF 62 %"]
    # a stored result (no arrays) still overlays its ED/ES frames from the masks kept in the outputs
    km = v.canvas.key_masks
    assert v.canvas.masks is None and set(km) == set(v.ed) | set(v.es)
    assert km[v.es[0]].sum() < km[v.ed[0]].sum()
    assert v.canvas._mask_image(v.ed[0]) is not None and v.canvas._mask_image(v.ed[0] + 3) is None


def test_gate_and_crop_reach_the_pipeline(main_window, qtbot, demo_file, monkeypatch):
    from inference.echo import pipeline as pipe

    v = _open(main_window, qtbot, demo_file)
    v.confirm_view("A4C")
    gate = v.study.data["view_gate"]
    assert gate["decision"] == "A4C"
    assert "A4C" in v.panel.gate_label.text()
    v.canvas.crop_edited.emit([100, 40, 380, 290])
    assert v.study.data["crop_box"] == [100, 40, 380, 290]
    small, box, by_user = pipe.prepared(v.study)
    assert by_user and box.as_list() == [100, 40, 380, 290] and small.shape[1:] == (112, 112, 3)
    v.reset_crop()
    assert "crop_box" not in v.study.data
    assert np.array_equal(v.canvas.box.as_list(), v.study.data["auto_crop_box"])


def test_progress_and_practice_set_dialogs(main_window, qtbot, demo_file):
    from app.echo.practice_panel import HistoryDialog, PracticeSetDialog

    v = _open(main_window, qtbot, demo_file)
    v.set_trainee("Dr Set")
    main_window._analysis_done(main_window.study_id, _fake_result(ef=50.0))
    v.panel.set_btn.setChecked(True)  # instructor marks the study for the teaching set
    v.panel.estimate.setValue(45)
    v.lock_estimate()
    h = HistoryDialog(v, main_window.ctx.store, v.trainee_id(), "Dr Set")
    qtbot.addWidget(h)
    assert "1 locked estimate ·" in _all_text(h) and "-5.0" in _all_text(h)
    d = PracticeSetDialog(v, main_window.ctx.store)
    qtbot.addWidget(d)
    assert "Dr Set" in _all_text(d)


def test_input_path_and_analysis_options_in_the_panel(main_window, qtbot, tmp_path):
    """A 112x112 loop is labelled as going to the model unchanged; the 'All clips' box and the beat
    rule reach the pipeline's options."""
    from test_echo_fidelity import beating_loop, write_avi

    from inference.echo import pipeline as pipe

    path = write_avi(tmp_path / "echonet_format.avi", beating_loop(80))
    v = _open(main_window, qtbot, path)
    assert "unchanged" in v.panel.crop_label.text() and v.canvas.box.as_list() == [0, 0, 112, 112]
    assert "This loop has 18 clips" in v.panel.clips_label.text()
    assert pipe.options(v.study) == {"all_clips": False, "beat_rule": "reference", "input_path": "auto"}
    v.panel.all_clips.setChecked(True)
    v.panel.beat_rule.setCurrentIndex(v.panel.beat_rule.findData("lightbox"))
    assert pipe.options(v.study)["all_clips"] is True and pipe.options(v.study)["beat_rule"] == "lightbox"

"""Endoscopy viewer (pytest-qt, offscreen): open, review analysis, timeline, findings, live mode, export."""
from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt

from inference.endo import demo


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory):
    return demo.make(tmp_path_factory.mktemp("endo_demo"))


@pytest.fixture
def endo_window(main_window, qtbot, demo_path):
    main_window.open_path(demo_path)
    qtbot.waitUntil(lambda: main_window.study is not None, timeout=20000)
    v = main_window.current_viewer()
    assert type(v).__name__ == "EndoViewer"
    yield main_window, v
    v.shutdown()


def test_review_analysis_fills_timeline_and_results(endo_window, qtbot):
    win, v = endo_window
    assert v.n == 240 and v.pos == 0
    win.run_analysis("endo-quality")
    qtbot.waitUntil(lambda: v.result is not None, timeout=30000)
    assert v.result.outputs["skipped"] == demo.TRUTH["skipped"]
    statuses = {b["status"] for b in v.timeline.bands}
    assert statuses == {"ok", "blur", "dark", "glare", "duplicate", "overexposed"}
    assert v.timeline.status_at(70) == "blur" and v.timeline.status_at(125) == "dark"
    assert win.ctx.store.latest_result(win.study_id, "endo-quality").id == v.result.id
    v.seek(70)
    assert v.view.osd_warn == "blur"
    assert "162" in v.selection_label.text() and "duplicate 25" in v.selection_label.text()
    # the optional VLM is not installed here: its button says so instead of failing
    assert not v.vlm_btn.isEnabled() and "not installed" in v.vlm_btn.toolTip()


def test_timeline_click_seeks(endo_window, qtbot):
    _, v = endo_window
    v.resize(1000, 700)
    v.show()
    tl = v.timeline
    x = int(tl.x_of(120))
    qtbot.mouseClick(tl, Qt.LeftButton, pos=QPoint(x, 30))
    assert abs(v.pos - 120) <= 2
    assert tl.pos == v.pos


def test_findings_add_edit_confirm_reject_delete_and_jump(endo_window, qtbot):
    win, v = endo_window
    store, sid = win.ctx.store, win.study_id
    v.seek(100)
    fid = v.add_finding("polyp", 0.8, "sessile", box=[0.1, 0.3, 0.3, 0.5], status="proposed")
    (row,) = store.findings(sid)
    assert (row["frame_index"], row["time_s"], row["source"], row["status"]) == (100, 4.0, "clinician", "proposed")
    assert v.table.rowCount() == 1 and v.timeline.findings[0]["id"] == fid
    assert v.view.boxes and v.view.boxes[0][0] == [0.1, 0.3, 0.3, 0.5]
    v.select_finding(fid)
    v.set_status_selected("confirmed")
    assert store.findings(sid)[0]["status"] == "confirmed"
    v.edit_finding(fid, label="adenoma?", note="5 mm", confidence=0.7)
    r = store.findings(sid)[0]
    assert (r["label"], r["note"], r["confidence"]) == ("adenoma?", "5 mm", 0.7)
    assert v.table.item(0, 2).text() == "adenoma?"
    v.seek(200)
    v.add_finding("bleeding")
    v.seek(0)
    v.jump_finding(1)
    assert v.pos == 100
    v.jump_finding(1)
    assert v.pos == 200
    v.jump_finding(-1)
    assert v.pos == 100
    v.select_finding(fid)
    v.set_status_selected("rejected")
    assert store.findings(sid)[0]["status"] == "rejected"
    v.select_finding(fid)
    v.delete_selected()
    assert [f["label"] for f in store.findings(sid)] == ["bleeding"]


def test_model_findings_filed_once_for_review(endo_window, qtbot, tmp_path):
    from inference.endo.models import make_test_polyp_onnx

    win, v = endo_window
    win.ctx.registry.install(make_test_polyp_onnx(tmp_path / "p.onnx", size=64, bias=4.0), "endo-polyp",
                             unofficial=True)
    win.run_analysis("endo-polyp")
    qtbot.waitUntil(lambda: v.result is not None and v.result.model_id == "endo-polyp", timeout=60000)
    n = len(win.ctx.store.findings(win.study_id))
    assert n == v.result.outputs["findings_count"] >= 1
    assert all(f["status"] == "proposed" and f["source"].startswith("endo-polyp · result #")
               for f in win.ctx.store.findings(win.study_id))
    v.set_result(v.result)  # re-showing the stored result does not duplicate its findings
    assert len(win.ctx.store.findings(win.study_id)) == n


def test_playback_and_live_mode_do_not_block(endo_window, qtbot):
    _, v = endo_window
    v.seek(0)
    v.set_live(True)
    v.play()
    qtbot.wait(800)
    v.pause()
    assert v.pos > 5
    qtbot.waitUntil(lambda: v.live_slot is not None and v.live_slot.taken > 0, timeout=5000)
    v._drain_live()
    assert v.timeline.live_count > 0 and v.timeline.status_at(v.live_last["index"])  # shown on the timeline
    s = v.live_slot
    qtbot.waitUntil(lambda: s._item is None, timeout=5000)  # the analyser took the last offered frame
    assert s.offered == s.taken + s.dropped  # every displayed frame was analysed or dropped from the queue
    v.set_live(False)
    assert v.live_job is None


def test_export_bundle_action(endo_window, qtbot, tmp_path):
    from inference.endo.export import read_bundle

    win, v = endo_window
    v.seek(100)
    v.add_finding("polyp", 0.9)
    done = []
    v.export_bundle(str(tmp_path / "x" / "bundle.zip"), on_done=done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=30000)
    zpath, pdf = done[0]
    assert pdf.exists() and pdf.read_bytes().startswith(b"%PDF")
    b = read_bundle(zpath)
    assert len(b["findings.json"]) == 1 and b["findings.json"][0]["finding"] == "polyp"


def test_live_mode_with_model_files_merged_proposed_findings(endo_window, qtbot, tmp_path):
    from inference.endo.models import make_test_polyp_onnx

    win, v = endo_window
    win.ctx.registry.install(make_test_polyp_onnx(tmp_path / "p.onnx", size=64, bias=4.0), "endo-polyp",
                             unofficial=True)
    v.seek(0)
    v.set_live(True)
    v.play()
    qtbot.wait(1200)
    v.pause()
    qtbot.waitUntil(lambda: v.live_slot._item is None, timeout=5000)
    qtbot.wait(200)
    v._drain_live()
    fs = win.ctx.store.findings(win.study_id)
    assert fs and all(f["source"] == "endo-polyp (live)" and f["status"] == "proposed" for f in fs)
    assert "NOT A CLINICAL RESULT" in fs[0]["note"]
    assert len(fs) <= 3  # a run of detections is one finding, not one per frame
    v.set_live(False)


def test_the_frame_gets_the_room_and_the_findings_panel_folds_away(endo_window, qtbot, tmp_path):
    """The frame column takes what the panel (analysis, mask, findings) leaves; the panel sits beside a square
    frame and below a wide (16:9) one where that gives the frame more room; the narrow findings table hides
    columns instead of scrolling sideways, the selected finding is shown whole under it; F folds the panel
    away and back; its sizes and whether it is folded are remembered per user."""
    from PySide6.QtTest import QTest

    from app.endo.viewer import EndoViewer
    from app.widgets import user_state

    win, v = endo_window
    win.showNormal()
    win.resize(1366, 768)
    qtbot.waitUntil(lambda: v.view.width() > 2 * v.side.width(), timeout=5000)
    assert v.panel_place == "beside" and v.side.width() > 200
    v.seek(100)
    fid = v.add_finding("polyp", 0.8, "sessile, 6 mm, lifted and removed by cold snare", box=[0.1, 0.3, 0.3, 0.5],
                        status="proposed")
    t = v.table
    qtbot.waitUntil(lambda: t.isColumnHidden(6), timeout=2000)  # the note is not cut, it is left out...
    assert not any(t.isColumnHidden(c) for c in (0, 2, 5)) and t.horizontalScrollBar().maximum() == 0
    v.select_finding(fid)
    assert "cold snare" in v.detail_label.text() and "clinician" in v.detail_label.text()  # ...and shown here
    assert "cold snare" in t.item(0, 2).toolTip()
    v.split.setSizes([400, 900])  # a wider panel brings the columns back
    qtbot.waitUntil(lambda: not t.isColumnHidden(4) and not t.isColumnHidden(6), timeout=2000)

    v.split.setSizes([10000, 264])
    v._panel_moved()
    qtbot.wait(50)
    wide = v.view.width()
    v.setFocus()
    QTest.keyClick(v, Qt.Key_F)
    assert v.split.sizes()[1] == 0 and not v.panel_btn.isChecked()
    qtbot.waitUntil(lambda: v.view.width() > wide + 200, timeout=2000)
    QTest.keyClick(v, Qt.Key_F)
    assert v.split.sizes()[1] >= 264 and v.panel_btn.isChecked()

    # remembered: the width beside, the height below, folded or not (written as the viewer shuts down)
    v._extent[Qt.Vertical] = 260
    v.split.setSizes([700, 300])
    v._panel_moved()
    v.save_panes()
    s = user_state.settings()
    assert int(s.value("endo/panel_width")) == 300 and int(s.value("endo/panel_height")) == 260
    v2 = EndoViewer(win.ctx)
    qtbot.addWidget(v2)
    assert v2._extent[Qt.Horizontal] == 300 and v2._extent[Qt.Vertical] == 260 and v2.panel_btn.isChecked()
    v.show_panel(False)
    v.save_panes()
    v3 = EndoViewer(win.ctx)
    qtbot.addWidget(v3)
    assert not v3.panel_btn.isChecked() and v3.split.sizes()[1] == 0
    v.show_panel(True)
    v.save_panes()

    # PgDn/PgUp to a finding in a long list shows its row (the table scrolls to it)
    v.split.setSizes([10000, 264])
    for i in range(30):
        v.seek(5 + 7 * i)
        v.add_finding("polyp", 0.9, status="proposed")
    v.seek(0)
    t.clearSelection()  # the selected finding's line is hidden: it comes back as the jump selects a row
    qtbot.wait(50)
    v.jump_finding(-1)  # wraps round to the last finding
    row = t.selectionModel().selectedRows()[0]
    assert t.item(row.row(), 1).text() == str(v.pos)
    qtbot.waitUntil(lambda: t.viewport().rect().contains(t.visualRect(row)), timeout=2000)
    assert not t.isColumnHidden(3), "Conf. beside the scroll bar at the first width"

    w = EndoViewer(win.ctx)  # a viewer as large as at 1366x768 beside the study list and results
    qtbot.addWidget(w)
    w.resize(785, 712)
    w.show()
    qtbot.waitUntil(lambda: w.split.width() > 700, timeout=2000)
    w.set_frame_aspect(16 / 9)  # a 720p recording: the panel goes below, the frame gets the width
    assert w.panel_place == "below" and w.split.sizes()[1] > 150
    qtbot.waitUntil(lambda: w.view.width() > 700, timeout=2000)
    w.set_frame_aspect(1.0)
    assert w.panel_place == "beside"
    qtbot.waitUntil(lambda: w.view.width() > 1.5 * w.side.width() > 300, timeout=2000)
    w.set_frame_aspect(16 / 9)
    w.resize(1800, 700)  # a wide viewer: beside takes less from the frame
    qtbot.waitUntil(lambda: w.panel_place == "beside", timeout=2000)
    w.close()

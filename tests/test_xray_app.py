"""Chest X-ray viewer (pytest-qt, offscreen) and PDF report."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.xray_fixtures import demo_path, weight_files  # noqa: F401  (fixtures)


@pytest.fixture
def viewer_with_study(main_window, demo_path, qtbot):
    from inference.xray.reader import read

    st = read(demo_path)
    sid = main_window.ctx.store.add_study(st)
    main_window.show_study(st, sid)
    v = main_window.current_viewer()
    return main_window, v, st, sid


def test_viewer_class_and_contract(viewer_with_study):
    from app.xray.viewer import XrayViewer

    win, v, st, sid = viewer_with_study
    assert isinstance(v, XrayViewer)
    assert v.result_widget() is v.anomaly
    assert v.items[0].image.shape[:2] == (512, 512)
    assert "Header" in v.preset.itemText(0) and any("CHEST" in v.preset.itemText(i) for i in range(v.preset.count()))
    assert v.mode.currentText() == "Single image" and [b in v.glw.ci.items for b in v.boxes] == [True, False, False]


def test_window_level_invert_clahe_reset(viewer_with_study):
    win, v, st, sid = viewer_with_study
    base = v.windowed().copy()
    assert np.array_equal(base, st.data["display"])  # starts on the header VOI
    c0, w0 = v.center, v.width
    v._on_wl_drag(40.0, -20.0, False)
    assert v.width > w0 and v.center > c0 and not v.use_header_lut
    v._render()
    assert not np.array_equal(v.windowed(), base)
    v.invert_btn.setChecked(True)
    inv = v.windowed()
    v.invert_btn.setChecked(False)
    assert np.abs(inv.astype(int) + v.windowed().astype(int) - 255).max() <= 1
    v.clahe_btn.setChecked(True)
    assert v.use_clahe and not np.array_equal(v.windowed(), apply_plain(v))
    v.reset_view()
    assert not v.use_clahe and not v.invert and v.use_header_lut
    assert np.array_equal(v.windowed(), base)
    # a preset chosen from the list
    idx = next(i for i in range(v.preset.count()) if v.preset.itemText(i) == "Full range")
    v._preset_chosen(idx)
    lo, hi = st.metadata["value_range"]
    assert v.width == pytest.approx(hi - lo)


def apply_plain(v):
    from inference.xray.reader import apply_window

    return apply_window(v.image, v.center, v.width)


def test_pixel_readout_and_ruler_in_mm(viewer_with_study):
    win, v, st, sid = viewer_with_study
    info = v.pixel_info(100, 200)
    assert f"value {st.data['image'][200, 100]:.6g}" in info and "mm" in info
    assert v.pixel_info(-1, 5) == ""
    label = v.measure((100, 100), (400, 100))  # 300 px at 0.7 mm = 210 mm
    assert label == "21.0 cm"
    assert v.measure((10, 10), (10, 50)) == "28.0 mm"
    v.clear_rulers()
    assert v.rulers == []


def test_ruler_without_spacing_is_in_pixels(main_window, tmp_path):
    import cv2

    from inference.xray.reader import read

    cv2.imwrite(str(tmp_path / "cxr.png"), np.tile(np.arange(256, dtype=np.uint8), (200, 1)))
    st = read(tmp_path / "cxr.png")
    sid = main_window.ctx.store.add_study(st)
    main_window.show_study(st, sid)
    v = main_window.current_viewer()
    assert v.measure((0, 0), (30, 40)) == "50 px"


def test_note_entities_highlighted_and_stored(viewer_with_study):
    win, v, st, sid = viewer_with_study
    v.note.setPlainText("Productive cough and fever, denies hemoptysis. On salbutamol.")
    v.extract_entities()
    sels = v.note.extraSelections()
    assert len(sels) == 4
    struck = [s for s in sels if s.format.fontStrikeOut()]
    assert len(struck) == 1 and struck[0].cursor.selectedText() == "hemoptysis"
    rows = win.ctx.store.findings(sid)
    note = [r for r in rows if r["source"] == "symptoms-note"]
    ents = [r for r in rows if r["source"] == "symptoms-entity"]
    assert note and note[0]["note"].startswith("Productive cough")
    assert {r["label"]: r["status"] for r in ents}["hemoptysis"] == "negated"
    assert json.loads(ents[0]["note"])["category"] == "symptom"
    # re-extracting replaces, never duplicates
    v.extract_entities()
    assert len([r for r in win.ctx.store.findings(sid) if r["source"] == "symptoms-entity"]) == 4
    # reopening the study restores the note and its highlights
    v.set_study(st, sid)
    assert v.note.toPlainText().startswith("Productive cough") and len(v.note.extraSelections()) == 4
    assert "<s>hemoptysis</s>" in v.entity_summary.text()


def test_result_panels_and_report(viewer_with_study, weight_files, tmp_path):
    from inference.pipeline import analyse
    from inference.results import Result

    win, v, st, sid = viewer_with_study
    reg = win.ctx.registry
    reg.install(weight_files[0], "vgg16-imagenet", unofficial=True)
    reg.install(weight_files[1], "xray-anomaly", unofficial=True)
    r = analyse(st, "xray-anomaly", reg)
    win._analysis_done(sid, r)
    assert v.heat is not None and v.heat.shape == (512, 512)
    # one large image, the heatmap over it (an RGBA layer: the radiograph's own grey values stay)
    assert v.mode.currentText() == "Single image" and [b in v.glw.ci.items for b in v.boxes] == [True, False, False]
    assert v.heat_shown() and v.heat_layers[0].isVisible() and v.heat_layers[0].image.shape == (512, 512, 4)
    assert v.items[0].image.ndim == 2
    assert f"{r.outputs['anomaly_score']:.3f}" in v.anomaly.score.text()
    assert "NOT A CLINICAL RESULT" in v.anomaly.band.text()
    # H hides and shows it; opacity and colour map change the layer, not the image
    v.heat_btn.toggle()
    assert not v.heat_layers[0].isVisible() and not v.heat_shown()
    v.heat_btn.toggle()
    before = v.heat_layers[0].image.copy()
    v.opacity.setValue(20)
    assert v.heat_layers[0].image[..., 3].max() < before[..., 3].max()
    v.cmap.setCurrentText("jet")
    assert not np.array_equal(before[..., :3], v.heat_layers[0].image[..., :3])
    # side by side (original | overlay) and three panels on demand, linked
    v.mode.setCurrentIndex(1)
    assert [b in v.glw.ci.items for b in v.boxes] == [True, False, True] and v.heat_layers[1].isVisible()
    assert not v.heat_layers[0].isVisible()  # the original stays plain beside the overlay
    v.mode.setCurrentIndex(2)
    assert all(b in v.glw.ci.items for b in v.boxes) and v.items[1].image.shape == (512, 512, 3)
    v.mode.setCurrentIndex(0)
    # a stored result (no arrays) re-shows the heatmap
    stored = win.ctx.store.latest_result(sid, "xray-anomaly")
    assert isinstance(stored, Result) and not stored.arrays
    v.set_result(None)
    assert v.heat is None
    v.set_result(stored)
    assert v.heat is not None and np.abs(v.heat - r.arrays["heatmap"]).max() < 0.01

    v.note.setPlainText("No fever. Cough for 2 weeks.")
    v.extract_entities()
    from app.report import build_report

    pdf = tmp_path / "cxr.pdf"
    build_report(st, win.ctx.store, sid, pdf, extra=v.report_extra())
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000
    import shutil
    import subprocess

    if shutil.which("pdftotext") is None:  # poppler-utils: optional, check the text when there
        return
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, timeout=30).stdout
    assert "NOT A CLINICAL RESULT" in text and "0.348" in text and "fever" in text
    assert "Grad-CAM" in text and "Fused score" in text and "negated" in text
    assert reg.state("xray-anomaly").sha256 in text.replace("\n", "").replace(" ", "")


def test_report_without_result_or_note(tmp_path, store, demo_path):
    from app.report import build_report
    from inference.xray.reader import read

    st = read(demo_path)
    sid = store.add_study(st)
    pdf = tmp_path / "bare.pdf"
    build_report(st, store, sid, pdf)
    assert pdf.read_bytes().startswith(b"%PDF")


def test_demo_opens_in_xray_viewer(main_window, qtbot, tmp_path):
    from inference.xray.demo import make

    p = make(tmp_path)
    main_window.open_path(p)
    qtbot.waitUntil(lambda: main_window.study is not None and main_window.study.modality == "xray", timeout=15000)
    assert type(main_window.current_viewer()).__name__ == "XrayViewer"


def test_keyboard_shortcuts_on_the_image(viewer_with_study, qtbot):
    from PySide6.QtCore import Qt

    win, v, st, sid = viewer_with_study
    v.glw.setFocus()
    qtbot.waitUntil(lambda: v.glw.hasFocus(), timeout=2000)
    qtbot.keyClick(v.glw, Qt.Key_I)
    assert v.invert
    qtbot.keyClick(v.glw, Qt.Key_M)
    assert v.tool == "ruler"
    qtbot.keyClick(v.glw, Qt.Key_R)
    assert not v.invert
    # typing in the note never triggers them
    v.note.setFocus()
    qtbot.keyClick(v.note, Qt.Key_I)
    assert not v.invert and v.note.toPlainText().lower().endswith("i")


class _Drag:
    """A stand-in for pyqtgraph's MouseDragEvent (left button)."""

    def __init__(self, box, a, b, last, finish=False):
        from PySide6.QtCore import QPointF

        self._box, self._a, self._b, self._last, self._finish = box, QPointF(*a), QPointF(*b), QPointF(*last), finish
        self.accepted = False

    def button(self):
        from PySide6.QtCore import Qt

        return Qt.LeftButton

    def screenPos(self):
        return self._b

    def lastScreenPos(self):
        return self._last

    def buttonDownScenePos(self):
        return self._box.mapViewToScene(self._a)

    def scenePos(self):
        return self._box.mapViewToScene(self._b)

    def isFinish(self):
        return self._finish

    def accept(self):
        self.accepted = True


def test_mouse_drag_window_level_and_ruler(viewer_with_study, qtbot):
    win, v, st, sid = viewer_with_study
    box = v.boxes[0]
    w0, c0 = v.width, v.center
    ev = _Drag(box, (0, 0), (30, 0), (0, 0), finish=True)
    box.mouseDragEvent(ev)
    assert ev.accepted
    qtbot.waitUntil(lambda: "W " in v.wl_label.text() and v.width > w0, timeout=2000)
    assert v.center == pytest.approx(c0)
    v.set_tool("ruler")
    box.mouseDragEvent(_Drag(box, (100, 300), (100, 400), (100, 399), finish=True))
    assert v.rulers and v.rulers[-1][1].toPlainText() == "70.0 mm"

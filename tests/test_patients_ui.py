"""Patients in the UI (pytest-qt, offscreen): the grouped, searched and filtered study list, the patient
timeline with its trend, the main window's Patients actions, and compare with prior (linked viewers, one PDF)."""
from __future__ import annotations

import numpy as np
import pytest

from inference.results import Result
from inference.study import Study


def _study(i, modality, patient=None, date=None):
    meta = {}
    if patient or date:
        meta["patient"] = dict(patient or {}, **({"study_date": date} if date else {}))
    return Study(modality, f"/data/{modality}{i}", f"{i:064x}", f"{modality}{i}", metadata=meta)


DOE = {"external_id": "P1", "name": "DOE, JOHN", "birth_date": "1950-01-01"}
ROE = {"external_id": "P2", "name": "ROE, JANE"}


def _ef(v, clinical=True):
    return Result("echonet-ef", "", "torch", "CPU", 1.0, {"LVEF_whole_video_%": v, "LVEF_category": "x"}, clinical)


@pytest.fixture
def filled(store):
    ids = {
        "e1": store.save(_study(1, "echo", DOE, "2019-05-01"), [_ef(62.0)]),
        "e2": store.save(_study(2, "echo", DOE, "2021-06-01"), [_ef(55.0)]),
        "e3": store.save(_study(3, "echo", DOE, "2024-02-01"), [_ef(41.0, clinical=False)]),
        "c1": store.save(_study(4, "ecg", DOE, "2021-06-02"),
                         [Result("ecg2af", "", "onnx", "CPU", 0.1, {"af_risk_5y": 0.2}, True)]),
        "x1": store.save(_study(5, "xray", ROE, "2023-01-01")),
        "u1": store.save(_study(6, "pcg")),
    }
    return store, ids


def test_study_list_groups_searches_and_filters(qtbot, filled):
    from app.patients.studylist import StudyBrowser

    store, ids = filled
    b = StudyBrowser(store)
    qtbot.addWidget(b)
    b.refresh()
    tops = [b.tree.topLevelItem(i).text(0) for i in range(b.tree.topLevelItemCount())]
    assert tops[0].startswith("DOE, JOHN · ID P1 · born 1950-01-01  (4)")  # newest study first
    assert tops[1].startswith("ROE, JANE") and tops[-1].startswith("Unassigned  (1)")
    assert b.count() == 6 and b.visible_study_ids()[:4] == [ids["e3"], ids["c1"], ids["e2"], ids["e1"]]
    assert "EF 41 %" in b.item(0).text() and "NOT CLINICAL" in b.item(0).text() and "2024-02-01" in b.item(0).text()
    b.search.setText("roe")
    assert b.visible_study_ids() == [ids["x1"]]
    b.search.setText("p1")
    assert len(b.visible_study_ids()) == 4
    b.search.clear()
    b.modality.setCurrentIndex(b.modality.findData("echo"))
    b.date_from.setText("2020-01-01")
    assert b.visible_study_ids() == [ids["e3"], ids["e2"]]
    b.date_to.setText("2022-12-31")
    assert b.visible_study_ids() == [ids["e2"]]
    b.modality.setCurrentIndex(0)
    b.date_from.clear()
    b.date_to.clear()
    b.non_clinical.setChecked(True)
    assert b.visible_study_ids() == [ids["e3"]]
    b.non_clinical.setChecked(False)
    b.not_analysed.setChecked(True)
    assert set(b.visible_study_ids()) == {ids["x1"], ids["u1"]}
    b.search.setText("nobody")
    assert b.count() == 0 and "No study matches" in b.tree.topLevelItem(0).text(0)
    b.search.clear()
    b.not_analysed.setChecked(False)
    b.grouped.setChecked(False)  # flat, newest opened first
    assert b.tree.topLevelItemCount() == 6 and b.count() == 6
    # assign the loose heart sound by hand: it joins ROE's group
    store.assign_study(ids["u1"], store.study(ids["x1"])["patient_id"])
    b.grouped.setChecked(True)
    b.refresh()
    assert not any(b.tree.topLevelItem(i).text(0).startswith("Unassigned") for i in range(b.tree.topLevelItemCount()))
    with qtbot.waitSignal(b.study_activated) as sig:
        b.tree.itemClicked.emit(b._items[b.visible_study_ids().index(ids["e3"])], 0)
    assert sig.args == [ids["e3"]]


def test_timeline_rows_trend_and_deltas(qtbot, filled):
    from app.patients.timeline import PatientTimeline

    store, ids = filled
    pid = store.study(ids["e1"])["patient_id"]
    t = PatientTimeline(store)
    qtbot.addWidget(t)
    t.resize(1200, 700)
    t.set_patient(pid)
    t.show()
    assert t.canvas.rows == ["ecg", "echo"]
    assert [e.study_id for e in t.items] == [ids["e1"], ids["e2"], ids["c1"], ids["e3"]]  # by study date
    e3 = t.items[-1]
    assert e3.deltas == ["ΔEF -14 %"] and not e3.clinical and e3.prior_id == ids["e2"]
    assert [p.metric_name for p in t.trend_plots] == ["EF %"] and len(t.trend_plots[0].points) == 3
    pos = t.canvas.marker_positions()
    assert pos[ids["e1"]].x() < pos[ids["e2"]].x() < pos[ids["e3"]].x()
    assert pos[ids["e2"]].y() == pos[ids["e3"]].y() != pos[ids["c1"]].y()
    assert t.table.rowCount() == 4 and t.table.item(0, 4).text() == "ΔEF -14 %"
    assert t.table.item(0, 5).text() == "NOT A CLINICAL RESULT"
    t.canvas.grab()  # paints (labels and hit boxes)
    from PySide6.QtCore import QPoint

    with qtbot.waitSignal(t.canvas.study_activated) as sig:
        qtbot.mouseClick(t.canvas, __import__("PySide6.QtCore", fromlist=["Qt"]).Qt.LeftButton,
                         pos=QPoint(int(pos[ids["e2"]].x()), int(pos[ids["e2"]].y())))
    assert sig.args == [ids["e2"]]


def test_main_window_patients_actions(main_window, qtbot, tmp_path, monkeypatch):
    w = main_window
    store = w.ctx.store
    a = store.save(_study(1, "echo", DOE, "2019-05-01"), [_ef(60.0)])
    store.save(_study(2, "echo", DOE, "2024-05-01"), [_ef(50.0)])
    store.save(_study(3, "pcg"))
    w.refresh_studies()
    assert w.study_list.count() == 3
    w.show_timeline(store.study(a)["patient_id"])
    assert w.stack.currentWidget() is w.timeline and "DOE, JOHN" in w.windowTitle()
    assert len(w.timeline.items) == 2
    # the results table of what the list shows, anonymised, without a dialog
    out = tmp_path / "t.json"
    w.export_table(str(out), anonymise=True)
    qtbot.waitUntil(lambda: out.exists(), timeout=5000)
    assert "DOE" not in out.read_text() and "ECHO-" in out.read_text()
    w.study_id = None
    w.timeline_of_current()
    assert "Open a study first" in w.statusBar().currentMessage()


def _xray_dicom(path, date, value_scale=1.0):
    from tests.xray_fixtures import cr_dicom

    img = (np.add.outer(np.arange(128), np.arange(128)) * 8 * value_scale).astype(np.uint16)
    return cr_dicom(path, img, date)


def test_compare_xray_links_zoom_pan_and_window(qtbot, store, tmp_path):
    from app.context import AppContext
    from app.jobs import Jobs
    from app.patients.compare import CompareWindow
    from app.patients.model import prior_of
    from inference.detect import open_study
    from inference.registry import Registry

    ids = [store.save(open_study(_xray_dicom(tmp_path / f"x{i}.dcm", d, s)))
           for i, (d, s) in enumerate((("20200101", 1.0), ("20240101", 0.5)))]
    assert prior_of(store, ids[1]) == ids[0] and prior_of(store, ids[0]) is None
    ctx = AppContext(store=store, registry=Registry(), jobs=Jobs())
    cw = CompareWindow(ctx, ids[0], ids[1])
    qtbot.addWidget(cw)
    cw.show()
    qtbot.waitUntil(lambda: all(s is not None for s in cw.studies), timeout=10000)
    a, b = cw.viewers
    a.boxes[0].setRange(xRange=(10, 40), yRange=(10, 40), padding=0)
    (bx0, bx1), _ = b.boxes[0].viewRange()
    assert (bx0 + bx1) / 2 == pytest.approx(25, abs=1) and bx1 - bx0 < 60  # same place, zoomed (aspect kept)
    a._on_wl_drag(40, 0, True)
    qtbot.waitUntil(lambda: not b.use_header_lut, timeout=2000)
    ra = a.study.metadata["value_range"]
    rb = b.study.metadata["value_range"]
    frac = (a.center - ra[0]) / (ra[1] - ra[0])
    assert (b.center - rb[0]) / (rb[1] - rb[0]) == pytest.approx(frac)
    pdf = tmp_path / "both.pdf"
    job = cw.export_pdf(str(pdf))
    assert job is not None
    qtbot.waitUntil(lambda: pdf.exists(), timeout=30000)
    import shutil
    import subprocess

    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=False).stdout
        assert "Prior study · 2020-01-01" in text and "Current study · 2024-01-01" in text
    cw.close()
    ctx.jobs.wait(5000)


def test_compare_echo_plays_both_and_links_frames(qtbot, store, tmp_path):
    from PIL import Image

    from app.context import AppContext
    from app.jobs import Jobs
    from app.patients.compare import CompareWindow
    from inference.detect import open_study
    from inference.registry import Registry

    ids = []
    for i, n in enumerate((8, 12)):
        p = tmp_path / f"loop{i}.gif"
        base = np.zeros((64, 64), np.uint8)
        base[16:48, 16:48] = 200
        imgs = [Image.fromarray(np.roll(base, k, axis=1)) for k in range(n)]
        imgs[0].save(p, save_all=True, append_images=imgs[1:], duration=40, loop=0)
        ids.append(store.save(open_study(p)))
    pid = store.add_patient(name="DOE, JOHN")
    for sid in ids:
        store.assign_study(sid, pid)
    ctx = AppContext(store=store, registry=Registry(), jobs=Jobs())
    cw = CompareWindow(ctx, ids[0], ids[1])
    qtbot.addWidget(cw)
    cw.show()
    qtbot.waitUntil(lambda: all(s is not None for s in cw.studies), timeout=10000)
    a, b = cw.viewers
    qtbot.waitUntil(lambda: a.timer.isActive() and b.timer.isActive(), timeout=5000)  # both play as they open
    cw.toggle_play()
    assert not a.timer.isActive() and not b.timer.isActive()
    a.slider.setValue(7)  # the last frame of 8 -> the last of 12
    assert b.canvas.index == 11
    cw.toggle_play()
    assert a.timer.isActive() and b.timer.isActive()
    cw.toggle_play()
    assert not a.timer.isActive() and not b.timer.isActive()
    cw.close()
    ctx.jobs.wait(5000)


def test_compare_ecg_aligns_the_two_papers(qtbot, store, tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    from app.context import AppContext
    from app.jobs import Jobs
    from app.patients.compare import CompareWindow
    from inference.detect import open_study
    from inference.registry import Registry

    ids = []
    for i, d in enumerate(("20190101", "20230101")):
        ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
        ds.PatientID, ds.StudyDate, ds.SOPInstanceUID = "P7", d, f"1.2.3.{i}"
        ds.save_as(tmp_path / f"e{i}.dcm")
        ids.append(store.save(open_study(tmp_path / f"e{i}.dcm")))
    ctx = AppContext(store=store, registry=Registry(), jobs=Jobs())
    cw = CompareWindow(ctx, ids[0], ids[1])
    qtbot.addWidget(cw)
    cw.show()
    qtbot.waitUntil(lambda: all(s is not None for s in cw.studies), timeout=10000)
    a, b = cw.viewers
    qtbot.wait(300)  # each viewer's first true-scale view is set after it is shown
    a.view.vb.setXRange(30, 130, padding=0)
    assert b.view.vb.viewRange()[0] == pytest.approx(a.view.vb.viewRange()[0], abs=0.5)
    assert a.view.vb.viewRange()[0] == pytest.approx([30, 130], abs=1)
    a.speed_box.setCurrentIndex((a.speed_box.currentIndex() + 1) % a.speed_box.count())
    assert b.speed == a.speed
    ctx.jobs.wait(10000)
    qtbot.wait(50)
    cw.close()


def test_assign_merge_and_correct_through_the_list(qtbot, filled, monkeypatch):
    from app.patients import dialogs
    from app.patients.studylist import StudyBrowser

    store, ids = filled
    b = StudyBrowser(store)
    qtbot.addWidget(b)
    b.refresh()
    doe = store.study(ids["e1"])["patient_id"]
    roe = store.study(ids["x1"])["patient_id"]
    # the pick dialog: search hides others, a typed new patient wins over the list
    d = dialogs.PickPatientDialog(store.patients(), "t", "p")
    qtbot.addWidget(d)
    d.search.setText("roe")
    shown = [d.list.item(i) for i in range(d.list.count()) if not d.list.item(i).isHidden()]
    assert len(shown) == 1
    d.list.setCurrentItem(shown[0])
    assert d.chosen() == roe
    d.form.name.setText("NEW, PERSON")
    d.form.birth_date.setText("31.12.1999")
    assert d.chosen()[0] == "new" and d.form.problem() == ""
    d.form.birth_date.setText("someday")
    assert "not a date" in d.form.problem()
    # assign the loose heart sound to a new patient typed in the dialog
    monkeypatch.setattr(dialogs.PickPatientDialog, "exec",
                        lambda self: (self.form.name.setText("NEW, PERSON"), True)[1])
    b.assign_dialog(ids["u1"])
    new = store.study(ids["u1"])["patient_id"]
    assert store.patient(new)["name"] == "NEW, PERSON"
    # correct a name
    monkeypatch.setattr(dialogs.EditPatientDialog, "exec",
                        lambda self: (self.form.name.setText("DOE, JOHNNY"), True)[1])
    b.edit_dialog(doe)
    assert store.patient(doe)["name"] == "DOE, JOHNNY"
    # merge the new patient into ROE
    def pick_roe(self):
        for i in range(self.list.count()):
            if self.list.item(i).data(256) == roe:
                self.list.setCurrentRow(i)
        return True

    monkeypatch.setattr(dialogs.PickPatientDialog, "exec", pick_roe)
    b.merge_dialog(new)
    assert store.study(ids["u1"])["patient_id"] == roe
    tops = [b.tree.topLevelItem(i).text(0) for i in range(b.tree.topLevelItemCount())]
    assert any(t.startswith("DOE, JOHNNY") for t in tops) and not any("NEW, PERSON" in t for t in tops)

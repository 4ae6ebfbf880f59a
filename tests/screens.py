"""Screens as a reader sees them: the main window on a screen of a given size, one view after another
(each viewer with its result, the patient timeline, compare with prior, the validation window, the
keyboard-shortcut list), each saved as a PNG and measured the way a person would look at it:

- ``overflow``: widgets that extend past the window or past the widget they sit in (cut off);
- ``clipped``: labels, buttons, list and table texts that do not fit their room (cut or elided);
- ``image_share``: the part of the viewer the image or tracing itself covers.

    python tests/screens.py --size 1366x768 [--scale 2] [--out out/screens] [--views xray,ecg] [--hold S]

Offscreen by default (a virtual screen of exactly that size; ``--scale 2`` is a devicePixelRatio-2
screen of that logical size); ``--platform current`` uses the display there is (Xvfb with
``/work/shared/tools/screenshot``, ``--hold`` keeps the last view up for the screenshot). Writes
``<out>/<size>/<view>.png`` and ``<out>/<size>/report.json``; ``tests/test_screens.py`` runs it and
asserts on the report; ``--readme DIR`` also writes the small README copies.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ("ecg", "pcg", "echo", "xray", "endo", "timeline", "compare", "validation", "shortcuts")
EXTRA_VIEWS = ("compare_ecg", "compare_echo",  # compare with prior of the other modalities (``--views``)
               "endo_still", "endo_set", "endo_wide")  # endoscopy: a photograph, a set of them, 16:9 video
ENDO_FIXTURES = ROOT / "tests" / "fixtures" / "endo"
#: the share of its viewer the image or tracing must cover (stated in README "Reading-room layout")
MIN_IMAGE_SHARE = {"ecg": 0.5, "pcg": 0.5, "echo": 0.4, "xray": 0.6, "endo": 0.45, "compare": 0.45,
                   "compare_ecg": 0.5, "compare_echo": 0.4, "endo_still": 0.35, "endo_set": 0.35,
                   "endo_wide": 0.33}  # 16:9: 0.34-0.41 measured at 1366x768, by the pane widths earlier views left


# -- looking at widgets --------------------------------------------------------------------------------------
def _name(w) -> str:
    text = ""
    for attr in ("text", "currentText", "windowTitle"):
        f = getattr(w, attr, None)
        if callable(f):
            try:
                text = str(f())
            except Exception:  # noqa: BLE001 - a property that needs arguments
                text = ""
            if text:
                break
    text = " ".join(text.split())[:50]
    return f"{type(w).__name__}{'#' + w.objectName() if w.objectName() else ''}{' ' + repr(text) if text else ''}"


def _scroll_area(w):
    """The scroll area whose content ``w`` is part of, or None."""
    from PySide6.QtWidgets import QAbstractScrollArea

    p = w.parentWidget()
    while p is not None and not p.isWindow():
        gp = p.parentWidget()
        if isinstance(gp, QAbstractScrollArea) and p is gp.viewport():
            return gp
        p = gp
    return None


def _in_scroll_content(w) -> bool:
    return _scroll_area(w) is not None


def overflow(top) -> list[str]:
    """Visible widgets that extend past the window, or past their parent (a scroll area's content is
    meant to be larger than its viewport and is not counted)."""
    from PySide6.QtCore import QPoint, QRect
    from PySide6.QtWidgets import QWidget

    from PySide6.QtCore import Qt

    out = []
    win = QRect(QPoint(0, 0), top.size())
    for w in top.findChildren(QWidget):
        if not w.isVisible() or w.isWindow() or w.window() is not top or w.size().width() <= 0:
            continue
        area = _scroll_area(w)
        if area is not None:  # content may scroll, except sideways where there is no horizontal scroll bar
            if area.horizontalScrollBarPolicy() == Qt.ScrollBarAlwaysOff:
                vp = area.viewport()
                x0 = w.mapTo(vp, QPoint(0, 0)).x()
                if x0 + w.size().width() > vp.width() + 1:
                    out.append(f"{_name(w)} cut at the right of {_name(area)}: {x0 + w.size().width()} > {vp.width()}")
            continue
        r = QRect(w.mapTo(top, QPoint(0, 0)), w.size())
        p = w.parentWidget()
        pr = QRect(p.mapTo(top, QPoint(0, 0)), p.size())
        if not win.contains(r):
            out.append(f"{_name(w)} at {r.getRect()} past the window {top.width()}x{top.height()}")
        elif not pr.adjusted(-1, -1, 1, 1).contains(r):
            out.append(f"{_name(w)} at {r.getRect()} past its parent {_name(p)} {pr.getRect()}")
    return out


def clipped(top) -> list[str]:
    """Texts that do not fit where they are shown: labels (one line: width; wrapped: height), buttons,
    combo boxes, tree and table items."""
    from PySide6.QtWidgets import (QAbstractButton, QComboBox, QLabel, QTableWidget, QTreeWidget, QWidget)

    out = []
    for w in top.findChildren(QWidget):
        if not w.isVisible() or w.window() is not top:
            continue
        if isinstance(w, QLabel) and w.text() and w.pixmap().isNull():
            if w.wordWrap():
                need = w.heightForWidth(w.width())
                if need > w.height() + 2:
                    out.append(f"{_name(w)}: needs {need} px height, has {w.height()}")
            elif w.sizeHint().width() > w.width() + 2:
                out.append(f"{_name(w)}: needs {w.sizeHint().width()} px, has {w.width()}")
        elif isinstance(w, QAbstractButton) and w.text():
            if w.sizeHint().width() > w.width() + 2:
                out.append(f"{_name(w)}: needs {w.sizeHint().width()} px, has {w.width()}")
        elif isinstance(w, QComboBox) and w.currentText() and not w.isEditable():
            need = w.fontMetrics().horizontalAdvance(w.currentText()) + 28
            # a picker that says its whole choice in its tooltip may be cut in a narrow panel
            if need > w.width() + 2 and w.toolTip() != w.currentText():
                out.append(f"{_name(w)}: shows {w.currentText()!r} in {w.width()} px, needs {need}")
        elif isinstance(w, QTreeWidget):
            out += _tree_clipped(w)
        elif isinstance(w, QTableWidget):
            out += _table_clipped(w)
    return out


def _tree_clipped(t) -> list[str]:
    """Tree rows whose text is cut: a custom delegate (wrapping) must get the height it asks for; the
    default one draws one line per text line, elided at the column's edge."""
    from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

    out = []
    fm = t.fontMetrics()
    custom = type(t.itemDelegate()) is not QStyledItemDelegate

    def walk(item):
        index = t.indexFromItem(item)
        rect = t.visualRect(index)
        if rect.isValid() and rect.height() > 0:
            lines = item.text(0).split("\n")
            if custom:
                opt = QStyleOptionViewItem()
                opt.font = t.font()
                need = t.itemDelegate().sizeHint(opt, index).height()
                if need > rect.height() + 1:
                    out.append(f"{_name(t)} item {lines[0]!r}: needs {need} px height, has {rect.height()}")
            else:
                room = t.viewport().width() - rect.x() - (t.iconSize().width() + 8 if not item.icon(0).isNull() else 4)
                for line in lines:
                    if fm.horizontalAdvance(line) > room + 2:
                        out.append(f"{_name(t)} item {line!r}: needs {fm.horizontalAdvance(line)} px, has {room}")
                if len(lines) * fm.lineSpacing() > rect.height() + 2:
                    out.append(f"{_name(t)} item {lines[0]!r}: {len(lines)} lines in {rect.height()} px")
        for i in range(item.childCount()):
            walk(item.child(i))

    for i in range(t.topLevelItemCount()):
        walk(t.topLevelItem(i))
    return out


def _table_clipped(t) -> list[str]:
    """Table cells whose text is cut: wrapped rows lower than their text needs, or one-line cells (and
    single words of wrapped ones) wider than their column."""
    from PySide6.QtWidgets import QStyleOptionViewItem

    out = []
    fm = t.fontMetrics()
    for r in range(t.rowCount()):
        if t.isRowHidden(r):
            continue
        if t.wordWrap() and t.sizeHintForRow(r) > t.rowHeight(r) + 1:
            out.append(f"{_name(t)} row {r}: needs {t.sizeHintForRow(r)} px height, has {t.rowHeight(r)}")
        for c in range(t.columnCount()):
            it = t.item(r, c)
            if it is None or not it.text() or t.isColumnHidden(c):
                continue
            opt = QStyleOptionViewItem()
            opt.font = t.font()
            margin = t.itemDelegate().sizeHint(opt, t.model().index(r, c)).width() - fm.horizontalAdvance(it.text())
            words = it.text().split() if t.wordWrap() else [it.text()]
            need = max(fm.horizontalAdvance(w) for w in words) + max(margin, 0)
            room = sum(t.columnWidth(c + k) for k in range(t.columnSpan(r, c)))
            if need > room + 1:
                out.append(f"{_name(t)} cell {it.text()!r}: needs {need} px, has {room}")
    return out


def fits_rows(t) -> bool:
    """All of a table's rows are on show (no vertical scrolling needed)."""
    return t.verticalScrollBar().maximum() == 0


def rect_in(w, top) -> tuple[int, int, int, int]:
    from PySide6.QtCore import QPoint

    p = w.mapTo(top, QPoint(0, 0))
    return p.x(), p.y(), w.size().width(), w.size().height()


def graphics_rect(view, item, clip_item=None):
    """A pyqtgraph item's drawn rectangle in ``view`` widget coordinates, clipped to ``clip_item``."""
    r = view.mapFromScene(item.mapRectToScene(item.boundingRect())).boundingRect()
    if clip_item is not None:
        c = view.mapFromScene(clip_item.sceneBoundingRect()).boundingRect()
        r = r.intersected(c)
    return r


def share(viewer, widget, rect=None) -> float:
    """The area of ``rect`` (in ``widget`` coordinates; the whole widget when None) over the viewer's."""
    from PySide6.QtCore import QPoint, QRect

    r = rect if rect is not None else QRect(QPoint(0, 0), widget.size())
    r = QRect(widget.mapTo(viewer, r.topLeft()), r.size()).intersected(QRect(QPoint(0, 0), viewer.size()))
    return round(r.width() * r.height() / max(1, viewer.size().width() * viewer.size().height()), 3)


# -- the scenes ----------------------------------------------------------------------------------------------
class Scenes:
    def __init__(self, app, win, demo: dict[str, Path], tmp: Path):
        self.app, self.win, self.demo, self.tmp = app, win, demo, tmp

    def settle(self, timeout: float = 60.0, extra_ms: int = 300) -> None:
        from PySide6.QtTest import QTest

        end = time.monotonic() + timeout
        while self.win.ctx.jobs.running and time.monotonic() < end:
            QTest.qWait(50)
        QTest.qWait(extra_ms)

    def open(self, path, model: str | None = None):
        from inference.detect import open_study
        from inference.pipeline import analyse

        w = self.win
        study = open_study(path)
        sid = w.ctx.store.add_study(study)
        w.show_study(study, sid)
        w.refresh_studies()
        self.settle()
        if model:
            w.results.select_model(model)
            w._analysis_done(sid, analyse(study, model, w.ctx.registry))
        self.settle()
        return w.current_viewer()

    def viewer_facts(self, v) -> dict:
        w = self.win
        facts = {"results_rows_all_shown": fits_rows(w.results.table) if w.results.table.isVisible() else True,
                 "min_sizes": {"viewer": v.minimumSizeHint().toTuple(), "results": w.results.minimumSizeHint().toTuple(),
                                "studies": w.study_list.minimumSizeHint().toTuple(), "window": w.minimumSizeHint().toTuple()}}
        return facts

    def ecg(self):
        v = self.open(self.demo["ecg"], None)
        self.settle(extra_ms=600)
        pi = v.view.getPlotItem()
        img = graphics_rect(v.view, v.major, pi.vb)
        ecg2af = v.result_widget()
        facts = {"ecg2af_table_visible": bool(getattr(ecg2af, "table", None) is not None and ecg2af.table.isVisible()
                                               and ecg2af.table.rowCount() == 0)}
        return self.win, v, share(v, v.view, img), facts

    def pcg(self):
        v = self.open(self.demo["pcg"], "heart-sound")
        r = v.glw.mapFromScene(v.wave.vb.sceneBoundingRect().united(v.spec.vb.sceneBoundingRect())).boundingRect()
        return self.win, v, share(v, v.glw, r), {}

    def echo(self):
        v = self.open(self.demo["echo"], None)
        return self.win, v, share(v, v.canvas, v.canvas._target().toRect()), {"playing": v.timer.isActive()}

    def xray(self):
        v = self.open(self.demo["xray"], "xray-pneumonia")
        shown = [b for b in v.boxes if b in v.glw.ci.items]
        img = graphics_rect(v.glw, v.items[0] if v.boxes[0] in shown else v.items[2], shown[0])
        return self.win, v, share(v, v.glw, img), {"panels": len(shown), "heatmap": v.heat is not None,
                                                   "heatmap_shown": v.heat_layers[0].isVisible()}

    @staticmethod
    def _polyp_clip():
        """Real polyp frames with a known answer (tests/endo_clips: the five Kvasir-SEG fixtures, each seen for
        a second in a slow camera move, joined by hard cuts). The synthetic demo withdrawal is outside the polyp
        model's domain (its feature gate answers every frame so: no finding to show)."""
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.endo_clips import clip

        import cv2

        # square, as the demo's 256x256 frames were (the model resizes every frame to its square input anyway)
        return [cv2.resize(f, (256, 256), interpolation=cv2.INTER_LINEAR) for f in clip("moving", per=25)[0]]

    def endo(self):
        """A withdrawal-like clip of real polyp frames analysed by the bundled polyp model, on its first
        finding's key frame."""
        from inference.endo.demo import write_video

        path = write_video(self.tmp / "endo_polyps.mp4", self._polyp_clip()[:50])  # two polyps: two findings, as the demo had
        return self._endo_facts(self.open(path, "endo-polyp-lightbox"))

    def endo_wide(self):
        """A 16:9 720p recording as HD video processors write it: the scope's image in the middle of a black
        1280x720 frame with text beside it (the first real polyp of the clip above), analysed."""
        import cv2
        import numpy as np

        from inference.endo.demo import write_video

        out = []
        for f in self._polyp_clip()[:25]:  # one polyp, one finding (as the demo passage had)
            c = np.zeros((720, 1280, 3), np.uint8)
            c[40:680, 320:960] = cv2.resize(f, (640, 640), interpolation=cv2.INTER_LINEAR)
            cv2.putText(c, "ID 0001  CVP:9  Z:1.0", (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
            out.append(c)
        path = write_video(self.tmp / "endo_720p.mp4", out)
        return self._endo_facts(self.open(path, "endo-polyp-lightbox"))

    def endo_still(self):
        """One colonoscopy photograph (a Kvasir-SEG fixture), analysed."""
        return self._endo_facts(self.open(sorted(ENDO_FIXTURES.glob("kvasir_*.jpg"))[0], "endo-polyp-lightbox"))

    def endo_set(self):
        """A folder of stills read as a set (one verdict per image), analysed, on its second image."""
        import shutil

        d = self.tmp / "endo_stills"
        d.mkdir(exist_ok=True)
        for p in sorted(ENDO_FIXTURES.glob("kvasir_*.jpg")):
            shutil.copy(p, d / p.name)
        from inference.detect import open_study
        from inference.pipeline import analyse

        w = self.win
        study = open_study(d, "endo", folder_as="set")
        sid = w.ctx.store.add_study(study)
        w.show_study(study, sid)
        w.refresh_studies()
        self.settle()
        w.results.select_model("endo-polyp-lightbox")
        w._analysis_done(sid, analyse(study, "endo-polyp-lightbox", w.ctx.registry))
        self.settle()
        v = w.current_viewer()
        v.step(1)
        return self._endo_facts(v)

    def _endo_facts(self, v):
        keyed = [f for f in v.findings if f.get("frame_index") is not None]
        if keyed and v.kind == "video":
            v.jump_finding(1)  # the first finding: its key frame, box and mask, its row selected
        elif keyed:
            v.select_finding(next((f["id"] for f in keyed if f["frame_index"] == v.pos), keyed[0]["id"]))
        self.settle(timeout=5, extra_ms=200)
        hidden = [v.table.horizontalHeaderItem(c).text() for c in range(v.table.columnCount())
                  if v.table.isColumnHidden(c)]
        facts = {"kind": v.kind, "mask_shown": v.view.has_mask, "boxes": len(v.view.boxes),
                 "findings_rows": v.table.rowCount(), "findings_rows_all_shown": fits_rows(v.table),
                 "findings_no_sideways_scroll": v.table.horizontalScrollBar().maximum() == 0,
                 "findings_columns_hidden": hidden, "panel": v.panel_place, "panel_size": v.split.sizes()[1]}
        return self.win, v, share(v, v.view, v.view.image_rect().toRect()), facts

    def _patient(self):
        """A patient with years of studies: echo EF falling, ECG rhythm and AF risk, two chest films on one
        day (the demo radiograph is one of them), and the real demo studies."""
        from inference.results import Result
        from inference.study import Study

        store = self.win.ctx.store
        pid = store.add_patient(name="DOE, JANE", external_id="P-1001", birth_date="1951-03-14", sex="F")

        def fake(i, modality, name, day, outputs, model):
            st = Study(modality, f"/archive/{name}", f"{9000 + i:064x}", name,
                       metadata={"patient": {"study_date": day}})
            sid = store.save(st, [Result(model, "ab" * 32, "onnx", "CPU", 0.2, outputs, True)])
            store.assign_study(sid, pid)
            return sid

        for i, (day, ef) in enumerate((("2019-04-02", 61.0), ("2021-06-15", 54.0), ("2023-09-20", 46.0))):
            fake(i, "echo", f"echo_a4c_{day}.avi", day,
                 {"LVEF_whole_video_%": ef, "LVEF_category": "normal" if ef >= 53 else "mildly reduced"}, "echonet-ef")
        for i, (day, rh, hr) in enumerate((("2019-04-01", "normal sinus rhythm", 68), ("2022-01-10", "atrial fibrillation", 96),
                                           ("2023-09-20", "atrial fibrillation", 88))):
            fake(10 + i, "ecg", f"ecg_{day}.hd5", day, {"rhythm": rh, "heart_rate_bpm": hr}, "ecg-rhythm")
        for i, (day, p) in enumerate((("2023-09-20", 0.81), ("2023-09-20", 0.64), ("2024-01-05", 0.12))):
            fake(20 + i, "xray", f"cxr_{day}_{i}.png", day,
                 {"p_pneumonia": p, "threshold": 0.5, "label": "pneumonia" if p >= 0.5 else "normal"}, "xray-pneumonia")
        return pid

    def timeline(self):
        pid = self._patient()
        self.win.refresh_studies()
        self.win.show_timeline(pid)
        self.settle()
        t = self.win.timeline
        facts = {"table_rows_all_shown": fits_rows(t.table),
                 "trend_height": min((p.height() for p in t.trend_plots), default=0),
                 "markers_overlap": _markers_overlap(t.canvas)}
        return self.win, t, None, facts

    def compare(self):
        """Two chest films of one patient (the demo radiograph and a brighter copy, as DICOM with dates)."""
        import cv2
        import numpy as np

        img = cv2.imread(str(self.demo["xray"]), cv2.IMREAD_GRAYSCALE)
        paths = [_dicom(self.tmp / f"cxr_{d}.dcm", d, img if i else np.clip(img * 0.9 + 12, 0, 255).astype(np.uint8))
                 for i, d in enumerate(("20230920", "20240105"))]
        cw, v = self._compare(paths, "xray-pneumonia")
        shown = [b for b in v.boxes if b in v.glw.ci.items]
        img = graphics_rect(v.glw, v.items[0] if v.boxes[0] in shown else v.items[2], shown[0])
        # the share of one side: the image over its half of the window
        return cw, v, share(v, v.glw, img), {"panels": len(shown)}

    def compare_ecg(self):
        """Two ECGs of the demo patient (70 and 95 /min): the papers one above the other."""
        from inference.ecg.demo import DEMO_PATIENT, synth_ecg
        from inference.ecg.reader import write_ml4h_hd5

        p = self.tmp / "ecg_95bpm.hd5"
        write_ml4h_hd5(p, synth_ecg(hr=95.0, seed=3), 500, text="Synthetic ECG (Lightbox), 95 bpm", attrs=DEMO_PATIENT)
        cw, v = self._compare([self.demo["ecg"], p], None)
        img = graphics_rect(v.view, v.major, v.view.getPlotItem().vb)
        return cw, v, share(v, v.view, img), {}

    def compare_echo(self):
        """Two loops of one patient side by side, playing together."""
        from inference.echo.demo import frames, write

        p = write(self.tmp / "echo_followup.avi", frames()[:, ::-1].copy())
        cw, v = self._compare([self.demo["echo"], p], None, patient=True)
        return cw, v, share(v, v.canvas, v.canvas._target().toRect()), {"playing": all(x.timer.isActive() for x in cw.viewers)}

    def _compare(self, paths, model, patient: bool = False):
        from inference.detect import open_study
        from inference.pipeline import analyse

        store = self.win.ctx.store
        ids = []
        for p in paths:
            st = open_study(p)
            ids.append(store.save(st, [analyse(st, model, self.win.ctx.registry)] if model else []))
        if patient:
            pid = store.add_patient(name="ROE, RICHARD", external_id="P-2002")
            for sid in ids:
                store.assign_study(sid, pid)
        self.win.compare_with_prior(ids[1])
        cw = self.win.compare_window
        end = time.monotonic() + 60
        while any(s is None for s in cw.studies) and time.monotonic() < end:
            self.settle(timeout=1, extra_ms=50)
        self.settle(extra_ms=600)
        return cw, cw.viewers[1]

    def validation(self):
        from app.validation.dialog import ValidateDialog

        d = ValidateDialog(self.win.ctx, self.win, model_id="xray-pneumonia")
        d.labels.setText(str(self.tmp / "labels.csv"))
        d.show()
        self.settle()
        self._keep = d
        return d, None, None, {}

    def shortcuts(self):
        d = self.win.show_shortcuts()
        self.settle()
        return d, None, None, {}


def _markers_overlap(canvas) -> int:
    pos = list(canvas.marker_positions().values())
    n = 0
    for i, a in enumerate(pos):
        for b in pos[i + 1:]:
            if abs(a.x() - b.x()) < 12 and abs(a.y() - b.y()) < 12:
                n += 1
    return n


def _dicom(path: Path, date: str, img):
    from tests.xray_fixtures import cr_dicom

    return cr_dicom(path, img, date, "ROE^RICHARD", "P-2002")


# -- running -------------------------------------------------------------------------------------------------
def _setup_env(args) -> Path:
    w, h = (int(x) for x in args.size.lower().split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="lightbox_screens_"))
    if args.platform == "offscreen":
        cfg = tmp / "screen.json"
        s = args.scale
        cfg.write_text(json.dumps({"screens": [{"name": "screen", "x": 0, "y": 0, "width": int(w * s),
                                                "height": int(h * s), "logicalDpi": 96, "logicalBaseDpi": 96,
                                                "dpr": 1}]}))
        os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={cfg}"
        if s != 1:
            os.environ["QT_SCALE_FACTOR"] = f"{s:g}"
    home = Path(args.home) if args.home else tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["LIGHTBOX_HOME"] = str(home)
    os.environ["LIGHTBOX_DB"] = str(home / "lightbox.sqlite")
    os.environ["LIGHTBOX_WEIGHTS"] = str(home / "weights")  # the bundled models only: the same screens everywhere
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return tmp


def run(args) -> dict:
    tmp = _setup_env(args)
    sys.path.insert(0, str(ROOT))
    from inference.demo import ensure_demo_studies

    demo_dir = Path(args.demo_dir) if args.demo_dir else tmp / "demo"
    demo = dict(zip(("ecg", "pcg", "echo", "xray", "endo"), ensure_demo_studies(demo_dir)))
    from app.main import MainWindow, create_app
    from app.store import Store

    app = create_app()
    win = MainWindow(Store())
    win.quiet_errors = True
    win.show()
    sc = Scenes(app, win, demo, tmp)
    sc.settle()
    out = Path(args.out) / (args.size + (f"@{args.scale:g}x" if args.scale != 1 else ""))
    out.mkdir(parents=True, exist_ok=True)
    screen = app.primaryScreen().availableGeometry()
    report = {"size": args.size, "scale": args.scale, "screen": [screen.width(), screen.height()],
              "dpr": app.primaryScreen().devicePixelRatio(), "views": {}}
    views = [v for v in (args.views.split(",") if args.views else VIEWS)]
    for name in views:
        t0 = time.monotonic()
        top, viewer, img_share, facts = getattr(sc, name)()
        top.raise_()
        sc.settle(timeout=5, extra_ms=200)
        fg = top.frameGeometry()
        entry = {"window": [top.width(), top.height()], "frame": [fg.x(), fg.y(), fg.width(), fg.height()],
                 "fits_screen": screen.contains(fg) or (fg.width() <= screen.width() and fg.height() <= screen.height()),
                 "overflow": overflow(top), "clipped": clipped(top), "image_share": img_share,
                 "min_image_share": MIN_IMAGE_SHARE.get(name),
                 "viewer": list(rect_in(viewer, top)) if viewer is not None else None, **facts}
        if top is win:
            entry.update(sc.viewer_facts(viewer))
        png = out / f"{name}.png"
        top.grab().save(str(png))
        entry["png"] = str(png)
        entry["seconds"] = round(time.monotonic() - t0, 2)
        report["views"][name] = entry
        if top is not win and name != views[-1]:
            top.close()
    (out / "report.json").write_text(json.dumps(report, indent=1))
    if args.readme:
        _readme_copies(out, Path(args.readme))
    if args.hold:
        from PySide6.QtTest import QTest

        QTest.qWait(int(args.hold * 1000))
    for v in win.viewers.values():
        v.shutdown()
    win.ctx.jobs.cancel_all()
    win.ctx.jobs.wait(5000)
    return report


def _readme_copies(src: Path, dest: Path, views=("echo", "xray", "timeline", "compare")) -> None:
    """Small PNG copies for README (palette, max 1280 px wide, < 300 KB each)."""
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    for v in views:
        p = src / f"{v}.png"
        if not p.exists():
            continue
        im = Image.open(p).convert("RGB")
        if im.width > 1280:
            im = im.resize((1280, round(im.height * 1280 / im.width)), Image.LANCZOS)
        im.quantize(colors=256, method=Image.FASTOCTREE, dither=Image.NONE).save(dest / f"{v}.png", optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="1366x768")
    p.add_argument("--scale", type=float, default=1.0, help="device pixel ratio (offscreen)")
    p.add_argument("--out", default=str(ROOT / "out" / "screens"))
    p.add_argument("--views", default="", help=f"comma-separated, of {','.join(VIEWS + EXTRA_VIEWS)}")
    p.add_argument("--platform", choices=("offscreen", "current"), default="offscreen")
    p.add_argument("--home", help="data folder (default: a fresh temporary one)")
    p.add_argument("--demo-dir", help="folder for the demo studies (reused between runs)")
    p.add_argument("--readme", help="also write small README copies of some views to this folder")
    p.add_argument("--hold", type=float, default=0.0, help="seconds to keep the last view on screen")
    args = p.parse_args(argv)
    report = run(args)
    for name, e in report["views"].items():
        print(f"{name:<11} {e['window'][0]}x{e['window'][1]} image {e['image_share']} "
              f"overflow {len(e['overflow'])} clipped {len(e['clipped'])} ({e['seconds']} s)")
        for line in e["overflow"] + e["clipped"]:
            print("   ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

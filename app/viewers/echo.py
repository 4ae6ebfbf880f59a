"""Echo viewer: cine loop at the file's frame rate, sector crop box, LV mask overlay, LV area curve with
clickable ED/ES marks, the apical-4-chamber view gate, and the blinded deliberate-practice loop.

Keys: Space play/pause · Left/Right one frame · Home/End loop start/end · [ / ] speed.
"""
from __future__ import annotations


import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QElapsedTimer, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QIntValidator, QPainter, QPen
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QFileDialog, QFormLayout,
                               QGraphicsItem, QGraphicsView, QGroupBox, QHBoxLayout, QHeaderView, QInputDialog, QLabel, QLineEdit, QPushButton,
                               QSizePolicy, QSlider, QSplitter, QStyleFactory, QTableWidget, QTableWidgetItem,
                               QTabWidget, QVBoxLayout, QWidget)
from superqt import QRangeSlider

from app.viewers import echo_practice as practice
from app.viewers.base import ViewerBase
from inference.echo import playback
from inference.echo.preprocess import CATEGORIES, CropBox, ef_category, find_sector, square_geometry
from inference.pipelines import echo as pipe
from inference.results import NOT_CLINICAL, Result, now_iso

MASK_RGB = (61, 139, 253)
CHECKBOX_CSS = """
QCheckBox::indicator { width: 13px; height: 13px; border: 1px solid #8b949e; border-radius: 2px; background: #22272e; }
QCheckBox::indicator:checked { background: #3d8bfd; border-color: #3d8bfd; }
"""
ED_COLOUR, ES_COLOUR = "#e5534b", "#3fb950"


class EstimateEdit(QLineEdit):
    """The trainee's visual EF in whole percent, empty until typed: a spin box always holds a number,
    and any default would anchor the estimate. ``value()`` is 0 while empty; Up/Down step a typed value."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setValidator(QIntValidator(0, 95, self))
        self.setPlaceholderText("type your estimate, in %")
        self.setMaxLength(2)

    def value(self) -> float:
        t = self.text().strip()
        return float(t) if t.isdigit() else 0.0

    def setValue(self, v: float) -> None:
        self.setText(str(int(round(v))) if v and v > 0 else "")

    def keyPressEvent(self, ev) -> None:
        if ev.key() in (Qt.Key_Up, Qt.Key_Down):
            if self.value() > 0:  # stepping starts from the trainee's own number, never from a default
                self.setValue(min(95, max(1, self.value() + (1 if ev.key() == Qt.Key_Up else -1))))
            return
        super().keyPressEvent(ev)


class CineCanvas(QWidget):
    """Paints one frame (pre-built QImage), the LV mask and the crop box; the crop box can be dragged
    (inside: move; near a corner: resize)."""

    crop_edited = Signal(list)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.setFocusPolicy(Qt.StrongFocus)
        self.images: list[QImage] = []
        self._buf: np.ndarray | None = None
        self.index = 0
        self.box: CropBox | None = None
        self.show_box = True
        self.masks: np.ndarray | None = None  # (F, 112, 112) bool or None
        self.key_masks: dict[int, np.ndarray] = {}
        self.show_mask = True
        self.opacity = 0.35
        self.caption = ""
        self._drag: tuple[str, QPointF, CropBox] | None = None
        self._mask_cache: dict[int, QImage] = {}

    # -- data ---------------------------------------------------------------------------------
    def set_frames(self, frames: np.ndarray) -> None:
        """Wrap every frame as a QImage once (no copy: they share the study's array)."""
        self._buf = np.ascontiguousarray(frames)
        f, h, w = self._buf.shape[:3]
        self.images = [QImage(self._buf[i].data, w, h, 3 * w, QImage.Format_RGB888) for i in range(f)]
        self.index = 0
        self.masks, self.key_masks = None, {}
        self._mask_cache.clear()
        self.update()

    def set_masks(self, masks: np.ndarray | None, key_masks: dict[int, np.ndarray] | None = None) -> None:
        self.masks = masks
        self.key_masks = key_masks or {}
        self._mask_cache.clear()
        self.update()

    def frame_size(self) -> tuple[int, int]:
        if self._buf is None:
            return 1, 1
        return self._buf.shape[2], self._buf.shape[1]

    # -- geometry -----------------------------------------------------------------------------
    def _target(self) -> QRectF:
        w, h = self.frame_size()
        s = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * s) / 2, (self.height() - h * s) / 2, w * s, h * s)

    def _to_widget(self, x: float, y: float) -> QPointF:
        t = self._target()
        w, _ = self.frame_size()
        s = t.width() / w
        return QPointF(t.x() + x * s, t.y() + y * s)

    def _to_frame(self, p: QPointF) -> tuple[float, float]:
        t = self._target()
        w, _ = self.frame_size()
        s = t.width() / w
        return (p.x() - t.x()) / s, (p.y() - t.y()) / s

    def _mask_image(self, i: int) -> QImage | None:
        m = None
        if self.masks is not None and i < len(self.masks):
            m = self.masks[i]
        elif i in self.key_masks:
            m = self.key_masks[i]
        if m is None:
            return None
        if i not in self._mask_cache:
            rgba = np.zeros(m.shape + (4,), np.uint8)
            rgba[m] = (*MASK_RGB, 255)
            # outline in white for legibility over speckle
            edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
            rgba[edge] = (255, 255, 255, 255)
            img = QImage(rgba.data, m.shape[1], m.shape[0], 4 * m.shape[1], QImage.Format_RGBA8888).copy()
            self._mask_cache[i] = img
        return self._mask_cache[i]

    # -- painting -------------------------------------------------------------------------------
    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        if not self.images:
            p.setPen(QColor("#8b949e"))
            p.drawText(self.rect(), Qt.AlignCenter, "No echo loaded")
            return
        t = self._target()
        p.setRenderHint(QPainter.SmoothPixmapTransform, True)
        p.drawImage(t, self.images[self.index])
        if self.show_mask and self.box is not None:
            mi = self._mask_image(self.index)
            if mi is not None:
                x0, y0, scale = square_geometry(self.box)
                a = self._to_widget(x0, y0)
                b = self._to_widget(x0 + 112 * scale, y0 + 112 * scale)
                p.setOpacity(self.opacity)
                p.drawImage(QRectF(a, b), mi)
                p.setOpacity(1.0)
        if self.show_box and self.box is not None:
            a = self._to_widget(self.box.x0, self.box.y0)
            b = self._to_widget(self.box.x1, self.box.y1)
            pen = QPen(QColor("#d29922"), 1.5, Qt.DashLine)
            p.setPen(pen)
            p.setBrush(Qt.NoBrush)
            p.drawRect(QRectF(a, b))
            p.setPen(QPen(QColor("#d29922"), 1))
            p.setBrush(QColor("#d29922"))
            for c in (a, b, QPointF(a.x(), b.y()), QPointF(b.x(), a.y())):
                p.drawRect(QRectF(c.x() - 4, c.y() - 4, 8, 8))
        if self.caption:
            fm = p.fontMetrics()
            cw = fm.horizontalAdvance(self.caption) + 12
            r = QRectF(t.center().x() - cw / 2, t.y() + 4, cw, fm.height() + 6)
            p.fillRect(r, QColor(0, 0, 0, 170))
            p.setPen(QColor("#d5d9de"))
            p.drawText(r, Qt.AlignCenter, self.caption)

    # -- crop editing -----------------------------------------------------------------------------
    def mousePressEvent(self, ev) -> None:
        if not self.show_box or self.box is None or ev.button() != Qt.LeftButton:
            return super().mousePressEvent(ev)
        x, y = self._to_frame(ev.position())
        b = self.box
        s = self._target().width() / self.frame_size()[0]
        tol = 10 / max(s, 1e-6)
        corners = {"tl": (b.x0, b.y0), "tr": (b.x1, b.y0), "bl": (b.x0, b.y1), "br": (b.x1, b.y1)}
        for name, (cx, cy) in corners.items():
            if abs(x - cx) <= tol and abs(y - cy) <= tol:
                self._drag = (name, ev.position(), b)
                return
        if b.x0 <= x <= b.x1 and b.y0 <= y <= b.y1:
            self._drag = ("move", ev.position(), b)

    def mouseMoveEvent(self, ev) -> None:
        if not self._drag:
            return
        kind, start, b = self._drag
        s = self._target().width() / self.frame_size()[0]
        dx = (ev.position().x() - start.x()) / s
        dy = (ev.position().y() - start.y()) / s
        x0, y0, x1, y1 = b.x0, b.y0, b.x1, b.y1
        if kind == "move":
            x0, x1, y0, y1 = x0 + dx, x1 + dx, y0 + dy, y1 + dy
        else:
            if "l" in kind:
                x0 += dx
            if "r" in kind:
                x1 += dx
            if "t" in kind:
                y0 += dy
            if "b" in kind:
                y1 += dy
        w, h = self.frame_size()
        self.box = CropBox.from_list([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]).clamp(w, h)
        self.update()

    def mouseReleaseEvent(self, ev) -> None:
        if self._drag and self.box is not None:
            self._drag = None
            self.crop_edited.emit(self.box.as_list())


class EchoPanel(QWidget):
    """Right-dock panel: view gate, crop, overlay, blinded practice."""

    def __init__(self, viewer: "EchoViewer"):
        super().__init__()
        self.v = viewer
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        gate = QGroupBox("View gate (EchoNet-Dynamic: apical 4-chamber only)")
        g = QVBoxLayout(gate)
        self.gate_label = QLabel("")
        self.gate_label.setWordWrap(True)
        g.addWidget(self.gate_label)
        row = QHBoxLayout()
        self.gate_yes = QPushButton("Apical 4-chamber")
        self.gate_no = QPushButton("Not A4C")
        row.addWidget(self.gate_yes)
        row.addWidget(self.gate_no)
        g.addLayout(row)
        lay.addWidget(gate)
        tabs = QTabWidget()
        lay.addWidget(tabs)

        # practice
        pw = QWidget()
        pl = QVBoxLayout(pw)
        row = QHBoxLayout()
        self.trainee = QComboBox()
        self.trainee.setToolTip("Trainee profile (local, no password)")
        self.new_trainee = QPushButton("New…")
        row.addWidget(QLabel("Trainee"))
        row.addWidget(self.trainee, 1)
        row.addWidget(self.new_trainee)
        pl.addLayout(row)
        self.practice = QCheckBox("Blinded practice: hide AI EF until my estimate is locked")
        pl.addWidget(self.practice)
        form = QFormLayout()
        # no default number: a pre-filled value would anchor the trainee's estimate
        self.estimate = EstimateEdit()
        self.category = QComboBox()
        self.category.addItem("(no category)", "")
        for c in CATEGORIES:
            self.category.addItem(c, c)
        form.addRow("Visual EF estimate", self.estimate)
        form.addRow("Category", self.category)
        pl.addLayout(form)
        self.lock = QPushButton("Lock estimate")
        self.lock.setObjectName("primary")
        pl.addWidget(self.lock)
        self.reveal = QLabel("")
        self.reveal.setWordWrap(True)
        self.reveal.setTextFormat(Qt.RichText)
        pl.addWidget(self.reveal)
        row = QHBoxLayout()
        self.history_btn = QPushButton("Progress…")
        self.set_btn = QCheckBox("In practice set")
        self.set_btn.setToolTip("Instructor: mark this study as part of the teaching set")
        self.set_table_btn = QPushButton("Practice set…")
        row.addWidget(self.history_btn)
        row.addWidget(self.set_btn)
        row.addWidget(self.set_table_btn)
        pl.addLayout(row)
        pl.addStretch(1)
        tabs.addTab(pw, "Practice")

        # view gate + image
        gw = QWidget()
        gl = QVBoxLayout(gw)
        crop = QGroupBox("Sector crop (model input)")
        c = QVBoxLayout(crop)
        self.crop_label = QLabel("")
        self.crop_label.setWordWrap(True)
        c.addWidget(self.crop_label)
        row = QHBoxLayout()
        self.show_box = QCheckBox("Show crop box")
        self.show_box.setChecked(True)
        self.reset_crop = QPushButton("Auto crop")
        row.addWidget(self.show_box)
        row.addWidget(self.reset_crop)
        c.addLayout(row)
        gl.addWidget(crop)
        ov = QGroupBox("LV overlay")
        o = QHBoxLayout(ov)
        self.show_mask = QCheckBox("LV mask")
        self.show_mask.setChecked(True)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(35)
        o.addWidget(self.show_mask)
        o.addWidget(QLabel("opacity"))
        o.addWidget(self.opacity, 1)
        gl.addWidget(ov)
        gl.addStretch(1)
        tabs.addTab(gw, "Crop && overlay")
        self.tabs = tabs


class EchoViewer(ViewerBase):
    modality = "echo"

    def __init__(self, ctx, parent=None):
        super().__init__(ctx, parent)
        self.frames: np.ndarray | None = None
        self.fps = 50.0
        self.speed = 1.0
        self.area: np.ndarray | None = None
        self.ed: list[int] = []
        self.es: list[int] = []
        self.estimate_id: int | None = None
        self.locked = False
        self.dropped = 0
        self.shown = 0

        self.canvas = CineCanvas()
        self.canvas.crop_edited.connect(self._crop_edited)

        # transport
        self.play_btn = QPushButton("▶ Play")
        self.play_btn.setToolTip("Play / pause (Space)")
        self.play_btn.clicked.connect(self.toggle_play)
        prev_btn = QPushButton("◀")
        prev_btn.setToolTip("Previous frame (Left)")
        prev_btn.clicked.connect(lambda: self.step(-1))
        next_btn = QPushButton("▶|")
        next_btn.setToolTip("Next frame (Right)")
        next_btn.clicked.connect(lambda: self.step(1))
        self.speed_box = QComboBox()
        for s in (0.25, 0.5, 1.0, 2.0):
            self.speed_box.addItem(f"{s:g}×", s)
        self.speed_box.setCurrentIndex(2)
        self.speed_box.setToolTip("Playback speed ([ and ])")
        self.speed_box.currentIndexChanged.connect(self._speed_changed)
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setMinimumWidth(200)
        self.slider.setToolTip("Frame")
        self.slider.valueChanged.connect(self._slider_moved)
        self.loop = QRangeSlider(Qt.Horizontal)
        # superqt draws its two handles itself; under the app style sheet it needs the plain Fusion
        # style (otherwise only one handle and no groove are painted)
        self._loop_style = QStyleFactory.create("Fusion")  # keep a reference: Qt does not own it
        self._loop_style.setParent(self)
        self.loop.setStyle(self._loop_style)
        self.loop.setStyleSheet("QRangeSlider { background: transparent; qproperty-barColor: #d29922; }")
        self.loop.setToolTip("Loop range (drag the ends)")
        self.loop.valueChanged.connect(self._loop_changed)
        self.pos_label = QLabel("")
        self.pos_label.setMinimumWidth(220)
        self.stamp_label = QLabel(NOT_CLINICAL)
        self.stamp_label.setObjectName("stamp")
        self.stamp_label.setToolTip("The overlay and curve come from non-official weights")
        self.stamp_label.hide()
        tr = QHBoxLayout()
        for w in (prev_btn, self.play_btn, next_btn, self.speed_box):
            tr.addWidget(w)
        tr.addWidget(self.slider, 1)
        tr.addWidget(self.pos_label)
        lr = QHBoxLayout()
        lr.addWidget(QLabel("Loop"))
        lr.addWidget(self.loop, 1)
        lr.addWidget(self.stamp_label)

        # LV area plot
        self.plot = pg.PlotWidget(background="#111417")
        self.plot.setMinimumHeight(150)
        self.plot.setLabel("bottom", "time (s)")
        self.plot.setLabel("left", "LV area")
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.curve = self.plot.plot([], [], pen=pg.mkPen("#3d8bfd", width=2))
        self.ed_marks = pg.ScatterPlotItem(size=11, brush=pg.mkBrush(ED_COLOUR), pen=pg.mkPen("w"), symbol="t1")
        self.es_marks = pg.ScatterPlotItem(size=11, brush=pg.mkBrush(ES_COLOUR), pen=pg.mkPen("w"), symbol="t")
        self.ed_marks.sigClicked.connect(self._mark_clicked)
        self.es_marks.sigClicked.connect(self._mark_clicked)
        self.plot.addItem(self.ed_marks)
        self.plot.addItem(self.es_marks)
        self.cursor = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#d29922", width=1))
        self.cursor.sigPositionChanged.connect(self._cursor_dragged)
        self.plot.addItem(self.cursor)
        self.plot.scene().sigMouseClicked.connect(self._plot_clicked)
        # axes and labels are re-rendered from a pixmap cache: moving the cursor during playback
        # then costs ~1 ms instead of re-drawing every tick label (~15 ms per axis)
        for ax in self.plot.getPlotItem().axes.values():
            ax["item"].setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        self.plot.setViewportUpdateMode(QGraphicsView.MinimalViewportUpdate)
        self._beat_labels: list = []
        self.plot_note = QLabel("")
        self.plot_note.setObjectName("muted")
        self.plot_note.setWordWrap(True)

        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.canvas, 1)
        tl.addLayout(tr)
        tl.addLayout(lr)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.plot, 1)
        bl.addWidget(self.plot_note)
        split = QSplitter(Qt.Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self._play_start = 0
        self._last_ui = 0

        self.setStyleSheet(CHECKBOX_CSS)
        self.panel = EchoPanel(self)
        self.panel.setStyleSheet(CHECKBOX_CSS)
        p = self.panel
        p.new_trainee.clicked.connect(self._new_trainee)
        p.trainee.currentIndexChanged.connect(lambda _i: self._practice_state_changed())
        p.practice.toggled.connect(lambda _on: self._practice_state_changed())
        p.lock.clicked.connect(self.lock_estimate)
        p.history_btn.clicked.connect(self.show_history)
        p.set_btn.toggled.connect(self._toggle_practice_set)
        p.set_table_btn.clicked.connect(self.show_practice_set)
        p.gate_yes.clicked.connect(lambda: self.confirm_view("A4C"))
        p.gate_no.clicked.connect(lambda: self.confirm_view("not A4C"))
        p.show_box.toggled.connect(self._show_box)
        p.reset_crop.clicked.connect(self.reset_crop)
        p.show_mask.toggled.connect(self._overlay_changed)
        p.opacity.valueChanged.connect(self._overlay_changed)
        self._reload_trainees()

    # -- contract -------------------------------------------------------------------------------
    def result_widget(self) -> QWidget:
        return self.panel

    def hides_results(self) -> bool:
        return bool(self.panel.practice.isChecked() and not self.locked)

    def shutdown(self) -> None:
        self.timer.stop()

    def set_study(self, study, study_id: int) -> None:
        self.timer.stop()
        super().set_study(study, study_id)
        self.frames = study.data["frames"]
        self.fps = float(study.data.get("fps") or 30.0)
        n = len(self.frames)
        self.canvas.set_frames(self.frames)
        if "auto_crop_box" not in study.data:
            study.data["auto_crop_box"] = find_sector(self.frames).as_list()
        self.canvas.box = CropBox.from_list(study.data.get("crop_box") or study.data["auto_crop_box"])
        self.slider.blockSignals(True)
        self.slider.setRange(0, n - 1)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.loop.blockSignals(True)
        self.loop.setRange(0, n - 1)
        self.loop.setValue((0, n - 1))
        self.loop.blockSignals(False)
        self.area, self.ed, self.es = None, [], []
        self._update_plot()
        self._update_crop_label()
        self._update_gate_label()
        self.panel.set_btn.blockSignals(True)
        self.panel.set_btn.setChecked(practice.in_practice_set(self.ctx.store, study_id))
        self.panel.set_btn.blockSignals(False)
        self._practice_state_changed(refresh=False)
        self.show_frame(0)
        self.setFocus()

    def set_result(self, result: Result | None) -> None:
        if result is not None and result.model_id not in pipe.MODELS:
            result = None
        super().set_result(result)
        self.canvas.set_masks(None)
        self.area, self.ed, self.es = None, [], []
        self.stamp_label.setVisible(result is not None and not result.clinical)
        if result is not None:
            o = result.outputs
            if result.arrays.get("lv_area") is not None:
                self.area = np.asarray(result.arrays["lv_area"], float)
            elif o.get(pipe.K_AREA):
                self.area = np.asarray(o[pipe.K_AREA], float)
            self.ed = [int(i) - 1 for i in o.get(pipe.K_ED, [])]
            self.es = [int(i) - 1 for i in o.get(pipe.K_ES, [])]
            key = {int(k): pipe.unpack_mask(v) for k, v in (o.get(pipe.K_MASKS) or {}).items()}
            # a fresh result has every frame's mask; a stored one only its ED/ES masks
            self.canvas.set_masks(result.arrays.get("masks"), key)
            if o.get(pipe.K_CROP) and not self.study.data.get("crop_box"):
                self.canvas.box = CropBox.from_list(o[pipe.K_CROP])
            gate = o.get(pipe.K_GATE)
            if gate:
                self._update_gate_label(gate)
        self._update_plot()
        if self.locked and self.estimate_id is not None:
            self._reveal()
        self._update_visibility()
        self.show_frame(self.canvas.index)

    # -- frames and playback ---------------------------------------------------------------------
    def show_frame(self, i: int, playing: bool = False) -> None:
        """Show frame ``i``. While playing, only the image repaints every frame; the slider, the plot
        cursor and the position label follow at ~10 Hz (each costs several ms per repaint)."""
        if self.frames is None:
            return
        n = len(self.frames)
        i = int(max(0, min(n - 1, i)))
        self.canvas.index = i
        tag = ""
        if self.ed and i in self.ed and self._ai_visible():
            tag = f"ED (end-diastole) · frame {i + 1}"
        elif self.es and i in self.es and self._ai_visible():
            tag = f"ES (end-systole) · frame {i + 1}"
        self.canvas.caption = tag
        self.canvas.update()
        if playing:
            now = self.clock.elapsed()
            if now - self._last_ui < 100:
                return
            self._last_ui = now
        self.slider.blockSignals(True)
        self.slider.setValue(i)
        self.slider.blockSignals(False)
        self.cursor.blockSignals(True)
        self.cursor.setValue(i / self.fps)
        self.cursor.blockSignals(False)
        self.pos_label.setText(f"frame {i + 1}/{n} · {i / self.fps:5.2f} s · {self.fps:g} fps")

    def toggle_play(self) -> None:
        if self.timer.isActive():
            self.pause()
        else:
            self.play()

    def play(self) -> None:
        if self.frames is None:
            return
        lo, hi = self.loop.value()
        if not (lo <= self.canvas.index <= hi):
            self.show_frame(lo)
        self._play_start = self.canvas.index
        self._last_ui = -1000
        self.dropped, self.shown = 0, 0
        self.clock.start()
        self.timer.start(playback.tick_interval_ms(self.fps, self.speed))
        self.play_btn.setText("❚❚ Pause")

    def pause(self) -> None:
        if self.timer.isActive():
            self.timer.stop()
            self.show_frame(self.canvas.index)  # bring slider, cursor and label up to date
        self.play_btn.setText("▶ Play")

    def _tick(self) -> None:
        lo, hi = (int(v) for v in self.loop.value())
        k = playback.due_frame(self.clock.nsecsElapsed() / 1e9, self.fps, self.speed, self._play_start, lo, hi)
        cur = self.canvas.index
        if k != cur:
            step = (k - cur) % (hi - lo + 1)
            self.dropped += max(0, step - 1)
            self.shown += 1
            self.show_frame(k, playing=True)

    def step(self, d: int) -> None:
        self.pause()
        if self.frames is None:
            return
        lo, hi = (int(v) for v in self.loop.value())
        i = self.canvas.index + d
        if i > hi:
            i = lo
        elif i < lo:
            i = hi
        self.show_frame(i)

    def _speed_changed(self) -> None:
        self.speed = float(self.speed_box.currentData())
        if self.timer.isActive():
            self.play()

    def _slider_moved(self, v: int) -> None:
        self.pause()
        self.show_frame(v)

    def _loop_changed(self, v) -> None:
        if self.timer.isActive():
            self.play()

    def keyPressEvent(self, ev) -> None:
        k = ev.key()
        if k == Qt.Key_Space:
            self.toggle_play()
        elif k == Qt.Key_Right:
            self.step(1)
        elif k == Qt.Key_Left:
            self.step(-1)
        elif k == Qt.Key_Home:
            self.show_frame(int(self.loop.value()[0]))
        elif k == Qt.Key_End:
            self.show_frame(int(self.loop.value()[1]))
        elif k == Qt.Key_BracketRight:
            self.speed_box.setCurrentIndex(min(self.speed_box.count() - 1, self.speed_box.currentIndex() + 1))
        elif k == Qt.Key_BracketLeft:
            self.speed_box.setCurrentIndex(max(0, self.speed_box.currentIndex() - 1))
        else:
            super().keyPressEvent(ev)

    # -- plot -------------------------------------------------------------------------------------
    def _ai_visible(self) -> bool:
        return not self.hides_results()

    def _update_plot(self) -> None:
        visible = self._ai_visible()
        if self.area is None or not visible:
            for item in self._beat_labels:
                self.plot.removeItem(item)
            self._beat_labels = []
            self.curve.setData([], [])
            self.ed_marks.setData([])
            self.es_marks.setData([])
            if self.frames is not None:
                self.plot.setXRange(0, len(self.frames) / self.fps, padding=0.02)
            if self.area is not None and not visible:
                self.plot_note.setText("LV area curve hidden until your estimate is locked (blinded practice).")
            else:
                self.plot_note.setText("Run the analysis (EchoNet-Dynamic) for the LV area curve, ED/ES and EF.")
            return
        t = np.arange(len(self.area)) / self.fps
        self.curve.setData(t, self.area)
        self.ed_marks.setData([{"pos": (i / self.fps, self.area[i]), "data": i} for i in self.ed if i < len(self.area)])
        self.es_marks.setData([{"pos": (i / self.fps, self.area[i]), "data": i} for i in self.es if i < len(self.area)])
        for item in self._beat_labels:
            self.plot.removeItem(item)
        self._beat_labels = []
        o = self.result.outputs if self.result else {}
        beats, efs = o.get(pipe.K_BEATS) or [], o.get(pipe.K_EF_BEATS) or []
        top = float(np.max(self.area)) if len(self.area) else 0.0
        for b, ef in zip(beats, efs):
            end = b["ed_next"] if b.get("ed_next") is not None else b["es"]
            label = pg.TextItem(f"EF {ef:.0f} %", color="#d5d9de", anchor=(0.5, 1.0))
            label.setPos((b["ed"] + end) / 2 / self.fps, top)
            self.plot.addItem(label)
            self._beat_labels.append(label)
        unit = (self.result.outputs.get(pipe.K_AREA_UNIT) if self.result else "") or "px²"
        self.plot.setLabel("left", f"LV area ({unit})")
        stored = self.result is not None and self.result.arrays.get("masks") is None
        self.plot_note.setText("ED = red ▲ (LV area peak), ES = green ▼ (trough); EF per beat above each beat. "
                               "Click a mark or the curve to jump there; drag the amber line to scrub."
                               + (" Stored result: the LV mask is shown on the ED/ES frames; re-run the "
                                  "analysis for every frame." if stored else ""))

    def _mark_clicked(self, _item, points, *_a) -> None:
        if points:
            self.pause()
            self.show_frame(int(points[0].data()))

    def _plot_clicked(self, ev) -> None:
        if self.frames is None or ev.button() != Qt.LeftButton:
            return
        vb = self.plot.getPlotItem().vb
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        x = vb.mapSceneToView(ev.scenePos()).x()
        self.pause()
        self.show_frame(int(round(x * self.fps)))

    def _cursor_dragged(self) -> None:
        if self.frames is not None:
            self.pause()
            self.show_frame(int(round(self.cursor.value() * self.fps)))

    # -- crop, overlay, gate ----------------------------------------------------------------------------
    def _crop_edited(self, box: list) -> None:
        if self.study is None:
            return
        self.study.data["crop_box"] = box
        self._update_crop_label()
        self.status_message.emit(f"Crop box set to {box}; re-run the analysis to use it.")

    def reset_crop(self) -> None:
        if self.study is None:
            return
        self.study.data.pop("crop_box", None)
        self.canvas.box = CropBox.from_list(self.study.data["auto_crop_box"])
        self.canvas.update()
        self._update_crop_label()

    def _update_crop_label(self) -> None:
        b = self.canvas.box
        if b is None or self.study is None:
            self.panel.crop_label.setText("")
            return
        who = "set by you" if self.study.data.get("crop_box") else "found automatically"
        used = self.result.outputs.get(pipe.K_CROP) if self.result else None
        stale = " — differs from the analysed crop: re-run" if used and list(used) != b.as_list() else ""
        self.panel.crop_label.setText(f"x {b.x0}–{b.x1}, y {b.y0}–{b.y1} px ({b.width}×{b.height}, {who}); "
                                      f"letterboxed to 112×112. Drag the box or its corners to adjust.{stale}")

    def _show_box(self, on: bool) -> None:
        self.canvas.show_box = on
        self.canvas.update()

    def _overlay_changed(self) -> None:
        self.canvas.show_mask = self.panel.show_mask.isChecked() and self._ai_visible()
        self.canvas.opacity = self.panel.opacity.value() / 100.0
        self.canvas.update()

    def confirm_view(self, decision: str) -> None:
        if self.study is None:
            return
        by = self.panel.trainee.currentText() or "user"
        self.study.data["view_gate"] = {"decision": decision, "by": by,
                                        "at": now_iso()}
        self._update_gate_label()
        self.status_message.emit(f"View recorded as {decision} by {by}; it is stored with the next result.")

    def _update_gate_label(self, stored: dict | None = None) -> None:
        reg = self.ctx.registry
        auto = pipe.VIEW_MODEL in reg.entries and reg.state(pipe.VIEW_MODEL).usable
        user = self.study.data.get("view_gate") if self.study is not None else None
        if stored:
            extra = f" p={stored['probability']:.2f}" if "probability" in stored else ""
            txt = f"<b>{stored['decision']}</b> — {stored['method']}{extra} ({stored.get('at', '')})"
        elif auto:
            txt = "Automatic: the installed view classifier decides when the analysis runs."
        elif user:
            txt = f"<b>{user['decision']}</b> — confirmed by {user['by']} at {user['at']}"
        else:
            txt = ("<span style='color:#d29922'>Not confirmed.</span> No view classifier is installed: confirm "
                   "that this is an apical 4-chamber view before EF is computed.")
        self.panel.gate_label.setText(txt)
        self.panel.gate_yes.setEnabled(not auto)
        self.panel.gate_no.setEnabled(not auto)

    # -- practice -----------------------------------------------------------------------------------------
    def _reload_trainees(self, select: str | None = None) -> None:
        box = self.panel.trainee
        cur = select or box.currentText()
        box.blockSignals(True)
        box.clear()
        for t in self.ctx.store.trainees():
            box.addItem(t["name"], t["id"])
        if cur:
            i = box.findText(cur)
            if i >= 0:
                box.setCurrentIndex(i)
        box.blockSignals(False)

    def _new_trainee(self) -> None:
        name, ok = QInputDialog.getText(self, "New trainee", "Trainee name:")
        if ok and name.strip():
            self.set_trainee(name.strip())

    def set_trainee(self, name: str) -> int:
        tid = self.ctx.store.trainee(name)
        self._reload_trainees(select=name)
        self._practice_state_changed()
        return tid

    def trainee_id(self) -> int | None:
        d = self.panel.trainee.currentData()
        return int(d) if d is not None else None

    def set_practice_mode(self, on: bool) -> None:
        self.panel.practice.setChecked(on)

    def _practice_state_changed(self, refresh: bool = True) -> None:
        self.locked, self.estimate_id = False, None
        self.panel.reveal.setText("")
        tid = self.trainee_id()
        self.panel.estimate.setValue(0)  # a fresh study starts blank: no carry-over from the last one
        self.panel.category.setCurrentIndex(0)
        if tid is not None and self.study_id is not None:
            est = practice.locked_estimate(self.ctx.store, tid, self.study_id)
            if est:
                self.locked, self.estimate_id = True, int(est["id"])
                self.panel.estimate.setValue(est["ef_estimate"])
                i = self.panel.category.findData(est["category"] or "")
                self.panel.category.setCurrentIndex(max(0, i))
                self._reveal()
        self._update_visibility(refresh)

    def _update_visibility(self, refresh: bool = True) -> None:
        p = self.panel
        practising = p.practice.isChecked()
        p.estimate.setEnabled(not self.locked)
        p.category.setEnabled(not self.locked)
        p.lock.setEnabled(not self.locked and self.trainee_id() is not None and self.study_id is not None)
        p.lock.setText("Estimate locked" if self.locked else "Lock estimate")
        if practising and not self.locked:
            p.reveal.setText("<i>AI EF hidden — enter your visual estimate and lock it.</i>")
        self._overlay_changed()
        self._update_plot()
        if self.frames is not None:
            self.show_frame(self.canvas.index)
        if refresh:
            self._refresh_results_panel()

    def _refresh_results_panel(self) -> None:
        w = self.window()
        res = getattr(w, "results", None)
        if res is not None and hasattr(res, "show_result") and getattr(w, "current_viewer", lambda: None)() is self:
            res.show_result(self.result, hidden=self.hides_results())

    def lock_estimate(self) -> int | None:
        tid = self.trainee_id()
        if tid is None or self.study_id is None or self.locked:
            if tid is None:
                self.status_message.emit("Choose or create a trainee first.")
            return None
        if self.panel.estimate.value() < 1:
            self.status_message.emit("Type your visual EF estimate (in %) before locking it.")
            return None
        cat = self.panel.category.currentData() or None
        self.estimate_id = self.ctx.store.lock_estimate(tid, self.study_id, float(self.panel.estimate.value()), cat)
        self.locked = True
        self._reveal()
        self._update_visibility()
        return self.estimate_id

    def _reveal(self) -> None:
        """After the lock: store AI EF + delta (once) and show them."""
        ai = practice.ai_ef(self.result)
        est = self.ctx.store.db["estimates"].get(self.estimate_id)
        if ai is None:
            self.panel.reveal.setText(f"Locked: {est['ef_estimate']:.0f} %"
                                      f"{' (' + est['category'] + ')' if est['category'] else ''}. "
                                      "The AI EF appears here once the analysis has run.")
            return
        if est["revealed_at"] is None or est["result_id"] != self.result.id:
            if self.result.id is not None:
                est = self.ctx.store.reveal_estimate(self.estimate_id, self.result, ai)
        delta = est["ef_estimate"] - ai
        ai_cat = ef_category(ai)
        agree = ""
        if est["category"]:
            ok = est["category"] == ai_cat
            agree = (f"<br>Category: you <b>{est['category']}</b>, AI <b>{ai_cat}</b> — "
                     + ("<span style='color:#3fb950'>agree</span>" if ok else "<span style='color:#e5534b'>disagree</span>"))
        stamp = "" if self.result.clinical else f"<br><span style='color:#e5534b'><b>{NOT_CLINICAL}</b></span>"
        self.panel.reveal.setText(
            f"Your estimate <b>{est['ef_estimate']:.0f} %</b> · AI EF <b>{ai:.1f} %</b> · "
            f"delta <b>{delta:+.1f}</b> %-points{agree}{stamp}")

    def _toggle_practice_set(self, on: bool) -> None:
        if self.study_id is not None:
            practice.set_practice(self.ctx.store, self.study_id, on)

    def show_history(self) -> None:
        tid = self.trainee_id()
        if tid is None:
            self.status_message.emit("Choose a trainee first.")
            return
        HistoryDialog(self, self.ctx.store, tid, self.panel.trainee.currentText()).exec()

    def show_practice_set(self) -> None:
        PracticeSetDialog(self, self.ctx.store).exec()

    def report_extra(self) -> dict:
        if self.hides_results():  # a PDF must not reveal what the screen hides
            return {"blinded": True}
        extra: dict = {}
        if self.result is not None and self.result.arrays.get("masks") is not None:
            extra["masks"] = self.result.arrays["masks"]
        tid = self.trainee_id()
        if self.panel.practice.isChecked() and tid is not None and self.study_id is not None:
            est = practice.locked_estimate(self.ctx.store, tid, self.study_id)
            if est:
                extra["practice"] = dict(est, trainee=self.panel.trainee.currentText())
        return extra


def _table(rows: list[dict], cols: list[tuple[str, str]]) -> QTableWidget:
    t = QTableWidget(len(rows), len(cols))
    t.setHorizontalHeaderLabels([c[1] for c in cols])
    t.verticalHeader().hide()
    t.setEditTriggers(QTableWidget.NoEditTriggers)
    for i, r in enumerate(rows):
        for j, (k, _) in enumerate(cols):
            v = r.get(k)
            if isinstance(v, float):
                v = f"{v:+.1f}" if k == "delta" or k == "bias" else f"{v:.1f}"
            t.setItem(i, j, QTableWidgetItem("" if v is None else str(v)))
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    return t


class HistoryDialog(QDialog):
    """One trainee's estimates: error over time, Bland–Altman vs the AI, table; CSV/PDF export."""

    def __init__(self, parent, store, trainee_id: int, name: str):
        super().__init__(parent)
        self.setWindowTitle(f"EF practice progress — {name}")
        self.resize(900, 640)
        self.rows = practice.history(store, trainee_id)
        self.name = name
        lay = QVBoxLayout(self)
        done = [r for r in self.rows if r["ai_ef"] is not None]
        ba = practice.bland_altman([r["ef_estimate"] for r in done], [r["ai_ef"] for r in done])
        summary = (f"{ba['n']} revealed estimates · MAE {ba['mae']:.1f} %-points · bias {ba['bias']:+.1f} · "
                   f"95 % limits of agreement {ba['loa_low']:+.1f} to {ba['loa_high']:+.1f}") if ba["n"] else \
            "No revealed estimates yet."
        lay.addWidget(QLabel(summary))
        plots = QHBoxLayout()
        p1 = pg.PlotWidget(background="#111417", title="Absolute error over time")
        p1.setLabel("bottom", "estimate #")
        p1.setLabel("left", "|trainee − AI| (%-points)")
        p1.plot(list(range(1, len(done) + 1)), [abs(r["delta"]) for r in done], pen="#3d8bfd", symbol="o")
        p2 = pg.PlotWidget(background="#111417", title="Bland–Altman vs AI")
        p2.setLabel("bottom", "mean of trainee and AI EF (%)")
        p2.setLabel("left", "trainee − AI (%-points)")
        if ba["n"]:
            m = [(r["ef_estimate"] + r["ai_ef"]) / 2 for r in done]
            d = [r["ef_estimate"] - r["ai_ef"] for r in done]
            p2.plot(m, d, pen=None, symbol="o", symbolBrush="#3d8bfd")
            for y, style in ((ba["bias"], Qt.SolidLine), (ba["loa_low"], Qt.DashLine), (ba["loa_high"], Qt.DashLine)):
                p2.addItem(pg.InfiniteLine(pos=y, angle=0, pen=pg.mkPen("#e5534b", style=style)))
        plots.addWidget(p1)
        plots.addWidget(p2)
        lay.addLayout(plots, 1)
        lay.addWidget(_table(self.rows, [("locked_at", "Locked"), ("study", "Study"), ("ef_estimate", "Estimate %"),
                                         ("category", "Category"), ("ai_ef", "AI EF %"), ("ai_category", "AI cat."),
                                         ("delta", "Δ")]), 1)
        row = QHBoxLayout()
        b1 = QPushButton("Export CSV…")
        b1.clicked.connect(self._csv)
        b2 = QPushButton("Export PDF…")
        b2.clicked.connect(self._pdf)
        row.addStretch(1)
        row.addWidget(b1)
        row.addWidget(b2)
        lay.addLayout(row)

    def _csv(self) -> None:
        from inference import paths

        f, _ = QFileDialog.getSaveFileName(self, "Export CSV", str(paths.exports_dir() / f"ef_practice_{self.name}.csv"),
                                           "CSV (*.csv)")
        if f:
            practice.export_csv(self.rows, f)

    def _pdf(self) -> None:
        from inference import paths

        f, _ = QFileDialog.getSaveFileName(self, "Export PDF", str(paths.exports_dir() / f"ef_practice_{self.name}.pdf"),
                                           "PDF (*.pdf)")
        if f:
            practice.export_pdf(self.rows, self.name, f)


class PracticeSetDialog(QDialog):
    """Instructor view: all trainees' errors on the practice-set studies."""

    def __init__(self, parent, store):
        super().__init__(parent)
        self.setWindowTitle("Practice set — all trainees")
        self.resize(820, 520)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Per trainee (practice-set studies only)"))
        lay.addWidget(_table(practice.practice_summary(store),
                             [("trainee", "Trainee"), ("n", "Studies"), ("mae", "MAE %-pts"), ("bias", "Bias")]))
        lay.addWidget(QLabel("Every revealed estimate"))
        lay.addWidget(_table(practice.practice_table(store),
                             [("trainee", "Trainee"), ("study", "Study"), ("ef_estimate", "Estimate %"),
                              ("ai_ef", "AI EF %"), ("delta", "Δ"), ("category", "Category"),
                              ("revealed_at", "Revealed")]), 1)

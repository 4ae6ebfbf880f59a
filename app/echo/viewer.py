"""Echo viewer: cine loop at the file's frame rate (playing from the moment it opens, as on the scanner,
unless View ▸ Play echo loops on opening is off), sector crop box, LV mask overlay, LV area curve with
clickable ED/ES marks, the apical-4-chamber view gate, and the blinded deliberate-practice loop.

Keys: Space play/pause · Left/Right one frame · Home/End loop start/end · [ / ] speed.
"""
from __future__ import annotations


import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QElapsedTimer, Qt, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QGraphicsItem, QGraphicsView, QHBoxLayout, QLabel,
                               QPushButton, QSlider, QSplitter, QStyleFactory, QVBoxLayout, QWidget)
from superqt import QRangeSlider

from app.echo import practice
from app.widgets import user_state
from app.widgets.keys import add_keys
from app.widgets.viewer_base import ViewerBase
from inference.echo import playback
from inference.echo.preprocess import CropBox, auto_box
from inference.echo import pipeline as pipe
from inference.results import NOT_CLINICAL, Result, now_iso

CHECKBOX_CSS = """
QCheckBox::indicator { width: 13px; height: 13px; border: 1px solid #8b949e; border-radius: 2px; background: #22272e; }
QCheckBox::indicator:checked { background: #3d8bfd; border-color: #3d8bfd; }
"""
ED_COLOUR, ES_COLOUR = "#e5534b", "#3fb950"


from app.echo.cine import CineCanvas
from app.echo.panel import EchoPanel
from app.echo.practice_panel import PracticeMixin
from app.echo.session import SessionMixin


AUTOPLAY = "echo/autoplay"  # user_state flag: loops play as soon as they open (default on)


class EchoViewer(SessionMixin, PracticeMixin, ViewerBase):
    modality = "echo"
    #: False where something else starts playback (compare with prior plays both loops together)
    autoplay = True
    #: ask the main window to open a file (a practice session's next loop): path, modality
    request_open = Signal(str, str)
    #: the set of loops whose names are hidden changed (practice toggled, trainee, lock, session start/end)
    blinding_changed = Signal()

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
        self.slider.setMinimumWidth(120)
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
        self.pos_label.setMinimumWidth(self.pos_label.fontMetrics().horizontalAdvance("frame 888/888 · 88.88 s") + 8)
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
        self.plot.setMinimumHeight(120)
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

        # the header line: the loop's name, or a neutral case label while a teaching loop is blinded
        self.header = QLabel("")
        self.header.setStyleSheet("font-size: 13pt;")
        self.header.setWordWrap(True)  # a long file name never widens the window
        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.addWidget(self.header)
        tl.addWidget(self.canvas, 1)
        tl.addLayout(tr)
        tl.addLayout(lr)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.plot, 1)
        bl.addWidget(self.plot_note)
        split = QSplitter(Qt.Vertical)
        split.setObjectName("echoSplit")  # remembered per user (app.widgets.user_state)
        split.addWidget(top)
        split.addWidget(bottom)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setSizes([760, 190])  # the loop first; the LV area curve below it
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.clock = QElapsedTimer()
        self._play_start = 0
        self._last_ui = 0

        add_keys(self, (("Space", "Play / pause", self.toggle_play), ("Right", "Next frame", lambda: self.step(1)),
                        ("Left", "Previous frame", lambda: self.step(-1)),
                        ("Home", "Loop start", lambda: self.show_frame(int(self.loop.value()[0]))),
                        ("End", "Loop end", lambda: self.show_frame(int(self.loop.value()[1]))),
                        ("]", "Faster", lambda: self.speed_box.setCurrentIndex(
                            min(self.speed_box.count() - 1, self.speed_box.currentIndex() + 1))),
                        ("[", "Slower", lambda: self.speed_box.setCurrentIndex(
                            max(0, self.speed_box.currentIndex() - 1)))))
        self.setStyleSheet(CHECKBOX_CSS)
        self.panel = EchoPanel(self)
        self.panel.setStyleSheet(CHECKBOX_CSS)
        p = self.panel
        p.new_trainee.clicked.connect(self._new_trainee)
        p.trainee.currentIndexChanged.connect(lambda _i: self._blinding_changed())
        p.practice.toggled.connect(lambda _on: self._blinding_changed())
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
        p.all_clips.toggled.connect(self._options_changed)
        p.beat_rule.currentIndexChanged.connect(lambda _i: self._options_changed())
        self._session_init()
        self._reload_trainees()

    # -- contract -------------------------------------------------------------------------------
    def result_widget(self) -> QWidget:
        return self.panel

    def hides_results(self) -> bool:
        return bool(self.panel.practice.isChecked() and not self.locked)

    def shutdown(self) -> None:
        self.timer.stop()
        self.session_timer.stop()

    def set_study(self, study, study_id: int) -> None:
        self.timer.stop()
        super().set_study(study, study_id)
        self.frames = study.data["frames"]
        self.fps = float(study.data.get("fps") or 30.0)
        n = len(self.frames)
        self.canvas.set_frames(self.frames)
        if "auto_crop_box" not in study.data:
            study.data["auto_crop_box"] = auto_box(self.frames, pipe.input_path(study)).as_list()
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
        self._load_options()
        self.panel.set_btn.blockSignals(True)
        self.panel.set_btn.setChecked(practice.in_practice_set(self.ctx.store, study_id))
        self.panel.set_btn.blockSignals(False)
        self._practice_state_changed(refresh=False)
        self._session_study_shown(study_id)
        self._update_header()
        self.show_frame(0)
        self.setFocus()
        if self.autoplay and user_state.flag(AUTOPLAY, True):
            self.play()

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
        self._update_clips_label()
        if self.locked and self.estimate_id is not None:
            self._reveal()
        self._update_visibility()
        self.show_frame(self.canvas.index)

    # -- blinded names ---------------------------------------------------------------------------------
    def blind_map(self) -> dict[int, str]:
        """{study id: neutral label} for the teaching loops whose file names stay hidden now (blinded
        practice on, or a session running, and no estimate locked yet): see ``library.blind_labels``."""
        if getattr(self, "session", None) is None and not self.panel.practice.isChecked():
            return {}
        from app.echo import library

        return library.blind_labels(self.ctx.store, self.trainee_id(), getattr(self, "session", None))

    def display_name(self, study_id: int | None, name: str) -> str:
        return self.blind_map().get(study_id, name) if study_id is not None else name

    def _update_header(self) -> None:
        if self.study is None or self.frames is None:
            self.header.setText("")
            return
        self.header.setText(f"<b>{self.display_name(self.study_id, self.study.name)}</b> · "
                            f"{len(self.frames)} frames · {self.fps:g} fps")

    def _blinding_changed(self, refresh: bool = True) -> None:
        """Practice toggled or trainee changed: the estimate state, the header, and the window's title and
        study list (through ``blinding_changed``)."""
        self._practice_state_changed(refresh)
        self._names_changed()

    def _names_changed(self) -> None:
        self._update_header()
        self.blinding_changed.emit()

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
        self.pos_label.setText(f"frame {i + 1}/{n} · {i / self.fps:.2f} s")  # the fps is in the header

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
            # reference rule: a beat is its end-systole; Lightbox's alternative: ED -> ES -> ED
            at = (b["ed"] + b["ed_next"]) / 2 if b.get("ed") is not None and b.get("ed_next") is not None else b["es"]
            label = pg.TextItem(f"EF {ef:.0f} %", color="#d5d9de", anchor=(0.5, 1.0))
            label.setPos(at / self.fps, top)
            self.plot.addItem(label)
            self._beat_labels.append(label)
        unit = (self.result.outputs.get(pipe.K_AREA_UNIT) if self.result else "") or "px²"
        self.plot.setLabel("left", f"LV area ({unit})")
        stored = self.result is not None and self.result.arrays.get("masks") is None
        rule = str(o.get(pipe.K_RULE, ""))
        marks = ("ES = green ▼ (reference rule: find_peaks on the LV size), ED = red ▲ (same rule mirrored); EF "
                 "per beat (clip from ES − 32) at each ES. " if rule.startswith("reference") else
                 "ED = red ▲ (LV area peak), ES = green ▼ (trough), Lightbox's alternative rule; EF per beat "
                 "above each beat. ")
        self.plot_note.setText(marks +
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
        path = pipe.input_path(self.study)
        how = {"native": "already EchoNet's 112×112 format: passed to the model unchanged",
               "reference-dicom": "the reference's DICOM conversion (grey, bicubic 112×112, sector mask)",
               }.get(path, "Lightbox's sector crop, letterboxed to 112×112 (not a reference step)")
        if not self.study.data.get("crop_box") and path != "sector":
            who = "from the input format"
        self.panel.crop_label.setText(f"x {b.x0}–{b.x1}, y {b.y0}–{b.y1} px ({b.width}×{b.height}, {who}); "
                                      f"{how}. Drag the box or its corners to crop it yourself.{stale}")

    def _load_options(self) -> None:
        o = pipe.options(self.study)
        p = self.panel
        for w in (p.all_clips, p.beat_rule):
            w.blockSignals(True)
        p.all_clips.setChecked(o["all_clips"])
        p.beat_rule.setCurrentIndex(max(0, p.beat_rule.findData(o["beat_rule"])))
        for w in (p.all_clips, p.beat_rule):
            w.blockSignals(False)
        self._update_clips_label()

    def _options_changed(self) -> None:
        if self.study is None:
            return
        p = self.panel
        self.study.data["echo_options"] = dict(self.study.data.get("echo_options") or {},
                                               all_clips=p.all_clips.isChecked(),
                                               beat_rule=p.beat_rule.currentData())
        self._update_clips_label()
        self.status_message.emit("EF analysis options changed; re-run the analysis to use them.")

    def _update_clips_label(self) -> None:
        if self.frames is None:
            return
        from inference.echo import reference

        n_all = len(reference.all_starts(len(self.frames)))
        per = self.result.outputs.get(pipe.K_CLIP_S) if self.result else None
        est = f"; ≈ {per * n_all:.0f} s at the last run's {per:.2f} s per clip" if per else ""
        used = self.result.outputs.get(pipe.K_CLIPS) if self.result else None
        self.panel.clips_label.setText(f"This loop has {n_all} clips{est}."
                                       + (f" Last result: {used} clips." if used else ""))

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


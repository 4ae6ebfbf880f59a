"""12-lead ECG on paper: true scale, standard layouts, calipers, display-only filters, R peaks, ECG2AF panel.

Everything is drawn in paper millimetres in one pyqtgraph PlotItem with a locked 1:1 aspect: x = time ×
speed (mm/s), y = voltage × gain (mm/mV). The grid (1 mm / 5 mm), all traces, the calibration pulses
and the R-peak markers are a handful of reused items (each trace set is one curve with NaN breaks), so
a redraw on a speed/gain/layout/filter change costs milliseconds. "True scale" sets the zoom from the
screen's physical size so 1 mm of paper is 1 mm on the glass when the screen reports its size.

Display filters (baseline wander, 50/60 Hz mains) work on a copy for drawing; the study's model input
is never touched.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QFont, QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QSizePolicy, QTableWidget, QTableWidgetItem, QToolButton, QVBoxLayout,
                               QWidget)

from app.viewers.base import ViewerBase
from app.widgets.flow import FlowLayout
from inference.models import ecg2af as E
from inference.results import Result
from inference.study import Study

LEADS = E.LEADS
SPEEDS = (12.5, 25.0, 50.0)  # mm/s
GAINS = (5.0, 10.0, 20.0)  # mm/mV
LAYOUTS = ("3x4 + II", "12x1", "6x2")
PAPER = "#fffaf5"
MINOR = "#f4c7c3"
MAJOR = "#e0837a"
TRACE = "#111111"
MISSING = "#9a3b30"
CALIPER = "#1565c0"
PEAK = "#1565c0"
WINDOW_S = 10.0
CAL_W_S = 0.2  # calibration pulse: 1 mV for 200 ms

# standard 3x4 arrangement: columns of (leads) over consecutive 2.5 s windows
GRID_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
GRID_6X2 = (("I", "V1"), ("II", "V2"), ("III", "V3"), ("aVR", "V4"), ("aVL", "V5"), ("aVF", "V6"))


# -- pure helpers (tested without a display) -------------------------------------------------------
def caliper_readout(x1_mm: float, x2_mm: float, y1_mm: float, y2_mm: float, speed: float, gain: float) -> dict:
    """Interval (ms), rate (bpm) and amplitude (mV) between two caliper positions on the paper."""
    dt_ms = abs(x2_mm - x1_mm) / speed * 1000.0
    return {"dt_ms": dt_ms, "rate_bpm": 60000.0 / dt_ms if dt_ms > 0 else float("nan"),
            "dv_mv": abs(y2_mm - y1_mm) / gain}


def display_filter(sig: np.ndarray, fs: float, baseline: bool, mains_hz: float | None,
                   lowpass_hz: float | None = None) -> np.ndarray:
    """Display-only filters on a copy: 0.67 Hz zero-phase high-pass (baseline wander, the AHA limit for
    linear-phase filters), a 50/60 Hz notch and an optional low-pass (40 Hz "muscle" filter, or 100/150 Hz).
    NaN rows (missing leads) stay NaN."""
    from scipy import signal

    out = np.array(sig, dtype=np.float64, copy=True)
    ok = np.isfinite(out).all(axis=1)
    if not ok.any():
        return out
    x = out[ok]
    if baseline:
        sos = signal.butter(2, 0.67, btype="highpass", fs=fs, output="sos")
        x = signal.sosfiltfilt(sos, x, axis=1)
    if mains_hz and mains_hz < fs / 2:
        b, a = signal.iirnotch(mains_hz, 30.0, fs=fs)
        x = signal.filtfilt(b, a, x, axis=1)
    if lowpass_hz and lowpass_hz < fs / 2:
        sos = signal.butter(4, lowpass_hz, btype="lowpass", fs=fs, output="sos")
        x = signal.sosfiltfilt(sos, x, axis=1)
    out[ok] = x
    return out


def layout_panels(layout: str, gain: float, speed: float, t0: float, rhythm_lead: str = "II"):
    """Panels as (lead, t_start, t_end, x0_mm, baseline_y_mm, column), plus (width_mm, height_mm, row_baselines).

    The calibration pulse sits left of every row, so the traces start after it at any paper speed.
    """
    pitch = 3.0 * gain + 10.0  # row height in mm: room for ±1.5 mV at any gain
    left = left_margin(speed)
    panels = []
    if layout == "12x1":
        rows = [(ld,) for ld in LEADS]
        col_s = WINDOW_S
    elif layout == "6x2":
        rows = GRID_6X2
        col_s = WINDOW_S / 2
    else:
        rows = GRID_3X4
        col_s = WINDOW_S / 4
    n_rows = len(rows) + (1 if layout == "3x4 + II" else 0)
    height = n_rows * pitch
    baselines = []
    for r, row in enumerate(rows):
        y = height - (r + 0.5) * pitch
        baselines.append(y)
        for c, lead in enumerate(row):
            ts = t0 + c * col_s
            panels.append((lead, ts, ts + col_s, left + c * col_s * speed, y, c))
    if layout == "3x4 + II":
        y = height - (len(rows) + 0.5) * pitch
        baselines.append(y)
        panels.append((rhythm_lead, t0, t0 + WINDOW_S, left, y, 0))
    width = left + WINDOW_S * speed + 2
    return panels, (width, height, baselines)


def left_margin(speed: float) -> float:
    return 5.0 + CAL_W_S * speed


def screen_px_per_mm(widget: QWidget | None = None) -> tuple[float, bool]:
    """Logical pixels per paper millimetre, and whether the screen really reported its size."""
    screen = (widget.screen() if widget is not None else None) or QGuiApplication.primaryScreen()
    if screen is not None:
        size = screen.physicalSize()
        geo = screen.geometry()
        if size.width() > 20 and geo.width() > 0:
            ppm = geo.width() / size.width()
            if 2.0 < ppm < 20.0:
                return ppm, True
    return 96.0 / 25.4, False


# -- the paper view ------------------------------------------------------------------------------
class _PaperView(pg.PlotWidget):
    def __init__(self, parent=None):
        super().__init__(parent, background=PAPER)
        self.setAntialiasing(True)
        pi = self.getPlotItem()
        pi.hideAxis("left")
        pi.hideAxis("bottom")
        pi.setMenuEnabled(False)
        pi.hideButtons()
        vb = pi.getViewBox()
        vb.setAspectLocked(True, ratio=1.0)
        vb.setMouseMode(pg.ViewBox.PanMode)
        vb.setDefaultPadding(0.0)
        self.vb = vb
        self.setFocusPolicy(Qt.StrongFocus)


class EcgViewer(ViewerBase):
    modality = "ecg"

    def __init__(self, ctx, parent: QWidget | None = None):
        super().__init__(ctx, parent)
        self.speed, self.gain, self.layout_name = 25.0, 10.0, LAYOUTS[0]
        self.baseline_filter, self.mains_hz, self.lowpass_hz = False, None, None
        self.t0 = 0.0
        self.measure: dict | None = None  # neurokit2 R peaks, HR (display)
        self._disp: np.ndarray | None = None
        self._disp_key = None
        self._labels: list[pg.TextItem] = []
        self._geometry = (left_margin(25.0) + WINDOW_S * 25 + 2, 160.0, [])
        self._build()
        self._result_widget = EcgResultWidget()

    # -- widgets -----------------------------------------------------------------------------------
    def _build(self) -> None:
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        bar = FlowLayout()
        self.layout_box = self._combo(LAYOUTS, 0, "Layout (L)")
        self.speed_box = self._combo([f"{s:g} mm/s" for s in SPEEDS], 1, "Paper speed")
        self.gain_box = self._combo([f"{g:g} mm/mV" for g in GAINS], 1, "Gain")
        self.baseline_chk = QCheckBox("Baseline filter")
        self.baseline_chk.setToolTip("0.67 Hz zero-phase high-pass for display only; ECG2AF always sees the raw signal")
        self.mains_box = self._combo(["Mains: off", "50 Hz notch", "60 Hz notch"], 0,
                                     "Powerline notch for display only; never applied to the model input")
        self.lowpass_box = self._combo(["Low-pass: off", "40 Hz", "100 Hz", "150 Hz"], 0,
                                       "Low-pass for display only (40 Hz suppresses muscle noise but also "
                                       "blunts QRS peaks); never applied to the model input")
        self.peaks_chk = QCheckBox("R peaks")
        self.peaks_chk.setChecked(True)
        self.caliper_btn = QToolButton(text="Calipers")
        self.caliper_btn.setCheckable(True)
        self.caliper_btn.setToolTip("Drag the blue lines: interval (ms), rate (bpm), amplitude (mV)  (C)")
        self.true_btn = QPushButton("True scale")
        self.true_btn.setToolTip("1 mm of paper = 1 mm on screen (0)")
        self.fit_btn = QPushButton("Fit")
        self.fit_btn.setToolTip("Whole page in view (F)")
        self.prev_btn = QToolButton(text="◀ 10 s")
        self.next_btn = QToolButton(text="10 s ▶")
        for w in (self.layout_box, self.speed_box, self.gain_box, self.baseline_chk, self.mains_box, self.lowpass_box,
                  self.peaks_chk,
                  self.caliper_btn, self.prev_btn, self.next_btn, self.true_btn, self.fit_btn):
            bar.addWidget(w)
        lay.addLayout(bar)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setObjectName("muted")
        self.info.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.info)
        self.view = _PaperView(self)
        lay.addWidget(self.view, 1)
        self.readout = QLabel("")
        self.readout.setWordWrap(True)
        self.readout.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.readout)
        pi = self.view.getPlotItem()
        self.minor = pg.PlotCurveItem(pen=pg.mkPen(MINOR, width=1), connect="pairs")
        self.major = pg.PlotCurveItem(pen=pg.mkPen(MAJOR, width=1), connect="pairs")
        self.traces = pg.PlotCurveItem(pen=pg.mkPen(TRACE, width=1), connect="finite")
        self.cal = pg.PlotCurveItem(pen=pg.mkPen(TRACE, width=1), connect="finite")
        self.seps = pg.PlotCurveItem(pen=pg.mkPen(TRACE, width=1), connect="pairs")
        self.peaks = pg.ScatterPlotItem(symbol="t", size=9, pen=None, brush=pg.mkBrush(PEAK))
        for it in (self.minor, self.major, self.cal, self.seps, self.traces, self.peaks):
            pi.addItem(it)
        self.minor.setZValue(-20)
        self.major.setZValue(-10)
        pen = pg.mkPen(CALIPER, width=1.5)
        hover = pg.mkPen("#e65100", width=2)
        self.cal_x = [pg.InfiniteLine(angle=90, movable=True, pen=pen, hoverPen=hover) for _ in range(2)]
        self.cal_y = [pg.InfiniteLine(angle=0, movable=True, pen=pen, hoverPen=hover) for _ in range(2)]
        for ln in self.cal_x + self.cal_y:
            ln.setZValue(30)
            ln.sigPositionChanged.connect(self._update_readout)
            pi.addItem(ln)
            ln.hide()
        self.layout_box.currentIndexChanged.connect(lambda i: self.set_layout(LAYOUTS[i]))
        self.speed_box.currentIndexChanged.connect(lambda i: self.set_speed(SPEEDS[i]))
        self.gain_box.currentIndexChanged.connect(lambda i: self.set_gain(GAINS[i]))
        self.baseline_chk.toggled.connect(self._filters_changed)
        self.mains_box.currentIndexChanged.connect(self._filters_changed)
        self.lowpass_box.currentIndexChanged.connect(self._filters_changed)
        self.peaks_chk.toggled.connect(lambda _: self.redraw())
        self.caliper_btn.toggled.connect(self.set_calipers)
        self.true_btn.clicked.connect(self.true_scale)
        self.fit_btn.clicked.connect(self.fit)
        self.prev_btn.clicked.connect(lambda: self.page(-1))
        self.next_btn.clicked.connect(lambda: self.page(+1))
        self.view.vb.sigRangeChanged.connect(lambda *_: self._update_scale_label())
        for key, fn in (("L", self._cycle_layout), ("C", lambda: self.caliper_btn.toggle()), ("0", self.true_scale),
                        ("F", self.fit), ("PgDown", lambda: self.page(+1)), ("PgUp", lambda: self.page(-1)),
                        ("+", lambda: self.zoom(1.25)), ("=", lambda: self.zoom(1.25)), ("-", lambda: self.zoom(0.8)),
                        ("Left", lambda: self.pan(-10, 0)), ("Right", lambda: self.pan(10, 0)),
                        ("Up", lambda: self.pan(0, 10)), ("Down", lambda: self.pan(0, -10))):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.WidgetWithChildrenShortcut)
            sc.activated.connect(fn)

    def _combo(self, items, index, tip):
        b = QComboBox()
        b.addItems(list(items))
        b.setCurrentIndex(index)
        b.setToolTip(tip)
        b.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        return b

    # -- contract ------------------------------------------------------------------------------------
    def _has_signal(self) -> bool:
        s = self.study
        return s is not None and "signal_mv" in s.data and "fs" in s.data

    def set_study(self, study: Study, study_id: int) -> None:
        super().set_study(study, study_id)
        self.t0 = 0.0
        self.measure = None
        self._disp = None
        self._disp_key = None
        self._result_widget.show_result(None)
        self.redraw()
        QTimer.singleShot(0, self.initial_view)
        self._start_measure()

    def initial_view(self) -> None:
        """True scale when the whole 10 s page fits the width of the view, else the page width (stated)."""
        ppm, _ = screen_px_per_mm(self)
        width, height, _ = self._geometry
        w_px = max(100, self.view.vb.width() or self.view.width())
        if width * ppm <= w_px:
            self.true_scale()
        else:
            h_px = max(100, self.view.vb.height() or self.view.height())
            scale = w_px / width  # px per mm
            self.view.vb.setRange(xRange=(0, width), yRange=(height - h_px / scale, height), padding=0)
            self._update_scale_label()

    def set_result(self, result: Result | None) -> None:
        super().set_result(result)
        if result is not None and result.model_id == "ecg-measure" and self._has_signal():
            fs = self.study.data["fs"]
            self._set_measure({"r_peaks": [int(round(t * fs)) for t in result.outputs.get("r_peak_times_s", [])],
                               "heart_rate_bpm": result.outputs.get("heart_rate_bpm"),
                               "rr_mean_ms": result.outputs.get("rr_mean_ms"),
                               "rr_sd_ms": result.outputs.get("rr_sd_ms"),
                               "n_beats": result.outputs.get("beats"), "lead": result.outputs.get("lead")})
        self._result_widget.show_result(result)

    def result_widget(self) -> QWidget | None:
        return self._result_widget

    def report_extra(self) -> dict:
        return {"layout": self.layout_name, "baseline_filter": self.baseline_filter, "mains_hz": self.mains_hz,
                "lowpass_hz": self.lowpass_hz, "t0": self.t0}

    # -- measurements (neurokit2, off the UI thread) ---------------------------------------------------
    def _start_measure(self) -> None:
        study = self.study
        if not self._has_signal():
            return
        from inference.pipelines.ecg import measure

        def work(ctx):
            return measure(study.data["signal_mv"], study.data["fs"])

        def done(m, study=study):
            if self.study is study:
                self._set_measure(m)

        def failed(msg):
            self.measure = None
            self._update_info(extra=f"R-peak detection failed: {msg}")

        self.ctx.jobs.start("ECG measurements", work, on_result=done, on_error=failed)

    def _set_measure(self, m: dict) -> None:
        self.measure = m
        self.redraw()

    # -- controls ------------------------------------------------------------------------------------
    def set_layout(self, name: str) -> None:
        self.layout_name = name
        self.layout_box.blockSignals(True)
        self.layout_box.setCurrentIndex(LAYOUTS.index(name))
        self.layout_box.blockSignals(False)
        self.redraw()
        self.true_scale()

    def _cycle_layout(self) -> None:
        self.set_layout(LAYOUTS[(LAYOUTS.index(self.layout_name) + 1) % len(LAYOUTS)])

    def set_speed(self, speed: float) -> None:
        self.speed = float(speed)
        self.speed_box.blockSignals(True)
        self.speed_box.setCurrentIndex(SPEEDS.index(self.speed))
        self.speed_box.blockSignals(False)
        self.redraw()
        self.true_scale()

    def set_gain(self, gain: float) -> None:
        self.gain = float(gain)
        self.gain_box.blockSignals(True)
        self.gain_box.setCurrentIndex(GAINS.index(self.gain))
        self.gain_box.blockSignals(False)
        self.redraw()
        self.true_scale()

    def _filters_changed(self, *_):
        self.baseline_filter = self.baseline_chk.isChecked()
        self.mains_hz = (None, 50.0, 60.0)[self.mains_box.currentIndex()]
        self.lowpass_hz = (None, 40.0, 100.0, 150.0)[self.lowpass_box.currentIndex()]
        self.redraw()

    def filter_labels(self) -> list[str]:
        return [f for f, on in (("HP 0.67 Hz", self.baseline_filter),
                                (f"notch {self.mains_hz or 0:g} Hz", bool(self.mains_hz)),
                                (f"LP {self.lowpass_hz or 0:g} Hz", bool(self.lowpass_hz))) if on]

    def page(self, step: int) -> None:
        if not self._has_signal():
            return
        dur = self.study.data["signal_mv"].shape[1] / self.study.data["fs"]
        last = max(0.0, dur - WINDOW_S)
        self.t0 = float(min(max(0.0, self.t0 + step * WINDOW_S), last))
        self.redraw()

    def set_calipers(self, on: bool) -> None:
        for ln in self.cal_x + self.cal_y:
            ln.setVisible(on)
        if on:
            (x0, x1), (y0, y1) = self.view.vb.viewRange()
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            rr = (self.measure or {}).get("rr_mean_ms") or 800.0
            half = rr / 1000.0 * self.speed / 2
            self.cal_x[0].setValue(cx - half)
            self.cal_x[1].setValue(cx + half)
            self.cal_y[0].setValue(cy - self.gain / 2)
            self.cal_y[1].setValue(cy + self.gain / 2)
        self._update_readout()

    def caliper_values(self) -> dict:
        return caliper_readout(self.cal_x[0].value(), self.cal_x[1].value(), self.cal_y[0].value(),
                               self.cal_y[1].value(), self.speed, self.gain)

    def _update_readout(self, *_):
        if not self.caliper_btn.isChecked():
            self.readout.setText("Mouse: drag to pan, wheel to zoom · keys: arrows, +/−, 0 true scale, F fit, "
                                 "L layout, C calipers, PgUp/PgDn 10 s")
            return
        v = self.caliper_values()
        self.readout.setText(f"<b>Calipers</b>  Δt {v['dt_ms']:.0f} ms  ·  {v['rate_bpm']:.0f} bpm  ·  "
                             f"ΔV {v['dv_mv']:.2f} mV")

    # -- zoom ------------------------------------------------------------------------------------------
    def true_scale(self) -> None:
        ppm, known = screen_px_per_mm(self)
        vb = self.view.vb
        w_px = max(100, vb.width() or self.view.width())
        h_px = max(100, vb.height() or self.view.height())
        width, height, _ = self._geometry
        w_mm, h_mm = w_px / ppm, h_px / ppm
        vb.setRange(xRange=(0, w_mm), yRange=(height - h_mm, height), padding=0)
        self._true_known = known
        self._update_scale_label()

    def fit(self) -> None:
        width, height, _ = self._geometry
        self.view.vb.setRange(xRange=(0, width), yRange=(0, height), padding=0.01)

    def zoom(self, factor: float) -> None:
        self.view.vb.scaleBy((1 / factor, 1 / factor))

    def pan(self, dx_mm: float, dy_mm: float) -> None:
        self.view.vb.translateBy(x=dx_mm, y=dy_mm)

    def zoom_vs_true(self) -> float:
        ppm, _ = screen_px_per_mm(self)
        (x0, x1), _ = self.view.vb.viewRange()
        w_px = max(1, self.view.vb.width())
        return (w_px / (x1 - x0)) / ppm

    def _update_scale_label(self) -> None:
        if not self._has_signal():
            return
        z = self.zoom_vs_true()
        _, known = screen_px_per_mm(self)
        scale = "true scale" if abs(z - 1) < 0.02 else f"{z:.2f}× true scale"
        if not known:
            scale += " (screen size unknown: 96 dpi assumed)"
        self._scale_text = scale
        self._update_info()

    # -- drawing ---------------------------------------------------------------------------------------
    def _display_signal(self) -> np.ndarray:
        key = (id(self.study), self.baseline_filter, self.mains_hz, self.lowpass_hz)
        if self._disp is None or self._disp_key != key:
            sig = self.study.data["signal_mv"]
            if self.baseline_filter or self.mains_hz or self.lowpass_hz:
                sig = display_filter(sig, self.study.data["fs"], self.baseline_filter, self.mains_hz,
                                     self.lowpass_hz)
            self._disp, self._disp_key = np.asarray(sig, dtype=np.float64), key
        return self._disp

    def _grid(self, width: float, height: float) -> None:
        xs = np.arange(0, np.floor(width) + 1)
        ys = np.arange(0, np.floor(height) + 1)
        maj_x, min_x = xs[xs % 5 == 0], xs[xs % 5 != 0]
        maj_y, min_y = ys[ys % 5 == 0], ys[ys % 5 != 0]

        def seg(vx, vy):
            px = np.concatenate([np.repeat(vx, 2), np.tile([0, width], len(vy))])
            py = np.concatenate([np.tile([0, height], len(vx)), np.repeat(vy, 2)])
            return px, py

        self.minor.setData(*seg(min_x, min_y))
        self.major.setData(*seg(maj_x, maj_y))

    def redraw(self) -> None:
        for t in self._labels:
            self.view.getPlotItem().removeItem(t)
        self._labels = []
        if not self._has_signal():
            for it in (self.traces, self.cal, self.seps, self.peaks, self.minor, self.major):
                it.setData([], [])
            self.info.setText(f"{self.study.name}: no ECG signal in this study" if self.study else "")
            return
        fs = float(self.study.data["fs"])
        sig = self._display_signal()
        n = sig.shape[1]
        self.prev_btn.setEnabled(self.t0 > 0)
        self.next_btn.setEnabled(self.t0 + WINDOW_S < n / fs - 1e-6)
        rhythm = (self.measure or {}).get("lead") or "II"
        panels, geo = layout_panels(self.layout_name, self.gain, self.speed, self.t0, rhythm)
        self._geometry = geo
        width, height, baselines = geo
        self._grid(width, height)
        xs, ys = [], []
        sep_x, sep_y = [], []
        font = QFont()
        font.setPointSize(9)
        font.setBold(True)
        for lead, ts, te, x0, yb, col in panels:
            i = LEADS.index(lead)
            a, b = int(round(ts * fs)), min(n, int(round(te * fs)))
            label = pg.TextItem(lead, color=TRACE, anchor=(0, 0))
            label.setFont(font)
            label.setPos(x0 + 0.5,
                         yb + 0.5 * (3.0 * self.gain + 10.0) - 1.0)
            self.view.getPlotItem().addItem(label)
            self._labels.append(label)
            if col > 0:  # lead-change marker between columns
                sep_x += [x0, x0]
                sep_y += [yb - 2.5, yb + 2.5]
            seg = sig[i, a:b] if a < n else np.array([])
            if seg.size == 0 or not np.isfinite(seg).all():
                why = "missing" if not np.isfinite(sig[i]).any() else "no data"
                t = pg.TextItem(f"{lead} {why}", color=MISSING, anchor=(0, 0.5))
                t.setPos(x0 + 8, yb)
                self.view.getPlotItem().addItem(t)
                self._labels.append(t)
                continue
            base = np.median(seg)  # DC offset only (display); filters are opt-in
            x = x0 + np.arange(seg.size) / fs * self.speed
            xs += [x, [np.nan]]
            ys += [yb + (seg - base) * self.gain, [np.nan]]
        if xs:
            self.traces.setData(np.concatenate(xs), np.concatenate(ys))
        else:
            self.traces.setData([], [])
        # calibration pulse at the start of every row: 1 mV (gain mm) for 200 ms
        cw = CAL_W_S * self.speed
        cx, cy = [], []
        for yb in baselines:
            x = 2.0
            cx += [x - 1.5, x, x, x + cw, x + cw, x + cw + 1.5, np.nan]
            cy += [yb, yb, yb + self.gain, yb + self.gain, yb, yb, np.nan]
        self.cal.setData(cx, cy)
        # what a printed ECG states on its paper: speed, gain, filters
        filt = self.filter_labels()
        foot = pg.TextItem(f"{self.speed:g} mm/s   {self.gain:g} mm/mV   "
                           f"{'display filters: ' + ', '.join(filt) if filt else 'no filters'}   "
                           f"{fs:g} Hz", color="#555555", anchor=(1, 1))
        foot.setPos(width - 2, 0.5)
        self.view.getPlotItem().addItem(foot)
        self._labels.append(foot)
        self.seps.setData(sep_x, sep_y)
        # R peaks above the rhythm strip (3x4) or above the rhythm lead's row
        m = self.measure
        if m and self.peaks_chk.isChecked() and m.get("r_peaks"):
            target = [p for p in panels if p[0] == rhythm]
            lead, ts, te, x0, yb, _ = target[-1]
            pk = np.asarray(m["r_peaks"], dtype=float) / fs
            pk = pk[(pk >= ts) & (pk < te)]
            top = yb + 0.5 * (3.0 * self.gain + 10.0) - 2.5
            self.peaks.setData(x0 + (pk - ts) * self.speed, np.full(pk.size, top))
        else:
            self.peaks.setData([], [])
        self._update_info()
        self._update_readout()

    def _update_info(self, extra: str = "") -> None:
        s = self.study
        if not self._has_signal():
            return
        md = s.metadata
        dur = md.get("duration_s", 0)
        parts = [f"<b>{s.name}</b>", f"{md.get('format', '')}", f"{md.get('fs', 0):g} Hz",
                 f"{dur:.1f} s" + (f" (showing {self.t0:.0f}–{min(dur, self.t0 + WINDOW_S):.0f} s)" if dur > WINDOW_S
                                   else ""),
                 f"{self.speed:g} mm/s, {self.gain:g} mm/mV"]
        if getattr(self, "_scale_text", ""):
            parts.append(self._scale_text)
        filt = self.filter_labels()
        if filt:
            parts.append("display filters: " + ", ".join(filt))
        m = self.measure
        if m and m.get("heart_rate_bpm"):
            parts.append(f"<b>HR {m['heart_rate_bpm']:.0f} bpm</b> · RR {m['rr_mean_ms']:.0f} ± {m.get('rr_sd_ms') or 0:.0f} ms"
                         f" · {m.get('n_beats')} beats (neurokit2, lead {m.get('lead')})")
        elif m is None:
            parts.append("measuring…")
        text = "  ·  ".join(parts)
        if md.get("missing_leads"):
            text += f"  ·  <span style='color:#e5534b'>missing: {', '.join(md['missing_leads'])}</span>"
        notes = [n for n in s.notes if "Missing lead" not in n]
        if notes:
            text += "<br>" + " ".join(notes)
        if extra:
            text += f"<br>{extra}"
        self.info.setText(text)
        self.info.setWordWrap(True)


# -- ECG2AF result panel --------------------------------------------------------------------------------
class EcgResultWidget(QWidget):
    """The four ECG2AF outputs as a table, and the AF risk with its cumulative-incidence curve over 5 years."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel("ECG2AF")
        self.title.setStyleSheet("font-weight: bold;")
        lay.addWidget(self.title)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["ECG2AF output", "Value"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setFixedHeight(4 * 22 + 28)
        lay.addWidget(self.table)
        self.plot = pg.PlotWidget(background="#181c20")
        self.plot.setMinimumHeight(170)
        self.plot.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        pi = self.plot.getPlotItem()
        pi.setLabel("bottom", "years after this ECG")
        pi.setLabel("left", "cumulative AF risk (%)")
        pi.showGrid(x=True, y=True, alpha=0.25)
        pi.setMenuEnabled(False)
        pi.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        self.curve = pg.PlotCurveItem(pen=pg.mkPen("#e5534b", width=2), stepMode=None)
        self.marker = pg.ScatterPlotItem(size=9, brush=pg.mkBrush("#e5534b"), pen=None)
        self.marker_text = pg.TextItem("", color="#d5d9de", anchor=(1, 1))
        for it in (self.curve, self.marker, self.marker_text):
            pi.addItem(it)
        pi.setXRange(0, 5.05, padding=0)
        pi.setYRange(0, 10, padding=0)
        lay.addWidget(self.plot, 1)
        self.hint = QLabel("")
        self.hint.setObjectName("muted")
        self.hint.setWordWrap(True)
        lay.addWidget(self.hint)
        self.show_result(None)

    @staticmethod
    def rows(outputs: dict) -> list[tuple[str, str]]:
        o = outputs
        return [
            ("AF risk within 5 years", f"{100 * o['af_risk_5y']:.1f} %"),
            ("Sex (from ECG)", f"male {100 * o['sex_male_probability']:.0f} % · female "
                               f"{100 * o['sex_female_probability']:.0f} %"),
            ("Age (from ECG)", f"{o['age_years']:.1f} years"),
            ("AF in this ECG", f"{100 * o['af_in_read_probability']:.1f} %"),
        ]

    def show_result(self, result: Result | None) -> None:
        if result is None or result.model_id != "ecg2af":
            self.table.setRowCount(0)
            self.curve.setData([], [])
            self.marker.setData([], [])
            self.marker_text.setText("")
            self.hint.setText("Run ECG2AF (Analyse) for AF risk, sex, age and AF-in-read. "
                              "Heart rate and R peaks need no model and are shown on the tracing.")
            return
        o = result.outputs
        rows = self.rows(o)
        self.table.setRowCount(len(rows))
        for i, (k, v) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(k))
            it = QTableWidgetItem(v)
            if not result.clinical:
                it.setForeground(QColor("#e5534b"))
            self.table.setItem(i, 1, it)
        years = np.concatenate([[0.0], np.asarray(o["survival_days"], dtype=float) / 365.0])
        risk = np.concatenate([[0.0], 100 * (1 - np.asarray(o["af_free_survival"], dtype=float))])
        self.curve.setData(years, risk)
        self.marker.setData([years[-1]], [risk[-1]])
        self.marker_text.setText(f"{risk[-1]:.1f} % at 5 y")
        self.marker_text.setAnchor((1, 0) if risk[-1] > 50 else (1, 1))
        self.marker_text.setPos(years[-1], risk[-1])
        self.plot.getPlotItem().setYRange(0, max(10.0, min(100.0, risk[-1] * 1.2)), padding=0)
        self.plot.getPlotItem().setXRange(0, 5.05, padding=0)
        stamp = "" if result.clinical else "NOT A CLINICAL RESULT — non-official weights. "
        self.hint.setText(stamp + "Cumulative incident-AF risk = 1 − AF-free survival from the survival-curve head "
                                  "(25 intervals over 5 years).")


def bench_render(path: str, db: str) -> tuple[float, float, float]:
    """Offscreen render timings for ``lightbox bench``: first study, best and median layout switch (s)."""
    import time

    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from app.jobs import Jobs
    from app.store import Store
    from inference.readers.ecg import read
    from inference.registry import Registry

    app = QApplication.instance() or QApplication([])
    s = read(path)
    v = EcgViewer(AppContext(Store(db), Registry(), Jobs()))
    v.resize(1400, 900)
    v.show()
    app.processEvents()
    t0 = time.perf_counter()
    v.set_study(s, 1)
    app.processEvents()
    first = time.perf_counter() - t0
    ts = []
    for layout in ("12x1", "3x4 + II") * 5:
        t0 = time.perf_counter()
        v.set_layout(layout)
        v.grab()
        ts.append(time.perf_counter() - t0)
    v.ctx.jobs.wait(10000)
    return first, min(ts), float(sorted(ts)[len(ts) // 2])


def bench_pan(path: str, db: str, frames: int = 120) -> float:
    """Pan and zoom frames per second, offscreen: each frame moves the view and paints it (``grab``)."""
    import time

    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from app.jobs import Jobs
    from app.store import Store
    from inference.readers.ecg import read
    from inference.registry import Registry

    app = QApplication.instance() or QApplication([])
    v = EcgViewer(AppContext(Store(db), Registry(), Jobs()))
    v.resize(1400, 900)
    v.show()
    v.set_study(read(path), 1)
    app.processEvents()
    vb = v.view.getPlotItem().getViewBox()
    (x0, x1), (y0, y1) = vb.viewRange()
    w = (x1 - x0) * 0.4
    t0 = time.perf_counter()
    for i in range(frames):
        dx = (x1 - x0 - w) * (0.5 + 0.5 * np.sin(i / 10))
        zoom = 1.0 + 0.2 * np.sin(i / 17)
        vb.setRange(xRange=(x0 + dx, x0 + dx + w * zoom), yRange=(y0, y1), padding=0)
        v.view.grab()
    fps = frames / (time.perf_counter() - t0)
    v.ctx.jobs.wait(10000)
    return fps

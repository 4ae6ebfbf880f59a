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
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QCheckBox, QComboBox, QLabel, QPushButton, QToolButton, QVBoxLayout,
                               QWidget)

from app.widgets.keys import add_keys
from app.widgets.viewer_base import ViewerBase
from app.widgets.flow import FlowLayout
from inference.results import Result
from inference.study import Study
from app.ecg.paper import (CAL_W_S, CALIPER, FEW_LEADS, GAINS, LAYOUTS, LEADS, MAJOR, MINOR, MISSING, PEAK,
                           SPEEDS, STRIPS, TRACE, WINDOW_S, _PaperView, caliper_readout, display_filter,
                           layout_panels, left_margin, page_seconds, screen_px_per_mm, strip_panels)
from app.ecg.results import EcgResultWidget
from app.ecg.rhythm_ui import RHYTHM_ID, RhythmMixin, leads_text
from inference.ecg.ecg2af_files import is_ecg2af
from app.ecg.rhythm_band import BAND_MM, PaperBand, RhythmOverview

LONG_S = 600.0  # beyond this the display filters run on the page on show, not the whole recording


class EcgViewer(RhythmMixin, ViewerBase):
    modality = "ecg"

    def __init__(self, ctx, parent: QWidget | None = None):
        super().__init__(ctx, parent)
        self.speed, self.gain, self.layout_name = 25.0, 10.0, LAYOUTS[0]
        self._pref_layout = LAYOUTS[0]  # the layout a recording with enough leads opens in (the user's last pick)
        self.baseline_filter, self.mains_hz, self.lowpass_hz = False, None, None
        self.t0 = 0.0
        self.measure: dict | None = None  # neurokit2 R peaks, HR (display)
        self.rhythm: Result | None = None  # the rhythm model's result (label, per-window band)
        self._rhythm_asked: set[int] = set()
        self._disp: np.ndarray | None = None
        self._disp_key = None
        self._present = None
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
        self.rhythm_box = self._combo(["Rhythm leads: auto"], 0, "Leads the rhythm model (N / AF / other / noisy) "
                                      "runs on (see Rhythm leads: auto)")
        self.prev_btn = QToolButton(text="◀ 10 s")
        self.next_btn = QToolButton(text="10 s ▶")
        for w in (self.layout_box, self.speed_box, self.gain_box, self.baseline_chk, self.mains_box, self.lowpass_box,
                  self.peaks_chk, self.rhythm_box,
                  self.caliper_btn, self.prev_btn, self.next_btn, self.true_btn, self.fit_btn):
            bar.addWidget(w)
        lay.addLayout(bar)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setObjectName("muted")
        self.info.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.info)
        self.overview = RhythmOverview(self)
        self.overview.jump.connect(self.go_to)
        self.overview.hide()
        lay.addWidget(self.overview)
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
        self.band = PaperBand(pi)
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
        self.layout_box.currentIndexChanged.connect(lambda i: self.set_layout(LAYOUTS[i], chosen=True))
        self.speed_box.currentIndexChanged.connect(lambda i: self.set_speed(SPEEDS[i]))
        self.gain_box.currentIndexChanged.connect(lambda i: self.set_gain(GAINS[i]))
        self.baseline_chk.toggled.connect(self._filters_changed)
        self.mains_box.currentIndexChanged.connect(self._filters_changed)
        self.lowpass_box.currentIndexChanged.connect(self._filters_changed)
        self.peaks_chk.toggled.connect(lambda _: self.redraw())
        self.rhythm_box.activated.connect(self._rhythm_lead_chosen)
        self.caliper_btn.toggled.connect(self.set_calipers)
        self.true_btn.clicked.connect(self.true_scale)
        self.fit_btn.clicked.connect(self.fit)
        self.prev_btn.clicked.connect(lambda: self.page(-1))
        self.next_btn.clicked.connect(lambda: self.page(+1))
        self.view.vb.sigRangeChanged.connect(lambda *_: self._update_scale_label())
        add_keys(self, (("L", "Next layout", self._cycle_layout), ("C", "Calipers on / off", lambda: self.caliper_btn.toggle()),
                        ("0", "True scale (1 mm of paper = 1 mm on screen)", self.true_scale),
                        ("F", "Fit the page", self.fit), ("PgDown", "Next 10 s page", lambda: self.page(+1)),
                        ("PgUp", "Previous 10 s page", lambda: self.page(-1)), ("+", "Zoom in", lambda: self.zoom(1.25)),
                        ("=", "Zoom in", lambda: self.zoom(1.25)), ("-", "Zoom out", lambda: self.zoom(0.8)),
                        ("Left", "Pan left", lambda: self.pan(-10, 0)), ("Right", "Pan right", lambda: self.pan(10, 0)),
                        ("Up", "Pan up", lambda: self.pan(0, 10)), ("Down", "Pan down", lambda: self.pan(0, -10)),
                        ("N", "Next AF episode", lambda: self.jump_af(+1)),
                        ("Shift+N", "Previous AF episode", lambda: self.jump_af(-1))))

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
        self.rhythm = None
        self._disp = None
        self._disp_key = None
        self._result_widget.show_result(None)
        self._result_widget.show_rhythm(None)
        self._fill_rhythm_leads()
        self._default_layout()
        self._overview_trace()
        self.redraw()
        QTimer.singleShot(0, self.initial_view)
        self._start_measure()
        self._start_rhythm()

    def present_leads(self) -> list[str]:
        """Leads the recording has (not missing), in the standard order."""
        if not self._has_signal():
            return []
        sig = self.study.data["signal_mv"]
        if self._present is None or self._present[0] is not sig:  # once per recording (hours long: not per redraw)
            self._present = (sig, [ld for i, ld in enumerate(LEADS) if np.isfinite(sig[i]).any()])
        return list(self._present[1])

    @property
    def page_s(self) -> float:
        """Seconds of recording on one page (30 s for a one-lead rhythm-strip page)."""
        return page_seconds(self.layout_name, len(self.present_leads()))

    def _default_layout(self) -> None:
        """Rhythm strips for a recording with few leads (no panels of missing leads); else the last
        layout picked for a full ECG (3x4 + II to begin with)."""
        name = STRIPS if self._has_signal() and len(self.present_leads()) < FEW_LEADS else self._pref_layout
        self.layout_name = name
        self.layout_box.blockSignals(True)
        self.layout_box.setCurrentIndex(LAYOUTS.index(name))
        self.layout_box.blockSignals(False)

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
        if result is not None and result.model_id == RHYTHM_ID:
            self._set_rhythm(result)
        if result is not None and result.model_id == "ecg-measure" and self._has_signal():
            fs = self.study.data["fs"]
            self._set_measure({"r_peaks": [int(round(t * fs)) for t in result.outputs.get("r_peak_times_s", [])],
                               "heart_rate_bpm": result.outputs.get("heart_rate_bpm"),
                               "rr_mean_ms": result.outputs.get("rr_mean_ms"),
                               "rr_sd_ms": result.outputs.get("rr_sd_ms"),
                               "n_beats": result.outputs.get("beats"), "lead": result.outputs.get("lead")})
        if result is None or is_ecg2af(result.model_id):  # the rhythm and measurement results have their own places
            self._result_widget.show_result(result)

    def preferred_model(self) -> str | None:
        """The ECG2AF file to preselect: the first installed one whose input this recording has (the 2024
        main model, the 2021 one, or a strip model for a 1-2-lead recording); None: keep the first listed."""
        from inference.ecg.ecg2af_files import FILES

        have = set(self.present_leads()) if self._has_signal() else set()
        for mid, f in FILES.items():
            fits = set(f.leads) <= have if f.is_strip else len(have) >= 12
            if fits and mid in self.ctx.registry.entries and self.ctx.registry.state(mid, cached_only=True).may_start:
                return mid
        return None

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
        from inference.ecg.pipeline import measure

        def work(ctx):
            return measure(study.data["signal_mv"], study.data["fs"])

        def done(m, study=study):
            if self.study is study:
                self._set_measure(m)

        def failed(msg):
            self.measure = None
            self._update_info(extra=f"R-peak detection failed: {msg}")

        self.ctx.jobs.start("ECG measurements", work, on_result=done, on_error=failed)

    # -- controls ------------------------------------------------------------------------------------
    def set_layout(self, name: str, chosen: bool = False) -> None:
        self.layout_name = name
        if chosen and len(self.present_leads()) >= FEW_LEADS:
            self._pref_layout = name
        self.layout_box.blockSignals(True)
        self.layout_box.setCurrentIndex(LAYOUTS.index(name))
        self.layout_box.blockSignals(False)
        self.redraw()
        self.true_scale()

    def _cycle_layout(self) -> None:
        self.set_layout(LAYOUTS[(LAYOUTS.index(self.layout_name) + 1) % len(LAYOUTS)], chosen=True)

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
        ps = self.page_s
        last = max(0.0, dur - ps)
        self.t0 = float(min(max(0.0, self.t0 + step * ps), last))
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
                                 "L layout, C calipers, PgUp/PgDn page, N / Shift+N next / previous AF episode")
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
    def _display_signal(self) -> tuple[np.ndarray, int]:
        """(signal for drawing, index of its first sample). A long recording is filtered around the page
        on show only (with 5 s either side for the filters to settle): memory stays that of a page."""
        sig = self.study.data["signal_mv"]
        fs = float(self.study.data["fs"])
        filtered = self.baseline_filter or self.mains_hz or self.lowpass_hz
        long = sig.shape[1] / fs > LONG_S
        off = int(max(0.0, self.t0 - 5.0) * fs) if long else 0
        key = (id(self.study), self.baseline_filter, self.mains_hz, self.lowpass_hz, off if long else None)
        if self._disp is None or self._disp_key != key:
            part = sig[:, off:off + int((self.page_s + 10.0) * fs)] if long else sig
            if filtered:
                part = display_filter(part, fs, self.baseline_filter, self.mains_hz, self.lowpass_hz)
            self._disp, self._disp_key = np.asarray(part, dtype=np.float64), key
            self._disp_off = off
        return self._disp, self._disp_off

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
        sig, off = self._display_signal()
        n = self.study.data["signal_mv"].shape[1]
        self.prev_btn.setEnabled(self.t0 > 0)
        ps = self.page_s
        self.next_btn.setEnabled(self.t0 + ps < n / fs - 1e-6)
        self.prev_btn.setText(f"◀ {ps:g} s")
        self.next_btn.setText(f"{ps:g} s ▶")
        self.overview.set_page(self.t0, min(self.t0 + ps, n / fs))
        rhythm = (self.measure or {}).get("lead") or "II"
        if self.layout_name == STRIPS:
            panels, geo, blocks = strip_panels(self.present_leads(), self.gain, self.speed, self.t0)
        else:
            panels, geo = layout_panels(self.layout_name, self.gain, self.speed, self.t0, rhythm)
            blocks = [(self.t0, self.t0 + WINDOW_S, geo[1])]
        width, height, baselines = geo
        wins = (self.rhythm.outputs.get("_windows") or []) if self.rhythm else []
        if wins:  # the rhythm band sits above the top row (and each later strip block): the page grows by its height
            geo = (width, height + BAND_MM, baselines)
            o = self.rhythm.outputs
            rows = [(a, b, y + (0.5 if i == 0 else 0.0)) for i, (a, b, y) in enumerate(blocks)]
            self.band.draw_rows(wins, rows, left_margin(self.speed), self.speed,
                                f"Rhythm, {leads_text(o)} (Lightbox model, NOT A CLINICAL RESULT): "
                                f"{o.get('rhythm_label')} {100 * (o.get('probability') or 0):.0f} %")
        else:
            self.band.clear()
        self._geometry = geo
        self._grid(width, height)
        xs, ys = [], []
        sep_x, sep_y = [], []
        font = QFont()
        font.setPointSize(9)
        font.setBold(True)
        for lead, ts, te, x0, yb, col in panels:
            i = LEADS.index(lead)
            a, b = int(round(ts * fs)), min(n, int(round(te * fs)))
            text = f"{lead}   {int(ts // 60)}:{ts % 60:04.1f}" if self.layout_name == STRIPS else lead
            label = pg.TextItem(text, color=TRACE, anchor=(0, 0))
            label.setFont(font)
            label.setPos(x0 + 0.5,
                         yb + 0.5 * (3.0 * self.gain + 10.0) - 1.0)
            self.view.getPlotItem().addItem(label)
            self._labels.append(label)
            if col > 0:  # lead-change marker between columns
                sep_x += [x0, x0]
                sep_y += [yb - 2.5, yb + 2.5]
            seg = sig[i, a - off:b - off] if a < n else np.array([])
            if seg.size == 0 or not np.isfinite(seg).all():
                why = "missing" if not np.isfinite(self.study.data["signal_mv"][i, :1]).any() else "no data"
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
            if self.layout_name != STRIPS:
                target = target[-1:]
            px, py = [], []
            all_pk = np.asarray(m["r_peaks"], dtype=float) / fs
            for lead, ts, te, x0, yb, _ in target:  # every 10-s row of the lead on a rhythm-strip page
                pk = all_pk[(all_pk >= ts) & (all_pk < te)]
                px.append(x0 + (pk - ts) * self.speed)
                py.append(np.full(pk.size, yb + 0.5 * (3.0 * self.gain + 10.0) - 2.5))
            if px:
                self.peaks.setData(np.concatenate(px), np.concatenate(py))
            else:
                self.peaks.setData([], [])
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
                 f"{dur:.1f} s" + (f" (showing {self.t0:.0f}–{min(dur, self.t0 + self.page_s):.0f} s)" if dur > self.page_s
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
        r = self.rhythm
        if r is not None:
            o = r.outputs
            burden = (f", AF in {100 * o['af_burden']:.0f} % of the recording" if o.get("windows", 1) > 1
                      and o.get("af_burden") else "")
            parts.append(f"<b>Rhythm: {o.get('rhythm_label')} {100 * (o.get('probability') or 0):.0f} %</b>{burden} "
                         f"({leads_text(o)}, Lightbox model, <span style='color:#e5534b'>NOT A CLINICAL "
                         f"RESULT</span>)")
        text = "  ·  ".join(parts)
        present = self.present_leads()
        if md.get("missing_leads") and len(present) < FEW_LEADS:  # a 1- or 2-lead recorder: nothing is amiss
            text += f"  ·  {len(present)}-lead recording: {', '.join(present)}"
        elif md.get("missing_leads"):
            text += f"  ·  <span style='color:#e5534b'>missing: {', '.join(md['missing_leads'])}</span>"
        notes = [n for n in s.notes if "Missing lead" not in n]
        if notes:
            text += "<br>" + " ".join(notes)
        if extra:
            text += f"<br>{extra}"
        self.info.setText(text)
        self.info.setWordWrap(True)


# -- ECG2AF result panel --------------------------------------------------------------------------------

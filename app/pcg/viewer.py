"""Heart-sound viewer: waveform, log-mel spectrogram and classifier probability strip on one time axis,
with synchronised playback, S1/S2 marks, a class-probability bar chart, batch and retraining tools.

Playback goes through sounddevice (PortAudio). Where no output device exists (a headless machine, a
reading-room PC without speakers) the controls say so and stay disabled; nothing crashes.
"""
from __future__ import annotations

import logging
import threading

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider, QVBoxLayout,
                               QWidget)

from app.context import AppContext
from app.widgets.viewer_base import ViewerBase
from inference.pcg.features import display_spectrogram, mel_centres_hz
from inference.results import Result
from inference.study import Study

log = logging.getLogger(__name__)

S1_COLOUR = (229, 83, 75)
S2_COLOUR = (61, 139, 253)
CURSOR = "#f0c000"


class AudioPlayer:
    """sounddevice output stream over a (frames, channels) buffer with gain, region and loop.

    ``position`` (seconds) is updated from the audio callback; the UI polls it for the cursor.
    """

    def __init__(self):
        self.available = False
        self.message = ""
        self._sd = None
        self.stream = None
        self.audio: np.ndarray | None = None
        self.sr = 0
        self.pos = 0
        self.start_frame, self.end_frame = 0, 0
        self.loop = False
        self.gain = 1.0
        self.playing = False
        self._lock = threading.Lock()
        try:
            import sounddevice as sd

            self._sd = sd
            dev = sd.query_devices(kind="output")
            self.available = bool(dev) and int(dev.get("max_output_channels", 0)) > 0
            self.device_name = dev.get("name", "") if dev else ""
            if not self.available:
                self.message = "No audio output device: playback is unavailable on this machine."
        except Exception as e:  # no PortAudio library, or no device (headless)
            self.available = False
            self.device_name = ""
            self.message = ("No audio output device: playback is unavailable on this machine "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else 'no device'}).")

    def load(self, audio: np.ndarray, sr: int) -> None:
        self.stop()
        self.audio = np.ascontiguousarray(audio, dtype=np.float32)
        self.sr = int(sr)
        self.pos, self.start_frame, self.end_frame = 0, 0, len(self.audio)

    @property
    def position(self) -> float:
        return self.pos / self.sr if self.sr else 0.0

    def _callback(self, outdata, frames, _time, status):  # audio thread
        with self._lock:
            a = self.audio
            out = np.zeros((frames, outdata.shape[1]), dtype=np.float32)
            i = 0
            while i < frames and a is not None:
                if self.pos >= self.end_frame:
                    if self.loop:
                        self.pos = self.start_frame
                    else:
                        break
                n = min(frames - i, self.end_frame - self.pos)
                chunk = a[self.pos:self.pos + n]
                if chunk.shape[1] == out.shape[1]:
                    out[i:i + n] = chunk
                else:
                    out[i:i + n] = chunk.mean(axis=1, keepdims=True)
                self.pos += n
                i += n
            outdata[:] = np.clip(out * self.gain, -1.0, 1.0)
            if i < frames and not self.loop:
                self.playing = False
                raise self._sd.CallbackStop()

    def play(self, start_s: float | None = None, end_s: float | None = None) -> str | None:
        """Start playing [start_s, end_s) (the whole recording when None); an error message or None."""
        if not self.available or self.audio is None:
            return self.message or "nothing to play"
        self.stop()
        n = len(self.audio)
        self.start_frame = 0 if start_s is None else int(np.clip(start_s * self.sr, 0, n - 1))
        self.end_frame = n if end_s is None else int(np.clip(end_s * self.sr, self.start_frame + 1, n))
        if start_s is None and 0 < self.pos < n - 1:
            self.start_frame = 0  # resume from the cursor
        else:
            self.pos = self.start_frame
        try:
            ch = min(self.audio.shape[1], 2)
            self.stream = self._sd.OutputStream(samplerate=self.sr, channels=ch, dtype="float32",
                                                callback=self._callback)
            self.stream.start()
            self.playing = True
        except Exception as e:
            self.playing = False
            return f"Audio playback failed: {e}"
        return None

    def pause(self) -> None:
        self.stop(keep_position=True)

    def stop(self, keep_position: bool = False) -> None:
        s, self.stream = self.stream, None
        self.playing = False
        if s is not None:
            try:
                s.stop()
                s.close()
            except Exception:
                pass
        if not keep_position:
            self.pos = 0

    def seek(self, t: float) -> None:
        if self.sr and self.audio is not None:
            self.pos = int(np.clip(t * self.sr, 0, len(self.audio) - 1))


class ProbabilityBars(QWidget):
    """Bar chart of the whole-recording class probabilities + heart rate (right panel)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.head = QLabel("Heart sounds: not analysed yet")
        self.head.setWordWrap(True)
        lay.addWidget(self.head)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(150)
        self.plot.setMouseEnabled(False, False)
        self.plot.hideButtons()
        self.plot.setYRange(0, 1.12, padding=0)
        self.plot.getAxis("left").setTicks([[(v, f"{v:g}") for v in (0, 0.25, 0.5, 0.75, 1.0)]])
        self.plot.setLabel("left", "probability")
        lay.addWidget(self.plot)
        self.hr = QLabel("")
        self.hr.setWordWrap(True)
        lay.addWidget(self.hr)

    def update_outputs(self, outputs: dict | None, seg: dict | None = None) -> None:
        self.plot.clear()
        if not outputs or "probabilities" not in outputs:
            self.head.setText("Heart sounds: not analysed yet — press Analyse")
        else:
            probs = outputs["probabilities"]
            names = list(probs)
            vals = [float(probs[n]) for n in names]
            k = int(np.argmax(vals))
            brushes = [pg.mkBrush(229, 83, 75) if n != "normal" else pg.mkBrush(63, 185, 80) for n in names]
            self.plot.addItem(pg.BarGraphItem(x=np.arange(len(names)), height=vals, width=0.6, brushes=brushes))
            for i, v in enumerate(vals):
                t = pg.TextItem(f"{100 * v:.0f} %", anchor=(0.5, 1.0), color="#d5d9de")
                t.setPos(i, v + 0.02)
                self.plot.addItem(t)
            self.plot.getAxis("bottom").setTicks([list(enumerate(names))])
            self.plot.setXRange(-0.6, len(names) - 0.4, padding=0)
            self.head.setText(f"<b>{names[k]}</b> — {100 * vals[k]:.0f} % (mean of {outputs.get('windows', '?')} "
                              f"windows of {outputs.get('window_s', 4):g} s)")
        src = outputs if outputs and "heart_rate_bpm" in outputs else seg
        if src and src.get("heart_rate_bpm"):
            self.hr.setText(f"Heart rate <b>{src['heart_rate_bpm']:.0f} bpm</b> · systole {src.get('systole_ms')} ms · "
                            f"diastole {src.get('diastole_ms')} ms · {src.get('s1_count', 0)} S1 / "
                            f"{src.get('s2_count', 0)} S2 marked")
        elif src is not None:
            self.hr.setText("Heart rate: no regular S1/S2 found")


class PcgViewer(ViewerBase):
    modality = "pcg"

    def __init__(self, ctx: AppContext, parent=None):
        super().__init__(ctx, parent)
        pg.setConfigOptions(antialias=False, background="#111417", foreground="#d5d9de")
        self.player = AudioPlayer()
        self.seg_outputs: dict | None = None
        self.spec_db: np.ndarray | None = None
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)

        bar = QHBoxLayout()
        self.title = QLabel("")
        self.title.setStyleSheet("font-size: 13pt; font-weight: bold;")
        # a long file name must never widen the window: it is elided by the layout instead
        self.title.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.title.setMinimumWidth(80)
        bar.addWidget(self.title, 1)
        self.play_btn = QPushButton("▶ Play")
        self.play_btn.setToolTip("Play / pause from the cursor (Space)")
        self.play_btn.setShortcut("Space")
        self.play_btn.clicked.connect(self.toggle_play)
        self.sel_btn = QPushButton("▶ Selection")
        self.sel_btn.setToolTip("Play the selected region (drag the shaded band on the waveform)")
        self.sel_btn.clicked.connect(self.play_selection)
        self.stop_btn = QPushButton("■")
        self.stop_btn.setToolTip("Stop and return to the start")
        self.stop_btn.clicked.connect(self.stop)
        self.loop_box = QCheckBox("Loop")
        self.loop_box.toggled.connect(lambda on: setattr(self.player, "loop", on))
        self.gain = QSlider(Qt.Horizontal)
        self.gain.setRange(-12, 24)
        self.gain.setValue(0)
        self.gain.setFixedWidth(110)
        self.gain.valueChanged.connect(self._gain_changed)
        self.gain_label = QLabel("gain 0 dB")
        self.time_label = QLabel("")
        self.time_label.setMinimumWidth(130)
        transport = QHBoxLayout()
        for w in (self.play_btn, self.sel_btn, self.stop_btn, self.loop_box, self.gain, self.gain_label,
                  self.time_label):
            transport.addWidget(w)
        self.batch_btn = QPushButton("Batch…")
        self.batch_btn.setToolTip("Classify every recording in a folder and write a CSV")
        self.batch_btn.clicked.connect(self.open_batch)
        self.train_btn = QPushButton("Retrain…")
        self.train_btn.setToolTip("Train a new model version from a folder of labelled recordings")
        self.train_btn.clicked.connect(self.open_training)
        bar.addWidget(self.batch_btn)
        bar.addWidget(self.train_btn)
        lay.addLayout(bar)
        transport.addStretch(1)
        lay.addLayout(transport)
        self.legend = QLabel("<span style='color:#e5534b'>▼ S1</span> &nbsp; <span style='color:#3d8bfd'>▼ S2</span>"
                             " &nbsp; envelope segmentation · <span style='color:#f0c000'>│</span> playback cursor · "
                             "shaded band = selection (drag its edges)")
        self.legend.setObjectName("muted")
        self.legend.setWordWrap(True)  # long texts wrap: the viewer fits a 1366-px screen beside its panels
        lay.addWidget(self.legend)
        self.audio_msg = QLabel(self.player.message)
        self.audio_msg.setObjectName("muted")
        self.audio_msg.setWordWrap(True)
        self.audio_msg.setVisible(not self.player.available)
        lay.addWidget(self.audio_msg)

        self.glw = pg.GraphicsLayoutWidget()
        lay.addWidget(self.glw, 1)
        self.wave = self.glw.addPlot(row=0, col=0)
        self.wave.setLabel("left", "amplitude (full scale)")
        self.wave.getAxis("left").enableAutoSIPrefix(False)
        self.wave.showGrid(x=True, y=True, alpha=0.15)
        self.wave.setDownsampling(auto=True, mode="peak")
        self.wave.setClipToView(True)
        self.wave_curve = self.wave.plot(pen=pg.mkPen("#9ecbff", width=1))
        self.spec = self.glw.addPlot(row=1, col=0)
        self.spec.setLabel("left", "frequency", units="Hz")
        self.spec_img = pg.ImageItem()
        self.spec.addItem(self.spec_img)
        self.spec_img.setColorMap(pg.colormap.get("inferno"))
        self.prob = self.glw.addPlot(row=2, col=0)
        self.prob.setLabel("left", "P(abnormal)")
        self.prob.setLabel("bottom", "time", units="s")
        self.prob.setYRange(0, 1, padding=0.05)
        self.prob.setMouseEnabled(y=False)
        self.prob.addLine(y=0.5, pen=pg.mkPen("#8b949e", style=Qt.DashLine))
        self.glw.ci.layout.setRowStretchFactor(0, 3)
        self.glw.ci.layout.setRowStretchFactor(1, 3)
        self.glw.ci.layout.setRowStretchFactor(2, 1)
        for p in (self.spec, self.prob):
            p.setXLink(self.wave)
        for p in (self.wave, self.spec, self.prob):
            p.getAxis("left").setWidth(62)
            p.setMouseEnabled(y=False)
        self.spec.setMouseEnabled(y=False)
        self.cursors = [pg.InfiniteLine(0, angle=90, pen=pg.mkPen(CURSOR, width=2), movable=(p is self.wave))
                        for p in (self.wave, self.spec, self.prob)]
        for c, p in zip(self.cursors, (self.wave, self.spec, self.prob)):
            p.addItem(c, ignoreBounds=True)
        self.cursors[0].sigPositionChangeFinished.connect(lambda line: self.seek(line.value()))
        self.region = pg.LinearRegionItem(values=(0, 1), brush=pg.mkBrush(240, 192, 0, 40))
        self.region.setZValue(-5)
        self.wave.addItem(self.region)
        self.region_spec = pg.LinearRegionItem(values=(0, 1), movable=False, brush=pg.mkBrush(240, 192, 0, 25))
        self.spec.addItem(self.region_spec)
        self.region.sigRegionChanged.connect(lambda r: self.region_spec.setRegion(r.getRegion()))
        self.marks: list = []
        self.prob_items: list = []
        self.bars = ProbabilityBars()
        self.timer = QTimer(self)
        self.timer.setInterval(33)
        self.timer.timeout.connect(self._tick)
        self._set_controls()

    # -- contract -----------------------------------------------------------------------------
    def set_study(self, study: Study, study_id: int) -> None:
        super().set_study(study, study_id)
        self.stop()
        sr = int(study.data["sample_rate"])
        audio = study.data["audio"]
        mono = study.data["mono"]
        dur = len(mono) / sr
        m = study.metadata
        self.title.setText(f"{study.name}")
        self.title.setToolTip(study.source)
        self.title.setToolTip(f"{m.get('format', '')} {m.get('subtype', '')}, {sr} Hz, {m.get('channels')} ch")
        self.player.load(audio, sr)
        t = np.arange(len(mono)) / sr
        self.wave_curve.setData(t, mono)
        peak = float(np.max(np.abs(mono))) or 1.0
        self.wave.setYRange(-peak * 1.05, peak * 1.05, padding=0)
        self.spec_db, dspec = display_spectrogram(mono, sr)
        img = self.spec_db.T  # (frames, mels): x = time, y = mel band
        self.spec_img.setImage(img, autoLevels=False)
        top = float(np.percentile(self.spec_db, 99.5))
        self.spec_img.setLevels((top - 60.0, top))
        self.spec_img.setRect(pg.QtCore.QRectF(0, 0, img.shape[0] / dspec.frames_per_s, dspec.n_mels))
        centres = mel_centres_hz(dspec)
        ticks = [(float(np.interp(f, centres, np.arange(len(centres)))) + 0.5, f"{f:g}")
                 for f in (25, 50, 100, 200, 400, 800) if centres[0] <= f <= centres[-1]]
        self.spec.getAxis("left").setTicks([ticks])
        self.spec.setYRange(0, dspec.n_mels, padding=0)
        self.spec.setLabel("left", "frequency (mel)", units="Hz")
        for p in (self.wave, self.spec, self.prob):
            p.setLimits(xMin=-0.5, xMax=dur + 0.5)
        self.wave.setXRange(0, min(dur, 10.0), padding=0.01)
        self.region.setRegion((min(1.0, dur * 0.1), min(dur, 3.0)))
        self.region.setBounds((0, dur))
        # envelope segmentation is fast and needs no model: mark S1/S2 straight away
        try:
            from inference.pcg.pipeline import segmentation_outputs

            self.seg_outputs, _ = segmentation_outputs(study)
        except Exception as e:  # segmentation must never stop the recording being shown
            log.warning("segmentation failed: %s", e)
            self.seg_outputs = None
        self._draw_marks(self.seg_outputs)
        self._draw_probabilities(None)
        self.bars.update_outputs(None, self.seg_outputs)
        self._tick()
        for n in study.notes:
            self.status_message.emit(n)

    def set_result(self, result: Result | None) -> None:
        super().set_result(result)
        out = result.outputs if result else None
        if out and "s1_times_s" in out:
            self._draw_marks(out)
        self._draw_probabilities(out)
        self.bars.update_outputs(out, self.seg_outputs)

    def result_widget(self) -> QWidget | None:
        return self.bars

    def shutdown(self) -> None:
        self.timer.stop()
        self.player.stop()

    def report_extra(self) -> dict:
        lo, hi = self.region.getRegion()
        return {"selection_s": [round(lo, 2), round(hi, 2)]}

    # -- drawing ------------------------------------------------------------------------------
    def _draw_marks(self, out: dict | None) -> None:
        for p, it in self.marks:
            p.removeItem(it)
        self.marks = []
        if not out:
            return
        peak = self.wave.viewRange()[1][1] or 1.0
        for key, colour, label in (("s1_times_s", S1_COLOUR, "S1"), ("s2_times_s", S2_COLOUR, "S2")):
            ts = np.asarray([t for t in out.get(key, []) if t is not None], dtype=float)
            if not len(ts):
                continue
            w = 0.07
            bars = pg.BarGraphItem(x0=ts - w / 2, x1=ts + w / 2, y0=-peak, y1=peak,
                                   brush=pg.mkBrush(*colour, 45), pen=pg.mkPen(None))
            bars.setZValue(-10)
            self.wave.addItem(bars)
            self.marks.append((self.wave, bars))
            sc = pg.ScatterPlotItem(x=ts, y=np.full(len(ts), 0.92 * peak), symbol="t", size=9,
                                    brush=pg.mkBrush(*colour), pen=pg.mkPen(None))
            self.wave.addItem(sc)
            self.marks.append((self.wave, sc))
            top = self.spec_db.shape[0] if self.spec_db is not None else 96
            ss = pg.ScatterPlotItem(x=ts, y=np.full(len(ts), top - 3), symbol="t", size=8,
                                    brush=pg.mkBrush(*colour), pen=pg.mkPen(None))
            self.spec.addItem(ss)
            self.marks.append((self.spec, ss))

    def _draw_probabilities(self, out: dict | None) -> None:
        for it in self.prob_items:
            self.prob.removeItem(it)
        self.prob_items = []
        if not out or "window_probabilities" not in out:
            t = pg.TextItem("run the classifier (Analyse) for the window probabilities", color="#8b949e")
            t.setPos(0.2, 0.8)
            self.prob.addItem(t)
            self.prob_items.append(t)
            return
        classes = out.get("classes") or list(out.get("probabilities", {}))
        starts = np.asarray(out["window_starts_s"], dtype=float)
        P = np.asarray(out["window_probabilities"], dtype=float)
        W = float(out.get("window_s", 4.0))
        centres = starts + W / 2
        if len(classes) == 2:
            j = 1 if classes[0] == "normal" else 0
            self.prob.setLabel("left", f"P({classes[j]})")
            series = [(j, "#e5534b")]
        else:
            self.prob.setLabel("left", "P(class)")
            palette = ["#3fb950", "#e5534b", "#d29922", "#a371f7", "#3d8bfd", "#8b949e"]
            series = [(j, palette[j % len(palette)]) for j in range(len(classes))]
        for j, col in series:
            c = self.prob.plot(centres, P[:, j], pen=pg.mkPen(col, width=2), symbol="o", symbolSize=4,
                               symbolBrush=col, name=classes[j])
            self.prob_items.append(c)
            fill = pg.FillBetweenItem(c, self.prob.plot(centres, np.zeros(len(centres)), pen=None),
                                      brush=pg.mkBrush(pg.mkColor(col).red(), pg.mkColor(col).green(),
                                                       pg.mkColor(col).blue(), 50))
            self.prob.addItem(fill)
            self.prob_items.append(fill)

    # -- playback -----------------------------------------------------------------------------
    def _set_controls(self) -> None:
        ok = self.player.available
        for w in (self.play_btn, self.sel_btn, self.stop_btn, self.loop_box):
            w.setEnabled(ok)
            if not ok:
                w.setToolTip(self.player.message)

    def _gain_changed(self, db: int) -> None:
        self.player.gain = float(10 ** (db / 20))
        self.gain_label.setText(f"gain {db:+d} dB" if db else "gain 0 dB")

    def toggle_play(self) -> None:
        if self.player.playing:
            self.player.pause()
            self.play_btn.setText("▶ Play")
            self.timer.stop()
            return
        err = self.player.play()
        self._after_play(err)

    def play_selection(self) -> None:
        lo, hi = self.region.getRegion()
        self._after_play(self.player.play(lo, hi))

    def _after_play(self, err: str | None) -> None:
        if err:
            self.status_message.emit(err)
            self.audio_msg.setText(err)
            self.audio_msg.show()
            return
        self.play_btn.setText("❚❚ Pause")
        self.timer.start()

    def stop(self) -> None:
        self.player.stop()
        self.play_btn.setText("▶ Play")
        self.timer.stop()
        self._tick()

    def seek(self, t: float) -> None:
        self.player.seek(t)
        self._tick()

    def _tick(self) -> None:
        t = self.player.position
        for c in self.cursors:
            c.setValue(t)
        dur = (len(self.player.audio) / self.player.sr) if self.player.audio is not None and self.player.sr else 0
        self.time_label.setText(f"{t:6.2f} s / {dur:.1f} s")
        if self.player.playing:
            lo, hi = self.wave.viewRange()[0]
            if t > hi or t < lo:  # keep the cursor in view
                w = hi - lo
                self.wave.setXRange(t - 0.1 * w, t + 0.9 * w, padding=0)
        elif self.timer.isActive():
            self.timer.stop()
            self.play_btn.setText("▶ Play")

    # -- tools --------------------------------------------------------------------------------
    def open_batch(self) -> None:
        from app.pcg.tools import BatchDialog

        dlg = BatchDialog(self.ctx, self)
        dlg.show()
        self._batch = dlg

    def open_training(self) -> None:
        from app.pcg.tools import TrainingDialog

        dlg = TrainingDialog(self.ctx, self)
        dlg.show()
        self._training = dlg

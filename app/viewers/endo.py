"""Endoscopy viewer: video player, quality/findings timeline, live and review analysis, findings.

- Playback: a QTimer at the file's frame rate x speed; frames come from a decode-ahead thread
  (inference.endo.playback.Prefetcher) with a synchronous fallback, so a seek is frame-accurate.
  Space plays/pauses, Left/Right step a frame, PgUp/PgDn jump to the previous/next finding.
- Timeline under the video: frame-quality bands (ok / blur / dark / overexposed / glare / duplicate)
  and findings (proposed / confirmed / rejected); click or drag to seek.
- Live mode: the frame on screen is offered to an analyser running through app.jobs; when it is
  slower than playback, frames are dropped from the analysis queue (counted), never from the display.
- Review mode: the whole video through the pipeline on a worker (main window's Analyse, with
  progress and cancel); the model's proposed findings are filed in the store's findings table.
- Findings table: add at the current frame, edit, confirm, reject, delete, double-click to jump.
- Export bundle: metadata.json, summary.json, findings.csv, findings.json, report.txt (zip, atomic)
  plus the PDF report with key frames beside it.
"""
from __future__ import annotations

import collections
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QImage, QKeySequence, QPainter, QPen, QPixmap, QPolygonF, QShortcut
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDialog, QDialogButtonBox,
                               QDoubleSpinBox, QFileDialog, QFormLayout, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QPushButton, QSplitter, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from app.context import AppContext
from app.viewers.base import ViewerBase
from inference import paths
from inference.endo.export import fmt_time
from inference.endo.playback import LatestSlot, Prefetcher, live_loop
from inference.endo.quality import STATUSES
from inference.results import NOT_CLINICAL, Result
from inference.study import Study

QUALITY_COLOURS = {
    "ok": "#2f6f4f", "blur": "#d29922", "dark": "#3b4a8a", "overexposed": "#e6e6e6",
    "glare": "#39c5cf", "duplicate": "#6e7681", "live": "#2f6f4f",
}
STATUS_COLOURS = {"proposed": "#d29922", "confirmed": "#3fb950", "rejected": "#8b949e"}
LABELS = ["polyp", "bleeding", "ulcer", "inflammation", "angiodysplasia", "diverticulum", "mass",
          "foreign body", "normal mucosa", "other"]
SPEEDS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()


# -- video surface ------------------------------------------------------------------------------
class FrameView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.image: QImage | None = None
        self.boxes: list[tuple[list[float], str, str, bool]] = []  # box, text, colour, dashed
        self.osd = ""
        self.osd_warn = ""

    def set_frame(self, img: QImage, boxes, osd: str, warn: str = "") -> None:
        self.image, self.boxes, self.osd, self.osd_warn = img, boxes, osd, warn
        self.update()

    def image_rect(self) -> QRectF:
        if self.image is None:
            return QRectF()
        w, h = self.width(), self.height()
        s = min(w / self.image.width(), h / self.image.height())
        iw, ih = self.image.width() * s, self.image.height() * s
        return QRectF((w - iw) / 2, (h - ih) / 2, iw, ih)

    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#000000"))
        if self.image is None:
            p.setPen(QColor("#8b949e"))
            p.drawText(self.rect(), Qt.AlignCenter, "No video")
            return
        r = self.image_rect()
        p.setRenderHint(QPainter.SmoothPixmapTransform)
        p.drawImage(r, self.image)
        p.setRenderHint(QPainter.Antialiasing)
        f = QFont(self.font())
        f.setPointSize(9)
        f.setBold(True)
        p.setFont(f)
        for box, text, colour, dashed in self.boxes:
            x0, y0, x1, y1 = box
            rr = QRectF(r.x() + x0 * r.width(), r.y() + y0 * r.height(), (x1 - x0) * r.width(), (y1 - y0) * r.height())
            pen = QPen(QColor(colour), 2, Qt.DashLine if dashed else Qt.SolidLine)
            p.setPen(pen)
            p.setBrush(Qt.NoBrush)
            p.drawRect(rr)
            p.drawText(QPointF(rr.x(), max(rr.y() - 4, r.y() + 12)), text)
        # OSD: time / frame top-left, quality warning top-right
        p.setPen(QColor("#ffffff"))
        p.fillRect(QRectF(r.x() + 4, r.y() + 4, p.fontMetrics().horizontalAdvance(self.osd) + 10, 18),
                   QColor(0, 0, 0, 150))
        p.drawText(QPointF(r.x() + 9, r.y() + 17), self.osd)
        if self.osd_warn:
            wdt = p.fontMetrics().horizontalAdvance(self.osd_warn) + 10
            p.fillRect(QRectF(r.right() - wdt - 4, r.y() + 4, wdt, 18), QColor(0, 0, 0, 150))
            p.setPen(QColor("#d29922"))
            p.drawText(QPointF(r.right() - wdt + 1, r.y() + 17), self.osd_warn)


# -- timeline -----------------------------------------------------------------------------------
class Timeline(QWidget):
    """Time axis, frame-quality band row, findings row and the play head; click/drag seeks."""

    seek = Signal(int)
    LABEL_W = 64

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumHeight(78)
        self.setMaximumHeight(90)
        self.setMouseTracking(True)
        self.n = 0
        self.fps = 25.0
        self.pos = 0
        self.bands: list[dict] = []
        self.codes = np.zeros(0, np.uint8)  # per frame: 0 unknown, else 1 + index in STATUSES
        self.live_count = 0
        self._row: QPixmap | None = None  # the quality row, rendered once per change (hour-long videos)
        self.findings: list[dict] = []
        self.selected_id: int | None = None
        self.setToolTip("Click or drag to seek. Upper row: frame quality; lower row: findings.")

    def set_video(self, n: int, fps: float) -> None:
        self.n, self.fps, self.pos = n, fps, 0
        self.bands, self.findings = [], []
        self.codes = np.zeros(n, np.uint8)
        self.live_count = 0
        self._row = None
        self.update()

    def set_bands(self, bands: list[dict]) -> None:
        self.bands = bands
        for b in bands:
            self.codes[b["start"]:b["end"]] = STATUSES.index(b["status"]) + 1 if b["status"] in STATUSES else 0
        self._row = None
        self.update()

    def set_live(self, frame: int, status: str) -> None:
        """A live-analysed frame (the review bands, once there, take precedence)."""
        if not self.bands and 0 <= frame < self.n and status in STATUSES:
            self.codes[frame] = STATUSES.index(status) + 1
            self.live_count += 1
            self._row = None

    def x_of(self, frame: float) -> float:
        w = self.width() - self.LABEL_W - 8
        return self.LABEL_W + (frame / max(self.n, 1)) * w

    def frame_at(self, x: float) -> int:
        w = self.width() - self.LABEL_W - 8
        f = int((x - self.LABEL_W) / max(w, 1) * self.n)
        return max(0, min(self.n - 1, f))

    def status_at(self, frame: int) -> str | None:
        if 0 <= frame < len(self.codes) and self.codes[frame]:
            return STATUSES[self.codes[frame] - 1]
        return None

    def _quality_row(self, w: int, h: int) -> QPixmap:
        """One colour per pixel column: the most severe status among that column's frames (a one-frame
        glare in an hour of video still shows), drawn as runs of equal columns."""
        if self._row is not None and self._row.width() == w and self._row.height() == h:
            return self._row
        pm = QPixmap(max(w, 1), max(h, 1))
        pm.fill(QColor("#22272e"))
        if self.n and w > 0:
            edges = np.minimum((np.arange(w) * self.n / w).astype(np.int64), self.n - 1)
            # severity: unknown 0 < ok 1 < duplicate < the rest (any skip reason beats ok)
            sev = np.array([0, 1, 5, 5, 5, 5, 2], np.uint8)[self.codes] if len(self.codes) else np.zeros(0, np.uint8)
            col_sev = np.maximum.reduceat(sev, edges) if len(sev) else np.zeros(w, np.uint8)
            keyed = sev.astype(np.int32) * 8 + self.codes  # pick the code of the max severity per column
            col = (np.maximum.reduceat(keyed, edges) % 8).astype(np.uint8) if len(sev) else np.zeros(w, np.uint8)
            col[col_sev == 0] = 0
            p = QPainter(pm)
            start = 0
            for x in range(1, w + 1):
                if x == w or col[x] != col[start]:
                    if col[start]:
                        p.fillRect(QRectF(start, 0, x - start, h), QColor(QUALITY_COLOURS[STATUSES[col[start] - 1]]))
                    start = x
            p.end()
        self._row = pm
        return pm

    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#181c20"))
        if self.n <= 0:
            return
        f = QFont(self.font())
        f.setPointSize(8)
        p.setFont(f)
        axis_y, q_y, q_h, f_y, f_h = 2, 20, 18, 44, 22
        p.setPen(QColor("#8b949e"))
        p.drawText(QRectF(4, q_y, self.LABEL_W - 8, q_h), Qt.AlignVCenter | Qt.AlignRight, "Quality")
        p.drawText(QRectF(4, f_y, self.LABEL_W - 8, f_h), Qt.AlignVCenter | Qt.AlignRight, "Findings")
        # axis ticks every 1/2/5/10/30/60... s, labelled mm:ss
        dur = self.n / self.fps if self.fps else 0
        w = self.width() - self.LABEL_W - 8
        step = next((s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800)
                     if dur / s <= max(w / 70, 1)), 3600)
        t = 0.0
        while t <= dur + 1e-6:
            x = self.x_of(t * self.fps)
            p.setPen(QColor("#444c56"))
            p.drawLine(QPointF(x, axis_y + 12), QPointF(x, f_y + f_h))
            p.setPen(QColor("#8b949e"))
            lab = fmt_time(t)[:-3] if step >= 1 else fmt_time(t)
            p.drawText(QPointF(x + 2, axis_y + 10), lab)
            t += step
        # quality bands
        p.drawPixmap(int(self.LABEL_W), q_y, self._quality_row(int(w), q_h))
        # findings
        p.fillRect(QRectF(self.LABEL_W, f_y, w, f_h), QColor("#22272e"))
        p.setRenderHint(QPainter.Antialiasing)
        for fd in self.findings:
            x = self.x_of(fd.get("frame_index") or 0)
            c = QColor(STATUS_COLOURS.get(fd.get("status") or "proposed", "#d29922"))
            p.setPen(QPen(c, 2))
            p.drawLine(QPointF(x, f_y), QPointF(x, f_y + f_h))
            p.setBrush(c)
            s = 6 if fd.get("id") == self.selected_id else 4
            p.drawPolygon(QPolygonF([QPointF(x, f_y + 3), QPointF(x + s, f_y + 3 + s),
                                     QPointF(x, f_y + 3 + 2 * s), QPointF(x - s, f_y + 3 + s)]))
        # play head
        x = self.x_of(self.pos + 0.5)
        p.setPen(QPen(QColor("#e5534b"), 2))
        p.drawLine(QPointF(x, axis_y + 12), QPointF(x, f_y + f_h + 2))

    def mousePressEvent(self, ev) -> None:
        if self.n and ev.position().x() >= self.LABEL_W - 4:
            self.seek.emit(self.frame_at(ev.position().x()))

    def mouseMoveEvent(self, ev) -> None:
        if not self.n:
            return
        fr = self.frame_at(ev.position().x())
        st = self.status_at(fr)
        self.setToolTip(f"{fmt_time(fr / self.fps)} · frame {fr}" + (f" · {st}" if st else ""))
        if ev.buttons() & Qt.LeftButton:
            self.seek.emit(fr)


# -- finding editor -----------------------------------------------------------------------------
class FindingDialog(QDialog):
    def __init__(self, parent: QWidget | None, title: str, label: str = "polyp", confidence: float | None = None,
                 note: str = ""):
        super().__init__(parent)
        self.setWindowTitle(title)
        lay = QFormLayout(self)
        self.label = QComboBox()
        self.label.setEditable(True)
        self.label.addItems(LABELS)
        self.label.setCurrentText(label)
        self.conf = QDoubleSpinBox()
        self.conf.setRange(-0.01, 1.0)
        self.conf.setSingleStep(0.05)
        self.conf.setSpecialValueText("—")
        self.conf.setValue(-0.01 if confidence is None or confidence != confidence else float(confidence))
        self.note = QLineEdit(note)
        lay.addRow("Finding", self.label)
        lay.addRow("Confidence", self.conf)
        lay.addRow("Note", self.note)
        bb = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        lay.addRow(bb)

    def values(self) -> dict[str, Any]:
        c = self.conf.value()
        return {"label": self.label.currentText().strip() or "other", "confidence": None if c < 0 else round(c, 3),
                "note": self.note.text().strip()}


# -- the viewer ---------------------------------------------------------------------------------
class EndoViewer(ViewerBase):
    modality = "endo"
    COLS = ["Time", "Frame", "Finding", "Conf.", "Source", "Status", "Note"]

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(ctx, parent)
        self.src = None
        self.prefetch: Prefetcher | None = None
        self.n = 0
        self.fps = 25.0
        self.pos = 0
        self.speed = 1.0
        self.playing = False
        self.findings: list[dict] = []
        self.display_late = 0  # display frames skipped because the UI fell behind real time
        self.live_job = None
        self.live_slot: LatestSlot | None = None
        self.live_out: collections.deque = collections.deque()
        self.live_last: dict[str, Any] = {}
        self._play_t0 = 0.0
        self._play_f0 = 0

        self.view = FrameView()
        self.timeline = Timeline()
        self.timeline.seek.connect(self.seek)

        # transport
        self.play_btn = QPushButton("▶ Play")
        self.play_btn.setToolTip("Play / pause (Space)")
        self.play_btn.clicked.connect(self.toggle_play)
        self.prev_f = QPushButton("◀◀")
        self.prev_f.setToolTip("Previous finding (PgUp)")
        self.prev_f.clicked.connect(lambda: self.jump_finding(-1))
        self.back = QPushButton("◀|")
        self.back.setToolTip("One frame back (Left)")
        self.back.clicked.connect(lambda: self.step(-1))
        self.fwd = QPushButton("|▶")
        self.fwd.setToolTip("One frame forward (Right)")
        self.fwd.clicked.connect(lambda: self.step(1))
        self.next_f = QPushButton("▶▶")
        self.next_f.setToolTip("Next finding (PgDn)")
        self.next_f.clicked.connect(lambda: self.jump_finding(1))
        self.speed_box = QComboBox()
        for s in SPEEDS:
            self.speed_box.addItem(f"{s:g}×", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.setToolTip("Playback speed")
        self.speed_box.currentIndexChanged.connect(lambda _i: self.set_speed(self.speed_box.currentData()))
        self.time_label = QLabel("")
        self.live_box = QCheckBox("Live")
        self.live_box.setToolTip("Analyse the frame on screen while playing. Playback never waits for the "
                                 "analysis: frames it cannot keep up with are dropped from the analysis queue.")
        self.live_box.toggled.connect(self.set_live)
        self.live_box.setStyleSheet("QCheckBox::indicator { width: 12px; height: 12px; border: 1px solid #8b949e; "
                                    "background: #22272e; } QCheckBox::indicator:checked { background: #3d8bfd; }")
        self.vlm_btn = QPushButton("Ask VLM")
        self.vlm_btn.setToolTip("Describe the frame on screen with the local MedGemma-4B-it (optional)")
        self.vlm_btn.clicked.connect(self.ask_vlm)
        self.vlm_btn.setEnabled(False)
        self.live_label = QLabel("")
        self.live_label.setObjectName("muted")
        self.review_btn = QPushButton("Analyse video")
        self.review_btn.setObjectName("primary")
        self.review_btn.setToolTip("Review mode: every frame on a worker, with progress and cancel (Ctrl+R)")
        self.review_btn.clicked.connect(lambda: self.request_analysis.emit(""))
        tr = QHBoxLayout()
        for w in (self.prev_f, self.back, self.fwd, self.next_f):
            w.setFixedWidth(40)
        self.play_btn.setFixedWidth(84)
        for w in (self.prev_f, self.back, self.play_btn, self.fwd, self.next_f, self.speed_box):
            tr.addWidget(w)
        tr.addWidget(self.time_label)
        tr.addStretch(1)
        tr.addWidget(self.live_box)
        tr.addWidget(self.vlm_btn)
        tr.addWidget(self.review_btn)

        top = QWidget()
        tl = QVBoxLayout(top)
        tl.setContentsMargins(0, 0, 0, 0)
        self.header = QLabel("")
        self.header.setObjectName("muted")
        self.header.setWordWrap(True)
        tl.addWidget(self.header)
        tl.addWidget(self.view, 1)
        tl.addWidget(self.timeline)
        self.selection_label = QLabel("")
        self.selection_label.setWordWrap(True)  # long text must not widen the viewer
        sl = QHBoxLayout()
        sl.addWidget(self.selection_label, 1)
        sl.addWidget(self.live_label)
        tl.addLayout(sl)
        legend = QLabel("  ".join(f"<span style='color:{c}'>■</span> {k}" for k, c in QUALITY_COLOURS.items()
                                  if k != "live") + "  &nbsp;&nbsp; findings: "
                        + "  ".join(f"<span style='color:{c}'>◆</span> {k}" for k, c in STATUS_COLOURS.items()))
        legend.setObjectName("muted")
        legend.setWordWrap(True)
        tl.addWidget(legend)
        tl.addLayout(tr)

        # findings
        self.table = QTableWidget(0, len(self.COLS))
        self.table.setHorizontalHeaderLabels(self.COLS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        hh = self.table.horizontalHeader()
        for i in range(len(self.COLS) - 1):
            hh.setSectionResizeMode(i, QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(len(self.COLS) - 1, QHeaderView.Stretch)
        self.table.cellDoubleClicked.connect(lambda r, _c: self._jump_row(r))
        self.table.itemSelectionChanged.connect(self._selection_changed)
        fb = QHBoxLayout()
        self.add_btn = QPushButton("Add at frame")
        self.add_btn.setToolTip("Add a finding at the frame on screen (Ins)")
        self.add_btn.clicked.connect(self.add_dialog)
        self.edit_btn = QPushButton("Edit…")
        self.edit_btn.clicked.connect(self.edit_dialog)
        self.confirm_btn = QPushButton("Confirm")
        self.confirm_btn.setToolTip("Confirm the selected finding (C)")
        self.confirm_btn.clicked.connect(lambda: self.set_status_selected("confirmed"))
        self.reject_btn = QPushButton("Reject")
        self.reject_btn.setToolTip("Reject the selected finding (X)")
        self.reject_btn.clicked.connect(lambda: self.set_status_selected("rejected"))
        self.delete_btn = QPushButton("Delete")
        self.delete_btn.clicked.connect(self.delete_selected)
        self.export_btn = QPushButton("Export bundle…")
        self.export_btn.setToolTip("metadata.json, summary.json, findings.csv, findings.json, report.txt (zip) "
                                   "+ PDF report with key frames")
        self.export_btn.clicked.connect(lambda: self.export_bundle())
        self.count_label = QLabel("")
        self.count_label.setObjectName("muted")
        for w in (self.add_btn, self.edit_btn, self.confirm_btn, self.reject_btn, self.delete_btn):
            fb.addWidget(w)
        fb.addWidget(self.count_label, 1)
        fb.addWidget(self.export_btn)
        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        bl.addWidget(self.table, 1)
        bl.addLayout(fb)

        split = QSplitter(Qt.Vertical)
        split.addWidget(top)
        split.addWidget(bottom)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        split.setSizes([640, 200])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.live_timer = QTimer(self)  # drains live results while paused
        self.live_timer.setInterval(150)
        self.live_timer.timeout.connect(self._drain_live)

        for key, fn in ((Qt.Key_Space, self.toggle_play), (Qt.Key_Left, lambda: self.step(-1)),
                        (Qt.Key_Right, lambda: self.step(1)), (Qt.Key_PageUp, lambda: self.jump_finding(-1)),
                        (Qt.Key_PageDown, lambda: self.jump_finding(1)), (Qt.Key_Insert, self.add_dialog),
                        (Qt.Key_C, lambda: self.set_status_selected("confirmed")),
                        (Qt.Key_X, lambda: self.set_status_selected("rejected"))):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.WidgetWithChildrenShortcut)
            sc.activated.connect(fn)
        self._enable(False)

    # -- study ------------------------------------------------------------------------------------
    def _enable(self, on: bool) -> None:
        for w in (self.play_btn, self.back, self.fwd, self.prev_f, self.next_f, self.speed_box, self.live_box,
                  self.review_btn, self.add_btn, self.edit_btn, self.confirm_btn, self.reject_btn,
                  self.delete_btn, self.export_btn):
            w.setEnabled(on)

    def set_study(self, study: Study, study_id: int) -> None:
        self.pause()
        self.set_live(False)
        if self.prefetch is not None:
            self.prefetch.close()
            self.prefetch = None
        super().set_study(study, study_id)
        self.src = study.data["source"]
        self.n, self.fps = len(self.src), float(self.src.fps)
        self.prefetch = Prefetcher(self.src)
        self.timeline.set_video(self.n, self.fps)
        m = study.metadata
        self.header.setText(f"{study.name} · {m.get('width')}×{m.get('height')} · {m.get('fps')} fps · "
                            f"{self.n} frames · {fmt_time(self.n / self.fps)}"
                            + (f" · {m.get('codec')}" if m.get("codec") else "")
                            + ("  — " + "; ".join(study.notes) if study.notes else ""))
        self.display_late = 0
        longest = f"{fmt_time(self.n / self.fps)} / {fmt_time(self.n / self.fps)} · frame {self.n}/{self.n}"
        self.time_label.setFixedWidth(self.time_label.fontMetrics().horizontalAdvance(longest) + 12)
        self.selection_label.setText("Frame selection: not analysed yet (Analyse video, or tick Live and play).")
        self.live_last = {}
        self._enable(self.n > 0)
        self._update_vlm()
        self.reload_findings()
        self.show_frame(0)

    def set_result(self, result: Result | None) -> None:
        super().set_result(result)
        if result is None:
            return
        o = result.outputs
        if "frames_total" in o:
            sk = ", ".join(f"{k} {v}" for k, v in (o.get("skipped") or {}).items())
            self.selection_label.setText(f"Frame selection ({result.model_id}, result #{result.id}): "
                                         f"<b>{o.get('frames_analysed')}</b> of {o.get('frames_total')} frames "
                                         f"analysed · skipped {o.get('frames_skipped')} ({sk})"
                                         + (f" · <b>{o.get('findings_count')}</b> finding(s) proposed"
                                            if result.model_id != "endo-quality" else "")
                                         + ("" if result.clinical else
                                            f" · <span style='color:#e5534b'><b>{NOT_CLINICAL}</b></span>"))
        bands = result.outputs.get("_bands")
        if bands:
            self.timeline.set_bands(bands)
        props = result.outputs.get("_findings") or []
        if props and result.id is not None and self.study_id is not None:
            tag = f"{result.model_id} · result #{result.id}"
            if not any(f.get("source") == tag for f in self.ctx.store.findings(self.study_id)):
                for f in props:
                    self.ctx.store.add_finding(self.study_id, time_s=f["time_s"], frame_index=f["frame_index"],
                                               label=f["label"], confidence=f.get("confidence"), source=tag,
                                               note=f.get("note") or "", box=f.get("box"), status="proposed")
                self.status_message.emit(f"{len(props)} proposed finding(s) from {result.model_id} added for review"
                                         + ("" if result.clinical else f" — {NOT_CLINICAL}"))
        self.reload_findings()
        self.show_frame(self.pos)

    # -- playback -----------------------------------------------------------------------------------
    def frame_rgb(self, i: int) -> np.ndarray:
        f = self.prefetch.get(i) if self.prefetch else None
        return f if f is not None else self.src.frame(i)

    def show_frame(self, i: int) -> None:
        if not self.n:
            return
        i = max(0, min(int(i), self.n - 1))
        self.pos = i
        try:
            rgb = self.frame_rgb(i)
        except Exception as e:  # a damaged frame: say so, keep the player alive
            self.status_message.emit(str(e))
            self.pause()
            return
        boxes = []
        near = max(1, int(round(self.fps / 4)))
        for f in self.findings:
            fi = f.get("frame_index")
            if fi is None or abs(fi - i) > near or not f.get("box"):
                continue
            try:
                box = json.loads(f["box"]) if isinstance(f["box"], str) else f["box"]
            except ValueError:
                continue
            if box and len(box) == 4:
                st = f.get("status") or "proposed"
                conf = f.get("confidence")
                txt = f"{f.get('label')}" + (f" {conf:.2f}" if isinstance(conf, (int, float)) else "") + f" · {st}"
                boxes.append((box, txt, STATUS_COLOURS.get(st, "#d29922"), st == "proposed"))
        live = self.live_last.get("dets") if self.live_last.get("index") is not None \
            and abs(self.live_last["index"] - i) <= near else None
        for d in live or []:
            if d.box:
                boxes.append((d.box, f"{d.label} {d.confidence:.2f} · live", "#39c5cf", True))
        status = self.timeline.status_at(i)
        warn = status if status and status not in ("ok", "live") else ""
        self.view.set_frame(rgb_to_qimage(rgb), boxes, f"{fmt_time(i / self.fps)}  ·  frame {i}", warn)
        self.timeline.pos = i
        self.timeline.update()
        self.time_label.setText(f"{fmt_time(i / self.fps)} / {fmt_time(self.n / self.fps)} · frame {i + 1}/{self.n}")
        if self.live_slot is not None:
            self.live_slot.put(i)

    def seek(self, i: int) -> None:
        i = max(0, min(int(i), self.n - 1))
        if self.prefetch:
            self.prefetch.seek(i)
        self.show_frame(i)
        if self.playing:
            self._play_t0, self._play_f0 = time.perf_counter(), i

    def step(self, d: int) -> None:
        self.pause()
        self.seek(self.pos + d)

    def toggle_play(self) -> None:
        self.pause() if self.playing else self.play()

    def play(self) -> None:
        if not self.n:
            return
        if self.pos >= self.n - 1:
            self.seek(0)
        self.playing = True
        self.play_btn.setText("⏸ Pause")
        self._play_t0, self._play_f0 = time.perf_counter(), self.pos
        self.timer.start(max(1, int(1000 / (self.fps * self.speed))))

    def pause(self) -> None:
        self.playing = False
        self.timer.stop()
        self.play_btn.setText("▶ Play")

    def set_speed(self, s: float) -> None:
        self.speed = float(s)
        if self.playing:
            self._play_t0, self._play_f0 = time.perf_counter(), self.pos
            self.timer.start(max(1, int(1000 / (self.fps * self.speed))))

    def _tick(self) -> None:
        # the display follows the wall clock: if the UI was held up, it catches up (counted as late)
        due = self._play_f0 + int((time.perf_counter() - self._play_t0) * self.fps * self.speed)
        nxt = max(self.pos + 1, due)
        if nxt > self.pos + 1:
            self.display_late += nxt - self.pos - 1
        if nxt >= self.n:
            self.show_frame(self.n - 1)
            self.pause()
            return
        self.show_frame(nxt)
        self._drain_live()

    # -- live mode ----------------------------------------------------------------------------------
    @staticmethod
    def _live_analyser(registry, fps: float):
        """Quality of every frame taken (duplicates against the last analysed one), plus the polyp
        model on usable frames when it is installed. Built on the live worker: checking the model's
        hash and opening its ONNX session must not hold up the UI thread."""
        from inference.endo.models import POLYP_ID, PolypOnnx, load_quality_config
        from inference.endo.quality import FrameSelector

        cfg, _ = load_quality_config(registry)
        sel = FrameSelector(cfg, fps)
        model = None
        st = registry.state(POLYP_ID)
        if st.usable:
            model = PolypOnnx.from_registry(registry, threads=1)

        def analyse_frame(i: int, rgb: np.ndarray):
            rec = sel.measure(i, rgb)
            dets = model.detect([rgb])[0] if (model is not None and rec.ok) else []
            return rec.status, dets

        return analyse_frame, (None if model is None else st)

    def set_live(self, on: bool) -> None:
        if self.live_box.isChecked() != on:
            self.live_box.blockSignals(True)
            self.live_box.setChecked(on)
            self.live_box.blockSignals(False)
        if not on:
            if self.live_job is not None:
                self.live_job.cancel()
            self.live_job, self.live_slot = None, None
            self.live_timer.stop()
            self.live_label.setText("")
            return
        if self.src is None or self.live_job is not None:
            return
        self.live_slot = LatestSlot()
        self.live_out = collections.deque()
        self._live_runs: dict[str, dict] = {}
        self.live_model = None  # the polyp model's state, once the worker has checked it
        slot, src, out, registry, fps = self.live_slot, self.src, self.live_out, self.ctx.registry, self.fps

        def run(ctx):
            analyse_frame, self.live_model = self._live_analyser(registry, fps)  # before any output
            return live_loop(ctx, slot, src, analyse_frame, out)

        self.live_job = self.ctx.jobs.start(
            "Live analysis", run,
            on_error=lambda msg: (self.status_message.emit(f"live analysis stopped: {msg}"), self.set_live(False)))
        self.live_timer.start()
        self.live_slot.put(self.pos)

    def _drain_live(self) -> None:
        if self.live_slot is None:
            return
        changed = False
        while self.live_out:
            idx, (status, dets), secs = self.live_out.popleft()
            self.timeline.set_live(idx, status)
            self.live_last = {"index": idx, "dets": dets, "secs": secs}
            changed = True
            if dets and self.study_id is not None:
                self._file_live_detections(idx, dets)
        s = self.live_slot
        self.live_label.setText(f"live: {s.taken} analysed · {s.dropped} dropped from queue"
                                + (f" · {1000 * self.live_last['secs']:.1f} ms/frame" if self.live_last.get("secs") else ""))
        if changed:
            self.timeline.update()

    def _file_live_detections(self, idx: int, dets) -> None:
        """A live detection becomes a proposed finding; a detection of the same label within 1 s of the
        last one joins that finding (its key frame moves to the most confident view): a polyp seen for
        3 s is one finding, not 75."""
        st = self.live_model
        tag = f"{st.entry.id} (live)" if st else "live"
        for d in dets:
            run = self._live_runs.get(d.label)
            if run is not None and abs(idx - run["last"]) <= self.fps:
                run["last"] = idx
                if d.confidence > run["conf"]:
                    run["conf"] = d.confidence
                    self.ctx.store.update_finding(run["id"], frame_index=idx, time_s=round(idx / self.fps, 3),
                                                  confidence=d.confidence, box=json.dumps(d.box))
            else:
                note = "" if st is None or st.clinical else NOT_CLINICAL
                fid = self.ctx.store.add_finding(self.study_id, time_s=round(idx / self.fps, 3), frame_index=idx,
                                                 label=d.label, confidence=d.confidence, source=tag, note=note,
                                                 box=d.box, status="proposed")
                self._live_runs[d.label] = {"id": fid, "last": idx, "conf": d.confidence}
        self.reload_findings()

    # -- optional VLM -------------------------------------------------------------------------------
    def _update_vlm(self) -> None:
        from inference.endo.models import medgemma_state

        st = medgemma_state()
        self.vlm_btn.setEnabled(st.available and self.n > 0)
        self.vlm_btn.setToolTip(st.message)

    def ask_vlm(self) -> None:
        """The frame on screen to the local MedGemma; its findings are filed as proposed."""
        from inference.endo.models import VLM_ID, MedGemmaBackend

        if self.src is None:
            return
        self.pause()
        idx, sid, src = self.pos, self.study_id, self.src

        def work(ctx):
            ctx.progress(0.05, "loading MedGemma-4B-it")
            if getattr(EndoViewer, "_vlm", None) is None:
                EndoViewer._vlm = MedGemmaBackend()
            ctx.progress(0.5, "asking")
            rd = src.reopen()
            try:
                return EndoViewer._vlm.detect([rd.frame(idx)])[0]
            finally:
                rd.close()

        def done(dets) -> None:
            for d in dets:
                conf = d.confidence if d.confidence == d.confidence else None
                self.ctx.store.add_finding(sid, time_s=round(idx / self.fps, 3), frame_index=idx, label=d.label,
                                           confidence=conf, source=VLM_ID, box=d.box, status="proposed",
                                           note="; ".join(x for x in (d.note, NOT_CLINICAL) if x))
            self.reload_findings()
            self.show_frame(self.pos)
            self.status_message.emit(f"MedGemma: {len(dets)} finding(s) proposed at frame {idx}"
                                     if dets else "MedGemma: no structured finding in its reply")

        self.ctx.jobs.start("MedGemma frame review", work, on_result=done,
                            on_error=lambda m: self.status_message.emit(f"MedGemma: {m}"))

    # -- findings -----------------------------------------------------------------------------------
    def reload_findings(self) -> None:
        if self.study_id is None:
            return
        sel = self.selected_finding()
        self.findings = self.ctx.store.findings(self.study_id)
        self.timeline.findings = self.findings
        self.timeline.update()
        self.table.setRowCount(len(self.findings))
        for r, f in enumerate(self.findings):
            conf = f.get("confidence")
            vals = [fmt_time(f.get("time_s")), str(f.get("frame_index")), f.get("label") or "",
                    f"{conf:.2f}" if isinstance(conf, (int, float)) else "—", f.get("source") or "",
                    f.get("status") or "", f.get("note") or ""]
            for c, v in enumerate(vals):
                it = QTableWidgetItem(v)
                it.setData(Qt.UserRole, f["id"])
                if c == 5:
                    it.setForeground(QColor(STATUS_COLOURS.get(v, "#d5d9de")))
                self.table.setItem(r, c, it)
        counts = collections.Counter(f.get("status") for f in self.findings)
        self.count_label.setText(f"{len(self.findings)} findings · " + ", ".join(f"{v} {k}" for k, v in counts.items())
                                 if self.findings else "No findings yet: play, analyse, or add one at a frame.")
        if sel is not None:
            self.select_finding(sel["id"])

    def selected_finding(self) -> dict | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        fid = self.table.item(rows[0].row(), 0).data(Qt.UserRole)
        return next((f for f in self.findings if f["id"] == fid), None)

    def select_finding(self, fid: int) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.UserRole) == fid:
                self.table.selectRow(r)
                return

    def _selection_changed(self) -> None:
        f = self.selected_finding()
        self.timeline.selected_id = f["id"] if f else None
        self.timeline.update()

    def _jump_row(self, row: int) -> None:
        fid = self.table.item(row, 0).data(Qt.UserRole)
        f = next((x for x in self.findings if x["id"] == fid), None)
        if f and f.get("frame_index") is not None:
            self.pause()
            self.seek(int(f["frame_index"]))

    def jump_finding(self, direction: int) -> None:
        frames = sorted({int(f["frame_index"]) for f in self.findings if f.get("frame_index") is not None
                         and f.get("status") != "rejected"})
        if not frames:
            self.status_message.emit("No findings to jump to.")
            return
        self.pause()
        if direction > 0:
            target = next((x for x in frames if x > self.pos), frames[0])
        else:
            target = next((x for x in reversed(frames) if x < self.pos), frames[-1])
        self.seek(target)
        f = next(x for x in self.findings if x.get("frame_index") == target)
        self.select_finding(f["id"])

    def add_finding(self, label: str, confidence: float | None = None, note: str = "",
                    box: list[float] | None = None, status: str = "confirmed") -> int:
        """A clinician's finding at the frame on screen (clinician findings start confirmed)."""
        fid = self.ctx.store.add_finding(self.study_id, time_s=round(self.pos / self.fps, 3), frame_index=self.pos,
                                         label=label, confidence=confidence, source="clinician", note=note,
                                         box=box, status=status)
        self.reload_findings()
        self.select_finding(fid)
        self.show_frame(self.pos)
        return fid

    def edit_finding(self, fid: int, **changes: Any) -> None:
        if "box" in changes and isinstance(changes["box"], (list, tuple)):
            changes["box"] = json.dumps(list(changes["box"]))
        self.ctx.store.update_finding(fid, **changes)
        self.reload_findings()
        self.show_frame(self.pos)

    def set_status_selected(self, status: str) -> None:
        f = self.selected_finding()
        if f is None:
            self.status_message.emit("Select a finding first.")
            return
        self.edit_finding(f["id"], status=status)

    def delete_selected(self) -> None:
        f = self.selected_finding()
        if f is None:
            return
        self.ctx.store.delete_finding(f["id"])
        self.reload_findings()
        self.show_frame(self.pos)

    def add_dialog(self) -> None:
        if self.study_id is None:
            return
        self.pause()
        dlg = FindingDialog(self, f"Add finding at {fmt_time(self.pos / self.fps)} (frame {self.pos})")
        if dlg.exec():
            self.add_finding(**dlg.values())

    def edit_dialog(self) -> None:
        f = self.selected_finding()
        if f is None:
            self.status_message.emit("Select a finding first.")
            return
        dlg = FindingDialog(self, f"Edit finding at {fmt_time(f.get('time_s'))}", f.get("label") or "",
                            f.get("confidence"), f.get("note") or "")
        if dlg.exec():
            self.edit_finding(f["id"], **dlg.values())

    # -- export ---------------------------------------------------------------------------------------
    def export_bundle(self, path: str | None = None, on_done=None):
        """Zip bundle + PDF (same name, .pdf) on a worker. Returns the job."""
        if self.study is None:
            return None
        if not path:
            default = str(paths.exports_dir() / f"{Path(self.study.name).stem}_endoscopy.zip")
            path, _ = QFileDialog.getSaveFileName(self, "Export endoscopy bundle", default, "Zip (*.zip)")
            if not path:
                return None
        from app.report import build_report
        from inference.endo.export import export_from_store

        study, sid, store = self.study, self.study_id, self.ctx.store
        zpath = Path(path)
        pdf = zpath.with_suffix(".pdf")
        extra = self.report_extra()

        def work(ctx):
            ctx.progress(0.1, "bundle")
            export_from_store(store, study, sid, zpath)
            ctx.progress(0.5, "PDF")
            build_report(study, store, sid, pdf, extra=extra)
            return zpath, pdf

        def done(out):
            self.status_message.emit(f"Exported {out[0]} and {out[1].name}")
            if on_done:
                on_done(out)

        return self.ctx.jobs.start("Exporting endoscopy bundle", work, on_result=done,
                                   on_error=lambda m: self.status_message.emit(f"export failed: {m}"))

    def report_extra(self) -> dict[str, Any]:
        return {"frame_index": self.pos}

    def shutdown(self) -> None:
        self.pause()
        self.set_live(False)
        if self.prefetch is not None:
            self.prefetch.close()
            self.prefetch = None

"""The endoscopy timeline: frame-quality bands, findings and the playhead; click or drag to seek."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import QWidget

from inference.endo.export import finding_span, fmt_time
from inference.endo.quality import STATUSES

QUALITY_COLOURS = {
    "ok": "#2f6f4f", "blur": "#d29922", "dark": "#3b4a8a", "overexposed": "#e6e6e6",
    "glare": "#39c5cf", "duplicate": "#6e7681", "live": "#2f6f4f",
}
STATUS_COLOURS = {"proposed": "#d29922", "confirmed": "#3fb950", "rejected": "#8b949e"}


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
        self.cuts: list[int] = []  # scene cuts of the review result: a finding never spans one
        self.selected_id: int | None = None
        self.images = False
        self.setToolTip("Click or drag to seek. Upper row: frame quality (white ticks: scene cuts); lower row: "
                        "findings (diamond: key frame; bar: the frames it was seen on).")

    def set_video(self, n: int, fps: float, images: bool = False) -> None:
        """``images``: a set of stills, whose axis counts images (1, 2, ...) rather than time."""
        self.n, self.fps, self.pos = n, fps, 0
        self.images = images
        self.bands, self.findings, self.cuts = [], [], []
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
        w = self.width() - self.LABEL_W - 8
        if self.images:  # a set of stills: image numbers, each at its slot's centre
            step = next((s for s in (1, 2, 5, 10, 20, 50, 100, 200, 500) if self.n / s <= max(w / 40, 1)), 1000)
            for k in range(0, self.n, step):
                x = self.x_of(k + 0.5)
                p.setPen(QColor("#444c56"))
                p.drawLine(QPointF(x, axis_y + 12), QPointF(x, f_y + f_h))
                p.setPen(QColor("#8b949e"))
                p.drawText(QRectF(x - 20, axis_y, 40, 12), Qt.AlignCenter, str(k + 1))
        else:  # axis ticks every 1/2/5/10/30/60... s, labelled mm:ss
            dur = self.n / self.fps if self.fps else 0
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
        # scene cuts: thin white ticks across the quality row
        p.setPen(QPen(QColor(255, 255, 255, 200), 1))
        for c in self.cuts:
            x = self.x_of(c)
            p.drawLine(QPointF(x, q_y - 2), QPointF(x, q_y + q_h + 2))
        # findings: the frames each was seen on (a bar), its key frame (a diamond)
        p.fillRect(QRectF(self.LABEL_W, f_y, w, f_h), QColor("#22272e"))
        for fd in self.findings:
            span = finding_span(fd)
            if span:
                c = QColor(STATUS_COLOURS.get(fd.get("status") or "proposed", "#d29922"))
                c.setAlpha(90)
                x0, x1 = self.x_of(span[0]) + 1, self.x_of(span[1] + 1) - 1  # a gap between findings that touch
                p.fillRect(QRectF(x0, f_y + f_h - 7, max(x1 - x0, 2.0), 5), c)
        p.setRenderHint(QPainter.Antialiasing)
        for fd in self.findings:
            x = self.x_of((fd.get("frame_index") or 0) + 0.5)  # the key frame's centre, as the play head
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
        where = f"image {fr + 1} of {self.n}" if self.images else f"{fmt_time(fr / self.fps)} · frame {fr}"
        self.setToolTip(where + (f" · {st}" if st else ""))
        if ev.buttons() & Qt.LeftButton:
            self.seek.emit(fr)


# -- finding editor -----------------------------------------------------------------------------

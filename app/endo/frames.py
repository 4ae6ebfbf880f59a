"""The endoscopy frame view: one RGB frame, the polyp mask and boxes of the findings on it."""
from __future__ import annotations


import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QWidget


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

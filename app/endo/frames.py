"""The endoscopy frame view: one RGB frame, the polyp mask (translucent fill + outline, drawn as smooth
polygons at any zoom) and boxes of the findings on it."""
from __future__ import annotations


import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QWidget

MASK_COLOUR = (57, 197, 207)  # cyan: distinct from mucosa, from the finding statuses and from the OSD


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).copy()


def mask_to_qimage(prob: np.ndarray, colour=(57, 197, 207)) -> QImage | None:
    """uint8 probability map -> ARGB overlay: fill (alpha 110) where p >= 0.5, opaque 1-px outline."""
    on = np.asarray(prob) >= 128
    if not on.any():
        return None
    h, w = on.shape
    edge = on & ~(np.pad(on, 1, mode="edge")[2:, 1:-1] & np.pad(on, 1, mode="edge")[:-2, 1:-1]
                  & np.pad(on, 1, mode="edge")[1:-1, 2:] & np.pad(on, 1, mode="edge")[1:-1, :-2])
    argb = np.zeros((h, w, 4), np.uint8)  # little-endian ARGB32 = B, G, R, A in memory
    argb[..., 0], argb[..., 1], argb[..., 2] = colour[2], colour[1], colour[0]
    argb[..., 3] = np.where(edge, 255, np.where(on, 110, 0)).astype(np.uint8)
    argb[..., :3] = (argb[..., :3].astype(np.uint16) * argb[..., 3:4] // 255).astype(np.uint8)  # premultiplied
    argb = np.ascontiguousarray(argb)
    return QImage(argb.data, w, h, 4 * w, QImage.Format_ARGB32_Premultiplied).copy()


# -- video surface ------------------------------------------------------------------------------
class FrameView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setMinimumSize(320, 240)
        self.image: QImage | None = None
        self.boxes: list[tuple[list[float], str, str, bool]] = []  # box, text, colour, dashed
        self.osd = ""
        self.osd_warn = ""
        self.mask_polys: list[np.ndarray] = []  # outline polygons in fractions of the frame
        self.mask_opacity = 0.35
        self.mask_note = ""

    def set_frame(self, img: QImage, boxes, osd: str, warn: str = "", mask: np.ndarray | None = None,
                  mask_note: str = "") -> None:
        """``mask``: the polyp mask (bool, or a uint8 probability map thresholded at 128; any size: it is
        stretched over the frame as the model saw it), drawn as a translucent cyan fill with its outline."""
        from inference.endo.masks import contours

        self.image, self.boxes, self.osd, self.osd_warn = img, boxes, osd, warn
        self.mask_polys = contours(mask) if mask is not None else []
        self.mask_note = mask_note if self.mask_polys else ""
        self.update()

    def set_mask_opacity(self, opacity: float) -> None:
        self.mask_opacity = max(0.0, min(1.0, float(opacity)))
        self.update()

    @property
    def has_mask(self) -> bool:
        return bool(self.mask_polys)

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
        if self.mask_polys:
            path = QPainterPath()
            for poly in self.mask_polys:
                path.addPolygon(QPolygonF([QPointF(r.x() + x * r.width(), r.y() + y * r.height()) for x, y in poly]))
                path.closeSubpath()
            c = QColor(*MASK_COLOUR)
            fill = QColor(c)
            fill.setAlphaF(self.mask_opacity)
            p.fillPath(path, fill)
            p.setPen(QPen(c, 2))
            p.setBrush(Qt.NoBrush)
            p.drawPath(path)
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
            # the label on a dark plate (readable on pink mucosa), kept inside the image
            fm = p.fontMetrics()
            tw, th = fm.horizontalAdvance(text) + 8, fm.height() + 2
            tx = min(max(rr.x() - 1, r.x()), r.right() - tw)
            ty = rr.y() - th - 1 if rr.y() - th - 1 >= r.y() + 24 else rr.bottom() + 1  # under the box near the top
            ty = min(ty, r.bottom() - th)
            p.fillRect(QRectF(tx, ty, tw, th), QColor(0, 0, 0, 160))
            p.drawText(QRectF(tx, ty, tw, th), Qt.AlignCenter, text)
        # OSD: time / frame top-left, quality warning top-right
        p.setPen(QColor("#ffffff"))
        p.fillRect(QRectF(r.x() + 4, r.y() + 4, p.fontMetrics().horizontalAdvance(self.osd) + 10, 18),
                   QColor(0, 0, 0, 150))
        p.drawText(QPointF(r.x() + 9, r.y() + 17), self.osd)
        if self.mask_note:  # where the mask comes from (a review result, live, a held frame)
            wdt = p.fontMetrics().horizontalAdvance(self.mask_note) + 10
            p.fillRect(QRectF(r.x() + 4, r.bottom() - 22, wdt, 18), QColor(0, 0, 0, 150))
            p.setPen(QColor(*MASK_COLOUR))
            p.drawText(QPointF(r.x() + 9, r.bottom() - 9), self.mask_note)
        if self.osd_warn:
            wdt = p.fontMetrics().horizontalAdvance(self.osd_warn) + 10
            p.fillRect(QRectF(r.right() - wdt - 4, r.y() + 4, wdt, 18), QColor(0, 0, 0, 150))
            p.setPen(QColor("#d29922"))
            p.drawText(QPointF(r.right() - wdt + 1, r.y() + 17), self.osd_warn)


# -- timeline -----------------------------------------------------------------------------------

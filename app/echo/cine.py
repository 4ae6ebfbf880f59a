"""Echo cine canvas: the loop's frames at their own aspect, the LV mask overlay and the draggable
sector crop box."""
from __future__ import annotations


import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import (QSizePolicy, QWidget)

from inference.echo.preprocess import CropBox, square_geometry

MASK_RGB = (61, 139, 253)


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



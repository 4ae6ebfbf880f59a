"""Modality icons drawn with QPainter: no image assets to ship or license."""
from __future__ import annotations

import functools

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPixmap

from app.theme import MODALITY_COLOURS, MODALITY_GLYPHS


@functools.lru_cache(maxsize=None)
def modality_icon(modality: str, size: int = 32) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    p.setBrush(QColor(MODALITY_COLOURS.get(modality, "#8b949e")))
    p.setPen(Qt.NoPen)
    p.drawRoundedRect(QRectF(1, 1, size - 2, size - 2), 6, 6)
    f = QFont()
    f.setBold(True)
    f.setPixelSize(int(size * 0.34))
    p.setFont(f)
    p.setPen(QColor("white"))
    p.drawText(QRectF(0, 0, size, size), Qt.AlignCenter, MODALITY_GLYPHS.get(modality, "?"))
    p.end()
    return QIcon(pm)


@functools.lru_cache(maxsize=1)
def app_icon() -> QIcon:
    size = 64
    pm = QPixmap(size, size)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    p.setBrush(QColor("#1f3a5f"))
    p.setPen(QColor("#3d8bfd"))
    p.drawRoundedRect(QRectF(2, 2, size - 4, size - 4), 12, 12)
    p.setPen(QColor("white"))
    f = QFont()
    f.setBold(True)
    f.setPixelSize(34)
    p.setFont(f)
    p.drawText(QRectF(0, 0, size, size), Qt.AlignCenter, "L")
    p.end()
    return QIcon(pm)

"""Keyboard shortcuts as QActions with a description, so Help ▸ Keyboard shortcuts lists exactly the keys
that work (``app.widgets.shortcuts`` reads them back from the widgets)."""
from __future__ import annotations

from typing import Callable, Iterable

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QWidget


def add_keys(widget: QWidget, entries: Iterable[tuple[str, str, Callable]],
             context: Qt.ShortcutContext = Qt.WidgetWithChildrenShortcut) -> list[QAction]:
    """One QAction per (key, description, slot) on ``widget``, active while the focus is inside it (a text
    field inside keeps its typing keys: Qt gives plain keys to the editor first)."""
    out = []
    for key, text, slot in entries:
        a = QAction(text, widget)
        a.setShortcut(QKeySequence(key))
        a.setShortcutContext(context)
        a.triggered.connect(lambda _checked=False, f=slot: f())
        widget.addAction(a)
        out.append(a)
    return out

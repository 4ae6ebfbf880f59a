"""Telling the user without a modal loop.

- Start-up notices in the main window: a bar above the viewer that says what needs the user's attention
  (the last session crashed, the Qt binding is unsafe) without stopping anything. Each notice has its own
  Dismiss; the text can be selected and copied (a trace path for support).
- ``error_box``: a non-modal message box for errors (a model that cannot run, a file that cannot be read).
"""
from __future__ import annotations

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QMainWindow, QMessageBox, QPushButton, QToolBar,
                               QWidget)

STYLE = ("QWidget#noticeRow { background: #3b2e0a; border: 1px solid #d29922; border-radius: 3px; }"
         " QLabel { color: #f0d58a; background: transparent; border: none; }")


class NoticeBar(QToolBar):
    def __init__(self, parent: QWidget | None = None):
        super().__init__("Notices", parent)
        self.setObjectName("noticeBar")
        self.setMovable(False)
        self.setFloatable(False)
        self.toggleViewAction().setVisible(False)  # not in the toolbar context menu
        self.rows: list[QWidget] = []
        self.hide()

    def add(self, text: str, error: bool = False) -> QLabel:
        row = QWidget()
        row.setObjectName("noticeRow")
        row.setStyleSheet(STYLE)
        lay = QHBoxLayout(row)
        lay.setContentsMargins(8, 4, 4, 4)
        row.setAttribute(Qt.WA_StyledBackground, True)
        label = QLabel(("⚠ " if error else "") + text)
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        # a toolbar lays its widgets out at their size hint: give the text a sensible width to wrap at,
        # or it is wrapped word by word into a tall box
        label.setMinimumWidth(min(900, max(420, (self.parentWidget() or row).width() - 160)))
        lay.addWidget(label, 1)
        btn = QPushButton("Dismiss")
        lay.addWidget(btn, 0, Qt.AlignVCenter)
        action = self.addWidget(row)
        self.rows.append(row)

        def dismiss() -> None:
            self.removeAction(action)
            self.rows.remove(row)
            row.deleteLater()
            if not self.rows:
                self.hide()

        btn.clicked.connect(dismiss)
        self.show()
        return label

    def texts(self) -> list[str]:
        return [r.findChild(QLabel).text() for r in self.rows]


def notice_bar(win: QMainWindow) -> NoticeBar:
    """The window's notice bar (created on first use, on its own line above the viewer)."""
    bar = win.findChild(NoticeBar, "noticeBar")
    if bar is None:
        bar = NoticeBar(win)
        win.addToolBarBreak(Qt.TopToolBarArea)
        win.addToolBar(Qt.TopToolBarArea, bar)
    return bar


def post(win: QMainWindow, text: str, error: bool = False) -> None:
    """Show a notice in the window's bar (it stays until dismissed)."""
    notice_bar(win).add(text, error=error)


def error_box(parent: QWidget, text: str) -> QMessageBox:
    """An error the user must see, in a window that does not block: no nested event loop, so playback
    timers, workers and their results carry on (and cannot fire into a view torn down meanwhile). One
    box per window; a new error while it is open is added to it (the last few are kept)."""
    box = getattr(parent, "_error_box", None)
    if box is None or not shiboken6.isValid(box):
        box = QMessageBox(QMessageBox.Warning, "Lightbox", "", QMessageBox.Ok, parent)
        box.setWindowModality(Qt.NonModal)
        box.setTextInteractionFlags(Qt.TextSelectableByMouse)
        box.finished.connect(lambda _r: setattr(box, "lines", []))
        box.lines = []
        parent._error_box = box
    box.lines = (box.lines + [text])[-5:]
    box.setText("\n\n".join(box.lines))
    box.show()
    box.raise_()
    return box

"""Start-up notices in the main window: a bar above the viewer that says what needs the user's attention
(the last session crashed, the Qt binding is unsafe) without a modal box and without stopping anything.
Each notice has its own Dismiss; the text can be selected and copied (a trace path for support)."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QMainWindow, QPushButton, QToolBar, QWidget

STYLE = ("QWidget#noticeRow { background: #3b2e0a; border: 1px solid #d29922; border-radius: 3px; }"
         " QLabel { color: #f0d58a; }")


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
        label = QLabel(("⚠ " if error else "") + text)
        label.setWordWrap(True)
        label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(label, 1)
        btn = QPushButton("Dismiss")
        lay.addWidget(btn, 0, Qt.AlignTop)
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
    """Show a notice in the window's bar and in the status bar for a moment."""
    notice_bar(win).add(text, error=error)
    win.statusBar().showMessage(text, 15000)

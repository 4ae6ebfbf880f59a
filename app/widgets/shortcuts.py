"""Help ▸ Keyboard shortcuts: read from the live QActions, QShortcuts and buttons of the main window and
of every viewer, so the list can never disagree with the keys that work."""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import (QAbstractButton, QDialog, QDialogButtonBox, QHeaderView, QMenu, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from app.widgets import user_state


@dataclass
class Shortcut:
    section: str  # "File", "Patients", "ECG viewer" …
    keys: str  # as Qt writes it on this platform ("Ctrl+O")
    text: str  # what it does
    source: object  # the QAction / QShortcut / button it came from


def _clean(text: str) -> str:
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&").rstrip(".… ")


def menu_shortcuts(menubar) -> list[Shortcut]:
    out = []

    def walk(menu: QMenu, path: str) -> None:
        for a in menu.actions():
            if a.menu() is not None:
                walk(a.menu(), f"{path} ▸ {_clean(a.menu().title())}")
            elif not a.isSeparator():
                for seq in a.shortcuts():
                    out.append(Shortcut(path, seq.toString(QKeySequence.NativeText), _clean(a.text()), a))
                if not a.shortcuts():
                    out.append(Shortcut(path, "", _clean(a.text()), a))

    for top in menubar.actions():
        if top.menu() is not None:
            walk(top.menu(), _clean(top.menu().title()))
    return out


def widget_shortcuts(w: QWidget, section: str) -> list[Shortcut]:
    """Keys a widget answers to: its own and its children's QActions with a shortcut, QShortcuts (their
    whatsThis says what they do) and buttons with a shortcut."""
    out = []
    seen = set()
    for a in [*w.actions(), *(x for c in w.findChildren(QWidget) for x in c.actions())]:
        if id(a) in seen or not a.shortcuts() or a.menu() is not None:
            continue
        seen.add(id(a))
        for seq in a.shortcuts():
            out.append(Shortcut(section, seq.toString(QKeySequence.NativeText), _clean(a.text()), a))
    for sc in w.findChildren(QShortcut):
        if not sc.key().isEmpty():
            out.append(Shortcut(section, sc.key().toString(QKeySequence.NativeText),
                                sc.whatsThis() or sc.objectName() or "(no description)", sc))
    for b in w.findChildren(QAbstractButton):
        if not b.shortcut().isEmpty():
            out.append(Shortcut(section, b.shortcut().toString(QKeySequence.NativeText),
                                _clean(b.toolTip().split(" (")[0] or b.text()), b))
    return out


def all_shortcuts(win) -> list[Shortcut]:
    """The main window's menu actions, then each viewer's keys (every modality's viewer is built for it)."""
    from app.modalities import TABLE
    from inference.study import MODALITY_TITLES

    out = menu_shortcuts(win.menuBar())
    for m in TABLE:
        v = win.viewer_for(m.key)
        out += widget_shortcuts(v, f"{MODALITY_TITLES[m.key]} viewer (while it has the focus)")
    return out


class ShortcutsDialog(QDialog):
    def __init__(self, win, parent: QWidget | None = None):
        super().__init__(parent or win)
        self.setWindowTitle("Keyboard shortcuts — Lightbox")
        self.entries = [e for e in all_shortcuts(win) if e.keys]
        lay = QVBoxLayout(self)
        rows: list[tuple[str, str] | str] = []
        for e in self.entries:  # a heading row per menu or viewer, then its keys
            if not rows or self._section(rows) != e.section:
                rows.append(e.section)
            rows.append((e.keys, e.text))
        t = QTableWidget(len(rows), 2)
        t.setHorizontalHeaderLabels(["Keys", "Does"])
        t.verticalHeader().hide()
        t.setEditTriggers(QTableWidget.NoEditTriggers)
        t.setWordWrap(True)
        bold = QFont(t.font())
        bold.setBold(True)
        for r, row in enumerate(rows):
            if isinstance(row, str):
                it = QTableWidgetItem(row)
                it.setFont(bold)
                t.setItem(r, 0, it)
                t.setSpan(r, 0, 1, 2)
                continue
            for c, v in enumerate(row):
                it = QTableWidgetItem(v)
                if c == 0:
                    it.setTextAlignment(Qt.AlignCenter)
                t.setItem(r, c, it)
        hh = t.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.Stretch)
        t.verticalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table = t
        lay.addWidget(t, 1)
        bb = QDialogButtonBox(QDialogButtonBox.Close)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)
        user_state.restore(self, "shortcuts", (640, 900))

    @staticmethod
    def _section(rows) -> str:
        return next(r for r in reversed(rows) if isinstance(r, str))

    def done(self, r: int) -> None:
        user_state.save(self, "shortcuts")
        super().done(r)


def show_shortcuts(win) -> ShortcutsDialog:
    d = ShortcutsDialog(win)
    d.setAttribute(Qt.WA_DeleteOnClose)
    d.show()
    return d


"""FlowLayout: a toolbar row that wraps onto the next line when the window is narrow (Qt's flow-layout
example), so a viewer's controls never force the window wider than a reading-room laptop screen."""
from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QSizePolicy, QStyle


class FlowLayout(QLayout):
    def __init__(self, parent=None, spacing: int = 4):
        super().__init__(parent)
        self._items = []
        self.setContentsMargins(0, 0, 0, 0)
        self.setSpacing(spacing)

    def addItem(self, item):
        self._items.append(item)

    def addStretch(self, _stretch: int = 0) -> None:
        """A flow packs its items from the left: no stretch (so it can stand in for a QHBoxLayout)."""

    def count(self):
        return len(self._items)

    def itemAt(self, i):
        return self._items[i] if 0 <= i < len(self._items) else None

    def takeAt(self, i):
        return self._items.pop(i) if 0 <= i < len(self._items) else None

    def expandingDirections(self):
        return Qt.Orientation(0)

    def hasHeightForWidth(self):
        return True

    def heightForWidth(self, width):
        return self._do_layout(QRect(0, 0, width, 0), True)

    def setGeometry(self, rect):
        super().setGeometry(rect)
        self._do_layout(rect, False)

    def sizeHint(self):
        shown = [i for i in self._items if not i.isEmpty()]
        w = sum(i.sizeHint().width() + self.spacing() for i in shown)
        h = max((i.sizeHint().height() for i in shown), default=0)
        return QSize(w, h)

    def minimumSize(self):
        size = QSize()
        for item in self._items:
            size = size.expandedTo(item.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _do_layout(self, rect, test_only):
        """Items left to right, wrapping; each centred in its line's height (a check box beside buttons)."""
        x, y, line_h = rect.x(), rect.y(), 0
        sp = self.spacing()
        placed, lines = [], []  # (item, x, y of its line, hint); the height of each line
        for item in self._items:
            if item.isEmpty():  # a hidden widget takes no room, not even its spacing
                continue
            wid = item.widget()
            space_x = sp if sp >= 0 else wid.style().layoutSpacing(QSizePolicy.PushButton, QSizePolicy.PushButton, Qt.Horizontal)
            hint = item.sizeHint()
            next_x = x + hint.width() + space_x
            if next_x - space_x > rect.right() and line_h > 0:
                lines.append(line_h)
                x = rect.x()
                y = y + line_h + sp
                next_x = x + hint.width() + space_x
                line_h = 0
            placed.append((item, x, y, len(lines), hint))
            x = next_x
            line_h = max(line_h, hint.height())
        lines.append(line_h)
        if not test_only:
            for item, ix, iy, line, hint in placed:
                item.setGeometry(QRect(QPoint(ix, iy + (lines[line] - hint.height()) // 2), hint))
        return y + line_h - rect.y()

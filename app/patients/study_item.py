"""How a study reads in the study list: its name, then the date and its key result, the result in the
colour of its own verdict (abnormal red, borderline amber, normal green; no verdict: plain), a
NOT CLINICAL tag in amber. Texts wrap to the list's width instead of being cut ("2026-12-03 · …"),
long file names anywhere (they have no spaces); rows grow to fit.

The item's text stays ``"name\\ndate · result"`` (search, tests, accessibility); the parts to paint are
in ``ROLE_PARTS``: a list of (text, colour or "") segments per line."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QRect, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QFontMetrics, QPainter
from PySide6.QtWidgets import QApplication, QStyle, QStyledItemDelegate, QStyleOptionViewItem, QTreeView

from app.theme import AMBER, MUTED, OK, TEXT, WARN

ROLE_PARTS = Qt.UserRole + 10
VERDICT_COLOURS = {"abnormal": WARN, "borderline": AMBER, "normal": OK}
FLAGS = int(Qt.TextWordWrap | Qt.TextWrapAnywhere)  # at word boundaries, or anywhere in a long file name
PAD = 3


def verdict_colour(verdict: str) -> str:
    return VERDICT_COLOURS.get(verdict or "", "")


def _flow(fm: QFontMetrics, width: int, lines, painter: QPainter | None = None, x0: int = 0, y0: int = 0,
          default: QColor | None = None) -> int:
    """Lay out (and paint when ``painter``) lines of (text, colour) segments in ``width`` px: a segment
    follows the previous one when it fits on that line, else starts a new one and wraps within the width.
    Returns the height used."""
    y = 0
    lh = fm.lineSpacing()
    width = max(width, 20)
    for segs in lines:
        x = 0
        line_h = lh
        for j, (text, colour) in enumerate(segs):
            if not text or (x == 0 and text.strip() == "·"):  # no separator at the start of a line
                continue
            w = fm.horizontalAdvance(text)
            if text.strip() == "·" and j + 1 < len(segs):  # nor at its end: it goes with what follows
                nxt = fm.horizontalAdvance(segs[j + 1][0])
                if x + w + nxt > width:
                    continue
            if x and x + w > width:  # onto the next line
                y += line_h
                x, line_h = 0, lh
            if w <= width - x:
                r = QRect(x0 + x, y0 + y, w + 1, lh)
                if painter is not None:
                    painter.setPen(QColor(colour) if colour else default)
                    painter.drawText(r, int(Qt.AlignLeft | Qt.AlignVCenter | Qt.TextDontClip), text)
                x += w
            else:  # longer than a line: wraps in the full width, the next segment after it
                r = fm.boundingRect(QRect(0, 0, width, 100000), FLAGS, text)
                if painter is not None:
                    painter.setPen(QColor(colour) if colour else default)
                    painter.drawText(QRect(x0, y0 + y, width, r.height()), FLAGS, text)
                y += r.height() - lh
                x = width  # what follows starts a new line
        y += line_h
    return y


class StudyDelegate(QStyledItemDelegate):
    """Paints study rows from ``ROLE_PARTS`` (other rows as Qt does, wrapped to the width)."""

    def __init__(self, view: QTreeView):
        super().__init__(view)
        self.view = view
        view.viewport().installEventFilter(self)
        self._relayout = QTimer(self, singleShot=True, interval=0, timeout=view.doItemsLayout)
        self._width = -1

    def eventFilter(self, obj: QObject, ev: QEvent) -> bool:
        if ev.type() == QEvent.Resize and obj is self.view.viewport() and ev.size().width() != self._width:
            self._width = ev.size().width()
            self._relayout.start()  # row heights follow the width the texts wrap to
        return False

    def _text_width(self, index) -> int:
        depth = 0
        p = index.parent()
        while p.isValid():
            depth += 1
            p = p.parent()
        v = self.view
        indent = v.indentation() * (depth + (1 if v.rootIsDecorated() else 0))
        icon = v.iconSize().width() + 6 if index.data(Qt.DecorationRole) is not None else 0
        return v.viewport().width() - indent - icon - 2 * PAD

    @staticmethod
    def _lines(index):
        parts = index.data(ROLE_PARTS)
        if parts:
            return parts
        return [[(line, "")] for line in (index.data(Qt.DisplayRole) or "").split("\n")]

    def sizeHint(self, option, index) -> QSize:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)  # the item's font as it will be painted (bold patient rows)
        fm = QFontMetrics(opt.font)
        h = _flow(fm, self._text_width(index), self._lines(index))
        icon = self.view.iconSize().height() if index.data(Qt.DecorationRole) is not None else 0
        return QSize(self._text_width(index), max(h, icon) + 2 * PAD)

    def paint(self, painter: QPainter, option, index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        style = opt.widget.style() if opt.widget else QApplication.style()
        text, opt.text = opt.text, ""
        style.drawPrimitive(QStyle.PE_PanelItemViewItem, opt, painter, opt.widget)
        r = opt.rect
        x = r.x() + PAD
        if not opt.icon.isNull():
            s = self.view.iconSize()
            opt.icon.paint(painter, QRect(x, r.y() + PAD, s.width(), s.height()))
            x += s.width() + 6
        painter.save()
        painter.setFont(opt.font)
        fore = index.data(Qt.ForegroundRole)
        default = fore.color() if fore is not None else QColor(TEXT)
        _flow(QFontMetrics(opt.font), self._text_width(index), self._lines(index) if text else [],
              painter, x, r.y() + PAD, default)
        painter.restore()


def study_parts(name: str, date: str, result: str, verdict: str, not_clinical: bool, analysed: bool):
    """The segments of a study row: name; date, then the result in its verdict's colour and the tag."""
    second = [(date, MUTED), (" · ", MUTED),
              (result, verdict_colour(verdict) if analysed else MUTED)]
    if not_clinical:
        second += [(" · ", MUTED), ("NOT CLINICAL", AMBER)]
    return [[(name, "")], second]

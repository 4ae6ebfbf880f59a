"""A patient's timeline: every study on one time axis, one row per modality, each marker with its key
result; small trend plots where a number repeats (EF over the years); a table with the change since
the previous study of the same modality. Clicking a study opens it (``study_activated``)."""
from __future__ import annotations

import datetime as _dt

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from app.patients.model import Entry, entries, trends
from app.theme import ACCENT, MODALITY_COLOURS, MUTED, PANEL, TEXT, WARN
from inference.patients import patient_label
from inference.study import MODALITIES, MODALITY_TITLES

ROW_H = 56
GUTTER = 118
PAD_R = 150
SAME_DAY_DX = 18  # studies of one modality on one day sit side by side, this far apart (px)


def _ordinal(day: str) -> float:
    try:
        return float(_dt.date.fromisoformat(day[:10]).toordinal())
    except ValueError:
        return float(_dt.date.today().toordinal())


def _ticks(lo: float, hi: float) -> list[tuple[float, str]]:
    """Date ticks: years over long spans, months over months, days over weeks."""
    a, b = _dt.date.fromordinal(int(lo)), _dt.date.fromordinal(int(hi))
    span = hi - lo
    out = []
    if span > 3 * 365:
        step = max(1, int(span / 365 / 8) + 1)
        for y in range(a.year + 1, b.year + 1, step):
            out.append((float(_dt.date(y, 1, 1).toordinal()), str(y)))
    elif span > 90:
        step = max(1, int(span / 30 / 8) + 1)
        y, m = a.year, a.month
        i = 0
        while True:
            m += 1
            if m > 12:
                y, m = y + 1, 1
            d = _dt.date(y, m, 1)
            if d > b:
                break
            if i % step == 0:
                out.append((float(d.toordinal()), d.strftime("%b %Y") if m == 1 or not out else d.strftime("%b")))
            i += 1
    else:
        step = max(1, int(span / 8) + 1)
        d = a
        while d <= b:
            out.append((float(d.toordinal()), d.strftime("%d %b")))
            d += _dt.timedelta(days=step)
    return out


class TimelineCanvas(QWidget):
    study_activated = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.items: list[Entry] = []
        self.rows: list[str] = []
        self.setMouseTracking(True)
        self.setMinimumHeight(140)
        self._hits: list[tuple[QRectF, Entry]] = []

    def set_entries(self, items: list[Entry]) -> None:
        self.items = items
        self.rows = [m for m in MODALITIES if any(e.modality == m for e in items)]
        self.setMinimumHeight(max(140, 36 + ROW_H * len(self.rows) + 28))
        self.updateGeometry()
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(800, 36 + ROW_H * max(1, len(self.rows)) + 28)

    def _range(self) -> tuple[float, float]:
        xs = [_ordinal(e.day) for e in self.items] or [_ordinal("")]
        lo, hi = min(xs), max(xs)
        pad = max(3.0, (hi - lo) * 0.06)
        return lo - pad, hi + pad

    def x_of(self, day: str) -> float:
        lo, hi = self._range()
        w = max(10.0, self.width() - GUTTER - PAD_R)
        return GUTTER + (_ordinal(day) - lo) / (hi - lo) * w

    def marker_positions(self) -> dict[int, QPointF]:
        """Where each study's marker is drawn (study id -> centre), for clicks and tests. Studies of one
        modality on one day are spread side by side around their day, never on top of each other."""
        out = {}
        same: dict[tuple[str, str], list[Entry]] = {}
        for e in self.items:
            same.setdefault((e.modality, e.day), []).append(e)
        for (m, day), group in same.items():
            group.sort(key=lambda e: (e.time, e.study_id))
            for k, e in enumerate(group):
                dx = (k - (len(group) - 1) / 2) * SAME_DAY_DX
                out[e.study_id] = QPointF(self.x_of(day) + dx, 24 + ROW_H * self.rows.index(m) + ROW_H / 2)
        return out

    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        p.fillRect(self.rect(), QColor(PANEL))
        if not self.items:
            p.setPen(QColor(MUTED))
            p.drawText(self.rect(), Qt.AlignCenter, "No studies for this patient.")
            return
        small = QFont(self.font())
        small.setPointSizeF(max(7.0, self.font().pointSizeF() * 0.85))
        bold = QFont(self.font())
        bold.setBold(True)
        fm = QFontMetrics(small)
        top = 24
        bottom = top + ROW_H * len(self.rows)
        lo, hi = self._range()
        # year / month grid
        p.setFont(small)
        for x_ord, text in _ticks(lo, hi):
            x = GUTTER + (x_ord - lo) / (hi - lo) * max(10.0, self.width() - GUTTER - PAD_R)
            p.setPen(QPen(QColor("#2d333b"), 1))
            p.drawLine(QPointF(x, top - 4), QPointF(x, bottom))
            p.setPen(QColor(MUTED))
            p.drawText(QRectF(x - 40, bottom + 4, 80, 16), Qt.AlignHCenter | Qt.AlignTop, text)
        # rows
        for i, m in enumerate(self.rows):
            y = top + ROW_H * i
            if i % 2:
                p.fillRect(QRectF(0, y, self.width(), ROW_H), QColor("#1b2025"))
            p.setPen(QColor(MODALITY_COLOURS.get(m, TEXT)))
            p.setFont(bold)
            p.drawText(QRectF(8, y, GUTTER - 12, ROW_H), Qt.AlignVCenter | Qt.AlignLeft, MODALITY_TITLES[m])
            p.setPen(QPen(QColor("#373e47"), 1))
            p.drawLine(QPointF(GUTTER, y + ROW_H / 2), QPointF(self.width() - PAD_R + 40, y + ROW_H / 2))
        # markers; labels above or below (whichever is free), cut only where the next labels begin
        self._hits = []
        pos = self.marker_positions()
        p.setFont(small)
        for m in self.rows:
            row = sorted((e for e in self.items if e.modality == m), key=lambda e: (pos[e.study_id].x(), e.study_id))
            free = {-1: -1e9, 1: -1e9}  # lane (above, below) -> x from which it is free
            for i, e in enumerate(row):
                c = pos[e.study_id]
                colour = QColor(MODALITY_COLOURS.get(e.modality, ACCENT))
                pen = QPen(QColor(WARN) if not e.clinical else colour.lighter(130), 2.5 if not e.clinical else 1.5)
                if not e.day_known:
                    pen.setStyle(Qt.DashLine)
                p.setPen(pen)
                p.setBrush(colour if e.day_known else Qt.NoBrush)
                p.drawEllipse(c, 7, 7)
                x0 = c.x() - 8
                lanes = [lane for lane in (-1, 1) if free[lane] <= x0]
                side = lanes[0] if lanes else min(free, key=free.get)
                # room: up to the marker after next (the next one takes the other lane), or the edge
                limit = pos[row[i + 2].study_id].x() - 12 if i + 2 < len(row) else self.width() - 6
                text = fm.elidedText(e.label, Qt.ElideRight, int(max(40.0, limit - x0)))
                w = fm.horizontalAdvance(text) + 4
                free[side] = x0 + w + 6
                ty = c.y() - 11 - fm.height() if side < 0 else c.y() + 10
                p.setPen(QColor(TEXT if e.key else MUTED))
                r = QRectF(x0, ty, w, fm.height())
                p.drawText(r, Qt.AlignLeft | Qt.AlignVCenter, text)
                self._hits.append((QRectF(c.x() - 10, c.y() - 10, 20, 20).united(r), e))

    def _hit(self, pt) -> Entry | None:
        for r, e in reversed(self._hits):
            if r.contains(QPointF(pt)):
                return e
        return None

    def mouseMoveEvent(self, ev) -> None:
        e = self._hit(ev.position())
        self.setCursor(Qt.PointingHandCursor if e else Qt.ArrowCursor)
        if e is not None:
            lines = [f"<b>{e.name}</b>", f"{MODALITY_TITLES[e.modality]} · {e.day}"
                     + ("" if e.day_known else " (no date in the file: day first opened)"),
                     e.label]
            if e.deltas:
                lines.append("since prior: " + ", ".join(e.deltas))
            if not e.clinical:
                lines.append("<font color='#e5534b'>NOT A CLINICAL RESULT</font>")
            QToolTip.showText(ev.globalPosition().toPoint(), "<br>".join(lines), self)
        else:
            QToolTip.hideText()

    def mousePressEvent(self, ev) -> None:
        e = self._hit(ev.position())
        if e is not None:
            self.study_activated.emit(e.study_id)


class TrendPlot(QWidget):
    """A small line plot of one number over time (EF over the years)."""

    def __init__(self, metric: str, points: list[tuple[str, float, int, str]], parent: QWidget | None = None):
        super().__init__(parent)
        self.metric_name = metric
        self.points = sorted(points)
        self.setMinimumSize(240, 170)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)  # fills the trend row's height
        self.setToolTip(f"{metric}: " + ", ".join(f"{d} {v:g}" for d, v, _, _ in self.points))

    def sizeHint(self) -> QSize:
        return QSize(420, 220)

    def paintEvent(self, ev) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        p.fillRect(self.rect(), QColor(PANEL))
        small = QFont(self.font())
        small.setPointSizeF(max(7.0, self.font().pointSizeF() * 0.85))
        p.setFont(small)
        fm = QFontMetrics(small)
        p.setPen(QColor(TEXT))
        p.drawText(QRectF(8, 4, self.width() - 16, 16), Qt.AlignLeft, f"{self.metric_name} over time")
        l, r, t, b = 34.0, self.width() - 22.0, 30.0 + fm.height(), self.height() - 22.0
        xs = [_ordinal(d) for d, *_ in self.points]
        ys = [v for _, v, _, _ in self.points]
        # one day's several values side by side (a few px apart), not on top of each other
        x_span = max(1.0, max(xs) - min(xs))
        nudge = 10.0 / max(1.0, r - l) * x_span
        seen: dict[float, int] = {}
        for i, x in enumerate(list(xs)):
            k = seen.get(x, 0)
            seen[x] = k + 1
            xs[i] = x + k * nudge
        x0, x1 = min(xs), max(xs)
        if x1 == x0:
            x0, x1 = x0 - 1, x1 + 1
        y0, y1 = min(ys), max(ys)
        pad = max((y1 - y0) * 0.15, abs(y1) * 0.05, 1e-3)
        y0, y1 = y0 - pad, y1 + pad

        def pt(x, y):
            return QPointF(l + (x - x0) / (x1 - x0) * (r - l), b - (y - y0) / (y1 - y0) * (b - t))

        p.setPen(QPen(QColor("#373e47"), 1))
        p.drawLine(QPointF(l, b), QPointF(r, b))
        p.drawLine(QPointF(l, t), QPointF(l, b))
        p.setPen(QColor(MUTED))
        p.drawText(QRectF(l - 30, b + 3, 90, 16), Qt.AlignLeft, self.points[0][0])
        p.drawText(QRectF(r - 90, b + 3, 100, 16), Qt.AlignRight, self.points[-1][0])
        colour = QColor(MODALITY_COLOURS.get(self.points[0][3], ACCENT))
        path = QPainterPath(pt(xs[0], ys[0]))
        for x, y in zip(xs[1:], ys[1:]):
            path.lineTo(pt(x, y))
        p.setPen(QPen(colour, 2))
        p.setBrush(Qt.NoBrush)
        p.drawPath(path)
        p.setBrush(colour)
        placed: list[QRectF] = []
        for x, y in zip(xs, ys):
            q = pt(x, y)
            p.drawEllipse(q, 3.5, 3.5)
            p.setPen(QColor(TEXT))
            label = f"{y:.0f}" if abs(y) >= 10 or self.metric_name.endswith("%") else f"{y:.2f}"
            box = QRectF(q.x() - 30, q.y() - 6 - fm.height(), 60, fm.height())
            if any(box.intersects(o) for o in placed):  # a neighbour's label is there: below the point
                box.moveTop(q.y() + 6)
            placed.append(box)
            p.drawText(box, Qt.AlignHCenter, label)
            p.setPen(QPen(colour, 2))


class PatientTimeline(QWidget):
    study_activated = Signal(int)
    compare_requested = Signal(int)  # study id
    edit_requested = Signal(int)  # patient id

    COLS = ("Date", "Modality", "Study", "Key result", "Since prior", "Status")

    def __init__(self, store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.patient_id: int | None = None
        self.items: list[Entry] = []
        lay = QVBoxLayout(self)
        head = QHBoxLayout()
        self.title = QLabel("")
        self.title.setObjectName("headline")
        self.subtitle = QLabel("")
        self.subtitle.setObjectName("muted")
        col = QVBoxLayout()
        col.addWidget(self.title)
        col.addWidget(self.subtitle)
        head.addLayout(col, 1)
        self.edit_btn = QPushButton("Correct details…")
        self.edit_btn.clicked.connect(lambda: self.patient_id is not None and self.edit_requested.emit(self.patient_id))
        head.addWidget(self.edit_btn, 0, Qt.AlignTop)
        lay.addLayout(head)
        split = QSplitter(Qt.Vertical)  # the reader decides how much room each part gets
        self.canvas = TimelineCanvas()
        self.canvas.study_activated.connect(self.study_activated)
        canvas_scroll = QScrollArea()
        canvas_scroll.setWidgetResizable(True)
        canvas_scroll.setWidget(self.canvas)
        self.canvas_scroll = canvas_scroll
        split.addWidget(canvas_scroll)
        self.trend_box = QWidget()
        self.trend_lay = QHBoxLayout(self.trend_box)
        self.trend_lay.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.trend_box)
        scroll.setMinimumHeight(150)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.trend_scroll = scroll
        split.addWidget(scroll)
        self.table = QTableWidget(0, len(self.COLS))
        self.table.setHorizontalHeaderLabels(self.COLS)
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(3, QHeaderView.Stretch)
        hh.setSectionResizeMode(4, QHeaderView.Stretch)
        self.table.setWordWrap(True)  # key results and changes wrap onto a second line, never cut
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.setMinimumHeight(120)
        self.table.cellDoubleClicked.connect(lambda r, _c: self.study_activated.emit(self.items[::-1][r].study_id))
        split.addWidget(self.table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setStretchFactor(2, 2)
        self.split = split
        lay.addWidget(split, 1)

    def set_patient(self, patient_id: int) -> None:
        self.patient_id = patient_id
        self.refresh()

    def refresh(self) -> None:
        if self.patient_id is None:
            return
        p = self.store.patient(self.patient_id) or {}
        self.items = entries(self.store, self.patient_id)
        self.title.setText(p.get("name") or p.get("external_id") or "(no name)")
        days = [e.day for e in self.items]
        mods = sorted({MODALITY_TITLES[e.modality] for e in self.items})
        self.subtitle.setText(f"{patient_label(p)} · {len(self.items)} stud{'y' if len(self.items) == 1 else 'ies'}"
                              + (f" · {min(days)} – {max(days)} · {', '.join(mods)}" if days else ""))
        self.canvas.set_entries(self.items)
        # the time axis never taller than its rows: the spare height goes to the trends and the table
        self.canvas_scroll.setMaximumHeight(self.canvas.sizeHint().height() + 2 * self.canvas_scroll.frameWidth())
        # the whole time axis, trends of a readable size, then the table in what is left
        total = max(self.split.height(), 500)
        axis = self.canvas.sizeHint().height() + 4
        trend = max(190, min(300, int(0.3 * total)))
        self.split.setSizes([axis, trend, max(140, total - axis - trend)])
        while self.trend_lay.count():
            w = self.trend_lay.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        tr = trends(self.items)
        self.trend_plots: list[TrendPlot] = []
        for metric, pts in tr.items():
            tp = TrendPlot(metric, pts)
            self.trend_plots.append(tp)
            self.trend_lay.addWidget(tp)
        if not tr:
            lab = QLabel("A trend appears here once a number (EF, AF risk, a score) is measured on two or more "
                         "studies of this patient.")
            lab.setObjectName("muted")
            lab.setWordWrap(True)
            self.trend_lay.addWidget(lab)
        self.trend_lay.addStretch(1)
        self.table.setRowCount(len(self.items))
        for r, e in enumerate(reversed(self.items)):  # newest first
            vals = [e.day + ("" if e.day_known else " (opened)"), MODALITY_TITLES[e.modality], e.name, e.label,
                    ", ".join(e.deltas), "" if e.clinical else "NOT A CLINICAL RESULT"]
            for c, v in enumerate(vals):
                it = QTableWidgetItem(v)
                if c == 5 and v:
                    it.setForeground(QColor(WARN))
                self.table.setItem(r, c, it)

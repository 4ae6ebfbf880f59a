"""Where the endoscopy viewer puts its panel (analysis, mask controls, findings) so the frame gets the room
(a mixin of EndoViewer).

The frame column (frame, timeline, transport) and the panel share one splitter. The panel stands
**beside** the frame (a column: analysis, findings table, the selected finding and buttons, one above the
other) for a square, 4:3 or 5:4 frame — the demo's round field, a still photograph — and **below** a wide
one (16:10, 16:9, as an HD video processor records) when that gives the picture more area on this viewer
(then its parts stand side by side and the timeline's colour legend moves under the timeline). The frame's
shape and the viewer's size decide, for each study and when the viewer is resized (with hysteresis), never
what an analysis writes into the panel. F (or the Findings button) folds the panel away and back. Its
width beside and height below, and whether it is folded, are remembered per user (app.widgets.user_state).
"""
from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtWidgets import QBoxLayout, QSplitter, QWidget

SIDE_WIDTH = 264  # the column's first width beside the frame
BELOW_HEIGHT = 190  # the pane's first height below the frame (it grows to what its texts need)
MIN_EXTENT = {Qt.Horizontal: 220, Qt.Vertical: 190}
WIDE = 1.45  # frames at least this wide for their height (16:10, 16:9) may have the panel below them
BELOW_ESTIMATE = 230  # the pane's likely height below the frame (its texts decide; Panel.fit_height)  # less and the panel's texts would be cut
KEYS = {Qt.Horizontal: "endo/panel_width", Qt.Vertical: "endo/panel_height"}
HYSTERESIS = 1.15  # the other place must give the frame this much more area before the panel moves


def frame_area(w: float, h: float, aspect: float) -> float:
    """The area an image of ``aspect`` (width / height) covers when fitted into w x h."""
    if w <= 0 or h <= 0:
        return 0.0
    s = min(w / aspect, h)
    return s * s * aspect


class Panel(QWidget):
    """The panel. Below the frame its parts stand side by side and their wrapped texts need more height as
    they get narrower: the panel's minimum height follows what its parts need at the widths they have (the
    splitter honours it), so no text is cut."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._fit_timer = QTimer(self, singleShot=True, interval=0)  # after the layout has settled
        self._fit_timer.timeout.connect(self.fit_height)
        self.fitted: list[QWidget] = []  # the parts whose texts must all show (the findings table scrolls)

    def event(self, ev) -> bool:
        if ev.type() in (QEvent.LayoutRequest, QEvent.Resize):
            self._fit_timer.start()
        return super().event(ev)

    def fit_height(self) -> None:
        lay = self.layout()
        need = 0
        if isinstance(lay, QBoxLayout) and lay.direction() == QBoxLayout.LeftToRight:
            need = max([p.heightForWidth(p.width()) if p.hasHeightForWidth() and p.width() > 0
                        else p.minimumSizeHint().height() for p in self.fitted if p.isVisible()] + [0])
        if need != self.minimumHeight():
            self.setMinimumHeight(need)


class PanesMixin:
    """Needs ``self.view`` (the FrameView), ``self.panel_btn`` (checkable) and ``self.status_message``."""

    def _make_panes(self, left: QWidget, info: QWidget, listing: QWidget, actions: QWidget) -> QSplitter:
        """``info``: analysis and mask controls; ``listing``: the findings table; ``actions``: the selected
        finding and the buttons. Beside the frame one above the other, below it side by side."""
        from app.widgets import user_state

        s = user_state.settings()
        self._extent = {o: max(MIN_EXTENT[o], int(s.value(k, d))) for (o, k), d in
                        zip(KEYS.items(), (SIDE_WIDTH, BELOW_HEIGHT))}
        self._folded = s.value("endo/panel_folded", False, type=bool)
        self._aspect = 1.0
        self.left = left
        self.info, self.finding_actions = info, actions
        self.side = Panel()  # the panel: its parts one above the other (beside) or side by side (below)
        self.side.setObjectName("endoPanel")
        self.side_lay = QBoxLayout(QBoxLayout.TopToBottom, self.side)
        self.side_lay.setContentsMargins(0, 0, 0, 0)
        self.side_lay.setSpacing(6)
        self.side.fitted = [info, actions]
        self.side_lay.addWidget(info)
        self.side_lay.addWidget(listing, 1)
        self.side_lay.addWidget(actions)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(left)
        split.addWidget(self.side)
        split.setStretchFactor(0, 1)  # a larger window enlarges the frame, not the panel
        split.setStretchFactor(1, 0)
        split.setCollapsible(0, False)
        split.setSizes([100000, 0 if self._folded else self._extent[Qt.Horizontal]])
        split.splitterMoved.connect(self._panel_moved)
        self.split = split
        self._arrange_timer = QTimer(split, singleShot=True, interval=0)  # after the resize has been laid out
        self._arrange_timer.timeout.connect(lambda: self._arrange())
        self.panel_btn.setChecked(not self._folded)
        return split

    @property
    def panel_place(self) -> str:
        return "beside" if self.split.orientation() == Qt.Horizontal else "below"

    def _panel_moved(self, *_args) -> None:
        n = self.split.sizes()[1]
        if n > 0:
            self._extent[self.split.orientation()] = n
        self._folded = n == 0
        self.panel_btn.blockSignals(True)
        self.panel_btn.setChecked(n > 0)
        self.panel_btn.blockSignals(False)

    def show_panel(self, on: bool) -> None:
        """The panel on (at its last size) or folded away (the frame column takes the viewer)."""
        sizes = self.split.sizes()
        self._folded = not on
        if on != (sizes[1] > 0):
            total = sum(sizes)
            n = min(self._extent[self.split.orientation()], total // 2) if on else 0
            self.split.setSizes([total - n, n])
        if self.panel_btn.isChecked() != on:
            self.panel_btn.setChecked(on)

    def set_frame_aspect(self, aspect: float) -> None:
        """A new study's frame shape (width / height): put the panel where the frame gets more room."""
        self._aspect = aspect if aspect > 0 else 1.0
        self._arrange(hysteresis=1.0)

    def _below_widths(self) -> tuple[int, int]:
        """The analysis and the actions columns' widths below the frame; the findings table gets the rest."""
        w = self.split.width()
        return max(240, w // 4), max(260, w // 3)

    def _arrange(self, hysteresis: float = HYSTERESIS) -> None:
        """Below for a wide frame (16:10, 16:9: aspect >= WIDE) when that gives it more area than beside,
        estimated with the pane at BELOW_ESTIMATE (its texts may make it taller); else beside. A frame's
        shape, not what the analysis writes into the panel, decides: the panel does not move as results come."""
        w, h = self.split.width(), self.split.height()
        if w < 100 or h < 100:
            return
        handle = self.split.handleWidth()
        col = w - self._extent[Qt.Horizontal] - handle
        beside = frame_area(col, h - self._chrome(col, False), self._aspect)
        below = frame_area(w, h - max(self._extent[Qt.Vertical], BELOW_ESTIMATE) - handle - self._chrome(w, True),
                           self._aspect)
        want = Qt.Vertical if self._aspect >= WIDE and below > hysteresis * beside else Qt.Horizontal
        if want == Qt.Horizontal and self.split.orientation() == Qt.Vertical and below > beside / hysteresis:
            return  # keep it below while that is about as good (no flipping at the edge)
        if want != self.split.orientation():
            self._place(want)

    def _chrome(self, width: int, legend: bool) -> int:
        """The frame column's height besides the frame at ``width``: header, timeline, transport (wrapped as
        that width makes it) and, with the panel below, the legend line."""
        lay = self.left.layout()
        h = n = 0
        for i in range(lay.count()):
            it = lay.itemAt(i)
            if it.widget() in (self.view, getattr(self, "legend", None)) or it.isEmpty():
                continue
            h += it.heightForWidth(width) if it.hasHeightForWidth() else it.sizeHint().height()
            n += 1
        lg = getattr(self, "legend", None)
        if legend and lg is not None and not lg.isHidden():
            h += lg.heightForWidth(width)
            n += 1
        return h + lay.spacing() * n

    def _place(self, o) -> None:
        folded = self._folded
        self.split.setOrientation(o)
        self.side_lay.setDirection(QBoxLayout.TopToBottom if o == Qt.Horizontal else QBoxLayout.LeftToRight)
        homes = getattr(self, "legend_homes", None)  # the timeline's colours: in the panel, or under the
        if homes:  # timeline when the panel is below (a line across the wide frame column, not four in the pane)
            for lay, _ in homes:
                lay.removeWidget(self.legend)
            dst, at = homes[1] if o == Qt.Vertical else homes[0]
            dst.insertWidget(at, self.legend)
        # below the frame: analysis | findings table | the selected finding and buttons, in readable columns
        for part, width in zip((self.info, self.finding_actions), self._below_widths()):
            part.setMaximumWidth(16777215 if o == Qt.Horizontal else width)
        self.side.fit_height()
        total = (self.split.width() if o == Qt.Horizontal else self.split.height()) - self.split.handleWidth()
        n = 0 if folded else min(self._extent[o], total // 2)
        self.split.setSizes([total - n, n])

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._arrange_timer.start()

    def save_panes(self) -> None:
        from app.widgets import user_state

        s = user_state.settings()
        for o, k in KEYS.items():
            s.setValue(k, int(self._extent[o]))
        s.setValue("endo/panel_folded", bool(self._folded))
        s.sync()

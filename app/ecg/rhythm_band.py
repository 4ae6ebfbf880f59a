"""The rhythm model's per-window labels as a coloured band: over the paper (the page on show) and over a
whole-recording overview strip (a decimated trace of the rhythm lead, the band under it, the page on
show outlined; click to jump there). Drawing only: the labels come from a stored ``ecg-rhythm`` Result."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont

from inference.ecg.rhythm import COLOURS, SHORT

BAND_MM = 5.0  # height of the band above the paper's top row


def envelope(x: np.ndarray, bins: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bin centre index, min, max) of ``x`` in ``bins`` equal bins: a long trace drawn at screen
    resolution without losing its spikes (bounded memory and drawing cost whatever the length)."""
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    bins = max(1, min(bins, n))
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    lo = np.minimum.reduceat(x, edges[:-1])
    hi = np.maximum.reduceat(x, edges[:-1])
    return (edges[:-1] + edges[1:]) / 2.0, lo, hi


def band_segments(windows: list[dict], t0: float, t1: float) -> list[tuple[float, float, str, float]]:
    """(start, end, label, probability of the label) of each band segment overlapping [t0, t1]."""
    out = []
    for w in windows or []:
        a, b = max(t0, float(w["start_s"])), min(t1, float(w["end_s"]))
        if b > a:
            out.append((a, b, w["label"], float(w["probabilities"].get(w["label"], 0.0))))
    return out


def segment_text(windows: list[dict], t_mid: float, label: str, p: float) -> str:
    """'N 93%', or 'N · 1 PB' for a window the model called other that holds isolated premature beats only."""
    for w in windows or []:
        if float(w["start_s"]) <= t_mid < float(w["end_s"]) and w.get("ectopic_beats"):
            return f"{SHORT.get(label, label)} · {w['ectopic_beats']} PB"
    return f"{SHORT.get(label, label)} {100 * p:.0f}%"


def colour(label: str, alpha: int = 255) -> QColor:
    c = QColor(COLOURS.get(label, "#888888"))
    c.setAlpha(alpha)
    return c


class PaperBand:
    """Band items in paper millimetres (x = time x speed after the left margin), above the top row."""

    def __init__(self, plot_item):
        self.pi = plot_item
        self.bars = pg.BarGraphItem(x0=[0], x1=[1], y0=[0], y1=[1], brush="w", pen=pg.mkPen("#ffffff", width=1))
        self.bars.setZValue(5)
        self.bars.hide()
        self.pi.addItem(self.bars)
        self.texts: list[pg.TextItem] = []

    def clear(self) -> None:
        self.bars.hide()
        for t in self.texts:
            self.pi.removeItem(t)
        self.texts = []

    def draw(self, windows: list[dict], t0: float, t1: float, left_mm: float, speed: float, y0: float,
             title: str) -> None:
        self.draw_rows(windows, [(t0, t1, y0)], left_mm, speed, title)

    def draw_rows(self, windows: list[dict], rows, left_mm: float, speed: float, title: str) -> None:
        """One band per paper row block: ``rows`` as (t_start, t_end, y0_mm); the title over the first."""
        self.clear()
        segs, x0, x1, ys = [], [], [], []
        for t0, t1, y0 in rows:
            for seg in band_segments(windows, t0, t1):
                segs.append(seg)
                x0.append(left_mm + (seg[0] - t0) * speed)
                x1.append(left_mm + (seg[1] - t0) * speed)
                ys.append(y0)
        if not segs:
            return
        self.bars.setOpts(x0=x0, x1=x1, y0=ys, y1=[y + BAND_MM - 1.0 for y in ys],
                          brushes=[colour(lab, 210) for _, _, lab, _ in segs])
        self.bars.show()
        font = QFont()
        font.setPointSize(8)
        font.setBold(True)
        for a, b, y0, (s0, s1, lab, p) in zip(x0, x1, ys, segs):
            if b - a < 12:  # too narrow for a label at any zoom
                continue
            t = pg.TextItem(segment_text(windows, (s0 + s1) / 2, lab, p), color="#ffffff", anchor=(0, 0.5))
            t.setFont(font)
            t.setPos(a + 1.0, y0 + (BAND_MM - 1.0) / 2)
            t.setZValue(6)
            self.pi.addItem(t)
            self.texts.append(t)
        t = pg.TextItem(title, color="#555555", anchor=(0, 1))
        t.setPos(left_mm, rows[0][2] + BAND_MM + 0.2)
        self.pi.addItem(t)
        self.texts.append(t)


class RhythmOverview(pg.PlotWidget):
    """The whole recording in one strip: rhythm-lead envelope, band, current page. Click to jump."""

    jump = Signal(float)  # seconds

    def __init__(self, parent=None):
        super().__init__(parent, background="#181c20")
        self.setFixedHeight(78)
        self.setMouseEnabled(x=False, y=False)
        pi = self.getPlotItem()
        pi.hideButtons()
        pi.setMenuEnabled(False)
        pi.hideAxis("left")
        pi.getAxis("bottom").setHeight(16)
        pi.setContentsMargins(0, 0, 0, 0)
        self.env = pg.PlotCurveItem(pen=pg.mkPen("#c9d1d9", width=1), connect="pairs")
        self.bars = pg.BarGraphItem(x0=[0], x1=[1], y0=[0], y1=[1], brush="w", pen=pg.mkPen(None))
        self.bars.hide()
        self.page = pg.LinearRegionItem(values=(0, 10), movable=False,
                                        brush=pg.mkBrush(255, 255, 255, 40), pen=pg.mkPen("#ffffff", width=1))
        for it in (self.bars, self.env, self.page):
            pi.addItem(it)
        self.duration = 0.0
        self.setToolTip("Whole recording: rhythm band (green normal, red AF, amber other, grey noisy) under the "
                        "rhythm lead; the outlined part is on the paper. Click to go there.")

    def set_trace(self, x: np.ndarray | None, fs: float, duration: float) -> None:
        self.duration = float(duration)
        if x is None or not np.isfinite(x).all():
            self.env.setData([], [])
        else:
            c, lo, hi = envelope(x, 1600)
            t = c / fs
            span = float(np.percentile(hi, 99) - np.percentile(lo, 1)) or 1.0
            mid = float(np.median((lo + hi) / 2))
            lo_n = np.clip((lo - mid) / span, -0.6, 0.6) + 0.55
            hi_n = np.clip((hi - mid) / span, -0.6, 0.6) + 0.55
            self.env.setData(np.repeat(t, 2), np.column_stack([lo_n, hi_n]).ravel())
        pi = self.getPlotItem()
        pi.setXRange(0, max(duration, 1e-3), padding=0)
        pi.setYRange(-0.45, 1.2, padding=0)

    def set_windows(self, windows: list[dict] | None) -> None:
        segs = band_segments(windows or [], 0.0, self.duration or 1e9)
        if not segs:
            self.bars.hide()
            return
        self.bars.setOpts(x0=[a for a, _, _, _ in segs], x1=[b for _, b, _, _ in segs],
                          y0=[-0.4] * len(segs), y1=[-0.1] * len(segs),
                          brushes=[colour(lab) for _, _, lab, _ in segs])
        self.bars.show()

    def set_page(self, t0: float, t1: float) -> None:
        self.page.setRegion((t0, t1))

    def mousePressEvent(self, ev):
        if ev.button() == Qt.LeftButton and self.duration > 0:
            p = self.getPlotItem().vb.mapSceneToView(self.mapToScene(ev.position().toPoint()))
            self.jump.emit(float(min(max(p.x(), 0.0), self.duration)))
            ev.accept()
            return
        super().mousePressEvent(ev)

"""ECG paper geometry: layouts, calipers, margins, the screen's mm, display-only filters, and the
pyqtgraph paper view. The pure helpers are tested without a display."""
from __future__ import annotations


import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

from inference.ecg import ecg2af as E


LEADS = E.LEADS
SPEEDS = (12.5, 25.0, 50.0)  # mm/s
GAINS = (5.0, 10.0, 20.0)  # mm/mV
STRIPS = "Rhythm strips"
LAYOUTS = ("3x4 + II", "12x1", "6x2", STRIPS)
FEW_LEADS = 6  # fewer leads than this open as rhythm strips (AliveCor, 2-lead Holter)
BLOCK_GAP_MM = 5.0  # gap above each later 10-s block of the rhythm strips (room for its rhythm band)
PAPER = "#fffaf5"
MINOR = "#f4c7c3"
MAJOR = "#e0837a"
TRACE = "#111111"
MISSING = "#9a3b30"
CALIPER = "#1565c0"
PEAK = "#1565c0"
WINDOW_S = 10.0
CAL_W_S = 0.2  # calibration pulse: 1 mV for 200 ms

# standard 3x4 arrangement: columns of (leads) over consecutive 2.5 s windows
GRID_3X4 = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
GRID_6X2 = (("I", "V1"), ("II", "V2"), ("III", "V3"), ("aVR", "V4"), ("aVL", "V5"), ("aVF", "V6"))



# -- pure helpers (tested without a display) -------------------------------------------------------
def caliper_readout(x1_mm: float, x2_mm: float, y1_mm: float, y2_mm: float, speed: float, gain: float) -> dict:
    """Interval (ms), rate (bpm) and amplitude (mV) between two caliper positions on the paper."""
    dt_ms = abs(x2_mm - x1_mm) / speed * 1000.0
    return {"dt_ms": dt_ms, "rate_bpm": 60000.0 / dt_ms if dt_ms > 0 else float("nan"),
            "dv_mv": abs(y2_mm - y1_mm) / gain}


def display_filter(sig: np.ndarray, fs: float, baseline: bool, mains_hz: float | None,
                   lowpass_hz: float | None = None) -> np.ndarray:
    """Display-only filters on a copy: 0.67 Hz zero-phase high-pass (baseline wander, the AHA limit for
    linear-phase filters), a 50/60 Hz notch and an optional low-pass (40 Hz "muscle" filter, or 100/150 Hz).
    NaN rows (missing leads) stay NaN."""
    from scipy import signal

    out = np.array(sig, dtype=np.float64, copy=True)
    ok = np.isfinite(out).all(axis=1)
    if not ok.any():
        return out
    x = out[ok]
    if baseline:
        sos = signal.butter(2, 0.67, btype="highpass", fs=fs, output="sos")
        x = signal.sosfiltfilt(sos, x, axis=1)
    if mains_hz and mains_hz < fs / 2:
        b, a = signal.iirnotch(mains_hz, 30.0, fs=fs)
        x = signal.filtfilt(b, a, x, axis=1)
    if lowpass_hz and lowpass_hz < fs / 2:
        sos = signal.butter(4, lowpass_hz, btype="lowpass", fs=fs, output="sos")
        x = signal.sosfiltfilt(sos, x, axis=1)
    out[ok] = x
    return out


def strip_blocks(n_leads: int) -> int:
    """Consecutive 10-s blocks per rhythm-strip page: 3 (30 s) for one lead, 2 for two, else 1."""
    return max(1, min(3, 4 // max(1, n_leads)))


def page_seconds(layout: str, n_leads: int) -> float:
    """Seconds of recording one page of ``layout`` shows."""
    return WINDOW_S * (strip_blocks(n_leads) if layout == STRIPS else 1)


def strip_panels(leads, gain: float, speed: float, t0: float):
    """Rhythm strips: only the leads the recording has, each a full-width 10-s row; a page is
    ``strip_blocks`` consecutive 10-s blocks, every lead of a block stacked at the same time, a gap
    above each later block for its rhythm band. Returns panels, (width, height, baselines) and the
    blocks as (t_start, t_end, y_top_mm)."""
    pitch = 3.0 * gain + 10.0
    left = left_margin(speed)
    leads = list(leads) or ["I"]
    nb = strip_blocks(len(leads))
    height = nb * len(leads) * pitch + (nb - 1) * BLOCK_GAP_MM
    panels, baselines, blocks = [], [], []
    y_top = height
    for b in range(nb):
        if b:
            y_top -= BLOCK_GAP_MM
        ts = t0 + b * WINDOW_S
        blocks.append((ts, ts + WINDOW_S, y_top))
        for r, lead in enumerate(leads):
            y = y_top - (r + 0.5) * pitch
            baselines.append(y)
            panels.append((lead, ts, ts + WINDOW_S, left, y, 0))
        y_top -= len(leads) * pitch
    return panels, (left + WINDOW_S * speed + 2, height, baselines), blocks


def layout_panels(layout: str, gain: float, speed: float, t0: float, rhythm_lead: str = "II", leads=None):
    """Panels as (lead, t_start, t_end, x0_mm, baseline_y_mm, column), plus (width_mm, height_mm, row_baselines).

    The calibration pulse sits left of every row, so the traces start after it at any paper speed.
    ``leads`` (the leads the recording has) is used by the rhythm-strip layout only.
    """
    if layout == STRIPS:
        panels, geo, _ = strip_panels(leads if leads is not None else LEADS, gain, speed, t0)
        return panels, geo
    pitch = 3.0 * gain + 10.0  # row height in mm: room for ±1.5 mV at any gain
    left = left_margin(speed)
    panels = []
    if layout == "12x1":
        rows = [(ld,) for ld in LEADS]
        col_s = WINDOW_S
    elif layout == "6x2":
        rows = GRID_6X2
        col_s = WINDOW_S / 2
    else:
        rows = GRID_3X4
        col_s = WINDOW_S / 4
    n_rows = len(rows) + (1 if layout == "3x4 + II" else 0)
    height = n_rows * pitch
    baselines = []
    for r, row in enumerate(rows):
        y = height - (r + 0.5) * pitch
        baselines.append(y)
        for c, lead in enumerate(row):
            ts = t0 + c * col_s
            panels.append((lead, ts, ts + col_s, left + c * col_s * speed, y, c))
    if layout == "3x4 + II":
        y = height - (len(rows) + 0.5) * pitch
        baselines.append(y)
        panels.append((rhythm_lead, t0, t0 + WINDOW_S, left, y, 0))
    width = left + WINDOW_S * speed + 2
    return panels, (width, height, baselines)


def left_margin(speed: float) -> float:
    return 5.0 + CAL_W_S * speed


def screen_px_per_mm(widget: QWidget | None = None) -> tuple[float, bool]:
    """Logical pixels per paper millimetre, and whether the screen really reported its size."""
    screen = (widget.screen() if widget is not None else None) or QGuiApplication.primaryScreen()
    if screen is not None:
        size = screen.physicalSize()
        geo = screen.geometry()
        if size.width() > 20 and geo.width() > 0:
            ppm = geo.width() / size.width()
            if 2.0 < ppm < 20.0:
                return ppm, True
    return 96.0 / 25.4, False


# -- the paper view ------------------------------------------------------------------------------
class _PaperView(pg.PlotWidget):
    def __init__(self, parent=None):
        super().__init__(parent, background=PAPER)
        self.setAntialiasing(True)
        pi = self.getPlotItem()
        pi.hideAxis("left")
        pi.hideAxis("bottom")
        pi.setMenuEnabled(False)
        pi.hideButtons()
        vb = pi.getViewBox()
        vb.setAspectLocked(True, ratio=1.0)
        vb.setMouseMode(pg.ViewBox.PanMode)
        vb.setDefaultPadding(0.0)
        self.vb = vb
        self.setFocusPolicy(Qt.StrongFocus)



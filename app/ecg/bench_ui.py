"""Timing of the ECG paper view, run by `lightbox bench` in a child process (inference never imports Qt)."""
from __future__ import annotations


import numpy as np

from app.ecg.viewer import EcgViewer


def bench_render(path: str, db: str) -> tuple[float, float, float]:
    """Offscreen render timings for ``lightbox bench``: first study, best and median layout switch (s)."""
    import time

    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from app.jobs import Jobs
    from app.store import Store
    from inference.ecg.reader import read
    from inference.registry import Registry

    app = QApplication.instance() or QApplication([])
    s = read(path)
    v = EcgViewer(AppContext(Store(db), Registry(), Jobs()))
    v.resize(1400, 900)
    v.show()
    app.processEvents()
    t0 = time.perf_counter()
    v.set_study(s, 1)
    app.processEvents()
    first = time.perf_counter() - t0
    ts = []
    for layout in ("12x1", "3x4 + II") * 5:
        t0 = time.perf_counter()
        v.set_layout(layout)
        v.grab()
        ts.append(time.perf_counter() - t0)
    v.ctx.jobs.wait(10000)
    return first, min(ts), float(sorted(ts)[len(ts) // 2])


def bench_pan(path: str, db: str, frames: int = 120) -> float:
    """Pan and zoom frames per second, offscreen: each frame moves the view and paints it (``grab``)."""
    import time

    from PySide6.QtWidgets import QApplication

    from app.context import AppContext
    from app.jobs import Jobs
    from app.store import Store
    from inference.ecg.reader import read
    from inference.registry import Registry

    app = QApplication.instance() or QApplication([])
    v = EcgViewer(AppContext(Store(db), Registry(), Jobs()))
    v.resize(1400, 900)
    v.show()
    v.set_study(read(path), 1)
    app.processEvents()
    vb = v.view.getPlotItem().getViewBox()
    (x0, x1), (y0, y1) = vb.viewRange()
    w = (x1 - x0) * 0.4
    t0 = time.perf_counter()
    for i in range(frames):
        dx = (x1 - x0 - w) * (0.5 + 0.5 * np.sin(i / 10))
        zoom = 1.0 + 0.2 * np.sin(i / 17)
        vb.setRange(xRange=(x0 + dx, x0 + dx + w * zoom), yRange=(y0, y1), padding=0)
        v.view.grab()
    fps = frames / (time.perf_counter() - t0)
    v.ctx.jobs.wait(10000)
    return fps

"""The original symptom, checked directly: two minutes of echo playback (6000 frames at 50 fps) must
leave the reference counts of None, True and False where they were. With PySide6 6.12.0 on Python 3.11
each frame took several references from None and the process aborted with ``none_dealloc`` after about
two minutes.

The frames are driven as the playback timer drives them (every frame repaints the image; every fifth
also moves the slider, the plot cursor and the position label, as the 10 Hz UI refresh does), without
waiting for real time."""
from __future__ import annotations

import gc
import sys
import time

from PySide6.QtWidgets import QApplication

SINGLETONS = {"None": None, "True": True, "False": False}


def echo_refcounts(viewer, frames: int = 6000) -> dict:
    """Play ``frames`` frames of the echo study shown in ``viewer``; the counts before and after."""
    app = QApplication.instance()
    n = len(viewer.frames)
    for i in range(50):  # warm-up
        viewer.show_frame(i % n)
        app.processEvents()
    gc.collect()
    before = {k: sys.getrefcount(v) for k, v in SINGLETONS.items()}
    t0 = time.perf_counter()
    for i in range(frames):
        viewer.show_frame(i % n, playing=i % 5 != 0)
        app.processEvents()
    seconds = time.perf_counter() - t0
    gc.collect()
    after = {k: sys.getrefcount(v) for k, v in SINGLETONS.items()}
    return {"frames": frames, "seconds": round(seconds, 2), "before": before, "after": after,
            "change": {k: after[k] - before[k] for k in SINGLETONS}}

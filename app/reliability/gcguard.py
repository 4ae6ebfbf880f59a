"""Cyclic garbage is collected on the UI thread only.

CPython runs its cyclic garbage collector on whichever thread happens to allocate when a generation's
count passes its threshold: in Lightbox that is usually a worker (neurokit2, pandas, ONNX pre-processing
allocate a lot). When the garbage includes a Qt object that Python owns (a window, a timer, a pyqtgraph
item or menu, a widget kept in a cycle by a lambda) shiboken frees the Python wrapper there and leaves the
C++ object for the main thread to delete later; the UI thread may meanwhile paint it or fire its timers
through the freed wrapper. Qt prints "Timers cannot be stopped from another thread" and the process
segfaults (reproduced by ``tests/soak/gc_repro.py``: every run without the guard).

``install()`` turns automatic collection off and collects from a timer on the UI thread instead, by
CPython's own rules (young generations by their thresholds; a full pass when the old generation has grown
by a quarter), plus a full pass at least every ``FULL_MAX_S`` seconds once anything has aged: in a quiet
session CPython's rule can take hours, and a closed window's cycles are freed only by a full pass. A full
pass costs a few hundred ms with torch and ONNX Runtime loaded, so never more than every ``FULL_MIN_S``. ``Jobs`` installs it
(whoever starts workers needs it); ``run_gui`` also freezes what start-up created (modules, classes: never
garbage), which keeps full collections short.
"""
from __future__ import annotations

import gc
import logging
import threading
import time

from PySide6.QtCore import QCoreApplication, QObject, QTimer

from app.reliability import memory

log = logging.getLogger(__name__)

INTERVAL_MS = 100
FULL_MIN_S = 60.0    # full collections at most this often
FULL_MAX_S = 600.0   # and at least this often once anything has aged into the old generation
GROWTH = 0.25        # in between, when the old generation has grown by this fraction (CPython's own rule)


class _Guard(QObject):
    def __init__(self, app: QObject):
        super().__init__(app)
        self.thresholds = gc.get_threshold()
        self.last_full = time.monotonic()
        self.collections = [0, 0, 0]
        self.full_ms: list[float] = []  # the last full collections' durations (the soak reports them)
        self.trim_ms: list[float] = []  # and the heap trims after them
        self.old_after_full = len(gc.get_objects(2))
        self.checks = 0
        self.timer = QTimer(self)
        self.timer.setInterval(INTERVAL_MS)
        self.timer.timeout.connect(self.collect)
        self.timer.start()
        gc.disable()

    def collect(self) -> None:
        """What is due (called on the UI thread; cheap when nothing is): the young generations by CPython's
        thresholds; a full collection when the old generation has grown by a quarter since the last one
        (CPython's rule, which keeps full passes rare as the session's long-lived objects grow), and in any
        case every ``FULL_MAX_S`` once anything has aged, so a closed window's cycles do not wait for hours."""
        if threading.current_thread() is not threading.main_thread():
            return
        t0, t1, t2 = self.thresholds
        c0, c1, c2 = gc.get_count()
        gen = -1
        if c0 > t0:
            gen = 0
            if c1 >= t1:
                gen = 1
        since = time.monotonic() - self.last_full
        if c2 > 0 and since >= FULL_MIN_S and (since >= FULL_MAX_S or (c2 >= t2 and self._old_grown())):
            gen = 2
        if gen < 0:
            return
        t = time.perf_counter()
        gc.collect(gen)
        self.collections[gen] += 1
        if gen == 2:
            self.last_full = time.monotonic()
            self.full_ms.append(round((time.perf_counter() - t) * 1000, 1))
            del self.full_ms[:-20]
            self.old_after_full = len(gc.get_objects(2))
            self.trim_ms.append(memory.trim())  # a closed study's freed pages back to the OS
            del self.trim_ms[:-20]

    def _old_grown(self) -> bool:
        self.checks += 1
        return len(gc.get_objects(2)) - self.old_after_full > GROWTH * self.old_after_full


_guard: list[_Guard] = []


def install(freeze: bool = False) -> bool:
    """Collect on the UI thread from now on (idempotent). Call on the UI thread once the QApplication
    exists. ``freeze``: move everything alive now out of the collector's sight (start-up objects: modules,
    classes, the window; the little garbage among them is never freed, once)."""
    app = QCoreApplication.instance()
    if app is None or threading.current_thread() is not threading.main_thread():
        return False
    if not _guard:
        _guard.append(_Guard(app))
        if not getattr(app, "_lightbox_gc_hooked", False):
            app.aboutToQuit.connect(uninstall)
            app._lightbox_gc_hooked = True
    if freeze:  # no collection first: that is a full pass over start-up's objects (a second on 2 busy cores)
        gc.freeze()
    return True


def collect_due() -> None:
    """Collect now if a generation is due (the UI thread calls this at natural points, e.g. when a job
    ends, so garbage does not wait for the next timer tick while the event loop is busy)."""
    if _guard:
        _guard[0].collect()


def full_collect() -> float:
    """A full collection and heap trim now, as the guard does at its full passes (the soak measures after
    this step); the collection's time in ms. UI thread only."""
    t = time.perf_counter()
    gc.collect()
    ms = round((time.perf_counter() - t) * 1000, 1)
    memory.trim()
    if _guard:
        g = _guard[0]
        g.last_full = time.monotonic()
        g.old_after_full = len(gc.get_objects(2))
    return ms


def uninstall() -> None:
    """Back to automatic collection (the app is quitting; workers have been waited for)."""
    while _guard:
        g = _guard.pop()
        g.timer.stop()
        g.deleteLater()
    gc.enable()


def installed() -> bool:
    return bool(_guard)

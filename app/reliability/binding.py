"""Does the installed Qt binding take references from None (or True/False)?

PySide6 6.12.0 on Python 3.11 drops one reference to ``None`` on every call of a void Qt method
(``QLabel.setText``, ``QSlider.setValue``, ``QWidget.update`` ...) and one to ``True`` on every
``Signal.emit``. These are ordinary objects on 3.11, so a playing echo loop (a few such calls per frame)
drives ``None``'s count to zero in about two minutes and the interpreter aborts with ``Fatal Python
error: none_dealloc`` (``bool_dealloc`` for ``True``). 6.11.3 (the pinned version) takes nothing.
``drift()`` measures the change of ``sys.getrefcount`` of None, True and False per call for the calls
the viewers make in their timers; ``startup_check()`` runs it briefly at start-up (a few hundred calls,
about a millisecond) so a wrong binding installed by hand is reported before it takes a session down.
``tests/test_qt_binding.py`` runs it longer in the suite. Measuring a leaking binding gives the
references back afterwards, so the check itself never aborts.

On Python >= 3.12 these singletons are immortal: their counts never change, a leak like 6.12's cannot
abort, and this check always passes (which is right: it checks for the crash, not for the defect).
"""
from __future__ import annotations

import gc
import logging
import sys
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger(__name__)

#: a call leaks when |drift| per call reaches this (a leaking binding measures -1.000; a sound one 0.000)
LEAK_PER_CALL = 0.5


@dataclass(frozen=True)
class Drift:
    name: str
    calls: int
    per_call: float  # of the singleton that moved most (negative: references taken)
    singleton: str = "None"

    @property
    def leaks(self) -> bool:
        return abs(self.per_call) >= LEAK_PER_CALL


#: the interpreter's shared singletons a C extension's missing Py_INCREF on a return value would drain
SINGLETONS = {"None": None, "True": True, "False": False}


def _counts() -> tuple[int, ...]:
    return tuple(sys.getrefcount(v) for v in SINGLETONS.values())


def probes() -> dict[str, Callable[[int], None]]:
    """name -> f(i): one void Qt call of the kind the viewers make in playback and paint timers.
    Needs a QApplication. The objects are created here and live as long as the returned closures."""
    from PySide6.QtCore import QPointF, QRectF, QTimer
    from PySide6.QtGui import QColor, QImage, QPainter, QPixmap
    from PySide6.QtWidgets import QGraphicsRectItem, QLabel, QProgressBar, QSlider, QWidget

    label, slider, widget, bar = QLabel(), QSlider(), QWidget(), QProgressBar()
    slider.setRange(0, 1000)
    bar.setRange(0, 1000)
    image = QImage(16, 16, QImage.Format_RGB888)
    pixmap = QPixmap(16, 16)
    timer = QTimer()
    timer.setInterval(60_000)
    item = QGraphicsRectItem(QRectF(0, 0, 4, 4))
    emitter = _emitter_class()()
    got: list[int] = []
    emitter.ping.connect(got.append)
    keep = (label, slider, widget, bar, image, pixmap, timer, item, emitter, got)

    def paint(i: int) -> None:
        p = QPainter(image)
        p.drawImage(QPointF(0, 0), image)
        p.end()

    def emit(i: int) -> None:
        emitter.ping.emit(i)
        got.clear()

    calls: dict[str, Callable[[int], None]] = {
        "QLabel.setText": lambda i: label.setText(str(i & 7)),
        "QSlider.setValue": lambda i: slider.setValue(i % 1000),
        "QWidget.update": lambda i: widget.update(),
        "QProgressBar.setValue": lambda i: bar.setValue(i % 1000),
        "QLabel.setPixmap": lambda i: label.setPixmap(pixmap),
        "QImage.fill": lambda i: image.fill(QColor(i & 255, 0, 0)),
        "QPixmap.fill": lambda i: pixmap.fill(QColor(0, i & 255, 0)),
        "QPainter.drawImage": paint,
        "QTimer.start": lambda i: timer.start(),
        "QTimer.stop": lambda i: timer.stop(),
        "QGraphicsItem.setPos": lambda i: item.setPos(float(i & 15), 0.0),
        "Signal.emit": emit,
    }
    for f in calls.values():  # the closures keep the objects alive as long as the dict lives
        f.__dict__["_keep"] = keep
    return calls


_EMITTER = []


def _emitter_class():
    """One QObject subclass with a signal, defined once (each new class stays registered with Qt)."""
    if not _EMITTER:
        from PySide6.QtCore import QObject, Signal

        class _Emitter(QObject):
            ping = Signal(int)

        _EMITTER.append(_Emitter)
    return _EMITTER[0]


def drift(calls: int = 2000, only: tuple[str, ...] | None = None,
          extra: dict[str, Callable[[int], None]] | None = None) -> list[Drift]:
    """sys.getrefcount(None) change per call, for each probe (and ``extra`` probes, e.g. a simulated
    leak in a test). Garbage collection is held off while measuring (it would free objects holding None)."""
    table = probes()
    if only:
        table = {k: v for k, v in table.items() if k in only}
    table.update(extra or {})
    out = []
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name, f in table.items():
            start = _counts()
            for i in range(20):  # warm-up: caches, first-call allocations
                f(i)
            before = _counts()
            done = 0
            while done < calls:  # in chunks, stopping early when it leaks: the check must not abort
                for i in range(done, min(calls, done + CHUNK)):
                    f(i)
                done = min(calls, done + CHUNK)
                if min(a - b for a, b in zip(_counts(), before)) <= -CHUNK // 2:
                    break
            after = _counts()
            moved = [a - b for a, b in zip(after, before)]
            k = max(range(len(moved)), key=lambda j: abs(moved[j]))
            out.append(Drift(name, done, moved[k] / done, list(SINGLETONS)[k]))
            for obj, a, b in zip(SINGLETONS.values(), after, start):
                _give_back(obj, b - a)
    finally:
        if was_enabled:
            gc.enable()
    return out


CHUNK = 100


def _give_back(obj: object, lost: int) -> None:
    """Return the references a leaking call took from a singleton, so measuring a bad binding cannot
    itself bring the count to zero (Python 3.11 aborts then)."""
    if lost <= 0 or sys.version_info >= (3, 12):
        return
    import ctypes

    incref = ctypes.pythonapi.Py_IncRef
    incref.argtypes = [ctypes.py_object]
    for _ in range(lost):
        incref(obj)


def version_line() -> str:
    try:
        import PySide6
        import shiboken6

        return (f"PySide6 {PySide6.__version__}, shiboken6 {shiboken6.__version__}, "
                f"Python {sys.version.split()[0]}")
    except Exception as e:  # pragma: no cover - Qt is always there in the app
        return f"Qt binding unknown ({e})"


def startup_check(calls: int = 200, extra: dict[str, Callable[[int], None]] | None = None) -> str | None:
    """A warning for the user (and the log) when the installed binding leaks None; None when it is sound.
    A few hundred calls of the probes that matter most: well under a millisecond."""
    try:
        leaks = [d for d in drift(calls, only=("QLabel.setText", "QSlider.setValue", "QWidget.update",
                                               "Signal.emit"), extra=extra) if d.leaks]
    except Exception as e:  # a self-check must never stop the app from starting
        log.warning("Qt binding self-check could not run: %s", e)
        return None
    if not leaks:
        return None
    what = ", ".join(f"{d.name} {d.per_call:+.2f} {d.singleton}" for d in leaks)
    msg = (f"The installed Qt binding ({version_line()}) loses references to shared objects on every call "
           f"({what} per call): a long session (echo or video playback, ECG panning) will abort. "
           "Reinstall Lightbox with `make setup` (it installs the tested versions from requirements.lock).")
    log.error("Qt binding self-check failed: %s", msg)
    return msg

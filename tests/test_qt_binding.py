"""The Qt binding must not take references from None/True/False (PySide6 6.12.0 on Python 3.11 did, on
every void call and every Signal.emit, and every long session aborted with ``none_dealloc``), and the
app must say so at start-up when a leaking binding is installed."""
from __future__ import annotations

import ctypes
import gc
import logging
import sys

import pytest

from app.reliability import binding

leaky_python = pytest.mark.skipif(sys.version_info >= (3, 12),
                                  reason="None/True/False are immortal: a leak cannot be simulated (nor abort)")


def test_void_qt_calls_leave_none_true_false_alone(qapp):
    """setText, setValue, update, pixmap/image setters, painter, timers, item moves, signal emit:
    2000 calls each, as the viewers make them in their playback and paint timers."""
    drifts = binding.drift(2000)
    assert {d.name for d in drifts} >= {"QLabel.setText", "QSlider.setValue", "QWidget.update",
                                        "QLabel.setPixmap", "QImage.fill", "QTimer.start", "Signal.emit"}
    bad = [d for d in drifts if d.leaks or abs(d.per_call * d.calls) > 20]
    assert not bad, f"{binding.version_line()}: {bad}"
    assert all(d.calls == 2000 for d in drifts)


def _decref(obj):
    f = ctypes.pythonapi.Py_DecRef
    f.argtypes = [ctypes.py_object]
    return lambda i: f(obj)


@leaky_python
@pytest.mark.parametrize("singleton", [None, True])
def test_simulated_leak_is_measured_and_given_back(qapp, singleton):
    binding.drift(300, only=("QLabel.setText",), extra={"leak": _decref(singleton)})  # first-use allocations
    gc.collect()
    before = sys.getrefcount(singleton)
    d = binding.drift(300, only=("QLabel.setText",), extra={"leak": _decref(singleton)})
    gc.collect()
    after = sys.getrefcount(singleton)
    leak = next(x for x in d if x.name == "leak")
    assert leak.leaks and leak.per_call == pytest.approx(-1.0, abs=0.05) and leak.singleton == repr(singleton)
    assert leak.calls < 300  # stopped early: measuring a bad binding must not drain the count
    assert abs(after - before) < 10  # and the references were given back


@leaky_python
def test_startup_warns_on_screen_and_in_the_log_when_the_binding_leaks(qtbot, monkeypatch, caplog, tmp_path):
    from app.main import MainWindow
    from app.reliability import notices, startup
    from app.store import Store

    assert startup.checks(None) == []  # the installed binding is sound
    real = binding.startup_check
    monkeypatch.setattr(binding, "startup_check", lambda: real(extra={"simulated": _decref(None)}))
    with caplog.at_level(logging.ERROR, logger="app.reliability.binding"):
        found = startup.checks(None)
    assert len(found) == 1 and "simulated -" in found[0] and "None per call" in found[0] and "make setup" in found[0]
    assert any("self-check failed" in r.getMessage() for r in caplog.records)
    win = MainWindow(Store(tmp_path / "s.sqlite"))
    qtbot.addWidget(win)
    startup.show(win, found)
    win.show()
    bar = notices.notice_bar(win)
    assert bar.isVisible() and "simulated" in bar.texts()[0]
    assert "will abort" in bar.texts()[0]
    win.ctx.jobs.cancel_all()
    win.ctx.jobs.wait(10000)


def test_startup_check_is_cheap(qapp):
    import time

    binding.startup_check()
    t0 = time.perf_counter()
    assert binding.startup_check() is None
    assert time.perf_counter() - t0 < 0.5  # measured ~0.01 s; start-up must stay under 3 s


def test_qimage_over_a_numpy_buffer_keeps_the_buffer_alive(qapp):
    """The echo cine wraps each frame of the study's array in a QImage without copying; that is safe only
    because the binding holds a reference to the buffer for as long as the image (or a copy of it) lives."""
    import numpy as np
    from PySide6.QtGui import QImage

    a = np.zeros((8, 8, 3), np.uint8)
    a[2, 3] = (10, 20, 30)
    before = sys.getrefcount(a)
    img = QImage(a.data, 8, 8, 24, QImage.Format_RGB888)  # the memoryview is a temporary
    assert sys.getrefcount(a) == before + 1  # held through the image
    del a
    gc.collect()
    assert img.pixelColor(3, 2).getRgb()[:3] == (10, 20, 30)  # still the array's memory, still valid


@leaky_python
def test_widget_churn_never_takes_from_none(qapp):
    """Creating and deleting widgets (what opening and closing studies does) must never lower None's count:
    that is the direction that aborts. PySide6 6.11.3 on Python 3.11 *adds* one reference per QWidget
    created and deleted (a harmless excess that the soak's rising None count comes from; None is never
    freed by an excess); the test pins that measured figure so a binding change shows up here."""
    from PySide6.QtWidgets import QApplication, QWidget

    def churn(n):
        for _ in range(n):
            QWidget().deleteLater()
        QApplication.sendPostedEvents(None, 0)
        qapp.processEvents()
        gc.collect()

    churn(50)
    before = sys.getrefcount(None)
    churn(1000)
    per = (sys.getrefcount(None) - before) / 1000
    assert per >= -0.001, f"{binding.version_line()}: QWidget create+delete takes {per:+.3f} from None"
    assert per <= 1.001, f"{binding.version_line()}: QWidget create+delete adds {per:+.3f} to None (was +1.000)"

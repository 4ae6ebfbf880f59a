"""Worker jobs: results, progress, cancel and errors arrive on the UI thread as signals."""
from __future__ import annotations

import threading
import time

from app.jobs import Jobs
from inference.study import ReadError


def test_result_and_progress(qtbot):
    jobs = Jobs()
    seen, got = [], []

    def work(ctx):
        assert threading.current_thread() is not threading.main_thread()
        for i in range(3):
            ctx.progress(i / 3, f"step {i}")
        return 42

    jobs.start("t", work, on_result=got.append, on_progress=lambda f, t: seen.append(t))
    qtbot.waitUntil(lambda: got == [42] and not jobs.running, timeout=5000)
    assert seen == ["step 0", "step 1", "step 2"]


def test_cancel(qtbot):
    jobs = Jobs()
    cancelled, results = [], []

    def work(ctx):
        for _ in range(500):
            time.sleep(0.01)
            ctx.progress(0.5)
        return "finished"

    job = jobs.start("long", work, on_result=results.append, on_cancelled=lambda: cancelled.append(1))
    time.sleep(0.05)
    job.cancel()
    qtbot.waitUntil(lambda: cancelled == [1], timeout=5000)
    assert results == []


def test_errors_become_messages(qtbot):
    jobs = Jobs()
    errors = []
    jobs.start("bad", lambda ctx: (_ for _ in ()).throw(ReadError("/x/a.wav", "the file is empty")),
               on_error=errors.append)
    jobs.start("bug", lambda ctx: 1 / 0, on_error=errors.append)
    qtbot.waitUntil(lambda: len(errors) == 2, timeout=5000)
    assert "a.wav: the file is empty" in errors
    assert any("ZeroDivisionError" in e for e in errors)


def test_handler_exception_does_not_crash(qtbot):
    jobs = Jobs()

    def bad_handler(_):
        raise RuntimeError("view bug")

    jobs.start("t", lambda ctx: 1, on_result=bad_handler)
    qtbot.waitUntil(lambda: not jobs.running, timeout=5000)


def test_results_for_a_deleted_view_are_dropped(qtbot):
    """A viewer closed and deleted while its job runs: the result is dropped, not delivered to a dead
    widget (which raised 'Internal C++ object already deleted' inside the handler, or worse)."""
    import shiboken6
    from PySide6.QtWidgets import QLabel, QWidget

    jobs = Jobs()
    release = threading.Event()

    class View(QWidget):
        def __init__(self):
            super().__init__()
            self.label = QLabel(self)

        def start(self):
            def done(text):  # a closure over self, as viewers write them
                self.label.setText(text)
            jobs.start("t", lambda ctx: (release.wait(5), "late")[1], on_result=done)

    v = View()
    v.start()
    v.deleteLater()
    qtbot.waitUntil(lambda: not shiboken6.isValid(v), timeout=5000)
    release.set()
    qtbot.waitUntil(lambda: not jobs.running, timeout=5000)
    assert jobs.dropped == 1
    # a live view still gets its result, and an explicit owner counts too
    got = []
    w = QWidget()
    qtbot.addWidget(w)
    jobs.start("t", lambda ctx: 2, on_result=got.append, owner=w)
    qtbot.waitUntil(lambda: got == [2], timeout=5000)


def test_the_ui_thread_releases_what_a_job_holds(qtbot):
    """The last reference to a job's function (and the Qt objects its closure holds) goes on the UI
    thread: a QObject owned only by a job's closure is destroyed on the main thread, never a worker."""
    from PySide6.QtCore import QObject

    jobs = Jobs()
    where = []

    class Probe(QObject):
        pass

    for _ in range(20):
        p = Probe()  # Python-owned, no parent: its C++ destructor runs where its last reference goes
        p.destroyed.connect(lambda *_: where.append(threading.current_thread() is threading.main_thread()))
        jobs.start("t", lambda ctx, p=p: (time.sleep(0.001), p.objectName())[1], on_result=lambda r: None)
        del p
    qtbot.waitUntil(lambda: not jobs.running, timeout=10000)
    qtbot.wait(50)
    assert len(where) == 20 and all(where)


def test_collection_runs_on_the_ui_thread_only(qtbot):
    """Cyclic garbage made on a worker is collected on the UI thread (app.reliability.gcguard): a
    collection on a worker would run Qt destructors there."""
    import gc

    from app.reliability import gcguard

    Jobs()
    assert gcguard.installed() and not gc.isenabled()
    threads = []

    def cb(phase, info):
        if phase == "start":
            threads.append(threading.current_thread() is threading.main_thread())

    gc.callbacks.append(cb)
    try:
        def churn():
            for i in range(20000):
                d = {"i": i}
                d["self"] = d  # cycles: only the collector frees them
        t = threading.Thread(target=churn)
        t.start()
        t.join()
        qtbot.wait(300)  # the guard's timer
    finally:
        gc.callbacks.remove(cb)
    assert threads and all(threads)

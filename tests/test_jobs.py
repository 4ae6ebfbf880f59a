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

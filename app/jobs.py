"""The one way to run long work off the UI thread.

``Jobs.start(title, fn, on_result=..., on_error=...)`` runs ``fn(ctx)`` on a worker thread, where
``ctx`` is an ``inference.pipeline.JobContext`` (``ctx.progress(f, text)``, cancellation via
``ctx.check()``). Progress, results and errors come back to the UI thread as Qt signals; an
exception becomes a message, never a crash. GPU work is serialised in the runtimes (GPU_LOCK).
"""
from __future__ import annotations

import itertools
import logging
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from inference.pipeline import Cancelled, JobContext
from inference.study import ReadError
from inference.registry import WeightsError

log = logging.getLogger(__name__)


class _Signals(QObject):
    progress = Signal(int, float, str)
    result = Signal(int, object)
    error = Signal(int, str)
    cancelled = Signal(int)
    finished = Signal(int)


class _Runnable(QRunnable):
    def __init__(self, job_id: int, fn: Callable[[JobContext], Any], ctx: JobContext, signals: _Signals):
        super().__init__()
        self.job_id, self.fn, self.ctx, self.signals = job_id, fn, ctx, signals
        # Python owns the runnable (Jobs keeps it until the pool is idle) rather than Qt deleting its C++
        # half on the worker thread while Python may still hold the wrapper: one suspect of a rare crash
        # with two ECG viewers analysing at once (compare with prior). That crash is NOT fully explained:
        # tests/test_patients_ui.py's ECG compare test still crashed in 1 of 4 runs of a 4-file combination.
        self.setAutoDelete(False)

    @Slot()
    def run(self) -> None:
        try:
            out = self.fn(self.ctx)
        except Cancelled:
            self.signals.cancelled.emit(self.job_id)
        except (ReadError, WeightsError) as e:
            self.signals.error.emit(self.job_id, str(e))
        except MemoryError:
            self.signals.error.emit(self.job_id, "out of memory while running this job")
        except Exception as e:  # every other failure is still a message, with the trace in the log
            log.error("job %s failed:\n%s", self.job_id, traceback.format_exc())
            self.signals.error.emit(self.job_id, f"{type(e).__name__}: {e}")
        else:
            self.signals.result.emit(self.job_id, out)
        finally:
            self.signals.finished.emit(self.job_id)


@dataclass
class Job:
    id: int
    title: str
    ctx: JobContext
    progress: float = 0.0
    text: str = ""
    callbacks: dict[str, Callable] = field(default_factory=dict)

    def cancel(self) -> None:
        self.ctx.cancel()


class Jobs(QObject):
    """Owns the worker pool and the list of running jobs (the status bar shows them)."""

    changed = Signal()  # a job started, progressed or ended

    def __init__(self, parent: QObject | None = None, max_threads: int = 2):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self.signals = _Signals()
        self.signals.progress.connect(self._on_progress)
        self.signals.result.connect(self._on_result)
        self.signals.error.connect(self._on_error)
        self.signals.cancelled.connect(self._on_cancelled)
        self.signals.finished.connect(self._on_finished)
        self.running: dict[int, Job] = {}
        self._runnables: list[_Runnable] = []  # released once no worker thread is inside one
        self._ids = itertools.count(1)

    def start(self, title: str, fn: Callable[[JobContext], Any], *,
              on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[str], None] | None = None,
              on_progress: Callable[[float, str], None] | None = None,
              on_cancelled: Callable[[], None] | None = None) -> Job:
        job_id = next(self._ids)
        ctx = JobContext(progress=lambda f, t, _id=job_id: self.signals.progress.emit(_id, f, t),
                         cancel=threading.Event())
        job = Job(job_id, title, ctx, callbacks={
            "result": on_result, "error": on_error, "progress": on_progress, "cancelled": on_cancelled})
        self.running[job_id] = job
        runnable = _Runnable(job_id, fn, ctx, self.signals)
        self._runnables.append(runnable)
        self.pool.start(runnable)
        self.changed.emit()
        return job

    def cancel_all(self) -> None:
        for j in list(self.running.values()):
            j.cancel()

    def wait(self, msecs: int = -1) -> bool:
        done = self.pool.waitForDone(msecs)
        if done:
            self._runnables.clear()
        return done

    # -- signal handlers (UI thread) ------------------------------------------------------
    def _cb(self, job_id: int, name: str, *args) -> None:
        job = self.running.get(job_id)
        cb = job.callbacks.get(name) if job else None
        if cb:
            try:
                cb(*args)
            except Exception:  # a view's handler must not take the app down
                log.error("job %s %s handler failed:\n%s", job_id, name, traceback.format_exc())

    def _on_progress(self, job_id: int, f: float, text: str) -> None:
        job = self.running.get(job_id)
        if job:
            job.progress, job.text = f, text
            self._cb(job_id, "progress", f, text)
            self.changed.emit()

    def _on_result(self, job_id: int, out: Any) -> None:
        self._cb(job_id, "result", out)

    def _on_error(self, job_id: int, msg: str) -> None:
        self._cb(job_id, "error", msg)

    def _on_cancelled(self, job_id: int) -> None:
        self._cb(job_id, "cancelled")

    def _on_finished(self, job_id: int) -> None:
        self.running.pop(job_id, None)
        if not self.running and self.pool.activeThreadCount() == 0:
            self._runnables.clear()
        self.changed.emit()

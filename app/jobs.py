"""The one way to run long work off the UI thread.

``Jobs.start(title, fn, on_result=..., on_error=...)`` runs ``fn(ctx)`` on a worker thread, where
``ctx`` is an ``inference.pipeline.JobContext`` (``ctx.progress(f, text)``, cancellation via
``ctx.check()``). Progress, results and errors come back to the UI thread as Qt signals; an
exception becomes a message, never a crash. GPU work is serialised in the runtimes (GPU_LOCK).

Three rules keep Qt objects on their own thread:
- **The UI thread releases what the UI thread made.** A job's ``fn`` (and everything its closure holds:
  viewers, windows, studies) is referenced by the job's record on the UI thread until the UI thread has
  handled ``finished``. The worker drops its own references (function, context, result) *before* it
  signals ``finished``, so the last reference to a Qt object is never dropped on a worker (which would
  run its C++ destructor there).
- **Results for closed views are dropped.** A callback's owner (``owner=``, else the object of a bound
  method or the ``self`` a closure captured, when that is a QObject) is checked when the result comes
  back; when its C++ object is gone (a viewer or window closed and deleted) the callback is skipped.
- **Cyclic garbage is collected on the UI thread** (``app.reliability.gcguard``, installed here): a
  collection triggered by a worker's allocations would otherwise destroy Qt objects on that worker.

Workers are plain Python threads shared by every ``Jobs`` in the process (at most ``max_threads``,
each ending after ten idle minutes).
"""
from __future__ import annotations

import collections
import itertools
import logging
import threading
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import shiboken6
from PySide6.QtCore import QObject, Signal

from app.reliability import gcguard
from inference.pipeline import Cancelled, JobContext
from inference.study import ReadError
from inference.registry import WeightsError

log = logging.getLogger(__name__)

# a worker without work for this long ends (a new one starts on demand). Long: libraries keep per-thread
# state (matplotlib caches its fonts, with open files, per thread id): new threads all the time grew the
# open files in the soak
IDLE_EXIT_S = 600.0


class _Signals(QObject):
    progress = Signal(int, float, str)
    result = Signal(int, object)
    error = Signal(int, str)
    cancelled = Signal(int)
    finished = Signal(int)


def _owner_of(cb: Callable | None) -> QObject | None:
    """The QObject a callback belongs to: a bound method's object, or the ``self`` a closure captured."""
    if cb is None:
        return None
    obj = getattr(cb, "__self__", None)
    if obj is None:
        code, cells = getattr(cb, "__code__", None), getattr(cb, "__closure__", None)
        if code is not None and cells and "self" in code.co_freevars:
            try:
                obj = cells[code.co_freevars.index("self")].cell_contents
            except ValueError:  # an empty cell
                obj = None
    return obj if isinstance(obj, QObject) else None


@dataclass
class Job:
    id: int
    title: str
    ctx: JobContext
    progress: float = 0.0
    text: str = ""
    callbacks: dict[str, Callable] = field(default_factory=dict)
    fn: Callable[[JobContext], Any] | None = None  # released on the UI thread once the worker is done
    owners: dict[str, QObject] = field(default_factory=dict)

    def cancel(self) -> None:
        self.ctx.cancel()


class _Pool:
    """The worker threads and their queue, one set per process shared by every ``Jobs`` (a window and
    its compare windows, or a second window): libraries keep per-thread state (matplotlib caches fonts
    with open files per thread id), so threads that come and go grow the open files. A plain Python
    object: the threads hold this and each job's signals object, never a Jobs QObject (whose last
    reference must not be dropped on a worker)."""

    def __init__(self):
        self.max_threads = 0
        self.cv = threading.Condition()
        self.queue: collections.deque[tuple[_Signals, int, Callable, JobContext]] = collections.deque()
        self.workers: list[threading.Thread] = []
        self.idle = 0
        self.busy: dict[int, tuple[_Signals, JobContext]] = {}  # job id -> (its Jobs' signals, context)

    def submit(self, signals: _Signals, job_id: int, fn: Callable, ctx: JobContext) -> None:
        with self.cv:
            self.queue.append((signals, job_id, fn, ctx))
            if self.idle == 0 and len(self.workers) < self.max_threads:
                t = threading.Thread(target=self._worker, name=f"lightbox-job-{len(self.workers) + 1}", daemon=True)
                self.workers.append(t)
                t.start()
            else:
                self.cv.notify()

    def _mine(self, signals: _Signals) -> bool:
        return any(q[0] is signals for q in self.queue) or any(b[0] is signals for b in self.busy.values())

    def wait(self, signals: _Signals, timeout: float | None) -> bool:
        """Until no job of this Jobs object is queued or on a worker."""
        with self.cv:
            return self.cv.wait_for(lambda: not self._mine(signals), timeout)

    def shutdown(self, signals: _Signals, timeout: float = 10.0) -> None:
        """A Jobs object is being destroyed: cancel its jobs and let the workers finish emitting."""
        with self.cv:
            for sig, _, _, ctx in self.queue:
                if sig is signals:
                    ctx.cancel()
            for sig, ctx in self.busy.values():
                if sig is signals:
                    ctx.cancel()
        if not self.wait(signals, timeout):
            log.warning("jobs still running %.0f s after their window closed", timeout)

    def _worker(self) -> None:
        while True:
            with self.cv:
                self.idle += 1
                ok = self.cv.wait_for(lambda: self.queue, IDLE_EXIT_S)
                self.idle -= 1
                if not ok:
                    self.workers.remove(threading.current_thread())
                    return
                signals, job_id, fn, ctx = self.queue.popleft()
                self.busy[job_id] = (signals, ctx)
            try:
                _run(signals, job_id, fn, ctx)
            finally:
                del fn, ctx  # the worker's references go before `finished` (the UI thread holds the job's)
                with self.cv:
                    self.busy.pop(job_id, None)
                    self.cv.notify_all()
                try:
                    signals.finished.emit(job_id)
                except RuntimeError:  # the Jobs object is gone: nothing to tell
                    pass
                del signals


_POOL = _Pool()
_IDS = itertools.count(1)  # job ids are unique in the process (the pool is shared)


def _run(signals: _Signals, job_id: int, fn: Callable, ctx: JobContext) -> None:
    try:
        try:
            out = fn(ctx)
        except Cancelled:
            signals.cancelled.emit(job_id)
        except (ReadError, WeightsError) as e:
            signals.error.emit(job_id, str(e))
        except MemoryError:
            signals.error.emit(job_id, "out of memory while running this job")
        except Exception as e:  # every other failure is still a message, with the trace in the log
            log.error("job %s failed:\n%s", job_id, traceback.format_exc())
            signals.error.emit(job_id, f"{type(e).__name__}: {e}")
        else:
            signals.result.emit(job_id, out)
            del out
    except RuntimeError:  # emitting on a deleted Jobs object
        log.debug("job %s ended after its Jobs object was deleted", job_id)


class Jobs(QObject):
    """The list of running jobs (the status bar shows them); the workers are the process's shared pool."""

    changed = Signal()  # a job started, progressed or ended

    def __init__(self, parent: QObject | None = None, max_threads: int = 2):
        super().__init__(parent)
        self.signals = _Signals(self)
        self.signals.progress.connect(self._on_progress)
        self.signals.result.connect(self._on_result)
        self.signals.error.connect(self._on_error)
        self.signals.cancelled.connect(self._on_cancelled)
        self.signals.finished.connect(self._on_finished)
        self.running: dict[int, Job] = {}
        self.dropped = 0  # callbacks skipped because their owner was gone
        _POOL.max_threads = max(_POOL.max_threads, max_threads)
        signals = self.signals
        self.destroyed.connect(lambda *_: _POOL.shutdown(signals))  # before the signals object (a child) goes
        gcguard.install()  # from now on cyclic garbage (Qt objects among it) is freed on this thread only

    def start(self, title: str, fn: Callable[[JobContext], Any], *,
              on_result: Callable[[Any], None] | None = None,
              on_error: Callable[[str], None] | None = None,
              on_progress: Callable[[float, str], None] | None = None,
              on_cancelled: Callable[[], None] | None = None,
              owner: QObject | None = None) -> Job:
        """Run ``fn(ctx)`` on a worker. ``owner``: the view the callbacks update (default: each
        callback's own object); they are skipped once it has been deleted."""
        job_id = next(_IDS)
        emit = self.signals.progress.emit
        ctx = JobContext(progress=lambda f, t, _id=job_id: emit(_id, f, t), cancel=threading.Event())
        callbacks = {"result": on_result, "error": on_error, "progress": on_progress, "cancelled": on_cancelled}
        owners = {k: owner or _owner_of(cb) for k, cb in callbacks.items() if cb is not None}
        job = Job(job_id, title, ctx, callbacks=callbacks, fn=fn, owners={k: o for k, o in owners.items() if o})
        self.running[job_id] = job
        gcguard.collect_due()
        _POOL.submit(self.signals, job_id, fn, ctx)
        self.changed.emit()
        return job

    def cancel_all(self) -> None:
        for j in list(self.running.values()):
            j.cancel()

    def wait(self, msecs: int = -1) -> bool:
        """Block until no job is queued or running on a worker (``msecs`` < 0: without limit). Their
        results and ``finished`` signals are delivered by the event loop afterwards, as always."""
        return _POOL.wait(self.signals, None if msecs < 0 else msecs / 1000)

    # -- signal handlers (UI thread) ------------------------------------------------------
    def _cb(self, job_id: int, name: str, *args) -> None:
        job = self.running.get(job_id)
        cb = job.callbacks.get(name) if job else None
        if not cb:
            return
        owner = job.owners.get(name)
        if owner is not None and not shiboken6.isValid(owner):
            self.dropped += 1  # its viewer or window was closed and deleted: nobody to show it to
            log.debug("job %s %s dropped: %s was deleted", job_id, name, type(owner).__name__)
            return
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
        self.running.pop(job_id, None)  # the job's function and callbacks are released here, on this thread
        gcguard.collect_due()
        self.changed.emit()

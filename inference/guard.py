"""Run a reader in a separate, persistent child process with a time and memory limit.

Some damage is only met inside a native library (libhdf5 can hang for ever, or allocate gigabytes, on a
crafted attribute), where Python cannot interrupt it. ``guarded(fn, path)`` runs ``fn(path)`` in a child
process that is started once and reused; the child's address space is capped, and if it does not answer
in time it is killed (and restarted for the next file) and the file gets a ReadError. The result (a Study
with numpy arrays) comes back pickled, which costs well under a millisecond for a 12-lead ECG.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import threading
from pathlib import Path
from typing import Callable

from inference.study import ReadError

TIMEOUT_S = float(os.environ.get("LIGHTBOX_READER_TIMEOUT", "30"))
MEMORY_LIMIT = int(float(os.environ.get("LIGHTBOX_READER_MEMORY_GB", "3")) * (1 << 30))


def _serve(conn, memory_limit: int) -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        cap = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ImportError, ValueError, OSError):  # no rlimits on this platform: time limit only
        pass
    while True:
        try:
            fn, path = conn.recv()
        except EOFError:
            return
        try:
            out = ("ok", fn(Path(path)))
        except ReadError as e:
            out = ("error", e)
        except MemoryError:
            out = ("error", ReadError(path, "the file asks for more memory than a study can use (damaged?)"))
        except BaseException as e:  # the reader's own job is to raise ReadError; anything else is a message
            out = ("error", ReadError(path, f"could not be read: {type(e).__name__}: {e}"))
        try:
            conn.send(out)
        except Exception as e:  # e.g. an unpicklable result
            conn.send(("error", ReadError(path, f"could not be read: {type(e).__name__}: {e}")))


class _Guard:
    def __init__(self):
        self.lock = threading.Lock()
        self.proc = None
        self.conn = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")  # no inherited threads or Qt state
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, MEMORY_LIMIT), daemon=True, name="lightbox-reader")
        self.proc.start()
        child.close()
        self.conn = parent

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join(5)
        self.proc = self.conn = None

    def run(self, fn: Callable, path: Path, timeout: float):
        with self.lock:
            if self.proc is None or not self.proc.is_alive():
                self._start()
            self.conn.send((fn, str(path)))
            if not self.conn.poll(timeout):
                self._stop()
                raise ReadError(path, f"reading did not finish in {timeout:.0f} s (the file is probably "
                                      "damaged); it was stopped")
            try:
                status, value = self.conn.recv()
            except (EOFError, OSError):
                self._stop()
                raise ReadError(path, "the reader stopped while reading this file (damaged file?)") from None
        if status == "error":
            raise value
        return value


_GUARD = _Guard()


def guarded(fn: Callable[[Path], object], path: Path, timeout: float | None = None):
    """``fn(path)`` in the guarded reader process; ``fn`` must be a module-level function."""
    if os.environ.get("LIGHTBOX_UNGUARDED_READERS") or mp.current_process().daemon:
        # profiling and the fuzzer's coverage; a daemonic pool worker may not start a child process
        return fn(path)
    return _GUARD.run(fn, path, TIMEOUT_S if timeout is None else timeout)

"""Crash evidence: every session writes native-crash traces to a file in the data folder, and the next
start says when the previous session did not end cleanly.

At start (``Session.begin``) Lightbox
- opens ``crash/session-<stamp>-<pid>.trace`` (mode 0600) and points ``faulthandler`` at it: a segfault,
  an abort (``Fatal Python error: ...``) or a bus error writes the Python stack of every thread there;
- writes ``crash/session-<stamp>-<pid>.lock`` (0600, JSON: pid, start time, versions, trace path) and holds
  an exclusive ``flock`` on it for the whole session. The lock is released by the kernel however the
  process ends, so a later start can tell a dead session from a second Lightbox still running;
- looks at the markers of earlier sessions: a marker whose lock can be taken belongs to a session that
  ended without ``Session.end`` (crash, SIGKILL, power loss). It is reported (with its trace file when that
  is not empty), logged, and renamed ``*.reported`` so it is said once.

``Session.end`` (a clean quit) removes the marker and an empty trace file. The newest ``KEEP`` traces and
reports are kept, older ones removed.
"""
from __future__ import annotations

import atexit
import faulthandler
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

try:  # POSIX; on Windows a marker is judged by its process id only
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

log = logging.getLogger(__name__)

KEEP = 10


@dataclass(frozen=True)
class AbnormalEnd:
    """A previous session that did not end cleanly."""
    started: str
    pid: int
    trace: Path | None  # the faulthandler file when it holds a trace (a native crash); None when killed

    def message(self) -> str:
        if self.trace is not None:
            return (f"The last Lightbox session (started {self.started}, process {self.pid}) crashed. "
                    f"Everything saved before the crash is in the database. The crash trace is in {self.trace}; "
                    "please pass it on to your support contact.")
        return (f"The last Lightbox session (started {self.started}, process {self.pid}) ended abnormally "
                "(killed, or the computer stopped) without a crash trace. Everything saved before then is "
                "in the database.")


def _open_private(path: Path, flags: int) -> int:
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.chmod(path, 0o600)  # an existing file keeps its mode on open
    except OSError:
        pass
    return fd


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class Session:
    """One run of the app. ``begin()`` returns it; ``previous`` lists the earlier sessions that ended
    abnormally (reported once)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.previous: list[AbnormalEnd] = []
        self.marker: Path | None = None
        self.trace: Path | None = None
        self._lock_fd: int | None = None
        self._trace_file = None
        self._ended = False
        self._faulthandler_before = faulthandler.is_enabled()  # e.g. pytest's, restored at the end

    @classmethod
    def begin(cls, folder: Path | None = None) -> "Session":
        if folder is None:
            from inference import paths

            folder = paths.data_home() / "crash"
        folder.mkdir(parents=True, exist_ok=True)
        s = cls(folder)
        s.previous = s._collect_previous()  # before our own marker exists
        s._start()
        for p in s.previous:
            log.error("previous session ended abnormally: %s", p.message())
        s._prune()
        atexit.register(s.end)
        return s

    # -- this session ---------------------------------------------------------------------------------
    def _start(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = self.folder / f"session-{stamp}-{os.getpid()}"
        self.trace = base.with_suffix(".trace")
        self.marker = base.with_suffix(".lock")
        try:
            self._trace_file = os.fdopen(_open_private(self.trace, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "a")
            faulthandler.enable(file=self._trace_file, all_threads=True)
        except OSError as e:  # a read-only data folder must not stop the app
            log.warning("crash traces not recorded: %s", e)
            self.trace, self._trace_file = None, None
        try:
            fd = _open_private(self.marker, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            from inference import __version__

            info = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "lightbox": __version__, "python": sys.version.split()[0],
                    "trace": str(self.trace) if self.trace else None}
            os.write(fd, json.dumps(info).encode())
            os.fsync(fd)
            self._lock_fd = fd
        except OSError as e:
            log.warning("session marker not written: %s", e)
            self.marker = None

    def end(self) -> None:
        """A clean end: the marker goes, and the trace file too when nothing was written to it."""
        if self._ended:
            return
        self._ended = True
        if self._trace_file is not None:
            try:
                faulthandler.disable()
                if self._faulthandler_before:
                    faulthandler.enable()
                self._trace_file.close()
                if self.trace and self.trace.stat().st_size == 0:
                    self.trace.unlink()
            except OSError:
                pass
        if self.marker is not None:
            try:
                self.marker.unlink()
            except OSError:
                pass
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- earlier sessions -----------------------------------------------------------------------------
    def _dead(self, marker: Path) -> bool:
        """True when no running process holds the marker (its session is over)."""
        try:
            fd = os.open(marker, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return False
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return False  # another Lightbox is running with it
                fcntl.flock(fd, fcntl.LOCK_UN)
                return True
            info = json.loads(Path(marker).read_text() or "{}")
            return not _pid_alive(int(info.get("pid", 0)))
        except (OSError, ValueError):
            return True
        finally:
            os.close(fd)

    def _collect_previous(self) -> list[AbnormalEnd]:
        out = []
        for marker in sorted(self.folder.glob("session-*.lock")):
            if not self._dead(marker):
                continue
            try:
                info = json.loads(marker.read_text() or "{}")
            except (OSError, ValueError):
                info = {}
            trace = Path(info["trace"]) if info.get("trace") else marker.with_suffix(".trace")
            has_trace = trace.is_file() and trace.stat().st_size > 0
            out.append(AbnormalEnd(str(info.get("started", "?")), int(info.get("pid", 0) or 0),
                                   trace if has_trace else None))
            try:
                marker.rename(marker.with_suffix(".reported"))
                if trace.is_file() and not has_trace:
                    trace.unlink()
            except OSError:
                pass
        return out

    def _prune(self) -> None:
        for pattern in ("session-*.trace", "session-*.reported"):
            files = sorted(self.folder.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in files[KEEP:]:
                if old != self.trace:
                    try:
                        old.unlink()
                    except OSError:
                        pass

"""What ``run_gui`` calls: crash evidence from the first moment, the checks once Qt is up, and their
notices in the main window."""
from __future__ import annotations

import logging

from app.reliability import binding, gcguard
from app.reliability.crashlog import Session

log = logging.getLogger(__name__)


def begin() -> Session | None:
    """Start recording crash evidence (before Qt is even created). Never stops the app from starting."""
    try:
        return Session.begin()
    except Exception as e:  # pragma: no cover - e.g. an unwritable data folder
        log.warning("crash evidence not recorded this session: %s", e)
        return None


def checks(session: Session | None) -> list[str]:
    """The notices to show: earlier sessions that ended abnormally, and a leaking Qt binding. Needs the
    QApplication; run it before workers start (they would blur the binding's measurement)."""
    out = [p.message() for p in (session.previous if session else [])]
    leak = binding.startup_check()
    if leak:
        out.append(leak)
    return out


def show(win, notices: list[str]) -> None:
    if not notices:
        return
    from app.reliability.notices import post

    for text in notices:
        post(win, text, error=True)


def settle() -> None:
    """Once the window is up: garbage collection on the UI thread only (``Jobs`` has installed it), and
    what start-up created (modules, classes) frozen out of the collector's sight, so full collections
    stay short during playback."""
    gcguard.install(freeze=True)

"""Garbage collection on the UI thread only (app.reliability.gcguard): the young generations by CPython's
thresholds, and a full collection every few minutes so a closed window's cycles do not wait for hours."""
from __future__ import annotations

import gc
import subprocess
import sys
import weakref

from tests.conftest import ROOT


def test_an_old_cycle_is_freed_by_the_periodic_full_collection(qtbot, monkeypatch):
    from app.jobs import Jobs
    from app.reliability import gcguard

    Jobs()  # installs the guard
    assert gcguard.installed() and not gc.isenabled()

    class Node:
        pass

    n = Node()
    n.me = n
    ref = weakref.ref(n)
    gc.collect(1)
    gc.collect(1)  # survived twice: now in the old generation, which young collections never look at
    del n
    monkeypatch.setattr(gcguard, "FULL_EVERY_S", 0.0)
    gc.collect(0)  # at least one young collection since: something may have aged
    gcguard._guard[0].collect()
    assert ref() is None


def test_views_dropped_while_a_thread_allocates_survive_with_the_guard():
    """tests/soak/gc_repro.py with the guard: widgets with running timers, left to the collector while a
    thread allocates (without the guard this segfaults in every run: `make soak` shows both)."""
    p = subprocess.run([sys.executable, "-m", "tests.soak.gc_repro", "--views", "120", "--no-show", "--guard"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "survived 120 views" in p.stdout and "Timers cannot be stopped" not in p.stderr

"""Reproduces the native crash of Qt objects freed by the cyclic garbage collector on a worker thread.

Views (widgets with a running timer, kept in a reference cycle as lambdas and connections make them) are
created and dropped on the UI thread while a worker allocates (as a job does). Without the guard the
collector runs on the worker, destroys the views there ("QObject::~QObject: Timers cannot be stopped from
another thread") and the process segfaults; with ``app.reliability.gcguard`` (installed by ``Jobs``) the
collection runs on the UI thread and it survives.

    python -m tests.soak.gc_repro --views 300 --no-show [--guard]   # SIGSEGV without the guard

Measured on the 2-core machine: --no-show segfaulted in 5 of 5 runs without the guard; with the guard it
ran through in 18 of 21 runs (3 segfaults, all with the allocating worker: a timer event reached a view whose
Python wrapper had been freed; 0 of 12 runs crashed with --no-worker), and in 10 of 10 with --guard
--delete-later. Shown-then-closed windows left to the collector crash even with the guard (2 of 2) and
never with --delete-later (4 of 4): Lightbox deletes its windows and dialogs explicitly, and the suite runs
the --guard --delete-later form (tests/test_gc_guard.py).
"""
from __future__ import annotations

import argparse
import faulthandler
import os
import sys
import threading
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--views", type=int, default=300)
    p.add_argument("--guard", action="store_true")
    p.add_argument("--no-worker", action="store_true")
    p.add_argument("--no-show", action="store_true")
    p.add_argument("--delete-later", action="store_true", help="delete each view explicitly, as Lightbox does")
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    faulthandler.enable()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QLabel, QVBoxLayout, QWidget

    app = QApplication.instance() or QApplication([])
    app.setQuitOnLastWindowClosed(False)
    if args.guard:
        from app.jobs import Jobs

        jobs = Jobs()  # installs the guard, as the app does
        assert jobs is not None

    class View(QWidget):
        def __init__(self):
            super().__init__()
            lay = QVBoxLayout(self)
            self.label = QLabel("")
            lay.addWidget(self.label)
            self.timer = QTimer(self)
            self.timer.timeout.connect(self.tick)
            self.timer.start(2)
            self.me = self  # a reference cycle: only the cyclic collector frees it

        def tick(self):
            self.label.setText(f"{time.perf_counter():.3f}")

    stop = threading.Event()

    def worker():  # allocation-heavy Python work, as a job's feature extraction is
        while not stop.is_set():
            junk = [{"a": [i]} for i in range(5000)]
            for d in junk:
                d["self"] = d

    made = [0]

    def make():
        v = View()
        if not args.no_show:
            v.show()
            v.close()
        if args.delete_later:
            v.deleteLater()
        made[0] += 1
        if made[0] >= args.views:
            stop.set()
            app.quit()

    if not args.no_worker:
        threading.Thread(target=worker, daemon=True).start()
    t = QTimer()
    t.timeout.connect(make)
    t.start(5)
    app.exec()
    print(f"survived {made[0]} views", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Crash evidence: a session that dies (native crash, abort, SIGKILL) leaves a marker and, when it
crashed, a faulthandler trace (mode 0600) in the data folder; the next start says so once, without a
modal box; everything committed before the crash is still in the database."""
from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app.reliability.crashlog import Session
from tests.conftest import ROOT

# the app's own start-up path (as run_gui): crash evidence first, Qt, checks, window; then saves and dies
APP_SESSION = textwrap.dedent("""
    import faulthandler, os, sys, time
    sys.path.insert(0, {root!r})
    from app.main import MainWindow, create_app
    from app.reliability import startup
    from app.store import Store
    from inference.results import Result
    from inference.study import Study
    session = startup.begin()
    app = create_app()
    notices = startup.checks(session)
    win = MainWindow(Store())
    startup.show(win, notices)
    win.show()
    app.processEvents()
    for i in range(3):
        st = Study("ecg", f"/data/ecg{{i}}.hd5", f"{{i:064x}}", f"ecg{{i}}.hd5", metadata={{}})
        win.ctx.store.save(st, [Result("ecg-measure", "", "numpy", "CPU", 0.1, {{"heart_rate_bpm": 60 + i}}, True)])
        app.processEvents()
    print("saved", flush=True)
    mode = sys.argv[1]
    if mode == "abort":
        os.abort()  # what "Fatal Python error: none_dealloc" ends in
    elif mode == "segv":
        faulthandler._sigsegv()
    elif mode == "clean":
        win.close()
        app.processEvents()
        session.end()
    else:
        time.sleep(120)  # the test kills it
""")


def _run_app(home: Path, mode: str) -> subprocess.CompletedProcess | subprocess.Popen:
    script = home / "session.py"
    script.write_text(APP_SESSION.format(root=str(ROOT)))
    env = dict(os.environ, LIGHTBOX_HOME=str(home), LIGHTBOX_DB=str(home / "lightbox.sqlite"),
               LIGHTBOX_WEIGHTS=str(home / "weights"), QT_QPA_PLATFORM="offscreen")
    p = subprocess.Popen([sys.executable, str(script), mode], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if mode in ("abort", "segv", "clean"):
        out, err = p.communicate(timeout=180)
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)
    return p


def _wait_saved(p: subprocess.Popen) -> None:
    line = p.stdout.readline()
    assert line.strip() == "saved", (line, p.stderr.read() if p.poll() is not None else "")


def _rows(db: Path) -> tuple[int, int, str]:
    con = sqlite3.connect(db)
    try:
        return (con.execute("SELECT COUNT(*) FROM studies").fetchone()[0],
                con.execute("SELECT COUNT(*) FROM results").fetchone()[0],
                con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


@pytest.mark.parametrize("mode", ["abort", "kill"])
def test_next_start_reports_the_dead_session_and_nothing_is_lost(tmp_path, qtbot, mode):
    from app.main import MainWindow
    from app.reliability import notices, startup
    from app.store import Store

    home = tmp_path / "home"
    home.mkdir()
    if mode == "abort":
        done = _run_app(home, "abort")
        assert done.returncode == -signal.SIGABRT, done.stderr[-2000:]
    else:
        p = _run_app(home, "kill")
        _wait_saved(p)
        p.send_signal(signal.SIGKILL)
        p.wait(30)
        p.stdout.close()
        p.stderr.close()
    crash = home / "crash"
    markers = list(crash.glob("session-*.lock"))
    assert len(markers) == 1 and stat.S_IMODE(markers[0].stat().st_mode) == 0o600
    traces = list(crash.glob("session-*.trace"))
    assert len(traces) == 1 and stat.S_IMODE(traces[0].stat().st_mode) == 0o600
    text = traces[0].read_text()
    if mode == "abort":
        assert "Fatal Python error: Aborted" in text and "File " in text and "session.py" in text
    else:
        assert text == ""  # SIGKILL leaves no trace, only the marker

    # every committed save survived, whole
    assert _rows(home / "lightbox.sqlite") == (3, 3, "ok")

    # the next start: said once, as a notice (no modal box), and in the log
    s = Session.begin(crash)
    try:
        assert len(s.previous) == 1
        msg = s.previous[0].message()
        if mode == "abort":
            assert "crashed" in msg and str(traces[0]) in msg
        else:
            assert "ended abnormally" in msg and "without a crash trace" in msg
        win = MainWindow(Store(home / "lightbox.sqlite"))
        qtbot.addWidget(win)
        startup.show(win, [p.message() for p in s.previous])
        win.show()
        assert notices.notice_bar(win).texts()[0].endswith(msg)
        assert len(win.ctx.store.studies()) == 3
        win.ctx.jobs.wait(10000)
    finally:
        s.end()
    assert Session.begin(crash).previous == []  # reported once
    if mode == "kill":
        assert not traces[0].exists()  # an empty trace is not kept


def test_a_segfault_writes_every_threads_stack(tmp_path):
    code = textwrap.dedent(f"""
        import faulthandler, sys, threading, time
        sys.path.insert(0, {str(ROOT)!r})
        from app.reliability.crashlog import Session
        Session.begin(__import__("pathlib").Path(sys.argv[1]))
        threading.Thread(target=time.sleep, args=(30,), daemon=True, name="worker").start()
        faulthandler._sigsegv()
    """)
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == -signal.SIGSEGV
    text = next(tmp_path.glob("session-*.trace")).read_text()
    assert "Segmentation fault" in text and "Current thread 0x" in text and "\nThread 0x" in text  # the worker too


def test_a_clean_end_leaves_nothing_to_report(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    done = _run_app(home, "clean")
    assert done.returncode == 0, done.stderr[-2000:]
    assert list((home / "crash").glob("session-*")) == []
    assert Session.begin(home / "crash").previous == []


def test_a_running_second_instance_is_not_reported(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from app.reliability.crashlog import Session
        Session.begin(__import__("pathlib").Path(sys.argv[1]))
        print("up", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "up"
        s = Session.begin(tmp_path)
        assert s.previous == []  # alive: its lock is held
        s.end()
    finally:
        p.kill()
        p.wait(10)
        p.stdout.close()
    time.sleep(0.1)
    s = Session.begin(tmp_path)
    assert len(s.previous) == 1
    s.end()

"""Shared fixtures. Every test runs against its own data folder, database and weights folder."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
    return report


@pytest.fixture(autouse=True)
def _isolated_home(request, tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("lightbox_home")
    monkeypatch.setenv("LIGHTBOX_HOME", str(home))
    monkeypatch.setenv("LIGHTBOX_DB", str(home / "test.sqlite"))
    monkeypatch.setenv("LIGHTBOX_WEIGHTS", str(home / "weights"))
    yield home
    # installed test weights run to hundreds of MB a test: keep a home only when its test failed
    if not request.node.stash.get(_FAILED, False):
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(autouse=True)
def _automatic_gc_between_tests():
    """app.jobs turns automatic garbage collection off (it collects on the Qt event loop instead); a test
    that never runs the event loop afterwards (training, batch) gets the normal collector back."""
    yield
    from sys import modules

    guard = modules.get("app.reliability.gcguard")
    if guard is not None and guard.installed():
        guard.uninstall()


@pytest.fixture
def store(tmp_path):
    from app.store import Store

    s = Store(tmp_path / "store.sqlite")
    yield s
    s.close()


@pytest.fixture
def registry():
    from inference.registry import Registry

    return Registry()


def shared_file(*parts: str) -> Path:
    """A file under ../shared, or skip the test cleanly when it is absent."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"reference file {p} not present")
    return p


@pytest.fixture
def main_window(qtbot, tmp_path):
    from app.main import MainWindow
    from app.store import Store

    win = MainWindow(Store(tmp_path / "ui.sqlite"))
    win.quiet_errors = True  # messages go to the status bar, not modal boxes
    qtbot.addWidget(win)
    win.show()
    yield win
    win.ctx.jobs.cancel_all()
    win.ctx.jobs.wait(10000)

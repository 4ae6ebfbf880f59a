"""Main window: status bar, opening files (good and bad), stored results shown without recomputing."""
from __future__ import annotations

import pytest

import app.main as main_mod
from inference.results import NOT_CLINICAL, Result
from inference.runtimes import device_summary
from inference.study import ReadError, Study


def test_window_shows_device_and_models(main_window, qtbot):
    qtbot.waitUntil(lambda: not main_window.ctx.jobs.running, timeout=20000)  # weights verified
    assert main_window.device_label.text() == device_summary()
    assert "CPU" in main_window.device_label.text() or "CUDA" in main_window.device_label.text()
    states = main_window.ctx.registry.states()
    tip = main_window.models_label.toolTip()
    for st in states:
        assert st.entry.title in tip
    assert main_window.models_label.text().startswith("Models: ")
    n_ready = sum(st.status == "ready" for st in states)
    assert f"{n_ready} ready" in main_window.models_label.text()


def test_startup_hashes_weights_on_a_worker_not_the_ui_thread(qtbot, tmp_path, monkeypatch):
    import threading

    import inference.registry as reg
    from app.main import MainWindow
    from app.store import Store

    reg._hash_cache.clear()
    on_ui_thread: list[bool] = []
    real = reg.sha256_file

    def spy(path):
        on_ui_thread.append(threading.current_thread() is threading.main_thread())
        return real(path)

    monkeypatch.setattr(reg, "sha256_file", spy)
    win = MainWindow(Store(tmp_path / "ui.sqlite"))
    qtbot.addWidget(win)
    # the bundled heart-sound model is on disk: until its hash is known it is "checking", not "ready"
    assert "checking" in win.models_label.text()
    assert "verifying" in win.results.state.text() or not win.results.current_model()
    qtbot.waitUntil(lambda: not win.ctx.jobs.running, timeout=20000)
    assert on_ui_thread and not any(on_ui_thread)
    assert "checking" not in win.models_label.text() and "ready" in win.models_label.text()


def test_bad_file_gives_message_not_crash(main_window, qtbot, tmp_path):
    p = tmp_path / "empty.hd5"
    p.write_bytes(b"")
    main_window.open_path(p)
    qtbot.waitUntil(lambda: not main_window.ctx.jobs.running, timeout=5000)
    assert "empty.hd5: the file is empty" in main_window.statusBar().currentMessage()
    assert main_window.study is None
    assert main_window.ctx.store.studies() == []  # no half-written row


@pytest.fixture
def fake_modality(monkeypatch):
    """A study and a model run that need no real reader or weights (the flow, not the modality)."""
    calls = {"analyse": 0}
    study = Study("ecg", "/data/fake.hd5", "1" * 64, "fake.hd5", metadata={"rate": 500})

    def fake_open(path, modality=None):
        if "broken" in str(path):
            raise ReadError(path, "truncated")
        return study

    def fake_analyse(st, model_id, registry, ctx):
        calls["analyse"] += 1
        ctx.progress(0.5, "half")
        return Result(model_id, "ab" * 32, "numpy", "CPU", 0.01, {"af_risk": 0.12}, clinical=False)

    monkeypatch.setattr(main_mod, "open_study", fake_open)
    monkeypatch.setattr(main_mod, "analyse", fake_analyse)
    monkeypatch.setattr(main_mod, "models_for", lambda m: ("fake-model",))
    from inference.registry import DEMO, ModelEntry, ModelState

    entry = ModelEntry("fake-model", "Fake model", "ecg", "onnx", "fake.onnx", "", "here", "MIT")
    monkeypatch.setattr(main_mod.Registry, "state",
                        lambda self, mid: ModelState(entry, DEMO, "ab" * 32, "demo"))
    return calls


def test_open_analyse_store_and_reopen(main_window, qtbot, fake_modality):
    w = main_window
    w.open_path("/data/fake.hd5")
    qtbot.waitUntil(lambda: w.study is not None, timeout=5000)
    assert w.study_list.count() == 1 and "not analysed" in w.study_list.item(0).text()
    w.run_analysis("fake-model")
    qtbot.waitUntil(lambda: w.results.result is not None, timeout=5000)
    assert fake_modality["analyse"] == 1
    assert w.results.stamp.isVisible() and w.results.stamp.text() == NOT_CLINICAL
    assert "fake-model" in w.results.prov.text() and "abababababab" in w.results.prov.text()
    assert "NOT CLINICAL" in w.study_list.item(0).text()
    # re-opening shows the stored result without running the model again
    w.study, w.study_id = None, None
    w.results.show_result(None)
    w.open_path("/data/fake.hd5")
    qtbot.waitUntil(lambda: w.results.result is not None, timeout=5000)
    assert fake_modality["analyse"] == 1
    assert w.results.table.item(0, 1).text() == "0.12"


def test_layout_is_remembered(qtbot, tmp_path):
    from app.main import MainWindow
    from app.store import Store

    w = MainWindow(Store(tmp_path / "a.sqlite"))
    qtbot.addWidget(w)
    w.show()
    w.results_dock.hide()
    w.resize(701, 503)  # the offscreen screen is 800x600
    w.close()
    w2 = MainWindow(Store(tmp_path / "a.sqlite"))
    qtbot.addWidget(w2)
    w2.show()
    assert not w2.results_dock.isVisible()
    assert w2.width() == 701


def test_cli_help_does_not_import_qt():
    import subprocess
    import sys

    code = ("import sys; from app.cli import main; main(['weights','list']); "
            "print('PySide6' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_inference_never_imports_qt():
    import pathlib
    import re

    root = pathlib.Path(main_mod.__file__).resolve().parent.parent / "inference"
    pat = re.compile(r"^\s*(from|import)\s+(PySide6|pyqtgraph|superqt|PyQt\d)", re.M)
    offenders = [str(p) for p in root.rglob("*.py") if pat.search(p.read_text())]
    assert offenders == []


def test_drop_a_file_opens_it(main_window, qtbot, tmp_path):
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    from inference.ecg import demo

    path = demo.make(tmp_path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    ev = QDropEvent(QPointF(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    main_window.dropEvent(ev)
    qtbot.waitUntil(lambda: main_window.study is not None, timeout=30000)
    assert main_window.study.modality == "ecg" and main_window.study.source == str(path)


def test_command_line_opens_files(tmp_path):
    """``lightbox FILE`` opens the file in the window (offscreen, quits by itself)."""
    import os
    import subprocess
    import sys

    from inference.ecg import demo
    from tests.conftest import ROOT

    path = demo.make(tmp_path)
    db = tmp_path / "cli.sqlite"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-m", "app.cli", str(path), "--db", str(db), "--quit-after", "8"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-800:]
    from app.store import Store

    rows = Store(db).studies()
    assert [r["source_path"] for r in rows] == [str(path)]

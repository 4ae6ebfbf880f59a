"""Errors do not open a nested event loop: playback timers, workers and their results carry on while the
message is on screen, and nothing fires into a view torn down meanwhile."""
from __future__ import annotations


def test_an_error_is_shown_without_a_modal_loop(main_window, qtbot):
    from PySide6.QtWidgets import QApplication

    win = main_window
    win.quiet_errors = False
    win.message("first problem", error=True)  # returns at once: no nested event loop
    box = win._error_box
    assert box.isVisible() and QApplication.activeModalWidget() is None
    win.message("second problem", error=True)
    assert win._error_box is box and "first problem" in box.text() and "second problem" in box.text()
    box.done(0)
    win.message("third", error=True)
    assert box.text() == "third"  # a closed box starts afresh
    box.done(0)


def test_a_model_that_cannot_run_does_not_stop_echo_playback(main_window, qtbot, tmp_path):
    from inference.echo import demo

    win = main_window
    win.quiet_errors = False
    win.open_path(demo.make(tmp_path))
    qtbot.waitUntil(lambda: win.study is not None and win.study.modality == "echo", timeout=30000)
    v = win.current_viewer()
    v.play()
    win.run_analysis("echonet-ef")  # not installed in the test's weights folder
    assert win._error_box.isVisible() and "EchoNet" in win._error_box.text()
    start = v.canvas.index
    qtbot.waitUntil(lambda: v.canvas.index != start, timeout=5000)  # still playing under the message
    assert v.timer.isActive()
    v.pause()
    win._error_box.done(0)

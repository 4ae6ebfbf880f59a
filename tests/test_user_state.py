"""What Lightbox remembers per user (settings.ini in the data folder): window, docks and splitters come back
on the same screen, a layout from another screen is refitted instead of restored off screen, and the echo
auto-play preference."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QByteArray, QRect


def _window(qtbot, path):
    from app.main import MainWindow
    from app.store import Store

    w = MainWindow(Store(path))
    w.quiet_errors = True
    qtbot.addWidget(w)
    w.show()
    return w


def _close(w):
    w.ctx.jobs.cancel_all()
    w.ctx.jobs.wait(10000)
    w.close()


def test_window_docks_and_splitters_come_back(qtbot, tmp_path):
    from app.widgets import user_state

    w = _window(qtbot, tmp_path / "a.sqlite")
    avail = user_state.available(w)
    assert w.width() <= avail.width() and w.height() <= avail.height()  # first start: fitted to the screen
    w.showNormal()
    w.resize(700, 500)
    w.move(avail.x() + 20, avail.y() + 10)
    v = w.viewer_for("xray")
    from PySide6.QtWidgets import QSplitter

    sp = [s for s in v.findChildren(QSplitter) if s.objectName() == "xraySplit"][0]
    sp.setSizes([300, 120])
    sizes = sp.sizes()
    w.studies_dock.hide()
    _close(w)
    s = user_state.settings()
    assert isinstance(s.value("main/geometry"), QByteArray) and s.value("main/screen")

    w2 = _window(qtbot, tmp_path / "a.sqlite")
    assert (w2.width(), w2.height()) == (700, 500)
    assert not w2.studies_dock.isVisible()  # the dock state came back too
    v2 = w2.viewer_for("xray")
    sp2 = [s for s in v2.findChildren(QSplitter) if s.objectName() == "xraySplit"][0]
    assert sp2.sizes() == sizes
    _close(w2)


def test_a_layout_saved_on_another_screen_is_refitted(qtbot, tmp_path):
    from app.main import MainWindow
    from app.store import Store
    from app.widgets import user_state

    # a window saved maximised on a 2560x1440 monitor, opened on this (smaller) screen
    big = MainWindow(Store(tmp_path / "b.sqlite"))
    qtbot.addWidget(big)
    big.setGeometry(QRect(0, 0, 2500, 1400))
    s = user_state.settings()
    s.setValue("main/geometry", big.saveGeometry())
    s.setValue("main/screen", "2560x1440@1")
    s.sync()
    big.ctx.jobs.cancel_all()
    big.ctx.jobs.wait(10000)
    w = _window(qtbot, tmp_path / "b.sqlite")
    avail = user_state.available(w)
    fg = w.frameGeometry()
    assert fg.width() <= avail.width() and fg.height() <= avail.height() and avail.contains(fg.topLeft())
    _close(w)


def test_keep_on_screen_pulls_a_window_back(qtbot):
    from PySide6.QtWidgets import QWidget

    from app.widgets import user_state

    w = QWidget()
    qtbot.addWidget(w)
    avail = user_state.available(w)
    w.resize(avail.width() + 400, 300)
    w.move(avail.right() - 50, avail.y())
    user_state.keep_on_screen(w)
    fg = w.frameGeometry()
    assert fg.width() <= avail.width() and avail.contains(fg.topLeft())


@pytest.mark.parametrize("autoplay", [True, False])
def test_echo_autoplay_follows_the_setting(main_window, qtbot, tmp_path, autoplay):
    from PIL import Image

    from app.widgets import user_state
    from inference.detect import open_study

    a = main_window.autoplay_action
    if a.isChecked() != autoplay:
        a.trigger()  # View ▸ Play echo loops on opening
    assert user_state.flag("echo/autoplay", True) is autoplay
    p = tmp_path / "loop.gif"
    base = np.zeros((64, 64), np.uint8)
    base[16:48, 16:48] = 200
    imgs = [Image.fromarray(np.roll(base, k, axis=1)) for k in range(10)]
    imgs[0].save(p, save_all=True, append_images=imgs[1:], duration=40, loop=0)
    st = open_study(p, "echo")
    main_window.show_study(st, main_window.ctx.store.add_study(st))
    v = main_window.current_viewer()
    assert v.timer.isActive() is autoplay
    v.shutdown()

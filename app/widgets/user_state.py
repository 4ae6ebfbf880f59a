"""What Lightbox remembers per user, in the data folder's settings.ini (QSettings): window, dock and
splitter geometry, and small preferences (``flag``: e.g. echo loops playing on opening).

Windows are fitted to the screen on first use and restored only where they still fit.
A layout saved on a large monitor and restored on a laptop (or with another scale factor) would put the
window partly off screen or wider than it: the saved geometry is used only when the screen it was saved
on has the same size as the one the window opens on now; otherwise the window is fitted afresh. Splitters
are remembered by object name, so a reader's split between image and curve survives a restart.
"""
from __future__ import annotations

from PySide6.QtCore import QByteArray, QRect, QSettings, Qt
from PySide6.QtWidgets import QApplication, QSplitter, QWidget

from inference import paths


def settings() -> QSettings:
    """The user's settings file (one per data folder, so per user and per $LIGHTBOX_HOME)."""
    return QSettings(str(paths.data_home() / "settings.ini"), QSettings.IniFormat)


def flag(name: str, default: bool) -> bool:
    return settings().value(name, default, type=bool)


def set_flag(name: str, on: bool) -> None:
    s = settings()
    s.setValue(name, bool(on))
    s.sync()


def available(w: QWidget | None = None) -> QRect:
    """The screen area a window may use (without task bars), logical pixels."""
    screen = (w.screen() if w is not None else None) or QApplication.primaryScreen()
    return screen.availableGeometry() if screen is not None else QRect(0, 0, 1366, 768)


def _screen_key(w: QWidget) -> str:
    a = available(w)
    dpr = (w.screen() or QApplication.primaryScreen()).devicePixelRatio()
    return f"{a.width()}x{a.height()}@{dpr:g}"


def fit(w: QWidget, size: tuple[int, int], share: float = 0.95) -> None:
    """Resize ``w`` to ``size`` or ``share`` of the screen, whichever is smaller, and centre it there."""
    a = available(w)
    width = min(size[0], int(a.width() * share))
    height = min(size[1], int(a.height() * share))
    w.resize(width, height)
    w.move(a.x() + (a.width() - w.width()) // 2, a.y() + (a.height() - w.height()) // 2)


def keep_on_screen(w: QWidget) -> None:
    """Shrink and move ``w`` so its whole frame is on the screen's available area."""
    a = available(w)
    fg = w.frameGeometry()
    extra_w, extra_h = fg.width() - w.width(), fg.height() - w.height()
    if fg.width() > a.width() or fg.height() > a.height():
        w.resize(min(w.width(), a.width() - extra_w), min(w.height(), a.height() - extra_h))
        fg = w.frameGeometry()
    x = min(max(fg.x(), a.x()), a.x() + a.width() - fg.width())
    y = min(max(fg.y(), a.y()), a.y() + a.height() - fg.height())
    if (x, y) != (fg.x(), fg.y()):
        w.move(x, y)


def restore(w: QWidget, key: str, size: tuple[int, int] | None, s: QSettings | None = None) -> bool:
    """Restore ``w``'s saved geometry under ``key`` when it was saved on a screen like this one; else fit it
    to ``size`` (None: the whole screen, maximised). True when a saved geometry was used."""
    s = s or settings()
    geo = s.value(f"{key}/geometry")
    used = isinstance(geo, QByteArray) and s.value(f"{key}/screen") == _screen_key(w) and w.restoreGeometry(geo)
    if not used:
        a = available(w)
        fit(w, size or (a.width(), a.height()), 0.95 if size else 1.0)
        if size is None:
            w.setWindowState(w.windowState() | Qt.WindowMaximized)
    keep_on_screen(w)
    return bool(used)


def save(w: QWidget, key: str, s: QSettings | None = None) -> None:
    s = s or settings()
    s.setValue(f"{key}/geometry", w.saveGeometry())
    s.setValue(f"{key}/screen", _screen_key(w))
    save_splitters(w, key, s)
    s.sync()


def save_splitters(root: QWidget, key: str, s: QSettings) -> None:
    for sp in root.findChildren(QSplitter):
        if sp.objectName():
            s.setValue(f"{key}/splitters/{sp.objectName()}", sp.saveState())


def restore_splitters(root: QWidget, key: str, s: QSettings | None = None) -> None:
    """Splitter positions saved under ``key`` (by object name); a state that does not fit is ignored."""
    s = s or settings()
    for sp in root.findChildren(QSplitter):
        state = s.value(f"{key}/splitters/{sp.objectName()}") if sp.objectName() else None
        if isinstance(state, QByteArray):
            sp.restoreState(state)

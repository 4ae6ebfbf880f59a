"""Where Lightbox keeps its files on the user's machine.

Everything lives under one data folder (``$LIGHTBOX_HOME``, else ``$XDG_DATA_HOME/lightbox``,
else ``~/.local/share/lightbox``; ``%LOCALAPPDATA%\\Lightbox`` on Windows). The database and the
weights folder can each be moved on their own with ``$LIGHTBOX_DB`` / ``$LIGHTBOX_WEIGHTS``.

Patient data at rest is the user's alone: the data folder is created 0700 and what Lightbox writes into it
(the database, received DICOM instances, exports, logs) is 0600. An install from before this rule (folder
0755, files 0644 under umask 022) is fixed the first time a process asks for the data folder: the folder
goes to 0700 and every file and folder in it loses its group and other permissions (``secure_tree``).
"""
from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_SECURED: set[str] = set()

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MANIFEST = PROJECT_ROOT / "weights" / "manifest.toml"


def data_home() -> Path:
    env = os.environ.get("LIGHTBOX_HOME")
    if env:
        p = Path(env)
    elif sys.platform == "win32":
        p = Path(os.environ.get("LOCALAPPDATA", Path.home())) / "Lightbox"
    else:
        p = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "lightbox"
    p.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    key = str(p)
    if key not in _SECURED:  # once per process: one stat when the folder is already private
        _SECURED.add(key)
        secure_tree(p)
    return p


def _loose(mode: int) -> bool:
    return bool(stat.S_IMODE(mode) & 0o077)


def make_private(path: str | Path) -> None:
    """chmod a file 0600 or a folder 0700 (group and other bits off; no-op on Windows, on symlinks and on
    files another account owns, which are logged)."""
    if sys.platform == "win32":
        return
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode) or not _loose(st.st_mode):
            return
        os.chmod(path, PRIVATE_DIR if stat.S_ISDIR(st.st_mode) else stat.S_IMODE(st.st_mode) & PRIVATE_DIR)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("cannot make %s private: %s", path, e)


def secure_tree(root: str | Path) -> int:
    """Make the data folder private: 0700 for it, and when it was open to others (an install from before
    the rule), every folder and file under it too. Returns how many entries were changed."""
    if sys.platform == "win32":
        return 0
    root = Path(root)
    try:
        st = os.lstat(root)
    except OSError:
        return 0
    if not _loose(st.st_mode):
        return 0
    changed = 0
    make_private(root)
    changed += 1
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for n in dirnames + filenames:
            q = os.path.join(dirpath, n)
            try:
                if _loose(os.lstat(q).st_mode) and not os.path.islink(q):
                    make_private(q)
                    changed += 1
            except OSError:
                continue
    log.warning("data folder %s was readable by other accounts: %d entries made private (0700/0600)", root, changed)
    return changed


def private_dir(path: str | Path) -> Path:
    """A folder (and its parents inside the data folder) created 0700."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    make_private(p)
    return p


def open_private(path: str | Path, mode: str = "a", encoding: str | None = "utf-8"):
    """Open a file for writing, created 0600 (and made 0600 if it exists): logs, sidecars."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE)
    make_private(path)
    return os.fdopen(fd, mode, encoding=None if "b" in mode else encoding)


def db_path() -> Path:
    env = os.environ.get("LIGHTBOX_DB")
    return Path(env) if env else data_home() / "lightbox.sqlite"


def weights_dir() -> Path:
    env = os.environ.get("LIGHTBOX_WEIGHTS")
    p = Path(env) if env else data_home() / "weights"
    p.mkdir(parents=True, exist_ok=True)
    return p


def exports_dir() -> Path:
    return private_dir(data_home() / "exports")


def logs_dir() -> Path:
    return private_dir(data_home() / "logs")

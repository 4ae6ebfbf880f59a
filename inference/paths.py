"""Where Lightbox keeps its files on the user's machine.

Everything lives under one data folder (``$LIGHTBOX_HOME``, else ``$XDG_DATA_HOME/lightbox``,
else ``~/.local/share/lightbox``; ``%LOCALAPPDATA%\\Lightbox`` on Windows). The database and the
weights folder can each be moved on their own with ``$LIGHTBOX_DB`` / ``$LIGHTBOX_WEIGHTS``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

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
    p.mkdir(parents=True, exist_ok=True)
    return p


def db_path() -> Path:
    env = os.environ.get("LIGHTBOX_DB")
    return Path(env) if env else data_home() / "lightbox.sqlite"


def weights_dir() -> Path:
    env = os.environ.get("LIGHTBOX_WEIGHTS")
    p = Path(env) if env else data_home() / "weights"
    p.mkdir(parents=True, exist_ok=True)
    return p


def exports_dir() -> Path:
    p = data_home() / "exports"
    p.mkdir(parents=True, exist_ok=True)
    return p

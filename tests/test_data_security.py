"""Patient data at rest is the user's alone: the data folder is 0700; the database (with its WAL/SHM),
received DICOM instances, exports and logs are 0600; an install from before the rule is fixed on start."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from inference import paths

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def fresh_home(tmp_path, monkeypatch):
    home = tmp_path / "fresh" / "lightbox"
    monkeypatch.setenv("LIGHTBOX_HOME", str(home))
    monkeypatch.setenv("LIGHTBOX_DB", str(home / "lightbox.sqlite"))
    monkeypatch.setattr(paths, "_SECURED", set())
    old = os.umask(0o022)  # what a desktop session has: the bug this guards against
    yield home
    os.umask(old)


def test_new_install_is_private(fresh_home):
    from app.store import Store
    from inference.study import Study

    home = paths.data_home()
    assert home == fresh_home and mode(home) == 0o700
    s = Store()
    s.add_study(Study("ecg", "/x.hd5", "a" * 64, "x.hd5"))
    for suffix in ("", "-wal", "-shm"):
        p = home / f"lightbox.sqlite{suffix}"
        assert p.exists() and mode(p) == 0o600, (p, oct(mode(p)))
    s.close()
    assert mode(paths.exports_dir()) == 0o700 and mode(paths.logs_dir()) == 0o700
    with paths.open_private(paths.logs_dir() / "x.log") as f:
        f.write("line\n")
    assert mode(paths.logs_dir() / "x.log") == 0o600


def test_exports_and_atomic_writes_are_0600(fresh_home):
    from inference.atomic import atomic_write_text

    out = paths.exports_dir() / "report.csv"
    atomic_write_text(out, "a,b\n")
    assert mode(out) == 0o600


def test_existing_install_is_fixed_on_start(fresh_home):
    """What an older Lightbox left under umask 022: folder 0755, database 0644, received files, exports and a
    log 0644. Starting (asking for the data folder, opening the store) makes all of it private."""
    import sqlite3

    home = fresh_home
    (home / "exports").mkdir(parents=True)
    (home / "received" / "1.2.3" / "1.2.3.4").mkdir(parents=True)
    (home / "logs").mkdir()
    files = [home / "exports" / "r.pdf", home / "received" / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm",
             home / "logs" / "dicom-node.log", home / "settings.ini"]
    for f in files:
        f.write_bytes(b"x")
        os.chmod(f, 0o644)
    con = sqlite3.connect(home / "lightbox.sqlite")
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (x)")
    con.close()
    os.chmod(home / "lightbox.sqlite", 0o644)
    for d in (home, home / "exports", home / "received", home / "received" / "1.2.3", home / "logs"):
        os.chmod(d, 0o755)
    assert mode(home) == 0o755

    from app.store import Store

    Store().close()  # data_home() on the way: the one-time walk; the store fixes its own file too
    assert mode(home) == 0o700
    for d in (home / "exports", home / "received", home / "received" / "1.2.3", home / "logs"):
        assert mode(d) == 0o700, d
    for f in files + [home / "lightbox.sqlite"]:
        assert mode(f) == 0o600, (f, oct(mode(f)))


def test_database_outside_the_data_folder_is_0600_too(tmp_path, monkeypatch):
    from app.store import Store

    p = tmp_path / "elsewhere" / "site.sqlite"
    p.parent.mkdir()
    p.write_bytes(b"")
    os.chmod(p, 0o664)
    Store(p).close()
    assert mode(p) == 0o600


def test_symlinks_are_not_followed(fresh_home, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours to change")
    os.chmod(outside, 0o644)
    fresh_home.mkdir(parents=True)
    os.chmod(fresh_home, 0o755)
    (fresh_home / "link").symlink_to(outside)
    paths.data_home()
    assert mode(fresh_home) == 0o700 and mode(outside) == 0o644

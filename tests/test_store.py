"""Study store: schema, migrations, transactions, crash safety, two instances."""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from app.store import SCHEMA_VERSION, Store, StoreError
from inference.results import NOT_CLINICAL, Result
from inference.study import Study


def _study(i: int = 0) -> Study:
    return Study("ecg", f"/data/ecg{i}.hd5", f"{i:064x}", f"ecg{i}.hd5", metadata={"rate": 500})


def _result(clinical: bool = True, v: float = 0.5) -> Result:
    return Result("ecg2af", "ab" * 32, "onnxruntime", "CPU, 2 threads", 0.1, {"af_risk": v}, clinical)


def test_schema_and_wal(store):
    assert store.schema_version() == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = set(store.db.table_names())
    assert {"studies", "results", "trainees", "estimates", "findings", "model_versions", "meta"} <= tables


def test_save_and_reopen_without_recompute(tmp_path):
    p = tmp_path / "s.sqlite"
    s = Store(p)
    sid = s.save(_study(), [_result(v=0.25)])
    s.close()
    s2 = Store(p)
    r = s2.find_result(_study().sha256, "ecg", "ecg2af", "ab" * 32)
    assert r is not None and r.outputs == {"af_risk": 0.25} and r.id is not None
    assert s2.studies()[0]["id"] == sid
    assert s2.find_result(_study().sha256, "ecg", "ecg2af", "cd" * 32) is None  # other weights: recompute


def test_same_file_is_one_study(store):
    a = store.add_study(_study(1))
    b = store.add_study(_study(1))
    assert a == b
    assert len(store.studies()) == 1


def test_non_clinical_stamp_is_stored(store):
    sid = store.save(_study(), [_result(clinical=False)])
    row = store.conn.execute("SELECT clinical, stamp FROM results WHERE study_id=?", (sid,)).fetchone()
    assert row == (0, NOT_CLINICAL)
    assert store.studies()[0]["last_clinical"] == 0


def test_failed_write_leaves_nothing(store):
    class Boom(Result):
        pass

    bad = _result()
    bad.outputs = {"x": object()}  # not JSON-able: fails half-way through the save
    with pytest.raises(TypeError):
        store.save(_study(7), [_result(), bad])
    assert store.studies() == []
    assert store.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0


def test_migrates_old_database(tmp_path):
    p = tmp_path / "old.sqlite"
    s = Store(p)
    s.conn.execute("DROP TABLE model_versions")
    s.conn.execute("DROP TABLE practice_sets")
    s.conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    s.close()
    s = Store(p)
    assert s.schema_version() == SCHEMA_VERSION
    assert "model_versions" in s.db.table_names()


def test_newer_database_refused(tmp_path):
    p = tmp_path / "new.sqlite"
    s = Store(p)
    s.conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    s.close()
    with pytest.raises(StoreError, match="newer Lightbox"):
        Store(p)


def test_not_a_database(tmp_path):
    p = tmp_path / "junk.sqlite"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a Lightbox database"):
        Store(p)


def test_estimates_and_findings(store):
    sid = store.add_study(_study())
    t = store.trainee("Dr Ada")
    assert store.trainee("Dr Ada") == t
    e = store.lock_estimate(t, sid, 55, "normal")
    r = _result()
    store.add_result(sid, r)
    row = store.reveal_estimate(e, r, 60.0)
    assert row["delta"] == -5.0 and row["result_id"] == r.id
    with pytest.raises(StoreError):
        store.lock_estimate(t, sid, 140)
    f = store.add_finding(sid, time_s=1.5, frame_index=45, label="polyp", confidence=0.9, source="clinician",
                          box=[1, 2, 3, 4])
    store.update_finding(f, status="confirmed")
    assert store.findings(sid)[0]["status"] == "confirmed"
    store.delete_finding(f)
    assert store.findings(sid) == []


def test_model_versions(store):
    a = store.add_model_version("heart-sound", "/a.onnx", "aa", {"acc": 0.8})
    b = store.add_model_version("heart-sound", "/b.onnx", "bb", {"acc": 0.9})
    vs = store.model_versions("heart-sound")
    assert [v["version"] for v in vs] == [1, 2] and [v["active"] for v in vs] == [0, 1]
    store.activate_model_version(a)
    assert [v["active"] for v in store.model_versions("heart-sound")] == [1, 0]
    assert b


def test_two_instances_share_one_database(tmp_path):
    p = tmp_path / "shared.sqlite"
    a, b = Store(p), Store(p)
    a.save(_study(1), [_result()])
    b.save(_study(2), [_result()])
    ro = Store(p, readonly=True)
    assert len(ro.studies()) == 2
    assert a.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


WRITER = textwrap.dedent("""
    import sys, itertools
    sys.path.insert(0, {root!r})
    from app.store import Store
    from inference.results import Result
    from inference.study import Study
    s = Store(sys.argv[1])
    print("ready", flush=True)
    for i in itertools.count():
        st = Study("ecg", f"/x/{{i}}", f"{{sys.argv[2]}}{{i:060x}}", f"s{{i}}")
        rs = [Result(f"m{{k}}", "w", "numpy", "cpu", 0.0, {{"v": k, "pad": "x" * 2000}}, True) for k in range(5)]
        s.save(st, rs)
""")


def test_sigkill_during_saves_leaves_whole_saves_only(tmp_path):
    """Kill a writer at random points, many times: the database stays intact and all-or-nothing."""
    from tests.conftest import ROOT

    p = tmp_path / "crash.sqlite"
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(ROOT)))
    rng = random.Random(1)
    kills = 12
    for k in range(kills):
        proc = subprocess.Popen([sys.executable, str(script), str(p), f"{k:04x}"], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.02, 0.25))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        conn = sqlite3.connect(p)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        partial = conn.execute(
            "SELECT s.id, COUNT(r.id) FROM studies s LEFT JOIN results r ON r.study_id = s.id "
            "GROUP BY s.id HAVING COUNT(r.id) != 5").fetchall()
        assert partial == [], f"half-written saves after kill {k}: {partial[:3]}"
        conn.close()
    s = Store(p)
    assert len(s.studies(limit=100000)) > 0

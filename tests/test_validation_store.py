"""Local validations and the echo case library in the store: the schema step on a database written by the
previous schema version, validation records and the provenance phrase, teaching-set import, sessions."""
from __future__ import annotations

import json
import sqlite3

import pytest
import sqlite_utils

from app.store import MIGRATIONS, SCHEMA_VERSION, Store


def _schema2_database(path):
    """A database exactly as schema version 2 wrote it (its own migrations, nothing newer), with data."""
    conn = sqlite3.connect(str(path), isolation_level=None)
    db = sqlite_utils.Database(conn)
    db["meta"].create({"key": str, "value": str}, pk="key")
    MIGRATIONS[1](db)
    MIGRATIONS[2](db)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    conn.execute("INSERT INTO studies (modality, name, source_path, sha256, metadata, created_at, opened_at) "
                 "VALUES ('echo', 'old.avi', '/x/old.avi', 'aa', '{}', '2024-01-01', '2024-01-01')")
    conn.execute("INSERT INTO trainees (name, created_at) VALUES ('Dr Old', '2024-01-01')")
    conn.execute("INSERT INTO estimates (trainee_id, study_id, ef_estimate, category, locked_at) "
                 "VALUES (1, 1, 45, 'mild', '2024-01-01T10:00:00')")
    conn.close()


def test_schema_step_upgrades_a_version_2_database_and_keeps_its_data(tmp_path):
    p = tmp_path / "v2.sqlite"
    _schema2_database(p)
    s = Store(p)
    assert s.schema_version() == SCHEMA_VERSION >= 3
    assert {"validations", "case_library", "practice_sessions"} <= set(s.db.table_names())
    assert {"expert_ef", "expert_delta", "session_id", "seconds"} <= set(s.db["estimates"].columns_dict)
    est = s.db["estimates"].get(1)
    assert est["ef_estimate"] == 45 and est["expert_ef"] is None
    assert s.studies()[0]["name"] == "old.avi" and s.trainees()[0]["name"] == "Dr Old"
    s.close()
    # idempotent: running the step again (another branch's numbering, a re-run) changes nothing
    from app.validation.schema import migrate

    s = Store(p)
    migrate(s.db)
    assert s.db["estimates"].get(1)["ef_estimate"] == 45
    s.close()


def _ev(model="heart-sound", sha="ab" * 32, n=12, headline="AUROC 0.87", date="2025-03-04T10:00:00"):
    return {"model_id": model, "weights_sha256": sha, "kind": "classification", "n_cases": n, "n_failures": 1,
            "headline": headline, "labels": {"path": "/x/labels.csv", "sha256": "cd" * 32}, "device": "CPU",
            "out_dir": "/x/out", "date": date, "cases": [{"line": 2}], "metrics": {"binary": {"auroc": 0.87}}}


def test_validation_records_and_the_provenance_phrase(store):
    from app.validation import records

    assert records.phrase(store, "heart-sound") == records.NOT_VALIDATED == "not validated on local cases"
    records.save(store, _ev(headline="AUROC 0.80", date="2025-01-01T00:00:00"))
    vid = records.save(store, _ev())
    assert records.phrase(store, "heart-sound") == "validated here on 12 cases: AUROC 0.87 (2025-03-04)"
    assert records.phrase(store, "heart-sound", "ab" * 32).startswith("validated here on 12")
    assert records.phrase(store, "heart-sound", "ff" * 32) == records.NOT_VALIDATED  # other weights: not this model
    row = records.validations(store, "heart-sound")[0]
    assert row["id"] == vid and row["evaluation"]["metrics"]["binary"]["auroc"] == 0.87
    assert "cases" not in row["evaluation"]  # per-case rows stay in the output folder
    records.save(store, _ev(model="echonet-ef", n=0, headline="no metric"))
    assert records.phrase(store, "echonet-ef") == records.NOT_VALIDATED  # nothing evaluated is no validation


def _teaching_set(tmp_path, n=6):
    vids = tmp_path / "Videos"
    vids.mkdir()
    lines = ["FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split"]
    for i in range(n):
        (vids / f"0X{i:02d}.avi").write_bytes(b"RIFF" + bytes([i]) * 64)
        lines.append(f"0X{i:02d},{25 + 8 * i},40,90,112,112,50,100,TRAIN")
    lines.append("0XMISSING,50,1,1,1,1,1,1,TRAIN")
    (tmp_path / "FileList.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "FileList.csv"


def test_import_teaching_set_keeps_expert_out_of_study_metadata(tmp_path, store):
    from app.echo import library as lib

    out = lib.import_set(store, _teaching_set(tmp_path), "Set A")
    assert out["imported"] == 6 and out["updated"] == 0
    assert [f["file"] for f in out["failures"]] == ["0XMISSING"] and out["failures"][0]["error"] == "file not found"
    assert lib.sets(store) == [{"name": "Set A", "n": 6, "imported_at": lib.sets(store)[0]["imported_at"]}]
    cases = lib.set_cases(store, "Set A")
    assert len(cases) == 6 and all("expert" not in k for k in cases[0])
    for st in store.studies():
        assert "25" not in json.dumps(st["metadata"])  # the expert value is not in what the app shows
    sid = cases[0]["study_id"]
    assert lib.expert_for(store, sid)["expert_ef"] == 25.0 and lib.expert_for(store, sid)["expert_category"] == "severe"
    again = lib.import_set(store, tmp_path / "FileList.csv", "Set A")
    assert again["imported"] == 0 and again["updated"] == 6 and len(store.studies()) == 6
    (tmp_path / "labels.csv").write_text("file,label\nVideos/0X00.avi,normal\n")
    with pytest.raises(ValueError, match="EF column"):
        lib.import_set(store, tmp_path / "labels.csv")


def test_session_summary_against_expert_and_ai(tmp_path, store):
    from app.echo import library as lib
    from inference.results import Result

    lib.import_set(store, _teaching_set(tmp_path), "Set A")
    tid = store.trainee("Dr S")
    s = lib.start_session(store, tid, "Set A", 4, seed=1)
    assert len(s["study_ids"]) == 4 and len(set(s["study_ids"])) == 4
    for i, sid in enumerate(s["study_ids"]):
        expert = lib.expert_for(store, sid)["expert_ef"]
        eid = store.lock_estimate(tid, sid, expert + 5)  # always 5 points high
        lib.record_expert(store, eid, lib.expert_for(store, sid))
        lib.lock_in_session(store, eid, s["id"], 20.0 + i)
        if i < 2:  # the AI ran on two of them, 2 points low
            r = Result("echonet-ef", "ab" * 32, "torch", "CPU", 1.0, {"LVEF_whole_video_%": expert - 2}, False)
            store.add_result(sid, r)
            store.reveal_estimate(eid, r, expert - 2)
    lib.finish_session(store, s["id"])
    rows = lib.session_rows(store, s["id"])
    sm = lib.summary(rows)
    assert sm["vs_expert"]["n"] == 4 and sm["vs_expert"]["bias"] == pytest.approx(5.0)
    assert sm["vs_expert"]["mae"] == pytest.approx(5.0)
    assert sm["ai_vs_expert"]["n"] == 2 and sm["ai_vs_expert"]["bias"] == pytest.approx(-2.0)
    assert sm["vs_ai"]["bias"] == pytest.approx(7.0)
    assert sm["seconds_total"] == pytest.approx(20 + 21 + 22 + 23)
    want = sum(lib.ef_category(r["expert_ef"] + 5) == lib.ef_category(r["expert_ef"]) for r in rows) / 4
    assert sm["category_agreement"] == pytest.approx(want)
    assert "bias +5.0" in lib.summary_text(sm) and "AI vs expert on 2" in lib.summary_text(sm)
    pdf = lib.export_session_pdf(store, s["id"], "Dr S", tmp_path / "s.pdf")
    assert pdf.stat().st_size > 5000
    assert lib.session(store, s["id"])["finished_at"]


def test_expert_is_recorded_only_after_a_lock(tmp_path, store):
    from app.echo import library as lib

    lib.import_set(store, _teaching_set(tmp_path, 2), "S")
    sid = lib.set_cases(store, "S")[0]["study_id"]
    tid = store.trainee("T")
    eid = store.lock_estimate(tid, sid, 40)
    store.conn.execute("UPDATE estimates SET locked_at=NULL WHERE id=?", (eid,))
    with pytest.raises(ValueError, match="locked"):
        lib.record_expert(store, eid, lib.expert_for(store, sid))

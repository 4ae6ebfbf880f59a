"""Patients in the store: the migration from a database the previous version wrote (every study, result,
estimate and finding kept), linking by identity, assign / merge / correct, the list's rows."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.store import SCHEMA_VERSION, Store, StoreError
from inference.results import Result
from inference.study import Study

FIXTURE = Path(__file__).parent / "fixtures" / "store_v2.sql"
OLD_TABLES = ("studies", "results", "trainees", "estimates", "findings", "model_versions", "practice_sets")


def _old_db(tmp_path) -> Path:
    p = tmp_path / "old.sqlite"
    con = sqlite3.connect(p)
    con.executescript(FIXTURE.read_text())
    con.close()
    return p


def _dump(p: Path, table: str, cols: list[str] | None = None) -> list[tuple]:
    con = sqlite3.connect(p)
    cols = cols or [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
    rows = con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY 1").fetchall()
    con.close()
    return rows


def test_migration_keeps_every_row_of_a_schema_2_database(tmp_path):
    p = _old_db(tmp_path)
    before = {t: _dump(p, t) for t in OLD_TABLES}
    con = sqlite3.connect(p)
    old_cols = {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")] for t in OLD_TABLES}
    con.close()
    assert sum(len(v) for v in before.values()) > 10 and before["estimates"] and before["findings"]
    s = Store(p)
    assert s.schema_version() == SCHEMA_VERSION
    for t in OLD_TABLES:
        # later steps add columns (patients on studies, expert EF on estimates): the old ones are unchanged
        assert _dump(p, t, old_cols[t]) == before[t], t
    # the two X-rays of PID-4711 (their metadata named the patient) are one patient; the rest unassigned
    rows = {r["name"]: r for r in s.studies()}
    assert rows["PA chest"]["patient_id"] == rows["PA chest follow-up"]["patient_id"] is not None
    assert rows["PA chest"]["patient_external_id"] == "PID-4711"
    assert rows["PA chest"]["study_date"] == "2019-03-12" and rows["PA chest follow-up"]["study_date"] == "2023-01-05"
    assert all(rows[n]["patient_id"] is None for n in ("A00001.hea", "0X1A.avi", "scan.png", "colon.mp4"))
    assert rows["0X1A.avi"]["n_non_clinical"] == 1 and rows["scan.png"]["n_results"] == 0
    assert len(s.export_salt()) == 32
    # the practice loop still reads its estimate and the store still writes
    assert s.estimates()[0]["ai_ef"] == pytest.approx(54.3)
    s.save(Study("ecg", "/x.hd5", "77" * 32, "x.hd5", metadata={"patient": {"external_id": "PID-4711"}}))
    assert {r["patient_id"] for r in s.studies() if r["name"] in ("x.hd5", "PA chest")} == {rows["PA chest"]["patient_id"]}
    s.close()
    Store(p).close()  # reopening migrates nothing twice


def _st(i: int, modality: str = "ecg", **patient) -> Study:
    meta = {"patient": patient} if patient else {}
    return Study(modality, f"/data/{i}", f"{i:064x}", f"study{i}", metadata=meta)


def test_identity_links_studies_to_patients(store):
    a = store.save(_st(1, external_id="P1", name="DOE, JOHN", birth_date="1961-04-17", study_date="2020-01-02"))
    b = store.save(_st(2, "echo", external_id="P1", name="Doe, John"))
    c = store.save(_st(3, name="ROE, JANE", birth_date="1970-01-01"))
    d = store.save(_st(4, name="jane roe", birth_date="1970-01-01"))
    e = store.save(_st(5))
    rows = {r["id"]: r for r in store.studies()}
    assert rows[a]["patient_id"] == rows[b]["patient_id"] and rows[c]["patient_id"] == rows[d]["patient_id"]
    assert rows[a]["patient_id"] != rows[c]["patient_id"] and rows[e]["patient_id"] is None
    assert rows[a]["study_date"] == "2020-01-02" and rows[a]["patient_name"] == "DOE, JOHN"
    pats = {p["name"]: p for p in store.patients()}
    assert pats["DOE, JOHN"]["n_studies"] == 2 and set(pats["DOE, JOHN"]["modalities"].split(",")) == {"ecg", "echo"}
    assert [r["id"] for r in store.patient_studies(rows[a]["patient_id"])] == [a, b]


def test_assign_merge_and_correct(store):
    a = store.save(_st(1, external_id="P1", name="DOE, JON"))
    b = store.save(_st(2, external_id="P2", name="DOE, JOHN"))
    loose = store.save(_st(3))
    p1, p2 = store.study(a)["patient_id"], store.study(b)["patient_id"]
    # assign an unassigned study by hand; a re-read of its file does not undo it
    store.assign_study(loose, p2)
    store.save(_st(3))
    assert store.study(loose)["patient_id"] == p2
    # a new patient typed in, then a study moved to it
    p3 = store.add_patient(name="NEW, PATIENT", birth_date="1980-02-03")
    store.assign_study(a, p3)
    assert store.study(a)["patient_id"] == p3 and store.study(a)["patient_source"] == "user"
    store.reset_assignment(a)
    assert store.study(a)["patient_id"] == p1
    # merge P1 into P2: studies move, a later file naming P1 finds P2
    store.merge_patients(p1, p2)
    assert store.study(a)["patient_id"] == p2
    late = store.save(_st(9, external_id="P1"))
    assert store.study(late)["patient_id"] == p2
    assert p1 not in {p["id"] for p in store.patients()}
    with pytest.raises(StoreError):
        store.merge_patients(p2, p2)
    # correct the name: the file's ID still finds the patient
    store.rename_patient(p2, "DOE, JOHN A")
    assert store.patient(p2)["name"] == "DOE, JOHN A"
    again = store.save(_st(10, external_id="P2", name="DOE, JOHN"))
    assert store.study(again)["patient_id"] == p2 and store.patient(p2)["name"] == "DOE, JOHN A"
    with pytest.raises(StoreError):
        store.rename_patient(p2, "  ")
    with pytest.raises(StoreError):
        store.update_patient(p2, birth_date="not a date")
    with pytest.raises(StoreError):
        store.add_patient()
    # a patient typed in without an ID, given one later: a file with that ID finds it
    p4 = store.add_patient(name="LATE, ID")
    store.update_patient(p4, external_id="P4")
    assert store.study(store.save(_st(11, external_id="P4")))["patient_id"] == p4
    # every identity an anonymised export must remove: the file's, the patient's, the merged one's
    names = {i.name for i in store.identities_of(a)}
    assert {"DOE, JON", "DOE, JOHN A"} <= names


def test_non_clinical_count_in_rows(store):
    r = Result("m", "", "numpy", "CPU", 0.1, {"x": 1}, clinical=False)
    sid = store.save(_st(1), [r, Result("m", "", "numpy", "CPU", 0.1, {"x": 1}, clinical=True)])
    row = next(x for x in store.studies() if x["id"] == sid)
    assert row["n_results"] == 2 and row["n_non_clinical"] == 1 and row["last_clinical"] == 1


def test_demo_ecg_and_synthetic_chest_dicom_belong_to_one_demo_patient(store, tmp_path):
    from inference.detect import open_study
    from inference.ecg import demo as ecg_demo
    from inference.xray import demo as xray_demo

    a = store.save(open_study(ecg_demo.make(tmp_path)))
    # the synthetic DICOM names the demo patient; the real demo radiograph (Kermany, CC BY 4.0) names nobody
    b = store.save(open_study(xray_demo.make_dicom(tmp_path)))
    pa, pb = store.study(a)["patient_id"], store.study(b)["patient_id"]
    assert pa == pb is not None and store.patient(pa)["name"] == "DEMO, SYNTHETIC"

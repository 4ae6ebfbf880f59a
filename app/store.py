"""The study store: one SQLite file (WAL), written through sqlite-utils, every write one transaction.

Tables
- studies     one row per opened file (modality, source path, sha256, metadata JSON)
- results     one row per model run (model id, weights sha256, runtime, device, seconds,
              outputs JSON, clinical flag + stamp) — every number shown anywhere traces to a row here
- trainees / estimates   the deliberate-practice loop (visual EF estimates, locked before reveal)
- findings    timestamped findings/annotations (endoscopy, calipers, clinician notes)
- model_versions         locally trained model versions (heart sounds) with metrics
- validations / case_library / practice_sessions   local validation runs, echo teaching sets with
              expert EF, timed practice sessions (app.validation.schema: schema step)
- patients    who studies belong to (identity from the files, or assigned by hand); studies carry
              patient_id, study_date, accession (app.patients.store: schema step and methods)
- result_blobs  compact binary payloads of a result (an endoscopy analysis's per-frame polyp masks),
              read on demand by name (schema 5)
- dicom_instances  received DICOM instances: UIDs, file, sender, the study each became or why it could
              not be read (app.dicomnet.store: schema 6 and methods)
- meta        schema_version, export_salt

A save of a study with its results is one transaction: after a crash the database holds the
whole save or none of it. Schema changes are numbered migrations run in order at open.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable

import sqlite_utils

from app.validation.schema import migrate as _m_validation
from app.dicomnet.store import DicomMixin
from app.dicomnet.store import migrate as _m_dicom
from app.patients.store import PatientsMixin, link_identity
from app.patients.store import migrate as _m_patients
from inference import paths
from inference.patients import identity_from_metadata
from inference.results import NOT_CLINICAL, Result, now_iso
from inference.study import Study

SCHEMA_VERSION = 6


def _m1(db: sqlite_utils.Database) -> None:
    db["studies"].create({
        "id": int, "modality": str, "name": str, "source_path": str, "sha256": str,
        "metadata": str, "created_at": str, "opened_at": str,
    }, pk="id", not_null={"modality", "sha256"})
    db["studies"].create_index(["sha256", "modality"], unique=True)
    db["results"].create({
        "id": int, "study_id": int, "model_id": str, "weights_sha256": str, "runtime": str,
        "device": str, "seconds": float, "outputs": str, "clinical": int, "stamp": str,
        "notes": str, "created_at": str,
    }, pk="id", foreign_keys=[("study_id", "studies", "id")], not_null={"study_id", "model_id"})
    db["results"].create_index(["study_id"])
    db["trainees"].create({"id": int, "name": str, "created_at": str}, pk="id")
    db["trainees"].create_index(["name"], unique=True)
    db["estimates"].create({
        "id": int, "trainee_id": int, "study_id": int, "result_id": int, "ef_estimate": float,
        "category": str, "locked_at": str, "ai_ef": float, "delta": float, "revealed_at": str,
    }, pk="id", foreign_keys=[("trainee_id", "trainees", "id"), ("study_id", "studies", "id")])
    db["findings"].create({
        "id": int, "study_id": int, "time_s": float, "frame_index": int, "label": str,
        "confidence": float, "source": str, "note": str, "box": str, "status": str, "created_at": str,
    }, pk="id", foreign_keys=[("study_id", "studies", "id")])
    db["findings"].create_index(["study_id"])


def _m2(db: sqlite_utils.Database) -> None:
    db["model_versions"].create({
        "id": int, "model_id": str, "version": int, "path": str, "sha256": str, "metrics": str,
        "created_at": str, "active": int,
    }, pk="id")
    db["practice_sets"].create({"study_id": int, "added_at": str}, pk="study_id",
                               foreign_keys=[("study_id", "studies", "id")])


def _m_blobs(db: sqlite_utils.Database) -> None:
    """Schema 5: result_blobs (idempotent: a database that already has the table keeps it)."""
    db.conn.execute("CREATE TABLE IF NOT EXISTS result_blobs (result_id INTEGER NOT NULL REFERENCES results(id), "
                    "name TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (result_id, name))")


MIGRATIONS = {1: _m1, 2: _m2, 3: _m_patients, 4: _m_validation, 5: _m_blobs, 6: _m_dicom}


class StoreError(Exception):
    pass


def _private_db(path: Path) -> None:
    """Create the database file 0600 before SQLite does (it would use 0644 under umask 022), and fix the
    mode of an existing one and its WAL/SHM companions (a database written by an older Lightbox)."""
    import os

    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, paths.PRIVATE_FILE))
    except OSError:
        return  # sqlite3 says what is wrong with the path
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        paths.make_private(p)


# sqlite-utils' insert/update wrap themselves in ``with conn:``, which would COMMIT an enclosing
# transaction half-way; writes inside transactions therefore use these two plain helpers.
def _insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    return int(conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values())).lastrowid)


def _update(conn: sqlite3.Connection, table: str, pk: int, row: dict[str, Any]) -> None:
    sets = ", ".join(f"{k} = ?" for k in row)
    conn.execute(f"UPDATE {table} SET {sets} WHERE id = ?", [*row.values(), pk])


class Store(PatientsMixin, DicomMixin):
    def __init__(self, path: str | Path | None = None, readonly: bool = False):
        self.path = Path(path) if path else paths.db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.readonly = readonly
        if readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10,
                                   check_same_thread=False)
        else:
            paths.data_home()  # on start: an older install's open data folder is made private (once)
            _private_db(self.path)  # patient data: 0600 (SQLite gives its -wal/-shm the same mode)
            conn = sqlite3.connect(str(self.path), timeout=10, check_same_thread=False,
                                   isolation_level=None)  # explicit BEGIN/COMMIT below
        try:
            conn.execute("PRAGMA busy_timeout = 10000")
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as e:
            conn.close()
            raise StoreError(f"{self.path}: not a Lightbox database ({e})") from None
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        if not readonly:
            self._migrate()

    # -- schema -----------------------------------------------------------------------------
    def schema_version(self) -> int:
        if "meta" not in self.db.table_names():
            return 0
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        with self.transaction():
            if "meta" not in self.db.table_names():
                self.db["meta"].create({"key": str, "value": str}, pk="key")
            v = self.schema_version()
            if v > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer Lightbox (schema {v}); update Lightbox")
            for n in range(v + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[n](self.db)
                self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (str(n),))

    def transaction(self):
        return _Tx(self.conn)

    def close(self) -> None:
        self.conn.close()

    # -- studies ----------------------------------------------------------------------------
    def _upsert_study(self, study: Study) -> int:
        row = self.conn.execute("SELECT id FROM studies WHERE sha256=? AND modality=?",
                                (study.sha256, study.modality)).fetchone()
        meta = json.dumps(study.metadata, default=str)
        if row:
            sid = int(row[0])
            self.conn.execute("UPDATE studies SET opened_at=?, source_path=?, name=?, metadata=? WHERE id=?",
                              (now_iso(), study.source, study.name, meta, sid))
        else:
            sid = int(self.conn.execute(
                "INSERT INTO studies (modality, name, source_path, sha256, metadata, created_at, opened_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (study.modality, study.name, study.source, study.sha256, meta, now_iso(), now_iso())).lastrowid)
        link_identity(self.conn, sid, identity_from_metadata(study.metadata))
        return sid

    def add_study(self, study: Study) -> int:
        with self.transaction():
            return self._upsert_study(study)

    def _insert_result(self, study_id: int, r: Result) -> int:
        cur = self.conn.execute(
            "INSERT INTO results (study_id, model_id, weights_sha256, runtime, device, seconds, outputs,"
            " clinical, stamp, notes, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (study_id, r.model_id, r.weights_sha256, r.runtime, r.device, float(r.seconds),
             json.dumps(r.outputs), int(bool(r.clinical)), "" if r.clinical else NOT_CLINICAL,
             json.dumps(r.notes), r.created))
        r.id = int(cur.lastrowid)
        for name, data in (r.blobs or {}).items():
            self.conn.execute("INSERT INTO result_blobs (result_id, name, data) VALUES (?,?,?)",
                              (r.id, name, sqlite3.Binary(bytes(data))))
        return r.id

    def result_blob(self, result_id: int | None, name: str) -> bytes | None:
        """A stored result's binary payload by name (None when it has none: an older result, another model)."""
        if result_id is None:
            return None
        row = self.conn.execute("SELECT data FROM result_blobs WHERE result_id=? AND name=?",
                                (int(result_id), name)).fetchone()
        return bytes(row[0]) if row else None

    def save(self, study: Study, results: Iterable[Result] = ()) -> int:
        """Store a study and its results in one transaction; returns the study id."""
        with self.transaction():
            sid = self._upsert_study(study)
            for r in results:
                self._insert_result(sid, r)
        return sid

    def add_result(self, study_id: int, result: Result) -> int:
        with self.transaction():
            return self._insert_result(study_id, result)

    def study_id(self, sha256: str, modality: str) -> int | None:
        row = self.conn.execute("SELECT id FROM studies WHERE sha256=? AND modality=?",
                                (sha256, modality)).fetchone()
        return int(row[0]) if row else None

    def studies(self, limit: int = 500) -> list[dict[str, Any]]:
        """Studies, newest first, with the latest result's model and stamp (the list's AI status), the
        count of results and of NOT A CLINICAL RESULT ones, and the patient's name, ID and birth date."""
        q = """
        SELECT s.*, r.model_id AS last_model, r.clinical AS last_clinical, r.created_at AS last_result_at,
               (SELECT COUNT(*) FROM results r2 WHERE r2.study_id = s.id) AS n_results,
               (SELECT COUNT(*) FROM results r3 WHERE r3.study_id = s.id AND r3.clinical = 0) AS n_non_clinical,
               p.name AS patient_name, p.external_id AS patient_external_id, p.birth_date AS patient_birth_date
        FROM studies s
        LEFT JOIN results r ON r.id = (SELECT MAX(id) FROM results WHERE study_id = s.id)
        LEFT JOIN patients p ON p.id = s.patient_id
        ORDER BY s.opened_at DESC, s.id DESC LIMIT ?"""
        cur = self.conn.execute(q, (limit,))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def study(self, study_id: int) -> dict[str, Any] | None:
        cur = self.conn.execute("SELECT * FROM studies WHERE id=?", (study_id,))
        row = cur.fetchone()
        if not row:
            return None
        d = dict(zip([c[0] for c in cur.description], row))
        d["metadata"] = json.loads(d["metadata"] or "{}")
        return d

    def results(self, study_id: int, model_id: str | None = None) -> list[Result]:
        q = "SELECT * FROM results WHERE study_id=?"
        args: list[Any] = [study_id]
        if model_id:
            q += " AND model_id=?"
            args.append(model_id)
        cur = self.conn.execute(q + " ORDER BY id", args)
        cols = [c[0] for c in cur.description]
        out = []
        for row in cur.fetchall():
            d = dict(zip(cols, row))
            out.append(Result(model_id=d["model_id"], weights_sha256=d["weights_sha256"] or "",
                              runtime=d["runtime"] or "", device=d["device"] or "", seconds=d["seconds"] or 0.0,
                              outputs=json.loads(d["outputs"] or "{}"), clinical=bool(d["clinical"]),
                              created=d["created_at"] or "", notes=json.loads(d["notes"] or "[]"), id=d["id"]))
        return out

    def latest_result(self, study_id: int, model_id: str | None = None) -> Result | None:
        rs = self.results(study_id, model_id)
        return rs[-1] if rs else None

    def find_result(self, sha256: str, modality: str, model_id: str, weights_sha256: str) -> Result | None:
        """A stored result for this file + model + weights (re-opening never recomputes)."""
        sid = self.study_id(sha256, modality)
        if sid is None:
            return None
        for r in reversed(self.results(sid, model_id)):
            if r.weights_sha256 == weights_sha256:
                return r
        return None

    # -- findings ---------------------------------------------------------------------------
    def add_finding(self, study_id: int, **f: Any) -> int:
        f.setdefault("created_at", now_iso())
        f.setdefault("status", "proposed")
        if isinstance(f.get("box"), (list, tuple, dict)):
            f["box"] = json.dumps(f["box"])
        with self.transaction():
            return _insert(self.conn, "findings", dict(study_id=study_id, **f))

    def file_proposed_findings(self, study_id: int, result: Result) -> int:
        """File a model result's proposed findings (its ``_findings`` output) for review, once per result:
        the viewer, ``lightbox analyse`` and the PDF then list the same findings. Returns how many were
        filed now (0 when the result proposes none or they were filed before)."""
        props = result.outputs.get("_findings") or []
        if not props or result.id is None:
            return 0
        tag = f"{result.model_id} · result #{result.id}"
        if any(f.get("source") == tag for f in self.findings(study_id)):
            return 0
        with self.transaction():
            for f in props:
                box = f.get("box")
                _insert(self.conn, "findings", dict(
                    study_id=study_id, time_s=f["time_s"], frame_index=f["frame_index"], label=f["label"],
                    confidence=f.get("confidence"), source=tag, note=f.get("note") or "",
                    box=json.dumps(box) if isinstance(box, (list, tuple, dict)) else box,
                    status="proposed", created_at=now_iso()))
        return len(props)

    def update_finding(self, finding_id: int, **f: Any) -> None:
        with self.transaction():
            _update(self.conn, "findings", finding_id, f)

    def delete_finding(self, finding_id: int) -> None:
        with self.transaction():
            self.conn.execute("DELETE FROM findings WHERE id = ?", (finding_id,))

    def findings(self, study_id: int) -> list[dict[str, Any]]:
        return list(self.db["findings"].rows_where("study_id = ?", [study_id], order_by="time_s"))

    # -- trainees and estimates ---------------------------------------------------------------
    def trainee(self, name: str) -> int:
        name = name.strip()
        if not name:
            raise StoreError("a trainee needs a name")
        with self.transaction():
            row = self.conn.execute("SELECT id FROM trainees WHERE name=?", (name,)).fetchone()
            if row:
                return int(row[0])
            return _insert(self.conn, "trainees", {"name": name, "created_at": now_iso()})

    def trainees(self) -> list[dict[str, Any]]:
        return list(self.db["trainees"].rows_where(order_by="name"))

    def lock_estimate(self, trainee_id: int, study_id: int, ef_estimate: float,
                      category: str | None = None) -> int:
        if not (0.0 <= float(ef_estimate) <= 100.0):
            raise StoreError("an EF estimate is a percentage between 0 and 100")
        with self.transaction():
            return _insert(self.conn, "estimates", {
                "trainee_id": trainee_id, "study_id": study_id, "ef_estimate": float(ef_estimate),
                "category": category, "locked_at": now_iso()})

    def reveal_estimate(self, estimate_id: int, result: Result, ai_ef: float) -> dict[str, Any]:
        with self.transaction():
            est = self.db["estimates"].get(estimate_id)
            _update(self.conn, "estimates", estimate_id, {
                "result_id": result.id, "ai_ef": float(ai_ef),
                "delta": float(est["ef_estimate"]) - float(ai_ef), "revealed_at": now_iso()})
        return self.db["estimates"].get(estimate_id)

    def estimates(self, trainee_id: int | None = None) -> list[dict[str, Any]]:
        if trainee_id is None:
            return list(self.db["estimates"].rows_where(order_by="id"))
        return list(self.db["estimates"].rows_where("trainee_id = ?", [trainee_id], order_by="id"))

    # -- trained model versions ---------------------------------------------------------------
    def add_model_version(self, model_id: str, path: str, sha256: str, metrics: dict,
                          activate: bool = True) -> int:
        with self.transaction():
            row = self.conn.execute("SELECT COALESCE(MAX(version), 0) FROM model_versions WHERE model_id=?",
                                    (model_id,)).fetchone()
            if activate:
                self.conn.execute("UPDATE model_versions SET active=0 WHERE model_id=?", (model_id,))
            return _insert(self.conn, "model_versions", {
                "model_id": model_id, "version": int(row[0]) + 1, "path": path, "sha256": sha256,
                "metrics": json.dumps(metrics), "created_at": now_iso(), "active": int(activate)})

    def model_versions(self, model_id: str) -> list[dict[str, Any]]:
        rows = list(self.db["model_versions"].rows_where("model_id = ?", [model_id], order_by="version"))
        for r in rows:
            r["metrics"] = json.loads(r["metrics"] or "{}")
        return rows

    def activate_model_version(self, version_id: int) -> None:
        with self.transaction():
            mid = self.db["model_versions"].get(version_id)["model_id"]
            self.conn.execute("UPDATE model_versions SET active = (id = ?) WHERE model_id = ?", (version_id, mid))


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception; nests (inner blocks join)."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.outer = False

    def __enter__(self):
        if not self.conn.in_transaction:
            self.conn.execute("BEGIN IMMEDIATE")
            self.outer = True
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self.outer:
            return False
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")
        return False

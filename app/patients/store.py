"""Patients in the study store: one additive schema step and the store's patient methods (a mixin).

Schema step (``migrate``), on top of every table before it and touching none of their rows:

- ``patients``  id, external_id (the file's PatientID / MRN), issuer, name, birth_date, sex,
                identity_key (how a file's identity finds its patient: ``id:<issuer>|<ID>`` or
                ``name:<normalised name>|<birth date>``; NULL for a patient typed in without an ID),
                source (DICOM / WFDB header / HDF5 attributes / user), merged_into (a patient merged
                into another keeps its row and key, so a file of the old patient still finds the new one),
                created_at, updated_at
- ``studies``   + patient_id (NULL: unassigned), patient_source ('file': from the file's identity,
                'user': assigned by hand and never overwritten by a re-read), study_date, study_time,
                accession
- ``meta``      + export_salt (the database's own secret for anonymised study and patient codes)

Existing studies are linked from what their stored metadata already says (older X-ray rows carry
``patient_id`` and ``study_date``); nothing else changes, every study, result, estimate and finding stays.
"""
from __future__ import annotations

import json
import secrets
import sqlite3
from typing import Any

from inference.patients import Identity, identity_from_metadata
from inference.results import now_iso

PATIENT_COLUMNS = ("external_id", "issuer", "name", "birth_date", "sex")


def migrate(db) -> None:
    """The patients schema step (``db``: a sqlite_utils Database inside the store's migration transaction)."""
    conn: sqlite3.Connection = db.conn
    # idempotent: a database that already has any part of it (a half-renumbered development copy) is fine
    conn.execute("""CREATE TABLE IF NOT EXISTS patients (
        id INTEGER PRIMARY KEY, external_id TEXT, issuer TEXT, name TEXT, birth_date TEXT, sex TEXT,
        identity_key TEXT, source TEXT, merged_into INTEGER REFERENCES patients(id),
        created_at TEXT, updated_at TEXT)""")
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS idx_patients_identity_key ON patients (identity_key) "
                 "WHERE identity_key IS NOT NULL")
    have = {r[1] for r in conn.execute("PRAGMA table_info(studies)")}
    for col, typ in (("patient_id", "INTEGER REFERENCES patients(id)"), ("patient_source", "TEXT"),
                     ("study_date", "TEXT"), ("study_time", "TEXT"), ("accession", "TEXT")):
        if col not in have:
            conn.execute(f"ALTER TABLE studies ADD COLUMN {col} {typ}")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_studies_patient_id ON studies (patient_id)")
    conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('export_salt', ?)", (secrets.token_hex(16),))
    for sid, meta in conn.execute("SELECT id, metadata FROM studies").fetchall():
        try:
            m = json.loads(meta or "{}")
        except ValueError:
            m = {}
        link_identity(conn, sid, identity_from_metadata(m if isinstance(m, dict) else {}))


def resolve_key(conn: sqlite3.Connection, key: str) -> int | None:
    """The live patient a key belongs to (following merges), or None."""
    row = conn.execute("SELECT id, merged_into FROM patients WHERE identity_key = ?", (key,)).fetchone()
    if not row:
        return None
    return follow(conn, int(row[0]))


def follow(conn: sqlite3.Connection, pid: int) -> int:
    seen = set()
    while pid not in seen:
        seen.add(pid)
        row = conn.execute("SELECT merged_into FROM patients WHERE id = ?", (pid,)).fetchone()
        if not row or row[0] is None:
            return pid
        pid = int(row[0])
    return pid  # a cycle cannot be written by merge(); stop anyway


def link_identity(conn: sqlite3.Connection, study_id: int, ident: Identity) -> None:
    """Store what the file says about its study (date, time, accession) and, unless the user assigned the
    study by hand, link it to the patient its identity names (created on first sight)."""
    sets: dict[str, Any] = {}
    if ident.study_date:
        sets["study_date"] = ident.study_date
    if ident.study_time:
        sets["study_time"] = ident.study_time
    if ident.accession:
        sets["accession"] = ident.accession
    row = conn.execute("SELECT patient_source FROM studies WHERE id = ?", (study_id,)).fetchone()
    key = ident.key()
    if row is not None and row[0] != "user" and key:
        pid = resolve_key(conn, key)
        if pid is None:
            now = now_iso()
            pid = int(conn.execute(
                "INSERT INTO patients (external_id, issuer, name, birth_date, sex, identity_key, source,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (ident.external_id, ident.issuer, ident.name, ident.birth_date, ident.sex, key,
                 ident.source or "file", now, now)).lastrowid)
        sets["patient_id"] = pid
        sets["patient_source"] = "file"
    if sets:
        conn.execute(f"UPDATE studies SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                     [*sets.values(), study_id])


class PatientsMixin:
    """Patient methods of ``app.store.Store`` (uses its ``conn`` and ``transaction``)."""

    conn: sqlite3.Connection

    def _rows(self, q: str, args=()) -> list[dict[str, Any]]:
        cur = self.conn.execute(q, args)
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def export_salt(self) -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'export_salt'").fetchone()
        return row[0] if row else ""

    def patients(self, include_merged: bool = False) -> list[dict[str, Any]]:
        """Patients by name, each with its study count, modalities and first/last study date."""
        where = "" if include_merged else "WHERE p.merged_into IS NULL"
        rows = self._rows(f"""
            SELECT p.*, COUNT(s.id) AS n_studies, GROUP_CONCAT(DISTINCT s.modality) AS modalities,
                   MIN(COALESCE(s.study_date, substr(s.created_at, 1, 10))) AS first_date,
                   MAX(COALESCE(s.study_date, substr(s.created_at, 1, 10))) AS last_date
            FROM patients p LEFT JOIN studies s ON s.patient_id = p.id {where}
            GROUP BY p.id ORDER BY LOWER(COALESCE(NULLIF(p.name, ''), p.external_id, '')), p.id""")
        return rows

    def patient(self, patient_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM patients WHERE id = ?", (patient_id,))
        return rows[0] if rows else None

    def add_patient(self, name: str = "", external_id: str = "", birth_date: str = "", sex: str = "",
                    issuer: str = "") -> int:
        """A patient typed in by the user. With an ID it is the patient files with that ID link to (an
        existing patient with that ID is returned instead of a second one)."""
        from app.store import StoreError
        from inference.patients import iso_date

        name, external_id = name.strip(), external_id.strip()
        if not (name or external_id):
            raise StoreError("a patient needs a name or an ID")
        if birth_date and not iso_date(birth_date):
            raise StoreError(f"'{birth_date}' is not a date (YYYY-MM-DD)")
        ident = Identity(external_id=external_id, issuer=issuer.strip(), name=name,
                         birth_date=iso_date(birth_date), sex=sex.strip().upper()[:1])
        key = ident.key() if external_id else None
        with self.transaction():
            if key:
                pid = resolve_key(self.conn, key)
                if pid is not None:
                    return pid
            now = now_iso()
            return int(self.conn.execute(
                "INSERT INTO patients (external_id, issuer, name, birth_date, sex, identity_key, source, created_at,"
                " updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (ident.external_id, ident.issuer, ident.name, ident.birth_date, ident.sex, key, "user", now,
                 now)).lastrowid)

    def update_patient(self, patient_id: int, **fields: Any) -> None:
        """Correct a patient's name, ID, birth date or sex (the identity key the files match stays)."""
        from app.store import StoreError
        from inference.patients import iso_date

        bad = set(fields) - set(PATIENT_COLUMNS)
        if bad:
            raise StoreError(f"not a patient field: {', '.join(sorted(bad))}")
        if fields.get("birth_date"):
            d = iso_date(fields["birth_date"])
            if not d:
                raise StoreError(f"'{fields['birth_date']}' is not a date (YYYY-MM-DD)")
            fields["birth_date"] = d
        fields = {k: (str(v).strip() if v is not None else "") for k, v in fields.items()}
        if not fields:
            return
        with self.transaction():
            if self.patient(patient_id) is None:
                raise StoreError(f"no patient #{patient_id}")
            p = self.patient(patient_id) or {}
            if not p.get("identity_key") and fields.get("external_id"):
                # a patient typed in without an ID gets one: files with that ID find it from now on
                key = Identity(external_id=fields["external_id"], issuer=fields.get("issuer", p.get("issuer") or "")).key()
                if key and resolve_key(self.conn, key) is None:
                    fields["identity_key"] = key
            fields["updated_at"] = now_iso()
            self.conn.execute(f"UPDATE patients SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                              [*fields.values(), patient_id])

    def rename_patient(self, patient_id: int, name: str) -> None:
        from app.store import StoreError

        if not name.strip():
            raise StoreError("a name cannot be empty")
        self.update_patient(patient_id, name=name)

    def assign_study(self, study_id: int, patient_id: int | None) -> None:
        """Put a study under a patient (None: unassigned). A hand assignment sticks: re-opening the file
        does not move the study back to the patient its header names."""
        from app.store import StoreError

        with self.transaction():
            if patient_id is not None:
                if self.patient(patient_id) is None:
                    raise StoreError(f"no patient #{patient_id}")
                patient_id = follow(self.conn, patient_id)
            if self.conn.execute("UPDATE studies SET patient_id = ?, patient_source = 'user' WHERE id = ?",
                                 (patient_id, study_id)).rowcount != 1:
                raise StoreError(f"no study #{study_id}")

    def reset_assignment(self, study_id: int) -> None:
        """Undo a hand assignment: the study goes back to the patient its file names (or unassigned)."""
        with self.transaction():
            row = self.conn.execute("SELECT metadata FROM studies WHERE id = ?", (study_id,)).fetchone()
            if not row:
                return
            self.conn.execute("UPDATE studies SET patient_id = NULL, patient_source = NULL WHERE id = ?", (study_id,))
            link_identity(self.conn, study_id, identity_from_metadata(json.loads(row[0] or "{}")))

    def merge_patients(self, source_id: int, target_id: int) -> None:
        """Merge ``source`` into ``target``: every study moves, the target fills its empty fields from the
        source, and files that name the source patient find the target from now on."""
        from app.store import StoreError

        with self.transaction():
            target_id = follow(self.conn, target_id)
            source_id = follow(self.conn, source_id)
            if source_id == target_id:
                raise StoreError("a patient cannot be merged with itself")
            src, dst = self.patient(source_id), self.patient(target_id)
            if src is None or dst is None:
                raise StoreError("no such patient")
            fill = {k: src[k] for k in PATIENT_COLUMNS if not dst.get(k) and src.get(k)}
            fill["updated_at"] = now_iso()
            self.conn.execute(f"UPDATE patients SET {', '.join(f'{k} = ?' for k in fill)} WHERE id = ?",
                              [*fill.values(), target_id])
            self.conn.execute("UPDATE studies SET patient_id = ? WHERE patient_id = ?", (target_id, source_id))
            self.conn.execute("UPDATE patients SET merged_into = ?, updated_at = ? WHERE id = ? OR merged_into = ?",
                              (target_id, now_iso(), source_id, source_id))

    def patient_studies(self, patient_id: int) -> list[dict[str, Any]]:
        """A patient's studies, oldest first (by acquisition date, else first opened)."""
        return self._rows("""SELECT * FROM studies WHERE patient_id = ?
                             ORDER BY COALESCE(study_date, substr(created_at, 1, 10)), study_time, id""",
                          (patient_id,))

    def study_identity(self, study_id: int) -> Identity:
        """Everything identifying about a study: its patient (as stored, corrected names included) and what
        its file says (metadata), merged: what an anonymised export must not contain."""
        row = self.conn.execute("SELECT metadata, patient_id, accession FROM studies WHERE id = ?",
                                (study_id,)).fetchone()
        if not row:
            return Identity()
        ident = identity_from_metadata(json.loads(row[0] or "{}"))
        if row[2]:
            ident.accession = row[2]
        if row[1] is not None:
            p = self.patient(int(row[1])) or {}
            for k in PATIENT_COLUMNS:
                if p.get(k) and not getattr(ident, k):
                    setattr(ident, k, p[k])
        return ident

    def identities_of(self, study_id: int) -> list[Identity]:
        """Every identity an anonymised export of this study must remove: the file's, the assigned
        patient's and, for a merged patient, each patient merged into it."""
        out = [self.study_identity(study_id)]
        row = self.conn.execute("SELECT patient_id FROM studies WHERE id = ?", (study_id,)).fetchone()
        if row and row[0] is not None:
            for p in self._rows("SELECT * FROM patients WHERE id = ? OR merged_into = ?", (row[0], row[0])):
                out.append(Identity(**{k: p.get(k) or "" for k in PATIENT_COLUMNS}))
        return out

"""Received DICOM instances in the study store: one additive schema step and the store's methods (a mixin).

Schema step (``migrate``), touching no existing row:

- ``dicom_instances``  one row per received SOP instance: its UIDs (SOP class and instance, study, series),
                       DICOM Modality, file path in the data folder, size, transfer syntax, who sent it
                       (calling AE title and address) and when, ``study_id`` (the Lightbox study it became;
                       NULL when Lightbox cannot read it), ``status`` ('read' | 'unreadable') and ``problem``
                       (why not). Unreadable objects are listed here, never dropped.

A received study and its instance rows are written in one transaction (``save_received``).
"""
from __future__ import annotations

import sqlite3
from typing import Any, Iterable

from inference.results import now_iso

INSTANCE_COLUMNS = ("sop_instance_uid", "sop_class_uid", "study_uid", "series_uid", "dicom_modality", "path",
                    "bytes", "transfer_syntax", "calling_ae", "peer", "received_at", "study_id", "status",
                    "problem")


def migrate(db) -> None:
    conn: sqlite3.Connection = db.conn
    conn.execute("""CREATE TABLE IF NOT EXISTS dicom_instances (
        id INTEGER PRIMARY KEY, sop_instance_uid TEXT NOT NULL, sop_class_uid TEXT, study_uid TEXT,
        series_uid TEXT, dicom_modality TEXT, path TEXT NOT NULL, bytes INTEGER, transfer_syntax TEXT,
        calling_ae TEXT, peer TEXT, received_at TEXT, study_id INTEGER REFERENCES studies(id),
        status TEXT NOT NULL, problem TEXT)""")
    conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS idx_dicom_instances_sop ON dicom_instances (sop_instance_uid)")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_dicom_instances_study_id ON dicom_instances (study_id)")
    conn.execute("CREATE INDEX IF NOT EXISTS idx_dicom_instances_study_uid ON dicom_instances (study_uid)")


def _upsert_instance(conn: sqlite3.Connection, row: dict[str, Any]) -> None:
    row = {k: row.get(k) for k in INSTANCE_COLUMNS}
    row["received_at"] = row["received_at"] or now_iso()
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    updates = ", ".join(f"{k} = excluded.{k}" for k in row if k != "sop_instance_uid")
    conn.execute(f"INSERT INTO dicom_instances ({cols}) VALUES ({marks}) "
                 f"ON CONFLICT(sop_instance_uid) DO UPDATE SET {updates}", list(row.values()))


class DicomMixin:
    """Received-instance methods of ``app.store.Store`` (uses its ``conn``, ``transaction`` and ``_upsert_study``)."""

    conn: sqlite3.Connection

    def save_received(self, study, instances: Iterable[dict[str, Any]], replaces: int | None = None) -> int:
        """A study read from received instances, and those instances, in one transaction; the study id.
        ``replaces``: the study an earlier part of the same series became (an endoscopy series completed by a
        later association): it takes the new content in place when it has no results yet."""
        with self.transaction():
            if replaces is not None and not self.conn.execute(
                    "SELECT 1 FROM results WHERE study_id = ? UNION SELECT 1 FROM findings WHERE study_id = ?",
                    (replaces, replaces)).fetchone() and not self.conn.execute(
                    "SELECT 1 FROM studies WHERE sha256 = ? AND modality = ?", (study.sha256, study.modality)).fetchone():
                self.conn.execute("UPDATE studies SET sha256 = ? WHERE id = ?", (study.sha256, replaces))
            sid = self._upsert_study(study)
            for inst in instances:
                _upsert_instance(self.conn, dict(inst, study_id=sid, status="read", problem=""))
        return sid

    def record_unreadable(self, instances: Iterable[dict[str, Any]], problem: str) -> None:
        with self.transaction():
            for inst in instances:
                _upsert_instance(self.conn, dict(inst, study_id=None, status="unreadable", problem=problem))

    def received_instances(self, status: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Received instances, newest first (``status``: 'read' or 'unreadable')."""
        q = "SELECT * FROM dicom_instances"
        args: list[Any] = []
        if status:
            q += " WHERE status = ?"
            args.append(status)
        cur = self.conn.execute(q + " ORDER BY received_at DESC, id DESC LIMIT ?", [*args, limit])
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def instance_paths(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT path FROM dicom_instances")}

    def dicom_sources(self, study_id: int) -> list[dict[str, Any]]:
        """The received instances a study was read from (empty for a study opened from a file)."""
        cur = self.conn.execute("SELECT * FROM dicom_instances WHERE study_id = ? ORDER BY id", (study_id,))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def dicom_sources_of_series(self, series_uid: str) -> list[dict[str, Any]]:
        cur = self.conn.execute("SELECT * FROM dicom_instances WHERE series_uid = ? ORDER BY id", (series_uid,))
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]

    def known_study_uids(self) -> set[str]:
        """Study Instance UIDs this store already holds instances of (priors need not be fetched twice)."""
        return {r[0] for r in self.conn.execute("SELECT DISTINCT study_uid FROM dicom_instances WHERE study_uid IS NOT NULL")}

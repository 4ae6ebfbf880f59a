"""The store's schema step for local validation and the echo case library (additive, idempotent: safe
to run on any database at any position in the migration order).

- ``validations``        one row per ``lightbox evaluate`` / Validate on my cases… run (app.validation.records)
- ``case_library``       a teaching set's loops with the expert's EF (app.echo.library); never in study metadata
- ``practice_sessions``  timed runs of N random loops of a set
- ``estimates``          gains ``expert_ef``, ``expert_delta`` (trainee − expert), ``session_id``, ``seconds``
"""
from __future__ import annotations

import sqlite_utils


def migrate(db: sqlite_utils.Database) -> None:
    names = set(db.table_names())
    if "validations" not in names:
        db["validations"].create({
            "id": int, "model_id": str, "weights_sha256": str, "kind": str, "n_cases": int, "n_failures": int,
            "headline": str, "labels_path": str, "labels_sha256": str, "device": str, "out_dir": str, "pdf": str,
            "evaluation": str, "evaluated_at": str, "created_at": str,
        }, pk="id", not_null={"model_id"})
        db["validations"].create_index(["model_id", "weights_sha256"])
    if "case_library" not in names:
        db["case_library"].create({
            "id": int, "set_name": str, "study_id": int, "expert_ef": float, "expert_category": str,
            "given_category": str, "comment": str, "source": str, "source_line": int, "imported_at": str,
        }, pk="id", foreign_keys=[("study_id", "studies", "id")], not_null={"set_name", "study_id", "expert_ef"})
        db["case_library"].create_index(["set_name", "study_id"], unique=True)
        db["case_library"].create_index(["study_id"])
    if "practice_sessions" not in names:
        db["practice_sessions"].create({
            "id": int, "trainee_id": int, "set_name": str, "n_planned": int, "study_ids": str,
            "started_at": str, "finished_at": str,
        }, pk="id", foreign_keys=[("trainee_id", "trainees", "id")])
    have = set(db["estimates"].columns_dict)
    for col, typ in (("expert_ef", float), ("expert_delta", float), ("session_id", int), ("seconds", float)):
        if col not in have:
            db["estimates"].add_column(col, typ)

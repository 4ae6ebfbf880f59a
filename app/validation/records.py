"""A model's local validations in the store (table ``validations``), and the phrase every provenance
line carries: "validated here on N cases: AUROC x (date)" or "not validated on local cases".

A validation belongs to a model id *and* its weights: a retrained or re-installed model is a different
model until it is validated again. No Qt here.
"""
from __future__ import annotations

import json
from typing import Any

from inference.results import now_iso

NOT_VALIDATED = "not validated on local cases"


def save(store, ev: dict[str, Any], pdf: str = "") -> int:
    """Store one evaluation (the dict ``inference.evaluate.evaluate`` returns) in one transaction."""
    summary = {k: v for k, v in ev.items() if k != "cases"}  # per-case rows stay in the output folder
    row = {"model_id": ev["model_id"], "weights_sha256": ev.get("weights_sha256") or "", "kind": ev["kind"],
           "n_cases": int(ev["n_cases"]), "n_failures": int(ev["n_failures"]), "headline": ev["headline"],
           "labels_path": ev["labels"]["path"], "labels_sha256": ev["labels"]["sha256"],
           "device": ev.get("device") or "", "out_dir": ev.get("out_dir") or "", "pdf": str(pdf or ""),
           "evaluation": json.dumps(summary), "evaluated_at": ev.get("date") or now_iso(), "created_at": now_iso()}
    with store.transaction():
        cols = ", ".join(row)
        cur = store.conn.execute(f"INSERT INTO validations ({cols}) VALUES ({', '.join('?' * len(row))})",
                                 list(row.values()))
        return int(cur.lastrowid)


def _dicts(cur) -> list[dict[str, Any]]:
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def validations(store, model_id: str | None = None) -> list[dict[str, Any]]:
    """Newest first."""
    if model_id:
        cur = store.conn.execute("SELECT * FROM validations WHERE model_id=? ORDER BY id DESC", (model_id,))
    else:
        cur = store.conn.execute("SELECT * FROM validations ORDER BY id DESC")
    rows = _dicts(cur)
    for r in rows:
        r["evaluation"] = json.loads(r["evaluation"] or "{}")
    return rows


def latest(store, model_id: str, weights_sha256: str | None = None) -> dict[str, Any] | None:
    """The newest validation of this model (with these weights, when given) that evaluated any case."""
    q = "SELECT * FROM validations WHERE model_id=? AND n_cases > 0"
    args: list[Any] = [model_id]
    if weights_sha256 is not None:
        q += " AND weights_sha256=?"
        args.append(weights_sha256)
    rows = _dicts(store.conn.execute(q + " ORDER BY id DESC LIMIT 1", args))
    return rows[0] if rows else None


def phrase(store, model_id: str, weights_sha256: str | None = None) -> str:
    """What every provenance line says about local validation."""
    try:
        v = latest(store, model_id, weights_sha256)
    except Exception:  # a store without the table (read-only, older schema): say nothing false
        return NOT_VALIDATED
    text = NOT_VALIDATED if v is None else \
        f"validated here on {v['n_cases']} cases: {v['headline']} ({(v['evaluated_at'] or '')[:10]})"
    return text + site_phrase(model_id, weights_sha256)


def site_phrase(model_id: str, weights_sha256: str | None) -> str:
    """"; site operating point …" when this site adopted one for exactly these weights (else empty)."""
    from inference import site_points

    if not weights_sha256:
        return ""
    pt, _ = site_points.current(model_id, weights_sha256)
    return "" if pt is None else (f"; site operating point: threshold {pt.threshold:.4g} (adopted "
                                  f"{pt.adopted_at[:10]} by {pt.adopted_by})")

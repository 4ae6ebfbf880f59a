"""Deliberate practice data: trainees' locked EF estimates vs the AI, practice sets, exports.

Uses the store's existing tables (trainees, estimates, practice_sets, studies, results); no Qt here,
so the report and the CLI can use it too.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from inference.echo.preprocess import ef_category
from inference.echo.pipeline import K_EF
from inference.results import now_iso


def _rows(store, sql: str, args=()) -> list[dict[str, Any]]:
    cur = store.conn.execute(sql, args)
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def locked_estimate(store, trainee_id: int, study_id: int) -> dict | None:
    """The trainee's latest locked estimate for a study, or None."""
    rows = _rows(store, "SELECT * FROM estimates WHERE trainee_id=? AND study_id=? AND locked_at IS NOT NULL "
                       "ORDER BY id DESC LIMIT 1", (trainee_id, study_id))
    return rows[0] if rows else None


def history(store, trainee_id: int) -> list[dict[str, Any]]:
    """Revealed estimates of one trainee, oldest first, with study names and category agreement."""
    rows = _rows(store, """
        SELECT e.id, e.locked_at, e.revealed_at, e.ef_estimate, e.category, e.ai_ef, e.delta, e.result_id,
               s.name AS study, s.id AS study_id, r.clinical AS clinical
        FROM estimates e JOIN studies s ON s.id = e.study_id LEFT JOIN results r ON r.id = e.result_id
        WHERE e.trainee_id = ? ORDER BY e.id""", (trainee_id,))
    for r in rows:
        r["ai_category"] = ef_category(r["ai_ef"]) if r["ai_ef"] is not None else ""
        r["category_agrees"] = (r["category"] == r["ai_category"]) if (r["category"] and r["ai_category"]) else None
    return rows


def bland_altman(est: list[float], ai: list[float]) -> dict[str, float]:
    e, a = np.asarray(est, float), np.asarray(ai, float)
    d = e - a
    if len(d) == 0:
        return {"n": 0}
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    bias = float(d.mean())
    return {"n": int(len(d)), "bias": bias, "sd": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd,
            "mae": float(np.abs(d).mean())}


# -- practice sets ----------------------------------------------------------------------------
def in_practice_set(store, study_id: int) -> bool:
    return store.conn.execute("SELECT 1 FROM practice_sets WHERE study_id=?", (study_id,)).fetchone() is not None


def set_practice(store, study_id: int, on: bool) -> None:
    with store.transaction():
        if on:
            store.conn.execute("INSERT OR IGNORE INTO practice_sets (study_id, added_at) VALUES (?, ?)",
                               (study_id, now_iso()))
        else:
            store.conn.execute("DELETE FROM practice_sets WHERE study_id=?", (study_id,))


def practice_table(store) -> list[dict[str, Any]]:
    """Every trainee's revealed estimates on the practice-set studies (the instructor's view)."""
    return _rows(store, """
        SELECT t.name AS trainee, s.name AS study, e.ef_estimate, e.category, e.ai_ef, e.delta, e.revealed_at
        FROM practice_sets p JOIN studies s ON s.id = p.study_id
        JOIN estimates e ON e.study_id = p.study_id JOIN trainees t ON t.id = e.trainee_id
        WHERE e.revealed_at IS NOT NULL ORDER BY t.name, s.name, e.id""")


def practice_summary(store) -> list[dict[str, Any]]:
    by: dict[str, list[dict]] = {}
    for r in practice_table(store):
        by.setdefault(r["trainee"], []).append(r)
    out = []
    for name, rows in sorted(by.items()):
        ba = bland_altman([r["ef_estimate"] for r in rows], [r["ai_ef"] for r in rows])
        out.append({"trainee": name, "n": ba["n"], "mae": ba.get("mae"), "bias": ba.get("bias")})
    return out


def ai_ef(result) -> float | None:
    if result is None:
        return None
    v = result.outputs.get(K_EF)
    return float(v) if isinstance(v, (int, float)) else None


# -- exports ------------------------------------------------------------------------------------
CSV_FIELDS = ["locked_at", "revealed_at", "study", "ef_estimate", "category", "ai_ef", "ai_category", "delta",
              "category_agrees", "result_id", "clinical"]


def export_csv(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def progress_figure(rows: list[dict], title: str = ""):
    """Matplotlib figure: absolute error over time + Bland-Altman vs the AI."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    done = [r for r in rows if r.get("ai_ef") is not None]
    fig = Figure(figsize=(8, 3.2))
    a1, a2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    err = [abs(r["delta"]) for r in done]
    a1.plot(range(1, len(err) + 1), err, "o-", color="#1f6feb")
    a1.set_xlabel("estimate #")
    a1.set_ylabel("|trainee − AI| EF (%-points)")
    a1.set_title("Error over time")
    a1.grid(alpha=0.3)
    est = [r["ef_estimate"] for r in done]
    ai = [r["ai_ef"] for r in done]
    ba = bland_altman(est, ai)
    if ba["n"]:
        m = (np.asarray(est) + np.asarray(ai)) / 2
        d = np.asarray(est) - np.asarray(ai)
        a2.scatter(m, d, color="#1f6feb", s=18)
        for y, ls in ((ba["bias"], "-"), (ba["loa_low"], "--"), (ba["loa_high"], "--")):
            a2.axhline(y, color="#c62828", ls=ls, lw=1)
        a2.set_title(f"Bland–Altman: bias {ba['bias']:+.1f}, LoA {ba['loa_low']:+.1f} to {ba['loa_high']:+.1f}",
                     fontsize=9)
    a2.set_xlabel("mean of trainee and AI EF (%)")
    a2.set_ylabel("trainee − AI (%-points)")
    a2.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def export_pdf(rows: list[dict], trainee: str, path: str | Path) -> Path:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    from app.report.base import BODY, H1, figure, table
    from inference.atomic import atomic_path
    from inference.results import DISCLAIMER, NOT_CLINICAL

    path = Path(path)
    done = [r for r in rows if r.get("ai_ef") is not None]
    ba = bland_altman([r["ef_estimate"] for r in done], [r["ai_ef"] for r in done])
    flow = [Paragraph(f"Echo EF practice — {trainee}", H1),
            Paragraph(f"{ba['n']} revealed estimates. " + (
                f"Mean absolute error {ba['mae']:.1f} %-points, bias {ba['bias']:+.1f}, limits of agreement "
                f"{ba['loa_low']:+.1f} to {ba['loa_high']:+.1f}." if ba["n"] else ""), BODY)]
    if any(r.get("clinical") == 0 for r in done):
        flow.append(Paragraph(f"<font color='#c62828'><b>{NOT_CLINICAL}</b>: some AI values came from non-official "
                              "weights.</font>", BODY))
    flow += [Spacer(1, 3 * mm), figure(progress_figure(rows), 180), Spacer(1, 3 * mm)]
    tab = [["Locked", "Study", "Estimate %", "Category", "AI EF %", "AI category", "Δ"]]
    for r in rows:
        tab.append([(r["locked_at"] or "")[:16].replace("T", " "), r["study"], f"{r['ef_estimate']:.0f}",
                    r["category"] or "", "" if r["ai_ef"] is None else f"{r['ai_ef']:.1f}", r["ai_category"],
                    "" if r["delta"] is None else f"{r['delta']:+.1f}"])
    flow += [table(tab), Spacer(1, 3 * mm), Paragraph(DISCLAIMER, BODY)]
    with atomic_path(path) as tmp:
        SimpleDocTemplate(str(tmp), pagesize=A4, leftMargin=12 * mm, rightMargin=12 * mm, topMargin=12 * mm,
                          bottomMargin=12 * mm, title=f"EF practice {trainee}").build(flow)
    return path


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()

"""Deliberate practice data: trainees' locked EF estimates against the expert's EF (teaching sets, see
app.echo.library) and the AI's EF, practice sets, exports.

Every comparison is one of three, each with the shared ``inference.metrics.agreement``: trainee vs
expert, trainee vs AI, AI vs expert. No Qt here, so the report and the CLI can use it too.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from inference.echo.pipeline import K_EF
from inference.echo.preprocess import ef_category
from inference.metrics import agreement
from inference.results import now_iso

COMPARISONS = (("vs_expert", "expert_ef", "ef_estimate", "you vs expert"),
               ("vs_ai", "ai_ef", "ef_estimate", "you vs AI"),
               ("ai_vs_expert", "expert_ef", "ai_ef", "AI vs expert"))


def _rows(store, sql: str, args=()) -> list[dict[str, Any]]:
    cur = store.conn.execute(sql, args)
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def locked_estimate(store, trainee_id: int, study_id: int, session_id: int | None = None) -> dict | None:
    """The trainee's latest locked estimate for a study (within one practice session, when given), or None."""
    q = "SELECT * FROM estimates WHERE trainee_id=? AND study_id=? AND locked_at IS NOT NULL"
    args: list = [trainee_id, study_id]
    if session_id is not None:
        q += " AND session_id=?"
        args.append(session_id)
    rows = _rows(store, q + " ORDER BY id DESC LIMIT 1", args)
    return rows[0] if rows else None


_EXPERT_CAT = """(SELECT c.expert_category FROM case_library c WHERE c.study_id = e.study_id
                   ORDER BY c.imported_at DESC, c.id DESC LIMIT 1)"""


def _derive(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        r["ai_category"] = ef_category(r["ai_ef"]) if r.get("ai_ef") is not None else ""
        r["category_agrees"] = (r["category"] == r["ai_category"]) if (r.get("category") and r["ai_category"]) else None
        if r.get("expert_ef") is not None:
            r["expert_category"] = r.get("expert_category") or ef_category(r["expert_ef"])
        else:
            r["expert_category"] = ""
        mine = r.get("category") or ef_category(r["ef_estimate"])  # the band of the number when none was chosen
        r["expert_category_agrees"] = (mine == r["expert_category"]) if r["expert_category"] else None
    return rows


def history(store, trainee_id: int) -> list[dict[str, Any]]:
    """Locked estimates of one trainee, oldest first, with study names, the expert and AI values revealed
    after the lock, and category agreement with each."""
    return _derive(_rows(store, f"""
        SELECT e.id, e.locked_at, e.revealed_at, e.ef_estimate, e.category, e.ai_ef, e.delta, e.result_id,
               e.expert_ef, e.expert_delta, e.session_id, e.seconds, {_EXPERT_CAT} AS expert_category,
               s.name AS study, s.id AS study_id, r.clinical AS clinical
        FROM estimates e JOIN studies s ON s.id = e.study_id LEFT JOIN results r ON r.id = e.result_id
        WHERE e.trainee_id = ? AND e.locked_at IS NOT NULL ORDER BY e.id""", (trainee_id,)))


def bland_altman(est: list[float], ref: list[float]) -> dict[str, float]:
    """Agreement of estimates with a reference (bias = est − ref), as ``inference.metrics.agreement``."""
    a = agreement(ref, est)
    return dict(a, sd=a["sd_diff"]) if a["n"] else {"n": 0}


def comparisons(rows: list[dict[str, Any]]) -> dict[str, dict]:
    """{vs_expert, vs_ai, ai_vs_expert}: agreement over the rows that have both values."""
    out = {}
    for key, ref, est, _label in COMPARISONS:
        both = [r for r in rows if r.get(ref) is not None and r.get(est) is not None]
        out[key] = bland_altman([r[est] for r in both], [r[ref] for r in both])
    return out


def comparison_text(c: dict[str, dict]) -> str:
    parts = []
    for key, _ref, _est, label in COMPARISONS:
        a = c[key]
        if a["n"]:
            parts.append(f"{label} ({a['n']}): MAE {a['mae']:.1f} %-points, bias {a['bias']:+.1f}, "
                         f"95 % limits {a['loa_low']:+.1f} to {a['loa_high']:+.1f}")
    return " · ".join(parts) if parts else "No estimate has an expert or AI value yet."


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
    """Every trainee's revealed estimates on practice-set studies and teaching-set loops (the instructor's view)."""
    return _derive(_rows(store, f"""
        SELECT t.name AS trainee, s.name AS study, e.ef_estimate, e.category, e.expert_ef, e.expert_delta,
               {_EXPERT_CAT} AS expert_category, e.ai_ef, e.delta, e.revealed_at
        FROM estimates e JOIN studies s ON s.id = e.study_id JOIN trainees t ON t.id = e.trainee_id
        WHERE e.revealed_at IS NOT NULL
          AND (e.study_id IN (SELECT study_id FROM practice_sets) OR e.study_id IN (SELECT study_id FROM case_library))
        ORDER BY t.name, s.name, e.id"""))


def practice_summary(store) -> list[dict[str, Any]]:
    """Per trainee: agreement with the expert and with the AI, and the AI's with the expert on the same loops."""
    by: dict[str, list[dict]] = {}
    for r in practice_table(store):
        by.setdefault(r["trainee"], []).append(r)
    out = []
    for name, rows in sorted(by.items()):
        c = comparisons(rows)
        row: dict[str, Any] = {"trainee": name, "n": len(rows)}
        for key in ("vs_expert", "vs_ai", "ai_vs_expert"):
            row[f"n_{key}"], row[f"mae_{key}"], row[f"bias_{key}"] = c[key]["n"], c[key].get("mae"), c[key].get("bias")
        out.append(row)
    return out


def ai_ef(result) -> float | None:
    if result is None:
        return None
    v = result.outputs.get(K_EF)
    return float(v) if isinstance(v, (int, float)) else None


# -- exports ------------------------------------------------------------------------------------
CSV_FIELDS = ["locked_at", "revealed_at", "study", "ef_estimate", "category", "expert_ef", "expert_category",
              "expert_delta", "expert_category_agrees", "ai_ef", "ai_category", "delta", "category_agrees",
              "session_id", "seconds", "result_id", "clinical"]


def export_csv(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(csv_text(rows), encoding="utf-8")
    return path


def progress_figure(rows: list[dict], title: str = ""):
    """Matplotlib figure: absolute error over time, then a Bland–Altman panel per comparison with data
    (you vs expert, you vs AI, AI vs expert)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from app.validation.report import draw_bland_altman

    panels = [(key, ref, est, label) for key, ref, est, label in COMPARISONS
              if any(r.get(ref) is not None and r.get(est) is not None for r in rows)]
    fig = Figure(figsize=(4 * (1 + len(panels)), 3.2))
    a1 = fig.add_subplot(1, 1 + len(panels), 1)
    for key, ref, colour in (("expert", "expert_ef", "#1f6feb"), ("AI", "ai_ef", "#d29922")):
        pts = [(i, abs(r["ef_estimate"] - r[ref])) for i, r in enumerate(rows, 1) if r.get(ref) is not None]
        if pts:
            a1.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colour, label=f"vs {key}", ms=4)
    a1.set_xlabel("estimate #")
    a1.set_ylabel("|your EF − reference| (%-points)")
    a1.set_title("Error over time", fontsize=9)
    if panels:
        a1.legend(fontsize=7, frameon=False)
    a1.grid(alpha=0.3)
    for n, (key, ref, est, label) in enumerate(panels, 2):
        ax = fig.add_subplot(1, 1 + len(panels), n)
        both = [r for r in rows if r.get(ref) is not None and r.get(est) is not None]
        rv, ev = [r[ref] for r in both], [r[est] for r in both]
        names = {"expert_ef": "expert", "ai_ef": "AI", "ef_estimate": "you"}
        draw_bland_altman(ax, rv, ev, agreement(rv, ev), names[ref], names[est])
        ax.title.set_fontsize(8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _f(v, spec: str = ".1f") -> str:
    return "" if v is None else format(v, spec)


def export_pdf(rows: list[dict], trainee: str, path: str | Path) -> Path:
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    from app.report.base import BODY, H1, SMALL, figure, table
    from inference.atomic import atomic_path
    from inference.evaluate import EF_CUTOFFS, EF_CUTOFFS_SOURCE
    from inference.results import DISCLAIMER, NOT_CLINICAL

    path = Path(path)
    c = comparisons(rows)
    flow = [Paragraph(f"Echo EF practice — {trainee}", H1),
            Paragraph(f"{len(rows)} locked estimates. {comparison_text(c)}.", BODY)]
    if any(r.get("clinical") == 0 for r in rows if r.get("ai_ef") is not None):
        flow.append(Paragraph(f"<font color='#c62828'><b>{NOT_CLINICAL}</b>: some AI values came from non-official "
                              "weights.</font>", BODY))
    if c["vs_expert"]["n"] or c["vs_ai"]["n"]:
        flow += [Spacer(1, 3 * mm), figure(progress_figure(rows), 260), Spacer(1, 3 * mm)]
    tab = [["Locked", "Study", "You %", "Your cat.", "Expert %", "Expert cat.", "Δ expert", "AI EF %", "AI cat.",
            "Δ AI"]]
    for r in rows:
        tab.append([(r["locked_at"] or "")[:16].replace("T", " "), r["study"], f"{r['ef_estimate']:.0f}",
                    r["category"] or "", _f(r.get("expert_ef")), r.get("expert_category", ""),
                    _f(r.get("expert_delta"), "+.1f"), _f(r.get("ai_ef")), r.get("ai_category", ""),
                    _f(r.get("delta"), "+.1f")])
    flow += [table(tab), Spacer(1, 3 * mm),
             Paragraph(f"Categories: {EF_CUTOFFS} ({EF_CUTOFFS_SOURCE}).", SMALL), Paragraph(DISCLAIMER, BODY)]
    with atomic_path(path) as tmp:
        SimpleDocTemplate(str(tmp), pagesize=landscape(A4), leftMargin=12 * mm, rightMargin=12 * mm,
                          topMargin=12 * mm, bottomMargin=12 * mm, title=f"EF practice {trainee}").build(flow)
    return path


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()

"""The echo case library: teaching sets of loops with an expert's EF, and timed practice sessions.

- ``import_set``: a folder of loops + a CSV of expert EF per loop (the EchoNet ``FileList.csv`` layout, or
  ``file,ef[,category,comment]``; read by ``inference.evaluate.read_labels``, the same parser as
  ``lightbox evaluate``). Each loop becomes a study (hashed, not decoded: a 10 000-loop set imports in
  minutes) and its expert value is stored beside it in ``case_library`` — never in the study's metadata,
  which the app shows, so nothing reveals it before the trainee locks an estimate.
- ``expert_for``: the expert reference of a study (for the reveal, after the lock only).
- Sessions: ``start_session`` draws N random loops of a set (``draw``: loops the trainee has not yet done
  first, then the least recently done); each locked estimate carries the session and
  the seconds from loop shown to lock; ``session_summary`` gives MAE, bias, limits of agreement and category
  agreement against the expert (and the AI where it ran), ``export_session_pdf`` prints it.
- ``blind_labels``: neutral names ("Case 3 of 10", "Teaching case #12") for the loops whose file names
  must stay hidden until the lock.

No Qt here: the viewer, the report and the tests use the same functions.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from inference.echo.preprocess import CATEGORIES, ef_category
from inference.evaluate import LabelError, read_labels
from inference.metrics import agreement
from inference.results import now_iso
from inference.study import Study, sha256_file

ECHO_EXTENSIONS = (".mp4", ".avi", ".gif", ".m4v", ".mov", ".dcm", ".dicom")


def _rows(store, sql: str, args=()) -> list[dict[str, Any]]:
    cur = store.conn.execute(sql, args)
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def expert_category(ef: float | None, given: str | None = "") -> str:
    """The expert's category as given in the CSV when it is one of ours, else the band of the value."""
    g = (given or "").strip().lower()
    for c in CATEGORIES:
        if g == c or g.startswith(c):  # "mild", "mildly reduced"
            return c
    return ef_category(ef) if ef is not None else ""


# -- import --------------------------------------------------------------------------------------------
def import_set(store, csv_path: str | Path, name: str | None = None, split: str | None = None,
               ctx=None) -> dict[str, Any]:
    """Import a teaching set. Returns {"set", "imported", "updated", "failures": [{line, file, error}]}.
    Re-importing the same CSV updates the expert values; a loop in several sets keeps one study."""
    labels = read_labels(csv_path, split=split)
    if labels.kind != "ef":
        raise LabelError(f"{Path(csv_path).name}: a teaching set needs an EF column (FileList.csv or "
                         "file,ef[,category,comment])")
    name = (name or labels.path.parent.name or labels.path.stem).strip()
    failures: list[dict] = []
    staged: list[tuple[Study, Any]] = []
    n = len(labels.cases)
    for i, c in enumerate(labels.cases):
        if ctx is not None and i % 20 == 0:
            ctx.progress(i / max(n, 1), f"loop {i + 1} of {n}")
        if c.error:
            failures.append({"line": c.line, "file": c.file, "error": c.error})
            continue
        if c.path.suffix.lower() not in ECHO_EXTENSIONS:
            failures.append({"line": c.line, "file": c.file,
                             "error": f"'{c.path.suffix}' is not an echo loop format ({' '.join(ECHO_EXTENSIONS)})"})
            continue
        try:
            if c.path.stat().st_size == 0:
                raise OSError("the file is empty")
            sha = sha256_file(c.path)
        except OSError as e:
            failures.append({"line": c.line, "file": c.file, "error": str(e)})
            continue
        staged.append((Study("echo", str(c.path.resolve()), sha, c.path.name), c))
    imported = updated = 0
    now = now_iso()
    with store.transaction():  # the whole set or nothing
        for study, c in staged:
            sid = store._upsert_study(study)
            row = store.conn.execute("SELECT id FROM case_library WHERE set_name=? AND study_id=?",
                                     (name, sid)).fetchone()
            vals = {"expert_ef": float(c.value), "expert_category": expert_category(c.value, c.category),
                    "given_category": c.category, "comment": c.comment, "source": str(labels.path.resolve()),
                    "source_line": c.line, "imported_at": now}
            if row:
                sets = ", ".join(f"{k}=?" for k in vals)
                store.conn.execute(f"UPDATE case_library SET {sets} WHERE id=?", [*vals.values(), row[0]])
                updated += 1
            else:
                cols = ["set_name", "study_id", *vals]
                store.conn.execute(f"INSERT INTO case_library ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                   [name, sid, *vals.values()])
                imported += 1
    if ctx is not None:
        ctx.progress(1.0, "done")
    return {"set": name, "imported": imported, "updated": updated, "failures": failures,
            "labels_sha256": labels.sha256, "excluded_by_split": labels.excluded}


def sets(store) -> list[dict[str, Any]]:
    return _rows(store, "SELECT set_name AS name, COUNT(*) AS n, MAX(imported_at) AS imported_at "
                        "FROM case_library GROUP BY set_name ORDER BY set_name")


def set_cases(store, name: str) -> list[dict[str, Any]]:
    """A set's loops (study id, name, path); the expert values stay out of this list on purpose."""
    return _rows(store, "SELECT s.id AS study_id, s.name, s.source_path FROM case_library c "
                        "JOIN studies s ON s.id = c.study_id WHERE c.set_name=? ORDER BY s.name", (name,))


def expert_for(store, study_id: int) -> dict[str, Any] | None:
    """The expert reference for a study (the most recently imported, if it is in several sets)."""
    rows = _rows(store, "SELECT expert_ef, expert_category, given_category, comment, set_name, source "
                        "FROM case_library WHERE study_id=? ORDER BY imported_at DESC, id DESC LIMIT 1", (study_id,))
    return rows[0] if rows else None


def has_expert(store, study_id: int) -> bool:
    return store.conn.execute("SELECT 1 FROM case_library WHERE study_id=?", (study_id,)).fetchone() is not None


def record_expert(store, estimate_id: int, expert: dict) -> dict[str, Any]:
    """After the lock: the expert value and the trainee's difference go onto the estimate row (once)."""
    with store.transaction():
        est = store.db["estimates"].get(estimate_id)
        if est["locked_at"] is None:
            raise ValueError("an estimate must be locked before the expert value is shown")
        store.conn.execute("UPDATE estimates SET expert_ef=?, expert_delta=?, revealed_at=COALESCE(revealed_at, ?) "
                           "WHERE id=?", (float(expert["expert_ef"]),
                                          float(est["ef_estimate"]) - float(expert["expert_ef"]), now_iso(),
                                          estimate_id))
    return store.db["estimates"].get(estimate_id)


# -- sessions -----------------------------------------------------------------------------------------
def last_done(store, trainee_id: int | None, set_name: str) -> dict[int, str | None]:
    """{study id: when this trainee last locked an estimate on it (None: never)} for a set's loops."""
    out: dict[int, str | None] = {c["study_id"]: None for c in set_cases(store, set_name)}
    if trainee_id is not None and out:
        for sid, at in store.conn.execute(
                "SELECT e.study_id, MAX(e.locked_at) FROM estimates e JOIN case_library c ON c.study_id = e.study_id "
                "WHERE c.set_name=? AND e.trainee_id=? AND e.locked_at IS NOT NULL GROUP BY e.study_id",
                (set_name, trainee_id)):
            out[int(sid)] = at
    return out


def draw(store, trainee_id: int | None, set_name: str, n: int, seed: int | None = None) -> dict[str, Any]:
    """Pick N loops of a set for a session: loops this trainee has never locked an estimate on first, then
    (when fewer unseen remain) the least recently done ones; shown in random order, so a repeat is not told
    by its place. Returns {"study_ids", "n_new", "n_repeated", "n_unseen"}."""
    done = last_done(store, trainee_id, set_name)
    if not done:
        raise ValueError(f"the teaching set {set_name!r} has no loops")
    rng = random.Random(seed)
    n = max(1, int(n))
    unseen = [sid for sid, at in done.items() if at is None]
    seen = [sid for sid, at in done.items() if at is not None]
    rng.shuffle(unseen)
    rng.shuffle(seen)  # ties in time keep a random order (the sort is stable)
    seen.sort(key=lambda sid: done[sid])
    new = unseen[:n]
    repeated = seen[:n - len(new)]
    ids = new + repeated
    rng.shuffle(ids)
    return {"study_ids": ids, "n_new": len(new), "n_repeated": len(repeated), "n_unseen": len(unseen)}


def draw_text(d: dict[str, Any]) -> str:
    if not d["n_repeated"]:
        return f"{d['n_new']} new"
    return (f"{d['n_new']} new, {d['n_repeated']} repeated (the least recently done"
            + (": every loop of this set has been done" if not d["n_unseen"] else "") + ")")


def start_session(store, trainee_id: int, set_name: str, n: int, seed: int | None = None) -> dict[str, Any]:
    d = draw(store, trainee_id, set_name, n, seed=seed)
    ids = d["study_ids"]
    with store.transaction():
        cur = store.conn.execute(
            "INSERT INTO practice_sessions (trainee_id, set_name, n_planned, study_ids, started_at) "
            "VALUES (?,?,?,?,?)", (trainee_id, set_name, len(ids), json.dumps(ids), now_iso()))
        sid = int(cur.lastrowid)
    return dict(session(store, sid), n_new=d["n_new"], n_repeated=d["n_repeated"])


def session(store, session_id: int) -> dict[str, Any]:
    rows = _rows(store, "SELECT * FROM practice_sessions WHERE id=?", (session_id,))
    if not rows:
        raise ValueError(f"no practice session #{session_id}")
    s = rows[0]
    s["study_ids"] = json.loads(s["study_ids"] or "[]")
    return s


# -- blinding -----------------------------------------------------------------------------------------
def blind_labels(store, trainee_id: int | None, session: dict | None = None) -> dict[int, str]:
    """Neutral labels for the library loops whose names must stay hidden (a file name like
    ``EF35_dilated.avi`` tells the answer): {study id: label}. Called while blinded practice is on.

    In a session every library loop is hidden except the session's loops locked in this session, and a
    session loop is "Case k of N"; outside one, a loop stays hidden until this trainee has locked an
    estimate on it. Other loops are "Teaching case #id"."""
    ids = [int(r[0]) for r in store.conn.execute("SELECT DISTINCT study_id FROM case_library")]
    if not ids:
        return {}
    if session is not None:
        opened = {int(r[0]) for r in store.conn.execute(
            "SELECT DISTINCT study_id FROM estimates WHERE session_id=? AND locked_at IS NOT NULL", (session["id"],))}
    elif trainee_id is not None:
        opened = {int(r[0]) for r in store.conn.execute(
            "SELECT DISTINCT study_id FROM estimates WHERE trainee_id=? AND locked_at IS NOT NULL", (trainee_id,))}
    else:
        opened = set()
    order = {sid: i for i, sid in enumerate(session["study_ids"])} if session is not None else {}
    out = {}
    for sid in ids:
        if sid in opened:
            continue
        out[sid] = (f"Case {order[sid] + 1} of {len(order)}" if sid in order else f"Teaching case #{sid}")
    return out


def lock_in_session(store, estimate_id: int, session_id: int, seconds: float) -> None:
    with store.transaction():
        store.conn.execute("UPDATE estimates SET session_id=?, seconds=? WHERE id=?",
                           (session_id, round(float(seconds), 1), estimate_id))


def finish_session(store, session_id: int) -> None:
    with store.transaction():
        store.conn.execute("UPDATE practice_sessions SET finished_at=? WHERE id=? AND finished_at IS NULL",
                           (now_iso(), session_id))


def session_rows(store, session_id: int) -> list[dict[str, Any]]:
    rows = _rows(store, """
        SELECT e.id, e.study_id, s.name AS study, e.ef_estimate, e.category, e.expert_ef, e.expert_delta,
               e.ai_ef, e.delta, e.seconds, e.locked_at, r.clinical AS clinical, c.expert_category
        FROM estimates e JOIN studies s ON s.id = e.study_id LEFT JOIN results r ON r.id = e.result_id
        LEFT JOIN case_library c ON c.id = (SELECT id FROM case_library WHERE study_id = e.study_id
                                            ORDER BY imported_at DESC, id DESC LIMIT 1)
        WHERE e.session_id = ? ORDER BY e.id""", (session_id,))
    for r in rows:
        r["trainee_category"] = r["category"] or ef_category(r["ef_estimate"])
        r["expert_category"] = r["expert_category"] or (ef_category(r["expert_ef"]) if r["expert_ef"] is not None else "")
        r["category_agrees"] = (r["trainee_category"] == r["expert_category"]) if r["expert_category"] else None
        r["ai_category"] = ef_category(r["ai_ef"]) if r["ai_ef"] is not None else ""
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Trainee vs expert (MAE, bias, limits of agreement, category agreement, time), and trainee vs AI and
    AI vs expert where the AI EF exists."""
    ex = [r for r in rows if r.get("expert_ef") is not None]
    out: dict[str, Any] = {"n": len(rows), "n_expert": len(ex)}
    out["vs_expert"] = agreement([r["expert_ef"] for r in ex], [r["ef_estimate"] for r in ex])
    cats = [r["category_agrees"] for r in ex if r.get("category_agrees") is not None]
    out["category_agreement"] = sum(cats) / len(cats) if cats else float("nan")
    out["category_n"] = len(cats)
    ai = [r for r in rows if r.get("ai_ef") is not None]
    out["vs_ai"] = agreement([r["ai_ef"] for r in ai], [r["ef_estimate"] for r in ai])
    both = [r for r in ex if r.get("ai_ef") is not None]
    out["ai_vs_expert"] = agreement([r["expert_ef"] for r in both], [r["ai_ef"] for r in both])
    secs = [r["seconds"] for r in rows if r.get("seconds") is not None]
    out["seconds_total"] = float(sum(secs))
    out["seconds_median"] = float(sorted(secs)[len(secs) // 2]) if secs else float("nan")
    return out


def session_figure(rows: list[dict], title: str = ""):
    """Bland–Altman of the trainee against the expert (and the AI against the expert, where it ran)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from app.validation.report import draw_bland_altman

    ex = [r for r in rows if r.get("expert_ef") is not None]
    both = [r for r in ex if r.get("ai_ef") is not None]
    fig = Figure(figsize=(8, 3.2))
    n = 2 if both else 1
    a1 = fig.add_subplot(1, n, 1)
    draw_bland_altman(a1, [r["expert_ef"] for r in ex], [r["ef_estimate"] for r in ex],
                      agreement([r["expert_ef"] for r in ex], [r["ef_estimate"] for r in ex]), "expert", "trainee")
    if both:
        a2 = fig.add_subplot(1, 2, 2)
        draw_bland_altman(a2, [r["expert_ef"] for r in both], [r["ai_ef"] for r in both],
                          agreement([r["expert_ef"] for r in both], [r["ai_ef"] for r in both]), "expert", "AI")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _f(v, spec=".1f") -> str:
    return "–" if v is None or v != v else format(v, spec)


def _loops(n: int) -> str:
    return f"{n} loop{'s' if n != 1 else ''}"


def summary_text(s: dict[str, Any]) -> str:
    a = s["vs_expert"]
    if not a["n"]:
        return f"{_loops(s['n'])}; none had an expert value."
    txt = (f"{_loops(a['n'])} against the expert: MAE {_f(a['mae'])} %-points, bias {_f(a['bias'], '+.1f')}, "
           f"95 % limits of agreement {_f(a['loa_low'], '+.1f')} to {_f(a['loa_high'], '+.1f')}; "
           f"category agreement {_f(100 * s['category_agreement'], '.0f')} % ({_loops(s['category_n'])})")
    if s["seconds_total"]:
        txt += f"; {s['seconds_total'] / 60:.1f} min in all, median {_f(s['seconds_median'], '.0f')} s a loop"
    if s["ai_vs_expert"]["n"]:
        b = s["ai_vs_expert"]
        txt += f". AI vs expert on {_loops(b['n'])}: MAE {_f(b['mae'])}, bias {_f(b['bias'], '+.1f')}"
    return txt + "."


def export_session_pdf(store, session_id: int, trainee: str, path: str | Path) -> Path:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

    from app.report.base import BODY, H1, SMALL, figure, table
    from inference.atomic import atomic_path
    from inference.evaluate import EF_CUTOFFS, EF_CUTOFFS_SOURCE
    from inference.results import DISCLAIMER, NOT_CLINICAL

    path = Path(path)
    s = session(store, session_id)
    rows = session_rows(store, session_id)
    sm = summary(rows)
    flow = [Paragraph(f"Echo EF practice session — {trainee}", H1),
            Paragraph(f"Teaching set <b>{s['set_name']}</b> · session #{session_id} · started "
                      f"{s['started_at'].replace('T', ' ')} · {len(rows)} of {s['n_planned']} loops estimated", BODY),
            Spacer(1, 2 * mm), Paragraph(summary_text(sm), BODY)]
    if any(r.get("clinical") == 0 for r in rows if r.get("ai_ef") is not None):
        flow.append(Paragraph(f"<font color='#c62828'><b>{NOT_CLINICAL}</b>: some AI values came from non-official "
                              "weights.</font>", BODY))
    if sm["n_expert"]:
        flow += [Spacer(1, 3 * mm), figure(session_figure(rows), 180)]
    tab = [["#", "Loop", "You %", "Expert %", "Δ", "Your cat.", "Expert cat.", "AI %", "Time s"]]
    for i, r in enumerate(rows, 1):
        tab.append([str(i), r["study"], _f(r["ef_estimate"], ".0f"), _f(r["expert_ef"]), _f(r["expert_delta"], "+.1f"),
                    r["trainee_category"], r["expert_category"], _f(r["ai_ef"]), _f(r["seconds"], ".0f")])
    flow += [Spacer(1, 3 * mm), table(tab), Spacer(1, 3 * mm),
             Paragraph(f"Categories: {EF_CUTOFFS} ({EF_CUTOFFS_SOURCE}). Your category is the one you chose, or the "
                       "band of your number when you chose none.", SMALL),
             Spacer(1, 2 * mm), Paragraph(DISCLAIMER, BODY)]
    with atomic_path(path) as tmp:
        SimpleDocTemplate(str(tmp), pagesize=A4, leftMargin=12 * mm, rightMargin=12 * mm, topMargin=12 * mm,
                          bottomMargin=12 * mm, title=f"EF practice session {trainee}").build(flow)
    return path

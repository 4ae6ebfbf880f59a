"""Site operating points: a threshold this site chose on its own labelled cases, adopted for one model file.

A model ships with a threshold chosen on its own validation data. Another hospital's films can sit
elsewhere on the score scale (the X-ray model's card shows it: external normal films score higher than
validation ones, so the shipped threshold keeps its sensitivity but loses specificity). The ranking may
still hold, and then a threshold read off the site's own cases restores the operating point. This module
keeps that choice, with where it came from:

- it is made from a ``lightbox evaluate`` run (``evaluation.json``) on the site's labelled cases, at a
  target sensitivity, by a named person; at least :data:`MIN_PER_CLASS` cases of each class;
- it is bound to the exact weights (sha256) that were evaluated: a different file of the same model
  gets the model's own threshold again, and says so;
- it is written atomically to ``site_operating_points.json`` in Lightbox's data folder, with its history
  (a new adoption or a retirement closes the previous entry; nothing is deleted);
- a pipeline that honours it (:data:`SUPPORTED`) records the threshold *and its source* in every result,
  so the viewer, the PDF and ``lightbox evaluate`` show which threshold made the call.

The figures of an adopted point were measured on the cases it was chosen on, so they are optimistic for
them; confirm it on other cases (run ``lightbox evaluate`` again on a later set) before relying on it.

    lightbox site-point adopt EVALUATION_DIR --sensitivity 0.95 --by "Dr A. Reader"
    lightbox site-point list
    lightbox site-point retire MODEL --by "Dr A. Reader"
"""
from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

FILE_NAME = "site_operating_points.json"
FORMAT = "lightbox-site-operating-points/1"
#: models whose pipeline reads a site operating point (the others refuse adoption, with the reason)
SUPPORTED = ("xray-pneumonia",)
#: fewest cases of each class an adoption may rest on (with 50 positives, a sensitivity of 0.96 has a
#: Wilson 95 % lower bound of 0.87: fewer cases say too little)
MIN_PER_CLASS = 50


class SitePointError(ValueError):
    """A refusal with a reason a user can act on."""


@dataclass
class SitePoint:
    model_id: str
    weights_sha256: str
    threshold: float
    target_sensitivity: float
    sensitivity: float
    sensitivity_ci: list[float]
    specificity: float
    specificity_ci: list[float]
    confusion: list[list[int]]  # [[TN, FP], [FN, TP]] on the cases it was chosen on
    n_positive: int
    n_negative: int
    evaluation: str  # path of the evaluation.json it was read from
    evaluation_sha256: str
    labels_sha256: str
    evaluated_at: str
    adopted_by: str
    adopted_at: str
    retired_by: str = ""
    retired_at: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return not self.retired_at

    def describe(self) -> str:
        """One line for a result, the viewer and the PDF."""
        return (f"site operating point adopted {self.adopted_at[:10]} by {self.adopted_by}: chosen on this site's "
                f"{self.n_positive + self.n_negative} labelled cases ({self.n_positive} positive) for sensitivity "
                f">= {self.target_sensitivity:.2f}; on those cases sensitivity {self.sensitivity:.1%}, "
                f"specificity {self.specificity:.1%}")


def default_path() -> Path:
    from .paths import data_home

    return data_home() / FILE_NAME


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def load_all(path: str | Path | None = None) -> list[SitePoint]:
    """Every entry, adopted and retired, oldest first. A missing file is an empty list; an unreadable one
    raises :class:`SitePointError` (never guessed around)."""
    p = Path(path) if path else default_path()
    if not p.exists():
        return []
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        names = set(SitePoint.__dataclass_fields__)
        return [SitePoint(**{k: v for k, v in e.items() if k in names}) for e in doc["points"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SitePointError(f"{p}: the site operating points file cannot be read ({e})") from None


def _save(points: list[SitePoint], path: str | Path | None) -> None:
    p = Path(path) if path else default_path()
    atomic_write_text(p, json.dumps({"format": FORMAT, "points": [asdict(x) for x in points]}, indent=1) + "\n")


def current(model_id: str, weights_sha256: str, path: str | Path | None = None) -> tuple[SitePoint | None, str]:
    """(the active point for exactly these weights, a note). The note is empty when there is no point for
    the model; it says why when one exists but is not used (other weights, unreadable file)."""
    try:
        pts = [x for x in load_all(path) if x.model_id == model_id and x.active]
    except SitePointError as e:
        return None, f"{e}; the model's own threshold is used"
    if not pts:
        return None, ""
    pt = pts[-1]
    if weights_sha256 and pt.weights_sha256 == weights_sha256:
        return pt, ""
    return None, (f"this site's operating point (adopted {pt.adopted_at[:10]}) was chosen for other weights "
                  f"(sha256 {pt.weights_sha256[:12]}); the model's own threshold is used until it is adopted "
                  f"again on an evaluation of these weights")


def _read_evaluation(path: str | Path) -> tuple[dict, Path, str]:
    p = Path(path)
    if p.is_dir():
        p = p / "evaluation.json"
    try:
        raw = p.read_bytes()
        ev = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise SitePointError(f"{p}: not a readable evaluation.json ({e})") from None
    if not isinstance(ev, dict):
        raise SitePointError(f"{p}: not an evaluation written by `lightbox evaluate`")
    return ev, p.resolve(), hashlib.sha256(raw).hexdigest()


def choose(ev: dict, target_sensitivity: float) -> dict:
    """The operating point of an evaluation at ``target_sensitivity``, or a refusal saying why not."""
    from . import metrics as M

    mid = ev.get("model_id", "")
    if mid not in SUPPORTED:
        raise SitePointError(f"{mid or 'this model'}: a site operating point is only read by "
                             f"{', '.join(SUPPORTED)}'s pipeline")
    if ev.get("kind") != "classification":
        raise SitePointError("a site operating point needs an evaluation against class labels")
    if not ev.get("weights_sha256"):
        raise SitePointError("the evaluation does not record which weights it scored")
    if not 0.5 <= target_sensitivity < 1.0:
        raise SitePointError(f"target sensitivity {target_sensitivity} is outside 0.50-0.99")
    pos = (ev.get("adapter") or {}).get("positive")
    cases = [c for c in ev.get("cases") or [] if isinstance(c.get("score"), (int, float))]
    y = [1 if c.get("reference") == pos else 0 for c in cases]
    n1, n0 = sum(y), len(y) - sum(y)
    if n1 < MIN_PER_CLASS or n0 < MIN_PER_CLASS:
        raise SitePointError(f"{n1} positive and {n0} negative cases were scored; an operating point needs at "
                             f"least {MIN_PER_CLASS} of each")
    ops = M.operating_points(y, [float(c["score"]) for c in cases], targets=(target_sensitivity,))
    if not ops:
        raise SitePointError("no operating point reaches that sensitivity on these cases")
    return dict(ops[0], n_positive=n1, n_negative=n0)


def adopt(evaluation: str | Path, target_sensitivity: float, by: str, *, installed_sha256: str | None = None,
          note: str = "", path: str | Path | None = None) -> SitePoint:
    """Adopt the point at ``target_sensitivity`` of an evaluation run; the model's previous active point
    (if any) is retired in the same write. ``installed_sha256``: the weights the app would load now; an
    evaluation of other weights is refused."""
    if not by.strip():
        raise SitePointError("say who adopts the operating point (--by NAME)")
    ev, ev_path, ev_sha = _read_evaluation(evaluation)
    op = choose(ev, target_sensitivity)
    sha = str(ev["weights_sha256"])
    if installed_sha256 is not None and installed_sha256 != sha:
        raise SitePointError(f"the evaluation scored weights {sha[:12]}, but {installed_sha256[:12] or 'none'} "
                             f"are installed now: evaluate the installed file first")
    points = load_all(path)
    now = _now()
    for x in points:
        if x.model_id == ev["model_id"] and x.active:
            x.retired_at, x.retired_by = now, by
    pt = SitePoint(model_id=ev["model_id"], weights_sha256=sha, threshold=float(op["threshold"]),
                   target_sensitivity=float(target_sensitivity), sensitivity=float(op["sensitivity"]),
                   sensitivity_ci=[float(v) for v in op["sensitivity_ci"]], specificity=float(op["specificity"]),
                   specificity_ci=[float(v) for v in op["specificity_ci"]], confusion=op["confusion"],
                   n_positive=int(op["n_positive"]), n_negative=int(op["n_negative"]), evaluation=str(ev_path),
                   evaluation_sha256=ev_sha, labels_sha256=str((ev.get("labels") or {}).get("sha256", "")),
                   evaluated_at=str(ev.get("date", "")), adopted_by=by.strip(), adopted_at=now, note=note)
    points.append(pt)
    _save(points, path)
    return pt


def retire(model_id: str, by: str, path: str | Path | None = None) -> SitePoint | None:
    """Retire the model's active point (the model's own threshold applies again); None if it had none."""
    if not by.strip():
        raise SitePointError("say who retires the operating point (--by NAME)")
    points = load_all(path)
    act = [x for x in points if x.model_id == model_id and x.active]
    if not act:
        return None
    now = _now()
    for x in act:
        x.retired_at, x.retired_by = now, by.strip()
    _save(points, path)
    return act[-1]


def _installed_sha(model_id: str) -> str | None:
    from .registry import Registry

    reg = Registry()
    entry = reg.entries.get(model_id)
    if entry is None:
        return None
    st = reg.state(model_id)
    return st.sha256 or ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lightbox site-point", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="action", required=True)
    a = sub.add_parser("adopt", help="adopt the operating point of a `lightbox evaluate` run")
    a.add_argument("evaluation", help="the evaluation folder (or its evaluation.json)")
    a.add_argument("--sensitivity", type=float, required=True, help="target sensitivity, e.g. 0.95")
    a.add_argument("--by", required=True, help="who adopts it (recorded)")
    a.add_argument("--note", default="")
    sub.add_parser("list", help="every adopted and retired point")
    r = sub.add_parser("retire", help="go back to the model's own threshold")
    r.add_argument("model")
    r.add_argument("--by", required=True)
    for s in (a, r, sub.choices["list"]):
        s.add_argument("--file", help=f"the points file (default: {FILE_NAME} in Lightbox's data folder)")
    args = ap.parse_args(argv)
    try:
        if args.action == "adopt":
            ev, _, _ = _read_evaluation(args.evaluation)
            pt = adopt(args.evaluation, args.sensitivity, args.by, note=args.note, path=args.file,
                       installed_sha256=_installed_sha(str(ev.get("model_id", ""))))
            print(f"{pt.model_id}: threshold {pt.threshold:.4g} adopted for weights {pt.weights_sha256[:12]}")
            print(f"  {pt.describe()}")
            print(f"  sensitivity 95 % CI {pt.sensitivity_ci[0]:.1%}-{pt.sensitivity_ci[1]:.1%}, specificity "
                  f"{pt.specificity_ci[0]:.1%}-{pt.specificity_ci[1]:.1%}; chosen on these cases, so optimistic "
                  f"for them: confirm it with `lightbox evaluate` on other cases")
        elif args.action == "retire":
            pt = retire(args.model, args.by, path=args.file)
            print(f"{args.model}: " + (f"retired the point adopted {pt.adopted_at}; the model's own threshold "
                                       f"applies" if pt else "no active site operating point"))
        else:
            pts = load_all(args.file)
            if not pts:
                print("no site operating points")
            for x in pts:
                state = "ACTIVE" if x.active else f"retired {x.retired_at} by {x.retired_by}"
                print(f"{x.model_id:<24} threshold {x.threshold:<8.4g} weights {x.weights_sha256[:12]}  {state}")
                print(f"    {x.describe()}; evaluation {x.evaluation}")
    except SitePointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

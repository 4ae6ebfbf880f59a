"""``make soak``: scripted reading sessions against the real app, N rounds with a seed, judged.

    python -m tests.soak [--rounds 200] [--seed 1] [--out DIR] [--level full|quick|tiny]

Runs ``tests.soak.session`` in a child process (offscreen, its own data folder, faulthandler on through
the app's own crash-evidence session), then judges what it recorded:

- crashes: the child's exit status, and the faulthandler trace it left in its data folder;
- memory: RSS after the last round within 10 % of RSS after round 20 (runs of 40 rounds or more);
- handles: open file descriptors after the last round no more than after round 20 (+2 for the odd
  lazily opened library file); threads likewise (workers come and go);
- the original symptom: two minutes of echo playback (6000 frames) leave None/True/False's counts flat;
- the garbage-collector reproduction (``tests.soak.gc_repro``) with and without the UI-thread guard.

Writes ``rounds.csv`` (one row per round), ``session.json`` and ``soak.json`` (the verdict) to ``--out``
(default ``build/soak-<seed>``); exit status 0 when every goal is met.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

REF_ROUND = 20


def _child_env(out: Path) -> dict:
    home = out / "home"
    home.mkdir(parents=True, exist_ok=True)
    return dict(os.environ, LIGHTBOX_HOME=str(home), LIGHTBOX_DB=str(home / "soak.sqlite"),
                QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"), PYTHONPATH=str(ROOT),
                OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONFAULTHANDLER="1")


def _signal_name(rc: int) -> str:
    if rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            pass
    return f"exit {rc}"


def judge(rows: list[dict], session: dict, rc: int, traces: list[str], rounds: int) -> dict:
    goals: dict[str, dict] = {}
    goals["no crash"] = {"ok": rc == 0 and not traces, "exit": _signal_name(rc) if rc else 0,
                         "traces": traces}
    done = [r for r in rows if int(r["round"]) > 0]
    goals["rounds completed"] = {"ok": len(done) == rounds, "value": len(done)}
    if len(done) >= 2 * REF_ROUND:
        ref = next(r for r in done if int(r["round"]) == REF_ROUND)
        last = done[-1]
        rss_ratio = float(last["rss_mb"]) / float(ref["rss_mb"])
        goals["RSS within 10 % of round 20"] = {"ok": rss_ratio <= 1.10, "round20_mb": float(ref["rss_mb"]),
                                                "last_mb": float(last["rss_mb"]), "ratio": round(rss_ratio, 3)}
        goals["open handles not growing"] = {"ok": int(last["fds"]) <= int(ref["fds"]) + 2,
                                             "round20": int(ref["fds"]), "last": int(last["fds"]),
                                             "max_after_20": max(int(r["fds"]) for r in done[REF_ROUND - 1:])}
        goals["threads not growing"] = {"ok": int(last["threads"]) <= int(ref["threads"]) + 2,
                                        "round20": int(ref["threads"]), "last": int(last["threads"]),
                                        "max_after_20": max(int(r["threads"]) for r in done[REF_ROUND - 1:])}
        goals["widgets not growing"] = {"ok": int(last["widgets"]) <= int(ref["widgets"]) + 20,
                                        "round20": int(ref["widgets"]), "last": int(last["widgets"])}
    pb = session.get("echo_playback")
    if pb:
        worst = max(abs(v) for v in pb["change"].values())
        goals["echo playback leaves None/True/False flat"] = {"ok": worst <= 100, **pb}
    return goals


def gc_reproduction(env: dict, views: int = 300) -> dict:
    out = {}
    for mode in ("without guard", "with guard"):
        args = [sys.executable, "-m", "tests.soak.gc_repro", "--views", str(views), "--no-show"]
        if mode == "with guard":
            args.append("--guard")
        p = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        out[mode] = _signal_name(p.returncode) if p.returncode else "survived"
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path)
    p.add_argument("--level", choices=("full", "quick", "tiny"), default="full",
                   help="quick: the demo studies only, shorter plays; tiny: a few small files (the suite's smoke round)")
    p.add_argument("--playback-frames", type=int, default=6000)
    p.add_argument("--no-gc-repro", action="store_true")
    p.add_argument("--actions", default="", help="a subset of tests.soak.actions.ROUND, comma-separated")
    a = p.parse_args(argv)
    out = (a.out or ROOT / "build" / f"soak-{a.seed}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = _child_env(out)
    args = [sys.executable, "-X", "faulthandler", "-m", "tests.soak.session", "--rounds", str(a.rounds),
            "--seed", str(a.seed), "--out", str(out), "--playback-frames", str(a.playback_frames)]
    args += ["--level", a.level]
    if a.actions:
        args += ["--actions", a.actions]
    t0 = time.time()
    with open(out / "session.log", "w") as log:
        rc = subprocess.run(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    crash_dir = out / "home" / "crash"
    traces = [f"{t}:\n{t.read_text()[-4000:]}" for t in sorted(crash_dir.glob("session-*.trace")) if t.stat().st_size]
    rows = list(csv.DictReader(open(out / "rounds.csv"))) if (out / "rounds.csv").exists() else []
    session = json.loads((out / "session.json").read_text()) if (out / "session.json").exists() else {}
    goals = judge(rows, session, rc, traces, a.rounds)
    verdict = {"rounds": a.rounds, "seed": a.seed, "level": a.level, "minutes": round((time.time() - t0) / 60, 1),
               "goals": goals, "notes": session.get("notes", [])[-50:]}
    if not a.no_gc_repro:
        verdict["gc_reproduction"] = gc_reproduction(env)
    (out / "soak.json").write_text(json.dumps(verdict, indent=2))
    ok = all(g["ok"] for g in goals.values())
    for name, g in goals.items():
        detail = {k: v for k, v in g.items() if k not in ("ok", "traces", "before", "after")}
        print(f"{'PASS' if g['ok'] else 'FAIL'}  {name}: {detail}")
    if "gc_reproduction" in verdict:
        print(f"gc reproduction: {verdict['gc_reproduction']}")
    print(f"{len(rows) - 1 if rows else 0} rounds in {verdict['minutes']} min; figures in {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

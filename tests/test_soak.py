"""The soak harness itself (``make soak`` runs it for 200 rounds): one short round of the scripted
session in a child process passes its own goals, and the judge fails what it should."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT


def test_one_quick_round_passes(tmp_path):
    out = tmp_path / "soak"
    p = subprocess.run([sys.executable, "-m", "tests.soak", "--rounds", "1", "--level", "tiny", "--out", str(out),
                        "--playback-frames", "300", "--no-gc-repro",
                        "--actions", "play_echo_with_boxes,compare_and_timeline,switch_quickly"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    verdict = json.loads((out / "soak.json").read_text())
    assert p.returncode == 0, (p.stdout[-2000:], (out / "session.log").read_text()[-3000:])
    assert verdict["goals"]["no crash"]["ok"] and verdict["goals"]["rounds completed"]["value"] == 1
    assert verdict["goals"]["echo playback leaves None/True/False flat"]["frames"] == 300
    rows = (out / "rounds.csv").read_text().splitlines()
    assert rows[0].startswith("round,seconds,rss_mb,fds") and len(rows) == 3
    assert not [n for n in verdict["notes"] if "Error" in n], verdict["notes"]


def test_the_judge_fails_growth_and_crashes():
    from tests.soak.__main__ import judge

    def rows(rss_last, fds_last):
        out = [{"round": r, "rss_mb": 1000, "fds": 30, "threads": 10, "widgets": 500} for r in range(0, 40)]
        out.append({"round": 40, "rss_mb": rss_last, "fds": fds_last, "threads": 10, "widgets": 500})
        return out

    ok = judge(rows(1050, 30), {}, 0, [], 40)
    assert all(g["ok"] for g in ok.values())
    grown = judge(rows(1200, 40), {}, 0, [], 40)
    assert not grown["RSS within 10 % of round 20"]["ok"] and not grown["open handles not growing"]["ok"]
    crashed = judge(rows(1000, 30)[:10], {}, -11, ["trace"], 40)
    assert not crashed["no crash"]["ok"] and crashed["no crash"]["exit"] == "SIGSEGV"
    assert not crashed["rounds completed"]["ok"]
    leak = judge([], {"echo_playback": {"change": {"None": -6000, "True": 0, "False": 0}}}, 0, [], 0)
    assert not leak["echo playback leaves None/True/False flat"]["ok"]

"""Screens that look: every view at 1366×768 and 1920×1080 (and a devicePixelRatio-2 screen), offscreen, as a
reader would judge it (``tests/screens.py`` shows and measures them; its PNGs are kept in out/screens/):

- the window fits the screen and no widget extends past the window or the widget it sits in;
- no label, button, list row or table cell is cut or elided where it is shown;
- the image or tracing covers at least its stated share of the viewer (MIN_IMAGE_SHARE);
- what each view is for is on show: X-ray one large image with the heatmap over it, the echo loop playing,
  the ECG2AF table not shown empty, result tables with all their rows, the timeline's points apart, the
  endoscopy key frame with its polyp mask and box beside every finding's row.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "screens"
sys.path.insert(0, str(ROOT / "tests"))
from screens import EXTRA_VIEWS, MIN_IMAGE_SHARE, VIEWS  # noqa: E402

#: (size, scale, views): both reading-room sizes in full (compare with prior of every kind on the smaller,
#: where it is tight); the high-DPI screen on the views most drawn by hand
RUNS = (("1366x768", 1, VIEWS + EXTRA_VIEWS), ("1920x1080", 1, VIEWS + ("endo_still", "endo_set", "endo_wide")),
        ("1366x768", 2, ("xray", "timeline", "compare", "endo", "endo_wide")))
MAIN_VIEWS = ("ecg", "pcg", "echo", "xray", "endo", "timeline")


def _key(size: str, scale: float) -> str:
    return size + (f"@{scale:g}x" if scale != 1 else "")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """All runs at once (one process per screen: a virtual screen's size is fixed when Qt starts)."""
    demo = tmp_path_factory.mktemp("screens_demo")
    from inference.demo import ensure_demo_studies

    ensure_demo_studies(demo)  # once, for every run
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    procs = {}
    for size, scale, views in RUNS:
        home = tmp_path_factory.mktemp("screens_home")
        cmd = [sys.executable, str(ROOT / "tests" / "screens.py"), "--size", size, "--scale", str(scale),
               "--out", str(OUT), "--demo-dir", str(demo), "--home", str(home), "--views", ",".join(views)]
        procs[_key(size, scale)] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                    text=True)
    out = {}
    for key, p in procs.items():
        log, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"{key}: tests/screens.py failed\n{log[-4000:]}"
        out[key] = json.loads((OUT / key / "report.json").read_text())
    return out


CASES = [(_key(size, scale), v) for size, scale, views in RUNS for v in views]


@pytest.mark.parametrize("run,view", CASES, ids=[f"{r}-{v}" for r, v in CASES])
def test_view_fits_the_screen_and_nothing_is_cut(reports, run, view):
    rep = reports[run]
    e = rep["views"][view]
    assert Path(e["png"]).is_file()
    assert e["fits_screen"], f"{view} window {e['frame']} on a {rep['screen']} screen"
    sw, sh = rep["screen"]
    assert e["window"][0] <= sw and e["window"][1] <= sh
    assert e["overflow"] == [], "\n".join(e["overflow"])
    assert e["clipped"] == [], "\n".join(e["clipped"])
    if MIN_IMAGE_SHARE.get(view):
        assert e["image_share"] >= MIN_IMAGE_SHARE[view], f"{view}: the image covers {e['image_share']:.0%} of its viewer"


@pytest.mark.parametrize("run", sorted({_key(s, k) for s, k, _ in RUNS}))
def test_main_window_uses_the_screen(reports, run):
    rep = reports[run]
    sw, sh = rep["screen"]
    for view in MAIN_VIEWS:
        if view in rep["views"]:
            w, h = rep["views"][view]["window"]
            assert w >= 0.95 * sw and h >= 0.9 * sh, f"{view}: a {w}x{h} window on a {sw}x{sh} screen"


@pytest.mark.parametrize("run", ["1366x768", "1920x1080", "1366x768@2x"])
def test_xray_one_large_image_with_the_heatmap_over_it(reports, run):
    e = reports[run]["views"]["xray"]
    assert e["panels"] == 1 and e["heatmap"] and e["heatmap_shown"]
    c = reports[run]["views"]["compare"]
    assert c["panels"] == 1


@pytest.mark.parametrize("run", ["1366x768", "1920x1080"])
def test_viewers_show_what_they_are_for(reports, run):
    v = reports[run]["views"]
    assert v["echo"]["playing"], "the echo loop plays as it opens"
    assert not v["ecg"]["ecg2af_table_visible"], "no empty ECG2AF table when there is no ECG2AF result"
    if "compare_echo" in v:
        assert v["compare_echo"]["playing"], "compare with prior plays both loops as they open"
    for name in ("ecg", "pcg", "xray", "endo"):
        assert v[name]["results_rows_all_shown"], f"{name}: the outputs table hides rows behind a scroll bar"


@pytest.mark.parametrize("run", ["1366x768", "1920x1080", "1366x768@2x"])
def test_endoscopy_frame_with_its_mask_and_findings_on_show(reports, run):
    """An analysed withdrawal (square and 16:9 720p), a photograph and a set of them: the key frame with the
    polyp's mask and box, every finding's row on show without sideways scrolling; the panel beside a square
    frame, below a wide one."""
    for view in ("endo", "endo_still", "endo_set", "endo_wide"):
        e = reports[run]["views"].get(view)
        if e is None:
            continue
        assert e["panel"] == ("below" if view == "endo_wide" else "beside") and e["panel_size"] > 0, view
        assert e["mask_shown"] and e["boxes"] >= 1, f"{view}: the polyp mask and box are on the frame"
        assert e["findings_rows"] >= 1 and e["findings_rows_all_shown"], f"{view}: every finding row on show"
        assert e["findings_no_sideways_scroll"], f"{view}: {e['findings_columns_hidden']} hidden, still too wide"
        for col in ("Finding", "Status"):
            assert col not in e["findings_columns_hidden"], f"{view}: the findings table without {col}"


@pytest.mark.parametrize("run", ["1366x768", "1920x1080", "1366x768@2x"])
def test_timeline_points_apart_and_trends_readable(reports, run):
    t = reports[run]["views"]["timeline"]
    assert t["markers_overlap"] == 0
    assert t["trend_height"] >= 150


def test_high_dpi_screens_are_drawn_at_twice_the_pixels(reports):
    from PIL import Image

    rep = reports["1366x768@2x"]
    assert rep["dpr"] == 2
    for view in ("xray", "timeline"):
        e = rep["views"][view]
        with Image.open(e["png"]) as im:
            assert im.size == (2 * e["window"][0], 2 * e["window"][1])

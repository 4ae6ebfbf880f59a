"""Masks on screen and in what leaves the app (pytest-qt, offscreen): the review result's stored masks on
playback and stepping (no model run), held (frozen) frames, the toggle and opacity, live mode's masks, still
images and sets in the viewer, Open as…, the export bundle's key frames and the PDF."""
from __future__ import annotations

import zipfile

import numpy as np
import pytest

from tests.endo_clips import clip, kvasir_fixtures


@pytest.fixture(scope="module")
def frozen_video(tmp_path_factory):
    from inference.endo import demo

    frames, _, _ = clip("held", per=25)
    return demo.write_video(tmp_path_factory.mktemp("frozen") / "frozen.mp4", frames, fps=25)


def _open(win, qtbot, path, **kw):
    win.study = None
    win.open_path(path, **kw)
    qtbot.waitUntil(lambda: win.study is not None, timeout=20000)
    return win.current_viewer()


def _analyse(win, v, qtbot):
    win.run_analysis("endo-polyp-lightbox")
    qtbot.waitUntil(lambda: v.result is not None and v.result.model_id == "endo-polyp-lightbox", timeout=60000)


def test_review_masks_on_playback_held_frames_toggle_and_opacity(main_window, qtbot, frozen_video, monkeypatch):
    win = main_window
    v = _open(win, qtbot, frozen_video)
    try:
        _analyse(win, v, qtbot)
        assert v.review_track is not None and len(v.review_track) == 5
        fs = sorted(win.ctx.store.findings(win.study_id), key=lambda f: f["frame_index"])
        assert [f["frame_index"] for f in fs] == [0, 25, 50, 75, 100]  # five findings, one per polyp
        # playback must not run the model: the masks come from the stored track
        from inference.endo import polyp

        monkeypatch.setattr(polyp.PolypSegmenter, "analyse", lambda *a, **k: pytest.fail("model run on playback"))
        v.seek(25)
        assert v.view.has_mask and v.view.mask_note == "mask · review"
        v.step(1)  # a held (frozen) frame shows the mask of the frame it repeats
        assert v.view.has_mask and v.view.mask_note == "mask · review · held from frame 25"
        v.mask_box.setChecked(False)
        assert not v.view.has_mask
        v.mask_box.setChecked(True)
        v.mask_opacity.setValue(60)
        assert v.view.mask_opacity == pytest.approx(0.6) and v.view.has_mask
        # the stored result re-opened later (a new session): the masks come from the store
        rid = v.result.id
        v.set_result(win.ctx.store.latest_result(win.study_id, "endo-polyp-lightbox"))
        assert v.result.id == rid and not v.result.blobs and v.review_track is not None
        v.seek(75)
        assert v.view.has_mask
        # the key frame of each finding in the timeline's findings row: a bar over the frames it was seen on
        from inference.endo.export import finding_span

        assert [finding_span(f) for f in fs] == [(0, 24), (25, 49), (50, 74), (75, 99), (100, 124)]
        assert v.timeline.cuts == [25, 50, 75, 100]
    finally:
        v.shutdown()


def test_export_bundle_and_pdf_key_frames_carry_the_mask(main_window, qtbot, frozen_video, tmp_path):
    from inference.endo.export import read_bundle

    win = main_window
    v = _open(win, qtbot, frozen_video)
    try:
        _analyse(win, v, qtbot)
        done = []
        v.export_bundle(str(tmp_path / "b.zip"), on_done=done.append)
        qtbot.waitUntil(lambda: bool(done), timeout=60000)
    finally:
        v.shutdown()
    b = read_bundle(tmp_path / "b.zip")
    assert b["metadata.json"]["frames_with_mask"] == 5 and "with the model's polyp mask drawn" in b["report.txt"]
    import cv2

    with zipfile.ZipFile(tmp_path / "b.zip") as z:
        jpg = z.read("frames/frame_000025.jpg")
    img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    raw = kvasir_fixtures()[1][0]
    cyan = (img[..., 2].astype(int) - img[..., 0].astype(int) > 20) & (img[..., 1] > 120)
    assert cyan.mean() > 0.005 and raw.shape[2] == 3  # the outline and fill are drawn on the key frame
    pdf = tmp_path / "b.pdf"
    assert pdf.exists() and pdf.stat().st_size > 20_000


def test_live_mode_keeps_its_masks_and_files_findings_by_the_review_rules(main_window, qtbot, frozen_video):
    win = main_window
    v = _open(win, qtbot, frozen_video)
    try:
        v.set_live(True)
        for i in (0, 1, 2, 3, 26, 27, 28, 29):  # step through two polyps, live analysing each frame
            v.seek(i)
            qtbot.waitUntil(lambda i=i: v.live_last.get("index") == i or (v._drain_live() or False), timeout=20000)
        v._drain_live()
        assert v.live_track is not None and v.live_track.mask(1) is not None  # held frame 1 repeats frame 0
        found = [f for f in win.ctx.store.findings(win.study_id) if "(live)" in f["source"]]
        assert len(found) == 2 and {f["frame_index"] for f in found} <= {0, 1, 2, 3, 25, 26, 27, 28, 29}
        v.set_live(False)
        v.seek(0)
        assert v.view.has_mask and v.view.mask_note.startswith("mask · live")
    finally:
        v.set_live(False)
        v.shutdown()


def test_a_still_and_a_set_of_stills_in_the_viewer(main_window, qtbot, tmp_path):
    import cv2

    win = main_window
    d = tmp_path / "stills"
    d.mkdir()
    for k, (img, _) in enumerate(kvasir_fixtures()):
        cv2.imwrite(str(d / f"polyp_{k}.jpg"), img[..., ::-1])
    v = _open(win, qtbot, d / "polyp_0.jpg")
    try:
        assert v.kind == "still" and v.review_btn.text() == "Analyse image"
        assert v.play_btn.isHidden() and v.timeline.isHidden() and v.live_box.isHidden()
        _analyse(win, v, qtbot)
        assert v.result.outputs["polyp"] is True and v.view.has_mask
        assert "polyp_0.jpg" in v.view.osd
        v = _open(win, qtbot, d)
        assert v.kind == "set" and v.review_btn.text() == "Analyse images" and v.play_btn.isHidden()
        _analyse(win, v, qtbot)
        assert v.result.outputs["images_with_polyp"] == 5
        assert len(win.ctx.store.findings(win.study_id)) == 5
        v.step(1)
        assert v.time_label.text() == "image 2 of 5" and v.view.has_mask
    finally:
        v.shutdown()


def test_open_as_and_an_ambiguous_image(main_window, qtbot, tmp_path, monkeypatch):
    import cv2

    from app import open_as
    from inference.endo.polyp_eval import outdoor_scene

    p = tmp_path / "holiday.png"
    cv2.imwrite(str(p), outdoor_scene(1, 256)[..., ::-1])
    asked = []
    monkeypatch.setattr(open_as, "ask", lambda parent, path, cands=None, why="": asked.append(cands) or ("endo", {}))
    main_window.quiet_errors = False
    monkeypatch.setattr(main_window, "message", lambda *a, **k: None)
    v = _open(main_window, qtbot, p)
    assert asked and [m for m, _ in asked[0]] == ["endo", "xray"] and main_window.study.modality == "endo"
    v.shutdown()
    assert [c[0] for c in open_as.choices_for(p, [("endo", 0.35), ("xray", 0.1)])] == ["endo", "xray"]
    choices = open_as.choices_for(p)  # File > Open as…: the readers of .png first, then every other modality
    assert [c[0] for c in choices][:2] in (["xray", "endo"], ["endo", "xray"]) and len(choices) == 5
    assert [c[1] for c in open_as.choices_for(tmp_path)] == [{"folder_as": "set"}, {"folder_as": "sequence"}]
    # Open as: a radiograph read as endoscopy on purpose
    from tests.conftest import ROOT

    xr = sorted((ROOT / "resources" / "xray").glob("*.jpeg"))[0]
    v = _open(main_window, qtbot, xr, modality="endo")
    assert main_window.study.modality == "endo" and v.kind == "still"
    v.shutdown()

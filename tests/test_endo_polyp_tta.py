"""Test-time augmentation of the polyp segmenter: each view is undone exactly, the averaged map is the mean of
the single-view maps of the flipped frames, the gate reads the frame as it is, still images get the manifest's
mode and video sweeps the single view, and the shipped model with it still passes (and a broken one fails)
the real-frame check."""
from __future__ import annotations

import json

import numpy as np
import pytest


def test_every_view_is_undone_exactly():
    from inference.endo.polyp import TTA_MODES, tta_views

    x = np.random.default_rng(0).random((2, 3, 9, 9)).astype(np.float32)
    counts = {}
    for mode in TTA_MODES:
        views = tta_views(x, mode)
        counts[mode] = len(views)
        assert np.array_equal(views[0][0], x)  # the first view is the frame as it is
        seen = set()
        for v, back in views:
            assert v.shape == x.shape
            assert np.array_equal(back(v[1, 2]), x[1, 2])
            seen.add(v[1, 2].tobytes())
        assert len(seen) == len(views)  # no view repeated
    assert counts == {"none": 1, "flips4": 4, "d4": 8}
    from inference.endo.polyp import TTA_VIEWS

    assert counts == TTA_VIEWS  # the card's and the bench's view counts come from TTA_VIEWS
    with pytest.raises(ValueError):
        tta_views(x, "rot45")


def test_averaged_map_is_the_mean_of_the_flipped_frames_maps(tmp_path):
    from inference.endo.models import make_test_polyp_onnx
    from inference.endo.polyp import PolypSegmenter

    path = make_test_polyp_onnx(tmp_path / "m.onnx", size=64, seed=3, bias=0.2)
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (128, 128, 3), dtype=np.uint8)  # 2x the input: resizing commutes with the flips
    one = PolypSegmenter(path, threads=1, gate=False)
    for mode, ops in (("flips4", [lambda a: a, lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a[::-1, ::-1]]),
                      ("d4", [lambda a: a, lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a[::-1, ::-1],
                              lambda a: np.swapaxes(a, 0, 1), lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
                              lambda a: np.swapaxes(a, 0, 1)[::-1], lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1]])):
        seg = PolypSegmenter(path, threads=1, gate=False, tta=mode)
        assert seg.tta == mode
        manual = []
        for op in ops:  # the single-view map of the transformed frame, mapped back onto the frame
            p = one.probabilities([np.ascontiguousarray(op(img))])[0]
            back = np.zeros_like(p)
            idx = np.arange(p.size).reshape(p.shape)
            back.reshape(-1)[op(idx).reshape(-1)] = p.reshape(-1)
            manual.append(back)
        got = seg.probabilities([img, img[::-1].copy()])
        assert got.shape == (2, 64, 64)
        np.testing.assert_allclose(got[0], np.mean(manual, 0), atol=1e-5)
        assert not np.allclose(got[0], one.probabilities([img])[0], atol=1e-3)  # it did average something
    with pytest.raises(ValueError):
        PolypSegmenter(path, threads=1, tta="bogus")


def test_stills_get_the_manifest_mode_and_videos_the_single_view(registry, monkeypatch):
    from inference.endo.models import LIGHTBOX_POLYP_ID, polyp_model
    from inference.registry import WeightsError

    entry = registry.state(LIGHTBOX_POLYP_ID).entry
    shipped = entry.outputs.get("tta_stills", "none")
    from tests.conftest import ROOT

    card = json.loads((ROOT / "resources" / "models" / "polyp_unet.json").read_text())
    assert shipped == card["metrics"]["stills_tta"]["choice"]["chosen"]  # chosen on validation (the model card)
    assert polyp_model(registry, LIGHTBOX_POLYP_ID, threads=1, stills=True).tta == shipped
    assert polyp_model(registry, LIGHTBOX_POLYP_ID, threads=1).tta == "none"  # live, sweeps, key frames
    monkeypatch.setitem(entry.outputs, "tta_stills", "rot45")
    with pytest.raises(WeightsError, match="tta_stills"):
        polyp_model(registry, LIGHTBOX_POLYP_ID, threads=1, stills=True)


def test_feature_gate_reads_the_frame_as_it_is(registry):
    from inference.endo.models import LIGHTBOX_POLYP_ID, polyp_model

    from tests.endo_clips import kvasir_fixtures

    frames = [img for img, _ in kvasir_fixtures()[:2]]
    one = polyp_model(registry, LIGHTBOX_POLYP_ID, threads=1)
    tta = polyp_model(registry, LIGHTBOX_POLYP_ID, threads=1, stills=True)
    _, d1 = one.run(frames)
    _, d2 = tta.run(frames)
    np.testing.assert_allclose(d1, d2, rtol=1e-5)


def test_shipped_model_with_tta_passes_the_real_frames_and_a_broken_one_fails(registry, tmp_path):
    from inference.endo.models import LIGHTBOX_POLYP_ID, polyp_model
    from inference.endo.polyp import PolypSegmenter

    from tests.test_endo_polyp_fixtures import _broken_variant, _fixture_pass, _fixture_verdict

    seg = polyp_model(registry, LIGHTBOX_POLYP_ID, threads=1, stills=True)
    v = _fixture_verdict(seg)
    assert _fixture_pass(v), v
    v1 = _fixture_verdict(polyp_model(registry, LIGHTBOX_POLYP_ID, threads=1))
    assert v["dice"] >= v1["dice"] - 0.01, (v["dice"], v1["dice"])  # averaging views must not spoil the masks
    src = registry.path_of(registry.state(LIGHTBOX_POLYP_ID).entry)
    for kind in ("inverted", "constant-background"):
        bad = PolypSegmenter(_broken_variant(src, tmp_path / f"{kind}.onnx", kind), threads=1,
                             min_confidence=seg.min_confidence, tta=seg.tta)
        assert not _fixture_pass(_fixture_verdict(bad)), kind


def test_a_still_records_its_augmentation_and_a_video_the_single_view(registry, tmp_path):
    import cv2

    from inference.detect import open_study
    from inference.pipeline import analyse

    from tests.endo_clips import kvasir_fixtures

    img, _ = kvasir_fixtures()[0]
    p = tmp_path / "polyp.png"
    cv2.imwrite(str(p), np.ascontiguousarray(img[..., ::-1]))
    shipped = registry.state("endo-polyp-lightbox").entry.outputs["tta_stills"]
    r = analyse(open_study(p), None, registry)
    assert r.outputs["test_time_augmentation"] == shipped and r.outputs["polyp"] is True
    from inference.endo.demo import make

    v = analyse(open_study(make(tmp_path)), None, registry)
    assert v.outputs["test_time_augmentation"] == "none"


def test_the_rule_takes_a_costlier_mode_only_for_a_real_gain():
    from inference.endo.polyp_tta import choose_mode

    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.95, 120)
    groups = np.arange(120)
    same = {"none": base, "flips4": base + 0.001, "d4": base + 0.0015}
    assert choose_mode(same, groups)["chosen"] == "none"  # gains below MIN_GAIN
    noisy = {"none": base, "flips4": base + rng.normal(0.003, 0.08, 120), "d4": base}
    assert choose_mode(noisy, groups)["chosen"] == "none"  # its interval reaches below 0
    real = {"none": base, "flips4": base + 0.010, "d4": base + 0.011}
    c = choose_mode(real, groups)
    assert c["chosen"] == "flips4" and c["rows"][0]["gain_ci95"] == [None, None]  # d4 beats flips4 by < MIN_GAIN
    assert choose_mode({**real, "d4": base + 0.013}, groups)["chosen"] == "d4"


def test_shipped_polyp_card_is_rendered_from_its_json_and_names_every_look():
    import json

    from inference.endo.polyp_eval import model_card
    from tests.conftest import ROOT

    d = ROOT / "resources" / "models"
    m = json.loads((d / "polyp_unet.json").read_text())
    md = (d / "polyp_unet.md").read_text()
    assert md == model_card(m)
    assert len(m["test_looks"]) >= 9 and f"| {len(m['test_looks'])} |" in md
    t = m["metrics"]["stills_tta"]
    from inference.registry import Registry

    entry = Registry().state("endo-polyp-lightbox").entry
    assert entry.outputs["tta_stills"] == t["choice"]["chosen"] and entry.sha256 == m["onnx_sha256"]
    assert entry.outputs["min_confidence"] == m["metrics"]["operating_point"]["min_confidence"]
    if t["choice"]["chosen"] != "none":  # a mode with more views has its own operating point, and its test look
        assert t["operating_point"]["min_confidence"] == entry.outputs["min_confidence"]
        assert "test-time augmentation" in md and "segmentation_test" in t
    else:  # the single view won on validation: no still-image look at the test split, and the card says so
        assert "segmentation_test" not in t and "stills get the **single view**" in md
    assert entry.outputs["persist_confidence"] == m["metrics"]["operating_point"]["persistence"]["persist_confidence"]
    assert int(entry.inputs["size"]) == m["input"]["shape"][2]


def test_the_ledger_of_test_looks_survives_a_lost_cache(tmp_path, monkeypatch):
    """A fresh machine has no ledger: the next look is numbered after the card's record of every earlier one,
    and later looks append to that (not to an empty list)."""
    from inference.endo.polyp_eval import log_look

    monkeypatch.setenv("LIGHTBOX_POLYP_CACHE", str(tmp_path / "fresh-cache"))
    card_looks = [{"time": f"2026-12-0{i}T10:00:00", "onnx_sha256": f"{i}" * 64} for i in range(1, 4)]
    looks = log_look("tiny", {"time": "2026-12-06T02:00:00", "onnx_sha256": "f" * 64}, card_looks)
    assert len(looks) == 4 and looks[:3] == card_looks and looks[3]["onnx_sha256"] == "f" * 64
    again = log_look("tiny", {"time": "2026-12-06T03:00:00", "onnx_sha256": "e" * 64}, [])
    assert [x["onnx_sha256"][0] for x in again] == ["1", "2", "3", "f", "e"]

"""Endoscopy: reader, frame selection on the demo video, pipeline, ONNX contract, export bundle."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from inference.endo import demo
from inference.study import ReadError


@pytest.fixture(scope="module")
def demo_video(tmp_path_factory):
    return demo.make(tmp_path_factory.mktemp("endo_demo"))


@pytest.fixture(scope="module")
def demo_study(demo_video):
    from inference.detect import open_study

    return open_study(demo_video)


def _grey_echo_video(path, n=20, size=128, doppler=False):
    """An echo-like clip: grey speckle inside a fan sector on black (optionally a colour-Doppler box)."""
    yy, xx = np.mgrid[0:size, 0:size]
    ang = np.degrees(np.arctan2(xx - size / 2, yy + 5))
    r = np.hypot(xx - size / 2, yy + 5)
    fan = (np.abs(ang) < 40) & (r < size * 0.95)
    rng = np.random.default_rng(1)
    frames = []
    for i in range(n):
        g = (rng.random((size, size)) * 180 * fan).astype(np.uint8)
        f = np.dstack([g, g, g])
        if doppler:  # red towards, blue away from the probe in a box over the valve
            f[40:70, 50:64] = (200, 30, 30)
            f[40:70, 64:80] = (30, 60, 210)
        frames.append(f)
    return demo.write_video(path, frames, fps=30)


# -- demo + reader ------------------------------------------------------------------------------
def test_demo_is_small_deterministic_and_endoscopic(demo_video, tmp_path):
    assert demo_video.stat().st_size < 1.5e6
    again = demo.make(tmp_path)
    from inference.study import sha256_file

    assert sha256_file(again) == sha256_file(demo_video)


def test_reader_metadata_and_lazy_source(demo_study):
    st = demo_study
    assert st.modality == "endo"
    m = st.metadata
    assert (m["fps"], m["frame_count"], m["width"], m["height"]) == (25.0, 240, 256, 256)
    assert m["duration_s"] == pytest.approx(9.6)
    src = st.data["source"]
    assert len(src) == 240 and not src._cache  # nothing decoded up front
    f = src.frame(5)
    assert f.shape == (256, 256, 3) and f.dtype == np.uint8


def test_seek_is_frame_accurate(demo_study):
    src = demo_study.data["source"].reopen()
    seq = {i: f for i, f in src.reopen().iter_frames(0, 240)}
    for i in (239, 0, 131, 7, 200, 8, 64, 63):
        assert np.array_equal(src.frame(i), seq[i]), i
    assert len(src._cache) <= 64
    src.close()


def test_sniff_separates_endoscopy_from_grey_echo(demo_video, tmp_path):
    from inference.endo import reader as endo

    echo = _grey_echo_video(tmp_path / "echo_like.mp4")
    assert endo.sniff(demo_video) > 0.8
    assert endo.sniff(echo) < 0.2
    doppler = _grey_echo_video(tmp_path / "doppler.avi", doppler=True)
    assert endo.sniff(doppler) < 0.2


def test_truncated_and_empty_video_give_clear_messages(demo_video, tmp_path):
    from inference.detect import open_study
    from inference.endo import reader as endo

    cut = tmp_path / "cut.mp4"
    cut.write_bytes(demo_video.read_bytes()[: demo_video.stat().st_size // 2])
    with pytest.raises(ReadError, match="truncated"):
        endo.read(cut)
    empty = tmp_path / "zero.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ReadError, match="empty"):
        open_study(empty, "endo")
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"RIFF" + bytes(2000))
    with pytest.raises(ReadError):
        open_study(junk, "endo")


def test_truncated_avi_keeps_the_decodable_frames(tmp_path):
    from inference.endo import reader as endo

    frames = demo.frames()[:40]
    avi = demo.write_video(tmp_path / "clip.avi", frames, fourcc="MJPG")
    data = avi.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    st = endo.read(cut)
    assert 0 < st.metadata["frame_count"] < 40
    assert any("truncated" in n for n in st.notes)
    st.data["source"].frame(st.metadata["frame_count"] - 1)  # the last one it promises decodes


@pytest.mark.parametrize("ext,fourcc", [("avi", "MJPG"), ("mov", "mp4v"), ("mkv", "mp4v")])
def test_containers(tmp_path, ext, fourcc):
    from inference.detect import open_study

    frames = demo.frames()[:6]
    st = open_study(demo.write_video(tmp_path / f"clip.{ext}", frames, fourcc=fourcc))
    assert st.modality == "endo" and st.metadata["frame_count"] == 6 and st.metadata["format"] == ext
    assert np.abs(st.data["source"].frame(5).astype(int) - frames[5]).mean() < 12  # lossy codecs


def test_folder_of_frames(tmp_path):
    import cv2

    from inference.detect import open_study

    d = tmp_path / "frames"
    d.mkdir()
    for i, f in enumerate(demo.frames()[:12]):
        cv2.imwrite(str(d / f"img{i}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    st = open_study(d)
    assert st.modality == "endo" and st.metadata["frame_count"] == 12
    assert st.data["source"].files[2].name == "img2.png" and st.data["source"].files[10].name == "img10.png"
    assert any("assumed" in n for n in st.notes)
    # lightbox batch keys a folder study by the same sha256 the reader gives it (one study, not two)
    from inference.batch import file_key

    (d / "readme.txt").write_text("not a frame")
    assert file_key(d) == st.sha256 == open_study(d).sha256
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(ReadError, match="no frame images"):
        open_study(empty)


# -- frame selection --------------------------------------------------------------------------------
def test_demo_skipped_frame_counts_are_exact(demo_study, registry):
    from inference.pipeline import JobContext, analyse

    seen = []
    r = analyse(demo_study, "endo-quality", registry, JobContext(progress=lambda f, t: seen.append(f)))
    o = r.outputs
    assert o["frames_total"] == demo.TRUTH["frames_total"] == 240
    assert o["skipped"] == demo.TRUTH["skipped"]
    assert o["frames_analysed"] == demo.TRUTH["frames_analysed"] == 162
    assert o["frames_skipped"] == 78
    assert r.weights_sha256 == registry.state("endo-quality").sha256 and r.runtime == "numpy"
    assert seen and seen[-1] == 1.0
    # every planted segment is one band of its own status
    for reason, (a, b) in demo.SEGMENTS.items():
        assert {"status": reason, "start": a, "end": b} in [{k: x[k] for k in ("status", "start", "end")}
                                                            for x in o["_bands"]]
    json.dumps(o)  # stored as JSON


def test_quality_measures_on_synthetic_frames():
    import cv2

    from inference.endo.quality import FrameSelector, dhash, hamming, measure_single

    f = demo.frames()[10]
    assert measure_single(f).status == "ok"
    assert measure_single(cv2.GaussianBlur(f, (0, 0), 6)).status == "blur"
    assert measure_single((f * 0.1).astype(np.uint8)).status == "dark"
    assert measure_single(np.full_like(f, 252)).status == "overexposed"
    sel = FrameSelector()
    assert sel.measure(0, f).status == "ok"
    assert sel.measure(1, f.copy()).status == "duplicate"
    g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
    assert hamming(dhash(g), dhash(g)) == 0


def test_cancel_stops_review(demo_study, registry):
    from inference.pipeline import Cancelled, JobContext, analyse

    ctx = JobContext()

    def progress(f, t):
        if f > 0.3:
            ctx.cancel()

    ctx._progress = progress
    with pytest.raises(Cancelled):
        analyse(demo_study, "endo-quality", registry, ctx)


# -- ONNX polyp contract ------------------------------------------------------------------------------
def test_polyp_model_not_installed_then_demo_weights(demo_study, registry, tmp_path):
    from inference.endo.models import make_test_polyp_onnx
    from inference.pipeline import analyse
    from inference.registry import WeightsError

    st = registry.state("endo-polyp")
    assert st.status == "not installed" and "lightbox weights install" in st.message
    with pytest.raises(WeightsError):
        analyse(demo_study, "endo-polyp", registry)
    onnx_path = make_test_polyp_onnx(tmp_path / "endo-polyp.onnx", size=64, bias=4.0)
    assert registry.install(onnx_path, "endo-polyp", unofficial=True).status == "demo"
    r = analyse(demo_study, "endo-polyp", registry)
    assert r.clinical is False and r.runtime == "onnxruntime"
    assert r.outputs["skipped"] == demo.TRUTH["skipped"]
    assert r.outputs["frames_to_model"] == 162
    fs = r.outputs["_findings"]
    assert r.outputs["findings_count"] == len(fs) >= 1
    f = fs[0]
    assert set(f) >= {"time_s", "frame_index", "label", "confidence", "source", "note", "box"}
    assert f["source"] == "endo-polyp" and 0 <= f["confidence"] <= 1 and len(f["box"]) == 4
    # detections on consecutive analysed frames merged: far fewer findings than analysed frames
    assert len(fs) < 10


def test_merge_detections():
    from inference.endo.models import Detection
    from inference.endo.pipeline import merge_detections

    d = lambda c: [Detection("polyp", c, [0, 0, 0.1, 0.1])]  # noqa: E731
    per = [(10, 0.4, d(0.5)), (11, 0.44, d(0.9)), (12, 0.48, d(0.6)), (100, 4.0, d(0.7))]
    out = merge_detections(per, 25.0, "m")
    assert [(f["frame_index"], f["confidence"]) for f in out] == [(11, 0.9), (100, 0.7)]
    assert "frames 10-12" in out[0]["note"]


def test_vlm_backend_not_installed_and_json_parsing(tmp_path, monkeypatch):
    from inference.endo.models import MedGemmaBackend, medgemma_state, parse_vlm_json
    from inference.registry import WeightsError

    monkeypatch.setenv("LIGHTBOX_MEDGEMMA", str(tmp_path / "nope"))
    st = medgemma_state()
    assert not st.available and "not installed" in st.message
    with pytest.raises(WeightsError):
        MedGemmaBackend()
    text = ('```json\n{"findings": [{"label": "polyp", "location": "sigmoid", "risk_level": "medium", '
            '"confidence": 0.7, "box": [0.1, 0.2, 0.3, 0.4], "suggested_action": "biopsy"}]}\n```')
    (det,) = parse_vlm_json(text)
    assert det.label == "polyp" and det.box == [0.1, 0.2, 0.3, 0.4] and "sigmoid" in det.note
    assert parse_vlm_json("I cannot see anything") == []


def test_vlm_backend_installed_path_with_a_stub_transformers(tmp_path, monkeypatch):
    """transformers is not installed here: a stub with its API shape runs the adapter's installed path
    (local files only, dtype per device, prompt with the frame, decode of the new tokens only)."""
    import importlib.util
    import sys
    import types

    import torch

    from inference.endo.models import MedGemmaBackend, medgemma_state

    folder = tmp_path / "medgemma-4b-it"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model-00001-of-00002.safetensors").write_bytes(b"\0" * 16)
    calls: dict = {}

    class Inputs(dict):
        def to(self, device, dtype=None):
            calls["to"] = (str(device), dtype)
            return self

    class Processor:
        @classmethod
        def from_pretrained(cls, path, **kw):
            calls["processor"] = (path, kw)
            return cls()

        def apply_chat_template(self, messages, **kw):
            (msg,) = messages
            calls["image_size"] = msg["content"][0]["image"].size
            calls["prompt"] = msg["content"][1]["text"]
            return Inputs(input_ids=torch.tensor([[1, 2, 3]]))

        def decode(self, ids, skip_special_tokens=True):
            calls["decoded"] = ids.tolist()
            return '{"findings": [{"label": "polyp", "confidence": 0.8, "box": [0.1, 0.1, 0.3, 0.3]}]}'

    class Model:
        device, dtype = torch.device("cpu"), torch.float32

        @classmethod
        def from_pretrained(cls, path, **kw):
            calls["model"] = (path, kw)
            return cls()

        def to(self, dev):
            return self

        def eval(self):
            return self

        def generate(self, **kw):
            calls["generate"] = kw
            return torch.tensor([[1, 2, 3, 40, 41]])

    stub = types.ModuleType("transformers")
    stub.AutoProcessor, stub.AutoModelForImageTextToText = Processor, Model
    stub.__spec__ = importlib.util.spec_from_loader("transformers", loader=None)
    monkeypatch.setitem(sys.modules, "transformers", stub)
    monkeypatch.setenv("LIGHTBOX_MEDGEMMA", str(folder))
    st = medgemma_state()
    assert st.available and "NOT A CLINICAL RESULT" in st.message
    b = MedGemmaBackend()
    assert calls["processor"][1]["local_files_only"] and calls["model"][1]["local_files_only"]  # no hub
    assert calls["model"][1]["torch_dtype"] == torch.float32 and b.device == "CPU"
    assert len(b.fingerprint) == 64
    frame = np.zeros((48, 64, 3), np.uint8)
    (dets,) = b.detect([frame])
    assert calls["image_size"] == (64, 48) and "JSON" in calls["prompt"]
    assert calls["generate"]["do_sample"] is False
    assert calls["decoded"] == [40, 41]  # only what the model generated, not the prompt
    assert [(d.label, d.confidence) for d in dets] == [("polyp", 0.8)]


# -- export bundle --------------------------------------------------------------------------------------
def test_export_bundle_round_trips(demo_study, registry, store, tmp_path):
    from inference.endo.export import BUNDLE_FILES, export_from_store, read_bundle
    from inference.pipeline import analyse

    r = analyse(demo_study, "endo-quality", registry)
    sid = store.save(demo_study, [r])
    store.add_finding(sid, time_s=4.0, frame_index=100, label="polyp", confidence=0.91, source="clinician",
                      note="sessile, 5 mm", box=[0.1, 0.3, 0.3, 0.5], status="confirmed")
    fid = store.add_finding(sid, time_s=8.8, frame_index=220, label="polyp", confidence=0.4,
                            source="endo-polyp · result #9", note="", status="proposed")
    store.add_finding(sid, time_s=1.0, frame_index=25, label="bleeding", confidence=None, source="clinician",
                      note='comma, "quote"', status="rejected")
    store.update_finding(fid, status="confirmed", note="edited")
    dest = export_from_store(store, demo_study, sid, tmp_path / "out" / "bundle.zip")
    assert not list(dest.parent.glob("*.part*"))
    b = read_bundle(dest)
    assert set(BUNDLE_FILES) <= set(b["_names"])
    db = store.findings(sid)
    assert len(b["findings.json"]) == len(b["findings.csv"]) == len(db) == 3
    assert b["metadata.json"]["total_findings"] == 3
    assert b["metadata.json"]["total_frames"] == 240 and b["metadata.json"]["sha256"] == demo_study.sha256
    s = b["summary.json"]
    assert s["total_frames_analyzed"] == 162 and s["skipped_by_reason"] == demo.TRUTH["skipped"]
    assert s["findings_by_status"] == {"confirmed": 2, "rejected": 1}
    by_id = {f["id"]: f for f in b["findings.json"]}
    assert by_id[fid]["status"] == "confirmed" and by_id[fid]["note"] == "edited"
    rows = {int(r["Finding_Id"]): r for r in b["findings.csv"]}
    assert rows[fid]["Status"] == "confirmed" and rows[fid]["Timestamp"] == "00:08.80"
    assert any(r["Note"] == 'comma, "quote"' for r in b["findings.csv"])
    assert json.loads(rows[1]["Box"]) == [0.1, 0.3, 0.3, 0.5]
    assert "DETAILED FINDINGS" in b["report.txt"] and "00:04.00" in b["report.txt"]
    with zipfile.ZipFile(dest) as z:
        assert "frames/frame_000100.jpg" in z.namelist()


def test_export_stamps_non_clinical(demo_study, store, tmp_path):
    from inference.endo.export import read_bundle, write_bundle
    from inference.results import Result

    r = Result("endo-polyp", "ab" * 32, "onnxruntime", "CPU", 1.0,
               {"frames_total": 240, "frames_analysed": 1, "frames_skipped": 239, "skipped": {}}, clinical=False)
    out = write_bundle(tmp_path / "b.zip", {"name": "x", "sha256": "0" * 64}, [], [r])
    b = read_bundle(out)
    assert b["metadata.json"]["not_a_clinical_result"] is True
    assert "NOT A CLINICAL RESULT" in b["report.txt"] and b["summary.json"]["stamp"] == "NOT A CLINICAL RESULT"


def test_pdf_report_with_key_frames(demo_study, registry, store, tmp_path):
    from app.report import build_report
    from inference.pipeline import analyse

    sid = store.save(demo_study, [analyse(demo_study, "endo-quality", registry)])
    store.add_finding(sid, time_s=4.0, frame_index=100, label="polyp", confidence=0.9, source="clinician",
                      box=[0.1, 0.3, 0.3, 0.5], status="confirmed")
    out = build_report(demo_study, store, sid, tmp_path / "r.pdf", extra={"frame_index": 3})
    data = (tmp_path / "r.pdf").read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 20_000  # holds the timeline figure and a key frame
    assert out.endswith("r.pdf")


def test_cli_endo_export(demo_video, tmp_path, capsys):
    from app.cli import main
    from inference.endo.export import read_bundle

    rc = main(["endo-export", str(demo_video), "--out", str(tmp_path / "b.zip"), "--db", str(tmp_path / "c.sqlite")])
    assert rc == 0
    b = read_bundle(tmp_path / "b.zip")
    assert b["summary.json"]["skipped_by_reason"] == demo.TRUTH["skipped"]
    assert main(["endo-export", str(tmp_path / "missing.mp4"), "--out", str(tmp_path / "c.zip")]) == 1


def test_model_rate_cap_from_manifest(demo_study, tmp_path):
    from inference import paths
    from inference.endo.models import make_test_polyp_onnx
    from inference.pipeline import analyse
    from inference.registry import Registry

    man = tmp_path / "manifest.toml"
    man.write_text(paths.MANIFEST.read_text().replace("model_fps = 0", "model_fps = 5"))
    reg = Registry(manifest=man, weights=tmp_path / "w")
    reg.install(make_test_polyp_onnx(tmp_path / "p.onnx", size=32), "endo-polyp", unofficial=True)
    o = analyse(demo_study, "endo-polyp", reg).outputs
    assert o["model_rate_fps"] == 5 and 20 < o["frames_to_model"] <= 49  # 9.6 s x 5 fps, usable frames only
    assert o["frames_analysed"] == 162

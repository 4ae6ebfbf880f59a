"""Echo: reader, sector crop, EchoNet preprocessing, phantom ED/ES, official-format checkpoints, ONNX
agreement, pipeline, practice data and report. CPU-only; models run on small inputs or short loops."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from inference.echo import demo
from inference.echo import playback
from inference.echo import preprocess as P
from inference.study import ReadError


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory):
    return demo.make(tmp_path_factory.mktemp("echo_demo"))


@pytest.fixture(scope="module")
def short_loop(tmp_path_factory):
    """A 40-frame phantom loop (one systole) for model runs that must stay quick on CPU."""
    p = tmp_path_factory.mktemp("echo_short") / "short.mp4"
    return demo.write(p, demo.frames()[5:45])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Seeded random-weights checkpoints saved exactly as EchoNet-Dynamic saved its own."""
    import torch

    from inference.echo import echonet as E

    d = tmp_path_factory.mktemp("echo_ck")
    torch.manual_seed(6)
    ef = E.save_official_format(E.build_ef_model(), d / "r2plus1d_18_32_2_pretrained.pt", frames=32, period=2)
    seg = E.save_official_format(E.build_seg_model(), d / "deeplabv3_resnet50_random.pt")
    yield {"ef": ef, "seg": seg}
    shutil.rmtree(d, ignore_errors=True)  # 270 MB


def _install(registry, checkpoints, which=("ef", "seg")):
    if "ef" in which:
        registry.install(checkpoints["ef"], "echonet-ef", unofficial=True)
    if "seg" in which:
        registry.install(checkpoints["seg"], "echonet-seg", unofficial=True)


# -- reader -------------------------------------------------------------------------------------
def test_demo_reads_as_echo(demo_file):
    from inference.detect import detect_modality, open_study

    assert demo_file.stat().st_size < 1_000_000
    assert detect_modality(demo_file) == "echo"
    s = open_study(demo_file)
    assert s.modality == "echo"
    assert s.data["frames"].shape == (demo.N, demo.H, demo.W, 3)
    assert s.data["frames"].dtype == np.uint8
    assert s.metadata["fps"] == pytest.approx(50.0)
    assert s.metadata["duration_s"] == pytest.approx(3.0)


def test_sniff_prefers_grey_fan_over_colourful_video(demo_file, tmp_path):
    from inference.echo import reader as R

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:160]
    frames = []
    for i in range(12):  # pink/red mucosa-like colour filling the frame
        f = np.zeros((120, 160, 3), np.uint8)
        f[..., 0] = 170 + 40 * np.sin((xx + i) / 9)
        f[..., 1] = 70 + 20 * np.cos(yy / 7)
        f[..., 2] = 60 + rng.integers(0, 20, (120, 160))
        frames.append(f)
    colourful = demo.write(tmp_path / "colour.avi", np.stack(frames), fps=25)
    echo_score = R.sniff(demo_file, demo_file.read_bytes()[:4096])
    colour_score = R.sniff(colourful, colourful.read_bytes()[:4096])
    assert echo_score > 0.75
    assert colour_score < 0.4


def test_dicom_ybr_multiframe_reads_with_frame_time():
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from inference.detect import open_study

    s = open_study(get_testdata_file("examples_ybr_color.dcm"))
    assert s.modality == "echo"
    assert s.data["frames"].shape == (30, 240, 320, 3)
    assert s.metadata["fps"] == pytest.approx(1000 / 33.333, rel=1e-3)  # FrameTime 33.333 ms
    assert s.metadata["photometric"].startswith("YBR")
    f = s.data["frames"].astype(int)
    # YBR decoded to RGB: B-mode is grey, so the channels agree where the image is lit
    lit = f.mean(axis=3) > 40
    assert np.abs(f[..., 0] - f[..., 1])[lit].mean() < 12
    assert pydicom  # imported


def test_bad_files_give_clear_messages(demo_file, tmp_path):
    from inference.detect import open_study

    trunc = tmp_path / "truncated.mp4"
    trunc.write_bytes(demo_file.read_bytes()[: demo_file.stat().st_size // 50])
    junk = tmp_path / "zero_frames.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4000)
    for p in (trunc, junk):
        with pytest.raises(ReadError) as e:
            from inference.echo import reader as R

            R.read(p)
        assert p.name in str(e.value)
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(ReadError, match="empty"):
        open_study(empty)


def test_wrong_and_absurd_dicom(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from inference.echo import reader as R

    with pytest.raises(ReadError, match="no image|single image|cine"):
        R.read(get_testdata_file("waveform_ecg.dcm"))
    with pytest.raises(ReadError):
        R.read(get_testdata_file("rtplan_truncated.dcm") or get_testdata_file("rtplan.dcm"))
    ds = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
    ds.NumberOfFrames = 9_000_000
    p = tmp_path / "absurd.dcm"
    ds.save_as(p)
    with pytest.raises(ReadError, match="frames"):
        R.read(p)
    not_dicom = tmp_path / "fake.dcm"
    not_dicom.write_bytes(b"hello" * 100)
    with pytest.raises(ReadError):
        R.read(not_dicom)


def test_memory_bound_refuses_before_decoding(monkeypatch, demo_file):
    from inference.echo import reader as R

    monkeypatch.setattr(R, "MAX_DECODED_BYTES", 10 * demo.W * demo.H * 3)
    with pytest.raises(ReadError, match="GiB"):
        R.read(demo_file)


# -- preprocessing ------------------------------------------------------------------------------
def test_sector_crop_excludes_labels_and_ecg(demo_file):
    from inference.detect import open_study

    frames = open_study(demo_file).data["frames"]
    box = P.find_sector(frames)
    # the fan spans x ~ 74..406, y 24..294; labels sit in the top corners and the ECG below y ~ 300
    assert 60 <= box.x0 <= 90 and 390 <= box.x1 <= 420
    assert 15 <= box.y0 <= 40 and 280 <= box.y1 <= 300
    small = P.crop_resize(frames[:3], box)
    assert small.shape == (3, 112, 112, 3)
    norm = P.normalise(small)
    assert norm.shape == (3, 3, 112, 112) and norm.dtype == np.float32
    expect = (small[..., 1].astype(np.float32) - P.MEAN[1]) / P.STD[1]
    np.testing.assert_allclose(norm[1], expect, rtol=1e-6)


def test_clip_sampling_is_the_references():
    """Every 2nd frame whatever the frame rate; start frames 0 .. F-63 (tests/test_echo_fidelity.py
    checks this and the rest of the reference's procedure against an oracle)."""
    from inference.echo import reference as R

    np.testing.assert_array_equal(R.clip_frames(10), 10 + 2 * np.arange(32))
    assert len(R.all_starts(150)) == 150 - 62
    starts = R.pick_starts(150, 6, must=[4, 40])
    assert len(starts) == 6 and {4, 40} <= set(starts.tolist())
    assert len(R.pick_starts(150, 0)) == 88  # 0 = every clip, as the reference


def test_ed_es_on_phantom_with_known_mask():
    area = np.array([demo.lv_mask(i).sum() for i in range(demo.N)], float)
    ed, es = P.ed_es_frames(area, demo.FPS)
    assert len(ed) == len(demo.ED_FRAMES) and len(es) == len(demo.ES_FRAMES)
    assert max(abs(a - b) for a, b in zip(ed, demo.ED_FRAMES)) <= 2
    assert max(abs(a - b) for a, b in zip(es, demo.ES_FRAMES)) <= 2
    beats = P.beats_from(ed, es)
    assert len(beats) == len(demo.ED_FRAMES) - 1
    assert all(b["ed"] < b["es"] < b["ed_next"] for b in beats)
    # a flat curve (e.g. random weights) yields no beats rather than invented ones
    assert P.ed_es_frames(np.full(100, 5000.0) + np.random.default_rng(0).normal(0, 3, 100), 50) == ([], [])


def test_mask_roundtrip_to_frame():
    box = P.CropBox(77, 28, 404, 295)
    m = np.zeros((112, 112), bool)
    m[40:70, 50:60] = True
    full = P.mask_to_frame(m, box, (360, 480))
    assert full.shape == (360, 480) and full.any()
    ys, xs = np.nonzero(full)
    x_off, y_off, scale = P.square_geometry(box)
    assert abs(xs.min() - (x_off + 50 * scale)) <= scale + 1
    assert abs(ys.min() - (y_off + 40 * scale)) <= scale + 1


def test_playback_schedule_drops_nothing_at_native_rate():
    r = playback.simulate(50.0, 5.0, paint_ms=3.0, jitter_ms=2.0)
    assert r["dropped"] == 0 and r["shown"] >= r["due"] - 1
    assert playback.due_frame(1.0, 50.0, 1.0, 0, 0, 149) == 50
    assert playback.due_frame(3.5, 50.0, 1.0, 0, 0, 149) == 25  # loops
    assert playback.due_frame(0.5, 50.0, 0.5, 10, 10, 20) == 10 + (12 % 11)


# -- models: official checkpoint format ----------------------------------------------------------
def test_official_checkpoints_load_through_real_path(checkpoints):
    import torch

    from inference.echo import echonet as E

    ck = torch.load(checkpoints["ef"], map_location="cpu", weights_only=True)
    assert "state_dict" in ck and all(k.startswith("module.") for k in ck["state_dict"])
    ef, info = E.load_model("ef", checkpoints["ef"])
    assert info["frames"] == 32 and info["period"] == 2
    assert ef.fc.out_features == 1
    seg, _ = E.load_model("seg", checkpoints["seg"])
    assert seg.classifier[-1].out_channels == 1 and seg.aux_classifier is None
    with torch.inference_mode():
        y = ef(torch.zeros(1, 3, 8, 112, 112))
        z = seg(torch.zeros(1, 3, 112, 112))["out"]
    assert y.shape == (1, 1) and z.shape == (1, 1, 112, 112)
    with pytest.raises(E.CheckpointError, match="does not match"):
        E.load_model("ef", checkpoints["seg"])


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    import torch

    from inference.echo import echonet as E

    p = tmp_path / "evil.pt"  # anything but tensors/containers (here a Path object) is never unpickled
    torch.save({"state_dict": {}, "obj": tmp_path}, p)
    with pytest.raises(E.CheckpointError):
        E.load_model("ef", p)


def test_onnx_export_agrees_with_torch_and_pipeline_uses_it(checkpoints, registry, short_loop, monkeypatch):
    import torch

    from inference.detect import open_study
    from inference.echo import echonet as E
    from inference.pipeline import JobContext
    from inference.echo import pipeline as pipe
    from inference.runtimes import OnnxRuntime

    _install(registry, checkpoints)
    pipe.clear_cache()
    rng = np.random.default_rng(1)
    for mid, kind, shape in (("echonet-ef", "ef", (1, 3, 8, 112, 112)), ("echonet-seg", "seg", (1, 3, 112, 112))):
        out = pipe.export_onnx(registry, mid)
        assert out.exists() and registry.state(mid).sha256[:16] in out.name
        x = rng.standard_normal(shape).astype(np.float32)
        model, _ = E.load_model(kind, registry.path_of(registry.get(mid)))
        net = model if kind == "ef" else E.SegOut(model)
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        got = next(iter(OnnxRuntime(out).run({OnnxRuntime(out).input_names[0]: x}).values()))
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    # the pipeline now runs both models on ONNX Runtime
    monkeypatch.setenv("LIGHTBOX_ECHO_MAX_CLIPS", "1")
    study = open_study(short_loop)
    study.data["view_gate"] = {"decision": "A4C", "by": "test", "at": "2026-01-01T00:00:00"}
    r = pipe.analyse(study, "echonet-ef", registry, JobContext())
    assert r.runtime == "onnxruntime"
    assert r.clinical is False  # non-official weights are never a clinical result
    assert isinstance(r.outputs[pipe.K_EF], float)
    assert r.outputs[pipe.K_CLIPS].startswith("1 of")
    assert r.outputs[pipe.K_GATE]["method"] == "confirmed by user"
    assert r.arrays["masks"].shape == (40, 112, 112)
    assert len(r.outputs[pipe.K_AREA]) == 40
    # segmentation alone: masks, area curve and ED/ES, no EF and no gate needed
    s = pipe.analyse(study, "echonet-seg", registry, JobContext())
    assert pipe.K_EF not in s.outputs and pipe.K_GATE not in s.outputs
    assert s.weights_sha256 == registry.state("echonet-seg").sha256
    np.testing.assert_array_equal(s.arrays["masks"], r.arrays["masks"])
    pipe.clear_cache()


def test_pipeline_torch_gate_and_short_loops(checkpoints, registry, short_loop, monkeypatch):
    from inference.detect import open_study
    from inference.pipeline import JobContext
    from inference.echo import pipeline as pipe
    from inference.registry import WeightsError

    monkeypatch.setenv("LIGHTBOX_ECHO_MAX_CLIPS", "1")
    monkeypatch.delenv("LIGHTBOX_ECHO_VIEW", raising=False)
    study = open_study(short_loop)
    with pytest.raises(WeightsError, match="not installed|Install"):
        pipe.analyse(study, "echonet-ef", registry, JobContext())
    _install(registry, checkpoints, which=("ef",))
    pipe.clear_cache()
    with pytest.raises(pipe.ViewGateRequired, match="apical 4-chamber"):
        pipe.analyse(study, "echonet-ef", registry, JobContext())
    study.data["view_gate"] = {"decision": "not A4C", "by": "t", "at": "x"}
    r = pipe.analyse(study, "echonet-ef", registry, JobContext())
    assert pipe.K_EF not in r.outputs and r.outputs[pipe.K_GATE]["decision"] == "not A4C"
    study.data["view_gate"] = {"decision": "A4C", "by": "t", "at": "x"}
    r = pipe.analyse(study, "echonet-ef", registry, JobContext())
    assert r.runtime == "torch" and 0 < r.outputs[pipe.K_EF] < 200
    assert any("segmentation model not installed" in n for n in r.notes)
    few = open_study(short_loop)
    few.data["frames"] = few.data["frames"][:20]
    few.data["view_gate"] = {"decision": "A4C"}
    r = pipe.analyse(few, "echonet-ef", registry, JobContext())  # padded with blank frames, as the reference
    assert r.outputs[pipe.K_CLIPS] == "1 of 2"  # LIGHTBOX_ECHO_MAX_CLIPS=1 of the padded loop's 2 clips
    assert any("blank frames" in n and "outside what the model was trained on" in n for n in r.notes)
    few.data["frames"] = few.data["frames"][:10]
    few.data.pop("_small", None)
    with pytest.raises(ReadError, match="at least 16"):
        pipe.analyse(few, "echonet-ef", registry, JobContext())
    pipe.clear_cache()


# -- practice data + report --------------------------------------------------------------------------
def _fake_result(ef=42.4):
    from inference.echo import pipeline as pipe
    from inference.results import Result

    area = [float(demo.lv_mask(i)[::3, ::3].sum()) for i in range(demo.N)]
    ed, es = P.ed_es_frames(np.array(area), demo.FPS)
    o = {pipe.K_EF: ef, pipe.K_CAT: P.ef_category(ef), pipe.K_ED: [i + 1 for i in ed],
         pipe.K_ES: [i + 1 for i in es], pipe.K_GATE: {"decision": "A4C", "method": "confirmed by user", "by": "t",
                                                       "at": "now"},
         pipe.K_CROP: [77, 28, 404, 295], pipe.K_AREA: area, pipe.K_AREA_UNIT: "px²", pipe.K_FPS: 50.0,
         pipe.K_BEATS: P.beats_from(ed, es)}
    o[pipe.K_EF_BEATS] = [round(ef - 1, 1), round(ef + 1, 1)][: len(o[pipe.K_BEATS])]
    keys = sorted(set(ed) | set(es))
    truth = np.stack([demo.lv_mask(i) for i in keys]).astype(np.uint8)[..., None].repeat(3, 3) * 255
    grid = P.crop_resize(truth, P.CropBox(77, 28, 404, 295))[..., 0] > 127
    o[pipe.K_MASKS] = {str(i): pipe.pack_mask(g) for i, g in zip(keys, grid)}
    return Result("echonet-ef", "ab" * 32, "torch", "CPU", 1.0, o, clinical=False)


def test_practice_history_exports_and_report(store, demo_file, tmp_path):
    from app.report import build_report
    from app.echo import practice
    from inference.detect import open_study

    study = open_study(demo_file)
    sid = store.add_study(study)
    res = _fake_result()
    store.add_result(sid, res)
    tid = store.trainee("Dr A")
    eid = store.lock_estimate(tid, sid, 50, "normal")
    store.reveal_estimate(eid, res, 42.4)
    practice.set_practice(store, sid, True)
    rows = practice.history(store, tid)
    assert rows[0]["delta"] == pytest.approx(7.6) and rows[0]["category_agrees"] is False
    assert practice.practice_summary(store)[0]["mae_vs_ai"] == pytest.approx(7.6)
    assert "Dr A" in {r["trainee"] for r in practice.practice_table(store)}
    csv = practice.export_csv(rows, tmp_path / "h.csv").read_text()
    assert "42.4" in csv and "ef_estimate" in csv
    assert practice.export_pdf(rows, "Dr A", tmp_path / "h.pdf").stat().st_size > 1000
    pdf = build_report(study, store, sid, tmp_path / "r.pdf",
                       extra={"practice": dict(store.db["estimates"].get(eid), trainee="Dr A")})
    assert (tmp_path / "r.pdf").stat().st_size > 5000 and pdf.endswith("r.pdf")


def test_view_classifier_makes_the_gate_automatic(registry, short_loop, tmp_path, monkeypatch):
    """A (toy) ONNX view classifier installed as `echo-view` decides the gate, with its probability."""
    import torch

    from inference.detect import open_study
    from inference.echo import pipeline as pipe

    class Toy(torch.nn.Module):  # logit = mean intensity: stands in for a site's real classifier
        def forward(self, x):
            return x.mean(dim=(1, 2, 3)).unsqueeze(1) * 0 + 2.0

    p = tmp_path / "echo_view_a4c.onnx"
    torch.onnx.export(Toy(), (torch.zeros(1, 3, 112, 112),), str(p), input_names=["frames"],
                      output_names=["logits"], dynamic_axes={"frames": {0: "n"}, "logits": {0: "n"}},
                      opset_version=17, dynamo=False)
    registry.install(p, "echo-view", unofficial=True)
    study = open_study(short_loop)
    small, _, _ = pipe.prepared(study)
    g = pipe.view_gate(study, registry, small, P.MEAN, P.STD)
    assert g["method"] == "view classifier" and g["decision"] == "A4C"
    assert g["probability"] == pytest.approx(1 / (1 + np.exp(-2.0)), abs=1e-3)
    assert g["clinical"] is False


def test_gif_and_monochrome_dicom_loops(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from PIL import Image

    from inference.echo import reader as R

    frames = demo.frames()[:12:2]
    imgs = [Image.fromarray(f) for f in frames]
    gif = tmp_path / "loop.gif"
    imgs[0].save(gif, save_all=True, append_images=imgs[1:], duration=40, loop=0)
    s = R.read(gif)
    assert s.data["frames"].shape == (6, demo.H, demo.W, 3)
    assert s.metadata["fps"] == pytest.approx(25.0)

    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    grey = frames[..., 0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = R.US_MULTIFRAME
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(tmp_path / "mono.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "US"
    ds.Rows, ds.Columns, ds.NumberOfFrames = demo.H, demo.W, len(grey)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime = "20"
    ds.PixelData = grey.tobytes()
    ds.save_as(str(tmp_path / "mono.dcm"), enforce_file_format=True)
    s = R.read(tmp_path / "mono.dcm")
    assert s.metadata["fps"] == pytest.approx(50.0) and s.metadata["fps_source"].startswith("FrameTime")
    f = s.data["frames"]
    assert f.shape == (6, demo.H, demo.W, 3) and np.array_equal(f[..., 0], grey) and np.array_equal(f[..., 2], grey)
    assert pydicom


def test_whole_video_clips_every_clip_on_gpu_few_on_cpu(monkeypatch):
    from types import SimpleNamespace

    from inference.echo import pipeline as pipe

    monkeypatch.delenv("LIGHTBOX_ECHO_MAX_CLIPS", raising=False)
    assert pipe.default_max_clips(SimpleNamespace(on_gpu=True, device="CUDA: NVIDIA H100")) == 0  # all
    import torch

    from inference.runtimes import TorchRuntime

    cpu = TorchRuntime(torch.nn.Identity(), ["x"], ["y"], device="cpu")
    assert not cpu.on_gpu and pipe.default_max_clips(cpu) == pipe.DEFAULT_MAX_CLIPS  # a real runtime says where
    assert pipe.default_max_clips(SimpleNamespace(on_gpu=False, device="CPU, 2 threads")) == pipe.DEFAULT_MAX_CLIPS
    monkeypatch.setenv("LIGHTBOX_ECHO_MAX_CLIPS", "0")
    assert pipe.default_max_clips(SimpleNamespace(on_gpu=False, device="CPU")) == 0
    monkeypatch.setenv("LIGHTBOX_ECHO_MAX_CLIPS", "12")
    assert pipe.default_max_clips(SimpleNamespace(on_gpu=True, device="CUDA")) == 12

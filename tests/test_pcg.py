"""Heart sounds: reader, segmentation + heart rate, pipeline with the bundled model, tiny training, batch."""
from __future__ import annotations

import csv
from pathlib import Path
import json
import struct

import numpy as np
import pytest

from inference.pcg.synth import heart_sound, write_wav
from inference.study import ReadError
from tests.conftest import ROOT, shared_file


def _wav(tmp_path, name="s.wav", **kw):
    s = heart_sound(**kw)
    p = tmp_path / name
    write_wav(p, s["audio"], s["sr"])
    return p, s


# -- reader ---------------------------------------------------------------------------------------
def test_reader_any_rate_and_channels(tmp_path):
    import soundfile as sf

    from inference.detect import detect_modality, open_study

    s = heart_sound(duration_s=6, bpm=70, sr=44100, seed=3)
    stereo = np.stack([s["audio"], 0.5 * s["audio"]], axis=1)
    for ext, fmt, sub in ((".flac", "FLAC", "PCM_16"), (".ogg", "OGG", "VORBIS"), (".wav", "WAV", "FLOAT"),
                          (".mp3", "MP3", "MPEG_LAYER_III")):
        p = tmp_path / f"st{ext}"
        sf.write(p, stereo, 44100, format=fmt, subtype=sub)
        assert detect_modality(p) == "pcg"
        st = open_study(p)
        assert st.metadata["sample_rate"] == 44100 and st.metadata["channels"] == 2
        assert st.data["audio"].shape[1] == 2  # original channels kept for listening
        assert st.data["mono"].ndim == 1 and abs(st.metadata["duration_s"] - 6) < 0.1  # mp3 pads a frame
        assert any("mixed to mono" in n for n in st.notes)


def test_reader_clear_errors(tmp_path, monkeypatch):
    from inference.detect import open_study
    from inference.pcg import reader

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk" * 10)
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(8000, np.float32), 2000)
    short = tmp_path / "short.wav"
    write_wav(short, 0.1 * np.ones(500, np.float32), 2000)
    notaudio = tmp_path / "notes.mp3"
    notaudio.write_bytes(b"hello, this is not an mp3 file at all" * 20)
    for p, words in ((empty, "empty"), (garbage, "not a readable"), (silent, "silent"), (short, "at least"),
                     (notaudio, "")):
        with pytest.raises(ReadError) as e:
            open_study(p)
        assert words in str(e.value), str(e.value)
        assert "Traceback" not in str(e.value)
    with pytest.raises(ReadError, match="not a readable"):
        reader.read(garbage)
    # the header's claimed length is checked before any sample is read
    long, _ = _wav(tmp_path, "long.wav", duration_s=10)
    monkeypatch.setattr(reader, "MAX_SECONDS", 5)
    with pytest.raises(ReadError, match="claims"):
        reader.read(long)


def test_reader_truncated_wav_is_noted(tmp_path):
    from inference.pcg.reader import read

    p, _ = _wav(tmp_path, duration_s=8)
    b = p.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(b[: len(b) // 2])
    st = read(cut)
    assert any("truncated" in n for n in st.notes)
    assert 3.5 < st.metadata["duration_s"] < 4.5
    # a header that claims an absurd length
    huge = bytearray(b)
    i = huge.index(b"data")
    huge[i + 4:i + 8] = struct.pack("<I", 0x7FFFFFF0)
    (tmp_path / "huge.wav").write_bytes(bytes(huge))
    with pytest.raises(ReadError, match="claims"):
        read(tmp_path / "huge.wav")


# -- segmentation and heart rate -------------------------------------------------------------------
@pytest.mark.parametrize("bpm", [48, 72, 110])
@pytest.mark.parametrize("murmur", [0.0, 0.6])
def test_synthetic_heart_rate_and_s1_s2(bpm, murmur):
    from inference.pcg.segment import segment

    s = heart_sound(duration_s=15, bpm=bpm, sr=4000, murmur=murmur, seed=bpm)
    g = segment(s["audio"], s["sr"])
    assert g.heart_rate_bpm == pytest.approx(bpm, abs=3)
    # every true S1 has a detected S1 within 60 ms, and S2 likewise (labels not swapped)
    for true, found in ((s["s1"], g.s1), (s["s2"], g.s2)):
        err = np.array([np.min(np.abs(found - t)) for t in true[1:-1]])
        assert np.mean(err < 0.06) > 0.9, err
    assert g.systole_s < g.diastole_s


def test_segmentation_of_noise_says_so():
    from inference.pcg.segment import segment

    x = np.random.RandomState(0).randn(20000).astype(np.float32)
    g = segment(x, 2000)
    assert g.notes  # no regular S1/S2 -> an explicit remark, never a confident made-up chain
    assert g.quality < 0.6 or g.heart_rate_bpm is None


# -- pipeline with the bundled model ----------------------------------------------------------------
def test_bundled_model_ready_and_not_clinical(registry):
    from inference.pcg.features import FeatureSpec
    from inference.pcg.train import read_onnx_metadata

    st = registry.require("heart-sound")
    assert st.status == "ready" and st.entry.bundled and not st.clinical
    path = registry.path_of(st.entry)
    assert path.stat().st_size < 2 * 1024 * 1024
    meta = read_onnx_metadata(path)
    assert FeatureSpec.from_dict(meta["preprocessing"]) == FeatureSpec.from_dict(st.entry.inputs["preprocessing"])
    assert meta["classes"] == st.entry.outputs["classes"] == ["normal", "abnormal"]
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["metrics"]["test"]["n"] > 100 and "macc" in card["metrics"]["test"]
    assert (ROOT / "resources/models/heart_sound_cnn.md").exists()


def test_pipeline_on_demo(tmp_path, registry):
    from inference.pcg.demo import make
    from inference.detect import open_study
    from inference.pipeline import JobContext, analyse

    study = open_study(make(tmp_path))
    seen = []
    r = analyse(study, "heart-sound", registry, JobContext(progress=lambda f, t: seen.append(f)))
    o = r.outputs
    assert r.runtime == "onnxruntime" and not r.clinical and r.stamp == "NOT A CLINICAL RESULT"
    assert o["class"] in ("normal", "abnormal")
    assert sum(o["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert len(o["window_probabilities"]) == o["windows"] == len(o["window_starts_s"]) >= 9
    assert np.mean(np.asarray(o["window_probabilities"])[:, 1]) == pytest.approx(o["probabilities"]["abnormal"], abs=1e-3)
    assert o["heart_rate_bpm"] == pytest.approx(72, abs=3)
    assert o["s1_count"] >= 12 and len(o["s1_times_s"]) == o["s1_count"]
    assert any("resampled 4000 Hz -> 2000 Hz" in n for n in r.notes)
    assert seen and seen[-1] == 1.0
    json.dumps(o)


def test_pipeline_cancel(tmp_path, registry):
    from inference.pcg.demo import make
    from inference.detect import open_study
    from inference.pipeline import Cancelled, JobContext, analyse

    ctx = JobContext()
    ctx.cancel()
    with pytest.raises(Cancelled):
        analyse(open_study(make(tmp_path)), "heart-sound", registry, ctx)


def test_local_model_not_installed_says_how(registry):
    from inference.registry import WeightsError

    st = registry.state("heart-sound-local")
    assert st.status == "not installed" and "pcg-train" in st.message
    with pytest.raises(WeightsError):
        registry.require("heart-sound-local")


# -- training on generated data ---------------------------------------------------------------------
def _make_classes(root, n=14, dur=5.0):
    for cls, murmur in (("normal", 0.0), ("murmur", 0.8)):
        d = root / cls
        d.mkdir(parents=True)
        for i in range(n):
            s = heart_sound(duration_s=dur, bpm=55 + 4 * i, sr=2000, murmur=murmur, noise=0.02, seed=i + (100 if murmur else 0))
            write_wav(d / f"{cls}_{i:02d}.wav", s["audio"], s["sr"])
    return root


def test_tiny_training_separates_generated_classes(tmp_path):
    from inference.pcg.dataset import scan, split
    from inference.pcg.train import read_onnx_metadata, train

    data = _make_classes(tmp_path / "data")
    (data / "normal" / "zz_broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEbroken")
    items = scan(data)
    parts = split(items, seed=1, val=0.25, test=0.25)
    assert not ({i.record for i in parts["test"]} & {i.record for i in parts["train"] + parts["val"]})
    events = []
    meta = train(items, tmp_path / "out", "tiny", seed=1, epochs=6, patience=6, windows_per_record=8, width=4, batch=8,
                 val_frac=0.25, test_frac=0.25, emit=events.append, cache=False)
    test = meta["metrics"]["test"]
    assert test["n"] >= 6 and test["accuracy"] > 0.75, test  # chance is 0.5
    assert meta["classes"] == ["normal", "murmur"]
    assert [e["event"] for e in events][-1] == "done"
    assert any(e["event"] == "epoch" for e in events)
    assert [e["file"].endswith("zz_broken.wav") for e in events if e["event"] == "skipped"] == [True]
    assert read_onnx_metadata(tmp_path / "out" / "tiny.onnx")["classes"] == ["normal", "murmur"]
    assert "NOT A CLINICAL RESULT" in (tmp_path / "out" / "tiny.md").read_text()
    # the card's AUROC comes from the same code as a local validation (inference.evaluate)
    b = test["binary"]
    assert b["positive"] == "murmur" and b["auroc"] > 0.75 and b["auroc_ci"][0] <= b["auroc"] <= b["auroc_ci"][1]
    assert "AUROC (95 % stratified bootstrap CI)" in (tmp_path / "out" / "tiny.md").read_text()


def test_dataset_errors(tmp_path):
    from inference.pcg.dataset import DatasetError, scan

    (tmp_path / "only").mkdir()
    write_wav(tmp_path / "only" / "a.wav", heart_sound(duration_s=2)["audio"], 4000)
    with pytest.raises(DatasetError, match="two"):
        scan(tmp_path)
    with pytest.raises(DatasetError, match="no labelled audio"):
        scan(tmp_path / "only")


# -- batch -------------------------------------------------------------------------------------------
def test_batch_csv(tmp_path, registry):
    from inference.pcg.batch import run_batch
    from inference.pipeline import JobContext

    d = tmp_path / "in"
    for i, bpm in enumerate((60, 90)):
        _wav(d, f"rec{i}.wav", duration_s=8, bpm=bpm, seed=i)
    (d / "broken.wav").write_bytes(b"RIFF1234WAVEnothing")
    out = tmp_path / "out.csv"
    keep: list = []
    r = run_batch(d, "heart-sound", registry, JobContext(), out, keep=keep)
    rows = list(csv.DictReader(open(out)))
    # what the dialog stores: the two readable files, keyed by their own sha256, with the model's provenance
    from inference.study import sha256_file

    assert sorted(Path(st.source).name for st, _ in keep) == ["rec0.wav", "rec1.wav"]
    for st, res in keep:
        assert st.sha256 == sha256_file(Path(st.source)) and st.modality == "pcg"
        assert res.model_id == "heart-sound" and res.weights_sha256 and res.outputs["class"]
    assert [row["file"] for row in rows] == ["broken.wav", "rec0.wav", "rec1.wav"]
    assert rows[0]["error"] and not rows[0]["class"]
    assert float(rows[1]["heart_rate_bpm"]) == pytest.approx(60, abs=3)
    assert float(rows[2]["heart_rate_bpm"]) == pytest.approx(90, abs=3)
    assert abs(float(rows[1]["p_normal"]) + float(rows[1]["p_abnormal"]) - 1) < 1e-3
    assert set(r["columns"]) >= {"file", "duration_s", "class", "heart_rate_bpm"}


# -- real recordings (skipped without ../shared) ------------------------------------------------------
@pytest.mark.shared
def test_real_recordings_heart_rate_plausible():
    from inference.pcg.segment import segment
    from inference.pcg.reader import read

    rec = shared_file("reference", "pcg", "recordings")
    rows = list(csv.DictReader(open(rec.parent / "labels.csv")))[::60]
    hrs = []
    for row in rows:
        st = read(rec / f"{row['record']}.wav")
        assert st.metadata["sample_rate"] == 2000
        g = segment(st.data["mono"], 2000)
        hrs.append(g.heart_rate_bpm or 0)
    hrs = np.array(hrs)
    assert np.mean((hrs > 40) & (hrs < 160)) >= 0.8, hrs


@pytest.mark.shared
def test_shipped_model_on_real_test_records(registry):
    """A sample of the model's own held-out test records (never used in training or early stopping)."""
    from inference.pipeline import JobContext, analyse
    from inference.pcg.reader import read

    rec = shared_file("reference", "pcg", "recordings")
    labels = {r["record"]: r["label"] for r in csv.DictReader(open(rec.parent / "labels.csv"))}
    card = json.loads((ROOT / "resources/models/heart_sound_cnn.json").read_text())
    test_ids = card["test_records"][::7]
    correct = 0
    for rid in test_ids:
        r = analyse(read(rec / f"{rid}.wav"), "heart-sound", registry, JobContext())
        correct += r.outputs["class"] == labels[rid]
    assert correct / len(test_ids) >= 0.6, (correct, len(test_ids))

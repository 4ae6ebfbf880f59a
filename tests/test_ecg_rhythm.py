"""Lightbox's rhythm classifier: preprocessing, windows (own-length for a variable-length network, padded for
v1), several leads and their mean, the AF threshold, a tiny training run on generated rhythms (regular vs
irregular RR) through inference.training.fit, ONNX export/agreement, and the shipped model on real data when
present."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.ecg import rhythm as R
from inference.ecg.rhythm_synth import synth_episode, synth_lead

DATA = next((p for p in (Path("/work/data/cinc2017/training2017"), Path("/work/data/ecg/training2017"))
             if (p / "REFERENCE.csv").exists()), Path("/work/data/cinc2017/training2017"))
SHIPPED = Path(__file__).resolve().parents[1] / "resources" / "models" / f"{R.MODEL_NAME}.onnx"
TINY = R.RhythmSpec(fs=50.0, band_low_hz=0.5, band_high_hz=20.0, window_s=10.0, hop_s=5.0, variable_length=True)


def test_windows_cover_the_recording_and_pad_short_ones():
    spec = R.RhythmSpec()
    assert R.window_starts(100, spec) == [0]
    n = int(95 * spec.fs)
    st = R.window_starts(n, spec)
    assert st[0] == 0 and st[-1] + spec.window == n and all(b - a <= spec.hop for a, b in zip(st, st[1:]))
    x = R.preprocess(synth_lead(12, 300.0, seed=1), 300.0, spec)
    assert len(x) == 12 * 150
    w, s = R.make_windows(x, spec)
    assert w.shape == (1, 1, spec.window) and w.dtype == np.float32
    assert np.all(w[0, 0, len(x):] == 0) and np.abs(w).max() <= spec.clip
    assert np.percentile(np.abs(w[0, 0, :len(x)]), 99) == pytest.approx(1.0, abs=0.05)


def test_variable_length_windows_are_the_recording_not_padding():
    spec = R.RhythmSpec(variable_length=True)
    x = R.preprocess(synth_lead(10, 500.0, seed=1), 500.0, spec)
    w, s = R.make_windows(x, spec)
    assert w.shape == (1, 1, 10 * 150) and np.abs(w[0, 0, -150:]).max() > 0  # the last second is signal
    assert np.percentile(np.abs(w[0, 0]), 99) == pytest.approx(1.0, abs=0.05)
    long = R.preprocess(synth_lead(95, 360.0, seed=2), 360.0, spec)
    w, s = R.make_windows(long, spec)
    assert w.shape[1:] == (1, spec.window) and len(s) == len(R.window_starts(len(long), spec))


def test_several_leads_make_lead_major_windows_like_one_lead_at_a_time():
    spec = R.RhythmSpec(variable_length=True)
    leads = np.stack([synth_lead(40, 500.0, seed=k) * (1 - 2 * (k % 2)) for k in range(3)])
    pre = R.preprocess(leads, 500.0, spec)
    w, s = R.make_windows(pre, spec)
    k = len(s)
    assert w.shape == (3 * k, 1, spec.window)
    for j in range(3):
        one, _ = R.make_windows(R.preprocess(leads[j], 500.0, spec), spec)
        np.testing.assert_allclose(w[j * k:(j + 1) * k], one, atol=1e-5)


def test_decision_threshold_calls_af_and_otherwise_the_best_other_class():
    p = np.array([[0.5, 0.3, 0.15, 0.05], [0.2, 0.1, 0.6, 0.1], [0.1, 0.5, 0.3, 0.1]])
    assert R.decide(p).tolist() == [0, 2, 1]
    assert R.decide(p, R.CLASSES, 0.25).tolist() == [1, 2, 1]  # p(AF) 0.3 >= 0.25: AF
    assert R.decide(p, R.CLASSES, 0.6).tolist() == [0, 2, 2]  # below 0.6 the best of the others
    assert R.leads_display(list(R.INDEPENDENT_LEADS)) == "I, II, V1–V6"
    assert R.leads_display(["II", "V5"]) == "II, V5"


def test_preprocess_any_rate_and_refuses_nan():
    for fs in (250.0, 360.0, 500.0, 1000.0):
        x = R.preprocess(synth_lead(20, fs, seed=2), fs)
        assert abs(len(x) - 20 * 150) <= 1
    with pytest.raises(R.RhythmError):
        R.preprocess(np.full(3000, np.nan), 300.0)


def test_aggregate_band_segments_tile_the_recording():
    spec = R.RhythmSpec()
    n = int(100 * spec.fs)
    starts = np.asarray(R.window_starts(n, spec))
    p = np.tile([0.9, 0.05, 0.03, 0.02], (len(starts), 1))
    p[2] = [0.1, 0.8, 0.05, 0.05]
    rec, wins, burden = R.aggregate(p, starts, n, spec)
    assert wins[0]["start_s"] == 0 and wins[-1]["end_s"] == pytest.approx(100.0)
    assert all(a["end_s"] == b["start_s"] for a, b in zip(wins, wins[1:]))
    assert wins[2]["label"] == "af" and 0 < burden < 0.5
    assert rec.argmax() == 0


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from inference.ecg.rhythm_train import train_arrays

    sigs, labs = [], []
    for i in range(64):
        irr = i % 2 == 1
        sigs.append(synth_lead(12, 100.0, irregular=irr, seed=100 + i))
        labs.append("af" if irr else "normal")
    out = tmp_path_factory.mktemp("rhythm")
    meta = train_arrays(sigs, 100.0, labs, out, "tiny", spec=TINY, epochs=20, patience=20, batch=8, width=6,
                        lr=5e-3, seed=3, write_card=True, af_min_specificity=0.8)
    return out / "tiny.onnx", meta


def test_tiny_training_learns_regular_vs_irregular(tiny_model):
    path, meta = tiny_model
    assert path.exists() and (path.parent / "tiny.md").exists()
    card = json.loads((path.parent / "tiny.json").read_text())
    assert card["split"]["test"]["records"] > 0 and card["training"]["torch_onnx_max_abs_diff"] < 1e-4
    assert card["training"]["loop"].startswith("inference.training.fit") and card["history"]
    m = R.RhythmModel(path)
    assert m.spec == TINY and m.classes == R.CLASSES
    assert m.decision.af_threshold == card["decision"]["af_threshold"] and m.decision.leads == R.INDEPENDENT_LEADS
    fresh = [(synth_lead(15, 360.0, irregular=bool(i % 2), seed=900 + i), 360.0) for i in range(20)]
    res = m.classify_many(fresh)
    pred = [r.label for r in res]
    truth = ["af" if i % 2 else "normal" for i in range(20)]
    acc = np.mean([p == t for p, t in zip(pred, truth)])
    assert acc >= 0.8, (pred, truth)
    # the same rhythm on three leads of either polarity: one result, the leads named, each lead kept
    x = np.stack([synth_lead(10, 500.0, irregular=True, seed=77) * g for g in (1.0, -0.6, 0.4)])
    r = m.classify(x, 500.0, ["I", "II", "V1"])
    assert r.leads == ["I", "II", "V1"] and r.lead == "I, II, V1" and set(r.per_lead) == {"I", "II", "V1"}
    assert len(r.windows) == 1 and r.windows[0]["window_end_s"] == pytest.approx(10.0)
    mean = np.mean([[r.per_lead[ld]["probabilities"][c] for c in R.CLASSES] for ld in r.leads], axis=0)
    np.testing.assert_allclose([r.probabilities[c] for c in R.CLASSES], mean, atol=1e-3)


def test_long_recording_gets_a_band_with_the_episode(tiny_model):
    path, _ = tiny_model
    m = R.RhythmModel(path)
    x = synth_episode(120, 360.0, 40, 80, seed=5, leads=1)[0]
    r = m.classify(x, 360.0)
    assert len(r.windows) > 10 and r.windows[-1]["end_s"] == pytest.approx(120, abs=0.1)
    mid = [w["label"] for w in r.windows if 45 <= (w["start_s"] + w["end_s"]) / 2 <= 75]
    edge = [w["label"] for w in r.windows if (w["start_s"] + w["end_s"]) / 2 < 30 or (w["start_s"] + w["end_s"]) / 2 > 90]
    assert mid.count("af") >= len(mid) * 0.6 and edge.count("normal") >= len(edge) * 0.6
    assert 0.15 < r.af_burden < 0.6


def test_too_short_is_refused(tiny_model):
    m = R.RhythmModel(tiny_model[0])
    with pytest.raises(R.RhythmError, match="at least"):
        m.classify(synth_lead(3, 300.0), 300.0)
    assert isinstance(m.classify_many([(synth_lead(3, 300.0), 300.0)])[0], R.RhythmError)


@pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped rhythm model")
def test_shipped_model_matches_its_card():
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    import hashlib

    assert hashlib.sha256(SHIPPED.read_bytes()).hexdigest() == card["onnx_sha256"]
    m = R.RhythmModel(SHIPPED)
    assert m.spec == R.RhythmSpec.from_dict(card["preprocessing"]) and list(m.classes) == card["classes"]
    assert card["metrics"]["test"]["challenge_score"] > 0.7


@pytest.mark.skipif(not (DATA / "REFERENCE.csv").exists() or not SHIPPED.exists(),
                    reason="CinC 2017 data or shipped model absent")
def test_shipped_model_on_real_test_records():
    from scipy.io import loadmat

    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    ref = dict(line.strip().split(",")[:2] for line in (DATA / "REFERENCE.csv").read_text().splitlines() if "," in line)
    recs = [r for r in card["test_records"] if ref.get(r) in ("N", "A")][:40]
    m = R.RhythmModel(SHIPPED)
    leads = [(loadmat(str(DATA / f"{r}.mat"))["val"].ravel() / 1000.0, 300.0) for r in recs]
    res = m.classify_many(leads)
    code = {"normal": "N", "af": "A", "other": "O", "noisy": "~"}
    acc = np.mean([code[x.label] == ref[r] for x, r in zip(res, recs)])
    assert acc > 0.75


def test_batched_equals_one_by_one(tiny_model):
    m = R.RhythmModel(tiny_model[0])
    recs = [(synth_lead(s, fs, irregular=bool(i % 2), seed=i), fs)
            for i, (s, fs) in enumerate([(12, 300.0), (95, 360.0), (3, 300.0), (30, 500.0), (200, 250.0)])]
    many = m.classify_many(recs, batch=4)
    for (x, fs), b in zip(recs, many):
        if isinstance(b, R.RhythmError):
            assert len(x) / fs < R.MIN_SECONDS
            continue
        a = m.classify(x, fs)
        assert a.label == b.label and len(a.windows) == len(b.windows)
        assert max(abs(a.probabilities[c] - b.probabilities[c]) for c in R.CLASSES) < 1e-4

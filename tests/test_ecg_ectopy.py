"""Isolated premature beats in otherwise regular rhythm (inference/ecg/ectopy.py) and what the rhythm band of a
long recording does with them: generated beat trains and recordings with a known answer."""
from __future__ import annotations

import numpy as np
import pytest

from inference.ecg import ectopy as X
from inference.ecg import rhythm as R
from inference.ecg.rhythm_eval import sinus_with_ectopy
from inference.ecg.rhythm_synth import synth_lead

FS = 150.0


def _peaks(rr: list[float]) -> np.ndarray:
    return np.round(np.cumsum([0.5] + rr) * FS).astype(int)


def test_isolated_premature_beats_are_counted_and_everything_else_is_not():
    base = [0.8] * 36
    one = base[:10] + [0.52, 1.08] + base[12:]
    two = base[:8] + [0.52, 1.08] + base[10:20] + [0.55, 1.0] + base[22:]
    assert X.isolated_ectopy(_peaks(base), FS) == 0  # regular: nothing to count
    assert X.isolated_ectopy(_peaks(one), FS) == 1
    assert X.isolated_ectopy(_peaks(two), FS) == 2
    bigeminy = [0.5, 1.1] * 18
    assert X.isolated_ectopy(_peaks(bigeminy), FS) == 0
    couplet = base[:10] + [0.5, 0.5, 1.2] + base[13:]
    assert X.isolated_ectopy(_peaks(couplet), FS) == 0
    many = sum(([0.8] * 5 + [0.5, 1.1] for _ in range(5)), [])
    assert X.isolated_ectopy(_peaks(many), FS) == 0  # more than three: not 'occasional'
    af = list(np.random.default_rng(0).gamma(4.0, 0.2, 36))
    assert X.isolated_ectopy(_peaks(af), FS) == 0
    assert X.isolated_ectopy(_peaks([0.8, 0.5, 1.1]), FS) == 0  # too few beats to judge


def test_beats_are_found_on_the_model_input():
    times = sinus_with_ectopy(30, seed=4, every=12)
    x = synth_lead(30, 360.0, seed=4, times=times)
    pre = R.preprocess(x, 360.0, R.RhythmSpec(variable_length=True))
    got = X.beats(pre, FS) / FS
    assert abs(len(got) - len(times)) <= 1
    assert np.median([np.min(np.abs(got - t)) for t in times]) < 0.05
    assert X.isolated_ectopy(X.beats(pre, FS), FS) == 2  # 30 s at 72 bpm, every 12th beat premature


@pytest.mark.skipif(not R.default_model_path().exists(), reason="no shipped rhythm model")
def test_long_sinus_recording_with_isolated_ectopy_stays_normal_and_af_stays_af():
    m = R.RhythmModel()
    fs = 360.0
    times = sinus_with_ectopy(600, seed=5, every=40)
    x = np.stack([synth_lead(600, fs, seed=5 + j, times=times) * g for j, g in enumerate((1.0, 0.6))])
    r = m.classify(x, fs, ["II", "V5"])
    labels = [w["label"] for w in r.windows]
    assert labels.count("normal") >= 0.9 * len(labels) and r.ectopic_windows > 0
    assert any("isolated premature beats" in n for n in r.notes)
    assert all(w.get("model_label") == "other" for w in r.windows if w.get("ectopic_beats"))
    af = np.stack([synth_lead(600, fs, irregular=True, seed=9 + j) * g for j, g in enumerate((1.0, 0.6))])
    ra = m.classify(af, fs, ["II", "V5"])
    assert ra.ectopic_windows == 0 and [w["label"] for w in ra.windows].count("af") >= 0.9 * len(ra.windows)
    # a short recording (a 30-s strip) keeps the model's own label: the rule is for long recordings
    short = m.classify(x[:, :int(30 * fs)], fs, ["II", "V5"])
    assert short.ectopic_windows == 0 and not any(w.get("model_label") for w in short.windows)

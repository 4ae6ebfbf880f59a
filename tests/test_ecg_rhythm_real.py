"""The shipped rhythm model on real ECGs with a known rhythm and on generated ones with a known answer: a model
whose classes were swapped, or that answered at random or always the same, fails here.

Real: two unmodified PTB-XL 12-lead ECGs (tests/fixtures/ecg_rhythm/README.md; CC BY 4.0): ecg_id 330 (atrial
fibrillation, otherwise no pathology) and ecg_id 3 (normal ECG, sinus rhythm), read by the app's own reader and
run through the pipeline on the leads it uses (I, II, V1-V6) and on lead I alone (the single-lead path).
Generated: regular rhythm with P waves against irregularly irregular RR with fibrillatory waves.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.ecg import pipeline as P
from inference.ecg import rhythm as R
from inference.ecg.reader import LEADS, read
from inference.ecg.rhythm_synth import synth_lead
from inference.pipeline import JobContext

FIX = Path(__file__).resolve().parent / "fixtures" / "ecg_rhythm"
SHIPPED = R.default_model_path()
pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason="no shipped rhythm model")
AF, SINUS = FIX / "00330_hr.hea", FIX / "00003_hr.hea"


class Swapped:
    """An ONNX session whose output columns are permuted (e.g. AF and normal swapped)."""

    def __init__(self, sess, perm):
        self.sess, self.perm = sess, list(perm)

    def get_inputs(self):
        return self.sess.get_inputs()

    def run(self, names, feed):
        return [self.sess.run(names, feed)[0][:, self.perm]]


def _labels(model) -> dict[str, str]:
    out = {}
    for name, path in (("af", AF), ("sinus", SINUS)):
        st = read(path)
        sig = st.data["signal_mv"]
        leads = model.leads_to_use([ld for ld in P.RHYTHM_MODEL_LEADS if ld in P.usable_leads(st)])
        out[name] = model.classify(np.stack([sig[LEADS.index(ld)] for ld in leads]), st.data["fs"], leads).label
    return out


def test_real_af_ecg_is_af_and_real_sinus_ecg_is_normal_through_the_pipeline(registry):
    res = {}
    for name, path in (("af", AF), ("sinus", SINUS)):
        r = P.analyse(read(path), "ecg-rhythm", registry, JobContext())
        res[name] = r
        assert r.outputs["_leads"] == ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
        assert r.outputs["lead"] == "I, II, V1–V6" and r.outputs["windows"] == 1
        assert any("Leads used: I, II, V1–V6" in n for n in r.notes)
    assert res["af"].outputs["rhythm"] == "af", res["af"].outputs["probabilities"]
    assert res["sinus"].outputs["rhythm"] == "normal", res["sinus"].outputs["probabilities"]
    assert res["af"].outputs["p_af"] > 0.5 > res["sinus"].outputs["p_af"]


def test_real_ecgs_on_lead_i_alone():
    m = R.RhythmModel(SHIPPED)
    p = {}
    for name, path in (("af", AF), ("sinus", SINUS)):
        st = read(path)
        r = m.classify(st.data["signal_mv"][0], st.data["fs"], "I")
        assert r.leads == ["I"]
        p[name] = r
    assert p["af"].label == "af" and p["sinus"].label == "normal"
    assert p["af"].probabilities["af"] > p["sinus"].probabilities["af"] + 0.4


def test_generated_rhythms_with_known_answers():
    """10-s 'ECGs' of three leads (gains 1, -0.5, 0.7) at 500 Hz: regular with P waves -> normal, irregularly
    irregular without P waves and with f waves -> AF, for most seeds and clearly apart on average."""
    m = R.RhythmModel(SHIPPED)
    items = []
    for seed in range(12):
        for irr in (False, True):
            x = np.stack([synth_lead(10, 500.0, irregular=irr, seed=1000 + 10 * seed + k) * g
                          for k, g in enumerate((1.0, -0.5, 0.7))])
            items.append((x, 500.0, ["I", "II", "V5"]))
    res = m.classify_many(items)
    reg = [r for i, r in enumerate(res) if i % 2 == 0]
    irr = [r for i, r in enumerate(res) if i % 2 == 1]
    assert sum(r.label == "normal" for r in reg) >= 10, [r.label for r in reg]
    assert sum(r.label == "af" for r in irr) >= 10, [r.label for r in irr]
    assert np.mean([r.probabilities["af"] for r in irr]) > np.mean([r.probabilities["af"] for r in reg]) + 0.5


@pytest.mark.parametrize("perm", [(1, 0, 2, 3), (2, 1, 0, 3), (3, 2, 1, 0)])
def test_a_model_with_swapped_classes_fails_these_checks(perm):
    """The checks above have teeth: the shipped network with two of its classes swapped gets the real pair
    wrong (what a broken export or a wrong class order in the metadata would do)."""
    m = R.RhythmModel(SHIPPED)
    ok = _labels(m)
    assert ok == {"af": "af", "sinus": "normal"}
    m.session = Swapped(m.session, perm)
    assert _labels(m) != ok


def test_constant_and_random_models_fail_these_checks():
    m = R.RhythmModel(SHIPPED)

    class Constant:
        def __init__(self, sess, p):
            self.sess, self.p = sess, np.asarray(p, np.float32)

        def get_inputs(self):
            return self.sess.get_inputs()

        def run(self, names, feed):
            n = next(iter(feed.values())).shape[0]
            return [np.tile(self.p, (n, 1))]

    for p in ([1, 0, 0, 0], [0, 1, 0, 0], [0.25, 0.25, 0.25, 0.25]):
        m.session = Constant(m.session if not isinstance(m.session, Constant) else m.session.sess, p)
        assert _labels(m) != {"af": "af", "sinus": "normal"}

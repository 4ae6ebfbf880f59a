"""ECG2AF through the real loading path (official .h5 format, seeded random weights), ONNX twin, decoding,
and the model-free measurements."""
from __future__ import annotations

import numpy as np
import pytest

from inference.ecg import demo
from inference.ecg import ecg2af as E
from inference.pipeline import JobContext
from inference.ecg import pipeline as P
from inference.ecg import reader as R
from inference.registry import DEMO, NOT_INSTALLED, WeightsError
from inference.results import NOT_CLINICAL
from inference.study import ReadError
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return E.make_test_checkpoint(tmp_path_factory.mktemp("ckpt") / E.OFFICIAL_FILE, seed=1)


@pytest.fixture(scope="module")
def demo_study(tmp_path_factory):
    return R.read(demo.make(tmp_path_factory.mktemp("demo")))


@pytest.fixture
def installed(registry, checkpoint):
    st = registry.install(checkpoint, "ecg2af", unofficial=True)
    assert st.status == DEMO and not st.clinical
    return registry


def test_manifest_entry_matches_published_facts(registry):
    e = registry.get("ecg2af")
    assert e.file == E.OFFICIAL_FILE and e.framework == "keras"
    assert e.sha256 == "ece878a5ed4f1523735a35648a8fa2a3086261d2bf38a5db16c8f3d0fc34c667"
    assert set(e.outputs) == set(E.OUTPUT_NAMES) and E.INPUT_NAME in e.inputs
    st = registry.state("ecg2af")
    assert st.status == NOT_INSTALLED and "lightbox weights install" in st.message
    assert registry.state("ecg-measure").usable
    with pytest.raises(WeightsError, match="needs no weights"):
        registry.install(__file__, "ecg-measure", unofficial=True)


def test_checkpoint_is_official_keras_h5_format(checkpoint):
    import h5py

    with h5py.File(checkpoint, "r") as f:
        assert "model_config" in f.attrs and "model_weights" in f and "keras_version" in f.attrs
    info = E.inspect_h5(checkpoint)
    assert info["layers"] > 10


def test_lambda_layer_files_are_refused(tmp_path):
    import tf_keras as keras

    inp = keras.Input((E.N_SAMPLES, 12), name=E.INPUT_NAME)
    x = keras.layers.Lambda(lambda t: t * 2)(inp)
    x = keras.layers.Flatten()(x)
    outs = [keras.layers.Dense(E.OUTPUT_UNITS[n][0], name=n)(x) for n in E.OUTPUT_NAMES]
    p = tmp_path / "evil.h5"
    keras.Model(inp, outs).save(p, save_format="h5")
    with pytest.raises(E.ModelFileError, match="Lambda"):
        E.load_keras(p)
    # the published file is trusted by its sha256 alone (only a hash-verified install passes trusted=True)
    assert E.inspect_h5(p, trusted=True)["layers"] > 0


def test_decoding_follows_the_authors():
    surv = np.full((1, 50), 0.99, dtype=np.float32)
    surv[0, 25:] = 0.0  # the second half (event bins) is not part of the survival product
    outs = {E.OUT_SURVIVAL: surv, E.OUT_AGE: np.array([[1.0]]), E.OUT_SEX: np.array([[0.3, 0.7]]),
            E.OUT_AF: np.array([[0.8, 0.2]])}
    d = E.decode(outs)
    assert d["af_risk_5y"] == pytest.approx(1 - 0.99 ** 25, rel=1e-5)
    assert d["age_years"] == pytest.approx(63.35798891483556 + 7.554638350423902)
    assert d["sex_male_probability"] == pytest.approx(0.7) and d["sex_female_probability"] == pytest.approx(0.3)
    assert d["af_in_read_probability"] == pytest.approx(0.2)
    assert len(d["af_free_survival"]) == 25 and d["survival_days"][-1] == pytest.approx(1825)


def test_normalisation_is_zero_mean_std1_per_ecg():
    x = np.random.default_rng(0).normal(3, 5, size=(2, 5000, 12)).astype(np.float32)
    x[1] *= 10
    y = E.normalise(x)
    for k in range(2):
        assert abs(y[k].mean()) < 1e-5 and abs(y[k].std() - 1) < 1e-4


def test_ecg2af_keras_real_loader_end_to_end(installed, demo_study):
    P.clear_cache()
    r = P.analyse(demo_study, "ecg2af", installed, JobContext())
    assert r.runtime == "keras" and r.clinical is False and r.stamp == NOT_CLINICAL
    assert r.weights_sha256 == installed.state("ecg2af").sha256
    o = r.outputs
    for k in ("af_risk_5y", "sex_male_probability", "age_years", "af_in_read_probability"):
        assert isinstance(o[k], float)
    assert 0 <= o["af_risk_5y"] <= 1 and o["sex_male_probability"] + o["sex_female_probability"] == pytest.approx(1)
    # decoded exactly from the raw heads of the loaded model
    raw = r.arrays
    assert o["af_risk_5y"] == pytest.approx(1 - np.cumprod(raw[E.OUT_SURVIVAL][:, :25], axis=1)[0, -1], rel=1e-6)
    assert o["age_years"] == pytest.approx(float(raw[E.OUT_AGE][0, 0]) * E.AGE_STD + E.AGE_MEAN)
    # the loaded model is the checkpoint: same numbers as building it again from its weights
    model = E.load_keras(installed.path_of(installed.get("ecg2af")))
    ref = model(P.model_batch([demo_study]), training=False)
    np.testing.assert_allclose(np.asarray(ref[0]), raw[E.OUT_SURVIVAL], atol=1e-6)


def test_onnx_export_agrees_with_keras(installed, demo_study):
    P.clear_cache()
    out = P.export_onnx(installed, "ecg2af")
    assert out == installed.derived_path("ecg2af", ".onnx") and out.exists()
    rng = np.random.default_rng(3)
    raw = [demo_study.data["model_input"], demo.synth_ecg(hr=95, seed=2).T, rng.normal(size=(5000, 12))]
    x = P.model_batch(raw)
    k, _ = P.runtime_for(installed, prefer="keras")
    o, _ = P.runtime_for(installed, prefer="onnx")
    ko, oo = P.run_batch(k, x), P.run_batch(o, x)
    for name in E.OUTPUT_NAMES:
        np.testing.assert_allclose(oo[name], ko[name], atol=1e-4, rtol=0)
    # the pipeline now prefers the ONNX twin
    r = P.analyse(demo_study, "ecg2af", installed, JobContext())
    assert r.runtime == "onnxruntime" and r.clinical is False


def test_ecg2af_refuses_incomplete_ecg(installed, demo_study):
    import copy

    s = copy.deepcopy(demo_study)
    s.metadata["missing_leads"] = ["V3"]
    s.data["model_input"][:, 8] = np.nan
    with pytest.raises(ReadError, match="needs all 12 leads; missing: V3"):
        P.analyse(s, "ecg2af", installed, JobContext())


def test_measurements_on_synthetic_ecg(registry, demo_study):
    r = P.analyse(demo_study, "ecg-measure", registry, JobContext())
    beats = demo._beat_times(10.0, demo.HR_BPM)
    true_hr = 60.0 / np.diff(beats).mean()
    assert r.outputs["heart_rate_bpm"] == pytest.approx(true_hr, abs=1.0)
    assert r.outputs["beats"] == len(beats) and r.outputs["lead"] == "II"
    # every R peak within 10 ms of the generated beat
    got = np.array(r.outputs["r_peak_times_s"])
    assert np.abs(got - beats).max() < 0.010
    assert r.model_id == "ecg-measure" and r.runtime == "numpy" and r.weights_sha256 == ""


def test_measurements_on_real_record_agree_with_independent_detector(registry):
    import wfdb
    from wfdb import processing

    s = R.read(shared_file("reference", "ecg", "s0010_re.hea"))
    r = P.analyse(s, "ecg-measure", registry, JobContext())
    # wfdb's GQRS detector on lead I (an independent algorithm, a different lead)
    lead_i = s.data["signal_mv"][R.LEADS.index("I")]
    ref = processing.gqrs_detect(lead_i.astype(float), fs=1000)
    ref_hr = 60000.0 / np.diff(ref).mean()
    assert r.outputs["heart_rate_bpm"] == pytest.approx(ref_hr, rel=0.03)
    assert 70 < r.outputs["heart_rate_bpm"] < 95  # sinus rhythm around 82 bpm in this PTB record
    assert abs(r.outputs["beats"] - len(ref)) <= 2
    assert wfdb is not None


def test_results_round_trip_through_store(store, installed, demo_study):
    sid = store.add_study(demo_study)
    r = P.analyse(demo_study, "ecg-measure", installed, JobContext())
    store.add_result(sid, r)
    back = store.latest_result(sid, "ecg-measure")
    assert back.outputs["heart_rate_bpm"] == r.outputs["heart_rate_bpm"]
    assert back.outputs["r_peak_times_s"] == r.outputs["r_peak_times_s"]


def test_weights_only_h5_is_refused(tmp_path, checkpoint):
    import tf_keras as keras

    m = E.load_keras(checkpoint)
    p = tmp_path / "weights_only.h5"
    m.save_weights(p)
    with pytest.raises(E.ModelFileError, match="weights only"):
        E.load_keras(p)
    with pytest.raises(E.ModelFileError, match="not a Keras HDF5"):
        (tmp_path / "x.h5").write_bytes(b"garbage")
        E.load_keras(tmp_path / "x.h5")
    assert keras is not None

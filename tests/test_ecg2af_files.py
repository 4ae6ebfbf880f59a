"""The four published ECG2AF files: manifest facts, each file's own input leads and normalisation (as
established from ml4h's history, inference/ecg/ecg2af_files.py), the strip models on 1-2-lead recordings, and
the 2024 main model as a Keras-3 .keras archive. Every model file is built by the test in the official format
(seeded random weights); the expected numbers come from calling the loaded model on an input normalised here
independently."""
from __future__ import annotations

import numpy as np
import pytest

from inference.ecg import ecg2af as E
from inference.ecg import ecg2af_files as F
from inference.ecg import pipeline as P
from inference.ecg import reader as R
from inference.ecg.rhythm_synth import synth_lead
from inference.pipeline import JobContext
from inference.study import ReadError

PUBLISHED = {
    "ecg2af-2024": ("ecg2af_quintuplet_v2024_01_13.keras",
                    "de38e009be5613ebb31ee1969bc1cab648d0f11c865e8afbd60e4bb7784f5627", 43797442),
    "ecg2af": ("ecg_5000_survival_curve_af_quadruple_task_mgh_v2021_05_21.h5",
               "ece878a5ed4f1523735a35648a8fa2a3086261d2bf38a5db16c8f3d0fc34c667", 220080440),
    "ecg2af-strip-I": ("strip_I_survival_curve_af_v2021_06_15.h5",
                       "d4c6b591d12b8fa4c1c0115adab442c68c7c33ce98c9071e66f7dd4f33f03296", 219883672),
    "ecg2af-strip-II": ("strip_II_survival_curve_af_v2021_06_15.h5",
                        "ef58a4b7294d91cb4e4686e6fd4ee72098719d55c43b9b0d487b34066923e0da", 219947384),
}


def test_manifest_names_the_published_files_and_the_2024_model_first(registry):
    for mid, (file, sha, size) in PUBLISHED.items():
        e = registry.get(mid)
        assert (e.file, e.sha256, e.extra.get("size")) == (file, sha, size), mid
        assert (F.FILES[mid].file, F.FILES[mid].sha256, F.FILES[mid].size) == (file, sha, size), mid
        assert e.inputs["normalisation"] == F.FILES[mid].normalisation, mid
    assert P.MODELS[0] == "ecg2af-2024" and P.MODELS.index("ecg2af") < P.MODELS.index("ecg2af-strip-I")


def test_each_file_has_its_established_normalisation():
    assert F.FILES["ecg2af"].normalisation == "zero_mean_std1"
    assert F.FILES["ecg2af-strip-I"].normalisation == F.FILES["ecg2af-strip-II"].normalisation == "zero_mean_std1"
    assert F.FILES["ecg2af-2024"].normalisation == "zscore_eps1e-6"
    for f in F.FILES.values():  # the screen line names the commits the finding rests on
        assert any(c in f.established for c in ("b8ab60e8", "83ee2a11", "957c9396"))
    x = np.random.default_rng(0).normal(0, 0.3, (5000, 12)).astype(np.float32) + 0.1
    z = F.normalise(x, "zero_mean_std1")
    assert abs(z.mean()) < 1e-5 and z.std() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(F.normalise(x, "zscore_eps1e-6"), (x - x.mean()) / (x.std() + 1e-6), rtol=1e-5)
    # the older MGB Standardize(0, 2000) on raw microvolts: mV / 2, an order of magnitude smaller than z-scores
    np.testing.assert_allclose(F.normalise(x, "standardize_0_2000"), x / 2, rtol=1e-6)
    assert np.abs(z).mean() / np.abs(F.normalise(x, "standardize_0_2000")).mean() > 5
    with pytest.raises(ValueError, match="unknown"):
        F.normalise(x, "minmax")


def test_a_manifest_normalisation_overrides_the_established_one(registry):
    assert F.normalisation_for("ecg2af", registry.get("ecg2af").inputs) == "zero_mean_std1"
    assert F.normalisation_for("ecg2af", {"normalisation": "standardize_0_2000"}) == "standardize_0_2000"
    assert "not the established one" in P.input_notes("ecg2af", "standardize_0_2000")[0]
    assert "b8ab60e8" in P.input_notes("ecg2af", "zero_mean_std1")[0]


def _write(folder, name, fs, signals: dict[str, np.ndarray]):
    import wfdb

    x = np.stack(list(signals.values()), axis=1).astype(np.float64)
    wfdb.wrsamp(name, fs=fs, units=["mV"] * x.shape[1], sig_name=list(signals), p_signal=x,
                fmt=["16"] * x.shape[1], adc_gain=[1000.0] * x.shape[1], baseline=[0] * x.shape[1],
                write_dir=str(folder))
    return R.read(folder / f"{name}.hea")


def _expected(model, study, leads, how):
    cols = [E.LEADS.index(ld) for ld in leads]
    x = np.asarray(study.data["model_input"], np.float64)[:, cols]
    x = (x - x.mean()) / (x.std() + {"zero_mean_std1": 1e-7, "zscore_eps1e-6": 1e-6}[how])
    outs = model(x[None].astype(np.float32), training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return dict(zip(model.output_names, (np.asarray(o) for o in outs)))


@pytest.mark.parametrize("mid,lead,names", [("ecg2af-strip-I", "I", ["I"]), ("ecg2af-strip-II", "II", ["MLII", "V1"])])
def test_strip_model_runs_on_a_one_or_two_lead_recording(tmp_path, registry, mid, lead, names):
    """AliveCor-style lead I for strip I, a Holter's MLII (+ V1) for strip II: official .h5 format, the
    file's own (5000, 1) input, ZeroMeanStd1 over that one lead, heads decoded by name."""
    path = E.make_test_checkpoint(tmp_path / F.FILES[mid].file, seed=4, model_id=mid)
    info = E.inspect_h5(path, input_name=F.FILES[mid].input_name)
    assert info["heads"].names and info["layers"] > 5
    registry.install(path, mid, unofficial=True)
    study = _write(tmp_path, "rec", 300.0, {n: synth_lead(30, 300.0, seed=7 + i) * (1 - 0.3 * i)
                                             for i, n in enumerate(names)})
    P.clear_cache()
    r = P.analyse(study, mid, registry, JobContext())
    assert r.model_id == mid and not r.clinical and r.outputs["input_leads"] == [lead]
    assert r.outputs["normalisation"] == "zero_mean_std1" and r.outputs["model_file"] == F.FILES[mid].file
    assert any(n.startswith("Input: lead " + lead) and "ZeroMeanStd1" in n for n in r.notes)
    want = _expected(E.load_keras(path, input_name=F.FILES[mid].input_name), study, [lead], "zero_mean_std1")
    s = want["output_survival_curve_af_survival_curve"][0].astype(np.float64)
    assert r.outputs["af_risk_5y"] == pytest.approx(1 - np.prod(s[:25]), rel=1e-5)
    # the 12-lead model refuses the recording and names the strip model to use
    with pytest.raises(ReadError, match="strip"):
        P.check_input(study, "ecg2af")
    P.clear_cache()


def test_strip_model_refuses_a_recording_without_its_lead(tmp_path):
    study = _write(tmp_path, "v1only", 250.0, {"V1": synth_lead(12, 250.0, seed=3)})
    with pytest.raises(ReadError, match="needs lead II"):
        P.check_input(study, "ecg2af-strip-II")


def test_2024_keras_archive_is_the_main_model_with_its_own_normalisation(tmp_path, registry):
    """A Keras-3 .keras archive with the 2024 heads, installed as ecg2af-2024: loaded with safe_mode, fed the
    per-ECG z-score (eps 1e-6) of all 12 leads, decoded by its own head names; a model fed the other scale
    (Standardize(0, 2000)) would give other numbers."""
    from inference.ecg import demo
    from tests.test_ecg2af_fidelity import HEADS_2024, _build_ml4h_graph, _keras3

    from inference.ecg import ml4h_objects as M

    keras = _keras3()
    model = _build_ml4h_graph(keras, M.custom_objects(keras, 3), HEADS_2024, seed=6, gelu="gelu")
    path = tmp_path / F.FILES["ecg2af-2024"].file
    model.save(str(path))
    assert E.inspect_h5(path)["format"] == "keras"
    registry.install(path, "ecg2af-2024", unofficial=True)
    study = R.read(demo.make(tmp_path / "demo"))
    P.clear_cache()
    r = P.analyse(study, "ecg2af-2024", registry, JobContext())
    assert r.outputs["normalisation"] == "zscore_eps1e-6" and r.outputs["death_risk_10y"] is not None
    want = _expected(model, study, list(E.LEADS), "zscore_eps1e-6")
    s = want["output_survival_curve_af_survival_curve"][0].astype(np.float64)
    assert r.outputs["af_risk_5y"] == pytest.approx(1 - np.prod(s[:25]), rel=1e-5)
    got = np.asarray(r.outputs["af_free_survival"])
    np.testing.assert_allclose(got, np.cumprod(s[:25]), rtol=1e-4)
    x = np.asarray(study.data["model_input"], np.float32)[None] / 2  # Standardize(0, 2000) of microvolts
    other = dict(zip(model.output_names, (np.asarray(o) for o in model(x, training=False))))
    s2 = other["output_survival_curve_af_survival_curve"][0].astype(np.float64)
    assert np.max(np.abs(s2 - s)) > 1e-3  # the wrong scale gives other numbers: the scale matters
    P.clear_cache()


def test_strip_model_onnx_twin_gives_the_keras_numbers(tmp_path, registry):
    mid = "ecg2af-strip-I"
    path = E.make_test_checkpoint(tmp_path / F.FILES[mid].file, seed=8, model_id=mid)
    registry.install(path, mid, unofficial=True)
    study = _write(tmp_path, "alivecor", 300.0, {"I": synth_lead(30, 300.0, irregular=True, seed=12)})
    P.clear_cache()
    rk = P._analyse_ecg2af(study, mid, registry, JobContext(), prefer="keras")
    out = P.export_onnx(registry, mid)
    assert out.exists()
    ro = P._analyse_ecg2af(study, mid, registry, JobContext(), prefer="onnx")
    assert ro.runtime == "onnxruntime" and rk.runtime == "keras"
    assert ro.outputs["af_risk_5y"] == pytest.approx(rk.outputs["af_risk_5y"], abs=1e-4)
    assert ro.outputs["input_leads"] == ["I"]
    P.clear_cache()

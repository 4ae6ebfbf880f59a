"""ECG2AF against the reference (broadinstitute/ml4h): files that name what ML4H registers load, heads are
decoded by the names a file declares (2021 and 2024 namings), Keras-3-saved files load, and the ONNX twin
is matched to the Keras outputs by name.

Every model here is built by the test in the format the reference writes (Keras HDF5 with ML4H's
registered names); the expected numbers come from an independent numpy forward pass over the weights
read back from the file with h5py, and from the decoding steps of the authors' model-zoo notebook.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from inference.ecg import ecg2af as E
from inference.ecg import heads as H
from inference.ecg import ml4h_objects as M

ADDONS_NAMES = {"gelu_tanh": "Addons>gelu", "mish": "Addons>mish", "lisht": "Addons>lisht"}
HEADS_2021 = ("output_survival_curve_af_survival_curve", "output_age_from_wide_csv_continuous",
              "output_af_in_read_categorical", "output_sex_from_wide_categorical")
HEADS_2024 = ("output_survival_curve_af_survival_curve", "output_death_event_survival_curve",
              "output_age_in_days_continuous", "output_af_in_read_categorical", "output_sex_categorical")


def _tf_keras():
    from inference.frameworks import import_tensorflow

    import_tensorflow()
    import tf_keras

    return tf_keras


def _keras3():
    from inference.frameworks import import_tensorflow

    import_tensorflow()
    import keras

    return keras


def _units(name: str):
    h = H.HEADS[name]
    act = {"survival": "sigmoid", "categorical": "softmax", "continuous": "linear"}[h.kind]
    return h.units, act


def _as_2021_file(path) -> None:
    """Rewrite a tf_keras-saved config the way a 2021 tf.keras + tensorflow-addons file stores it:
    activation functions as plain registered names, addons classes as ``Addons>Class``."""
    import h5py

    with h5py.File(path, "r+") as f:
        raw = f.attrs["model_config"]
        cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        for layer in cfg["config"]["layers"]:
            act = layer["config"].get("activation")
            if isinstance(act, dict):  # tf_keras 2.21 writes {'class_name': 'function', 'config': name}
                act = act["config"]
            if isinstance(act, str):
                layer["config"]["activation"] = ADDONS_NAMES.get(act, act)
            if layer["class_name"] in M.LAYER_NAMES:
                layer["class_name"] = M.ADDONS + layer["class_name"]
        f.attrs["model_config"] = json.dumps(cfg)


def _weights(path) -> dict[str, list[np.ndarray]]:
    """Each layer's weights, read straight from the HDF5 file (not through Keras)."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        g = f["model_weights"]
        for lname in g.attrs["layer_names"]:
            lname = lname.decode() if isinstance(lname, bytes) else lname
            names = [n.decode() if isinstance(n, bytes) else n for n in g[lname].attrs["weight_names"]]
            out[lname] = [np.asarray(g[lname][n], np.float64) for n in names]
    return out


# -- numpy oracle of the test graph ------------------------------------------------------------------------
def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _oracle(x: np.ndarray, w: dict, names: dict, heads: tuple[str, ...]) -> dict[str, np.ndarray]:
    x = x.astype(np.float64)
    k, b = w[names["conv"]]  # (3, 12, 4), 'same' padding
    pad = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    h = sum(np.einsum("btc,cf->btf", pad[:, i:i + x.shape[1]], k[i]) for i in range(3)) + b
    h = 0.5 * h * (1 + np.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))  # addons gelu
    gamma, beta = w[names["inorm"]]
    m, v = h.mean(axis=1, keepdims=True), h.var(axis=1, keepdims=True)
    h = (h - m) / np.sqrt(v + 1e-3) * gamma + beta
    h = h * np.tanh(h)  # lisht
    h = h.reshape(h.shape[0], h.shape[1] // 100, 100, h.shape[2]).max(axis=2).reshape(h.shape[0], -1)
    dk, db = w[names["dense"]]
    h = h @ dk + db
    h = h * np.tanh(np.log1p(np.exp(h)))  # mish
    norm = np.sqrt((h ** 2).sum(axis=1, keepdims=True))
    h = h * np.minimum((1 - 1e-5) / norm, 1.0)  # Poincaré ball
    h = h * _sigmoid(h)  # swish
    out = {}
    for n in heads:
        kk, bb = w[n]
        z = h @ kk + bb
        kind = H.HEADS[n].kind
        out[n] = _sigmoid(z) if kind == "survival" else _softmax(z) if kind == "categorical" else z
    return out


def _build_ml4h_graph(keras, objs, heads, seed=0, gelu=None):
    """A small graph through every object ML4H registers: conv -> gelu -> InstanceNormalization ->
    lisht -> pool -> dense -> mish -> PoincareNormalize -> swish -> named heads."""
    L = keras.layers
    keras.utils.set_random_seed(seed)
    inp = keras.Input((E.N_SAMPLES, len(E.LEADS)), name=E.INPUT_NAME)
    conv = L.Conv1D(4, 3, padding="same", name="conv")
    x = L.Activation(gelu or M.gelu_tanh)(conv(inp))
    inorm = objs["InstanceNormalization"](name="inorm")
    x = L.Activation(M.lisht)(inorm(x))
    x = L.Flatten()(L.MaxPooling1D(100)(x))
    x = L.Activation(M.mish)(L.Dense(8, name="dense")(x))
    x = L.Activation("swish")(objs["PoincareNormalize"](axis=1)(x))
    outs = [L.Dense(*_units(n), name=n)(x) for n in heads]
    model = keras.Model(inp, outs)
    rng = np.random.default_rng(seed)
    inorm.set_weights([rng.uniform(0.5, 1.5, 4).astype("float32"), rng.normal(0, 0.3, 4).astype("float32")])
    return model


@pytest.fixture(scope="module")
def file_2021(tmp_path_factory):
    """A Keras-2 HDF5 file naming every ML4H object as a 2021 tf.keras + addons file does, compiled with
    the reference's per-class precision/recall, pearson and survival-likelihood 'loss'."""
    keras = _tf_keras()
    objs = M.custom_objects(keras, 2)
    heads = (HEADS_2021[2], HEADS_2021[0], HEADS_2021[3], HEADS_2021[1])  # not the README's order
    model = _build_ml4h_graph(keras, objs, heads)
    metric = M.metric_functions()
    model.compile(optimizer="adam",
                  loss={HEADS_2021[0]: M.survival_likelihood_loss(), HEADS_2021[1]: "log_cosh",
                        HEADS_2021[2]: "categorical_crossentropy", HEADS_2021[3]: "categorical_crossentropy"},
                  metrics={HEADS_2021[1]: [metric["pearson"]],
                           HEADS_2021[2]: ["categorical_accuracy"] + [
                               metric[f"{c}_{k}"] for c in ("no_atrial_fibrillation", "atrial_fibrillation")
                               for k in ("precision", "recall")],
                           HEADS_2021[3]: ["categorical_accuracy"] + [
                               metric[f"{c}_{k}"] for c in ("female", "male") for k in ("precision", "recall")]})
    p = tmp_path_factory.mktemp("ml4h") / E.OFFICIAL_FILE
    model.save(str(p), save_format="h5")
    _as_2021_file(p)
    return p, heads


def _probe(n=2, seed=5):
    return E.normalise(np.random.default_rng(seed).normal(size=(n, E.N_SAMPLES, len(E.LEADS))))


def test_custom_objects_cover_what_ml4h_registers():
    keras = _tf_keras()
    objs = M.custom_objects(keras, 2)
    for name in ("swish", "gelu", "lisht", "mish", "InstanceNormalization", "PoincareNormalize",
                 "Addons>gelu", "Addons>lisht", "Addons>mish", "Addons>InstanceNormalization",
                 "Addons>PoincareNormalize", "pearson", "loss"):
        assert name in objs, name
    for label in ("female", "male", "no_atrial_fibrillation", "atrial_fibrillation", "Sex_Female_0_0",
                  "Sex_Male_0_0", "no_af_in_read", "af_in_read"):
        assert f"{label}_precision" in objs and f"{label}_recall" in objs
    # Keras 3 files keep Keras' own exact gelu (ML4H after TF 2.19); the addons name stays approximate
    objs3 = M.custom_objects(_keras3(), 3)
    assert "gelu" not in objs3 and objs3["Addons>gelu"] is M.gelu_tanh


def test_activation_and_metric_formulas():
    from inference.frameworks import import_tensorflow

    tf = import_tensorflow()
    x = np.linspace(-4, 4, 33)
    t = tf.constant(x)
    np.testing.assert_allclose(M.gelu_tanh(t), 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3))),
                               atol=1e-12)
    np.testing.assert_allclose(M.gelu_erf(t), [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x], atol=1e-12)
    np.testing.assert_allclose(M.mish(t), x * np.tanh(np.log1p(np.exp(x))), atol=1e-12)
    np.testing.assert_allclose(M.lisht(t), x * np.tanh(x), atol=1e-12)
    np.testing.assert_allclose(M.swish(t), x / (1 + np.exp(-x)), atol=1e-12)
    y_true = np.array([[1, 0], [0, 1], [0, 1], [1, 0]], np.float32)
    y_pred = np.array([[0.9, 0.1], [0.3, 0.7], [0.8, 0.2], [0.6, 0.4]], np.float32)
    f = M.metric_functions()
    # class 1 ('male'): predicted positives = 1 (row 2), true positives = 1, actual positives = 2
    assert float(f["male_precision"](y_true, y_pred)) == pytest.approx(1.0, abs=1e-5)
    assert float(f["male_recall"](y_true, y_pred)) == pytest.approx(0.5, abs=1e-5)
    a, b = np.array([[1.0, 2.0, 4.0]]), np.array([[2.0, 1.0, 5.0]])
    assert float(f["pearson"](a, b)[0]) == pytest.approx(np.corrcoef(a[0], b[0])[0, 1], abs=1e-6)
    surv = np.zeros((1, 50), np.float32)
    surv[0, :3] = 1.0  # survived 3 intervals, then censored
    pred = np.full((1, 50), 0.9, np.float32)
    assert float(f["loss"](surv, pred)[0]) == pytest.approx(-3 * math.log(0.9), rel=1e-5)


def test_a_2021_style_file_naming_every_reference_object_loads_and_computes_the_reference(file_2021):
    keras = _tf_keras()
    path, heads = file_2021
    import h5py

    with h5py.File(path, "r") as f:
        raw = f.attrs["model_config"]
    raw = raw.decode() if isinstance(raw, bytes) else raw
    for name in ('"Addons>gelu"', '"Addons>mish"', '"Addons>lisht"', '"Addons>InstanceNormalization"',
                 '"Addons>PoincareNormalize"', '"swish"'):
        assert name in raw  # the file really names them
    # without the reference's objects the file cannot be read (what Lightbox used to supply)
    with pytest.raises(Exception):
        keras.models.load_model(str(path), custom_objects={"mish": M.mish, "swish": M.swish}, compile=False)
    info = E.inspect_h5(path)  # not trusted: the layer allowlist must know the addons layers
    assert info["generation"] == 2 and info["heads"].names == list(heads)
    model = E.load_keras(path)
    x = _probe()
    got = dict(zip(model.output_names, (np.asarray(o) for o in model(x, training=False))))
    want = _oracle(x, _weights(path), {"conv": "conv", "inorm": "inorm", "dense": "dense"}, heads)
    for n in heads:
        np.testing.assert_allclose(got[n], want[n], atol=2e-5, rtol=1e-4, err_msg=n)
    # the README's 2021 call compiles the model: the metric functions a compiled file names resolve too
    keras.models.load_model(str(path), custom_objects=E.custom_objects(keras, 2), compile=True)


def test_2021_heads_decode_as_the_authors(file_2021):
    path, heads = file_2021
    model = E.load_keras(path)
    x = _probe(3)
    raw = dict(zip(model.output_names, (np.asarray(o) for o in model(x, training=False))))
    for i in range(3):
        d = E.decode(raw, i)
        s = raw["output_survival_curve_af_survival_curve"][i].astype(np.float64)
        assert d["af_risk_5y"] == pytest.approx(1 - np.prod(s[:25]), rel=1e-9)
        assert d["age_years"] == pytest.approx(raw["output_age_from_wide_csv_continuous"][i, 0] * 7.554638350423902
                                               + 63.35798891483556, rel=1e-9)
        assert d["sex_male_probability"] == pytest.approx(raw["output_sex_from_wide_categorical"][i, 1])
        assert d["af_in_read_probability"] == pytest.approx(raw["output_af_in_read_categorical"][i, 1])
        assert d["death_risk_10y"] is None
        assert d["survival_days"][-1] == pytest.approx(1825.0) and d["survival_days"][0] == pytest.approx(73.0)


@pytest.fixture(scope="module")
def file_2024_keras3(tmp_path_factory):
    """The 2024 heads in a Keras-3-saved HDF5 file (what ML4H writes since its TF 2.19 move)."""
    keras = _keras3()
    objs = M.custom_objects(keras, 3)
    model = _build_ml4h_graph(keras, objs, HEADS_2024, seed=2, gelu="gelu")
    d = tmp_path_factory.mktemp("k3")
    p = d / E.OFFICIAL_FILE
    model.save(str(p))
    model.save(str(d / "ecg2af_quintuplet_like.keras"))  # the 2024 model is published as .keras
    x = _probe(2, seed=9)
    ref = dict(zip(model.output_names, (np.asarray(o) for o in model(x, training=False))))
    return p, x, ref


def test_keras3_saved_h5_loads_with_keras3_and_keeps_its_numbers(file_2024_keras3):
    import h5py

    path, x, ref = file_2024_keras3
    with h5py.File(path, "r") as f:
        assert str(f.attrs["keras_version"]).startswith("3")
    info = E.inspect_h5(path)
    assert info["generation"] == 3 and info["heads"].names == list(HEADS_2024)
    model = E.load_keras(path)
    got = dict(zip(model.output_names, (np.asarray(o) for o in model(x, training=False))))
    for n in HEADS_2024:
        np.testing.assert_allclose(got[n], ref[n], atol=1e-6, err_msg=n)
    # the same model as a .keras archive, installed under the manifest's .h5 name: read by content
    import shutil

    renamed = path.parent / "renamed" / E.OFFICIAL_FILE
    renamed.parent.mkdir(exist_ok=True)
    shutil.copyfile(path.parent / "ecg2af_quintuplet_like.keras", renamed)
    info = E.inspect_h5(renamed)
    assert info["format"] == "keras" and info["heads"].names == list(HEADS_2024)
    archive = E.load_keras(renamed)
    got = dict(zip(archive.output_names, (np.asarray(o) for o in archive(x, training=False))))
    for n in HEADS_2024:
        np.testing.assert_allclose(got[n], ref[n], atol=1e-6, err_msg=n)


def test_2024_heads_decode_by_their_own_names(file_2024_keras3):
    path, x, ref = file_2024_keras3
    d = E.decode(ref, 1)
    af = ref["output_survival_curve_af_survival_curve"][1].astype(np.float64)
    death = ref["output_death_event_survival_curve"][1].astype(np.float64)
    assert d["af_risk_5y"] == pytest.approx(1 - np.prod(af[:25]), rel=1e-9)
    assert d["death_risk_10y"] == pytest.approx(1 - np.prod(death[:25]), rel=1e-9)
    assert d["heads"]["output_death_event_survival_curve"]["days"][-1] == pytest.approx(3650.0)
    assert d["sex_male_probability"] == pytest.approx(ref["output_sex_categorical"][1, 1])
    assert d["af_in_read_probability"] == pytest.approx(ref["output_af_in_read_categorical"][1, 1])
    # age_in_days was trained with ZeroMeanStd1 (no inverse): the raw value is kept, no years invented
    assert d["age_years"] is None
    assert d["age_head_raw"] == pytest.approx(float(ref["output_age_in_days_continuous"][1, 0]))


def test_unknown_head_is_refused_by_name(tmp_path, registry):
    keras = _tf_keras()
    L = keras.layers
    inp = keras.Input((E.N_SAMPLES, len(E.LEADS)), name=E.INPUT_NAME)
    x = L.Flatten()(L.MaxPooling1D(500)(inp))
    outs = [L.Dense(50, activation="sigmoid", name="output_survival_curve_af_survival_curve")(x),
            L.Dense(1, name="output_bmi_continuous")(x)]
    p = tmp_path / "bmi.h5"
    keras.Model(inp, outs).save(str(p), save_format="h5")
    for trusted in (False, True):  # even the published file is refused rather than mis-decoded
        with pytest.raises(E.ModelFileError, match="output_bmi_continuous"):
            E.load_keras(p, trusted=trusted)
    with pytest.raises(H.HeadError, match="output_bmi_continuous"):
        E.decode({"output_survival_curve_af_survival_curve": np.full((1, 50), 0.9),
                  "output_bmi_continuous": np.zeros((1, 1))})
    # in the app: a weights problem with the head's name, not a traceback
    from inference.ecg import demo
    from inference.ecg import pipeline as P
    from inference.ecg import reader as R
    from inference.pipeline import JobContext
    from inference.registry import WeightsError

    registry.install(p, "ecg2af", unofficial=True)
    P.clear_cache()
    with pytest.raises(WeightsError, match="output_bmi_continuous"):
        P.analyse(R.read(demo.make(tmp_path / "demo")), "ecg2af", registry, JobContext())


def test_known_head_with_the_wrong_width_is_refused(tmp_path):
    keras = _tf_keras()
    L = keras.layers
    inp = keras.Input((E.N_SAMPLES, len(E.LEADS)), name=E.INPUT_NAME)
    x = L.Flatten()(L.MaxPooling1D(500)(inp))
    outs = [L.Dense(50, activation="sigmoid", name="output_survival_curve_af_survival_curve")(x),
            L.Dense(3, activation="softmax", name="output_sex_from_wide_categorical")(x)]
    p = tmp_path / "wide.h5"
    keras.Model(inp, outs).save(str(p), save_format="h5")
    with pytest.raises(E.ModelFileError, match="output_sex_from_wide_categorical.*3 outputs"):
        E.load_keras(p)


def test_lambda_layers_are_still_refused(tmp_path):
    keras = _tf_keras()
    L = keras.layers
    inp = keras.Input((E.N_SAMPLES, len(E.LEADS)), name=E.INPUT_NAME)
    x = L.Flatten()(L.Lambda(lambda t: t * 2)(L.MaxPooling1D(500)(inp)))
    outs = [L.Dense(*_units(n), name=n)(x) for n in HEADS_2021]
    p = tmp_path / "lambda.h5"
    keras.Model(inp, outs).save(str(p), save_format="h5")
    with pytest.raises(E.ModelFileError, match="Lambda"):
        E.load_keras(p)


def test_onnx_twin_outputs_are_matched_by_name(file_2021, tmp_path):
    import onnxruntime as ort

    path, heads = file_2021  # heads declared in a different order than the README lists them
    model = E.load_keras(path)
    out = E.export_onnx_file(model, tmp_path / "twin.onnx")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    assert sorted(names) == sorted(heads)
    x = _probe(2, seed=11)
    onnx_out = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x})))
    keras_out = dict(zip(model.output_names, (np.asarray(o) for o in model(x, training=False))))
    for n in heads:
        np.testing.assert_allclose(onnx_out[n], keras_out[n], atol=1e-4, err_msg=n)


def test_onnx_twin_with_swapped_output_names_is_caught(file_2021, tmp_path):
    import onnx

    path, heads = file_2021
    model = E.load_keras(path)
    out = E.export_onnx_file(model, tmp_path / "twin.onnx")
    proto = onnx.load(str(out))
    # swap the names of the two 2-way softmax heads (same shape: only the numbers tell them apart)
    a, b = "output_af_in_read_categorical", "output_sex_from_wide_categorical"
    for node in proto.graph.node:
        node.output[:] = [{a: b, b: a}.get(v, v) for v in node.output]
        node.input[:] = [{a: b, b: a}.get(v, v) for v in node.input]
    with pytest.raises(E.ModelFileError, match="output_af_in_read_categorical|output_sex_from_wide_categorical"):
        E.verify_onnx_twin(model, proto.SerializeToString())


def test_pipeline_runs_a_keras3_2024_file_end_to_end(file_2024_keras3, registry, tmp_path):
    """Install the Keras-3 2024-named file (unofficial), analyse a demo ECG with Keras and with the ONNX
    twin: same decoded numbers, the 2024 heads shown as they are, the age head never as years."""
    from inference.ecg import demo
    from inference.ecg import pipeline as P
    from inference.ecg import reader as R
    from inference.pipeline import JobContext

    path, _, _ = file_2024_keras3
    registry.install(path, "ecg2af", unofficial=True)
    study = R.read(demo.make(tmp_path))
    P.clear_cache()
    rk = P._analyse_ecg2af(study, "ecg2af", registry, JobContext(), prefer="keras")
    assert rk.runtime == "keras" and rk.outputs["age_years"] is None
    assert rk.outputs["death_risk_10y"] is not None and rk.outputs["heads"] == sorted(HEADS_2024)
    assert any("no inverse" in n for n in rk.notes)
    P.export_onnx(registry, "ecg2af")
    ro = P._analyse_ecg2af(study, "ecg2af", registry, JobContext(), prefer="onnx")
    assert ro.runtime == "onnxruntime"
    for k in ("af_risk_5y", "death_risk_10y", "sex_male_probability", "af_in_read_probability", "age_head_raw"):
        assert ro.outputs[k] == pytest.approx(rk.outputs[k], abs=1e-4), k
    rows = dict(E.result_rows(rk.outputs))
    assert "Death within 10 years (risk)" in rows and "Age (from ECG)" not in rows
    assert "Age head (raw, no published scale)" in rows
    P.clear_cache()

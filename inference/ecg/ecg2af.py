"""ECG2AF (Khurshid et al., Circulation 2022; Broad Institute ML4H model zoo): facts, loader, decoder.

Facts taken from broadinstitute/ml4h (read, not copied):

- input  ``input_ecg_5000_std_continuous``: (batch, 5000, 12) float32 — tensor map ``ecg.ecg_rest_mgb``
  (name ``ecg_5000_std``): 10 s at 500 Hz, columns in ``ECG_REST_AMP_LEADS`` order
  I, II, III, aVR, aVL, aVF, V1..V6, read from ``ukb_ecg_rest/strip_<lead>/instance_0``, cropped or
  zero-padded to 5000 samples, then normalised over the whole tensor by ``ZeroMeanStd1``:
  ``(x - mean(x)) / (std(x) + 1e-7)``.
- four heads (tensor-map ``output_name()`` = ``output_<name>_<interpretation>``):
  ``output_survival_curve_af_survival_curve`` (50, sigmoid): ``survival.mgb_afib_wrt_instance2``,
  25 intervals over a 5-year window (``days_window = 365 * 5``); the first 25 values are the
  conditional probabilities of staying AF-free through each interval, so
  ``risk = 1 - cumprod(pred[:, :25])[-1]`` is the 5-year incident-AF risk, as the authors decode it;
  ``output_sex_from_wide_categorical`` (2, softmax): ``demographics.sex_dummy3``, {female: 0, male: 1};
  ``output_age_from_wide_csv_continuous`` (1, linear): ``demographics.age_2_wide``,
  ``Standardize(mean=63.35798891483556, std=7.554638350423902)`` -> years = y * std + mean;
  ``output_af_in_read_categorical`` (2, softmax): ``demographics.af_dummy``,
  {no_atrial_fibrillation: 0, atrial_fibrillation: 1}.

The published ``.h5`` carries its own graph (Keras HDF5: ``model_config`` + weights), so the real
file is loaded by ``load_keras`` exactly as the authors do (``load_model(..., compile=False)``) with
the objects ML4H registers (``inference.ecg.ml4h_objects``). The file behind the pinned sha256 was
replaced on 2025-05-07 (ml4h 05717d1e, six days after ML4H moved to TensorFlow 2.19 / Keras 3); a
file saved by Keras 3 is loaded by Keras 3 (``tf_keras`` cannot read it), one saved by Keras 2 by
``tf_keras``: the file's ``keras_version`` decides. Its output heads are read from its own config and
decoded by name (``inference.ecg.heads``: the 2021 names above and the 2024 model's names); a head
Lightbox does not know is refused by name.
``build_model`` makes a graph of the same family (ML4H ``ConvEncoderBlock``: residual convolutions,
dense-convolutional blocks with max pooling, flatten, dense, four named heads) with the same input and
output names and shapes; the tests and the benchmark save it with seeded random weights in the
official file format and load it through the real path. It is never presented as the published model.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from inference.ecg import heads as H
from inference.ecg import ml4h_objects as M

MODEL_ID = "ecg2af"
OFFICIAL_FILE = "ecg_5000_survival_curve_af_quadruple_task_mgh_v2021_05_21.h5"

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
FS = 500
N_SAMPLES = 5000
EPS = 1e-7  # ml4h.defines.EPS used by ZeroMeanStd1

INPUT_NAME = "input_ecg_5000_std_continuous"
OUT_SURVIVAL = "output_survival_curve_af_survival_curve"
OUT_SEX = "output_sex_from_wide_categorical"
OUT_AGE = "output_age_from_wide_csv_continuous"
OUT_AF = "output_af_in_read_categorical"
OUTPUT_NAMES = (OUT_SURVIVAL, OUT_AGE, OUT_AF, OUT_SEX)  # the order of --output_tensors in the ml4h README
OUTPUT_UNITS = {OUT_SURVIVAL: (50, "sigmoid"), OUT_AGE: (1, "linear"), OUT_AF: (2, "softmax"),
                OUT_SEX: (2, "softmax")}

SURVIVAL_INTERVALS = 25
DAYS_WINDOW = 365 * 5
DAYS_PER_INTERVAL = DAYS_WINDOW / SURVIVAL_INTERVALS  # 73 days: the survival tensor's interval width
AGE_MEAN, AGE_STD = 63.35798891483556, 7.554638350423902
SEX_CLASSES = ("female", "male")
AF_CLASSES = ("no_atrial_fibrillation", "atrial_fibrillation")

# Layer classes a genuine ECG2AF file is made of. Anything else (a Lambda layer carries marshalled
# Python bytecode that Keras would execute on load) is refused before the file is deserialised.
ALLOWED_LAYERS = {"InputLayer", "Conv1D", "SeparableConv1D", "DepthwiseConv1D", "Activation",
                  "BatchNormalization", "LayerNormalization", "Dropout", "SpatialDropout1D",
                  "GaussianNoise", "MaxPooling1D", "AveragePooling1D", "GlobalAveragePooling1D",
                  "GlobalMaxPooling1D", "Concatenate", "Add", "Flatten", "Dense", "Reshape",
                  "Functional", "Model", "Sequential", "LeakyReLU", "PReLU", "ELU", "ThresholdedReLU",
                  "ZeroPadding1D", "Cropping1D", "UpSampling1D", "Multiply", "Average"}


def normalise(x: np.ndarray, how: str = "zero_mean_std1") -> np.ndarray:
    """One ECG (5000, k) or a batch, normalised per ECG as the file was trained (``ecg2af_files``): ML4H
    ZeroMeanStd1 over the whole tensor by default."""
    from inference.ecg.ecg2af_files import normalise as norm

    return norm(x, how)


# -- decoding ---------------------------------------------------------------------------------
def survival_curve(pred: np.ndarray) -> np.ndarray:
    """Cumulative AF-free probability at the end of each of the 25 intervals (one ECG)."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    return np.cumprod(p[:SURVIVAL_INTERVALS])


def decode(outputs: dict[str, np.ndarray], index: int = 0) -> dict[str, Any]:
    """The heads the model declares (keys = head names), decoded as the authors do, for ECG ``index``.

    Keys Lightbox shows: af_risk_5y, survival_days, af_free_survival, sex_male_probability,
    sex_female_probability, age_years (None when the head has no published scale), age_head_raw,
    af_in_read_probability, death_risk_10y (2024 model only); ``heads``: every head's own decoding.
    A head name outside ``inference.ecg.heads.HEADS`` raises ``HeadError`` naming it.
    """
    return H.decode(outputs, index)


def result_rows(o: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) rows for the results panel and the report, for whichever heads the file had."""
    def pct(v, digits=1):
        return "—" if v is None else f"{100 * v:.{digits}f} %"

    rows = [("AF risk within 5 years", pct(o.get("af_risk_5y")))]
    if o.get("death_risk_10y") is not None:
        rows.append(("Death within 10 years (risk)", pct(o["death_risk_10y"])))
    if o.get("sex_male_probability") is not None:
        rows.append(("Sex (from ECG)", f"male {pct(o['sex_male_probability'], 0)} · female "
                                       f"{pct(o.get('sex_female_probability'), 0)}"))
    if o.get("age_years") is not None:
        rows.append(("Age (from ECG)", f"{o['age_years']:.1f} years"))
    elif o.get("age_head_raw") is not None:
        rows.append(("Age head (raw, no published scale)", f"{o['age_head_raw']:.3f}"))
    if o.get("af_in_read_probability") is not None:
        rows.append(("AF in this ECG", pct(o["af_in_read_probability"])))
    return rows


# -- the graph --------------------------------------------------------------------------------
def _keras():
    from inference.frameworks import import_tensorflow

    import_tensorflow()  # torch/Triton first: see inference/frameworks.py
    import tf_keras

    return tf_keras


def _keras3():
    import os

    from inference.frameworks import import_tensorflow

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import_tensorflow()
    import keras

    return keras


def custom_objects(keras=None, generation: int = 2) -> dict[str, Any]:
    """What ML4H's ``get_custom_objects`` registers that an ECG2AF-family file may name (activations
    swish/gelu/lisht/mish under their plain and ``Addons>`` names, InstanceNormalization,
    PoincareNormalize, the metric functions), as Lightbox's own code for ``keras`` (default tf_keras)."""
    return M.custom_objects(keras or _keras(), generation)


def build_model(*, conv_width: int = 71, conv_layers: tuple[int, ...] = (32,),
                dense_blocks: tuple[int, ...] = (32, 32, 32), block_size: int = 3,
                dense_layers: tuple[int, ...] = (256,), activation: str = "swish", pool: int = 2,
                seed: int = 0, leads: tuple[str, ...] = LEADS, input_name: str = INPUT_NAME,
                heads: tuple[str, ...] = OUTPUT_NAMES):
    """An ECG2AF-family graph (ML4H ``ConvEncoderBlock`` + named heads) with seeded random weights.

    Defaults are ML4H's recipe defaults and the 2021 12-lead file's input/output names and shapes; ``leads``
    and ``input_name`` give a strip file's (5000, 1) input, ``heads`` any known heads (``inference.ecg.heads``).
    """
    keras = _keras()
    L = keras.layers
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape=(N_SAMPLES, len(leads)), name=input_name)
    # residual block: conv -> act, then for later convs a 1x1 conv + Add of the previous output
    x = inp
    previous = None
    for i, filters in enumerate(conv_layers):
        x = L.Activation(activation)(L.Conv1D(filters, conv_width, padding="same")(x))
        if i > 0:
            x = L.Add()([L.Conv1D(conv_layers[0], 1)(x), previous])
        previous = x
    # dense-convolutional blocks, each after a max pool
    for filters in dense_blocks:
        x = L.MaxPooling1D(pool)(x)
        connections = [x]
        for j in range(block_size):
            x = L.Activation(activation)(L.Conv1D(filters, conv_width, padding="same")(x))
            if j < block_size - 1:
                connections.append(x)
                x = L.Concatenate()(connections[:])
    x = L.Flatten()(x)
    for k, width in enumerate(dense_layers):
        name = "embed_ecg_5000_std_continuous" if k == len(dense_layers) - 1 else None
        x = L.Activation(activation)(L.Dense(width, name=name)(x))
    act = {"survival": "sigmoid", "categorical": "softmax", "continuous": "linear"}
    outs = [L.Dense(H.HEADS[n].units, activation=act[H.HEADS[n].kind], name=n)(x) for n in heads]
    return keras.Model(inp, outs, name="ecg2af_family")


def save_official_format(model, path: str | Path) -> Path:
    """Save as the published file is stored: a Keras HDF5 file (model_config + weights)."""
    path = Path(path)
    model.save(str(path), save_format="h5", include_optimizer=False)
    return path


def make_test_checkpoint(path: str | Path, seed: int = 0, small: bool = True, model_id: str = MODEL_ID,
                         heads: tuple[str, ...] | None = None) -> Path:
    """A random-weights checkpoint in the official .h5 format (tests: small; benchmark: full size), with the
    input of the published file ``model_id`` (12 leads, or a strip's one lead)."""
    from inference.ecg.ecg2af_files import published

    f = published(model_id)
    kw = dict(conv_width=15, conv_layers=(8,), dense_blocks=(8, 8, 8), block_size=2,
              dense_layers=(16,)) if small else {}
    return save_official_format(build_model(seed=seed, leads=f.leads, input_name=f.input_name,
                                            heads=heads or OUTPUT_NAMES, **kw), path)


# -- loading the real file --------------------------------------------------------------------
class ModelFileError(Exception):
    pass


ADDON_LAYERS = {"InstanceNormalization", "PoincareNormalize", "Addons>InstanceNormalization",
                "Addons>PoincareNormalize"}
ZIP_MAGIC = b"PK\x03\x04"


def _walk_layers(cfg: dict):
    """Every layer config in a model config, nested models included."""
    for layer in (cfg.get("config") or {}).get("layers", []) or []:
        yield layer
        if isinstance(layer.get("config"), dict) and "layers" in layer["config"]:
            yield from _walk_layers(layer)


def _read_config(path: Path) -> tuple[dict, str | None, str]:
    """(model config, keras_version, format) from an HDF5 (.h5) or Keras-3 zip (.keras) file,
    without building anything."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ModelFileError(f"{path.name} cannot be read ({e})") from None
    if head.startswith(ZIP_MAGIC):
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                cfg = json.loads(z.read("config.json"))
                meta = json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
        except (zipfile.BadZipFile, KeyError, ValueError) as e:
            raise ModelFileError(f"{path.name} is a zip but not a Keras model archive ({e})") from None
        return cfg, meta.get("keras_version"), "keras"
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            keras_version = f.attrs.get("keras_version")
    except OSError as e:
        raise ModelFileError(f"{path.name} is not a Keras HDF5 model file ({e})") from None
    if raw is None:
        raise ModelFileError(f"{path.name} holds weights only (no model_config); ECG2AF is a full "
                             "Keras model file")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    if isinstance(keras_version, bytes):
        keras_version = keras_version.decode()
    return json.loads(raw), keras_version, "h5"


def inspect_h5(path: str | Path, trusted: bool = False, input_name: str | None = None) -> dict[str, Any]:
    """Read the model config without building anything, and check what it contains.

    ``trusted``: the file's sha256 is the published one, so its content is what the authors released;
    the layer allowlist and input-name checks then only inform (they guard non-official files). The
    output heads are checked for every file: a head Lightbox cannot decode is refused by name.
    Returns layers, keras_version, generation (2 = tf.keras, 3 = Keras 3), format, heads.
    """
    path = Path(path)
    cfg, keras_version, fmt = _read_config(path)
    layers = list(_walk_layers(cfg))
    classes = set()
    for layer in layers:
        classes.add(layer.get("class_name"))
        if layer.get("registered_name") and layer.get("registered_name") != layer.get("class_name"):
            classes.add(layer["registered_name"])  # Keras 3 names custom classes here
    allowed = ALLOWED_LAYERS | ADDON_LAYERS
    bad = sorted(str(c) for c in classes if c not in allowed)
    if bad and not trusted:
        raise ModelFileError(f"{path.name} contains layer types {', '.join(bad)} that ECG2AF does not "
                             "use; refusing to deserialise it (a Lambda layer would run code)")
    names = {layer.get("name") or (layer.get("config") or {}).get("name") for layer in layers}
    from inference.ecg.ecg2af_files import FILES

    wanted = {input_name} if input_name else {f.input_name for f in FILES.values()}
    if not (names & wanted) and not trusted:
        raise ModelFileError(f"{path.name} is not an ECG2AF model: no input {' or '.join(sorted(wanted))}")
    try:
        heads = H.declared_heads(cfg)
        H.check_heads(heads, source=path.name)
    except H.HeadError as e:
        raise ModelFileError(str(e)) from None
    generation = 3 if fmt == "keras" or str(keras_version or "").startswith("3") else 2
    return {"layers": len(layers), "keras_version": keras_version, "generation": generation, "format": fmt,
            "heads": heads}


def load_keras(path: str | Path, trusted: bool = False, input_name: str | None = None):
    """The authors' loading path: ``load_model(file, custom_objects=…, compile=False)``, with the
    Keras that wrote the file (tf_keras for Keras 2 files, Keras 3 for Keras 3 files and .keras).

    The HDF5 format has no ``safe_mode`` (that exists only for the .keras format), so the config is
    inspected first and files with code-carrying layers are refused unless they are the published file.
    """
    import contextlib
    import tempfile

    path = Path(path)
    info = inspect_h5(path, trusted=trusted, input_name=input_name)
    if info["generation"] < 3:
        keras = _keras()
        return keras.models.load_model(str(path), custom_objects=custom_objects(keras, 2), compile=False)
    keras = _keras3()
    objs = custom_objects(keras, 3)
    with contextlib.ExitStack() as stack:
        src = path
        if info["format"] == "keras" and path.suffix != ".keras":
            # Keras 3 picks the format by the name: give the archive its own suffix (a link, no copy)
            d = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lightbox-keras-")))
            src = d / (path.stem + ".keras")
            try:
                src.symlink_to(path.resolve())
            except OSError:
                import shutil

                shutil.copyfile(path, src)
        kw = {"safe_mode": True} if info["format"] == "keras" else {}
        return keras.models.load_model(str(src), custom_objects=objs, compile=False, **kw)


def output_names(model) -> list[str]:
    names = list(model.output_names)
    if len(set(names)) != len(names):
        raise ModelFileError(f"the model's output names are not unique: {names}")
    return names


def input_columns(model) -> int:
    """Leads (columns) the model's input takes: 12, or 1 for a strip file."""
    shape = model.inputs[0].shape
    return int(shape[-1]) if shape[-1] is not None else len(LEADS)


def _probes(n: int = 2, columns: int = len(LEADS)) -> np.ndarray:
    """Inputs for checking an exported twin: normalised noise and a smooth ECG-like wave."""
    rng = np.random.default_rng(17)
    noise = rng.normal(size=(N_SAMPLES, columns))
    t = np.arange(N_SAMPLES) / FS
    wave = np.stack([np.sin(2 * np.pi * 1.2 * t * (1 + k / 12)) ** 15 for k in range(columns)], axis=1)
    return normalise(np.stack([noise, wave][:n]))


def verify_onnx_twin(model, onnx_bytes: bytes, atol: float = 1e-3) -> dict[str, float]:
    """Run the Keras model and its ONNX twin on the same inputs and compare every output **by name**
    (the Keras model's own output names). Raises ModelFileError naming any head that is missing,
    extra, or gives different numbers. Returns the largest difference per head."""
    import onnxruntime as ort

    names = output_names(model)
    try:
        sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ModelFileError(f"the ONNX conversion of this model does not run in ONNX Runtime ({msg}); "
                             "it keeps running with Keras") from None
    onnx_names = [o.name for o in sess.get_outputs()]
    if sorted(onnx_names) != sorted(names):
        raise ModelFileError(f"the ONNX twin's outputs {sorted(onnx_names)} are not the model's heads {sorted(names)}")
    x = _probes(columns=input_columns(model))
    got = dict(zip(onnx_names, sess.run(None, {sess.get_inputs()[0].name: x})))
    ref = model(x, training=False)
    ref = ref if isinstance(ref, (list, tuple)) else [ref]
    want = {n: np.asarray(v) for n, v in zip(names, ref)}
    diffs = {}
    for n in names:
        a, b = np.asarray(got[n], np.float64), np.asarray(want[n], np.float64)
        diffs[n] = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    wrong = [n for n, d in diffs.items() if not d <= atol]
    if wrong:
        raise ModelFileError("the ONNX twin disagrees with the Keras model on "
                             + ", ".join(f"{n} (max |diff| {diffs[n]:.3g})" for n in wrong)
                             + "; not writing it")
    return diffs


def _erfc_as_one_minus_erf(ctx, node, name, args):
    """tf2onnx handler: TensorFlow's Erfc (Keras 3's exact GELU) has no ONNX op; write 1 − Erf(x)."""
    from tf2onnx import utils

    dtype = ctx.get_dtype(node.input[0])
    one = ctx.make_const(utils.make_name("erfc_one"), np.array(1, dtype=utils.map_onnx_to_numpy_type(dtype)))
    node.type = "Erf"
    ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(node.name + "_one_minus"),
                                  inputs=[one.output[0], node.output[0]])
    return node


def export_onnx_file(model, out: str | Path, opset: int = 17) -> Path:
    """Convert a loaded Keras model to ONNX with tf2onnx and check it by name before writing.

    The graph is traced as a function returning ``{head name: tensor}`` built from the model's own
    ``output_names``/outputs pairing, so each ONNX output carries its head's name whatever order
    tf2onnx emits them in; ``verify_onnx_twin`` then compares both models head by head.
    """
    from inference.frameworks import import_tensorflow

    tf = import_tensorflow()
    import tf2onnx

    out = Path(out)
    names = output_names(model)
    in_name = str(getattr(model.inputs[0], "name", INPUT_NAME) or INPUT_NAME).split(":")[0]
    spec = [tf.TensorSpec((None, N_SAMPLES, input_columns(model)), tf.float32, name=in_name)]

    @tf.function(input_signature=spec)
    def heads(x):
        ys = model(x, training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        return {n: tf.identity(y, name=n) for n, y in zip(names, ys)}

    model_proto, _ = tf2onnx.convert.from_function(heads, input_signature=spec, opset=opset,
                                                   custom_op_handlers={"Erfc": (_erfc_as_one_minus_erf, [])})
    data = model_proto.SerializeToString()
    verify_onnx_twin(model, data)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return out

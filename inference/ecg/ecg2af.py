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
file is loaded by ``load_keras`` exactly as the authors do (``load_model(..., compile=False)``).
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
                  "Functional", "Model"}


def normalise(x: np.ndarray) -> np.ndarray:
    """ML4H ZeroMeanStd1 over the whole (5000, 12) tensor (one ECG); batched: per ECG."""
    x = np.asarray(x, dtype=np.float32)
    axes = tuple(range(x.ndim - 2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    return ((x - mean) / (std + EPS)).astype(np.float32)


# -- decoding ---------------------------------------------------------------------------------
def survival_curve(pred: np.ndarray) -> np.ndarray:
    """Cumulative AF-free probability at the end of each of the 25 intervals (one ECG)."""
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    return np.cumprod(p[:SURVIVAL_INTERVALS])


def decode(outputs: dict[str, np.ndarray], index: int = 0) -> dict[str, Any]:
    """The four heads decoded as the authors do, for ECG ``index`` of a batch."""
    surv = survival_curve(np.asarray(outputs[OUT_SURVIVAL])[index])
    sex = np.asarray(outputs[OUT_SEX], dtype=np.float64)[index].reshape(-1)
    age = float(np.asarray(outputs[OUT_AGE], dtype=np.float64)[index].reshape(-1)[0])
    af = np.asarray(outputs[OUT_AF], dtype=np.float64)[index].reshape(-1)
    days = [round((i + 1) * DAYS_PER_INTERVAL, 1) for i in range(SURVIVAL_INTERVALS)]
    return {
        "af_risk_5y": float(1.0 - surv[-1]),
        "sex_male_probability": float(sex[1]),
        "sex_female_probability": float(sex[0]),
        "age_years": age * AGE_STD + AGE_MEAN,
        "af_in_read_probability": float(af[1]),
        "survival_days": days,
        "af_free_survival": [float(v) for v in surv],
    }


# -- the graph --------------------------------------------------------------------------------
def _keras():
    from inference.frameworks import import_tensorflow

    import_tensorflow()  # torch/Triton first: see inference/frameworks.py
    import tf_keras

    return tf_keras


def custom_objects() -> dict[str, Any]:
    """What ``ml4h.models.model_factory.get_custom_objects`` supplies that a forward pass can need.

    With ``compile=False`` losses and metrics are not deserialised; activations are. ML4H models use
    'swish' (built in) and, in some versions, a custom 'mish'.
    """
    from inference.frameworks import import_tensorflow

    tf = import_tensorflow()

    def mish(x):
        return x * tf.math.tanh(tf.math.softplus(x))

    def swish(x):
        return x * tf.math.sigmoid(x)

    return {"mish": mish, "swish": swish}


def build_model(*, conv_width: int = 71, conv_layers: tuple[int, ...] = (32,),
                dense_blocks: tuple[int, ...] = (32, 32, 32), block_size: int = 3,
                dense_layers: tuple[int, ...] = (256,), activation: str = "swish", pool: int = 2,
                seed: int = 0):
    """An ECG2AF-family graph (ML4H ``ConvEncoderBlock`` + four heads) with seeded random weights.

    Defaults are ML4H's recipe defaults. Input/output names and shapes are those of the published file.
    """
    keras = _keras()
    L = keras.layers
    keras.utils.set_random_seed(seed)
    inp = keras.Input(shape=(N_SAMPLES, len(LEADS)), name=INPUT_NAME)
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
    outs = [L.Dense(OUTPUT_UNITS[n][0], activation=OUTPUT_UNITS[n][1], name=n)(x) for n in OUTPUT_NAMES]
    return keras.Model(inp, outs, name="ecg2af_family")


def save_official_format(model, path: str | Path) -> Path:
    """Save as the published file is stored: a Keras HDF5 file (model_config + weights)."""
    path = Path(path)
    model.save(str(path), save_format="h5", include_optimizer=False)
    return path


def make_test_checkpoint(path: str | Path, seed: int = 0, small: bool = True) -> Path:
    """A random-weights checkpoint in the official .h5 format (tests: small; benchmark: full size)."""
    kw = dict(conv_width=15, conv_layers=(8,), dense_blocks=(8, 8, 8), block_size=2,
              dense_layers=(16,)) if small else {}
    return save_official_format(build_model(seed=seed, **kw), path)


# -- loading the real file --------------------------------------------------------------------
class ModelFileError(Exception):
    pass


def inspect_h5(path: str | Path, trusted: bool = False) -> dict[str, Any]:
    """Read the Keras HDF5 model config without building anything, and check what it contains.

    ``trusted``: the file's sha256 is the published one, so its content is what the authors released;
    the layer allowlist and name checks then only inform (they guard non-official files).
    """
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            keras_version = f.attrs.get("keras_version")
    except OSError as e:
        raise ModelFileError(f"{Path(path).name} is not a Keras HDF5 model file ({e})") from None
    if raw is None:
        raise ModelFileError(f"{Path(path).name} holds weights only (no model_config); ECG2AF is a full "
                             "Keras model file")
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    cfg = json.loads(raw)
    layers = cfg.get("config", {}).get("layers", [])
    classes = {layer.get("class_name") for layer in layers}
    bad = sorted(c for c in classes if c not in ALLOWED_LAYERS)
    if bad and not trusted:
        raise ModelFileError(f"{Path(path).name} contains layer types {', '.join(bad)} that ECG2AF does not "
                             "use; refusing to deserialise it (a Lambda layer would run code)")
    names = {layer.get("name") for layer in layers}
    missing = [n for n in (INPUT_NAME, *OUTPUT_NAMES) if n not in names]
    if missing and not trusted:
        raise ModelFileError(f"{Path(path).name} is not an ECG2AF model: missing {', '.join(missing)}")
    if isinstance(keras_version, bytes):
        keras_version = keras_version.decode()
    return {"layers": len(layers), "keras_version": keras_version}


def load_keras(path: str | Path, trusted: bool = False):
    """The authors' loading path: tf-keras ``load_model(h5, custom_objects=..., compile=False)``.

    The HDF5 format has no ``safe_mode`` (that exists only for the .keras format), so the config is
    inspected first and files with code-carrying layers are refused unless they are the published file.
    """
    inspect_h5(path, trusted=trusted)
    keras = _keras()
    return keras.models.load_model(str(path), custom_objects=custom_objects(), compile=False)


def export_onnx_file(model, out: str | Path, opset: int = 17) -> Path:
    """Convert a loaded Keras model to ONNX with tf2onnx (same input and output names)."""
    from inference.frameworks import import_tensorflow

    tf = import_tensorflow()
    import tf2onnx

    out = Path(out)
    spec = (tf.TensorSpec((None, N_SAMPLES, len(LEADS)), tf.float32, name=INPUT_NAME),)
    model_proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    # tf2onnx names graph outputs after the Keras output layers; keep them exactly
    names = list(model.output_names)
    for o, n in zip(model_proto.graph.output, names):
        if o.name != n:
            for node in model_proto.graph.node:
                node.output[:] = [n if x == o.name else x for x in node.output]
            o.name = n
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model_proto.SerializeToString())
    return out

"""The objects an ML4H model file may name, written for Lightbox, for both Keras generations.

ML4H loads its models with ``load_model(file, custom_objects=get_custom_objects(output_maps))``.
In the tensorflow-addons era (the 2021 ECG2AF file up to April 2025) that dictionary held:

- activations ``swish`` (x·σ(x)), ``gelu`` (tensorflow-addons: the tanh approximation by default),
  ``lisht`` (x·tanh x) and ``mish`` (x·tanh(softplus x)). ML4H builds ``Activation(fn)``, so an
  addons function is stored under its registered name ``Addons>gelu`` / ``Addons>mish`` /
  ``Addons>lisht``; both spellings are accepted here;
- normalisation layers ``InstanceNormalization`` (addons ``GroupNormalization`` with one group per
  channel; ε = 1e-3; weights gamma then beta) and ``PoincareNormalize`` (axis 1, ε = 1e-5), stored as
  ``Addons>InstanceNormalization`` / ``Addons>PoincareNormalize``;
- the metric functions of the output tensor maps: ``pearson``, ``<label>_precision`` and
  ``<label>_recall`` for each class label, and ``loss``.

Lightbox loads with ``compile=False`` (as ML4H's own loader does), so metrics and optimisers are
never deserialised; they are registered so that nothing a real file names is missing. Everything
here is plain TensorFlow arithmetic: no code is read from a model file.

Since ML4H moved to Keras 3 (TF 2.19, May 2025) ``gelu`` is Keras' exact (erf) GELU and the addons
names are gone; files saved by Keras 3 therefore keep Keras' own ``gelu`` while ``Addons>gelu`` is
always the addons (approximate) one.
"""
from __future__ import annotations

import math
from typing import Any

ADDONS = "Addons>"
#: class labels of the ECG2AF categorical heads (2021: af_dummy, sex_dummy3; 2024: af_dummy2,
#: sex_dummy1 / sex_dummy), whose per-class precision/recall metrics a compiled file names
METRIC_LABELS = ("female", "male", "no_atrial_fibrillation", "atrial_fibrillation",
                 "Sex_Female_0_0", "Sex_Male_0_0", "no_af_in_read", "af_in_read")
SURVIVAL_INTERVALS = 25
LAYER_NAMES = ("InstanceNormalization", "PoincareNormalize")


def _tf():
    from inference.frameworks import import_tensorflow

    return import_tensorflow()


# -- activations ------------------------------------------------------------------------------------
def swish(x):
    tf = _tf()
    return x * tf.math.sigmoid(x)


def mish(x):
    tf = _tf()
    return x * tf.math.tanh(tf.math.softplus(x))


def lisht(x):
    tf = _tf()
    return x * tf.math.tanh(x)


def gelu_tanh(x):
    """tensorflow-addons ``gelu(x, approximate=True)``: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    tf = _tf()
    c = math.sqrt(2.0 / math.pi)
    return 0.5 * x * (1.0 + tf.math.tanh(c * (x + 0.044715 * tf.math.pow(x, 3))))


def gelu_erf(x):
    """Keras' ``gelu`` (approximate=False): x·Φ(x) = 0.5·x·(1 + erf(x/√2))."""
    tf = _tf()
    return 0.5 * x * (1.0 + tf.math.erf(x / math.sqrt(2.0)))


# -- metric functions (only a compiled load would look them up) --------------------------------------
def pearson(y_true, y_pred):
    tf = _tf()
    t = y_true - tf.reduce_mean(y_true, axis=-1, keepdims=True)
    p = y_pred - tf.reduce_mean(y_pred, axis=-1, keepdims=True)
    t = tf.math.l2_normalize(t, axis=-1)
    p = tf.math.l2_normalize(p, axis=-1)
    return tf.reduce_sum(t * p, axis=-1)


def _per_class(label: str, index: int, kind: str):
    def metric(y_true, y_pred):
        tf = _tf()
        eps = 1e-7
        tp = tf.reduce_sum(tf.round(tf.clip_by_value(y_true * y_pred, 0.0, 1.0)), axis=0)
        ref = y_pred if kind == "precision" else y_true
        denom = tf.reduce_sum(tf.round(tf.clip_by_value(ref, 0.0, 1.0)), axis=0)
        return tp[index] / (denom[index] + eps)

    metric.__name__ = f"{label.replace('-', '_').replace(' ', '_')}_{kind}"
    return metric


def survival_likelihood_loss(n_intervals: int = SURVIVAL_INTERVALS):
    """Negative log-likelihood of the discrete-time survival target (first half: survived each
    interval; second half: event in that interval)."""
    def loss(y_true, y_pred):
        tf = _tf()
        eps = 1e-7
        n = n_intervals
        failure = 1.0 - y_true[:, n:] * y_pred[:, :n]
        survival = y_true[:, :n] * y_pred[:, :n] + (1.0 - y_true[:, :n])
        both = tf.clip_by_value(tf.concat([survival, failure], axis=-1), eps, float("inf"))
        return tf.reduce_sum(-tf.math.log(both), axis=-1)

    return loss


def metric_functions() -> dict[str, Any]:
    out: dict[str, Any] = {"pearson": pearson, "loss": survival_likelihood_loss()}
    for pair in (METRIC_LABELS[0:2], METRIC_LABELS[2:4], METRIC_LABELS[4:6], METRIC_LABELS[6:8]):
        for i, label in enumerate(pair):
            for kind in ("precision", "recall"):
                f = _per_class(label, i, kind)
                out[f.__name__] = f
    return out


# -- layers -----------------------------------------------------------------------------------------
def _layer_classes(keras) -> dict[str, type]:
    """InstanceNormalization and PoincareNormalize as subclasses of *this* Keras' Layer."""
    tf = _tf()

    class InstanceNormalization(keras.layers.Layer):
        """Per sample and channel: (x − mean) / √(var + ε) · gamma + beta, moments over every other
        non-batch axis (population variance), as tensorflow-addons computes it."""

        def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                     gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None,
                     beta_constraint=None, gamma_constraint=None, groups=None, **kwargs):
            super().__init__(**kwargs)
            if axis == 0:
                raise ValueError("InstanceNormalization cannot normalise the batch axis")
            self.axis = int(axis)
            self.epsilon = float(epsilon)
            self.center, self.scale = bool(center), bool(scale)
            self.beta_initializer = keras.initializers.get(beta_initializer)
            self.gamma_initializer = keras.initializers.get(gamma_initializer)
            self.beta_regularizer = keras.regularizers.get(beta_regularizer)
            self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
            self.beta_constraint = keras.constraints.get(beta_constraint)
            self.gamma_constraint = keras.constraints.get(gamma_constraint)
            self.groups = -1  # addons overwrites any stored value: one group per channel

        def build(self, input_shape):
            dim = input_shape[self.axis]
            if dim is None:
                raise ValueError("InstanceNormalization needs a defined channel dimension")
            self.groups = int(dim)
            # same order and names as addons: gamma, then beta
            self.gamma = self.add_weight(name="gamma", shape=(int(dim),), initializer=self.gamma_initializer,
                                         regularizer=self.gamma_regularizer, constraint=self.gamma_constraint) \
                if self.scale else None
            self.beta = self.add_weight(name="beta", shape=(int(dim),), initializer=self.beta_initializer,
                                        regularizer=self.beta_regularizer, constraint=self.beta_constraint) \
                if self.center else None
            super().build(input_shape)

        def call(self, inputs):
            rank = len(inputs.shape)
            axis = self.axis % rank
            reduce = [i for i in range(1, rank) if i != axis]
            mean, var = tf.nn.moments(inputs, reduce, keepdims=True)
            shape = [1] * rank
            shape[axis] = -1
            gamma = tf.reshape(self.gamma, shape) if self.gamma is not None else None
            beta = tf.reshape(self.beta, shape) if self.beta is not None else None
            return tf.nn.batch_normalization(inputs, mean, var, beta, gamma, self.epsilon)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "groups": self.groups, "axis": self.axis, "epsilon": self.epsilon,
                    "center": self.center, "scale": self.scale,
                    "beta_initializer": keras.initializers.serialize(self.beta_initializer),
                    "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
                    "beta_regularizer": keras.regularizers.serialize(self.beta_regularizer),
                    "gamma_regularizer": keras.regularizers.serialize(self.gamma_regularizer),
                    "beta_constraint": keras.constraints.serialize(self.beta_constraint),
                    "gamma_constraint": keras.constraints.serialize(self.gamma_constraint)}

    class PoincareNormalize(keras.layers.Layer):
        """x · min((1 − ε) / ‖x‖, 1) along ``axis``: projection into the Poincaré ball."""

        def __init__(self, axis=1, epsilon=1e-5, **kwargs):
            super().__init__(**kwargs)
            self.axis = axis if axis is None or isinstance(axis, int) else list(axis)
            self.epsilon = float(epsilon)

        def call(self, inputs):
            square_sum = tf.reduce_sum(tf.square(inputs), self.axis, keepdims=True)
            inv = tf.math.minimum((1.0 - self.epsilon) * tf.math.rsqrt(square_sum), 1.0)
            return inputs * inv

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}

    return {"InstanceNormalization": InstanceNormalization, "PoincareNormalize": PoincareNormalize}


_LAYERS: dict[int, dict[str, type]] = {}


def custom_objects(keras, generation: int) -> dict[str, Any]:
    """Everything ML4H's ``get_custom_objects`` registers that an ECG2AF-family file may name.

    ``keras``: the module that will load the file (``tf_keras`` for files saved by Keras 2,
    ``keras`` for files saved by Keras 3); ``generation``: 2 or 3 (decides what bare ``gelu`` means).
    """
    layers = _LAYERS.get(id(keras))
    if layers is None:
        layers = _LAYERS[id(keras)] = _layer_classes(keras)
    objs: dict[str, Any] = {"swish": swish, "silu": swish, "mish": mish, "lisht": lisht,
                            ADDONS + "gelu": gelu_tanh, ADDONS + "mish": mish, ADDONS + "lisht": lisht}
    if generation < 3:
        objs["gelu"] = gelu_tanh  # ML4H's get_custom_objects maps 'gelu' to the addons function
    for name, cls in layers.items():
        objs[name] = cls
        objs[ADDONS + name] = cls
    objs.update(metric_functions())
    return objs

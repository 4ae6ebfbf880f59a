"""Heart sounds: the Keras .h5 import path (TensorFlow; slow to import, so kept in its own file)."""
from __future__ import annotations

import pytest


@pytest.mark.slow
def test_keras_h5_import(tmp_path, registry):
    """The TensorFlow path: a Keras .h5 heart-sound CNN with the manifest's input spec."""
    pytest.importorskip("tf_keras")
    import os

    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tf_keras as keras

    from inference.pcg.demo import make
    from inference.detect import open_study
    from inference.pipeline import analyse

    inp = registry.get("heart-sound-keras").inputs
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.Input((inp["n_mels"], inp["frames"], 1)),
                          keras.layers.Conv2D(4, 3, strides=4, activation="relu"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2, activation="softmax")])
    h5 = tmp_path / "cardiac_cnn_model.h5"
    m.save(h5)
    st = registry.install(h5, "heart-sound-keras", unofficial=True)
    assert st.status == "demo"
    r = analyse(open_study(make(tmp_path)), "heart-sound-keras", registry)
    assert r.runtime == "keras" and not r.clinical
    assert sum(r.outputs["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert r.outputs["windows"] >= 3 and r.outputs["heart_rate_bpm"] == pytest.approx(72, abs=3)

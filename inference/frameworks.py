"""Importing TensorFlow beside PyTorch in one process.

Loading TensorFlow before Triton (which torch/torchvision pull in through torch._dynamo) makes the later
Triton import crash the process with a segmentation fault (seen with tensorflow-cpu 2.21 and torch 2.14.1).
Loading torch and Triton first is safe, so every TensorFlow import in Lightbox goes through here.
"""
from __future__ import annotations

import importlib
import os


def import_tensorflow():
    """``tensorflow`` (and ``tf_keras``), loaded after torch/Triton when they are installed."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("torch", "triton"):
        try:
            importlib.import_module(name)
        except Exception:  # not installed, or unusable here: nothing to order against
            pass
    import tensorflow as tf

    return tf

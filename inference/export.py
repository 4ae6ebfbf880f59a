"""``lightbox weights export MODEL``: write a model's ONNX twin beside its verified weights.

Each pipeline module that supports it provides ``export_onnx(registry, model_id) -> Path``; the file
is named after the source weights' sha256 (``Registry.derived_path``), so it always traces back to
the exact weights it came from.
"""
from __future__ import annotations

from pathlib import Path

from inference.pipeline import pipeline_module
from inference.registry import Registry, WeightsError


def export_onnx(model_id: str, registry: Registry | None = None) -> Path:
    registry = registry or Registry()
    entry = registry.get(model_id)
    mod = pipeline_module(entry.modality)
    if not hasattr(mod, "export_onnx"):
        raise WeightsError(f"{entry.title}: no ONNX export for this model")
    return Path(mod.export_onnx(registry, model_id))

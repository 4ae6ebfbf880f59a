"""Pipelines: preprocess -> runtime -> decode -> Result, one module per modality.

Each modality's pipeline module (``inference.<modality>.pipeline``, named in ``inference.modalities``)
provides::

    MODELS: tuple[str, ...]                      # model ids it can run, default first
    def analyse(study, model_id, registry, ctx) -> Result

``ctx`` (a ``JobContext``) carries progress reporting and cancellation, so the same function
runs under the app's worker threads, the batch runner and the tests.
"""
from __future__ import annotations

import threading
from typing import Callable

from inference import modalities
from inference.registry import Registry, default_registry
from inference.results import Result
from inference.study import Study


class Cancelled(Exception):
    """The user cancelled the job."""


class JobContext:
    def __init__(self, progress: Callable[[float, str], None] | None = None,
                 cancel: threading.Event | None = None):
        self._progress = progress
        self.cancel_event = cancel or threading.Event()

    def progress(self, fraction: float, text: str = "") -> None:
        self.check()
        if self._progress:
            self._progress(max(0.0, min(1.0, fraction)), text)

    def check(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled("cancelled")

    def cancel(self) -> None:
        self.cancel_event.set()


def pipeline_module(modality: str):
    return modalities.part(modality, "pipeline")


def models_for(modality: str) -> tuple[str, ...]:
    return tuple(pipeline_module(modality).MODELS)


def usable(model_id: str, registry: Registry) -> bool:
    """A manifest model whose weights are usable, or a model-free analysis (not in the manifest)."""
    if model_id not in registry.entries:
        return True
    return registry.state(model_id).usable


def default_model(modality: str, registry: Registry) -> str:
    """The first model of the modality that can run now (MODELS order), else the first one."""
    ids = models_for(modality)
    if not ids:
        raise ValueError(f"no model for {modality}")
    return next((m for m in ids if usable(m, registry)), ids[0])


def analyse(study: Study, model_id: str | None = None, registry: Registry | None = None,
            ctx: JobContext | None = None) -> Result:
    registry = registry or default_registry()
    mod = pipeline_module(study.modality)
    model_id = model_id or default_model(study.modality, registry)
    return mod.analyse(study, model_id, registry, ctx or JobContext())

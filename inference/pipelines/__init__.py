"""Pipelines: preprocess -> runtime -> decode -> Result, one module per modality.

Each ``inference.pipelines.<modality>`` module provides::

    MODELS: tuple[str, ...]                      # model ids it can run, default first
    def analyse(study, model_id, registry, ctx) -> Result

``ctx`` (a ``JobContext``) carries progress reporting and cancellation, so the same function
runs under the app's worker threads, the batch runner and the tests.
"""
from __future__ import annotations

import importlib
import threading
from typing import Callable

from ..registry import Registry, default_registry
from ..results import Result
from ..study import Study


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
    return importlib.import_module(f"inference.pipelines.{modality}")


def models_for(modality: str) -> tuple[str, ...]:
    try:
        return tuple(pipeline_module(modality).MODELS)
    except ModuleNotFoundError:
        return ()


def analyse(study: Study, model_id: str | None = None, registry: Registry | None = None,
            ctx: JobContext | None = None) -> Result:
    mod = pipeline_module(study.modality)
    model_id = model_id or mod.MODELS[0]
    return mod.analyse(study, model_id, registry or default_registry(), ctx or JobContext())

"""The app's side of the modality table: each modality's viewer and PDF section.

The inference side (reader, pipeline, demo, bench) is ``inference/modalities.py``. Modules are named in
full and imported on first use, so a viewer's heavy imports (pyqtgraph, OpenCV, audio) load only when a
study of that modality is opened.

A report module provides ``sections(study, results, store, study_id, extra) -> list[Flowable]`` and may
set ``PAGESIZE``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from inference import modalities


@dataclass(frozen=True)
class AppModality:
    key: str
    viewer: str   # "module:Class"
    report: str   # module


TABLE: tuple[AppModality, ...] = (
    AppModality("ecg", "app.ecg.viewer:EcgViewer", "app.ecg.report"),
    AppModality("pcg", "app.pcg.viewer:PcgViewer", "app.pcg.report"),
    AppModality("echo", "app.echo.viewer:EchoViewer", "app.echo.report"),
    AppModality("xray", "app.xray.viewer:XrayViewer", "app.xray.report"),
    AppModality("endo", "app.endo.viewer:EndoViewer", "app.endo.report"),
)
BY_KEY = {m.key: m for m in TABLE}
assert set(BY_KEY) == set(modalities.KEYS), "app/modalities.py and inference/modalities.py must list the same modalities"


def viewer_class(modality: str):
    """The viewer class for a modality (the generic viewer for an unknown one)."""
    row = BY_KEY.get(modality)
    if row is None:
        from app.widgets.viewer_base import GenericViewer

        return GenericViewer
    mod_name, cls_name = row.viewer.split(":")
    return getattr(importlib.import_module(mod_name), cls_name)


def new_viewer(modality: str, ctx):
    """A viewer for ``modality`` whose right-dock panel (``result_widget``: parentless until the dock shows
    it) is deleted with the viewer. The panel's buttons hold the viewer through their connections' lambdas,
    a reference the collector cannot see, so without this a closed window or compare kept both alive
    (the soak: +126 widgets per closed window)."""
    v = viewer_class(modality)(ctx)
    panel = v.result_widget()
    if panel is not None:
        v.destroyed.connect(panel.deleteLater)
    return v


def report_module(modality: str) -> ModuleType | None:
    row = BY_KEY.get(modality)
    return importlib.import_module(row.report) if row else None

"""The viewer contract.

A viewer is a QWidget fed a Study (already read, on a worker) and, when there is one, a Result.
It never reads files or runs models itself: it asks the main window (``request_analysis``) and
the main window runs the pipeline through ``app.jobs``.
"""
from __future__ import annotations

import json

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from app.context import AppContext
from inference.results import Result
from inference.study import Study


class ViewerBase(QWidget):
    modality: str = ""
    #: emitted to ask the main window to run a model on the current study (model id or "")
    request_analysis = Signal(str)
    #: emitted with a short message for the status bar
    status_message = Signal(str)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.study: Study | None = None
        self.study_id: int | None = None
        self.result: Result | None = None

    # -- contract -----------------------------------------------------------------------------
    def set_study(self, study: Study, study_id: int) -> None:
        self.study, self.study_id, self.result = study, study_id, None

    def set_result(self, result: Result | None) -> None:
        """Show a result (overlays, markers). Called with stored results when a study is reopened."""
        self.result = result

    def set_selected_model(self, model_id: str | None) -> None:
        """The model chosen in the results panel (so an empty panel can say what that model will show)."""

    def result_widget(self) -> QWidget | None:
        """An extra modality panel for the right dock (charts, practice loop); None for none."""
        return None

    def hides_results(self) -> bool:
        """True while the results must stay hidden (blinded practice before the estimate is locked)."""
        return False

    def model_ids(self) -> tuple[str, ...]:
        from inference.pipeline import models_for

        return models_for(self.modality)

    def shutdown(self) -> None:
        """Stop playback/timers before the window closes."""


class GenericViewer(ViewerBase):
    """Shows a study's metadata; used for a modality whose viewer is not built yet."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(ctx, parent)
        lay = QVBoxLayout(self)
        self.title = QLabel("")
        self.title.setObjectName("headline")
        self.text = QPlainTextEdit(readOnly=True)
        lay.addWidget(self.title)
        lay.addWidget(self.text)

    def set_study(self, study: Study, study_id: int) -> None:
        super().set_study(study, study_id)
        self.title.setText(f"{study.title}: {study.name}")
        self.text.setPlainText(json.dumps(study.metadata, indent=2, default=str))

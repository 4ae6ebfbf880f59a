"""Models ▸ Validate on my cases…: pick a model and a label file, run ``inference.evaluate`` on a worker
(progress, cancel; an interrupted run resumes from its journal), then store the validation and write
its PDF. The worker opens its own database connection (SQLite WAL): the UI's connection is never used
from two threads."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QComboBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit,
                               QPlainTextEdit, QProgressBar, QPushButton, QVBoxLayout, QWidget)

from app.validation.cli import run_validation
from app.widgets import user_state
from inference import evaluate as E
from inference import site_points


def validatable_models(registry) -> list[str]:
    """Manifest models this code knows how to score: in the adapter table, or with classes in the manifest."""
    out = []
    for mid, entry in registry.entries.items():
        if mid in E.ADAPTERS or len(entry.outputs.get("classes") or ()) >= 2:
            out.append(mid)
    return out


class ValidateDialog(QDialog):
    validated = Signal(str)  # model id

    def __init__(self, ctx, parent: QWidget | None = None, model_id: str | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.job = None
        self.ev: dict | None = None
        self.setWindowTitle("Validate a model on my cases")
        lay = QVBoxLayout(self)
        intro = QLabel("A label file (CSV) names each case's file and its reference: <code>file,label</code> for "
                       "classifiers, <code>file,ef</code> for EF (or EchoNet's FileList.csv as it is), "
                       "<code>file,mask</code> for segmentation. Paths are relative to the CSV. The model runs as in "
                       "the app; cases that cannot be read are listed, not dropped.")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        form = QFormLayout()
        self.model = QComboBox()
        for mid in validatable_models(ctx.registry):
            self.model.addItem(f"{ctx.registry.entries[mid].title} ({mid})", mid)
        if model_id:
            i = self.model.findData(model_id)
            if i >= 0:
                self.model.setCurrentIndex(i)
        form.addRow("Model", self.model)
        self.labels = QLineEdit()
        self.labels.setPlaceholderText("LABELS.csv")
        pick = QPushButton("Choose…")
        pick.clicked.connect(self._choose_labels)
        row = QHBoxLayout()
        row.addWidget(self.labels, 1)
        row.addWidget(pick)
        form.addRow("Label file", row)
        self.out = QLineEdit()
        self.out.setPlaceholderText("beside the label file")
        form.addRow("Output folder", self.out)
        self.split = QLineEdit()
        self.split.setPlaceholderText("all rows (e.g. TEST for a FileList.csv)")
        form.addRow("Split", self.split)
        lay.addLayout(form)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.bar)
        lay.addWidget(self.status)
        self.summary = QPlainTextEdit()
        self.summary.setReadOnly(True)
        lay.addWidget(self.summary, 1)
        self.adopt_box = QWidget()
        arow = QHBoxLayout(self.adopt_box)
        arow.setContentsMargins(0, 0, 0, 0)
        arow.addWidget(QLabel("Adopt as this site's operating point: sensitivity ≥"))
        self.target = QComboBox()
        for t in (0.90, 0.93, 0.95, 0.97):
            self.target.addItem(f"{t:.2f}", t)
        self.target.setCurrentIndex(2)
        arow.addWidget(self.target)
        self.adopter = QLineEdit()
        self.adopter.setPlaceholderText("your name (recorded)")
        arow.addWidget(self.adopter, 1)
        self.adopt_btn = QPushButton("Adopt")
        self.adopt_btn.clicked.connect(self.adopt)
        arow.addWidget(self.adopt_btn)
        self.adopt_box.hide()
        lay.addWidget(self.adopt_box)
        row = QHBoxLayout()
        self.run_btn = QPushButton("Validate")
        self.run_btn.setObjectName("primary")
        self.run_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.cancel)
        self.cancel_btn.setEnabled(False)
        self.pdf_btn = QPushButton("Open PDF")
        self.pdf_btn.setEnabled(False)
        self.pdf_btn.clicked.connect(self._open_pdf)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        row.addWidget(self.run_btn)
        row.addWidget(self.cancel_btn)
        row.addStretch(1)
        row.addWidget(self.pdf_btn)
        row.addWidget(close)
        lay.addLayout(row)
        if not self.model.count():
            self.status.setText("No installed model can be validated yet.")
            self.run_btn.setEnabled(False)
        user_state.restore(self, "validate", (760, 560))

    def _choose_labels(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Label file", str(Path.home()), "CSV (*.csv);;All files (*)")
        if f:
            self.labels.setText(f)

    def start(self) -> None:
        mid = self.model.currentData()
        labels = self.labels.text().strip()
        if not mid or not labels:
            self.status.setText("Choose a model and a label file.")
            return
        try:  # a wrong file is said now, not after a worker starts
            E.read_labels(labels, split=self.split.text().strip() or None)
        except E.LabelError as e:
            self.status.setText(f"<span style='color:#e5534b'>{e}</span>")
            return
        out = self.out.text().strip() or None
        db, split, registry = self.ctx.store.path, self.split.text().strip(), self.ctx.registry
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.pdf_btn.setEnabled(False)
        self.bar.setValue(0)
        self.bar.show()
        self.summary.clear()
        self.status.setText(f"Validating {mid}…")
        self.job = self.ctx.jobs.start(
            f"Validating {mid}", lambda ctx: run_validation(mid, labels, out, db, split, ctx, registry),
            on_result=self._done, on_error=self._failed, on_progress=self._progress, on_cancelled=self._cancelled)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.status.setText("Cancelling after the current case…")

    def _progress(self, f: float, text: str) -> None:
        self.bar.setValue(int(1000 * f))
        self.status.setText(text)

    def _finish(self) -> None:
        self.job = None
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.bar.hide()

    def _done(self, ev: dict) -> None:
        self._finish()
        self.ev = ev
        self.status.setText(f"Stored as this model's local validation: <b>{ev['headline']}</b> on "
                            f"{ev['n_cases']} cases. Written to {ev['out_dir']}")
        self.summary.setPlainText("\n".join(E.summary_lines(ev)))
        self.pdf_btn.setEnabled(True)
        self.adopt_box.setVisible(ev.get("model_id") in site_points.SUPPORTED and ev.get("kind") == "classification")
        self.validated.emit(ev["model_id"])

    def adopt(self) -> None:
        """Adopt the operating point read off these cases (inference.site_points); a refusal is said here."""
        if not self.ev:
            return
        mid = self.ev["model_id"]
        try:
            st = self.ctx.registry.state(mid)
            pt = site_points.adopt(self.ev["out_dir"], float(self.target.currentData()), self.adopter.text(),
                                   installed_sha256=st.sha256 or "")
        except site_points.SitePointError as e:
            self.status.setText(f"<span style='color:#e5534b'>{e}</span>")
            return
        self.status.setText(f"Adopted for {mid}: threshold <b>{pt.threshold:.4g}</b> ({pt.describe()}). "
                            f"Chosen on these cases, so optimistic for them: confirm it on a later set.")
        self.adopt_box.hide()

    def _failed(self, msg: str) -> None:
        self._finish()
        self.status.setText(f"<span style='color:#e5534b'>{msg}</span>")

    def _cancelled(self) -> None:
        self._finish()
        self.status.setText("Cancelled. The cases already run are kept: validating again resumes from there.")

    def _open_pdf(self) -> None:
        if self.ev and self.ev.get("pdf"):
            QDesktopServices.openUrl(QUrl.fromLocalFile(self.ev["pdf"]))

    def closeEvent(self, ev) -> None:
        user_state.save(self, "validate")
        if self.job is not None:
            self.job.cancel()
        super().closeEvent(ev)

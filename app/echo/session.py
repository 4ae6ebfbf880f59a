"""Echo case library dialogs: import a teaching set, start a timed practice session, the session summary.

The session itself runs in the echo viewer (``EchoViewer.start_session``): N random loops of a set one
after another, blinded, each timed from the loop shown to the estimate locked; the reveal shows the expert
EF (and the AI EF where EchoNet ran); at the end ``SessionSummaryDialog`` shows MAE, bias, limits of
agreement and category agreement, exportable as PDF.
"""
from __future__ import annotations

from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout,
                               QHeaderView, QInputDialog, QLabel, QLineEdit, QPushButton, QSpinBox, QTableWidget,
                               QTableWidgetItem, QVBoxLayout)

from app.echo import library as lib


class ImportSetDialog(QDialog):
    """Choose the CSV (and a set name); the import runs on a worker."""

    def __init__(self, parent, ctx):
        super().__init__(parent)
        self.ctx = ctx
        self.job = None
        self.outcome: dict | None = None
        self.setWindowTitle("Import an echo teaching set")
        self.resize(640, 260)
        lay = QVBoxLayout(self)
        t = QLabel("A folder of loops and a CSV of the expert's EF per loop: EchoNet's <code>FileList.csv</code> "
                   "as it is, or <code>file,ef[,category,comment]</code>. The expert values stay hidden until a "
                   "trainee has locked an estimate.")
        t.setWordWrap(True)
        lay.addWidget(t)
        form = QFormLayout()
        self.csv = QLineEdit()
        pick = QPushButton("Choose…")
        pick.clicked.connect(self._choose)
        row = QHBoxLayout()
        row.addWidget(self.csv, 1)
        row.addWidget(pick)
        form.addRow("Expert EF file", row)
        self.name = QLineEdit()
        self.name.setPlaceholderText("the CSV's folder name")
        form.addRow("Set name", self.name)
        self.split = QLineEdit()
        self.split.setPlaceholderText("all rows (e.g. TEST for a FileList.csv)")
        form.addRow("Split", self.split)
        lay.addLayout(form)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.buttons = QDialogButtonBox()
        self.go = self.buttons.addButton("Import", QDialogButtonBox.AcceptRole)
        self.go.clicked.connect(self.start)
        self.buttons.addButton(QDialogButtonBox.Close).clicked.connect(self.reject)
        lay.addWidget(self.buttons)

    def _choose(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Expert EF file", str(Path.home()), "CSV (*.csv);;All files (*)")
        if f:
            self.csv.setText(f)

    def start(self) -> None:
        path, name, split = self.csv.text().strip(), self.name.text().strip() or None, self.split.text().strip() or None
        if not path:
            self.status.setText("Choose the CSV first.")
            return
        db = self.ctx.store.path
        self.go.setEnabled(False)
        self.status.setText("Importing…")

        def work(ctx):
            from app.store import Store

            st = Store(db)  # the worker's own connection
            try:
                return lib.import_set(st, path, name, split=split, ctx=ctx)
            finally:
                st.close()

        self.job = self.ctx.jobs.start("Importing teaching set", work, on_result=self._done, on_error=self._failed,
                                       on_progress=lambda f, t: self.status.setText(f"Importing… {t}"))

    def _done(self, out: dict) -> None:
        self.job = None
        self.go.setEnabled(True)
        self.outcome = out
        fails = out["failures"]
        msg = (f"Set <b>{out['set']}</b>: {out['imported']} loops imported, {out['updated']} updated"
               + (f"; <span style='color:#e5534b'>{len(fails)} not imported</span>:<br>"
                  + "<br>".join(f"line {f['line']} {f['file']}: {f['error']}" for f in fails[:8])
                  + ("<br>…" if len(fails) > 8 else "") if fails else "."))
        self.status.setText(msg)

    def _failed(self, msg: str) -> None:
        self.job = None
        self.go.setEnabled(True)
        self.status.setText(f"<span style='color:#e5534b'>{msg}</span>")


class StartSessionDialog(QDialog):
    """Trainee, teaching set and number of loops."""

    def __init__(self, parent, ctx, trainee: str = ""):
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle("Practice session")
        lay = QVBoxLayout(self)
        form = QFormLayout()
        self.trainee = QComboBox()
        self.trainee.setEditable(True)
        for t in ctx.store.trainees():
            self.trainee.addItem(t["name"])
        if trainee:
            self.trainee.setCurrentText(trainee)
        form.addRow("Trainee", self.trainee)
        row = QHBoxLayout()
        self.set_box = QComboBox()
        imp = QPushButton("Import…")
        imp.clicked.connect(self._import)
        row.addWidget(self.set_box, 1)
        row.addWidget(imp)
        form.addRow("Teaching set", row)
        self.n = QSpinBox()
        self.n.setRange(1, 500)
        self.n.setValue(10)
        form.addRow("Loops", self.n)
        lay.addLayout(form)
        note = QLabel("The loops come in random order, one after another; each is timed from when it shows to "
                      "when you lock your estimate. The expert's EF is shown only after the lock.")
        note.setWordWrap(True)
        lay.addWidget(note)
        bb = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        bb.button(QDialogButtonBox.Ok).setText("Start")
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        self.ok = bb.button(QDialogButtonBox.Ok)
        lay.addWidget(bb)
        self._reload()

    def _reload(self, select: str | None = None) -> None:
        self.set_box.clear()
        for s in lib.sets(self.ctx.store):
            self.set_box.addItem(f"{s['name']} ({s['n']} loops)", s["name"])
        if select:
            i = self.set_box.findData(select)
            if i >= 0:
                self.set_box.setCurrentIndex(i)
        self.ok.setEnabled(self.set_box.count() > 0)

    def _import(self) -> None:
        d = ImportSetDialog(self, self.ctx)
        d.exec()
        self._reload(d.outcome["set"] if d.outcome else None)

    def values(self) -> tuple[str, str, int]:
        return self.trainee.currentText().strip(), self.set_box.currentData(), int(self.n.value())


def _table(rows: list[dict], cols: list[tuple[str, str, str]]) -> QTableWidget:
    t = QTableWidget(len(rows), len(cols))
    t.setHorizontalHeaderLabels([c[1] for c in cols])
    t.verticalHeader().hide()
    t.setEditTriggers(QTableWidget.NoEditTriggers)
    for i, r in enumerate(rows):
        for j, (k, _, spec) in enumerate(cols):
            v = r.get(k)
            txt = "" if v is None else (format(v, spec) if spec and isinstance(v, (int, float)) else str(v))
            t.setItem(i, j, QTableWidgetItem(txt))
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    return t


def bland_altman_plot(title: str, ref: list[float], est: list[float], ref_name: str, est_name: str) -> pg.PlotWidget:
    from inference.metrics import agreement

    p = pg.PlotWidget(background="#111417", title=title)
    p.setLabel("bottom", f"mean of {est_name} and {ref_name} EF (%)")
    p.setLabel("left", f"{est_name} − {ref_name} (%-points)")
    a = agreement(ref, est)
    if a["n"]:
        p.plot([(r + e) / 2 for r, e in zip(ref, est)], [e - r for r, e in zip(ref, est)], pen=None, symbol="o",
               symbolBrush="#3d8bfd")
        for y, style in ((a["bias"], Qt.SolidLine), (a["loa_low"], Qt.DashLine), (a["loa_high"], Qt.DashLine)):
            p.addItem(pg.InfiniteLine(pos=y, angle=0, pen=pg.mkPen("#e5534b", style=style)))
    return p


class SessionSummaryDialog(QDialog):
    def __init__(self, parent, store, session_id: int, trainee: str):
        super().__init__(parent)
        self.store, self.session_id, self.trainee = store, session_id, trainee
        s = lib.session(store, session_id)
        self.rows = lib.session_rows(store, session_id)
        self.summary = lib.summary(self.rows)
        self.setWindowTitle(f"Practice session — {trainee}")
        self.resize(900, 640)
        lay = QVBoxLayout(self)
        head = QLabel(f"<b>{s['set_name']}</b> · {len(self.rows)} of {s['n_planned']} loops<br>"
                      + lib.summary_text(self.summary))
        head.setWordWrap(True)
        head.setObjectName("summary")
        lay.addWidget(head)
        plots = QHBoxLayout()
        ex = [r for r in self.rows if r["expert_ef"] is not None]
        plots.addWidget(bland_altman_plot("You vs expert", [r["expert_ef"] for r in ex],
                                          [r["ef_estimate"] for r in ex], "expert", "you"))
        both = [r for r in ex if r["ai_ef"] is not None]
        if both:
            plots.addWidget(bland_altman_plot("AI vs expert", [r["expert_ef"] for r in both],
                                              [r["ai_ef"] for r in both], "expert", "AI"))
        lay.addLayout(plots, 1)
        lay.addWidget(_table(self.rows, [("study", "Loop", ""), ("ef_estimate", "You %", ".0f"),
                                         ("expert_ef", "Expert %", ".1f"), ("expert_delta", "Δ", "+.1f"),
                                         ("trainee_category", "Your cat.", ""), ("expert_category", "Expert cat.", ""),
                                         ("ai_ef", "AI %", ".1f"), ("seconds", "Time s", ".0f")]), 1)
        row = QHBoxLayout()
        b = QPushButton("Export PDF…")
        b.clicked.connect(self._pdf)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        row.addStretch(1)
        row.addWidget(b)
        row.addWidget(close)
        lay.addLayout(row)

    def _pdf(self, path: str | None = None) -> str | None:
        from inference import paths

        if not path:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export PDF", str(paths.exports_dir() / f"ef_session_{self.session_id}_{self.trainee}.pdf"),
                "PDF (*.pdf)")
        if path:
            lib.export_session_pdf(self.store, self.session_id, self.trainee, path)
        return path or None


def ask_trainee(parent) -> str:
    name, ok = QInputDialog.getText(parent, "New trainee", "Trainee name:")
    return name.strip() if ok else ""

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
        w = self.parent().window() if self.parent() is not None else None
        if hasattr(w, "refresh_studies"):
            w.refresh_studies()  # the loops are studies now
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
        self.draw_label = QLabel("")  # "7 new, 3 repeated": loops this trainee has not done come first
        self.draw_label.setObjectName("draw")
        self.draw_label.setWordWrap(True)
        lay.addWidget(self.draw_label)
        note = QLabel("The loops come in random order, one after another, loops you have not done before first; "
                      "each is timed from when it shows to when you lock your estimate and is named only "
                      "\"Case k of N\" until then. The expert's EF is shown only after the lock.")
        note.setWordWrap(True)
        lay.addWidget(note)
        bb = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        bb.button(QDialogButtonBox.Ok).setText("Start")
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        self.ok = bb.button(QDialogButtonBox.Ok)
        lay.addWidget(bb)
        self.trainee.currentTextChanged.connect(lambda _t: self._update_draw())
        self.set_box.currentIndexChanged.connect(lambda _i: self._update_draw())
        self.n.valueChanged.connect(lambda _v: self._update_draw())
        self._reload()
        self._update_draw()

    def _update_draw(self) -> None:
        """How many of the loops to be drawn are new to this trainee and how many repeats."""
        set_name = self.set_box.currentData()
        if not set_name:
            self.draw_label.setText("")
            return
        name = self.trainee.currentText().strip()
        tid = next((t["id"] for t in self.ctx.store.trainees() if t["name"] == name), None)
        d = lib.draw(self.ctx.store, tid, set_name, int(self.n.value()), seed=0)
        self.draw_label.setText(f"This session: {lib.draw_text(d)}.")

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


class SessionMixin:
    """The session half of EchoViewer: loops come one after another through the main window (the viewer
    never reads files: it asks with ``request_open``), each timed from shown to locked."""

    def _session_init(self) -> None:
        from PySide6.QtCore import QElapsedTimer, QTimer

        self.session: dict | None = None
        self.session_i = 0
        self.session_expect: int | None = None
        self.session_clock = QElapsedTimer()
        self.session_seconds: float | None = None  # frozen at the lock
        self.session_summary_dialog = None
        self.session_timer = QTimer(self)
        self.session_timer.setInterval(1000)
        self.session_timer.timeout.connect(self._session_label)
        p = self.panel
        p.import_set_btn.clicked.connect(self.import_teaching_set)
        p.session_btn.clicked.connect(self.start_session_dialog)
        p.next_loop.clicked.connect(self.next_loop)
        p.end_session.clicked.connect(lambda: self.end_session())

    def import_teaching_set(self) -> None:
        ImportSetDialog(self, self.ctx).exec()

    def start_session_dialog(self) -> None:
        d = StartSessionDialog(self, self.ctx, self.panel.trainee.currentText())
        if d.exec():
            name, set_name, n = d.values()
            if not name:
                self.status_message.emit("A session needs a trainee name.")
                return
            self.start_session(name, set_name, n)

    def start_session(self, trainee: str, set_name: str, n: int, seed: int | None = None) -> dict:
        tid = self.set_trainee(trainee)
        self.session = lib.start_session(self.ctx.store, tid, set_name, n, seed=seed)
        self.session_i = 0
        self.set_practice_mode(True)
        self.panel.session_box.show()
        self.panel.session_btn.setEnabled(False)
        self.session_timer.start()
        self._names_changed()  # the session's loops are "Case k of N" until locked
        self._session_open()
        return self.session

    def _session_open(self) -> None:
        sid = self.session["study_ids"][self.session_i]
        row = self.ctx.store.study(sid)
        self.session_expect, self.session_seconds = sid, None
        self.session_clock.invalidate()
        self._session_label()
        self.request_open.emit(row["source_path"], "echo")

    def _session_study_shown(self, study_id: int) -> None:
        if self.session is not None and study_id == self.session_expect and not self.session_clock.isValid():
            self.session_clock.start()
            self._session_label()

    def _session_locked(self, estimate_id: int) -> None:
        if self.session is None or self.study_id != self.session_expect:
            return
        secs = self.session_clock.elapsed() / 1000.0 if self.session_clock.isValid() else None
        self.session_seconds = secs
        lib.lock_in_session(self.ctx.store, estimate_id, self.session["id"], secs if secs is not None else 0.0)
        self._session_label()

    def _session_label(self) -> None:
        if self.session is None:
            return
        n = len(self.session["study_ids"])
        if not self.session_clock.isValid():
            txt = f"Loop {self.session_i + 1} of {n}: opening…"
        else:
            secs = self.session_seconds if self.session_seconds is not None else self.session_clock.elapsed() / 1000
            txt = f"Loop {self.session_i + 1} of {n} · {int(secs) // 60}:{int(secs) % 60:02d}"
            if self.session_seconds is not None:
                txt += " · locked"
        self.panel.session_label.setText(f"<b>{self.session['set_name']}</b> — {txt}")
        last = self.session_i + 1 >= n
        self.panel.next_loop.setText(("Finish ▸" if last else "Next loop ▸") if self.locked else "Skip ▸")

    def next_loop(self) -> None:
        if self.session is None:
            return
        self.session_i += 1
        if self.session_i >= len(self.session["study_ids"]):
            self.end_session()
        else:
            self._session_open()

    def end_session(self, show_summary: bool = True):
        if self.session is None:
            return None
        sid = self.session["id"]
        lib.finish_session(self.ctx.store, sid)
        self.session = None
        self.session_expect = None
        self.session_timer.stop()
        self.panel.session_box.hide()
        self.panel.session_btn.setEnabled(True)
        self._names_changed()
        if show_summary:
            self.session_summary_dialog = SessionSummaryDialog(self, self.ctx.store, sid,
                                                               self.panel.trainee.currentText())
            self.session_summary_dialog.show()
        return sid

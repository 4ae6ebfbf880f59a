"""Blinded deliberate practice in the echo viewer: the estimate field, the trainee and lock/reveal
logic (a mixin of EchoViewer), and the history and practice-set dialogs."""
from __future__ import annotations


import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QIntValidator
from PySide6.QtWidgets import (QDialog, QFileDialog, QHBoxLayout, QHeaderView, QInputDialog,
                               QLabel, QLineEdit, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout)

from app.echo import practice
from inference.echo.preprocess import ef_category
from inference.results import NOT_CLINICAL


class EstimateEdit(QLineEdit):
    """The trainee's visual EF in whole percent, empty until typed: a spin box always holds a number,
    and any default would anchor the estimate. ``value()`` is 0 while empty; Up/Down step a typed value."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setValidator(QIntValidator(0, 95, self))
        self.setPlaceholderText("type your estimate, in %")
        self.setMaxLength(2)

    def value(self) -> float:
        t = self.text().strip()
        return float(t) if t.isdigit() else 0.0

    def setValue(self, v: float) -> None:
        self.setText(str(int(round(v))) if v and v > 0 else "")

    def keyPressEvent(self, ev) -> None:
        if ev.key() in (Qt.Key_Up, Qt.Key_Down):
            if self.value() > 0:  # stepping starts from the trainee's own number, never from a default
                self.setValue(min(95, max(1, self.value() + (1 if ev.key() == Qt.Key_Up else -1))))
            return
        super().keyPressEvent(ev)


class PracticeMixin:
    """The practice half of EchoViewer: trainees, locking an estimate, the reveal and the dialogs."""

    # -- practice -----------------------------------------------------------------------------------------
    def _reload_trainees(self, select: str | None = None) -> None:
        box = self.panel.trainee
        cur = select or box.currentText()
        box.blockSignals(True)
        box.clear()
        for t in self.ctx.store.trainees():
            box.addItem(t["name"], t["id"])
        if cur:
            i = box.findText(cur)
            if i >= 0:
                box.setCurrentIndex(i)
        box.blockSignals(False)

    def _new_trainee(self) -> None:
        name, ok = QInputDialog.getText(self, "New trainee", "Trainee name:")
        if ok and name.strip():
            self.set_trainee(name.strip())

    def set_trainee(self, name: str) -> int:
        tid = self.ctx.store.trainee(name)
        self._reload_trainees(select=name)
        self._practice_state_changed()
        return tid

    def trainee_id(self) -> int | None:
        d = self.panel.trainee.currentData()
        return int(d) if d is not None else None

    def set_practice_mode(self, on: bool) -> None:
        self.panel.practice.setChecked(on)

    def _practice_state_changed(self, refresh: bool = True) -> None:
        self.locked, self.estimate_id = False, None
        self.panel.reveal.setText("")
        tid = self.trainee_id()
        self.panel.estimate.setValue(0)  # a fresh study starts blank: no carry-over from the last one
        self.panel.category.setCurrentIndex(0)
        if tid is not None and self.study_id is not None:
            est = practice.locked_estimate(self.ctx.store, tid, self.study_id)
            if est:
                self.locked, self.estimate_id = True, int(est["id"])
                self.panel.estimate.setValue(est["ef_estimate"])
                i = self.panel.category.findData(est["category"] or "")
                self.panel.category.setCurrentIndex(max(0, i))
                self._reveal()
        self._update_visibility(refresh)

    def _update_visibility(self, refresh: bool = True) -> None:
        p = self.panel
        practising = p.practice.isChecked()
        p.estimate.setEnabled(not self.locked)
        p.category.setEnabled(not self.locked)
        p.lock.setEnabled(not self.locked and self.trainee_id() is not None and self.study_id is not None)
        p.lock.setText("Estimate locked" if self.locked else "Lock estimate")
        if practising and not self.locked:
            p.reveal.setText("<i>AI EF hidden — enter your visual estimate and lock it.</i>")
        self._overlay_changed()
        self._update_plot()
        if self.frames is not None:
            self.show_frame(self.canvas.index)
        if refresh:
            self._refresh_results_panel()

    def _refresh_results_panel(self) -> None:
        w = self.window()
        res = getattr(w, "results", None)
        if res is not None and hasattr(res, "show_result") and getattr(w, "current_viewer", lambda: None)() is self:
            res.show_result(self.result, hidden=self.hides_results())

    def lock_estimate(self) -> int | None:
        tid = self.trainee_id()
        if tid is None or self.study_id is None or self.locked:
            if tid is None:
                self.status_message.emit("Choose or create a trainee first.")
            return None
        if self.panel.estimate.value() < 1:
            self.status_message.emit("Type your visual EF estimate (in %) before locking it.")
            return None
        cat = self.panel.category.currentData() or None
        self.estimate_id = self.ctx.store.lock_estimate(tid, self.study_id, float(self.panel.estimate.value()), cat)
        self.locked = True
        self._reveal()
        self._update_visibility()
        return self.estimate_id

    def _reveal(self) -> None:
        """After the lock: store AI EF + delta (once) and show them."""
        ai = practice.ai_ef(self.result)
        est = self.ctx.store.db["estimates"].get(self.estimate_id)
        if ai is None:
            self.panel.reveal.setText(f"Locked: {est['ef_estimate']:.0f} %"
                                      f"{' (' + est['category'] + ')' if est['category'] else ''}. "
                                      "The AI EF appears here once the analysis has run.")
            return
        if est["revealed_at"] is None or est["result_id"] != self.result.id:
            if self.result.id is not None:
                est = self.ctx.store.reveal_estimate(self.estimate_id, self.result, ai)
        delta = est["ef_estimate"] - ai
        ai_cat = ef_category(ai)
        agree = ""
        if est["category"]:
            ok = est["category"] == ai_cat
            agree = (f"<br>Category: you <b>{est['category']}</b>, AI <b>{ai_cat}</b> — "
                     + ("<span style='color:#3fb950'>agree</span>" if ok else "<span style='color:#e5534b'>disagree</span>"))
        stamp = "" if self.result.clinical else f"<br><span style='color:#e5534b'><b>{NOT_CLINICAL}</b></span>"
        self.panel.reveal.setText(
            f"Your estimate <b>{est['ef_estimate']:.0f} %</b> · AI EF <b>{ai:.1f} %</b> · "
            f"delta <b>{delta:+.1f}</b> %-points{agree}{stamp}")

    def _toggle_practice_set(self, on: bool) -> None:
        if self.study_id is not None:
            practice.set_practice(self.ctx.store, self.study_id, on)

    def show_history(self) -> None:
        tid = self.trainee_id()
        if tid is None:
            self.status_message.emit("Choose a trainee first.")
            return
        HistoryDialog(self, self.ctx.store, tid, self.panel.trainee.currentText()).exec()

    def show_practice_set(self) -> None:
        PracticeSetDialog(self, self.ctx.store).exec()

    def report_extra(self) -> dict:
        if self.hides_results():  # a PDF must not reveal what the screen hides
            return {"blinded": True}
        extra: dict = {}
        if self.result is not None and self.result.arrays.get("masks") is not None:
            extra["masks"] = self.result.arrays["masks"]
        tid = self.trainee_id()
        if self.panel.practice.isChecked() and tid is not None and self.study_id is not None:
            est = practice.locked_estimate(self.ctx.store, tid, self.study_id)
            if est:
                extra["practice"] = dict(est, trainee=self.panel.trainee.currentText())
        return extra


def _table(rows: list[dict], cols: list[tuple[str, str]]) -> QTableWidget:
    t = QTableWidget(len(rows), len(cols))
    t.setHorizontalHeaderLabels([c[1] for c in cols])
    t.verticalHeader().hide()
    t.setEditTriggers(QTableWidget.NoEditTriggers)
    for i, r in enumerate(rows):
        for j, (k, _) in enumerate(cols):
            v = r.get(k)
            if isinstance(v, float):
                v = f"{v:+.1f}" if k == "delta" or k == "bias" else f"{v:.1f}"
            t.setItem(i, j, QTableWidgetItem("" if v is None else str(v)))
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    return t


class HistoryDialog(QDialog):
    """One trainee's estimates: error over time, Bland–Altman vs the AI, table; CSV/PDF export."""

    def __init__(self, parent, store, trainee_id: int, name: str):
        super().__init__(parent)
        self.setWindowTitle(f"EF practice progress — {name}")
        self.resize(900, 640)
        self.rows = practice.history(store, trainee_id)
        self.name = name
        lay = QVBoxLayout(self)
        done = [r for r in self.rows if r["ai_ef"] is not None]
        ba = practice.bland_altman([r["ef_estimate"] for r in done], [r["ai_ef"] for r in done])
        summary = (f"{ba['n']} revealed estimates · MAE {ba['mae']:.1f} %-points · bias {ba['bias']:+.1f} · "
                   f"95 % limits of agreement {ba['loa_low']:+.1f} to {ba['loa_high']:+.1f}") if ba["n"] else \
            "No revealed estimates yet."
        lay.addWidget(QLabel(summary))
        plots = QHBoxLayout()
        p1 = pg.PlotWidget(background="#111417", title="Absolute error over time")
        p1.setLabel("bottom", "estimate #")
        p1.setLabel("left", "|trainee − AI| (%-points)")
        p1.plot(list(range(1, len(done) + 1)), [abs(r["delta"]) for r in done], pen="#3d8bfd", symbol="o")
        p2 = pg.PlotWidget(background="#111417", title="Bland–Altman vs AI")
        p2.setLabel("bottom", "mean of trainee and AI EF (%)")
        p2.setLabel("left", "trainee − AI (%-points)")
        if ba["n"]:
            m = [(r["ef_estimate"] + r["ai_ef"]) / 2 for r in done]
            d = [r["ef_estimate"] - r["ai_ef"] for r in done]
            p2.plot(m, d, pen=None, symbol="o", symbolBrush="#3d8bfd")
            for y, style in ((ba["bias"], Qt.SolidLine), (ba["loa_low"], Qt.DashLine), (ba["loa_high"], Qt.DashLine)):
                p2.addItem(pg.InfiniteLine(pos=y, angle=0, pen=pg.mkPen("#e5534b", style=style)))
        plots.addWidget(p1)
        plots.addWidget(p2)
        lay.addLayout(plots, 1)
        lay.addWidget(_table(self.rows, [("locked_at", "Locked"), ("study", "Study"), ("ef_estimate", "Estimate %"),
                                         ("category", "Category"), ("ai_ef", "AI EF %"), ("ai_category", "AI cat."),
                                         ("delta", "Δ")]), 1)
        row = QHBoxLayout()
        b1 = QPushButton("Export CSV…")
        b1.clicked.connect(self._csv)
        b2 = QPushButton("Export PDF…")
        b2.clicked.connect(self._pdf)
        row.addStretch(1)
        row.addWidget(b1)
        row.addWidget(b2)
        lay.addLayout(row)

    def _csv(self) -> None:
        from inference import paths

        f, _ = QFileDialog.getSaveFileName(self, "Export CSV", str(paths.exports_dir() / f"ef_practice_{self.name}.csv"),
                                           "CSV (*.csv)")
        if f:
            practice.export_csv(self.rows, f)

    def _pdf(self) -> None:
        from inference import paths

        f, _ = QFileDialog.getSaveFileName(self, "Export PDF", str(paths.exports_dir() / f"ef_practice_{self.name}.pdf"),
                                           "PDF (*.pdf)")
        if f:
            practice.export_pdf(self.rows, self.name, f)


class PracticeSetDialog(QDialog):
    """Instructor view: all trainees' errors on the practice-set studies."""

    def __init__(self, parent, store):
        super().__init__(parent)
        self.setWindowTitle("Practice set — all trainees")
        self.resize(820, 520)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Per trainee (practice-set studies only)"))
        lay.addWidget(_table(practice.practice_summary(store),
                             [("trainee", "Trainee"), ("n", "Studies"), ("mae", "MAE %-pts"), ("bias", "Bias")]))
        lay.addWidget(QLabel("Every revealed estimate"))
        lay.addWidget(_table(practice.practice_table(store),
                             [("trainee", "Trainee"), ("study", "Study"), ("ef_estimate", "Estimate %"),
                              ("ai_ef", "AI EF %"), ("delta", "Δ"), ("category", "Category"),
                              ("revealed_at", "Revealed")]), 1)

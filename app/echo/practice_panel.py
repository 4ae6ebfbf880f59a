"""Blinded deliberate practice in the echo viewer: the estimate field, the trainee and lock/reveal
logic (a mixin of EchoViewer), and the history and practice-set dialogs."""
from __future__ import annotations


import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QIntValidator
from PySide6.QtWidgets import (QDialog, QFileDialog, QHBoxLayout, QHeaderView, QInputDialog,
                               QLabel, QLineEdit, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout)

from app.echo import library, practice
from inference.echo import pipeline as pipe
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
        self._blinding_changed()
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
            session = getattr(self, "session", None)
            in_session = session is not None and self.study_id == getattr(self, "session_expect", None)
            # in a session every loop is a fresh estimate, even one this trainee has seen before
            est = practice.locked_estimate(self.ctx.store, tid, self.study_id, session["id"] if in_session else None)
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
            p.reveal.setText("<i>AI and expert EF hidden — enter your visual estimate and lock it.</i>")
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
        self._session_locked(self.estimate_id)  # a timed session notes the seconds (app.echo.session)
        self._reveal()
        self._update_visibility()
        self._names_changed()  # the loop's real name may be shown now
        if practice.ai_ef(self.result) is None and self._ai_installed():
            self.request_analysis.emit(pipe.MODELS[0])  # the AI's EF as a second reference, after the lock
        return self.estimate_id

    def _ai_installed(self) -> bool:
        reg = self.ctx.registry
        mid = pipe.MODELS[0]
        return mid in reg.entries and reg.state(mid, cached_only=True).status in ("ready", "demo")

    def _reveal(self) -> None:
        """After the lock only: record and show the expert's EF (teaching-set loops) and the AI's EF (once it
        has run), each with the trainee's difference and category agreement, and AI vs expert when both."""
        est = self.ctx.store.db["estimates"].get(self.estimate_id)
        expert = library.expert_for(self.ctx.store, self.study_id) if self.study_id is not None else None
        if expert is not None and est["expert_ef"] is None:
            est = library.record_expert(self.ctx.store, self.estimate_id, expert)
        ai = practice.ai_ef(self.result)
        if ai is not None and (est["ai_ef"] is None or est["result_id"] != self.result.id) and self.result.id is not None:
            est = self.ctx.store.reveal_estimate(self.estimate_id, self.result, ai)
        mine = est["category"] or ef_category(est["ef_estimate"])
        lines = [f"Your estimate <b>{est['ef_estimate']:.0f} %</b> ({mine})"]

        def agree(cat: str, who: str) -> str:
            ok = mine == cat
            return (f"category: you <b>{mine}</b>, {who} <b>{cat}</b> — "
                    + ("<span style='color:#3fb950'>agree</span>" if ok else "<span style='color:#e5534b'>disagree</span>"))

        if expert is not None:
            ecat = expert["expert_category"] or ef_category(expert["expert_ef"])
            lines.append(f"Expert EF <b>{expert['expert_ef']:.1f} %</b> · you {est['ef_estimate'] - expert['expert_ef']:+.1f} "
                         f"%-points · {agree(ecat, 'expert')}"
                         + (f"<br><i>{expert['comment']}</i>" if expert.get("comment") else ""))
        if ai is not None:
            stamp = "" if self.result.clinical else f" <span style='color:#e5534b'><b>{NOT_CLINICAL}</b></span>"
            lines.append(f"AI EF <b>{ai:.1f} %</b> · you {est['ef_estimate'] - ai:+.1f} %-points · "
                         f"{agree(ef_category(ai), 'AI')}{stamp}")
            if expert is not None:
                lines.append(f"AI vs expert: {ai - expert['expert_ef']:+.1f} %-points")
        if expert is None and ai is None:
            lines.append("No expert value for this loop; the AI EF appears here once the analysis has run.")
        elif ai is None and self._ai_installed():
            lines.append("<i>The AI EF appears here once the analysis has run.</i>")
        self.panel.reveal.setText("<br>".join(lines))

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
            label = self.blind_map().get(self.study_id)
            return {"blinded": True, **({"label": label} if label else {})}
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
                v = f"{v:+.1f}" if "delta" in k or "bias" in k else f"{v:.1f}"
            t.setItem(i, j, QTableWidgetItem("" if v is None else str(v)))
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
    return t


class HistoryDialog(QDialog):
    """One trainee's estimates: error over time, Bland–Altman against the expert and the AI (and the AI
    against the expert), table; CSV/PDF export."""

    def __init__(self, parent, store, trainee_id: int, name: str):
        super().__init__(parent)
        self.setWindowTitle(f"EF practice progress — {name}")
        self.resize(1000, 660)
        self.rows = practice.history(store, trainee_id)
        self.name = name
        lay = QVBoxLayout(self)
        c = practice.comparisons(self.rows)
        n = len(self.rows)
        head = QLabel(f"{n} locked estimate{'s' if n != 1 else ''} · {practice.comparison_text(c)}")
        head.setWordWrap(True)
        lay.addWidget(head)
        plots = QHBoxLayout()
        p1 = pg.PlotWidget(background="#111417", title="Absolute error over time")
        p1.setLabel("bottom", "estimate #")
        p1.setLabel("left", "|you − reference| (%-points)")
        p1.addLegend(offset=(5, 5))
        for ref, colour, label in (("expert_ef", "#3d8bfd", "vs expert"), ("ai_ef", "#d29922", "vs AI")):
            pts = [(i, abs(r["ef_estimate"] - r[ref])) for i, r in enumerate(self.rows, 1) if r[ref] is not None]
            if pts:
                p1.plot([x for x, _ in pts], [y for _, y in pts], pen=colour, symbol="o", symbolBrush=colour, name=label)
        plots.addWidget(p1)
        from app.echo.session import bland_altman_plot

        names = {"expert_ef": "expert", "ai_ef": "AI", "ef_estimate": "you"}
        for key, ref, est, label in practice.COMPARISONS:
            if c[key]["n"]:
                both = [r for r in self.rows if r[ref] is not None and r[est] is not None]
                plots.addWidget(bland_altman_plot(f"Bland–Altman: {label}", [r[ref] for r in both],
                                                  [r[est] for r in both], names[ref], names[est]))
        lay.addLayout(plots, 1)
        lay.addWidget(_table(self.rows, [("locked_at", "Locked"), ("study", "Study"), ("ef_estimate", "You %"),
                                         ("category", "Category"), ("expert_ef", "Expert %"),
                                         ("expert_delta", "Δ expert"), ("expert_category", "Expert cat."),
                                         ("ai_ef", "AI EF %"), ("delta", "Δ AI"), ("ai_category", "AI cat.")]), 1)
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
    """Instructor view: all trainees on the practice-set studies and teaching-set loops, against the expert
    and the AI (and the AI against the expert on the same loops)."""

    def __init__(self, parent, store):
        super().__init__(parent)
        self.setWindowTitle("Practice set — all trainees")
        self.resize(980, 560)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Per trainee (practice-set studies and teaching-set loops)"))
        lay.addWidget(_table(practice.practice_summary(store),
                             [("trainee", "Trainee"), ("n", "Estimates"), ("n_vs_expert", "vs expert: n"),
                              ("mae_vs_expert", "MAE"), ("bias_vs_expert", "bias"), ("n_vs_ai", "vs AI: n"),
                              ("mae_vs_ai", "MAE"), ("bias_vs_ai", "bias"), ("n_ai_vs_expert", "AI vs expert: n"),
                              ("mae_ai_vs_expert", "MAE"), ("bias_ai_vs_expert", "bias")]))
        lay.addWidget(QLabel("Every revealed estimate"))
        lay.addWidget(_table(practice.practice_table(store),
                             [("trainee", "Trainee"), ("study", "Study"), ("ef_estimate", "You %"),
                              ("expert_ef", "Expert %"), ("expert_delta", "Δ expert"), ("ai_ef", "AI EF %"),
                              ("delta", "Δ AI"), ("category", "Category"), ("revealed_at", "Revealed")]), 1)

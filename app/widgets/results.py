"""The right-hand results panel: model state, the latest result's numbers and their provenance.

Every number here comes from a stored Result row (its id is shown), with model id, weights
sha256, runtime, device and seconds; non-official weights carry the NOT A CLINICAL RESULT stamp.
"""
from __future__ import annotations

from typing import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSizePolicy,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from inference.registry import CHECKING, DEMO, NOT_INSTALLED, READY, REFUSED, Registry
from inference.results import DISCLAIMER, NOT_CLINICAL, Result


def format_value(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e-2 and v != 0 else f"{v:.3f}".rstrip("0").rstrip(".")
    if isinstance(v, (list, tuple)):
        if len(v) > 6:
            return f"[{len(v)} values]"
        return ", ".join(format_value(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{str(k).replace('_', ' ')}: {format_value(x)}" for k, x in v.items())
    return str(v)


class FitTable(QTableWidget):
    """A table exactly as tall as its rows, long values wrapped: every row on show, no scroll bar of its own
    (the panel around it scrolls when a screen is too low)."""

    def __init__(self, rows: int, cols: int, parent: QWidget | None = None):
        super().__init__(rows, cols, parent)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setWordWrap(True)
        self.verticalHeader().hide()
        self.verticalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.setEditTriggers(QTableWidget.NoEditTriggers)
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Fixed)
        self._fit_timer = QTimer(self, singleShot=True, interval=0, timeout=self.fit)  # dies with the table
        self.verticalHeader().sectionResized.connect(lambda *_: self._fit_later())

    def _fit_later(self) -> None:
        self._fit_timer.start()

    def fit(self) -> None:
        self.resizeRowsToContents()
        head = self.horizontalHeader().sizeHint().height() if self.horizontalHeader().isVisible() else 0
        rows = sum(self.rowHeight(r) for r in range(self.rowCount()) if not self.isRowHidden(r))
        self.setFixedHeight(head + rows + 2 * self.frameWidth())

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self._fit_later()


class ResultsPanel(QWidget):
    run_requested = Signal(str)  # model id
    model_changed = Signal(str)  # the user picked another model: show its stored result

    def __init__(self, registry: Registry, parent: QWidget | None = None):
        super().__init__(parent)
        self.registry = registry
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        row = QHBoxLayout()
        self.model_box = QComboBox()
        self.model_box.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model_box.setMinimumContentsLength(14)
        self.model_box.currentIndexChanged.connect(self._update_state)
        # a long model name is cut in a narrow panel: the whole name is the tooltip and the line below
        self.model_box.currentTextChanged.connect(self.model_box.setToolTip)
        self.model_box.activated.connect(lambda _i: self.model_changed.emit(self.current_model() or ""))
        self.run_btn = QPushButton("Analyse")
        self.run_btn.setObjectName("primary")
        self.run_btn.setToolTip("Run the selected model on this study (Ctrl+R)")
        self.run_btn.clicked.connect(lambda: self.run_requested.emit(self.current_model() or ""))
        row.addWidget(self.model_box, 1)
        row.addWidget(self.run_btn)
        lay.addLayout(row)
        self.state = QLabel("")
        self.state.setWordWrap(True)
        self.state.setMinimumWidth(120)
        self.state.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.state)
        self.stamp = QLabel(NOT_CLINICAL)
        self.stamp.setObjectName("stamp")
        self.stamp.setAlignment(Qt.AlignCenter)
        self.stamp.setToolTip("Computed with non-official weights: for testing and teaching only")
        self.stamp.hide()
        lay.addWidget(self.stamp)
        self.table = FitTable(0, 2)
        self.table.setObjectName("outputs")
        self.table.setHorizontalHeaderLabels(["Output", "Value"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.table.hide()  # shown with a result's rows
        lay.addWidget(self.table)
        self.extra_holder = QVBoxLayout()
        self.extra_holder.addStretch(1)
        lay.addLayout(self.extra_holder, 1)
        self.prov = QLabel("")
        self.prov.setMinimumWidth(100)
        self.prov.setObjectName("muted")
        self.prov.setWordWrap(True)
        self.prov.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.prov)
        disc = QLabel(DISCLAIMER)
        disc.setObjectName("muted")
        disc.setWordWrap(True)
        lay.addWidget(disc)
        self._extra: QWidget | None = None
        self.result: Result | None = None
        #: (model id, weights sha256 or None) -> "validated here on N cases: …" / "not validated on local cases";
        #: set by the main window (it owns the store)
        self.validation: Callable[[str, str | None], str] | None = None
        self.set_models(())

    # -- models -------------------------------------------------------------------------------
    def set_models(self, model_ids: tuple[str, ...]) -> None:
        self.model_box.blockSignals(True)
        self.model_box.clear()
        for mid in model_ids:
            entry = self.registry.entries.get(mid)
            self.model_box.addItem(entry.title if entry else mid, mid)
        self.model_box.blockSignals(False)
        self.model_box.setVisible(bool(model_ids))
        self.run_btn.setVisible(bool(model_ids))
        self._update_state()

    def current_model(self) -> str | None:
        return self.model_box.currentData()

    def choose_model(self) -> None:
        """Keyboard: the model list open, arrows and Enter pick one."""
        if self.model_box.isVisible():
            self.model_box.setFocus(Qt.ShortcutFocusReason)
            self.model_box.showPopup()

    def select_model(self, model_id: str) -> None:
        i = self.model_box.findData(model_id)
        if i >= 0:
            self.model_box.setCurrentIndex(i)

    def _update_state(self) -> None:
        self.model_box.setToolTip(self.model_box.currentText())
        mid = self.current_model()
        if not mid:
            self.state.setText("No model for this modality yet.")
            self.run_btn.setEnabled(False)
            return
        entry = self.registry.entries.get(mid)
        if entry is None or not entry.file:  # a model-free analysis (signal measurements, frame quality)
            self.state.setText(f"<b>{self.model_box.currentText()}</b>: ready (needs no weights){self._local(mid, '')}")
            self.run_btn.setEnabled(True)
            return
        st = self.registry.state(mid, cached_only=True)  # the UI thread never hashes weights
        if st.status == CHECKING:
            self.state.setText(f"<b>{st.entry.title}</b>: verifying weights…")
        elif st.status == READY:
            self.state.setText(f"<b>{st.entry.title}</b>: ready (weights {st.sha256[:12]}){self._local(mid, st.sha256)}")
        elif st.status == DEMO:
            self.state.setText(f"<b>{st.entry.title}</b>: <span style='color:#d29922'>demo weights</span> "
                               f"({st.sha256[:12]}) — results are not clinical{self._local(mid, st.sha256)}")
        elif st.status == NOT_INSTALLED:
            # long file names must wrap inside the panel: allow a break after every underscore
            msg = st.message.replace("_", "_\u200b").replace("/", "/\u200b").replace("\n", "<br>")
            self.state.setText(f"<b>{st.entry.title}</b>: <span style='color:#d29922'>not installed</span><br>"
                               f"<small>{msg}</small>")
        elif st.status == REFUSED:
            self.state.setText(f"<b>{st.entry.title}</b>: <span style='color:#e5534b'>refused</span><br>{st.message}")
        self.run_btn.setEnabled(st.may_start)

    def _local(self, model_id: str, sha: str | None) -> str:
        return f"<br><small>{self.validation(model_id, sha)}</small>" if self.validation else ""

    def refresh_state(self) -> None:
        self._update_state()

    # -- results ------------------------------------------------------------------------------
    def set_extra(self, w: QWidget | None) -> None:
        if self._extra is not None:
            self._extra.setParent(None)
        while self.extra_holder.count():  # the old widget's item and any spacer
            self.extra_holder.takeAt(0)
        self._extra = w
        if w is not None:
            self.extra_holder.addWidget(w, 1)  # the spare height: the widget packs its parts at its top
        else:
            self.extra_holder.addStretch(1)  # spare height below the panel's texts, not between them

    def show_result(self, result: Result | None, hidden: bool = False) -> None:
        self.result = result
        self.table.setRowCount(0)
        self.table.hide()
        if result is None:
            self.stamp.hide()
            self.prov.setText("")
            return
        self.stamp.setVisible(not result.clinical)
        if hidden:
            self.prov.setText("Result hidden until the trainee's estimate is locked.")
            return
        rows = [(k, v) for k, v in result.outputs.items() if not k.startswith("_")]
        self.table.setRowCount(len(rows))
        for i, (k, v) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(k.replace("_", " ")))
            text = format_value(v)
            item = QTableWidgetItem(text)
            if k.endswith("sha256") and len(text) > 8:  # a digest, one unbreakable word: its start (as git does)
                item.setText(text[:8])
                item.setToolTip(text)
            self.table.setItem(i, 1, item)
        self.table.setVisible(bool(rows))
        self.table.fit()
        rid = f"result #{result.id} · " if result.id else ""
        local = f" · {self.validation(result.model_id, result.weights_sha256)}" if self.validation else ""
        self.prov.setText(f"{rid}{result.provenance()} · {result.created}{local}")

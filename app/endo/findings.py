"""Endoscopy findings: the edit dialog and the findings-table half of EndoViewer (a mixin): add at the
current frame, edit, confirm, reject, delete, jump."""
from __future__ import annotations


import collections
import json
import re
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox,
                               QFormLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QTableWidget,
                               QTableWidgetItem, QVBoxLayout, QWidget)

from app.endo.timeline import STATUS_COLOURS
from inference.endo.export import fmt_time

LABELS = ["polyp", "bleeding", "ulcer", "inflammation", "angiodysplasia", "diverticulum", "mass",
          "foreign body", "normal mucosa", "other"]


class FindingDialog(QDialog):
    def __init__(self, parent: QWidget | None, title: str, label: str = "polyp", confidence: float | None = None,
                 note: str = ""):
        super().__init__(parent)
        self.setWindowTitle(title)
        lay = QFormLayout(self)
        self.label = QComboBox()
        self.label.setEditable(True)
        self.label.addItems(LABELS)
        self.label.setCurrentText(label)
        self.conf = QDoubleSpinBox()
        self.conf.setRange(-0.01, 1.0)
        self.conf.setSingleStep(0.05)
        self.conf.setSpecialValueText("—")
        self.conf.setValue(-0.01 if confidence is None or confidence != confidence else float(confidence))
        self.note = QLineEdit(note)
        lay.addRow("Finding", self.label)
        lay.addRow("Confidence", self.conf)
        lay.addRow("Note", self.note)
        bb = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        lay.addRow(bb)

    def values(self) -> dict[str, Any]:
        c = self.conf.value()
        return {"label": self.label.currentText().strip() or "other", "confidence": None if c < 0 else round(c, 3),
                "note": self.note.text().strip()}


class FindingsTable(QTableWidget):
    """The findings table in the viewer's panel: it shows the columns its width allows. When the
    column is narrow, Source, then Note, then (for a video, whose Time says where) Frame, and last Conf. are
    hidden rather than cut or scrolled sideways; what they hold stays in each row's tooltip and in the line under the
    table for the selected finding. Widening the column (its splitter) brings them back."""

    COLS = ["Time", "Frame", "Finding", "Conf.", "Source", "Status", "Note"]
    OPTIONAL = (4, 6, 1, 3)  # hidden first to last when the room runs out (Conf. only beside a scroll bar)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(self.COLS), parent)
        self.setHorizontalHeaderLabels(self.COLS)
        self.verticalHeader().hide()
        self.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setWordWrap(False)
        hh = self.horizontalHeader()
        hh.setSectionResizeMode(QHeaderView.ResizeToContents)
        hh.setStretchLastSection(True)  # the last column on show takes what is left
        hh.setMinimumSectionSize(24)
        hh.setStyleSheet("QHeaderView::section { padding: 3px 3px; }")  # narrow headers: room for Conf.
        self.always_hidden: set[int] = set()  # a still has no time

    def _need(self, c: int) -> int:
        return max(self.sizeHintForColumn(c), self.horizontalHeader().sectionSizeFromContents(c).width())

    def fit_columns(self) -> None:
        room = self.width() - 2 * self.frameWidth()
        rows = sum(self.rowHeight(r) for r in range(self.rowCount()))
        if rows > self.height() - 2 * self.frameWidth() - self.horizontalHeader().height():
            room -= self.verticalScrollBar().sizeHint().width()  # the rows scroll: their bar takes its room
        for c in range(self.columnCount()):
            self.setColumnHidden(c, c in self.always_hidden)
        shown = [c for c in range(self.columnCount()) if c not in self.always_hidden]
        for c in self.OPTIONAL:
            if sum(self._need(k) for k in shown) <= room:
                break
            if c == 1 and 0 in self.always_hidden:
                continue  # a still's image number is its only place
            shown.remove(c)
            self.setColumnHidden(c, True)

    def resizeEvent(self, ev) -> None:
        super().resizeEvent(ev)
        self.fit_columns()


# -- the viewer ---------------------------------------------------------------------------------


class FindingsMixin:
    """The findings table of EndoViewer: reload, add, edit, confirm, reject, delete, jump."""

    def _make_findings_pane(self) -> tuple[QWidget, QWidget]:
        """(count and table, the selected finding in full with the finding and export buttons)."""
        from app.widgets.flow import FlowLayout

        self.table = FindingsTable()
        self.table.cellDoubleClicked.connect(lambda r, _c: self._jump_row(r))
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self._scroll_timer = QTimer(self.table, singleShot=True, interval=0)  # dies with the table
        self._scroll_timer.timeout.connect(lambda: [self.table.scrollTo(i) for i in
                                                    self.table.selectionModel().selectedRows()[:1]])
        self.count_label = QLabel("")
        self.count_label.setObjectName("muted")
        self.count_label.setWordWrap(True)
        self.detail_label = QLabel("")  # the selected finding, with what the narrow table leaves out
        self.detail_label.setWordWrap(True)
        self.detail_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.add_btn = QPushButton("Add at frame")
        self.add_btn.setToolTip("Add a finding at the frame on screen (Ins)")
        self.add_btn.clicked.connect(self.add_dialog)
        self.edit_btn = QPushButton("Edit…")
        self.edit_btn.clicked.connect(self.edit_dialog)
        self.confirm_btn = QPushButton("Confirm")
        self.confirm_btn.setToolTip("Confirm the selected finding (C)")
        self.confirm_btn.clicked.connect(lambda: self.set_status_selected("confirmed"))
        self.reject_btn = QPushButton("Reject")
        self.reject_btn.setToolTip("Reject the selected finding (X)")
        self.reject_btn.clicked.connect(lambda: self.set_status_selected("rejected"))
        self.delete_btn = QPushButton("Delete")
        self.delete_btn.clicked.connect(self.delete_selected)
        self.export_btn = QPushButton("Export bundle…")
        self.export_btn.setToolTip("metadata.json, summary.json, findings.csv, findings.json, report.txt (zip) "
                                   "+ PDF report with key frames")
        self.export_btn.clicked.connect(lambda: self.export_bundle())
        fb = FlowLayout()
        for w in (self.add_btn, self.edit_btn, self.confirm_btn, self.reject_btn, self.delete_btn, self.export_btn):
            fb.addWidget(w)
        title = QLabel("<b>Findings</b>")
        listing, actions = QWidget(), QWidget()
        lay = QVBoxLayout(listing)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        lay.addWidget(title)
        lay.addWidget(self.count_label)
        lay.addWidget(self.table, 1)
        lay = QVBoxLayout(actions)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        lay.addWidget(self.detail_label)
        lay.addLayout(fb)
        lay.addStretch(1)
        return listing, actions

    def _detail_text(self, f: dict | None) -> str:
        if f is None:
            return ""
        still = getattr(self, "kind", "video") != "video"
        fi = f.get("frame_index")
        where = (f"image {fi + 1}" if still and isinstance(fi, int) else
                 f"{fmt_time(f.get('time_s'))} · frame {fi}")
        conf = f.get("confidence")
        parts = [where, f.get("label") or "", f"confidence {conf:.2f}" if isinstance(conf, (int, float)) else "",
                 f.get("status") or "", f.get("source") or "", f.get("note") or ""]
        return " · ".join(p for p in parts if p)

    # -- findings -----------------------------------------------------------------------------------
    def reload_findings(self) -> None:
        if self.study_id is None:
            return
        sel = self.selected_finding()
        self.findings = self.ctx.store.findings(self.study_id)
        self.timeline.findings = self.findings
        self.timeline.update()
        self.table.setRowCount(len(self.findings))
        for r, f in enumerate(self.findings):
            conf = f.get("confidence")
            fi = f.get("frame_index")
            still = getattr(self, "kind", "video") != "video"
            vals = [fmt_time(f.get("time_s")), str(fi + 1 if still and isinstance(fi, int) else fi), f.get("label") or "",
                    f"{conf:.2f}" if isinstance(conf, (int, float)) else "—", f.get("source") or "",
                    f.get("status") or "", f.get("note") or ""]
            tip = self._detail_text(f)
            for c, v in enumerate(vals):
                it = QTableWidgetItem(v)
                it.setData(Qt.UserRole, f["id"])
                it.setToolTip(tip)
                if c == 5:
                    it.setForeground(QColor(STATUS_COLOURS.get(v, "#d5d9de")))
                self.table.setItem(r, c, it)
        counts = collections.Counter(f.get("status") for f in self.findings)
        self.count_label.setText(f"{len(self.findings)} findings · " + ", ".join(f"{v} {k}" for k, v in counts.items())
                                 if self.findings else "No findings yet: play, analyse, or add one at a frame.")
        self.table.fit_columns()
        if sel is not None:
            self.select_finding(sel["id"])
        self._selection_changed()

    def selected_finding(self) -> dict | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        fid = self.table.item(rows[0].row(), 0).data(Qt.UserRole)
        return next((f for f in self.findings if f["id"] == fid), None)

    def select_finding(self, fid: int) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.UserRole) == fid:
                self.table.selectRow(r)
                return

    def _selection_changed(self) -> None:
        f = self.selected_finding()
        self.timeline.selected_id = f["id"] if f else None
        # a long word (a file name in a note) may break after _ . - / rather than widen the column
        self.detail_label.setText(re.sub(r"\S{20,}", lambda m: re.sub(r"([_.\-/])(?=\S)", "\\1\u200b", m.group()),
                                         self._detail_text(f)))
        self.detail_label.setVisible(f is not None)
        if f is not None:  # PgDn to a finding shows its row, once the line above has taken its room
            self._scroll_timer.start()
        self.timeline.update()

    def _jump_row(self, row: int) -> None:
        fid = self.table.item(row, 0).data(Qt.UserRole)
        f = next((x for x in self.findings if x["id"] == fid), None)
        if f and f.get("frame_index") is not None:
            self.pause()
            self.seek(int(f["frame_index"]))

    def jump_finding(self, direction: int) -> None:
        frames = sorted({int(f["frame_index"]) for f in self.findings if f.get("frame_index") is not None
                         and f.get("status") != "rejected"})
        if not frames:
            self.status_message.emit("No findings to jump to.")
            return
        self.pause()
        if direction > 0:
            target = next((x for x in frames if x > self.pos), frames[0])
        else:
            target = next((x for x in reversed(frames) if x < self.pos), frames[-1])
        self.seek(target)
        f = next(x for x in self.findings if x.get("frame_index") == target)
        self.select_finding(f["id"])

    def add_finding(self, label: str, confidence: float | None = None, note: str = "",
                    box: list[float] | None = None, status: str = "confirmed") -> int:
        """A clinician's finding at the frame on screen (clinician findings start confirmed)."""
        fid = self.ctx.store.add_finding(self.study_id, time_s=round(self.pos / self.fps, 3), frame_index=self.pos,
                                         label=label, confidence=confidence, source="clinician", note=note,
                                         box=box, status=status)
        self.reload_findings()
        self.select_finding(fid)
        self.show_frame(self.pos)
        return fid

    def edit_finding(self, fid: int, **changes: Any) -> None:
        if "box" in changes and isinstance(changes["box"], (list, tuple)):
            changes["box"] = json.dumps(list(changes["box"]))
        self.ctx.store.update_finding(fid, **changes)
        self.reload_findings()
        self.show_frame(self.pos)

    def set_status_selected(self, status: str) -> None:
        f = self.selected_finding()
        if f is None:
            self.status_message.emit("Select a finding first.")
            return
        self.edit_finding(f["id"], status=status)

    def delete_selected(self) -> None:
        f = self.selected_finding()
        if f is None:
            return
        self.ctx.store.delete_finding(f["id"])
        self.reload_findings()
        self.show_frame(self.pos)

    def add_dialog(self) -> None:
        if self.study_id is None:
            return
        self.pause()
        dlg = FindingDialog(self, f"Add finding at {fmt_time(self.pos / self.fps)} (frame {self.pos})")
        if dlg.exec():
            self.add_finding(**dlg.values())

    def edit_dialog(self) -> None:
        f = self.selected_finding()
        if f is None:
            self.status_message.emit("Select a finding first.")
            return
        dlg = FindingDialog(self, f"Edit finding at {fmt_time(f.get('time_s'))}", f.get("label") or "",
                            f.get("confidence"), f.get("note") or "")
        if dlg.exec():
            self.edit_finding(f["id"], **dlg.values())


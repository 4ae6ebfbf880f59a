"""The study list: studies grouped by patient (or flat), searched by name or ID and filtered by modality,
date range, "not a clinical result" and "not yet analysed". Right-click: assign a study to a patient,
correct a patient's details, merge two patients, open the timeline, compare with the prior study.

The list edits only patient identity in the store; opening a study is the main window's job
(``study_activated``)."""
from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLineEdit,
    QMenu,
    QMessageBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.patients.study_item import ROLE_PARTS, StudyDelegate, study_parts
from app.theme import MUTED, WARN
from app.widgets.icons import modality_icon
from inference.patients import (
    StudyFilter,
    group_by_patient,
    iso_date,
    key_result,
    patient_label,
    study_day,
)
from inference.study import MODALITIES, MODALITY_TITLES

ROLE_STUDY = Qt.UserRole
ROLE_PATIENT = Qt.UserRole + 1


class _ItemText:
    """``study_list.item(i).text()`` as a QListWidget gave it (tests and older callers)."""

    def __init__(self, item: QTreeWidgetItem):
        self._item = item

    def text(self) -> str:
        return self._item.text(0)

    def data(self, role):
        return self._item.data(0, role)


class StudyBrowser(QWidget):
    study_activated = Signal(int)
    timeline_requested = Signal(int)  # patient id
    compare_requested = Signal(int)  # study id
    changed = Signal()  # patient identity edited

    def __init__(self, store, parent: QWidget | None = None):
        super().__init__(parent)
        self.store = store
        self.current_study: int | None = None
        self.rows: list[dict] = []
        #: () -> {study id: neutral label}: studies shown under a label instead of their name, path and key
        #: result (an echo teaching loop before the trainee's estimate is locked: the main window's blind_map)
        self.blind = None
        self._keys: dict[int, tuple] = {}  # study id -> (results signature, key result text, verdict)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.setSpacing(3)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search patient name or ID…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.apply)
        lay.addWidget(self.search)
        row = QHBoxLayout()
        self.modality = QComboBox()
        self.modality.addItem("All modalities", "")
        for m in MODALITIES:
            self.modality.addItem(MODALITY_TITLES[m], m)
        self.modality.currentIndexChanged.connect(self.apply)
        self.grouped = QCheckBox("By patient")
        self.grouped.setChecked(True)
        self.grouped.toggled.connect(self.apply)
        row.addWidget(self.modality, 1)
        row.addWidget(self.grouped)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.date_from = QLineEdit()
        self.date_from.setPlaceholderText("from YYYY-MM-DD")
        self.date_to = QLineEdit()
        self.date_to.setPlaceholderText("to YYYY-MM-DD")
        for w in (self.date_from, self.date_to):
            w.setClearButtonEnabled(True)
            w.textChanged.connect(self.apply)
            row.addWidget(w)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.non_clinical = QCheckBox("Not clinical")
        self.non_clinical.setToolTip("Only studies with a result stamped NOT A CLINICAL RESULT")
        self.not_analysed = QCheckBox("Not analysed")
        self.not_analysed.setToolTip("Only studies without any stored result")
        for w in (self.non_clinical, self.not_analysed):
            w.toggled.connect(self.apply)
            row.addWidget(w)
        row.addStretch(1)
        lay.addLayout(row)
        self.tree = QTreeWidget()
        self.tree.setObjectName("studyList")
        self.tree.setHeaderHidden(True)
        self.tree.setIconSize(QSize(24, 24))
        self.tree.setIndentation(12)
        self.tree.setUniformRowHeights(False)
        self.tree.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.tree.setItemDelegate(StudyDelegate(self.tree))  # wrapped, never cut; results in their verdict's colour
        self.tree.itemActivated.connect(self._activated)
        self.tree.itemClicked.connect(self._activated)
        self.tree.setContextMenuPolicy(Qt.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._menu)
        lay.addWidget(self.tree, 1)

    # -- data ------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the studies and their key results from the store, then show them filtered."""
        rows = self.store.studies()
        for r in rows:
            # a study's results are parsed again only when they changed (a refresh follows every analysis)
            sig = (r.get("n_results"), r.get("last_result_at"), r.get("last_model"))
            cached = self._keys.get(r["id"])
            if cached is not None and cached[0] == sig and r["modality"] != "endo":  # endo: findings change too
                r["key_text"], r["key_verdict"] = cached[1], cached[2]
                continue
            try:
                results = self.store.results(r["id"]) if r.get("n_results") else []
                findings = self.store.findings(r["id"]) if r["modality"] == "endo" else ()
                k = key_result(r["modality"], results, findings)
            except Exception:  # a damaged row must not empty the list
                k = None
            r["key_text"] = k.text if k else ""
            r["key_verdict"] = k.verdict if k else ""
            self._keys[r["id"]] = (sig, r["key_text"], r["key_verdict"])
        self.rows = rows
        self.apply()

    def filter(self) -> StudyFilter:
        return StudyFilter(text=self.search.text(), modality=self.modality.currentData() or "",
                           date_from=iso_date(self.date_from.text()), date_to=iso_date(self.date_to.text()),
                           non_clinical=self.non_clinical.isChecked(), not_analysed=self.not_analysed.isChecked())

    def _study_text(self, r: dict) -> str:
        name, date, ai, _verdict, tag = self._study_fields(r)
        return f"{name}\n{date} · {ai}{' · NOT CLINICAL' if tag else ''}"

    @staticmethod
    def _study_fields(r: dict) -> tuple[str, str, str, str, bool]:
        """name, date, result text, verdict, NOT CLINICAL tag"""
        ai = (r.get("key_text") or r["last_model"]) if r.get("last_model") else "not analysed"
        day = study_day(r)
        date = day if r.get("study_date") else (r.get("opened_at") or "")[:16].replace("T", " ")
        return (r["name"], date, ai, r.get("key_verdict") or "",
                bool(r.get("last_model") and r.get("n_non_clinical")))

    def _blinded(self, r: dict, label: str) -> dict:
        """A row as the list may show it while blinded: the label for the name, no path, no result."""
        return dict(r, name=label, source_path="", accession="", key_text="",
                    last_model="result hidden until the estimate is locked" if r.get("last_model") else None,
                    _blinded=True)

    def _study_item(self, r: dict) -> QTreeWidgetItem:
        it = QTreeWidgetItem([self._study_text(r)])
        name, date, ai, verdict, tag = self._study_fields(r)
        it.setData(0, ROLE_PARTS, study_parts(name, date, ai, "" if r.get("_blinded") else verdict, tag,
                                              bool(r.get("last_model")) and not r.get("_blinded")))
        it.setIcon(0, modality_icon(r["modality"]))
        it.setData(0, ROLE_STUDY, r["id"])
        if r.get("_blinded"):
            it.setToolTip(0, f"{r['name']}\nTeaching loop: its name, file and results are shown once your "
                             "estimate is locked (blinded practice)")
            return it
        tip = [r.get("source_path") or ""]
        if r.get("key_text"):
            tip.append(r["key_text"])
        if r.get("study_date"):
            tip.append(f"study date {r['study_date']}" + (f" {r['study_time']}" if r.get("study_time") else ""))
        else:
            tip.append("no study date in the file: placed at the day it was first opened")
        if r.get("accession"):
            tip.append(f"accession {r['accession']}")
        if r.get("patient_source") == "user":
            tip.append("assigned to this patient by hand")
        it.setToolTip(0, "\n".join(tip))
        return it

    def apply(self, *_) -> None:
        f = self.filter()
        masks = self.blind() if self.blind is not None else {}
        rows = [self._blinded(r, masks[r["id"]]) if r["id"] in masks else r for r in self.rows]
        rows = [r for r in rows if f.matches(r)]
        self.tree.clear()
        self._items: list[QTreeWidgetItem] = []
        selected = None
        if self.grouped.isChecked():
            bold = QFont()
            bold.setBold(True)
            for head, rs in group_by_patient(rows):
                n = len(rs)
                label = patient_label(head) if head else "Unassigned"
                top = QTreeWidgetItem([f"{label}  ({n})"])
                top.setFont(0, bold)
                top.setData(0, ROLE_PATIENT, head["id"] if head else None)
                top.setToolTip(0, f"{label}\nRight-click: timeline, correct details, merge" if head else
                               "Studies whose file names no patient: right-click one to assign it")
                if head is None:
                    top.setForeground(0, QBrush(QColor(MUTED)))
                self.tree.addTopLevelItem(top)
                for r in rs:
                    it = self._study_item(r)
                    top.addChild(it)
                    self._items.append(it)
                    if r["id"] == self.current_study:
                        selected = it
                top.setExpanded(True)
        else:
            for r in rows:
                it = self._study_item(r)
                self.tree.addTopLevelItem(it)
                self._items.append(it)
                if r["id"] == self.current_study:
                    selected = it
        if selected is not None:
            self.tree.setCurrentItem(selected)
        if not rows and self.rows:
            it = QTreeWidgetItem(["No study matches the search and filters."])
            it.setForeground(0, QBrush(QColor(WARN)))
            it.setFlags(Qt.NoItemFlags)
            self.tree.addTopLevelItem(it)

    # QListWidget-like access to the visible studies (in display order)
    def count(self) -> int:
        return len(self._items) if hasattr(self, "_items") else 0

    def item(self, i: int) -> _ItemText:
        return _ItemText(self._items[i])

    def visible_study_ids(self) -> list[int]:
        return [it.data(0, ROLE_STUDY) for it in getattr(self, "_items", [])]

    def step(self, d: int) -> None:
        """Open the next (d=1) or previous (d=-1) study of the list as shown (keyboard reading through a list)."""
        ids = self.visible_study_ids()
        if not ids:
            return
        i = ids.index(self.current_study) + d if self.current_study in ids else (0 if d > 0 else len(ids) - 1)
        if 0 <= i < len(ids):
            self.study_activated.emit(int(ids[i]))

    def set_current(self, study_id: int | None) -> None:
        self.current_study = study_id
        for it in getattr(self, "_items", []):
            if it.data(0, ROLE_STUDY) == study_id:
                self.tree.setCurrentItem(it)
                return

    # -- interaction -------------------------------------------------------------------------------
    def _activated(self, item: QTreeWidgetItem, *_) -> None:
        sid = item.data(0, ROLE_STUDY)
        if sid is not None and sid != self.current_study:
            self.study_activated.emit(int(sid))

    def _menu(self, pos) -> None:
        item = self.tree.itemAt(pos)
        if item is None:
            return
        m = QMenu(self)
        sid = item.data(0, ROLE_STUDY)
        if sid is not None:
            row = next((r for r in self.rows if r["id"] == sid), {})
            m.addAction("Open", lambda: self.study_activated.emit(int(sid)))
            m.addAction("Assign to patient…", lambda: self.assign_dialog(int(sid)))
            if row.get("patient_id") is not None:
                m.addAction("Patient timeline", lambda: self.timeline_requested.emit(int(row["patient_id"])))
                m.addAction("Compare with prior…", lambda: self.compare_requested.emit(int(sid)))
                m.addAction("Unassign", lambda: self._assign(int(sid), None))
            if row.get("patient_source") == "user":
                m.addAction("Patient from the file again", lambda: self._do(self.store.reset_assignment, int(sid)))
        else:
            pid = item.data(0, ROLE_PATIENT)
            if pid is None:
                return
            m.addAction("Timeline", lambda: self.timeline_requested.emit(int(pid)))
            m.addAction("Correct details…", lambda: self.edit_dialog(int(pid)))
            m.addAction("Merge into another patient…", lambda: self.merge_dialog(int(pid)))
        m.exec(self.tree.viewport().mapToGlobal(pos))

    def _do(self, fn, *args) -> bool:
        from app.store import StoreError

        try:
            fn(*args)
        except StoreError as e:
            QMessageBox.warning(self, "Lightbox", str(e))
            return False
        self.refresh()
        self.changed.emit()
        return True

    def _assign(self, sid: int, pid: int | None) -> None:
        self._do(self.store.assign_study, sid, pid)

    def assign_dialog(self, study_id: int) -> None:
        from app.patients.dialogs import PickPatientDialog

        d = PickPatientDialog(self.store.patients(), "Assign study to patient",
                              "Put this study under one of the patients below, or type a new patient.", parent=self)
        ok, c = d.exec(), d.chosen()
        d.deleteLater()  # each dialog would otherwise stay as a hidden child for the rest of the session
        if not ok:
            return
        if isinstance(c, tuple):
            from app.store import StoreError

            v = c[1]
            try:
                pid = self.store.add_patient(**v)
            except StoreError as e:
                QMessageBox.warning(self, "Lightbox", str(e))
                return
            self._assign(study_id, pid)
        elif c is not None:
            self._assign(study_id, int(c))

    def edit_dialog(self, patient_id: int) -> None:
        from app.patients.dialogs import EditPatientDialog

        p = self.store.patient(patient_id)
        if p is None:
            return
        d = EditPatientDialog(p, self)
        ok, values = d.exec(), d.form.values()
        d.deleteLater()
        if ok:
            self._do(lambda: self.store.update_patient(patient_id, **values))

    def merge_dialog(self, patient_id: int) -> None:
        from app.patients.dialogs import PickPatientDialog

        p = self.store.patient(patient_id) or {}
        d = PickPatientDialog(self.store.patients(), "Merge patients",
                              f"Merge {patient_label(p)} into which patient? Every study moves there; "
                              "files of either patient find the merged one from now on.",
                              exclude={patient_id}, allow_new=False, parent=self)
        ok, c = d.exec(), d.chosen()
        d.deleteLater()
        if ok and c is not None:
            self._do(self.store.merge_patients, patient_id, int(c))

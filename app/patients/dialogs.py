"""Small dialogs for patient identity: pick (or create) a patient, correct a patient's details."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QVBoxLayout,
    QWidget,
)

from inference.patients import iso_date, patient_label


class PatientForm(QWidget):
    """Name, ID, birth date, sex."""

    def __init__(self, patient: dict | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        p = patient or {}
        lay = QFormLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.name = QLineEdit(p.get("name") or "")
        self.name.setPlaceholderText("FAMILY, Given")
        self.external_id = QLineEdit(p.get("external_id") or "")
        self.external_id.setPlaceholderText("patient ID / MRN (optional)")
        self.birth_date = QLineEdit(p.get("birth_date") or "")
        self.birth_date.setPlaceholderText("YYYY-MM-DD (optional)")
        self.sex = QComboBox()
        self.sex.addItems(["", "F", "M", "O"])
        self.sex.setCurrentText(p.get("sex") or "")
        lay.addRow("Name", self.name)
        lay.addRow("ID", self.external_id)
        lay.addRow("Born", self.birth_date)
        lay.addRow("Sex", self.sex)

    def values(self) -> dict[str, str]:
        return {"name": self.name.text().strip(), "external_id": self.external_id.text().strip(),
                "birth_date": self.birth_date.text().strip(), "sex": self.sex.currentText()}

    def problem(self) -> str:
        v = self.values()
        if not (v["name"] or v["external_id"]):
            return "A patient needs a name or an ID."
        if v["birth_date"] and not iso_date(v["birth_date"]):
            return f"'{v['birth_date']}' is not a date (YYYY-MM-DD)."
        return ""


class EditPatientDialog(QDialog):
    def __init__(self, patient: dict, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Correct patient details")
        lay = QVBoxLayout(self)
        self.form = PatientForm(patient)
        lay.addWidget(self.form)
        note = QLabel("Files keep finding this patient by the ID (or name) they were first read with.")
        note.setObjectName("muted")
        note.setWordWrap(True)
        lay.addWidget(note)
        bb = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        bb.accepted.connect(self._ok)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)

    def _ok(self) -> None:
        msg = self.form.problem()
        if msg:
            QMessageBox.warning(self, "Lightbox", msg)
            return
        self.accept()


class PickPatientDialog(QDialog):
    """Choose one of the stored patients, or (``allow_new``) type a new one.

    ``chosen()`` -> a patient id, ``("new", values)`` or None."""

    def __init__(self, patients: list[dict], title: str, prompt: str, exclude: set[int] = frozenset(),
                 allow_new: bool = True, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(460, 420)
        lay = QVBoxLayout(self)
        lab = QLabel(prompt)
        lab.setWordWrap(True)
        lay.addWidget(lab)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search name or ID…")
        self.search.textChanged.connect(self._filter)
        lay.addWidget(self.search)
        self.list = QListWidget()
        for p in patients:
            if p["id"] in exclude:
                continue
            n = p.get("n_studies") or 0
            it = QListWidgetItem(f"{patient_label(p)}  ({n} stud{'y' if n == 1 else 'ies'})")
            it.setData(Qt.UserRole, p["id"])
            self.list.addItem(it)
        self.list.itemDoubleClicked.connect(lambda _: self._ok())
        lay.addWidget(self.list, 1)
        self.form = None
        if allow_new:
            lay.addWidget(QLabel("… or a new patient:"))
            self.form = PatientForm()
            lay.addWidget(self.form)
        bb = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        bb.accepted.connect(self._ok)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)

    def _filter(self, text: str) -> None:
        words = text.lower().split()
        for i in range(self.list.count()):
            it = self.list.item(i)
            it.setHidden(not all(w in it.text().lower() for w in words))

    def chosen(self):
        if self.form is not None and any(self.form.values()[k] for k in ("name", "external_id")):
            return ("new", self.form.values())
        it = self.list.currentItem()
        return it.data(Qt.UserRole) if it is not None and not it.isHidden() else None

    def _ok(self) -> None:
        c = self.chosen()
        if c is None:
            QMessageBox.information(self, "Lightbox", "Pick a patient from the list"
                                    + (" or type a new one." if self.form is not None else "."))
            return
        if isinstance(c, tuple) and self.form is not None:
            msg = self.form.problem()
            if msg:
                QMessageBox.warning(self, "Lightbox", msg)
                return
        self.accept()

"""Network ▸ Query / retrieve: search a PACS at study level (patient name / ID, dates, modality, accession)
and fetch the chosen studies (C-MOVE to this node or C-GET, as the PACS is set up). Both run as Jobs;
fetched studies appear in the study list as they are read."""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QFormLayout, QHBoxLayout, QHeaderView, QLabel,
                               QLineEdit, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

MODALITY_CHOICES = ("", "CR", "DX", "US", "ECG", "ES", "XC", "CT", "MR")
COLUMNS = ("Date", "Patient", "ID", "Born", "Modalities", "Accession", "Description", "Images", "Here")


def clean(msg: str) -> str:
    """A job's error text without the exception class name the job runner puts in front."""
    for p in ("DicomNetError: ", "SendError: ", "ConfigError: "):
        if msg.startswith(p):
            return msg[len(p):]
    return msg


class QueryDialog(QDialog):
    retrieved = Signal()  # a retrieval finished (the study list refreshes)

    def __init__(self, controller, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller, self.ctx = controller, controller.ctx
        self.hits: list = []
        self.setWindowTitle("Query / retrieve")
        self.resize(980, 560)
        lay = QVBoxLayout(self)
        form = QFormLayout()
        top = QHBoxLayout()
        self.pacs = QComboBox()
        for p in controller.cfg.pacs:
            self.pacs.addItem(p.label(), p.name)
        top.addWidget(self.pacs, 1)
        form.addRow("PACS", top)
        row = QHBoxLayout()
        self.name = QLineEdit()
        self.name.setPlaceholderText("patient name (DOE, DOE^JOHN, do*)")
        self.pid = QLineEdit()
        self.pid.setPlaceholderText("patient ID")
        row.addWidget(self.name, 2)
        row.addWidget(self.pid, 1)
        form.addRow("Patient", row)
        row = QHBoxLayout()
        self.date_from, self.date_to = QLineEdit(), QLineEdit()
        self.date_from.setPlaceholderText("from YYYY-MM-DD")
        self.date_to.setPlaceholderText("to YYYY-MM-DD")
        self.modality = QComboBox()
        self.modality.addItems(["any modality" if not m else m for m in MODALITY_CHOICES])
        self.accession = QLineEdit()
        self.accession.setPlaceholderText("accession")
        for w in (self.date_from, self.date_to, self.modality, self.accession):
            row.addWidget(w)
        form.addRow("Study", row)
        lay.addLayout(form)
        btns = QHBoxLayout()
        self.search_btn = QPushButton("Search")
        self.search_btn.setObjectName("primary")
        self.search_btn.setDefault(True)
        self.search_btn.clicked.connect(self.search)
        self.fetch_btn = QPushButton("Retrieve selected")
        self.fetch_btn.clicked.connect(self.retrieve)
        self.fetch_btn.setEnabled(False)
        btns.addWidget(self.search_btn)
        btns.addWidget(self.fetch_btn)
        btns.addStretch(1)
        lay.addLayout(btns)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(6, QHeaderView.Stretch)
        self.table.itemSelectionChanged.connect(lambda: self.fetch_btn.setEnabled(bool(self.selected())))
        self.table.doubleClicked.connect(lambda _i: self.retrieve())
        lay.addWidget(self.table, 1)
        self.status = QLabel("" if controller.cfg.pacs else "No PACS configured: Network ▸ DICOM node settings…")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.search_btn.setEnabled(bool(controller.cfg.pacs))

    def peer(self):
        return self.controller.cfg.peer(self.pacs.currentData())

    def query(self):
        from inference.dicomnet.scu import StudyQuery

        m = self.modality.currentText()
        return StudyQuery(self.name.text(), self.pid.text(), self.date_from.text(), self.date_to.text(),
                          "" if m == "any modality" else m, self.accession.text())

    def search(self) -> None:
        from inference.dicomnet.scu import DicomNetError, find_studies

        cfg, peer = self.controller.cfg, self.peer()
        try:
            q = self.query()
            q.identifier()  # dates are checked here, before anything is sent
        except DicomNetError as e:
            self.status.setText(str(e))
            return
        self.search_btn.setEnabled(False)
        self.status.setText(f"Searching {peer.name}…")

        def done(hits):
            self.search_btn.setEnabled(True)
            self.show_hits(hits)
            self.status.setText(f"{len(hits)} studies on {peer.name}.")

        def failed(msg):
            self.search_btn.setEnabled(True)
            self.status.setText(clean(msg))

        self.ctx.jobs.start(f"C-FIND on {peer.name}", lambda ctx: find_studies(cfg, peer, q, ctx),
                            on_result=done, on_error=failed, on_cancelled=lambda: failed("Search cancelled."))

    def show_hits(self, hits) -> None:
        self.hits = list(hits)
        here = self.ctx.store.known_study_uids()
        self.table.setRowCount(0)
        for h in self.hits:
            r = self.table.rowCount()
            self.table.insertRow(r)
            vals = (h.study_date, h.patient_name, h.patient_id, h.birth_date, "/".join(h.modalities), h.accession,
                    h.description, "" if h.instances is None else str(h.instances), "✓" if h.study_uid in here else "")
            for c, v in enumerate(vals):
                it = QTableWidgetItem(v)
                if c == 0:
                    it.setData(Qt.UserRole, h.study_uid)
                self.table.setItem(r, c, it)

    def selected(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.table.item(r, 0).data(Qt.UserRole) for r in rows if self.table.item(r, 0)]

    def retrieve(self) -> None:
        from inference.dicomnet.fetch import retrieve

        uids = self.selected()
        if not uids:
            return
        cfg, peer, db = self.controller.cfg, self.peer(), self.ctx.store.path
        self.status.setText(f"Retrieving {len(uids)} stud{'y' if len(uids) == 1 else 'ies'} from {peer.name} "
                            f"({'C-GET' if peer.retrieve == 'get' else 'C-MOVE to ' + cfg.ae_title})…")

        def done(outs):
            self.status.setText("; ".join(o.summary() for o in outs) + ".")
            self.show_hits(self.hits)
            self.retrieved.emit()

        self.ctx.jobs.start(f"Retrieving from {peer.name}", lambda ctx: retrieve(cfg, peer, uids, db=db, ctx=ctx),
                            on_result=done, on_error=lambda msg: self.status.setText(clean(msg)))

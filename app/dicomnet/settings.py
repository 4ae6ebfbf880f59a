"""Settings ▸ DICOM node: the node (AE title, port, bind address, start with Lightbox), who may send to it,
the PACS list (with a C-ECHO test run as a Job) and the priors fetch. Saved to ``dicom.json`` (0600)."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QPushButton, QSpinBox, QTableWidget,
                               QTableWidgetItem, QTabWidget, QVBoxLayout, QWidget)

from inference.dicomnet import config as C


class _Table(QWidget):
    """A small editable table with Add / Remove."""

    def __init__(self, headers: list[str], rows: list[list[str]], combo_col: int | None = None,
                 combo_items: tuple[str, ...] = (), parent: QWidget | None = None):
        super().__init__(parent)
        self.combo_col, self.combo_items = combo_col, combo_items
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.table = QTableWidget(0, len(headers))
        self.table.setHorizontalHeaderLabels(headers)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setMinimumHeight(150)
        lay.addWidget(self.table)
        row = QHBoxLayout()
        self.add_btn, self.del_btn = QPushButton("Add"), QPushButton("Remove")
        self.add_btn.clicked.connect(lambda: self.add([""] * len(headers)))
        self.del_btn.clicked.connect(self.remove)
        row.addWidget(self.add_btn)
        row.addWidget(self.del_btn)
        row.addStretch(1)
        self.buttons = row
        lay.addLayout(row)
        for r in rows:
            self.add(r)

    def add(self, values: list[str]) -> None:
        r = self.table.rowCount()
        self.table.insertRow(r)
        for c, v in enumerate(values):
            if c == self.combo_col:
                cb = QComboBox()
                cb.addItems(list(self.combo_items))
                cb.setCurrentText(v or self.combo_items[0])
                self.table.setCellWidget(r, c, cb)
            else:
                self.table.setItem(r, c, QTableWidgetItem(str(v)))

    def remove(self) -> None:
        for r in sorted({i.row() for i in self.table.selectedIndexes()}, reverse=True):
            self.table.removeRow(r)

    def values(self) -> list[list[str]]:
        out = []
        for r in range(self.table.rowCount()):
            vals = []
            for c in range(self.table.columnCount()):
                w = self.table.cellWidget(r, c)
                vals.append(w.currentText() if isinstance(w, QComboBox) else
                            (self.table.item(r, c).text().strip() if self.table.item(r, c) else ""))
            if any(vals[i] for i in range(len(vals)) if i != self.combo_col):
                out.append(vals)
        return out


class DicomSettingsDialog(QDialog):
    def __init__(self, controller, parent: QWidget | None = None):
        super().__init__(parent)
        self.controller = controller
        self.ctx = controller.ctx
        cfg = controller.cfg
        self.setWindowTitle("DICOM node settings")
        self.setMinimumWidth(600)
        lay = QVBoxLayout(self)
        tabs = QTabWidget()
        lay.addWidget(tabs)

        node = QWidget()
        f = QFormLayout(node)
        self.ae = QLineEdit(cfg.ae_title)
        self.ae.setMaxLength(16)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(cfg.port or C.DEFAULT_PORT)
        self.bind = QLineEdit(cfg.bind)
        self.bind.setToolTip("127.0.0.1: this computer only. 0.0.0.0: every network interface (for modalities "
                             "and PACS on the hospital network). Only allowed callers are accepted either way.")
        self.autostart = QCheckBox("Start the node when Lightbox starts")
        self.autostart.setChecked(cfg.autostart)
        f.addRow("AE title", self.ae)
        f.addRow("Port", self.port)
        f.addRow("Listen on", self.bind)
        f.addRow("", self.autostart)
        self.priors = QCheckBox("When a study is opened, fetch its patient's other studies of the same kind")
        self.priors.setChecked(cfg.fetch_priors)
        self.priors_max = QSpinBox()
        self.priors_max.setRange(1, 50)
        self.priors_max.setValue(max(1, cfg.priors_max))
        f.addRow("Priors", self.priors)
        f.addRow("at most", self.priors_max)
        uid = QLabel(f"UID root of this installation: {cfg.uid_root}<br><small>New series and instances Lightbox "
                     "sends back are numbered under it; they join the source study.</small>")
        uid.setObjectName("muted")
        uid.setWordWrap(True)
        uid.setTextInteractionFlags(Qt.TextSelectableByMouse)
        f.addRow(uid)
        tabs.addTab(node, "This node")

        box = QWidget()
        v = QVBoxLayout(box)
        note = QLabel("Modalities and workstations that may send to this node. Everyone else is refused and "
                      "logged; every PACS on the next tab may send too (it delivers what a C-MOVE asks for).")
        note.setObjectName("muted")
        note.setWordWrap(True)
        v.addWidget(note)
        self.callers = _Table(["Calling AE title", "Host (empty: any)"], [[c.ae_title, c.host] for c in cfg.callers])
        v.addWidget(self.callers)
        tabs.addTab(box, "Allowed callers")

        box = QWidget()
        v = QVBoxLayout(box)
        self.pacs = _Table(["Name", "AE title", "Host", "Port", "Retrieve"],
                           [[p.name, p.ae_title, p.host, str(p.port), p.retrieve] for p in cfg.pacs],
                           combo_col=4, combo_items=("move", "get"))
        self.echo_btn = QPushButton("Test (C-ECHO)")
        self.echo_btn.setToolTip("Echo the selected PACS as this node's AE title")
        self.echo_btn.clicked.connect(self.echo)
        self.pacs.buttons.insertWidget(2, self.echo_btn)
        v.addWidget(self.pacs)
        note = QLabel("C-MOVE: the PACS sends studies to this node, so it must know this node's AE title, host "
                      "and port. C-GET: the PACS answers on Lightbox's own connection (nothing to set up there).")
        note.setObjectName("muted")
        note.setWordWrap(True)
        v.addWidget(note)
        tabs.addTab(box, "PACS")
        self.tabs = tabs
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        bb = QDialogButtonBox(QDialogButtonBox.Save | QDialogButtonBox.Cancel)
        bb.accepted.connect(self.save)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)

    def config(self) -> C.NodeConfig:
        """The form as settings (raises ConfigError with the first problem)."""
        pacs = []
        for name, ae, host, port, how in self.pacs.values():
            try:
                port_n = int(port)
            except ValueError:
                raise C.ConfigError(f"PACS {name or ae}: the port '{port}' is not a number") from None
            pacs.append(C.Peer(name, ae, host, port_n, how))
        cfg = C.NodeConfig(self.ae.text(), self.port.value(), self.bind.text(), self.autostart.isChecked(),
                           [C.Caller(ae, host) for ae, host in self.callers.values()], pacs,
                           self.priors.isChecked(), self.priors_max.value(), self.controller.cfg.uid_root)
        return cfg.validated()

    def save(self) -> None:
        try:
            self.controller.save(self.config())
        except C.ConfigError as e:
            self.status.setText(f"<span style='color:#e5534b'>{e}</span>")
            return
        self.accept()

    def echo(self) -> None:
        from inference.dicomnet import scu

        try:
            cfg = self.config()
        except C.ConfigError as e:
            self.status.setText(f"<span style='color:#e5534b'>{e}</span>")
            return
        rows = sorted({i.row() for i in self.pacs.table.selectedIndexes()}) or [0]
        if not cfg.pacs:
            self.status.setText("Add a PACS first.")
            return
        peer = cfg.pacs[min(rows[0], len(cfg.pacs) - 1)]
        self.status.setText(f"Echoing {peer.label()}…")
        self.echo_btn.setEnabled(False)

        def done(seconds):
            self.echo_btn.setEnabled(True)
            self.status.setText(f"{peer.name} answered the C-ECHO in {1000 * seconds:.0f} ms.")

        def failed(msg):
            self.echo_btn.setEnabled(True)
            self.status.setText(f"<span style='color:#e5534b'>{msg}</span>")

        self.ctx.jobs.start(f"C-ECHO {peer.name}", lambda ctx: scu.echo(cfg, peer), on_result=done, on_error=failed)

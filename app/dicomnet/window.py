"""The main window's DICOM parts (a mixin of ``app.main.MainWindow``): the Network menu, the node's state in
the status bar, received studies in the study list as they arrive, Send to PACS, and the background fetch of
an opened study's priors. Expects the window's ``ctx``, ``study``, ``study_id``, ``message``,
``refresh_studies``, ``statusBar`` and ``_act``."""
from __future__ import annotations

from PySide6.QtWidgets import (QAbstractItemView, QDialog, QHeaderView, QInputDialog, QLabel, QTableWidget,
                               QTableWidgetItem, QVBoxLayout)

from app.dicomnet.query import clean


class DicomWindowMixin:
    dicom = None  # app.dicomnet.controller.NodeController
    _priors_asked: set | None = None

    def _init_dicom(self) -> None:
        from app.dicomnet.controller import NodeController

        self.dicom = NodeController(self.ctx, self)
        self._priors_asked = set()
        self.dicom_label = QLabel("DICOM node off")
        self.dicom_label.setObjectName("dicomLabel")
        self.statusBar().addPermanentWidget(self.dicom_label)
        self.dicom.state_changed.connect(self._dicom_state)
        self.dicom.study_received.connect(self._dicom_received)
        self.dicom.object_kept.connect(lambda why: self.statusBar().showMessage(f"Received, kept but not read: {why}", 8000))
        mb = self.menuBar()
        help_menu = next((a for a in mb.actions() if a.text() == "&Help"), None)
        m = mb.addMenu("&Network") if help_menu is None else None
        if m is None:
            from PySide6.QtWidgets import QMenu

            m = QMenu("&Network", self)
            mb.insertMenu(help_menu, m)
        self._act(m, "DICOM node &settings…", "Ctrl+Alt+N", self.dicom_settings)
        self.dicom_toggle = self._act(m, "&Start DICOM node", "Ctrl+Alt+D", self.toggle_node)
        m.addSeparator()
        self._act(m, "&Query / retrieve…", "Ctrl+Shift+F", self.query_retrieve)
        self._act(m, "Send study to &PACS…", "Ctrl+Shift+S", lambda: self.send_to_pacs())
        self._act(m, "&Received objects…", "Ctrl+Alt+R", self.received_objects)
        if self.dicom.cfg.autostart:
            self.dicom.start()
        else:
            self.dicom.emit_state()

    # -- node -------------------------------------------------------------------------------------------
    def _dicom_state(self, text: str, tip: str) -> None:
        self.dicom_label.setText(text)
        self.dicom_label.setToolTip(tip)
        self.dicom_toggle.setText("&Stop DICOM node" if self.dicom.running else "&Start DICOM node")

    def toggle_node(self) -> None:
        if self.dicom.running:
            self.dicom.stop()
        elif not self.dicom.start():
            self.message(self.dicom.error, error=True)

    def dicom_settings(self) -> None:
        from app.dicomnet.settings import DicomSettingsDialog

        d = DicomSettingsDialog(self.dicom, self)
        d.exec()

    def _dicom_received(self, sid: int) -> None:
        self.refresh_studies()
        row = self.ctx.store.study(sid) or {}
        self.statusBar().showMessage(f"Received: {row.get('name') or 'a study'}", 6000)

    def _shutdown_dicom(self) -> None:
        if self.dicom is not None:
            self.dicom.shutdown()

    # -- query / retrieve, received ---------------------------------------------------------------------
    def query_retrieve(self) -> None:
        from app.dicomnet.query import QueryDialog

        d = QueryDialog(self.dicom, self)
        d.retrieved.connect(self.refresh_studies)
        d.show()
        self._query_dialog = d  # kept alive while its jobs run

    def received_objects(self) -> None:
        from inference.dicomnet.classify import sop_class_name

        rows = self.ctx.store.received_instances(limit=2000)
        d = QDialog(self)
        d.setWindowTitle("Received DICOM objects")
        d.resize(900, 480)
        lay = QVBoxLayout(d)
        n_bad = sum(1 for r in rows if r["status"] != "read")
        note = QLabel(f"{len(rows)} received objects, {n_bad} kept but not readable by Lightbox (their files stay "
                      "in the data folder's received/ folder).")
        note.setWordWrap(True)
        lay.addWidget(note)
        cols = ("Received", "From", "Modality", "Kind", "Study", "Why not read", "File")
        t = QTableWidget(len(rows), len(cols))
        t.setHorizontalHeaderLabels(cols)
        t.verticalHeader().hide()
        t.setEditTriggers(QAbstractItemView.NoEditTriggers)
        t.setSelectionBehavior(QAbstractItemView.SelectRows)
        for i, r in enumerate(rows):
            vals = (r["received_at"] or "", r["calling_ae"] or "", r["dicom_modality"] or "",
                    sop_class_name(r["sop_class_uid"] or ""), f"#{r['study_id']}" if r["study_id"] else "",
                    r["problem"] or "", r["path"] or "")
            for c, v in enumerate(vals):
                t.setItem(i, c, QTableWidgetItem(str(v)))
        t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        t.horizontalHeader().setSectionResizeMode(5, QHeaderView.Stretch)
        lay.addWidget(t)
        d.show()
        self._received_dialog = d

    # -- send to PACS -----------------------------------------------------------------------------------
    def send_to_pacs(self, peer_name: str | None = None, kinds=("pdf", "sr", "sc")) -> None:
        from app.store import Store
        from inference.dicomnet import sendback

        if self.study_id is None:
            self.message("Open a study first.")
            return
        cfg = self.dicom.cfg
        if not cfg.pacs:
            self.message("No PACS configured: Network ▸ DICOM node settings…", error=True)
            return
        if peer_name is None:
            if len(cfg.pacs) == 1:
                peer_name = cfg.pacs[0].name
            else:
                peer_name, ok = QInputDialog.getItem(self, "Send to PACS", "Send the report and AI results to",
                                                     [p.name for p in cfg.pacs], 0, False)
                if not ok:
                    return
        peer, sid, path = cfg.peer(peer_name), self.study_id, self.ctx.store.path

        def work(ctx):
            st = Store(path)  # its own connection: this runs on a worker thread
            try:
                return sendback.send(st, sid, cfg, peer, kinds, ctx)
            finally:
                st.close()

        self.ctx.jobs.start(f"Sending to {peer.name}", work,
                            on_result=lambda rep: self.message(rep.summary(), error=not rep.ok),
                            on_error=lambda msg: self.message(clean(msg), error=True))

    # -- priors -----------------------------------------------------------------------------------------
    def dicom_study_opened(self, study_id: int | None) -> None:
        """Fetch the patient's priors of this modality in the background (once per patient and modality per
        session), when the settings ask for it and a PACS is configured."""
        from app.store import Store
        from inference.dicomnet.classify import DICOM_MODALITIES
        from inference.dicomnet.fetch import fetch_priors

        cfg = self.dicom.cfg if self.dicom else None
        if study_id is None or cfg is None or not cfg.fetch_priors or not cfg.pacs:
            return
        row = self.ctx.store.study(study_id) or {}
        if row.get("modality") not in DICOM_MODALITIES or row.get("patient_id") is None:
            return
        pat = self.ctx.store.patient(row["patient_id"]) or {}
        key = (pat.get("external_id") or "", row["modality"])
        if not key[0] or key in self._priors_asked:
            return
        self._priors_asked.add(key)
        path = self.ctx.store.path

        def work(ctx):
            st = Store(path)
            try:
                return fetch_priors(cfg, st, study_id, db=path, ctx=ctx)
            finally:
                st.close()

        def done(outs):
            n = sum(1 for o in outs if o.completed)
            if n:
                self.refresh_studies()
                self.statusBar().showMessage(f"{n} prior stud{'y' if n == 1 else 'ies'} fetched from PACS", 8000)

        self.ctx.jobs.start("Fetching priors", work, on_result=done,
                            on_error=lambda msg: self.statusBar().showMessage(f"Priors: {clean(msg)}", 8000))

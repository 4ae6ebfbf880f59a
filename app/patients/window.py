"""The main window's patient parts (a mixin of ``app.main.MainWindow``): the grouped study list, the
timeline page, compare with prior, the Patients menu and the anonymised exports.

Expects the window's ``ctx``, ``stack``, ``study``, ``study_id``, ``message``, ``open_path``,
``show_study``, ``current_viewer`` and ``_act``."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from app.patients.studylist import StudyBrowser
from inference import paths
from inference.study import MODALITY_TITLES


class PatientsWindowMixin:
    timeline = None
    compare_window = None

    # -- construction -------------------------------------------------------------------------------
    def _make_study_list(self) -> StudyBrowser:
        b = StudyBrowser(self.ctx.store)
        b.blind = self.blind_map  # teaching loops in blinded practice: neutral labels, not file names
        b.setMinimumWidth(220)
        b.study_activated.connect(self.open_study_id)
        b.timeline_requested.connect(self.show_timeline)
        b.compare_requested.connect(self.compare_with_prior)
        b.changed.connect(self._patients_changed)
        return b

    def _make_patients_menu(self, mb) -> None:
        m = mb.addMenu("&Patients")
        self._act(m, "Patient &timeline", "Ctrl+T", self.timeline_of_current)
        self._act(m, "&Assign study to patient…", "Ctrl+Shift+A", self.assign_current)
        self._act(m, "&Compare with prior…", "Ctrl+Shift+C", lambda: self.compare_with_prior(self.study_id))
        m.addSeparator()
        self._act(m, "Export &anonymised PDF…", "Ctrl+Shift+P", lambda: self.export_pdf(anonymise=True))
        self._act(m, "Export results table (CSV/&JSON)…", "Ctrl+Shift+E", self.export_table)
        self._act(m, "Export anonymised &endoscopy bundle…", "Ctrl+Shift+B", self.export_endo_anonymised)

    # -- list and timeline ------------------------------------------------------------------------------
    def open_study_id(self, sid: int) -> None:
        if sid == self.study_id:
            return
        row = self.ctx.store.study(sid)
        if row:
            self.open_path(row["source_path"], modality=row["modality"])

    def _patients_changed(self) -> None:
        if self.timeline is not None and self.stack.currentWidget() is self.timeline:
            self.timeline.refresh()

    def show_timeline(self, patient_id: int) -> None:
        from app.patients.timeline import PatientTimeline

        if self.timeline is None:
            self.timeline = PatientTimeline(self.ctx.store)
            self.timeline.study_activated.connect(self._timeline_open)
            self.timeline.edit_requested.connect(self._edit_from_timeline)
            self.stack.addWidget(self.timeline)
        self.timeline.set_patient(patient_id)
        self._show_page(self.timeline)
        p = self.ctx.store.patient(patient_id) or {}
        self.setWindowTitle(f"{p.get('name') or p.get('external_id') or 'Patient'} — timeline — Lightbox")

    def _timeline_open(self, sid: int) -> None:
        if sid == self.study_id and self.study is not None:  # already loaded: show its viewer again
            self.show_study(self.study, sid)
        else:
            self.open_study_id(sid)

    def _edit_from_timeline(self, pid: int) -> None:
        self.study_list.edit_dialog(pid)
        self.timeline.refresh()

    def _show_page(self, w) -> None:
        from PySide6.QtWidgets import QSizePolicy

        for i in range(self.stack.count()):
            x = self.stack.widget(i)
            pol = QSizePolicy.Preferred if x is w else QSizePolicy.Ignored
            x.setSizePolicy(pol, pol)
        self.stack.setCurrentWidget(w)

    def _current_patient(self) -> int | None:
        if self.study_id is None:
            return None
        row = self.ctx.store.study(self.study_id) or {}
        return row.get("patient_id")

    def patient_title(self, study_id: int | None) -> str:
        """"DOE, JOHN · ID …" of the study's patient for the window title ("" when unassigned)."""
        from inference.patients import patient_label

        row = self.ctx.store.study(study_id) if study_id is not None else None
        if not row or row.get("patient_id") is None:
            return ""
        return patient_label(self.ctx.store.patient(row["patient_id"]))

    def timeline_of_current(self) -> None:
        if self.study_id is None:
            self.message("Open a study first (or right-click a patient in the study list).")
            return
        pid = self._current_patient()
        if pid is None:
            self.message("This study is not filed under a patient: Patients ▸ Assign study to patient…")
            return
        self.show_timeline(int(pid))

    def assign_current(self) -> None:
        if self.study_id is None:
            self.message("Open a study first.")
            return
        self.study_list.assign_dialog(self.study_id)

    # -- compare with prior -----------------------------------------------------------------------------
    def compare_with_prior(self, sid: int | None) -> None:
        from app.patients.model import prior_of, same_modality_studies

        if sid is None:
            self.message("Open a study first.")
            return
        cands = same_modality_studies(self.ctx.store, sid)
        if not cands:
            row = self.ctx.store.study(sid) or {}
            why = ("it is not filed under a patient" if row.get("patient_id") is None else
                   f"the patient has no other {MODALITY_TITLES.get(row.get('modality'), '')} study")
            self.message(f"Nothing to compare with: {why}.")
            return
        prior = prior_of(self.ctx.store, sid)
        if prior is None:  # the study is the patient's oldest of its modality: compare with the next one
            prior = cands[-1]["id"]
        from app.patients.compare import CompareWindow

        if self.compare_window is not None:  # deleted, not only hidden: each holds two viewers and their plots
            self.compare_window.close()
            self.compare_window.deleteLater()  # results still on their way to it are dropped (app.jobs)
        self.compare_window = CompareWindow(self.ctx, prior, sid, parent=self)
        self.compare_window.show()

    # -- exports ----------------------------------------------------------------------------------------
    def export_pdf(self, path: str | None = None, anonymise: bool = False) -> None:
        if self.study is None:
            self.message("Open a study first.")
            return
        study, sid, store = self.study, self.study_id, self.ctx.store
        if not path:
            stem = Path(self.blind_map().get(sid) or study.name).stem.replace(" ", "_").replace("#", "")
            if anonymise:
                from app.patients.export import anonymiser

                stem = anonymiser(store, sid, study).code
            default = str(paths.exports_dir() / f"{stem}.pdf")
            title = "Export anonymised PDF report" if anonymise else "Export PDF report"
            path, _ = QFileDialog.getSaveFileName(self, title, default, "PDF (*.pdf)")
            if not path:
                return
        from app.patients.export import export_pdf

        v = self.current_viewer()
        extra = v.report_extra() if v and hasattr(v, "report_extra") and v.study is study else {}
        self.ctx.jobs.start("Writing PDF", lambda ctx: export_pdf(study, store, sid, path, extra=extra,
                                                                  anonymise=anonymise),
                            on_result=lambda p: self.message(f"Report written: {p}"),
                            on_error=lambda msg: self.message(msg, error=True))

    def export_table(self, path: str | None = None, anonymise: bool | None = None) -> None:
        """The studies the list shows now (its search and filters applied), one row per result."""
        ids = self.study_list.visible_study_ids()
        if not ids:
            self.message("The study list shows no study to export.")
            return
        if anonymise is None:
            b = QMessageBox.question(
                self, "Export results table",
                f"Export {len(ids)} stud{'y' if len(ids) == 1 else 'ies'} (the list as filtered now).\n\n"
                "Anonymise? Yes: names, IDs, birth dates and accession numbers are replaced by study and "
                "patient codes.", QMessageBox.Yes | QMessageBox.No | QMessageBox.Cancel, QMessageBox.Yes)
            if b == QMessageBox.Cancel:
                return
            anonymise = b == QMessageBox.Yes
        if not path:
            default = str(paths.exports_dir() / ("results_anonymised.csv" if anonymise else "results.csv"))
            path, _ = QFileDialog.getSaveFileName(self, "Export results table", default, "CSV (*.csv);;JSON (*.json)")
            if not path:
                return
        from app.patients.export import export_table

        store = self.ctx.store
        self.ctx.jobs.start("Exporting results", lambda ctx: export_table(store, ids, path, anonymise=anonymise),
                            on_result=lambda p: self.message(f"Results written: {p}"),
                            on_error=lambda msg: self.message(msg, error=True))

    def export_endo_anonymised(self, path: str | None = None) -> None:
        if self.study is None or self.study.modality != "endo":
            self.message("Open an endoscopy study first.")
            return
        study, sid, store = self.study, self.study_id, self.ctx.store
        from app.patients.export import anonymiser, export_endo_bundle

        if not path:
            default = str(paths.exports_dir() / f"{anonymiser(store, sid, study).code}_endoscopy.zip")
            path, _ = QFileDialog.getSaveFileName(self, "Export anonymised endoscopy bundle", default, "Zip (*.zip)")
            if not path:
                return
        self.ctx.jobs.start("Exporting anonymised bundle",
                            lambda ctx: export_endo_bundle(study, store, sid, path, anonymise=True),
                            on_result=lambda p: self.message(f"Anonymised bundle written: {p} "
                                                             "(key frames left out: video can show the name)"),
                            on_error=lambda msg: self.message(msg, error=True))

"""Main window of the reading workstation: study list | viewer | results, status bar with device + models."""
from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QApplication, QDockWidget, QFileDialog, QFrame, QLabel, QMainWindow, QMessageBox,
                               QProgressBar, QPushButton, QScrollArea, QSizePolicy, QStackedWidget)

from app.context import AppContext
from app.dicomnet.window import DicomWindowMixin
from app.jobs import Jobs
from app.patients.window import PatientsWindowMixin
from app.store import Store
from app.theme import STYLESHEET
from app.modalities import new_viewer
from app.widgets.viewer_base import ViewerBase
from app.widgets import user_state
from app.widgets.icons import app_icon
from app.validation.records import phrase as validation_phrase
from app.widgets.results import ResultsPanel
from inference import __version__
from inference.detect import all_extensions, open_study
from inference.pipeline import analyse, models_for
from inference.registry import STATUS_LABEL, Registry
from inference.results import Result
from inference.runtimes import device_summary
from inference.study import MODALITY_TITLES, Study

log = logging.getLogger(__name__)


class MainWindow(PatientsWindowMixin, DicomWindowMixin, QMainWindow):
    def __init__(self, store: Store, registry: Registry | None = None):
        super().__init__()
        self.setWindowTitle(f"Lightbox {__version__}")
        self.setWindowIcon(app_icon())
        self.setAcceptDrops(True)
        self.ctx = AppContext(store=store, registry=registry or Registry(), jobs=Jobs(self))
        self.ctx.jobs.changed.connect(self._jobs_changed)
        self.viewers: dict[str, ViewerBase] = {}
        self.study: Study | None = None
        self.study_id: int | None = None
        self.settings = user_state.settings()

        self.stack = QStackedWidget()
        self.welcome = QLabel(
            "<h2>Lightbox</h2><p>Open a study with <b>File ▸ Open</b> (Ctrl+O), drop a file here, "
            "or pick one from the study list.</p><p>ECG (.hd5, WFDB, CSV, DICOM) · Heart sounds "
            "(wav, flac, ogg, mp3) · Echo (MP4, AVI, GIF, DICOM) · Chest X-ray (DICOM, PNG, JPEG) · "
            "Endoscopy (MP4, AVI, MOV, MKV)</p>")
        self.welcome.setAlignment(Qt.AlignCenter)
        self.welcome.setWordWrap(True)
        self.stack.addWidget(self.welcome)
        self.setCentralWidget(self.stack)

        self.study_list = self._make_study_list()  # grouped by patient, searched and filtered
        d = QDockWidget("Studies", self)
        d.setObjectName("studiesDock")
        d.setWidget(self.study_list)
        self.addDockWidget(Qt.LeftDockWidgetArea, d)
        self.studies_dock = d

        self.results = ResultsPanel(self.ctx.registry)
        self.results.run_requested.connect(self.run_analysis)
        self.results.model_changed.connect(self._model_changed)
        self.results.validation = lambda mid, sha=None: validation_phrase(self.ctx.store, mid, sha)
        # the panel scrolls as a whole when a screen is too low for it (never a table's own scroll bar)
        scroll = QScrollArea()
        scroll.setObjectName("resultsScroll")
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(self.results)
        d = QDockWidget("Results", self)
        d.setObjectName("resultsDock")
        d.setWidget(scroll)
        self.addDockWidget(Qt.RightDockWidgetArea, d)
        self.results_dock = d

        self._make_status_bar()
        self._make_menus()
        self._init_dicom()  # Network menu, node state in the status bar (app/dicomnet/window.py)
        self._restore_layout()
        self.refresh_studies()

    # -- chrome -------------------------------------------------------------------------------
    def _make_status_bar(self) -> None:
        sb = self.statusBar()
        self.device_label = QLabel(device_summary())
        self.device_label.setObjectName("deviceLabel")
        self.models_label = QLabel("")
        self.models_label.setObjectName("modelsLabel")
        self.job_label = QLabel("")
        self.job_bar = QProgressBar()
        self.job_bar.setMaximumWidth(180)
        self.job_bar.setRange(0, 100)
        self.job_bar.hide()
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Cancel running jobs (Esc)")
        self.cancel_btn.clicked.connect(self.ctx.jobs.cancel_all)
        self.cancel_btn.hide()
        sb.addWidget(self.job_label, 1)
        sb.addPermanentWidget(self.job_bar)
        sb.addPermanentWidget(self.cancel_btn)
        sb.addPermanentWidget(self.models_label)
        sb.addPermanentWidget(self.device_label)
        self.refresh_models()
        self.verify_weights()

    def verify_weights(self) -> None:
        """Hash every installed weights file on a worker (hundreds of MB: never on the UI thread at
        start-up); the status bar and results panel say "checking" until it is done."""
        registry = self.ctx.registry

        def verify(ctx) -> None:
            ids = list(registry.entries)
            for i, mid in enumerate(ids):
                ctx.progress(i / len(ids), registry.entries[mid].title)  # raises Cancelled on cancel
                registry.state(mid)

        # cancelled: what was verified shows; the rest is verified by the analysis that needs it
        self.ctx.jobs.start("Verifying model weights", verify, on_result=lambda _: self.refresh_models(),
                            on_cancelled=self.refresh_models,
                            on_error=lambda msg: self.message(msg, error=True))

    def refresh_models(self) -> None:
        """A compact count per state in the status bar; each model's state and message in the tooltip
        (and in Models ▸ Weights status)."""
        counts: dict[str, int] = {}
        tips = []
        for st in self.ctx.registry.states(cached_only=True):
            counts[st.status] = counts.get(st.status, 0) + 1
            tips.append(f"{st.entry.title} ({st.entry.id}): {STATUS_LABEL[st.status]}")
        order = ("ready", "demo", "checking", "not installed", "refused")
        self.models_label.setText("Models: " + " · ".join(f"{counts[k]} {STATUS_LABEL[k]}" for k in order if k in counts))
        self.models_label.setToolTip("\n".join(tips))
        self.results.refresh_state()

    def _make_menus(self) -> None:
        """Every main action has a key (Help ▸ Keyboard shortcuts lists them from these actions)."""
        mb = self.menuBar()
        m = mb.addMenu("&File")
        self._act(m, "&Open…", QKeySequence.Open, self.open_dialog)
        self._act(m, "Open &as…", "Ctrl+Shift+O", lambda: self.open_as_dialog(folder=False))
        self._act(m, "Open &folder as…", "Ctrl+Alt+O", lambda: self.open_as_dialog(folder=True))
        self._act(m, "Open &demo studies", "Ctrl+D", self.open_demo)
        self._act(m, "Export &PDF report…", "Ctrl+P", self.export_pdf)
        m.addSeparator()
        self._act(m, "&Quit", "Ctrl+Q", self.close)
        m = mb.addMenu("&Analysis")
        self._act(m, "&Run model", "Ctrl+R", lambda: self.run_analysis(self.results.current_model() or ""))
        self._act(m, "Choose &model", "Ctrl+M", self.results.choose_model)
        self._act(m, "&Cancel jobs", "Esc", self.ctx.jobs.cancel_all)
        m = mb.addMenu("&Models")
        self._act(m, "&Install weights file…", "Ctrl+I", self.install_weights)
        self._act(m, "&Weights status", "Ctrl+Shift+W", self.show_weights)
        self._act(m, "&Validate on my cases…", "Ctrl+Shift+V", self.validate_models)
        m = mb.addMenu("&View")
        self._act(m, "Show &studies", "Ctrl+1", lambda: self.studies_dock.setVisible(not self.studies_dock.isVisible()))
        self._act(m, "Show &results", "Ctrl+2", lambda: self.results_dock.setVisible(not self.results_dock.isVisible()))
        self._act(m, "&Find a study", "Ctrl+F", lambda: self._focus_list(search=True))
        self._act(m, "Go to the study &list", "Ctrl+L", self._focus_list)
        self._act(m, "Go to the &viewer", "F6", self._focus_viewer)
        self._act(m, "&Next study in the list", "Alt+Down", lambda: self.study_list.step(1))
        self._act(m, "&Previous study in the list", "Alt+Up", lambda: self.study_list.step(-1))
        self._act(m, "&Full screen", "F11", lambda: self.showNormal() if self.isFullScreen() else self.showFullScreen())
        m.addSeparator()
        a = self._act(m, "Play echo loops on &opening", None, lambda: user_state.set_flag("echo/autoplay", a.isChecked()))
        a.setCheckable(True)
        a.setChecked(user_state.flag("echo/autoplay", True))
        self.autoplay_action = a
        self._act(m, "Reset &layout", None, self._default_docks)
        self._make_patients_menu(mb)
        m = mb.addMenu("&Help")
        self._act(m, "&Keyboard shortcuts", "F1", self.show_shortcuts)
        self._act(m, "&About Lightbox", None, self.about)

    def show_shortcuts(self):
        from app.widgets.shortcuts import show_shortcuts

        return show_shortcuts(self)

    def _focus_list(self, search: bool = False) -> None:
        self.studies_dock.show()
        (self.study_list.search if search else self.study_list.tree).setFocus(Qt.ShortcutFocusReason)
        if search:
            self.study_list.search.selectAll()

    def _focus_viewer(self) -> None:
        w = self.stack.currentWidget()
        if w is not None:
            w.setFocus(Qt.ShortcutFocusReason)
            if not w.hasFocus() and w.focusProxy() is None:
                w.focusNextChild()

    def _act(self, menu, text, shortcut, slot) -> QAction:
        a = QAction(text, self)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(slot)
        menu.addAction(a)
        self.addAction(a)
        return a

    def _restore_layout(self) -> None:
        """The last session's window and docks where they fit this screen; else fitted to it, the viewer
        getting the room (see ``app.widgets.user_state``)."""
        fitted = user_state.restore(self, "main", None, self.settings)
        state = self.settings.value("main/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        if not fitted or not isinstance(state, QByteArray):
            QTimer.singleShot(0, self._default_docks)

    def dock_widths(self) -> tuple[int, int]:
        """Study list and results widths for this window: enough for their texts, the rest to the viewer."""
        w = max(self.width(), 1)
        return int(min(320, max(220, 0.18 * w))), int(min(440, max(300, 0.24 * w)))

    def _default_docks(self) -> None:
        sw, rw = self.dock_widths()
        self.resizeDocks([self.studies_dock, self.results_dock], [sw, rw], Qt.Horizontal)

    def closeEvent(self, ev) -> None:
        self.settings.setValue("main/state", self.saveState())
        user_state.save(self, "main", self.settings)
        for v in self.viewers.values():
            v.shutdown()
        self._shutdown_dicom()
        self.ctx.jobs.cancel_all()
        self.ctx.jobs.wait(5000)
        super().closeEvent(ev)

    def _jobs_changed(self) -> None:
        jobs = list(self.ctx.jobs.running.values())
        if not jobs:
            self.job_bar.hide()
            self.cancel_btn.hide()
            self.job_label.setText("")
            return
        j = jobs[-1]
        self.job_bar.show()
        self.cancel_btn.show()
        self.job_bar.setValue(int(j.progress * 100))
        more = f" (+{len(jobs) - 1} more)" if len(jobs) > 1 else ""
        self.job_label.setText(f"{j.title}{': ' + j.text if j.text else ''}{more}")

    def message(self, text: str, error: bool = False) -> None:
        self.statusBar().showMessage(text, 8000)
        if error:
            log.warning(text)
            if not getattr(self, "quiet_errors", False):
                from app.reliability.notices import error_box

                error_box(self, text)  # not modal: playback, workers and results carry on

    # -- studies ------------------------------------------------------------------------------
    def refresh_studies(self) -> None:
        self.study_list.current_study = self.study_id
        self.study_list.refresh()

    def open_dialog(self) -> None:
        exts = sorted({e for v in all_extensions().values() for e in v})
        filt = f"Studies ({' '.join('*' + e for e in exts)});;All files (*)"
        files, _ = QFileDialog.getOpenFileNames(self, "Open study", str(Path.home()), filt)
        for f in files:
            self.open_path(f)

    def open_demo(self) -> None:
        """Write (once) and open the synthetic demo studies; the ECG is shown, the rest wait in the list."""
        from inference.demo import ensure_demo_studies

        def load(ctx):
            studies, errors = [], []
            files = ensure_demo_studies()
            for i, p in enumerate(files):
                ctx.progress(i / max(1, len(files)), p.name)
                try:
                    studies.append(open_study(p))
                except Exception as e:  # one broken demo must not hide the others
                    errors.append(str(e))
            return studies, errors

        def done(out):
            studies, errors = out
            for st in reversed(studies):
                self.ctx.store.add_study(st)  # newest first in the list: ECG on top
            if studies:
                self.show_study(studies[0], self.ctx.store.study_id(studies[0].sha256, studies[0].modality))
            self.refresh_studies()
            for e in errors:
                self.message(e, error=True)

        self.ctx.jobs.start("Opening demo studies", load, on_result=done,
                            on_error=lambda msg: self.message(msg, error=True))

    def blind_map(self) -> dict[int, str]:
        """{study id: neutral label} for studies whose names stay hidden now (an echo teaching loop in
        blinded practice before the estimate is locked: its file name may tell the answer)."""
        out: dict[int, str] = {}
        for v in getattr(self, "viewers", {}).values():
            if hasattr(v, "blind_map"):
                out.update(v.blind_map())
        return out

    def _path_label(self, path: str) -> str:
        masks = self.blind_map()
        if masks:
            row = self.ctx.store.conn.execute("SELECT id FROM studies WHERE source_path=? ORDER BY id DESC",
                                              (path,)).fetchone()
            if row and int(row[0]) in masks:
                return masks[int(row[0])]
        return Path(path).name

    def _title(self) -> None:
        """The window title: the study's name (a neutral case label while it is blinded), modality, patient."""
        if self.study is None or self.study_id is None:
            return
        label = self.blind_map().get(self.study_id)
        who = "" if label else self.patient_title(self.study_id)
        self.setWindowTitle(f"{label or self.study.name} — {MODALITY_TITLES[self.study.modality]}"
                            f"{' — ' + who if who else ''} — Lightbox {__version__}")

    def _blinding_changed(self) -> None:
        if self.current_viewer() is self.sender():
            self._title()
        self.refresh_studies()

    def open_as_dialog(self, folder: bool = False) -> None:
        """File > Open as…: the user says what the file (or folder of images) is."""
        from app import open_as

        if folder:
            f = QFileDialog.getExistingDirectory(self, "Open folder as", str(Path.home()))
        else:
            f, _ = QFileDialog.getOpenFileName(self, "Open as", str(Path.home()), "All files (*)")
        picked = open_as.ask(self, f) if f else None
        if picked:
            self.open_path(f, picked[0], **picked[1])

    def open_path(self, path: str | Path, modality: str | None = None, **options) -> None:
        from inference.detect import AmbiguousModality

        path = str(path)

        def load(ctx):
            try:
                return open_study(path, modality, **options)
            except AmbiguousModality as e:  # the content does not say: ask (on the UI thread)
                return e

        self.ctx.jobs.start(f"Opening {self._path_label(path)}", load, on_result=self._study_loaded,
                            on_error=lambda msg: self.message(msg, error=True))

    def _study_loaded(self, study) -> None:
        from inference.detect import AmbiguousModality

        if isinstance(study, AmbiguousModality):
            from app import open_as

            picked = None if getattr(self, "quiet_errors", False) else open_as.ask(
                self, study.path, study.candidates, "Its content does not say which modality it is.")
            if picked:
                self.open_path(study.path, picked[0], **picked[1])
            else:
                self.message(str(study))
            return
        sid = self.ctx.store.add_study(study)
        self.show_study(study, sid)
        self.refresh_studies()
        self.dicom_study_opened(sid)  # the patient's priors from PACS, in the background when configured
        for n in study.notes:
            self.statusBar().showMessage(n, 8000)

    def viewer_for(self, modality: str) -> ViewerBase:
        if modality not in self.viewers:
            v = new_viewer(modality, self.ctx)
            v.modality = modality
            v.request_analysis.connect(self.run_analysis)
            v.status_message.connect(lambda t: self.statusBar().showMessage(t, 8000))
            if hasattr(v, "request_open"):  # e.g. the echo practice session's next loop
                v.request_open.connect(lambda path, modality: self.open_path(path, modality or None))
            if hasattr(v, "blinding_changed"):  # teaching loops' names hidden or shown
                v.blinding_changed.connect(self._blinding_changed)
            self.viewers[modality] = v
            self.stack.addWidget(v)
            user_state.restore_splitters(v, "main", self.settings)  # the reader's own split, remembered
        return self.viewers[modality]

    def show_study(self, study: Study, study_id: int) -> None:
        self.study, self.study_id = study, study_id
        v = self.viewer_for(study.modality)
        v.set_study(study, study_id)
        # only the page on show counts for the window's minimum size (QStackedWidget takes the largest)
        for i in range(self.stack.count()):
            w = self.stack.widget(i)
            pol = QSizePolicy.Preferred if w is v else QSizePolicy.Ignored
            w.setSizePolicy(pol, pol)
        self.stack.setCurrentWidget(v)
        QTimer.singleShot(0, self._keep_viewer_wide)  # after the new panels have laid themselves out
        self._title()
        self.study_list.set_current(study_id)
        self.results.set_models(models_for(study.modality) or v.model_ids())
        preferred = getattr(v, "preferred_model", lambda: None)()  # e.g. the ECG2AF file that is installed
        if preferred:
            self.results.select_model(preferred)
        self.results.set_extra(v.result_widget())
        stored = self.ctx.store.latest_result(study_id, self.results.current_model())
        if stored is None:  # show whatever this study was last analysed with, and select that model
            stored = self.ctx.store.latest_result(study_id)
            if stored is not None:
                self.results.select_model(stored.model_id)
        self._show_result(stored)

    def _model_changed(self, model_id: str) -> None:
        if self.study_id is not None:
            self._show_result(self.ctx.store.latest_result(self.study_id, model_id or None) if model_id else None)

    def _keep_viewer_wide(self) -> None:
        """The image or trace is the point of a reading workstation: side panels never take most of the
        window (a restored layout from a smaller screen, or a wide panel of another modality)."""
        w = max(self.width(), 1)
        sw, rw = self.dock_widths()
        for dock, most, width in ((self.results_dock, 0.34, rw), (self.studies_dock, 0.24, sw)):
            if dock.isVisible() and not dock.isFloating() and dock.width() > most * w:
                self.resizeDocks([dock], [width], Qt.Horizontal)

    def _show_result(self, result: Result | None) -> None:
        v = self.current_viewer()
        if v:
            v.set_selected_model(self.results.current_model())
            v.set_result(result)
        self.results.show_result(result, hidden=bool(v and v.hides_results()))

    def current_viewer(self) -> ViewerBase | None:
        w = self.stack.currentWidget()
        return w if isinstance(w, ViewerBase) else None

    # -- analysis -----------------------------------------------------------------------------
    def run_analysis(self, model_id: str = "") -> None:
        if self.study is None:
            self.message("Open a study first.")
            return
        model_id = model_id or self.results.current_model() or ""
        if not model_id:
            self.message("No model for this modality yet.")
            return
        registry = self.ctx.registry
        title = model_id
        base = model_id.partition(":")[0]  # 'ecg-rhythm:II': a model run with an option (here: the lead)
        if base in registry.entries:
            st = registry.state(base, cached_only=True)
            if not st.may_start:
                self.message(st.message, error=True)
                return
            title = st.entry.title
        study, sid = self.study, self.study_id
        self.ctx.jobs.start(title, lambda ctx: analyse(study, model_id, registry, ctx),
                            on_result=lambda r: self._analysis_done(sid, r),
                            on_error=lambda msg: self.message(msg, error=True),
                            on_cancelled=lambda: self.message("Analysis cancelled."))

    def _analysis_done(self, study_id: int, result: Result) -> None:
        self.ctx.store.add_result(study_id, result)
        if study_id == self.study_id:
            # a result arriving on its own (the ECG rhythm model runs on opening) is named in the model box
            # when the model selected there cannot run anyway (e.g. ECG2AF not installed)
            cur, reg = self.results.current_model(), self.ctx.registry
            if cur and cur != result.model_id and cur in reg.entries and not reg.state(cur, cached_only=True).may_start:
                self.results.select_model(result.model_id)
            self._show_result(result)
        self.refresh_studies()

    # -- reports and weights ------------------------------------------------------------------
    def install_weights(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Install weights file", str(Path.home()))
        if not f:
            return
        registry = self.ctx.registry

        def installed(st) -> None:
            self.message(st.message)
            self.refresh_models()

        # hashing and copying hundreds of MB: on a worker
        self.ctx.jobs.start("Installing weights", lambda ctx: registry.install(f), on_result=installed,
                            on_error=lambda msg: self.message(msg, error=True))

    def show_weights(self) -> None:
        lines = [f"<b>{s.entry.title}</b> ({s.entry.id}): {STATUS_LABEL[s.status]}<br>"
                 f"<small>{s.message}<br>{validation_phrase(self.ctx.store, s.entry.id, s.sha256)}</small>"
                 for s in self.ctx.registry.states(cached_only=True)]
        QMessageBox.information(self, "Weights", "<br><br>".join(lines)
                                + f"<br><br>Weights folder: {self.ctx.registry.weights_dir}")

    def validate_models(self) -> None:
        from app.validation.dialog import ValidateDialog

        d = ValidateDialog(self.ctx, self, model_id=self.results.current_model())
        d.validated.connect(lambda _mid: self.results.refresh_state())
        d.show()
        self._validate_dialog = d  # kept alive while its worker runs

    def about(self) -> None:
        QMessageBox.about(self, "About Lightbox",
                          f"<b>Lightbox {__version__}</b><br>Offline clinical AI reading workstation.<br>"
                          f"Database: {self.ctx.store.path}<br>Device: {device_summary()}<br><br>"
                          "For education and decision support; not a diagnosis.")

    # -- drag and drop ------------------------------------------------------------------------
    def dragEnterEvent(self, ev) -> None:
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev) -> None:
        for url in ev.mimeData().urls():
            if url.isLocalFile():
                self.open_path(url.toLocalFile())


def create_app(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance() or QApplication(argv or ["lightbox"])
    app.setApplicationName("Lightbox")
    app.setOrganizationName("Lightbox")
    app.setStyle("Fusion")
    app.setStyleSheet(STYLESHEET)
    return app


def run_gui(files: list[str], db: str | None = None, demo: bool = False, quit_after: float | None = None) -> int:
    import time

    from app.reliability import startup

    t0 = time.perf_counter()
    session = startup.begin()  # crash traces to the data folder; finds a last session that did not end
    app = create_app()
    notices = startup.checks(session)  # before any worker starts
    store = Store(db)
    win = MainWindow(store)
    startup.show(win, notices)
    win.show()
    startup.settle()  # cyclic garbage collected on this thread only; start-up objects frozen
    log.info("window shown after %.2f s", time.perf_counter() - t0)
    if demo:
        win.open_demo()
    for f in files:
        win.open_path(f)
    if quit_after:
        QTimer.singleShot(int(quit_after * 1000), win.close)
    rc = app.exec()
    if session:
        session.end()  # a clean end: the next start has nothing to report
    return rc

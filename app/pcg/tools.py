"""Heart-sound tools: batch classification of a folder, and retraining with live monitoring.

Batch runs on the job pool (progress + cancel) and writes a CSV. Training runs in a separate process
(``lightbox pcg-train --jsonl`` through QProcess: never in the UI process); its JSON events drive the
live loss/accuracy curves. Each finished model becomes a new version (SQLite ``model_versions``, with
metrics and sha256) and is installed as the non-official ``heart-sound-local`` model; any earlier version
can be compared and switched back to.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QProcess, QProcessEnvironment, Qt
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QDialog, QFileDialog, QFormLayout, QHBoxLayout,
                               QHeaderView, QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox,
                               QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from inference import paths
from inference.pcg.batch import run_batch
from inference.pcg.dataset import DatasetError, classes_of, scan
from inference.study import sha256_file

LOCAL_ID = "heart-sound-local"


def _item(v) -> QTableWidgetItem:
    it = QTableWidgetItem("" if v is None else (f"{v:.3f}".rstrip("0").rstrip(".") if isinstance(v, float) else str(v)))
    it.setFlags(it.flags() & ~Qt.ItemIsEditable)
    return it


def _fill(table: QTableWidget, header: list[str], rows: list[list]) -> None:
    table.clear()
    table.setColumnCount(len(header))
    table.setHorizontalHeaderLabels(header)
    table.setRowCount(len(rows))
    for i, r in enumerate(rows):
        for j, v in enumerate(r):
            table.setItem(i, j, _item(v))
    table.resizeColumnsToContents()


class FolderDrop(QLineEdit):
    """A path field that takes a folder typed, dropped on it, or picked with its "Choose…" button
    (``row()``); dropped and picked folders emit ``editingFinished`` like a typed one."""

    def __init__(self, placeholder: str, caption: str):
        super().__init__()
        self.caption = caption
        self.setPlaceholderText(placeholder)
        self.setAcceptDrops(True)

    def row(self) -> QHBoxLayout:
        row = QHBoxLayout()
        pick = QPushButton("Choose…")
        pick.clicked.connect(self.choose)
        row.addWidget(self, 1)
        row.addWidget(pick)
        return row

    def choose(self) -> None:
        d = QFileDialog.getExistingDirectory(self, self.caption, str(Path.home()))
        if d:
            self._take(d)

    def _take(self, folder: str) -> None:
        self.setText(folder)
        self.editingFinished.emit()

    def dragEnterEvent(self, ev):
        if ev.mimeData().hasUrls():
            ev.acceptProposedAction()

    def dropEvent(self, ev):
        for u in ev.mimeData().urls():
            if u.isLocalFile() and Path(u.toLocalFile()).is_dir():
                self._take(u.toLocalFile())
                return


class BatchDialog(QDialog):
    def __init__(self, ctx, parent=None):
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle("Heart sounds — batch classification")
        self.resize(900, 560)
        lay = QVBoxLayout(self)
        self.folder = FolderDrop("folder of .wav / .flac / .ogg / .mp3 (drop a folder here)",
                                 "Folder of heart-sound recordings")
        lay.addLayout(self.folder.row())
        row = QHBoxLayout()
        from inference.pcg.pipeline import MODELS

        self.model = QComboBox()
        for mid in MODELS:
            st = ctx.registry.state(mid, cached_only=True)
            self.model.addItem(f"{st.entry.title} ({st.status})", mid)
        self.run_btn = QPushButton("Run")
        self.run_btn.setObjectName("primary")
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        row.addWidget(QLabel("Model"))
        row.addWidget(self.model, 1)
        row.addWidget(self.run_btn)
        row.addWidget(self.cancel_btn)
        lay.addLayout(row)
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        lay.addWidget(self.bar)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        lay.addWidget(self.status)
        self.table = QTableWidget(0, 0)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSortingEnabled(True)
        lay.addWidget(self.table, 1)
        self.job = None
        self.result: dict | None = None

    def run(self, folder: str | None = None, out_csv: str | None = None) -> None:
        folder = folder or self.folder.text().strip()
        if not folder:
            self.status.setText("Choose a folder first.")
            return
        self.folder.setText(folder)
        mid = self.model.currentData()
        st = self.ctx.registry.state(mid, cached_only=True)  # not verified yet: the worker verifies it
        if not st.may_start:
            self.status.setText(st.message)
            return
        out_csv = out_csv or str(paths.exports_dir() / f"pcg_batch_{Path(folder).name}_{time.strftime('%Y%m%d-%H%M%S')}.csv")
        registry = self.ctx.registry
        keep: list = []
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.status.setText("Running…")
        self.job = self.ctx.jobs.start(
            f"Batch {Path(folder).name}", lambda c: run_batch(folder, mid, registry, c, out_csv, keep=keep),
            on_result=lambda r: self._done(r, keep), on_error=self._error,
            on_progress=lambda f, t: (self.bar.setValue(int(100 * f)), self.status.setText(t)))

    def cancel(self):
        if self.job:
            self.job.cancel()

    def _error(self, msg: str):
        self.status.setText(f"<span style='color:#e5534b'>{msg}</span>")
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def _done(self, r: dict, keep: list):
        self.result = r
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        for study, res in keep:  # every batch result is stored like any other, with its provenance
            try:
                self.ctx.store.save(study, [res])
            except Exception as e:  # a store problem must not lose the CSV
                self.status.setText(f"stored partially: {e}")
        cols = r["columns"]
        self.table.setSortingEnabled(False)
        _fill(self.table, cols, [[row.get(c, "") for c in cols] for row in r["rows"]])
        self.table.setSortingEnabled(True)
        n_err = sum(1 for row in r["rows"] if row["error"])
        done = len(r["rows"])
        self.bar.setValue(100 if not r["cancelled"] else int(100 * done / max(r["total"], 1)))
        self.status.setText(("Cancelled after " if r["cancelled"] else "Done: ") + f"{done} of {r['total']} files"
                            + (f", {n_err} could not be read" if n_err else "") + f". CSV: {r['csv']}")
        parent = self.parent()
        if parent is not None and hasattr(parent.window(), "refresh_studies"):
            parent.window().refresh_studies()


class TrainingDialog(QDialog):
    """Import labelled recordings (a folder whose sub-folders are the classes), train in a separate
    process with live curves, evaluate, and keep every trained model as a version."""

    def __init__(self, ctx, parent=None, extra_args: list[str] | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.extra_args = list(extra_args or [])
        self.setWindowTitle("Heart sounds — retrain a model")
        self.resize(1100, 760)
        self.proc: QProcess | None = None
        self.out_dir: Path | None = None
        self.history: list[dict] = []
        self.final: dict | None = None
        self.version_id: int | None = None
        self.error: str | None = None
        self.skipped: list[dict] = []
        lay = QVBoxLayout(self)
        self.folder = FolderDrop("drop a folder whose sub-folders are the classes (normal/, murmur/, …) or with labels.csv",
                                 "Labelled recordings (one sub-folder per class)")
        self.folder.editingFinished.connect(self.inspect)
        lay.addLayout(self.folder.row())
        form = QFormLayout()
        self.summary = QLabel("No data chosen.")
        self.summary.setWordWrap(True)
        form.addRow("Data", self.summary)
        opts = QHBoxLayout()
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 200)
        self.epochs.setValue(40)
        self.patience = QSpinBox()
        self.patience.setRange(1, 50)
        self.patience.setValue(10)
        opts.addWidget(QLabel("max epochs"))
        opts.addWidget(self.epochs)
        opts.addWidget(QLabel("early stop after"))
        opts.addWidget(self.patience)
        opts.addWidget(QLabel("epochs without validation gain · split by recording 70 / 15 / 15 (held-out test)"))
        opts.addStretch(1)
        form.addRow("Training", opts)
        lay.addLayout(form)
        row = QHBoxLayout()
        self.train_btn = QPushButton("Train")
        self.train_btn.setObjectName("primary")
        self.train_btn.clicked.connect(self.start)
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setEnabled(False)
        self.stop_btn.clicked.connect(self.stop)
        self.bar = QProgressBar()
        self.bar.setRange(0, 100)
        self.state = QLabel("")
        row.addWidget(self.train_btn)
        row.addWidget(self.stop_btn)
        row.addWidget(self.bar, 1)
        lay.addLayout(row)
        lay.addWidget(self.state)

        split = QSplitter(Qt.Horizontal)
        curves = pg.GraphicsLayoutWidget()
        self.loss_plot = curves.addPlot(row=0, col=0, title="loss")
        self.acc_plot = curves.addPlot(row=1, col=0, title="accuracy")
        for p in (self.loss_plot, self.acc_plot):
            p.addLegend(offset=(-5, 5))
            p.showGrid(x=True, y=True, alpha=0.2)
            p.setLabel("bottom", "epoch")
        self.acc_plot.setYRange(0.4, 1.0)
        self.c_tl = self.loss_plot.plot(pen=pg.mkPen("#3d8bfd", width=2), name="train")
        self.c_vl = self.loss_plot.plot(pen=pg.mkPen("#d29922", width=2), name="validation")
        self.c_ta = self.acc_plot.plot(pen=pg.mkPen("#3d8bfd", width=2), name="train (windows)")
        self.c_va = self.acc_plot.plot(pen=pg.mkPen("#d29922", width=2), name="validation (recordings)")
        self.c_vb = self.acc_plot.plot(pen=pg.mkPen("#3fb950", width=2, style=Qt.DashLine), name="validation balanced")
        split.addWidget(curves)
        right = QWidget()
        rl = QVBoxLayout(right)
        self.eval_label = QLabel("Evaluation on the held-out test recordings appears here after training.")
        self.eval_label.setWordWrap(True)
        rl.addWidget(self.eval_label)
        self.per_class = QTableWidget(0, 0)
        self.confusion = QTableWidget(0, 0)
        rl.addWidget(QLabel("Per class (test)"))
        rl.addWidget(self.per_class, 1)
        rl.addWidget(QLabel("Confusion matrix (test; rows = truth, columns = prediction)"))
        rl.addWidget(self.confusion, 1)
        split.addWidget(right)
        split.setSizes([620, 480])
        lay.addWidget(split, 3)

        lay.addWidget(QLabel("Model versions (heart-sound-local) — select one to compare; Activate switches to it"))
        self.versions = QTableWidget(0, 0)
        self.versions.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.versions.setEditTriggers(QAbstractItemView.NoEditTriggers)
        lay.addWidget(self.versions, 1)
        row = QHBoxLayout()
        self.activate_btn = QPushButton("Activate selected version")
        self.activate_btn.clicked.connect(self.activate_selected)
        row.addWidget(self.activate_btn)
        row.addStretch(1)
        lay.addLayout(row)
        self.refresh_versions()

    # -- data ---------------------------------------------------------------------------------
    def inspect(self) -> bool:
        try:
            items = scan(self.folder.text().strip())
        except DatasetError as e:
            self.summary.setText(f"<span style='color:#e5534b'>{e}</span>")
            return False
        counts = {c: sum(1 for i in items if i.label == c) for c in classes_of(items)}
        self.summary.setText(f"{len(items)} recordings: " + ", ".join(f"<b>{c}</b> {n}" for c, n in counts.items()))
        return True

    # -- training process ---------------------------------------------------------------------
    def start(self) -> None:
        if self.proc is not None:
            return
        if not self.inspect():
            return
        root = paths.weights_dir() / "pcg-versions"
        self.out_dir = root / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.history, self.final, self.error, self.skipped = [], None, None, []
        for c in (self.c_tl, self.c_vl, self.c_ta, self.c_va, self.c_vb):
            c.setData([], [])
        args = ["-m", "app.cli", "pcg-train", self.folder.text().strip(), "--out", str(self.out_dir), "--jsonl",
                "--epochs", str(self.epochs.value()), "--patience", str(self.patience.value())] + self.extra_args
        p = QProcess(self)
        p.setWorkingDirectory(str(paths.PROJECT_ROOT))
        env = QProcessEnvironment.systemEnvironment()
        p.setProcessEnvironment(env)
        p.setProcessChannelMode(QProcess.SeparateChannels)
        p.readyReadStandardOutput.connect(self._read)
        p.finished.connect(self._finished)
        self.proc = p
        self._buf = b""
        p.start(sys.executable, args)
        self.train_btn.setEnabled(False)
        self.stop_btn.setEnabled(True)
        self.state.setText("Starting the training process…")

    def stop(self) -> None:
        if self.proc is not None:
            self.state.setText("Stopping…")
            self.proc.terminate()
            if not self.proc.waitForFinished(3000):
                self.proc.kill()

    def _read(self) -> None:
        self._buf += bytes(self.proc.readAllStandardOutput())
        *lines, self._buf = self._buf.split(b"\n")
        for ln in lines:
            try:
                ev = json.loads(ln)
            except ValueError:
                continue
            self.on_event(ev)

    def on_event(self, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "features":
            self.bar.setValue(int(30 * ev["done"] / max(ev["total"], 1)))
            self.state.setText(f"Computing features: {ev['done']} / {ev['total']} recordings")
        elif kind == "split":
            self.state.setText("Split by recording: " + " · ".join(f"{k} {sum(ev[k].values())}" for k in ("train", "val", "test")))
        elif kind == "epoch":
            self.history.append(ev)
            ep = [h["epoch"] for h in self.history]
            self.c_tl.setData(ep, [h["train_loss"] for h in self.history])
            self.c_vl.setData(ep, [h["val_loss"] for h in self.history])
            self.c_ta.setData(ep, [h["train_acc"] for h in self.history])
            self.c_va.setData(ep, [h["val_acc"] for h in self.history])
            self.c_vb.setData(ep, [h["val_balanced_acc"] for h in self.history])
            self.bar.setValue(30 + int(65 * ev["epoch"] / max(self.epochs.value(), 1)))
            self.state.setText(f"epoch {ev['epoch']}: loss {ev['train_loss']:.3f} / val {ev['val_loss']:.3f} · "
                               f"val accuracy {ev['val_acc']:.3f} (balanced {ev['val_balanced_acc']:.3f}) · best epoch "
                               f"{ev['best_epoch']} · {ev['windows_per_s']:.0f} windows/s")
        elif kind == "skipped":
            self.skipped.append(ev)
            self.state.setText(f"left out {len(self.skipped)} unreadable file(s), e.g. {Path(ev['file']).name}: "
                               f"{ev['problem']}")
        elif kind == "done":
            self.final = ev
        elif kind == "error":
            self.error = ev.get("message", "training failed")

    def _finished(self, code: int, _status) -> None:
        self._read()
        err = bytes(self.proc.readAllStandardError()).decode(errors="replace").strip()
        self.proc = None
        self.train_btn.setEnabled(True)
        self.stop_btn.setEnabled(False)
        if self.final is None:
            msg = self.error or (err.splitlines()[-1] if err else f"training process ended with code {code}")
            self.state.setText(f"<span style='color:#e5534b'>Training did not finish: {msg}</span>")
            return
        self.bar.setValue(100)
        self.show_evaluation(self.final)
        self.register(Path(self.final["onnx"]))

    def show_evaluation(self, ev: dict) -> None:
        t = ev.get("test") or ev.get("validation") or {}
        which = "held-out test" if ev.get("test") else "validation"
        txt = (f"<b>{which}</b> ({t.get('n')} recordings): accuracy <b>{100 * t.get('accuracy', 0):.1f} %</b>, "
               f"balanced accuracy {100 * t.get('balanced_accuracy', 0):.1f} %")
        if "sensitivity" in t:
            txt += (f", sensitivity {100 * t['sensitivity']:.1f} %, specificity {100 * t['specificity']:.1f} %, "
                    f"MAcc {100 * t['macc']:.1f} %")
        if self.skipped:
            txt += f" · {len(self.skipped)} unreadable file(s) left out"
        self.eval_label.setText(txt + f" · trained in {ev.get('seconds', 0) / 60:.1f} min")
        classes = ev["classes"]
        _fill(self.per_class, ["class", "precision", "recall", "F1", "n"],
              [[c, f"{100 * d['precision']:.1f} %", f"{100 * d['recall']:.1f} %", f"{100 * d['f1']:.1f} %", d["support"]]
               for c, d in ev["per_class"].items()])
        _fill(self.confusion, ["truth \\ predicted"] + classes,
              [[c] + list(r) for c, r in zip(classes, ev["confusion"])])

    def register(self, onnx: Path) -> None:
        """Store the trained file as a new version and make it the active heart-sound-local model."""
        meta = json.loads(onnx.with_suffix(".json").read_text())
        sha = sha256_file(onnx)
        metrics = {"test": meta["metrics"]["test"], "validation": meta["metrics"]["validation"],
                   "classes": meta["classes"], "data": self.folder.text().strip(),
                   "epochs": meta["training"]["epochs_run"], "best_epoch": meta["training"]["best_epoch"]}
        self.version_id = self.ctx.store.add_model_version(LOCAL_ID, str(onnx), sha, metrics, activate=True)
        self._install(onnx)
        self.refresh_versions()

    def _install(self, onnx: Path) -> None:
        st = self.ctx.registry.install(onnx, LOCAL_ID, unofficial=True)
        self.state.setText(st.message)
        w = self.parent().window() if self.parent() is not None else None
        if w is not None and hasattr(w, "refresh_models"):
            w.refresh_models()

    def refresh_versions(self) -> None:
        rows = []
        self._versions = self.ctx.store.model_versions(LOCAL_ID)
        for v in self._versions:
            t = v["metrics"].get("test") or {}
            va = v["metrics"].get("validation") or {}
            rows.append([f"v{v['version']}" + ("  ● active" if v["active"] else ""), v["created_at"],
                         ", ".join(v["metrics"].get("classes", [])), t.get("n"), t.get("accuracy"),
                         t.get("balanced_accuracy"), t.get("sensitivity"), t.get("specificity"),
                         va.get("balanced_accuracy"), v["sha256"][:12], Path(v["path"]).parent.name])
        _fill(self.versions, ["version", "created", "classes", "test n", "test acc", "test bal. acc",
                              "sensitivity", "specificity", "val bal. acc", "sha256", "folder"], rows)
        self.versions.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)

    def activate_selected(self, row: int | None = None) -> None:
        if row is None:
            sel = self.versions.selectionModel().selectedRows()
            if not sel:
                self.state.setText("Select a version first.")
                return
            row = sel[0].row()
        v = self._versions[row]
        path = Path(v["path"])
        if not path.exists() or sha256_file(path) != v["sha256"]:
            self.state.setText(f"<span style='color:#e5534b'>v{v['version']}: its file is missing or changed; "
                               "it cannot be activated</span>")
            return
        self.ctx.store.activate_model_version(v["id"])
        self._install(path)
        self.refresh_versions()

    def closeEvent(self, ev) -> None:
        self.stop()
        super().closeEvent(ev)

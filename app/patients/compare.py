"""Compare with prior: two studies of one patient and one modality side by side, linked, with the
change of their key results (ΔEF, changed labels), and both in one PDF.

- Echo: linked cine play (one Play for both; each loop plays at its own rate, a frame step or slider move
  on one shows the same moment of the other loop).
- Chest X-ray: linked zoom / pan, and window / level (the same fraction of each image's value range).
- ECG: the two 12-lead papers one above the other on one time axis (same layout, speed and gain).
- Heart sounds, endoscopy: side by side, unlinked.

The studies are read on a worker (``open_study``), as the main window does; the viewers only show them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.patients.model import study_key
from app.widgets import user_state
from inference import paths
from inference.patients import deltas, study_day
from inference.study import MODALITY_TITLES


class CompareWindow(QWidget):
    def __init__(self, ctx, prior_id: int, current_id: int, parent: QWidget | None = None):
        super().__init__(parent, Qt.Window)
        self.ctx = ctx
        self.ids = (prior_id, current_id)
        self.rows = [ctx.store.study(i) for i in self.ids]
        self.modality = self.rows[1]["modality"]
        self.studies: list = [None, None]
        self.viewers: list = []
        self.keys = [study_key(ctx.store, i, self.modality) for i in self.ids]
        self.setWindowTitle(f"Compare with prior — {MODALITY_TITLES[self.modality]} — Lightbox")
        lay = QVBoxLayout(self)
        head = QHBoxLayout()
        self.title = QLabel(self._title_text())
        self.title.setWordWrap(True)
        self.title.setMinimumWidth(200)
        head.addWidget(self.title, 1)
        self.play_btn = QPushButton("▶ Play both")
        self.play_btn.setVisible(self.modality == "echo")
        self.play_btn.clicked.connect(self.toggle_play)
        self.pdf_btn = QPushButton("Both in one PDF…")
        self.pdf_btn.clicked.connect(lambda: self.export_pdf())
        head.addWidget(self.play_btn)
        head.addWidget(self.pdf_btn)
        lay.addLayout(head)
        from app.modalities import new_viewer

        self.split = QSplitter(Qt.Vertical if self.modality == "ecg" else Qt.Horizontal)
        self.split.setObjectName(f"compare_{self.modality}")
        for i in range(2):
            box = QWidget()
            bl = QVBoxLayout(box)
            bl.setContentsMargins(0, 0, 0, 0)
            r = self.rows[i]
            lab = QLabel(f"<b>{'Prior' if i == 0 else 'Current'}</b> · {study_day(r)} · {r['name']}"
                         f" · {self.keys[i].text if self.keys[i] else 'not analysed'}")
            lab.setObjectName("muted")
            lab.setWordWrap(True)
            bl.addWidget(lab)
            v = new_viewer(self.modality, ctx)
            v.modality = self.modality
            v.autoplay = False  # echo: both loops start together once both are read
            bl.addWidget(v, 1)
            self.viewers.append(v)
            self.split.addWidget(box)
        lay.addWidget(self.split, 1)
        self.status = QLabel("Reading both studies…")
        self.status.setObjectName("muted")
        lay.addWidget(self.status)
        self.key = f"compare_{self.modality}"
        # never larger than the screen it opens on; two 12-lead papers one above the other need all its height
        user_state.restore(self, self.key, None if self.modality == "ecg" else (1600, 1000))
        user_state.restore_splitters(self, self.key)
        from inference.detect import open_study

        for i, r in enumerate(self.rows):
            ctx.jobs.start(f"Opening {r['name']}", lambda c, r=r: open_study(r["source_path"], r["modality"]),
                           on_result=lambda st, i=i: self._loaded(i, st),
                           on_error=lambda msg: self.status.setText(msg))

    def _title_text(self) -> str:
        a, b = self.rows
        d = deltas(self.keys[0], self.keys[1])
        return (f"<b>{MODALITY_TITLES[self.modality]}: {study_day(a)} → {study_day(b)}</b>"
                + (f" &nbsp; <span style='color:#3d8bfd'>{' · '.join(d)}</span>" if d else
                   " &nbsp; (no key result on both to compare)"))

    def _loaded(self, i: int, study) -> None:
        self.studies[i] = study
        v = self.viewers[i]
        v.set_study(study, self.ids[i])
        try:
            v.set_result(self.ctx.store.latest_result(self.ids[i]))
        except Exception as e:  # a stored result this viewer cannot draw: the images still compare
            self.status.setText(f"{study.name}: stored result not shown ({type(e).__name__}: {e})")
        if all(s is not None for s in self.studies):
            self.status.setText("Linked: " + {"echo": "play, frame steps and slider",
                                              "xray": "zoom, pan and window/level",
                                              "ecg": "time axis, layout, speed and gain"}.get(self.modality, "nothing")
                                + ". Both studies are shown with their stored results.")
            self._link()
            if self.modality == "echo" and user_state.flag("echo/autoplay", True):
                self.toggle_play()

    # -- linking -------------------------------------------------------------------------------------------
    def _link(self) -> None:
        a, b = self.viewers
        if self.modality == "xray":
            b.boxes[0].setXLink(a.boxes[0])
            b.boxes[0].setYLink(a.boxes[0])
            a._wl_timer.timeout.connect(lambda: self._sync_wl(a, b))
            b._wl_timer.timeout.connect(lambda: self._sync_wl(b, a))
        elif self.modality == "ecg":
            b.view.vb.setXLink(a.view.vb)
            b.view.vb.setYLink(a.view.vb)
            for src, dst in ((a, b), (b, a)):
                src.layout_box.currentIndexChanged.connect(lambda _i, s=src, d=dst: d.set_layout(s.layout_name))
                src.speed_box.currentIndexChanged.connect(lambda _i, s=src, d=dst: d.set_speed(s.speed))
                src.gain_box.currentIndexChanged.connect(lambda _i, s=src, d=dst: d.set_gain(s.gain))
        elif self.modality == "echo":
            for src, dst in ((a, b), (b, a)):
                src.slider.valueChanged.connect(lambda v, s=src, d=dst: self._sync_frame(s, d))

    @staticmethod
    def _sync_wl(src, dst) -> None:
        """The same fraction of each image's value range (two detectors store different numbers)."""
        def rng(v):
            lo, hi = (v.study.metadata.get("value_range") or [0.0, 1.0])[:2]
            return float(lo), max(float(hi) - float(lo), 1.0)

        if src.use_header_lut == dst.use_header_lut and src.use_header_lut:
            return
        (l0, s0), (l1, s1) = rng(src), rng(dst)
        dst.use_header_lut = src.use_header_lut
        dst.center = l1 + (src.center - l0) / s0 * s1
        dst.width = src.width / s0 * s1
        dst._render()

    def _sync_frame(self, src, dst) -> None:
        if src.frames is None or dst.frames is None or dst.timer.isActive():
            return
        t = src.canvas.index / max(1, len(src.frames) - 1)
        dst.show_frame(round(t * (len(dst.frames) - 1)))

    def toggle_play(self) -> None:
        a, b = self.viewers
        if any(v.timer.isActive() for v in self.viewers):
            for v in self.viewers:
                v.pause()
            self.play_btn.setText("▶ Play both")
        else:
            for v in (a, b):
                v.show_frame(v.loop.value()[0])
            for v in (a, b):
                v.play()
            self.play_btn.setText("❚❚ Pause both")

    # -- PDF -----------------------------------------------------------------------------------------------
    def export_pdf(self, path: str | None = None):
        if any(s is None for s in self.studies):
            self.status.setText("Both studies are still being read.")
            return None
        if not path:
            default = str(paths.exports_dir() / f"compare_{Path(self.rows[1]['name']).stem}.pdf")
            path, _ = QFileDialog.getSaveFileName(self, "Both studies in one PDF", default, "PDF (*.pdf)")
            if not path:
                return None
        studies, ids, store = list(self.studies), self.ids, self.ctx.store
        extras = [v.report_extra() if hasattr(v, "report_extra") else {} for v in self.viewers]
        return self.ctx.jobs.start("Writing compare PDF",
                                   lambda ctx: compare_pdf(studies, store, ids, path, extras),
                                   on_result=lambda p: self.status.setText(f"Report written: {p}"),
                                   on_error=lambda msg: self.status.setText(msg))

    def closeEvent(self, ev) -> None:
        user_state.save(self, self.key)
        for v in self.viewers:
            v.shutdown()
        super().closeEvent(ev)


def compare_pdf(studies, store, ids, path, extras=None) -> str:
    """Prior and current in one PDF: the key results and their change first, then each study's own
    report section under its date."""
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, Spacer

    from app.modalities import report_module
    from app.patients.export import patient_line
    from app.report.base import BODY, H2, build_pdf, generic_sections, table

    extras = extras or [{}, {}]
    prior, cur = studies
    keys = [study_key(store, i, cur.modality) for i in ids]
    rows = [store.study(i) for i in ids]
    flow: list = [Paragraph("Compare with prior", H2)]
    table_rows = [["", f"Prior · {study_day(rows[0])}", f"Current · {study_day(rows[1])}", "Change"]]
    table_rows.append(["Study", prior.name, cur.name, ""])
    table_rows.append(["Key result", keys[0].text if keys[0] else "not analysed",
                       keys[1].text if keys[1] else "not analysed", ", ".join(deltas(keys[0], keys[1])) or "—"])
    metrics = sorted(set(keys[0].metrics if keys[0] else {}) | set(keys[1].metrics if keys[1] else {}))
    for m in metrics:
        a = keys[0].metrics.get(m) if keys[0] else None
        b = keys[1].metrics.get(m) if keys[1] else None
        d = f"{b - a:+.3g}" if a is not None and b is not None else "—"
        table_rows.append([m, "—" if a is None else f"{a:.3g}", "—" if b is None else f"{b:.3g}", d])
    flow += [table(table_rows, col_widths=[38 * mm, 52 * mm, 52 * mm, 44 * mm]), Spacer(1, 4 * mm)]
    mod = report_module(cur.modality)
    all_results = []
    for i, (st, sid) in enumerate(zip(studies, ids)):
        results = store.results(sid)
        all_results += results
        flow.append(PageBreak())
        flow.append(Paragraph(f"{'Prior' if i == 0 else 'Current'} study · {study_day(rows[i])} · {st.name}", H2))
        if mod is not None and hasattr(mod, "sections"):
            flow += mod.sections(st, results, store, sid, extras[i] or {})
        else:
            flow += generic_sections(results)
    flow.append(Paragraph("Both studies belong to the same patient in this Lightbox database.", BODY))
    title_study = dataclasses.replace(cur, name=f"{cur.name} vs prior {prior.name}")
    build_pdf(path, title_study, all_results, flow, pagesize=getattr(mod, "PAGESIZE", None) if mod else None,
              patient=patient_line(store, ids[1]))
    return str(path)

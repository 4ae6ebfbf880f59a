"""Endoscopy viewer: video player, quality/findings timeline, live and review analysis, findings.

- Layout (app.endo.panes): the frame, the timeline and the transport take what the panel (analysis, mask
  controls, findings) leaves; the panel sits beside the frame, or below it when the frame is wide (16:9);
  F or the Findings button folds it away; its sizes are remembered per user.
- Playback: a QTimer at the file's frame rate x speed; frames come from a decode-ahead thread
  (inference.endo.playback.Prefetcher) with a synchronous fallback, so a seek is frame-accurate.
  Space plays/pauses, Left/Right step a frame, PgUp/PgDn jump to the previous/next finding.
- Timeline under the video: frame-quality bands (ok / blur / dark / overexposed / glare / duplicate)
  and findings (proposed / confirmed / rejected); click or drag to seek.
- Live mode: the frame on screen is offered to an analyser running through app.jobs; when it is
  slower than playback, frames are dropped from the analysis queue (counted), never from the display.
- Polyp masks (app.endo.masks_ui): the mask of every analysed frame of a review result (stored with
  the result, no model run) and of every frame live mode analysed, on playback and stepping; M or the
  Mask box shows/hides it, the slider sets its fill's opacity.
- Still images: one image (a photograph from the endoscopy processor) or a folder read as a set of
  stills: no playback or live mode; Analyse image(s) gives each image its own verdict.
- Review mode: the whole video through the pipeline on a worker (main window's Analyse, with
  progress and cancel); the model's proposed findings are filed in the store's findings table.
- Findings table: add at the current frame, edit, confirm, reject, delete, double-click to jump.
- Export bundle: metadata.json, summary.json, findings.csv, findings.json, report.txt (zip, atomic)
  plus the PDF report with key frames beside it.
"""
from __future__ import annotations


import collections
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QLabel, QPushButton, QVBoxLayout,
                               QWidget)

from app.endo.timeline import QUALITY_COLOURS, STATUS_COLOURS
from app.context import AppContext
from app.widgets.flow import FlowLayout
from app.widgets.viewer_base import ViewerBase
from inference import paths
from inference.endo.export import fmt_time
from inference.endo.playback import LatestSlot, Prefetcher
from inference.results import NOT_CLINICAL, Result
from inference.study import Study

SPEEDS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)


from app.endo.findings import FindingsMixin
from app.endo.live import LiveMixin
from app.endo.frames import FrameView, rgb_to_qimage
from app.endo.masks_ui import MaskMixin
from app.endo.panes import PanesMixin
from app.endo.timeline import Timeline


KEY_HELP = {Qt.Key_Space: "Play / pause", Qt.Key_Left: "Previous frame", Qt.Key_Right: "Next frame",
            Qt.Key_PageUp: "Previous finding", Qt.Key_PageDown: "Next finding", Qt.Key_Insert: "Add a finding here",
            Qt.Key_C: "Confirm the selected finding", Qt.Key_X: "Reject the selected finding",
            Qt.Key_M: "Show / hide the polyp mask", Qt.Key_F: "Show / hide the findings panel"}


class EndoViewer(PanesMixin, MaskMixin, LiveMixin, FindingsMixin, ViewerBase):
    modality = "endo"

    def __init__(self, ctx: AppContext, parent: QWidget | None = None):
        super().__init__(ctx, parent)
        self.src = None
        self.prefetch: Prefetcher | None = None
        self.n = 0
        self.fps = 25.0
        self.pos = 0
        self.speed = 1.0
        self.playing = False
        self.findings: list[dict] = []
        self.display_late = 0  # display frames skipped because the UI fell behind real time
        self.live_job = None
        self.live_slot: LatestSlot | None = None
        self.live_out: collections.deque = collections.deque()
        self.live_last: dict[str, Any] = {}
        self._play_t0 = 0.0
        self._play_f0 = 0

        self.view = FrameView()
        self.timeline = Timeline()
        self.timeline.seek.connect(self.seek)

        # transport
        self.play_btn = QPushButton("▶ Play")
        self.play_btn.setToolTip("Play / pause (Space)")
        self.play_btn.clicked.connect(self.toggle_play)
        self.prev_f = QPushButton("◀◀")
        self.prev_f.setToolTip("Previous finding (PgUp)")
        self.prev_f.clicked.connect(lambda: self.jump_finding(-1))
        self.back = QPushButton("◀|")
        self.back.setToolTip("One frame back (Left)")
        self.back.clicked.connect(lambda: self.step(-1))
        self.fwd = QPushButton("|▶")
        self.fwd.setToolTip("One frame forward (Right)")
        self.fwd.clicked.connect(lambda: self.step(1))
        self.next_f = QPushButton("▶▶")
        self.next_f.setToolTip("Next finding (PgDn)")
        self.next_f.clicked.connect(lambda: self.jump_finding(1))
        self.speed_box = QComboBox()
        for s in SPEEDS:
            self.speed_box.addItem(f"{s:g}×", s)
        self.speed_box.setCurrentIndex(SPEEDS.index(1.0))
        self.speed_box.setToolTip("Playback speed")
        self.speed_box.currentIndexChanged.connect(lambda _i: self.set_speed(self.speed_box.currentData()))
        self.time_label = QLabel("")
        self.live_box = QCheckBox("Live")
        self.live_box.setToolTip("Analyse the frame on screen while playing. Playback never waits for the "
                                 "analysis: frames it cannot keep up with are dropped from the analysis queue.")
        self.live_box.toggled.connect(self.set_live)
        self.live_box.setStyleSheet("QCheckBox::indicator { width: 12px; height: 12px; border: 1px solid #8b949e; "
                                    "background: #22272e; } QCheckBox::indicator:checked { background: #3d8bfd; }")
        self.vlm_btn = QPushButton("Ask VLM")
        self.vlm_btn.setToolTip("Describe the frame on screen with the local MedGemma-4B-it (optional)")
        self.vlm_btn.clicked.connect(self.ask_vlm)
        self.vlm_btn.setEnabled(False)
        self.live_label = QLabel("")
        self.live_label.setObjectName("muted")
        self.review_btn = QPushButton("Analyse video")
        self.review_btn.setObjectName("primary")
        self.review_btn.setToolTip("Review mode: every frame on a worker, with progress and cancel (Ctrl+R)")
        self.review_btn.clicked.connect(lambda: self.request_analysis.emit(""))
        self.panel_btn = QPushButton("Findings")
        self.panel_btn.setCheckable(True)
        self.panel_btn.setChecked(True)
        self.panel_btn.setToolTip("Show / hide the panel: analysis, mask and findings (F)")
        self.panel_btn.toggled.connect(self.show_panel)
        for w in (self.prev_f, self.back, self.fwd, self.next_f):
            w.setFixedWidth(40)
        self.play_btn.setFixedWidth(84)
        tr = FlowLayout()  # wraps onto a second line in a narrow column rather than widening it
        for w in (self.prev_f, self.back, self.play_btn, self.fwd, self.next_f, self.speed_box, self.time_label,
                  self.panel_btn):
            tr.addWidget(w)

        # the frame column: what the endoscopist looks at, as large as the viewer allows
        left = QWidget()
        tl = QVBoxLayout(left)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.setSpacing(4)
        self.header = QLabel("")
        self.header.setObjectName("muted")
        self.header.setWordWrap(True)
        tl.addWidget(self.header)
        tl.addWidget(self.view, 1)
        tl.addWidget(self.timeline)
        tl.addLayout(tr)

        # the panel (beside or below the frame): analysis, mask, findings
        an = FlowLayout()
        for w in (self.review_btn, self.live_box, self.vlm_btn):
            an.addWidget(w)
        self.selection_label = QLabel("")
        self.selection_label.setWordWrap(True)  # long text must not widen the viewer
        self.live_label.setWordWrap(True)
        self.live_label.hide()  # until live mode runs
        legend = QLabel("  ".join(f"<span style='color:{c}'>■</span>&nbsp;{k}" for k, c in QUALITY_COLOURS.items()
                                  if k != "live") + " · findings: "
                        + "  ".join(f"<span style='color:{c}'>◆</span>&nbsp;{k}" for k, c in STATUS_COLOURS.items()))
        legend.setObjectName("muted")
        legend.setWordWrap(True)
        legend.setToolTip("Timeline colours: frame quality (upper row) and findings (lower row)")
        self.legend = legend
        info = QWidget()
        il = QVBoxLayout(info)
        il.setContentsMargins(0, 0, 0, 0)
        il.setSpacing(4)
        il.addLayout(an)
        il.addWidget(self.selection_label)
        il.addWidget(self.live_label)
        il.addWidget(legend)
        il.addWidget(self._make_mask_controls())
        il.addStretch(1)
        split = self._make_panes(left, info, *self._make_findings_pane())  # app.endo.panes: beside or below
        self.legend_homes = ((il, 3), (tl, 3))  # in the panel beside the frame; under the timeline when below
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split)

        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.live_timer = QTimer(self)  # drains live results while paused
        self.live_timer.setInterval(150)
        self.live_timer.timeout.connect(self._drain_live)

        for key, fn in ((Qt.Key_Space, self.toggle_play), (Qt.Key_Left, lambda: self.step(-1)),
                        (Qt.Key_Right, lambda: self.step(1)), (Qt.Key_PageUp, lambda: self.jump_finding(-1)),
                        (Qt.Key_PageDown, lambda: self.jump_finding(1)), (Qt.Key_Insert, self.add_dialog),
                        (Qt.Key_C, lambda: self.set_status_selected("confirmed")),
                        (Qt.Key_M, self.mask_box.toggle), (Qt.Key_F, self.panel_btn.toggle),
                        (Qt.Key_X, lambda: self.set_status_selected("rejected"))):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.WidgetWithChildrenShortcut)
            sc.setWhatsThis(KEY_HELP.get(key, ""))  # Help ▸ Keyboard shortcuts reads it
            sc.activated.connect(fn)
        self._enable(False)

    # -- study ------------------------------------------------------------------------------------
    def _enable(self, on: bool) -> None:
        for w in (self.play_btn, self.back, self.fwd, self.prev_f, self.next_f, self.speed_box, self.live_box,
                  self.review_btn, self.add_btn, self.edit_btn, self.confirm_btn, self.reject_btn,
                  self.delete_btn, self.export_btn):
            w.setEnabled(on)

    def set_study(self, study: Study, study_id: int) -> None:
        self.pause()
        self.set_live(False)
        if self.prefetch is not None:
            self.prefetch.close()
            self.prefetch = None
        super().set_study(study, study_id)
        self.review_track = self.live_track = None
        self.kind = ("still" if study.metadata.get("format") == "image" else
                     "set" if study.metadata.get("folder_as") == "set" else "video")
        self.src = study.data["source"]
        self.n, self.fps = len(self.src), float(self.src.fps)
        self.prefetch = Prefetcher(self.src)
        self.timeline.set_video(self.n, self.fps, images=self.kind != "video")
        try:
            first = self.frame_rgb(0) if self.n else None
        except Exception:  # noqa: BLE001 - a damaged first frame: show_frame says so
            first = None
        if first is not None:
            self.set_frame_aspect(first.shape[1] / max(first.shape[0], 1))
        m = study.metadata
        if self.kind == "video":
            facts = (f"{m.get('width')}×{m.get('height')} · {m.get('fps')} fps · {self.n} frames · "
                     f"{fmt_time(self.n / self.fps)}" + (f" · {m.get('codec')}" if m.get("codec") else ""))
        elif self.kind == "still":
            facts = f"still image · {m.get('width')}×{m.get('height')} · {str(m.get('file_type', '')).upper()}"
        else:
            facts = f"{self.n} still images"
        self.header.setText(f"{study.name} · {facts}" + ("  — " + "; ".join(study.notes) if study.notes else ""))
        self.display_late = 0
        longest = (f"{fmt_time(self.n / self.fps)} / {fmt_time(self.n / self.fps)} · frame {self.n}/{self.n}"
                   if self.kind == "video" else f"image {self.n} of {self.n}")
        self.time_label.setFixedWidth(self.time_label.fontMetrics().horizontalAdvance(longest) + 12)
        self.selection_label.setText("Frame selection: not analysed yet (Analyse video, or tick Live and play).")
        self.live_last = {}
        self._enable(self.n > 0)
        self._apply_kind()
        self._update_vlm()
        self.reload_findings()
        self.show_frame(0)

    def set_result(self, result: Result | None) -> None:
        super().set_result(result)
        if result is None:
            return
        o = result.outputs
        if "frames_total" in o:
            self.selection_label.setText(self._selection_text(result))
        bands = result.outputs.get("_bands")
        if bands:
            self.timeline.set_bands(bands)
        self.load_review_track(result)
        self.timeline.cuts = list(result.outputs.get("_scene_cuts") or [])
        if self.study_id is not None:
            n = self.ctx.store.file_proposed_findings(self.study_id, result)
            if n:
                self.status_message.emit(f"{n} proposed finding(s) from {result.model_id} added for review"
                                         + ("" if result.clinical else f" — {NOT_CLINICAL}"))
        self.reload_findings()
        self.show_frame(self.pos)

    # -- playback -----------------------------------------------------------------------------------
    def frame_rgb(self, i: int) -> np.ndarray:
        f = self.prefetch.get(i) if self.prefetch else None
        return f if f is not None else self.src.frame(i)

    def show_frame(self, i: int) -> None:
        if not self.n:
            return
        i = max(0, min(int(i), self.n - 1))
        self.pos = i
        try:
            rgb = self.frame_rgb(i)
        except Exception as e:  # a damaged frame: say so, keep the player alive
            self.status_message.emit(str(e))
            self.pause()
            return
        boxes = []
        near = max(1, int(round(self.fps / 4))) if self.kind == "video" else 0  # a still's own findings only
        for f in self.findings:
            fi = f.get("frame_index")
            if fi is None or abs(fi - i) > near or not f.get("box"):
                continue
            try:
                box = json.loads(f["box"]) if isinstance(f["box"], str) else f["box"]
            except ValueError:
                continue
            if box and len(box) == 4:
                st = f.get("status") or "proposed"
                conf = f.get("confidence")
                txt = f"{f.get('label')}" + (f" {conf:.2f}" if isinstance(conf, (int, float)) else "") + f" · {st}"
                boxes.append((box, txt, STATUS_COLOURS.get(st, "#d29922"), st == "proposed"))
        near_live = self.live_last.get("index") is not None and abs(self.live_last["index"] - i) <= near
        live = self.live_last.get("dets") if near_live else None
        for d in live or []:
            if d.box:
                area = (d.extra or {}).get("area")
                boxes.append((d.box, f"{d.label} {d.confidence:.2f}" + (f" · {100 * area:.1f} %" if area else "")
                              + " · live", "#39c5cf", True))
        status = self.timeline.status_at(i)
        warn = status if status and status not in ("ok", "live") else ""
        if near_live and self.live_last.get("domain"):
            warn = "outside what this model was trained on"
        mask, note = self.mask_at(i, near_live)
        if self.kind == "video":
            osd = f"{fmt_time(i / self.fps)}  ·  frame {i}"
            self.time_label.setText(f"{fmt_time(i / self.fps)} / {fmt_time(self.n / self.fps)} · frame {i + 1}/{self.n}")
        else:
            files = getattr(self.src, "files", None) or []
            name = files[i].name if i < len(files) else ""
            osd = name if self.kind == "still" else f"{i + 1}/{self.n}  ·  {name}"
            self.time_label.setText(f"image {i + 1} of {self.n}")
        self.view.set_frame(rgb_to_qimage(rgb), boxes, osd, warn, mask=mask, mask_note=note)
        self.timeline.pos = i
        self.timeline.update()
        if self.live_slot is not None:
            self.live_slot.put(i)

    def seek(self, i: int) -> None:
        i = max(0, min(int(i), self.n - 1))
        if self.prefetch:
            self.prefetch.seek(i)
        self.show_frame(i)
        if self.playing:
            self._play_t0, self._play_f0 = time.perf_counter(), i

    def step(self, d: int) -> None:
        self.pause()
        self.seek(self.pos + d)

    def toggle_play(self) -> None:
        self.pause() if self.playing else self.play()

    def play(self) -> None:
        if not self.n or getattr(self, "kind", "video") != "video":  # stills are stepped, not played
            return
        if self.pos >= self.n - 1:
            self.seek(0)
        self.playing = True
        self.play_btn.setText("⏸ Pause")
        self._play_t0, self._play_f0 = time.perf_counter(), self.pos
        self.timer.start(max(1, int(1000 / (self.fps * self.speed))))

    def pause(self) -> None:
        self.playing = False
        self.timer.stop()
        self.play_btn.setText("▶ Play")

    def set_speed(self, s: float) -> None:
        self.speed = float(s)
        if self.playing:
            self._play_t0, self._play_f0 = time.perf_counter(), self.pos
            self.timer.start(max(1, int(1000 / (self.fps * self.speed))))

    def _tick(self) -> None:
        # the display follows the wall clock: if the UI was held up, it catches up (counted as late)
        due = self._play_f0 + int((time.perf_counter() - self._play_t0) * self.fps * self.speed)
        nxt = max(self.pos + 1, due)
        if nxt > self.pos + 1:
            self.display_late += nxt - self.pos - 1
        if nxt >= self.n:
            self.show_frame(self.n - 1)
            self.pause()
            return
        self.show_frame(nxt)
        self._drain_live()

    def _selection_text(self, result: Result) -> str:
        o = result.outputs
        stamp = "" if result.clinical else f" · <span style='color:#e5534b'><b>{NOT_CLINICAL}</b></span>"
        head = f"({result.model_id}, result #{result.id})"
        if self.kind == "still" and "polyp" in o:
            verdict = ("<b>polyp</b>" if o["polyp"] else "no polyp") if o.get("in_domain", True) else \
                "<b>outside what this model was trained on</b>"
            return (f"Image {head}: {verdict} · confidence {o.get('confidence', 0):.2f}"
                    + (f" · area {100 * o['area_fraction']:.1f} % of the image" if o.get("area_fraction") else "")
                    + stamp)
        if self.kind == "set" and "images_with_polyp" in o:
            return (f"Images {head}: <b>{o['images_with_polyp']}</b> of {o.get('frames_total')} with a polyp"
                    f" · {o.get('frames_out_of_domain', 0)} outside the model's domain" + stamp)
        sk = ", ".join(f"{k} {v}" for k, v in (o.get("skipped") or {}).items())
        return (f"Frame selection {head}: <b>{o.get('frames_analysed')}</b> of {o.get('frames_total')} frames "
                f"analysed · skipped {o.get('frames_skipped')} ({sk})"
                + (f" · <b>{o.get('findings_count')}</b> finding(s) proposed" if result.model_id != "endo-quality" else "")
                + (f" · <b>{o['frames_out_of_domain']} outside the model's domain</b>" if o.get("frames_out_of_domain") else "")
                + (f" · {o['scene_cuts']} scene cut(s)" if o.get("scene_cuts") else "") + stamp)

    def _apply_kind(self) -> None:
        """Stills have no playback: a single image hides the transport and timeline, a set keeps the
        image steps; the review button says what it analyses."""
        video, still = self.kind == "video", self.kind == "still"
        for w in (self.play_btn, self.speed_box, self.live_box):
            w.setVisible(video)
        for w in (self.back, self.fwd, self.prev_f, self.next_f, self.time_label):
            w.setVisible(not still)
        self.timeline.setVisible(not still)
        self.legend.setVisible(not still)
        self.table.always_hidden = set() if video else {0}  # a still has no time
        self.table.fit_columns()
        self.table.horizontalHeaderItem(1).setText("Frame" if video else "Image")
        self.review_btn.setText({"video": "Analyse video", "still": "Analyse image", "set": "Analyse images"}[self.kind])
        self.review_btn.setToolTip("Review mode: every frame on a worker, with progress and cancel (Ctrl+R)" if video
                                   else "Every image to the polyp model on its own, whatever its quality (Ctrl+R)")
        self.back.setToolTip("Previous image (Left)" if not video else "One frame back (Left)")
        self.fwd.setToolTip("Next image (Right)" if not video else "One frame forward (Right)")

    # -- export ---------------------------------------------------------------------------------------
    def export_bundle(self, path: str | None = None, on_done=None):
        """Zip bundle + PDF (same name, .pdf) on a worker. Returns the job."""
        if self.study is None:
            return None
        if not path:
            default = str(paths.exports_dir() / f"{Path(self.study.name).stem}_endoscopy.zip")
            path, _ = QFileDialog.getSaveFileName(self, "Export endoscopy bundle", default, "Zip (*.zip)")
            if not path:
                return None
        from app.report import build_report
        from inference.endo.export import export_from_store

        study, sid, store = self.study, self.study_id, self.ctx.store
        zpath = Path(path)
        pdf = zpath.with_suffix(".pdf")
        extra = self.report_extra()

        def work(ctx):
            ctx.progress(0.1, "bundle")
            export_from_store(store, study, sid, zpath)
            ctx.progress(0.5, "PDF")
            build_report(study, store, sid, pdf, extra=extra)
            return zpath, pdf

        def done(out):
            self.status_message.emit(f"Exported {out[0]} and {out[1].name}")
            if on_done:
                on_done(out)

        return self.ctx.jobs.start("Exporting endoscopy bundle", work, on_result=done,
                                   on_error=lambda m: self.status_message.emit(f"export failed: {m}"))

    def report_extra(self) -> dict[str, Any]:
        return {"frame_index": self.pos}

    def shutdown(self) -> None:
        self.save_panes()
        self.pause()
        self.set_live(False)
        if self.prefetch is not None:
            self.prefetch.close()
            self.prefetch = None

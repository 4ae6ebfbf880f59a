"""Live analysis in the endoscopy viewer (a mixin of EndoViewer): the frame on screen is offered to the
analyser on a worker; when the analyser is slower than playback, frames are skipped from the analysis
(counted), never from the display. Also the optional vision-language frame review."""
from __future__ import annotations


import collections
import json

import numpy as np

from inference.endo.playback import LatestSlot, live_loop
from inference.results import NOT_CLINICAL



class LiveMixin:
    """Live frame analysis and the optional VLM review of EndoViewer."""

    # -- live mode ----------------------------------------------------------------------------------
    @staticmethod
    def _live_analyser(registry, fps: float):
        """Quality of every frame taken (duplicates against the last analysed one), plus the polyp
        model on usable frames when it is installed. Built on the live worker: checking the model's
        hash and opening its ONNX session must not hold up the UI thread."""
        from inference.endo.models import POLYP_ID, PolypOnnx, load_quality_config
        from inference.endo.quality import FrameSelector

        cfg, _ = load_quality_config(registry)
        sel = FrameSelector(cfg, fps)
        model = None
        st = registry.state(POLYP_ID)
        if st.usable:
            model = PolypOnnx.from_registry(registry, threads=1)

        def analyse_frame(i: int, rgb: np.ndarray):
            rec = sel.measure(i, rgb)
            dets = model.detect([rgb])[0] if (model is not None and rec.ok) else []
            return rec.status, dets

        return analyse_frame, (None if model is None else st)

    def set_live(self, on: bool) -> None:
        if self.live_box.isChecked() != on:
            self.live_box.blockSignals(True)
            self.live_box.setChecked(on)
            self.live_box.blockSignals(False)
        if not on:
            if self.live_job is not None:
                self.live_job.cancel()
            self.live_job, self.live_slot = None, None
            self.live_timer.stop()
            self.live_label.setText("")
            return
        if self.src is None or self.live_job is not None:
            return
        self.live_slot = LatestSlot()
        self.live_out = collections.deque()
        self._live_runs: dict[str, dict] = {}
        self.live_model = None  # the polyp model's state, once the worker has checked it
        slot, src, out, registry, fps = self.live_slot, self.src, self.live_out, self.ctx.registry, self.fps

        def run(ctx):
            analyse_frame, self.live_model = self._live_analyser(registry, fps)  # before any output
            return live_loop(ctx, slot, src, analyse_frame, out)

        self.live_job = self.ctx.jobs.start(
            "Live analysis", run,
            on_error=lambda msg: (self.status_message.emit(f"live analysis stopped: {msg}"), self.set_live(False)))
        self.live_timer.start()
        self.live_slot.put(self.pos)

    def _drain_live(self) -> None:
        if self.live_slot is None:
            return
        changed = False
        while self.live_out:
            idx, (status, dets), secs = self.live_out.popleft()
            self.timeline.set_live(idx, status)
            self.live_last = {"index": idx, "dets": dets, "secs": secs}
            changed = True
            if dets and self.study_id is not None:
                self._file_live_detections(idx, dets)
        s = self.live_slot
        self.live_label.setText(f"live: {s.taken} analysed · {s.dropped} dropped from queue"
                                + (f" · {1000 * self.live_last['secs']:.1f} ms/frame" if self.live_last.get("secs") else ""))
        if changed:
            self.timeline.update()

    def _file_live_detections(self, idx: int, dets) -> None:
        """A live detection becomes a proposed finding; a detection of the same label within 1 s of the
        last one joins that finding (its key frame moves to the most confident view): a polyp seen for
        3 s is one finding, not 75."""
        st = self.live_model
        tag = f"{st.entry.id} (live)" if st else "live"
        for d in dets:
            run = self._live_runs.get(d.label)
            if run is not None and abs(idx - run["last"]) <= self.fps:
                run["last"] = idx
                if d.confidence > run["conf"]:
                    run["conf"] = d.confidence
                    self.ctx.store.update_finding(run["id"], frame_index=idx, time_s=round(idx / self.fps, 3),
                                                  confidence=d.confidence, box=json.dumps(d.box))
            else:
                note = "" if st is None or st.clinical else NOT_CLINICAL
                fid = self.ctx.store.add_finding(self.study_id, time_s=round(idx / self.fps, 3), frame_index=idx,
                                                 label=d.label, confidence=d.confidence, source=tag, note=note,
                                                 box=d.box, status="proposed")
                self._live_runs[d.label] = {"id": fid, "last": idx, "conf": d.confidence}
        self.reload_findings()

    # -- optional VLM -------------------------------------------------------------------------------
    def _update_vlm(self) -> None:
        from inference.endo.models import medgemma_state

        st = medgemma_state()
        self.vlm_btn.setEnabled(st.available and self.n > 0)
        self.vlm_btn.setToolTip(st.message)

    def ask_vlm(self) -> None:
        """The frame on screen to the local MedGemma; its findings are filed as proposed."""
        from inference.endo.models import VLM_ID, MedGemmaBackend

        if self.src is None:
            return
        self.pause()
        idx, sid, src = self.pos, self.study_id, self.src

        def work(ctx):
            ctx.progress(0.05, "loading MedGemma-4B-it")
            if getattr(LiveMixin, "_vlm", None) is None:
                LiveMixin._vlm = MedGemmaBackend()
            ctx.progress(0.5, "asking")
            rd = src.reopen()
            try:
                return LiveMixin._vlm.detect([rd.frame(idx)])[0]
            finally:
                rd.close()

        def done(dets) -> None:
            for d in dets:
                conf = d.confidence if d.confidence == d.confidence else None
                self.ctx.store.add_finding(sid, time_s=round(idx / self.fps, 3), frame_index=idx, label=d.label,
                                           confidence=conf, source=VLM_ID, box=d.box, status="proposed",
                                           note="; ".join(x for x in (d.note, NOT_CLINICAL) if x))
            self.reload_findings()
            self.show_frame(self.pos)
            self.status_message.emit(f"MedGemma: {len(dets)} finding(s) proposed at frame {idx}"
                                     if dets else "MedGemma: no structured finding in its reply")

        self.ctx.jobs.start("MedGemma frame review", work, on_result=done,
                            on_error=lambda m: self.status_message.emit(f"MedGemma: {m}"))


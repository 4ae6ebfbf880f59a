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
        """Built on the live worker (checking the model's hash and opening its ONNX session must not hold
        up the UI thread): inference.endo.playback.make_live_analyser."""
        from inference.endo.playback import make_live_analyser

        return make_live_analyser(registry, fps)

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
            self.live_label.hide()
            return
        if self.src is None or self.live_job is not None:
            return
        self.live_slot = LatestSlot()
        self.live_out = collections.deque()
        self._live_persist = None  # the persistence rule, built once the worker has checked the model
        self._live_prev = self._live_prev_analysed = None
        self._live_filed: dict[int, int] = {}  # id(persistence finding) -> store finding id
        self._live_keys: dict[int, tuple] = {}
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
            idx, out, secs = self.live_out.popleft()
            status, dets, mask, domain = out["status"], out["dets"], out["mask"], out["domain"]
            self.timeline.set_live(idx, status)
            prev = self.live_last
            if status != "ok" and prev.get("index") is not None and abs(idx - prev["index"]) <= self.fps / 2:
                # a frame skipped by selection (a near-duplicate, a blurred one) keeps the last view's overlay
                dets, mask, domain = prev.get("dets") or [], prev.get("mask"), prev.get("domain") or ""
            self.live_last = {"index": idx, "dets": dets, "secs": secs, "mask": mask, "domain": domain}
            changed = True
            self._live_event(idx, out)
        s = self.live_slot
        model = f"{self.live_model.entry.id} · " if self.live_model is not None else "quality only · "
        self.live_label.show()
        self.live_label.setText(f"live: {model}{s.taken} analysed · {s.dropped} dropped from queue"
                                + (f" · {1000 * self.live_last['secs']:.1f} ms/frame" if self.live_last.get("secs") else ""))
        if changed:
            self.timeline.update()

    def _live_event(self, idx: int, out: dict) -> None:
        """One live-analysed frame into the same rules as review mode (inference.endo.persistence): a
        finding once the polyp persists (persist_frames analysed or held frames, median confidence >=
        persist_confidence, from the manifest); a scene cut or a step back ends it; a duplicate frame
        (the scope held still, a frozen image) carries it. Its key frame follows the most confident view,
        and its mask is kept (live_track) so stepping back shows it."""
        from inference.endo.masks import MaskTrack
        from inference.endo.persistence import Persistence

        st = self.live_model
        if self._live_persist is None:
            o = (st.entry.outputs or {}) if st is not None else {}
            self._live_persist = Persistence(self.fps, min_frames=int(o.get("persist_frames", 3)),
                                             max_gap_s=max(float(o.get("persist_gap_s", 0.5)), 1.0),
                                             source=f"{st.entry.id} (live)" if st else "live",
                                             min_confidence=float(o.get("persist_confidence", 0.0)))
        if self.live_track is None:
            self.live_track = MaskTrack(self.n)
        p = self._live_persist
        if (self._live_prev is not None and idx <= self._live_prev) or out.get("cut"):
            p.cut(idx)
        if out["status"] == "duplicate" and self._live_prev_analysed is not None:
            p.hold(idx)
            self.live_track.hold(idx, self._live_prev_analysed)
        elif out.get("res") is not None:
            p.add(idx, out["res"])
            self.live_track.add(idx, out["mask"])
            self._live_prev_analysed = idx
        self._live_prev = idx
        f = p.open_finding
        if f is None or self.study_id is None:
            return
        key = (f["frame_index"], f["confidence"], f["last_frame"])
        fid = self._live_filed.get(id(f))
        note = f["note"] + ("" if st is None or st.clinical else f"; {NOT_CLINICAL}")
        if fid is None:
            self._live_filed[id(f)] = self.ctx.store.add_finding(
                self.study_id, time_s=f["time_s"], frame_index=f["frame_index"], label=f["label"],
                confidence=f["confidence"], source=f["source"], note=note, box=f["box"], status="proposed")
        elif self._live_keys.get(fid) != key:
            self.ctx.store.update_finding(fid, frame_index=f["frame_index"], time_s=f["time_s"],
                                          confidence=f["confidence"], box=json.dumps(f["box"]), note=note)
        else:
            return
        self._live_keys[self._live_filed[id(f)]] = key
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


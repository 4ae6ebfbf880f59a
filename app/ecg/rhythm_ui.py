"""The rhythm-model half of EcgViewer (a mixin): runs Lightbox's rhythm model on opening through the
main window's job runner -- on every lead it uses that the recording has (I, II, V1-V6 of a 12-lead ECG, a
Holter's two leads), or on the one lead the user picks -- says which leads it used, and keeps the per-window
band in step with the page."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QTimer

from app.ecg.paper import LEADS, WINDOW_S
from inference.results import Result

RHYTHM_ID = "ecg-rhythm"
AUTO = "Rhythm leads: auto"
TIP = ("Leads the rhythm model (N / AF / other / noisy) runs on. Auto: every lead of I, II, V1–V6 the recording "
       "has (a Holter's two leads, an AliveCor's lead I), their probabilities averaged. Trained on single-lead "
       "AliveCor recordings (lead I) and tested on 12-lead resting ECGs (PTB-XL); see its model card.")


def leads_used(outputs: dict) -> list[str]:
    """The leads a stored rhythm result used (results before v2 name one lead)."""
    leads = outputs.get("_leads")
    if leads:
        return [str(x) for x in leads]
    return [outputs["lead"]] if outputs.get("lead") else []


def leads_text(outputs: dict) -> str:
    """'lead II' or 'mean of leads I, II, V1–V6', for the info line, band caption and results panel."""
    leads = leads_used(outputs)
    if len(leads) > 1:
        return f"mean of leads {outputs.get('lead') or ', '.join(leads)}"
    return f"lead {leads[0] if leads else outputs.get('lead', '?')}"


class RhythmMixin:
    """Rhythm model runs and the band of EcgViewer."""

    # -- rhythm model (runs on opening, through the main window's job runner) -------------------------
    def _usable_leads(self) -> list[str]:
        sig = self.study.data["signal_mv"]
        return [ld for i, ld in enumerate(LEADS) if np.isfinite(sig[i]).all() and np.ptp(sig[i]) > 0.05]

    def _fill_rhythm_leads(self) -> None:
        self.rhythm_box.blockSignals(True)
        self.rhythm_box.clear()
        self.rhythm_box.addItem(AUTO)
        self.rhythm_box.setToolTip(TIP)
        if self._has_signal():
            for ld in self._usable_leads():
                self.rhythm_box.addItem(f"Rhythm lead: {ld}", ld)
        self.rhythm_box.blockSignals(False)

    def _rhythm_lead_chosen(self, index: int) -> None:
        lead = self.rhythm_box.itemData(index)
        self.request_analysis.emit(f"{RHYTHM_ID}:{lead}" if lead else RHYTHM_ID)

    def _start_rhythm(self) -> None:
        """Show the stored rhythm result, or ask for one (the model is bundled and fast)."""
        if not self._has_signal() or self.study_id is None:
            return
        stored = self.ctx.store.latest_result(self.study_id, RHYTHM_ID)
        if stored is not None:
            self._set_rhythm(stored)
            return
        st = self.ctx.registry.state(RHYTHM_ID, cached_only=True) if RHYTHM_ID in self.ctx.registry.entries else None
        if st is None or not st.may_start or self.study_id in self._rhythm_asked:
            return
        self._rhythm_asked.add(self.study_id)
        QTimer.singleShot(0, lambda sid=self.study_id: self.study_id == sid and self.request_analysis.emit(RHYTHM_ID))

    def _set_rhythm(self, result: Result) -> None:
        self.rhythm = result
        leads = leads_used(result.outputs)
        i = self.rhythm_box.findData(leads[0]) if len(leads) == 1 else -1
        self.rhythm_box.blockSignals(True)
        # auto names the leads it used: "Rhythm leads: auto (I, II, V1–V6)"
        self.rhythm_box.setItemText(0, AUTO if i >= 0 else f"{AUTO} ({result.outputs.get('lead') or ', '.join(leads)})")
        self.rhythm_box.setCurrentIndex(max(i, 0))
        self.rhythm_box.blockSignals(False)
        self._result_widget.show_rhythm(result)
        self._overview_trace()
        self.redraw()

    def _overview_trace(self) -> None:
        if not self._has_signal():
            self.overview.hide()
            return
        fs = float(self.study.data["fs"])
        n = self.study.data["signal_mv"].shape[1]
        if n / fs <= WINDOW_S + 1e-6:
            self.overview.hide()
            return
        used = leads_used(self.rhythm.outputs) if self.rhythm else []
        lead = ("II" if "II" in used else next(iter(used), None)) or next(iter(self._usable_leads()), None)
        row = self.study.data["signal_mv"][LEADS.index(lead)] if lead in LEADS else None
        self.overview.set_trace(row, fs, n / fs)
        self.overview.set_windows((self.rhythm.outputs.get("_windows") if self.rhythm else None) or [])
        self.overview.show()

    def go_to(self, t: float) -> None:
        """Show the 10-s page containing time ``t`` (seconds)."""
        if not self._has_signal():
            return
        dur = self.study.data["signal_mv"].shape[1] / self.study.data["fs"]
        ps = self.page_s
        self.t0 = float(min(max(0.0, np.floor(t / ps) * ps), max(0.0, dur - ps)))
        self.redraw()

    def af_episodes(self) -> list[tuple[float, float]]:
        """(start, end) in seconds of each run of consecutive AF windows of the rhythm band."""
        wins = (self.rhythm.outputs.get("_windows") or []) if self.rhythm else []
        eps: list[list[float]] = []
        for w in sorted(wins, key=lambda w: float(w["start_s"])):
            if w.get("label") != "af":
                continue
            a, b = float(w["start_s"]), float(w["end_s"])
            if eps and a <= eps[-1][1] + 1e-6:
                eps[-1][1] = max(eps[-1][1], b)
            else:
                eps.append([a, b])
        return [(a, b) for a, b in eps]

    def jump_af(self, step: int) -> bool:
        """Show the next (step > 0) or previous AF episode: its onset on the page's first row (the
        10-s row it falls in). A status message when there is none that way."""
        if not self._has_signal():
            return False
        eps = self.af_episodes()
        if not self.rhythm or not (self.rhythm.outputs.get("_windows") or []):
            self.status_message.emit("No rhythm band yet: AF episodes can be jumped to once the rhythm model has run.")
            return False
        dur = self.study.data["signal_mv"].shape[1] / self.study.data["fs"]
        last = max(0.0, dur - self.page_s)
        starts = [min(max(0.0, np.floor(a / WINDOW_S) * WINDOW_S), last) for a, _ in eps]
        if step > 0:
            ahead = [t for t in starts if t > self.t0 + 1e-6]
            target = ahead[0] if ahead else None
        else:
            behind = [t for t in starts if t < self.t0 - 1e-6]
            target = behind[-1] if behind else None
        if target is None:
            self.status_message.emit(("No AF episode in this recording." if not eps else
                                      f"No {'later' if step > 0 else 'earlier'} AF episode "
                                      f"({len(eps)} in this recording)."))
            return False
        self.t0 = float(target)
        self.redraw()
        k = starts.index(target) + 1
        self.status_message.emit(f"AF episode {k} of {len(eps)}: page from {int(target // 60)}:{int(target % 60):02d}")
        return True

    def _set_measure(self, m: dict) -> None:
        self.measure = m
        self.redraw()


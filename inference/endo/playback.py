"""Playback plumbing without Qt: decode-ahead for the display, a drop-oldest slot for live analysis.

- :class:`Prefetcher` decodes the frames just ahead of the play head on its own thread (with its own
  decoder), so the display timer finds the next frame ready; a seek restarts it at the new place.
- :class:`LatestSlot` hands the most recent displayed frame to the live analyser. When analysis is
  slower than playback, older frames are *dropped from the analysis queue* (counted), never from the
  display.
- :func:`live_loop` is the analyser body the viewer runs through ``app.jobs``.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


class Prefetcher:
    def __init__(self, source, ahead: int = 24):
        self.src = source.reopen()
        self.n = len(self.src)
        self.ahead = ahead
        self._buf: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._cond = threading.Condition()
        self._head = 0  # the play head: prefetch [head, head + ahead)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="endo-prefetch", daemon=True)
        self._thread.start()

    def seek(self, index: int) -> None:
        with self._cond:
            self._head = max(0, min(index, self.n - 1))
            for k in [k for k in self._buf if not self._head - 2 <= k < self._head + self.ahead]:
                del self._buf[k]
            self._cond.notify_all()

    def get(self, index: int) -> np.ndarray | None:
        """The frame if it has been decoded ahead, else None (the caller decodes it itself)."""
        with self._cond:
            f = self._buf.get(index)
            if index != self._head:
                self._head = index
                self._cond.notify_all()
            return f

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop:
                    want = next((i for i in range(self._head, min(self._head + self.ahead, self.n))
                                 if i not in self._buf), None)
                    if want is not None:
                        break
                    self._cond.wait(0.2)
                if self._stop:
                    return
            try:
                f = self.src.frame(want)
            except Exception:
                f = None
            with self._cond:
                if f is not None and self._head - 2 <= want < self._head + self.ahead:
                    self._buf[want] = f
                    while len(self._buf) > self.ahead + 4:
                        self._buf.popitem(last=False)
                elif f is None:
                    self._cond.wait(0.05)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2)
        self.src.close()


@dataclass
class LatestSlot:
    """A one-place queue: ``put`` replaces whatever was waiting (counted as dropped)."""

    offered: int = 0
    taken: int = 0
    dropped: int = 0
    _item: Any = None
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def put(self, item: Any) -> None:
        with self._cond:
            self.offered += 1
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float = 0.1) -> Any:
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            if item is not None:
                self.taken += 1
            return item


def live_loop(ctx, slot: LatestSlot, source, analyse_frame: Callable[[int, np.ndarray], Any],
              out: collections.deque) -> dict[str, int]:
    """Analyse the latest offered frame index until cancelled; results go to ``out`` (a deque the
    UI drains on its own timer). Returns the slot's counters."""
    src = source.reopen()
    try:
        while True:
            try:
                ctx.check()
            except Exception:
                break
            idx = slot.take(0.1)
            if idx is None:
                continue
            try:
                frame = src.frame(idx)
            except Exception:
                continue
            t0 = time.perf_counter()
            res = analyse_frame(idx, frame)
            out.append((idx, res, time.perf_counter() - t0))
    finally:
        src.close()
    return {"offered": slot.offered, "analysed": slot.taken, "dropped": slot.dropped}


def make_live_analyser(registry, fps: float, model=None, state=None):
    """The live analyser the viewer runs on its worker (and ``lightbox bench`` times): quality of every
    frame taken (duplicates against the last analysed one), a scene-cut check against the last usable
    one, then the polyp model on usable frames — the bundled Lightbox segmenter (default) or a
    user-installed one, or ``model`` when given. Returns (analyse_frame, model state); analyse_frame(i,
    rgb) gives a dict: status, dets, mask (bool, the kept regions; None when no polyp), domain (note),
    cut (a scene cut before this frame), res (a PolypFrame for the persistence rule; None when the
    frame was not given to the model)."""
    from inference.endo.models import default_polyp_id, load_quality_config, polyp_model
    from inference.endo.polyp import PolypFrame
    from inference.endo.quality import FrameSelector
    from inference.endo.scenes import CutDetector

    cfg, _ = load_quality_config(registry)
    sel = FrameSelector(cfg, fps)
    cuts = CutDetector()
    if model is None:
        mid = default_polyp_id(registry)
        if mid is not None:
            state = registry.state(mid)
            model = polyp_model(registry, mid, threads=1)
    last = {"index": -1}

    def analyse_frame(i: int, rgb: np.ndarray) -> dict[str, Any]:
        if i < last["index"]:  # stepped back: the selector's and cut detector's references are stale
            sel.reset()
            cuts.reset()
        last["index"] = i
        rec = sel.measure(i, rgb)
        out: dict[str, Any] = {"status": rec.status, "dets": [], "mask": None, "domain": "", "cut": False,
                               "res": None}
        if rec.ok:
            out["cut"] = cuts.update(i, rgb)
        if model is None or not rec.ok:
            return out
        if hasattr(model, "analyse"):
            r = model.analyse([rgb])[0]
            out.update(dets=r.detections(), mask=r.mask if r.polyp else None, domain=r.domain_note, res=r)
        else:
            dets, mask = model.detect_with_masks([rgb])[0]
            top = dets[0] if dets else None
            out.update(dets=dets, mask=mask if dets else None,
                       res=PolypFrame(True, polyp=bool(dets), confidence=top.confidence if top else 0.0,
                                      box=top.box if top else None, mask=mask if dets else None))
        return out

    return analyse_frame, state

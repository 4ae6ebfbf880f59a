"""Per-frame polyp detections -> findings that match what the endoscopist saw (no Qt).

:class:`Persistence` is fed the frames of a video in order:

``add(i, result)``  a frame the model analysed (a :class:`inference.endo.polyp.PolypFrame`).
``hold(i)``         a frozen / duplicate frame (the frame selector found it near-identical to the last
                    analysed one, so the model did not see it again): it repeats the last analysed
                    frame's result. An endoscopist who freezes the image on a polyp is looking at it:
                    the held frames count towards persistence instead of breaking it.
``cut(i)``          a scene cut before frame ``i`` (:mod:`inference.endo.scenes`): the polyp after it is
                    not the polyp before it, so the open run and its finding end there.

A finding = a polyp on at least ``min_frames`` consecutive frames (analysed or held), with gaps of at
most ``max_gap_s`` seconds between them, on which the model is sure of it: the median confidence of
those frames is at least ``min_confidence`` (the manifest's ``persist_confidence``, chosen on the
model's validation split: on real polyp frames the bundled model's confidence is >= 0.8 for 98 % of
them, while a flicker on plain mucosa — the demo video's synthetic tunnel — hovers around 0.6-0.7;
a run that is not sure yet is confirmed later, once its median rises). Everything a finding says comes from its own frames only:
its first and last frame, its key frame (the most confident analysed frame), confidence (that frame's
score), box and area. A finding is returned once, by the call that confirms it, and updated while
its polyp stays in view.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

LABEL = "polyp"


@dataclass
class _Seen:
    index: int
    t: float
    res: Any  # PolypFrame
    held: bool


@dataclass
class Persistence:
    fps: float
    min_frames: int = 3
    max_gap_s: float = 0.5
    source: str = "endo-polyp-lightbox"
    min_confidence: float = 0.0
    findings: list[dict[str, Any]] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)
    _run: list[_Seen] = field(default_factory=list)
    _last_t: float = -1e9
    _last_res: Any = None
    _last_index: int | None = None
    _open: dict[str, Any] | None = None
    _finding_run: int = 0

    def _t(self, index: int) -> float:
        return index / self.fps if self.fps else float(index)

    # -- input -------------------------------------------------------------------------------------
    def add(self, index: int, res, held: bool = False) -> dict[str, Any] | None:
        t = self._t(index)
        if not held:
            self._last_res, self._last_index = res, index
        if not res.polyp:
            if t - self._last_t > self.max_gap_s:
                self._close()
            return None
        if t - self._last_t > self.max_gap_s:
            self._close()
        self._last_t = t
        self._run.append(_Seen(index, t, res, held))
        if self._open is not None:
            self._update(self._open)
            return None
        if len(self._run) >= self.min_frames and self._sure():
            f: dict[str, Any] = {"label": LABEL, "source": self.source}
            self._update(f)
            self._open = f
            self.findings.append(f)
            return f
        return None

    def hold(self, index: int) -> dict[str, Any] | None:
        """A duplicate of the last analysed frame (nothing happens when no frame was analysed yet)."""
        if self._last_res is None:
            return None
        return self.add(index, self._last_res, held=True)

    def cut(self, index: int) -> None:
        """A scene cut just before frame ``index``: the open run and finding end, and held frames after
        the cut no longer repeat the frame before it."""
        self.cuts.append(int(index))
        self._close()
        self._last_res, self._last_index = None, None
        self._last_t = -1e9

    def _sure(self) -> bool:
        if self.min_confidence <= 0:
            return True
        conf = sorted(float(s.res.confidence) for s in self._run)
        return float(np.median(conf)) >= self.min_confidence

    @property
    def open_finding(self) -> dict[str, Any] | None:
        return self._open

    # -- findings ----------------------------------------------------------------------------------
    def _update(self, f: dict[str, Any]) -> None:
        analysed = [s for s in self._run if not s.held] or self._run
        key = max(analysed, key=lambda s: s.res.confidence)
        a, b = self._run[0], self._run[-1]
        n_held = sum(s.held for s in self._run)
        n_an = len(self._run) - n_held
        r = key.res
        seen = f"seen on {n_an} analysed frame{'s' if n_an != 1 else ''}"
        if n_held:
            seen += f" and {n_held} held (frozen) frame{'s' if n_held != 1 else ''}"
        f.update(time_s=round(key.t, 3), frame_index=int(key.index), confidence=round(float(r.confidence), 4),
                 box=r.box, area=round(float(r.area), 5), first_frame=int(a.index), last_frame=int(b.index),
                 frames_seen=len(self._run), frames_held=n_held,
                 note=f"{seen}, frames {a.index}-{b.index} ({a.t:.2f}-{b.t:.2f} s); "
                      f"area {100 * r.area:.1f} % of the frame")

    def _close(self) -> None:
        self._run = []
        self._open = None

    def run(self, results) -> list[dict[str, Any]]:
        """[(index, PolypFrame)] in frame order (no holds or cuts) -> findings."""
        for i, r in results:
            self.add(i, r)
        return self.findings

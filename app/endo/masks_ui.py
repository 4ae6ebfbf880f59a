"""The polyp mask on screen (a mixin of EndoViewer): the mask of every analysed frame while an analysed
video is played back or stepped (the review result's stored :class:`inference.endo.masks.MaskTrack`, no
model run), the masks live mode has computed, and the controls (show/hide, opacity)."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QSlider, QWidget

from inference.endo.masks import BLOB_NAME, MaskFormatError, MaskTrack


class MaskMixin:
    """Needs ``self.view`` (FrameView), ``self.ctx`` and ``self.status_message``."""

    review_track: MaskTrack | None = None
    live_track: MaskTrack | None = None

    def _make_mask_controls(self) -> QWidget:
        w = QWidget()
        lay = QHBoxLayout(w)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        self.mask_box = QCheckBox("Mask")
        self.mask_box.setChecked(True)
        self.mask_box.setToolTip("Show the polyp mask the model drew on this frame (M)")
        self.mask_box.toggled.connect(lambda _on: self.show_frame(self.pos))
        self.mask_opacity = QSlider(Qt.Horizontal)
        self.mask_opacity.setRange(0, 100)
        self.mask_opacity.setValue(35)
        self.mask_opacity.setMinimumWidth(60)
        self.mask_opacity.setMaximumWidth(160)
        self.mask_opacity.setToolTip("Opacity of the mask's fill (its outline stays)")
        self.mask_opacity.valueChanged.connect(lambda v: self.view.set_mask_opacity(v / 100))
        self.mask_box.toggled.connect(self.mask_opacity.setEnabled)
        lab = QLabel("fill")
        lab.setObjectName("muted")
        for x in (self.mask_box, lab, self.mask_opacity):
            lay.addWidget(x)
        lay.addStretch(1)
        self.view.set_mask_opacity(0.35)
        return w

    def load_review_track(self, result) -> None:
        """The per-frame masks of a review result: carried by a fresh result, else read from the store."""
        self.review_track = None
        if result is None:
            return
        data = (result.blobs or {}).get(BLOB_NAME) if getattr(result, "blobs", None) else None
        if data is None and result.id is not None:
            data = self.ctx.store.result_blob(result.id, BLOB_NAME)
        if data is None:
            return
        try:
            self.review_track = MaskTrack.from_bytes(data)
        except (MaskFormatError, ValueError) as e:
            self.status_message.emit(f"the stored polyp masks of result #{result.id} cannot be read: {e}")

    def mask_at(self, i: int, near_live: bool) -> tuple[np.ndarray | None, str]:
        """(mask, where it comes from) for frame i; (None, "") when hidden or there is none."""
        if not self.mask_box.isChecked():
            return None, ""
        if near_live and self.live_last.get("mask") is not None:
            return self.live_last["mask"], "mask · live"
        for track, tag in ((self.review_track, "mask · review"), (self.live_track, "mask · live")):
            if track is None:
                continue
            m = track.mask(i)
            if m is not None:
                src = track.source_of(i)
                return m, tag + (f" · held from frame {src}" if src is not None and src != i else "")
        return None, ""

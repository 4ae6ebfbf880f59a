"""Chest X-ray viewer: one large radiograph with window/level, pan/zoom, invert, CLAHE, pixel readout and
ruler; the model's heatmap as an overlay toggled on the image (H) with its opacity and colour map, side
by side (original | overlay) or in three panels (original | heatmap | overlay) on demand (S); the anomaly
score widget and the clinical note with highlighted entities (``app.xray.note``).

Mouse: left-drag does what the tool buttons say (W/L: horizontal = width, vertical = level; Pan;
Ruler), wheel zooms about the cursor, right-drag zooms a box, double-click resets. Panels are
linked, so side by side they always show the same anatomy.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QFrame, QGridLayout, QHBoxLayout, QLabel,
                               QProgressBar, QPushButton, QSizePolicy, QSlider, QSplitter, QToolButton,
                               QVBoxLayout)

from app import theme
from app.widgets import user_state
from app.widgets.flow import FlowLayout
from app.widgets.keys import add_keys
from app.widgets.viewer_base import ViewerBase
from app.xray.note import ENTITY_SOURCE, NOTE_SOURCE, NoteMixin  # noqa: F401  (the sources, named here too)
from inference.xray.reader import apply_window, percentile_window
from inference.results import Result
from inference.xray import imaging

LAYOUTS = ("Single image", "Side by side", "Three panels")
BAND_COLOURS = {"low": theme.OK, "intermediate": theme.AMBER, "high": theme.WARN}


class _ImageBox(pg.ViewBox):
    """A ViewBox whose left-drag is window/level, pan or ruler, as the viewer's tool says."""

    wl_drag = Signal(float, float, bool)  # dx, dy (screen px), finished
    ruler_drag = Signal(QPointF, QPointF, bool)  # start, current (image coords), finished
    reset_requested = Signal()

    def __init__(self, viewer: "XrayViewer"):
        super().__init__(lockAspect=True, invertY=True, enableMenu=False)
        self.viewer = viewer
        self.setBackgroundColor("#000000")

    def mouseDragEvent(self, ev, axis=None):
        tool = self.viewer.tool
        if ev.button() == Qt.LeftButton and tool == "wl":
            ev.accept()
            d = ev.screenPos() - ev.lastScreenPos()
            self.wl_drag.emit(float(d.x()), float(d.y()), ev.isFinish())
            return
        if ev.button() == Qt.LeftButton and tool == "ruler":
            ev.accept()
            a = self.mapSceneToView(ev.buttonDownScenePos())
            b = self.mapSceneToView(ev.scenePos())
            self.ruler_drag.emit(a, b, ev.isFinish())
            return
        super().mouseDragEvent(ev, axis)

    def mouseDoubleClickEvent(self, ev):
        self.reset_requested.emit()
        ev.accept()


PNEUMONIA_ID = "xray-pneumonia"
PNEUMONIA_TITLE = "P(pneumonia) · Lightbox paediatric CXR model"
PNEUMONIA_HEAT_NOTE = ("Heatmap: where the network's pneumonia evidence lies (its 12 × 12 logit map, whose mean is "
                       "the decision), on a fixed scale: a normal film's map stays clear. It shows where the evidence "
                       "sits, not the outline of a consolidation. Population: paediatric 1–5 y, one centre "
                       "(Guangzhou); adults are outside what this model was trained on.")


class AnomalyWidget(QFrame):
    """Right-panel summary: fused score, band, threshold, and the three components as bars."""

    def __init__(self, parent=None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 6, 0, 0)
        self.title = QLabel("Anomaly score")
        self.title.setWordWrap(True)
        self.title.setObjectName("muted")
        self.score = QLabel("—")
        self.score.setObjectName("headline")
        self.band = QLabel("")
        self.band.setWordWrap(True)
        lay.addWidget(self.title)
        lay.addWidget(self.score)
        lay.addWidget(self.band)
        grid = QGridLayout()
        self.bars: dict[str, tuple[QProgressBar, QLabel]] = {}
        self.bar_labels: list[QLabel] = []
        rows = [("recon", "Recon σ ×0.4"), ("kl", "KL σ ×0.2"), ("vit", "ViT ×0.4")]
        for i, (k, label) in enumerate(rows):
            lab = QLabel(label)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(False)
            val = QLabel("—")
            grid.addWidget(lab, i, 0)
            grid.addWidget(bar, i, 1)
            grid.addWidget(val, i, 2)
            self.bars[k] = (bar, val)
            self.bar_labels.append(lab)
        lay.addLayout(grid)
        self.why = QLabel("")
        self.why.setWordWrap(True)
        self.why.setObjectName("muted")
        lay.addWidget(self.why)
        lay.addStretch(1)
        self.show_result(None)

    def _set_bars_visible(self, on: bool) -> None:
        for w in self.bar_labels + [w for pair in self.bars.values() for w in pair]:
            w.setVisible(on)

    def _show_pneumonia(self, r: Result) -> None:
        """Lightbox's pneumonia classifier: P(pneumonia), threshold, label; or the OOD message instead."""
        o = r.outputs
        self._set_bars_visible(False)
        self.title.setText(PNEUMONIA_TITLE)
        stamp = "" if r.clinical else " · <b style='color:#e5534b'>NOT A CLINICAL RESULT</b>"
        thr = float(o["threshold"])
        if not o.get("in_distribution", True) or o.get("p_pneumonia") is None:
            self.score.setText(f"<span style='color:{theme.AMBER}'>not assessed</span>")
            self.band.setText(f"<b style='color:{theme.AMBER}'>{o.get('ood_message') or 'outside what this model was trained on'}"
                              f"</b>. No pneumonia label and no heatmap.{stamp}")
            self.why.setText("The model was trained on paediatric (1–5 y) frontal chest radiographs from one centre; "
                             "it only answers for images like those.")
            return
        p = float(o["p_pneumonia"])
        pos = p >= thr
        col = theme.WARN if pos else theme.OK
        self.score.setText(f"<span style='color:{col}'>{p:.3f}</span>")
        site = "_site_point" in o
        self.band.setText(f"<b style='color:{col}'>{'PNEUMONIA' if pos else 'normal'}</b> · threshold {thr:.3f} "
                          f"({'<b>site operating point</b>' if site else 'the model’s, chosen on validation'}){stamp}")
        self.band.setToolTip(str(o.get("threshold_source") or ""))
        self.why.setText(PNEUMONIA_HEAT_NOTE)

    def show_result(self, r: Result | None, selected_model: str | None = None) -> None:
        if r is not None and r.model_id == PNEUMONIA_ID and "threshold" in r.outputs:
            self._show_pneumonia(r)
            return
        if r is None and selected_model == PNEUMONIA_ID:  # nothing yet: this model's panel, empty
            self._set_bars_visible(False)
            self.title.setText(PNEUMONIA_TITLE)
            self.score.setText("—")
            self.band.setText("No result for this image yet: press Analyse.")
            self.why.setText(PNEUMONIA_HEAT_NOTE)
            return
        self._set_bars_visible(True)
        self.title.setText("Anomaly score")
        if r is None or "anomaly_score" not in r.outputs:
            self.score.setText("—")
            self.band.setText("No result for this image yet: press Analyse.")
            for bar, val in self.bars.values():
                bar.setValue(0)
                val.setText("—")
            self.why.setText("")
            return
        o = r.outputs
        s, thr, band = float(o["anomaly_score"]), float(o["threshold"]), str(o["risk_band"])
        col = BAND_COLOURS.get(band, theme.TEXT)
        self.score.setText(f"<span style='color:{col}'>{s:.3f}</span>")
        flag = "FLAGGED (> threshold)" if o.get("flagged") else "below threshold"
        stamp = "" if r.clinical else " · <b style='color:#e5534b'>NOT A CLINICAL RESULT</b>"
        self.band.setText(f"Risk band <b style='color:{col}'>{band}</b> · threshold {thr:.3f} · {flag}{stamp}")
        vals = {"recon": float(o["recon_component"]), "kl": float(o["kl_component"]), "vit": float(o["vit_score"])}
        weights = {"recon": 0.4, "kl": 0.2, "vit": 0.4}
        for k, (bar, val) in self.bars.items():
            bar.setValue(int(round(vals[k] * 1000)))
            val.setText(f"{vals[k]:.3f} → {weights[k] * vals[k]:.3f}")
        top = max(vals, key=lambda k: weights[k] * vals[k])
        names = {"recon": "feature reconstruction error", "kl": "latent KL divergence", "vit": "ViT latent score"}
        self.why.setText(f"Largest share of the score: {names[top]}. Score = 0.4·σ(recon) + 0.2·σ(KL) + 0.4·ViT "
                         f"(raw recon {float(o['recon_error']):.4g}, KL {float(o['kl_divergence']):.4g}).")


class XrayViewer(NoteMixin, ViewerBase):
    modality = "xray"

    def __init__(self, ctx, parent=None):
        super().__init__(ctx, parent)
        self.tool = "wl"
        self.image: np.ndarray | None = None  # modality values
        self.header_display: np.ndarray | None = None
        self.heat: np.ndarray | None = None
        self.selected_model: str | None = None  # the results panel's model (what an empty panel announces)
        self.heat_fixed = False  # the heatmap is on the pneumonia model's fixed scale (not relative to its peak)
        self.center, self.width = 0.5, 1.0
        self.use_header_lut = True
        self.invert = False
        self.use_clahe = False
        self.spacing: list[float] | None = None
        self.rulers: list[tuple[pg.PlotDataItem, pg.TextItem]] = []
        self._live_ruler: tuple[pg.PlotDataItem, pg.TextItem] | None = None
        self.entities = []
        self._wl_timer = QTimer(self, singleShot=True, interval=15, timeout=self._render)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        outer.addLayout(self._make_toolbar())
        split = QSplitter(Qt.Vertical)
        split.setObjectName("xraySplit")
        split.setChildrenCollapsible(False)
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.setBackground("#000000")
        self.glw.setFocusPolicy(Qt.StrongFocus)
        self.boxes = [_ImageBox(self) for _ in range(3)]
        self.items = [pg.ImageItem(axisOrder="row-major") for _ in range(3)]
        self.labels = []
        for b, it, name in zip(self.boxes, self.items, ("Original", "Heatmap (relative)", "Overlay")):
            b.addItem(it)
            t = pg.TextItem(name, color="#c9d1d9", anchor=(0, 0))
            t.setParentItem(b)
            t.setPos(6, 4)
            self.labels.append(t)
            b.wl_drag.connect(self._on_wl_drag)
            b.ruler_drag.connect(self._on_ruler)
            b.reset_requested.connect(self.reset_view)
        for b in self.boxes[1:]:
            b.setXLink(self.boxes[0])
            b.setYLink(self.boxes[0])
        self.heat_layers = [pg.ImageItem(axisOrder="row-major") for _ in range(2)]  # over box 0 and box 2
        for b, layer in zip((self.boxes[0], self.boxes[2]), self.heat_layers):
            layer.setZValue(5)
            b.addItem(layer)
        self.glw.scene().sigMouseMoved.connect(self._on_mouse)
        split.addWidget(self.glw)
        self.note_box = self._make_note_box()
        self.note_box.hide()  # on demand (Note, N), and whenever the study has a note
        split.addWidget(self.note_box)
        split.setStretchFactor(0, 5)
        split.setStretchFactor(1, 1)
        outer.addWidget(split, 1)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(4, 0, 4, 2)
        self.readout = QLabel("")
        self.readout.setObjectName("muted")
        self.readout.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)  # never widens the viewer
        self.wl_label = QLabel("")
        self.wl_label.setObjectName("muted")
        bottom.addWidget(self.readout, 1)
        bottom.addWidget(self.wl_label)
        outer.addLayout(bottom)
        self.attribution = QLabel("")  # an image's licence credit (the demo radiograph): the whole width
        self.attribution.setObjectName("muted")
        self.attribution.setWordWrap(True)
        self.attribution.setContentsMargins(4, 0, 4, 2)
        self.attribution.hide()
        outer.addWidget(self.attribution)
        self.anomaly = AnomalyWidget()
        # single keys while the focus is in the viewer (a text field keeps its typing keys)
        add_keys(self, (("I", "Invert grey scale", lambda: self.invert_btn.toggle()),
                        ("C", "CLAHE on / off", lambda: self.clahe_btn.toggle()),
                        ("R", "Reset window, zoom, invert, CLAHE", self.reset_view),
                        ("W", "Tool: window / level drag", lambda: self.set_tool("wl")),
                        ("P", "Tool: pan", lambda: self.set_tool("pan")),
                        ("M", "Tool: ruler (measure)", lambda: self.set_tool("ruler")),
                        ("H", "Heatmap overlay on / off", lambda: self.heat_btn.toggle()),
                        ("S", "Layout: single image → side by side → three panels",
                         lambda: self.mode.setCurrentIndex((self.mode.currentIndex() + 1) % len(LAYOUTS))),
                        ("N", "Clinical note on / off", lambda: self.note_btn.toggle())))
        self._layout_panels()

    # -- construction -----------------------------------------------------------------------------
    def _make_toolbar(self):
        row = FlowLayout(spacing=4)
        self.tool_group = QButtonGroup(self)
        for key, text, tip in (("wl", "W/L", "Left-drag: horizontal = window width, vertical = level (W)"),
                               ("pan", "Pan", "Left-drag pans; wheel zooms (P)"),
                               ("ruler", "Ruler", "Left-drag measures a distance, mm when the header gives spacing (M)")):
            b = QToolButton(text=text, checkable=True, toolTip=tip)
            b.setChecked(key == "wl")
            b.clicked.connect(lambda _=False, k=key: self.set_tool(k))
            self.tool_group.addButton(b)
            row.addWidget(b)
        self.preset = QComboBox(toolTip="Window presets (header windows first)")
        self.preset.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.preset.activated.connect(self._preset_chosen)
        row.addWidget(self.preset)
        self.invert_btn = QToolButton(text="Invert", checkable=True, toolTip="Invert grey scale (I)")
        self.invert_btn.toggled.connect(self._set_invert)
        self.clahe_btn = QToolButton(text="CLAHE", checkable=True, toolTip="Contrast-limited adaptive histogram equalisation (C)")
        self.clahe_btn.toggled.connect(self._set_clahe)
        reset = QPushButton("Reset", toolTip="Reset window, zoom, invert, CLAHE (R, or double-click the image)")
        reset.clicked.connect(self.reset_view)
        clear = QPushButton("Clear rulers", toolTip="Remove all rulers")
        clear.clicked.connect(self.clear_rulers)
        for w in (self.invert_btn, self.clahe_btn, reset, clear):
            row.addWidget(w)
        self.heat_btn = QToolButton(text="Heatmap", checkable=True,
                                    toolTip="The model's heatmap over the image (H); it appears after Analyse")
        self.heat_btn.setChecked(user_state.flag("xray/heatmap", True))
        self.heat_btn.toggled.connect(self._heat_toggled)
        self.mode = QComboBox(toolTip="Single image (heatmap as overlay), side by side (original | overlay), or "
                                      "three panels (original | heatmap | overlay) (S)")
        self.mode.addItems(list(LAYOUTS))
        self.mode.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.mode.currentIndexChanged.connect(self._layout_panels)
        self.cmap = QComboBox(toolTip="Heatmap colour map")
        self.cmap.addItems(list(imaging.COLORMAPS))
        self.cmap.setSizeAdjustPolicy(QComboBox.AdjustToContents)
        self.cmap.currentIndexChanged.connect(self._render_heat)
        self.opacity = QSlider(Qt.Horizontal, minimum=0, maximum=100, value=65, toolTip="Heatmap opacity")
        self.opacity.setFixedWidth(90)
        self.opacity_label = QLabel("65 %")
        self.opacity.valueChanged.connect(lambda v: self.opacity_label.setText(f"{v} %"))
        self.opacity.valueChanged.connect(self._layout_labels)
        self.note_btn = QToolButton(text="Note", checkable=True,
                                    toolTip="Clinical note / symptoms, with entities found and stored (N)")
        self.note_btn.toggled.connect(lambda on: self.note_box.setVisible(on))
        for w in (self.heat_btn, self.mode, self.cmap, QLabel("Opacity"), self.opacity, self.opacity_label,
                  self.note_btn):
            row.addWidget(w)
        box = QVBoxLayout()
        box.setContentsMargins(4, 4, 4, 0)
        box.addLayout(row)
        return box

    # -- contract -----------------------------------------------------------------------------------
    def set_study(self, study, study_id):
        super().set_study(study, study_id)
        self.image = np.asarray(study.data["image"], np.float32)
        self.header_display = study.data.get("display")
        md = study.metadata
        self.spacing = md.get("pixel_spacing_mm")
        self.heat = None
        self.clear_rulers()
        self._fill_presets()
        self.reset_view()
        self._load_note()
        if self.note.toPlainText().strip():
            self.note_btn.setChecked(True)
        spacing = (f"{self.spacing[0]:.3f} × {self.spacing[1]:.3f} mm ({md.get('spacing_source')})"
                   if self.spacing else "no pixel spacing")
        from inference.xray.demo import attribution_for

        credit = attribution_for(study)
        self.attribution.setText(credit or "")
        self.attribution.setVisible(bool(credit))
        self._layout_panels()
        self.glw.setFocus()  # the keys (H, S, I, W …) work at once
        self.status_message.emit(f"{md.get('columns')} × {md.get('rows')} px · {md.get('bits_stored')} bit · "
                                 f"{md.get('photometric')} · {spacing}")

    def set_selected_model(self, model_id: str | None) -> None:
        self.selected_model = model_id

    def set_result(self, result):
        super().set_result(result)
        self.anomaly.show_result(result, self.selected_model)
        self.heat = None
        if result is not None and self.image is not None and "_gradcam_grid" in result.outputs:
            from inference.xray.pipeline import heat_is_fixed, heatmap_from_result

            self.heat = heatmap_from_result(result, self.image.shape[:2])
            self.heat_fixed = heat_is_fixed(result)
        self._layout_panels()

    def result_widget(self):
        return self.anomaly

    def report_extra(self) -> dict:
        return {"note": self.note.toPlainText(), "entities": [e.as_dict() for e in self.entities],
                "window": [self.center, self.width], "invert": self.invert, "clahe": self.use_clahe,
                "colormap": self.cmap.currentText(), "opacity": self.opacity.value() / 100.0}

    # -- display ------------------------------------------------------------------------------------
    def _fill_presets(self):
        self.preset.clear()
        md = self.study.metadata if self.study else {}
        self._presets = []
        voi = md.get("voi_source", "")
        self._presets.append(("header", f"Header: {voi}" if voi else "Header default", None))
        for w in md.get("windows", []):
            self._presets.append(("window", f"{w['name']}  (C {w['center']:g} / W {w['width']:g})",
                                  (w["center"], w["width"])))
        img = self.image
        for label, lo, hi in (("Auto 0.5–99.5 %", 0.5, 99.5), ("Lung detail (1–60 %)", 1, 60),
                              ("Bone / mediastinum (40–99.8 %)", 40, 99.8)):
            self._presets.append(("window", label, percentile_window(img, lo, hi)))
        lo, hi = float(img.min()), float(img.max())
        self._presets.append(("window", "Full range", ((lo + hi) / 2, max(hi - lo, 1.0))))
        for _, label, _ in self._presets:
            self.preset.addItem(label)

    def _preset_chosen(self, i: int):
        kind, _, cw = self._presets[i]
        if kind == "header":
            c, w = (self.study.metadata.get("window") or percentile_window(self.image))
            self.center, self.width, self.use_header_lut = float(c), float(w), True
        else:
            self.center, self.width = float(cw[0]), float(cw[1])
            self.use_header_lut = False
        self._render()

    def set_tool(self, tool: str):
        self.tool = tool
        for b in self.tool_group.buttons():
            b.setChecked(b.text().lower().replace("/", "") == {"wl": "wl", "pan": "pan", "ruler": "ruler"}[tool])
        for box in self.boxes:
            box.setMouseEnabled(True, True)

    def _set_invert(self, on: bool):
        self.invert = on
        self._render()

    def _set_clahe(self, on: bool):
        self.use_clahe = on
        self._render()

    def reset_view(self):
        if self.image is None:
            return
        c, w = self.study.metadata.get("window") or percentile_window(self.image)
        self.center, self.width, self.use_header_lut = float(c), float(w), True
        for b, on in ((self.invert_btn, False), (self.clahe_btn, False)):
            b.blockSignals(True)
            b.setChecked(on)
            b.blockSignals(False)
        self.invert, self.use_clahe = False, False
        self.preset.setCurrentIndex(0)
        self._render()
        self.fit()

    def windowed(self) -> np.ndarray:
        """The current greyscale display (uint8): header VOI or the user's window, MONOCHROME1 and
        the user's invert applied, CLAHE if on."""
        md = self.study.metadata
        if self.use_header_lut and self.header_display is not None:
            disp = self.header_display
            if self.invert:
                disp = 255 - disp
        else:
            inv = bool(md.get("invert")) ^ self.invert
            disp = apply_window(self.image, self.center, self.width, "LINEAR", inv)
        if self.use_clahe:
            disp = imaging.clahe(disp)
        return disp

    def _render(self):
        """The greyscale display (every W/L step); the heatmap layers follow only when they change."""
        if self.image is None:
            return
        disp = self.windowed()
        self.items[0].setImage(disp, levels=(0, 255), autoLevels=False)
        self.items[2].setImage(disp, levels=(0, 255), autoLevels=False)
        self._render_heat()
        lut = " (header VOI)" if self.use_header_lut else ""
        self.wl_label.setText(f"W {self.width:.0f}  L {self.center:.0f}{lut}{'  · inverted' if self.invert else ''}"
                              f"{'  · CLAHE' if self.use_clahe else ''}")

    def _render_heat(self):
        """The heatmap as an RGBA layer over the image: colour map, and an alpha that rises to the opacity at
        heat 1 - from 0 at heat 0 for the pneumonia model's fixed-scale map (a normal film stays clear), from
        the map's 30th percentile for a map relative to its own peak (MedSight)."""
        key = (id(self.heat), self.cmap.currentText(), self.opacity.value())
        if self.heat is None or key == getattr(self, "_heat_key", None):
            return
        self._heat_key = key
        rgb = imaging.colorize(self.heat, self.cmap.currentText())
        self.items[1].setImage(rgb, levels=(0, 255), autoLevels=False)
        floor = None if getattr(self, "heat_fixed", False) else 30.0
        alpha = (imaging.alpha_map(self.heat, self.opacity.value() / 100.0, floor) * 255 + 0.5).astype(np.uint8)
        rgba = np.concatenate([rgb, alpha[:, :, None]], axis=2)
        for layer in self.heat_layers:
            layer.setImage(rgba, levels=(0, 255), autoLevels=False)

    def _layout_labels(self):
        self._render_heat()
        if self.heat_layers[0].isVisible():
            self.labels[0].setText(f"heatmap overlay, opacity {self.opacity.value()} %")

    def heat_shown(self) -> bool:
        """The heatmap is drawn over the image now (single image with Heatmap on, or an overlay panel)."""
        return self.heat is not None and (self.heat_btn.isChecked() or self.mode.currentIndex() > 0)

    def _heat_toggled(self, on: bool):
        user_state.set_flag("xray/heatmap", on)
        if on and self.heat is None and self.study is not None:
            self.status_message.emit("No heatmap yet: press Analyse (none is drawn for an image outside what "
                                     "the model was trained on)")
        self._layout_panels()

    def _layout_panels(self):
        mode = self.mode.currentIndex() if self.heat is not None else 0
        for b in self.boxes:
            if b in self.glw.ci.items:
                self.glw.removeItem(b)
        show = ([0], [0, 2], [0, 1, 2])[mode]
        for col, i in enumerate(show):
            self.glw.addItem(self.boxes[i], row=0, col=col)
        single_heat = self.heat is not None and mode == 0 and self.heat_btn.isChecked()
        self.heat_layers[0].setVisible(single_heat)
        self.heat_layers[1].setVisible(self.heat is not None)
        op = f"heatmap overlay, opacity {self.opacity.value()} %"
        self.labels[0].setText(op if single_heat else ("Original" if mode else ""))
        self.labels[2].setText("Overlay")
        self._render()
        QTimer.singleShot(0, self.fit)

    def fit(self):
        """Show the whole image in the panels."""
        if self.image is not None:
            h, w = self.image.shape[:2]
            self.boxes[0].setRange(xRange=(0, w), yRange=(0, h), padding=0.02)

    def showEvent(self, ev):
        super().showEvent(ev)
        QTimer.singleShot(0, self.fit)

    # -- interaction -----------------------------------------------------------------------------------
    def _on_wl_drag(self, dx: float, dy: float, finished: bool):
        if self.image is None:
            return
        span = max(float(self.study.metadata.get("value_range", [0, 1])[1])
                   - float(self.study.metadata.get("value_range", [0, 1])[0]), 1.0)
        if self.use_header_lut:
            self.use_header_lut = False
        self.width = float(np.clip(self.width + dx * span / 400.0, 1.0, 4 * span))
        self.center = float(self.center - dy * span / 400.0)  # drag up = brighter level (lower centre)
        self._wl_timer.start()

    def _length(self, a: QPointF, b: QPointF) -> str:
        dx, dy = b.x() - a.x(), b.y() - a.y()
        if self.spacing:
            mm = float(np.hypot(dx * self.spacing[1], dy * self.spacing[0]))
            return f"{mm:.1f} mm" if mm < 100 else f"{mm / 10:.1f} cm"
        return f"{np.hypot(dx, dy):.0f} px"

    def _on_ruler(self, a: QPointF, b: QPointF, finished: bool):
        box = self.sender() if isinstance(self.sender(), _ImageBox) else self.boxes[0]
        if self._live_ruler is None:
            line = pg.PlotDataItem(pen=pg.mkPen("#ffd33d", width=2), symbol="o", symbolSize=5,
                                   symbolBrush="#ffd33d")
            text = pg.TextItem("", color="#ffd33d", anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 160))
            box.addItem(line)
            box.addItem(text)
            self._live_ruler = (line, text)
        line, text = self._live_ruler
        line.setData([a.x(), b.x()], [a.y(), b.y()])
        text.setText(self._length(a, b))
        text.setPos(b.x(), b.y())
        if finished:
            self.rulers.append(self._live_ruler)
            self._live_ruler = None
            src = self.study.metadata.get("spacing_source", "") if self.study else ""
            why = (" (no pixel spacing in the header)" if not self.spacing else
                   " (Imager Pixel Spacing: measured at the detector, anatomy is ~10 % smaller)"
                   if "detector" in src else f" ({src})")
            self.status_message.emit(f"Distance: {self._length(a, b)}{why}")

    def measure(self, a: tuple[float, float], b: tuple[float, float]) -> str:
        """Add a ruler from a to b (image x, y) and return its label (used by tests and scripting)."""
        self._on_ruler(QPointF(*a), QPointF(*b), False)
        self._on_ruler(QPointF(*a), QPointF(*b), True)
        return self.rulers[-1][1].toPlainText()

    def clear_rulers(self):
        for line, text in self.rulers:
            for it in (line, text):
                vb = it.getViewBox()
                if vb is not None:
                    vb.removeItem(it)
        self.rulers = []

    def _on_mouse(self, pos):
        if self.image is None:
            return
        for i, b in enumerate(self.boxes):
            if b.scene() is None or not b.sceneBoundingRect().contains(pos):
                continue
            p = b.mapSceneToView(pos)
            x, y = int(np.floor(p.x())), int(np.floor(p.y()))
            self.readout.setText(self.pixel_info(x, y))
            return

    def pixel_info(self, x: int, y: int) -> str:
        h, w = self.image.shape[:2]
        if not (0 <= x < w and 0 <= y < h):
            return ""
        v = float(self.image[y, x])
        txt = f"x {x}  y {y}  ·  value {v:.6g}"
        if self.study.metadata.get("rescale_type"):
            txt += f" {self.study.metadata['rescale_type']}"
        if self.spacing:
            txt += f"  ·  {x * self.spacing[1]:.1f}, {y * self.spacing[0]:.1f} mm"
        if self.heat is not None:
            txt += f"  ·  heatmap {float(self.heat[y, x]):.2f}"
        return txt

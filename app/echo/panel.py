"""The echo viewer's side panel: view gate, crop, overlays, EF analysis options and the practice box."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout,
                               QLabel, QPushButton, QSlider, QTabWidget, QVBoxLayout, QWidget)

from app.echo.practice_panel import EstimateEdit
from inference.echo.preprocess import CATEGORIES

if TYPE_CHECKING:
    from app.echo.viewer import EchoViewer


class EchoPanel(QWidget):
    """Right-dock panel: view gate, crop, overlay, blinded practice."""

    def __init__(self, viewer: "EchoViewer"):
        super().__init__()
        self.v = viewer
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        # every line fits a 300-px panel (a 1366-px screen): short labels, the detail in tooltips
        gate = QGroupBox("View gate: apical 4-chamber only")
        gate.setToolTip("EchoNet-Dynamic was trained on apical 4-chamber views only")
        g = QVBoxLayout(gate)
        self.gate_label = QLabel("")
        self.gate_label.setWordWrap(True)
        g.addWidget(self.gate_label)
        row = QHBoxLayout()
        self.gate_yes = QPushButton("Apical 4-chamber")
        self.gate_no = QPushButton("Not A4C")
        row.addWidget(self.gate_yes)
        row.addWidget(self.gate_no)
        g.addLayout(row)
        lay.addWidget(gate)
        tabs = QTabWidget()
        lay.addWidget(tabs)

        # practice
        pw = QWidget()
        pl = QVBoxLayout(pw)
        row = QHBoxLayout()
        self.trainee = QComboBox()
        self.trainee.setToolTip("Trainee profile (local, no password)")
        self.new_trainee = QPushButton("New…")
        row.addWidget(QLabel("Trainee"))
        row.addWidget(self.trainee, 1)
        row.addWidget(self.new_trainee)
        pl.addLayout(row)
        self.practice = QCheckBox("Blinded practice")
        self.practice.setToolTip("Blinded practice: the AI EF, the expert EF and the LV overlay stay hidden until your "
                                 "estimate is locked")
        pl.addWidget(self.practice)
        # a timed session through a teaching set (app.echo.session): shown while one runs
        self.session_box = QGroupBox("Practice session")
        sb = QVBoxLayout(self.session_box)
        self.session_label = QLabel("")
        self.session_label.setWordWrap(True)
        sb.addWidget(self.session_label)
        row = QHBoxLayout()
        self.next_loop = QPushButton("Next loop ▸")
        self.next_loop.setObjectName("primary")
        self.end_session = QPushButton("End session")
        row.addWidget(self.next_loop)
        row.addWidget(self.end_session)
        sb.addLayout(row)
        self.session_box.hide()
        pl.addWidget(self.session_box)
        form = QFormLayout()
        # no default number: a pre-filled value would anchor the trainee's estimate
        self.estimate = EstimateEdit()
        self.category = QComboBox()
        self.category.addItem("(no category)", "")
        for c in CATEGORIES:
            self.category.addItem(c, c)
        form.addRow("Visual EF estimate", self.estimate)
        form.addRow("Category", self.category)
        pl.addLayout(form)
        self.lock = QPushButton("Lock estimate")
        self.lock.setObjectName("primary")
        pl.addWidget(self.lock)
        self.reveal = QLabel("")
        self.reveal.setWordWrap(True)
        self.reveal.setTextFormat(Qt.RichText)
        pl.addWidget(self.reveal)
        grid = QGridLayout()
        self.history_btn = QPushButton("Progress…")
        self.set_btn = QCheckBox("In practice set")
        self.set_btn.setToolTip("Instructor: mark this study as part of the teaching set")
        self.set_table_btn = QPushButton("Practice set…")
        self.import_set_btn = QPushButton("Import set…")
        self.import_set_btn.setToolTip("Import a teaching set: a folder of loops + a CSV of the expert's EF "
                                       "(FileList.csv or file,ef)")
        self.session_btn = QPushButton("Session…")
        self.session_btn.setToolTip("Practice session: N random loops of a teaching set, one after another, timed")
        grid.addWidget(self.session_btn, 0, 0)
        grid.addWidget(self.history_btn, 0, 1)
        grid.addWidget(self.set_table_btn, 1, 0)
        grid.addWidget(self.import_set_btn, 1, 1)
        grid.addWidget(self.set_btn, 2, 0, 1, 2)
        pl.addLayout(grid)
        pl.addStretch(1)
        tabs.addTab(pw, "Practice")

        # view gate + image
        gw = QWidget()
        gl = QVBoxLayout(gw)
        crop = QGroupBox("Sector crop (model input)")
        c = QVBoxLayout(crop)
        self.crop_label = QLabel("")
        self.crop_label.setWordWrap(True)
        c.addWidget(self.crop_label)
        row = QHBoxLayout()
        self.show_box = QCheckBox("Show crop box")
        self.show_box.setChecked(True)
        self.reset_crop = QPushButton("Auto crop")
        row.addWidget(self.show_box)
        row.addWidget(self.reset_crop)
        c.addLayout(row)
        gl.addWidget(crop)
        ov = QGroupBox("LV overlay")
        o = QHBoxLayout(ov)
        self.show_mask = QCheckBox("LV mask")
        self.show_mask.setChecked(True)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(35)
        o.addWidget(self.show_mask)
        o.addWidget(QLabel("opacity"))
        o.addWidget(self.opacity, 1)
        gl.addWidget(ov)
        an = QGroupBox("EF analysis (EchoNet-Dynamic)")
        a = QVBoxLayout(an)
        self.all_clips = QCheckBox("All clips (the reference's way)")
        self.all_clips.setToolTip("Whole-video EF from every 32-frame clip (the reference's test-time evaluation). "
                                  "Unticked, a CPU averages the beat clips plus a few evenly spaced ones and says "
                                  "'k of n clips'.")
        self.clips_label = QLabel("")
        self.clips_label.setObjectName("muted")
        self.clips_label.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(QLabel("Beat rule"))
        self.beat_rule = QComboBox()
        self.beat_rule.addItem("Reference (find_peaks, clip from ES − 32)", "reference")
        self.beat_rule.addItem("Lightbox alternative (smoothed, centred clip)", "lightbox")
        self.beat_rule.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.beat_rule.setMinimumContentsLength(12)
        self.beat_rule.currentTextChanged.connect(self.beat_rule.setToolTip)
        row.addWidget(self.beat_rule, 1)
        a.addWidget(self.all_clips)
        a.addWidget(self.clips_label)
        a.addLayout(row)
        gl.addWidget(an)
        gl.addStretch(1)
        tabs.addTab(gw, "Input && EF")
        self.tabs = tabs



"""The ECG result panel: the model's outputs in a table and the cumulative AF-risk curve."""
from __future__ import annotations


import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHeaderView, QLabel, QSizePolicy, QTableWidgetItem, QVBoxLayout, QWidget

from app.widgets.results import FitTable
from inference.results import Result


class EcgResultWidget(QWidget):
    """The rhythm model's result; the four ECG2AF outputs as a table and the AF risk with its cumulative-
    incidence curve over 5 years (table and curve only while there is an ECG2AF result to show)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.rhythm = QLabel("")
        self.rhythm.setWordWrap(True)
        self.rhythm.setTextFormat(Qt.RichText)
        self.rhythm.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.rhythm)
        self.title = QLabel("ECG2AF")
        self.title.setStyleSheet("font-weight: bold;")
        lay.addWidget(self.title)
        self.table = FitTable(0, 2)
        self.table.setHorizontalHeaderLabels(["ECG2AF output", "Value"])
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        lay.addWidget(self.table)
        self.plot = pg.PlotWidget(background="#181c20")
        self.plot.setMinimumHeight(170)
        self.plot.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        pi = self.plot.getPlotItem()
        pi.setLabel("bottom", "years after this ECG")
        pi.setLabel("left", "cumulative AF risk (%)")
        pi.showGrid(x=True, y=True, alpha=0.25)
        pi.setMenuEnabled(False)
        pi.hideButtons()
        self.plot.setMouseEnabled(x=False, y=False)
        self.curve = pg.PlotCurveItem(pen=pg.mkPen("#e5534b", width=2), stepMode=None)
        self.marker = pg.ScatterPlotItem(size=9, brush=pg.mkBrush("#e5534b"), pen=None)
        self.marker_text = pg.TextItem("", color="#d5d9de", anchor=(1, 1))
        for it in (self.curve, self.marker, self.marker_text):
            pi.addItem(it)
        pi.setXRange(0, 5.05, padding=0)
        pi.setYRange(0, 10, padding=0)
        lay.addWidget(self.plot, 1)
        self.hint = QLabel("")
        self.hint.setObjectName("muted")
        self.hint.setWordWrap(True)
        lay.addWidget(self.hint)
        lay.addStretch(0)  # without the curve, the texts stay together at the top
        self.show_result(None)

    @staticmethod
    def rhythm_html(result: Result) -> str:
        from app.ecg.rhythm_ui import leads_text
        from inference.ecg.rhythm import COLOURS, LABELS

        o = result.outputs
        lines = [f"<b>Rhythm (Lightbox model, {leads_text(o)})</b>",
                 f"<span style='font-size:14pt; color:{COLOURS.get(o.get('rhythm'), '#ddd')}'><b>"
                 f"{o.get('rhythm_label')}</b></span> {100 * (o.get('probability') or 0):.0f} %"]
        rows = []
        for c, name in LABELS.items():
            p = float(o.get(f"p_{c}") or 0.0)
            w = max(1, int(round(120 * p)))
            rows.append(f"<tr><td>{name}</td><td><span style='background:{COLOURS[c]}'>{'&nbsp;' * max(1, w // 6)}"
                        f"</span> {100 * p:.1f} %</td></tr>")
        lines.append("<table cellspacing='2'>" + "".join(rows) + "</table>")
        if (o.get("windows") or 0) > 1:
            wins = o.get("_windows") or []
            n = {c: sum(1 for w in wins if w.get("label") == c) for c in LABELS}
            counts = " · ".join(f"{LABELS[c].split()[0].lower()} {k}" for c, k in n.items() if k)
            ect = (f"; {o['ectopic_windows']} called other by the model hold only isolated premature beats (shown "
                   "normal)" if o.get("ectopic_windows") else "")
            lines.append(f"{o['windows']} windows over {o.get('duration_s', 0) / 60:.1f} min ({counts}{ect}); AF in "
                         f"{100 * (o.get('af_burden') or 0):.0f} % of the time (band over the tracing).")
        if not result.clinical:
            lines.append("<span style='color:#e5534b'><b>NOT A CLINICAL RESULT</b></span> — Lightbox's own research "
                         "model (trained on PhysioNet/CinC 2017 single-lead recordings); see its model card.")
        notes = [n for n in result.notes if "outside what it was trained on" in n or "shorter than any" in n]
        if notes:
            lines.append("<span style='color:#e8a317'>" + " ".join(notes) + "</span>")
        return "<br>".join(lines)

    def show_rhythm(self, result: Result | None) -> None:
        self.rhythm.setText(self.rhythm_html(result) if result is not None else "")
        self.rhythm.setVisible(result is not None)

    @staticmethod
    def rows(outputs: dict) -> list[tuple[str, str]]:
        from inference.ecg.ecg2af import result_rows

        return result_rows(outputs)

    def show_result(self, result: Result | None) -> None:
        from inference.ecg.ecg2af_files import is_ecg2af

        shown = result is not None and is_ecg2af(result.model_id)
        for w in (self.title, self.table, self.plot):  # no empty table or axes while there is nothing to show
            w.setVisible(shown)
        if not shown:
            self.table.setRowCount(0)
            self.curve.setData([], [])
            self.marker.setData([], [])
            self.marker_text.setText("")
            self.hint.setText("Run ECG2AF (Analyse) for future AF risk, sex, age and AF-in-read. "
                              "Heart rate and R peaks need no model and are shown on the tracing.")
            return
        o = result.outputs
        rows = self.rows(o)
        self.table.setRowCount(len(rows))
        for i, (k, v) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(k))
            self.table.setItem(i, 1, QTableWidgetItem(v))  # the stamp and hint say when it is not clinical
        self.table.fit()
        years = np.concatenate([[0.0], np.asarray(o["survival_days"], dtype=float) / 365.0])
        risk = np.concatenate([[0.0], 100 * (1 - np.asarray(o["af_free_survival"], dtype=float))])
        self.curve.setData(years, risk)
        self.marker.setData([years[-1]], [risk[-1]])
        self.marker_text.setText(f"{risk[-1]:.1f} % at 5 y")
        self.marker_text.setAnchor((1, 0) if risk[-1] > 50 else (1, 1))
        self.marker_text.setPos(years[-1], risk[-1])
        self.plot.getPlotItem().setYRange(0, max(10.0, min(100.0, risk[-1] * 1.2)), padding=0)
        self.plot.getPlotItem().setXRange(0, 5.05, padding=0)
        stamp = "" if result.clinical else "NOT A CLINICAL RESULT — non-official weights. "
        self.hint.setText(stamp + "Cumulative incident-AF risk = 1 − AF-free survival from the survival-curve head "
                                  "(25 intervals over 5 years). "
                          + " ".join(n for n in result.notes if n.startswith("Input:")))



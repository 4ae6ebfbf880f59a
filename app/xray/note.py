"""The X-ray viewer's clinical note: a free-text note under the image (shown on demand, and whenever the
study has one), its diseases, symptoms, medications and anatomy found offline and highlighted (negated
ones struck through), note and entities stored with the study as findings."""
from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QTextEdit, QVBoxLayout, QWidget

from inference.xray.entities import COLORS, extract, summary

NOTE_SOURCE = "symptoms-note"
ENTITY_SOURCE = "symptoms-entity"


class NoteMixin:
    """Expects the viewer's ``ctx``, ``study_id`` and ``status_message``."""

    def _make_note_box(self):
        w = QWidget()
        lay = QVBoxLayout(w)
        lay.setContentsMargins(4, 2, 4, 2)
        head = QHBoxLayout()
        head.addWidget(QLabel("Clinical note / symptoms"))
        legend = " ".join(f"<span style='color:{c}'>■ {k}</span>" for k, c in COLORS.items())
        head.addWidget(QLabel(legend + " <span style='color:#8b949e'>· struck through = negated</span>"))
        head.addStretch(1)
        self.extract_btn = QPushButton("Extract entities", toolTip="Find diseases, symptoms, medications and "
                                                                   "anatomy (offline) and save them with the study")
        self.extract_btn.clicked.connect(self.extract_entities)
        head.addWidget(self.extract_btn)
        lay.addLayout(head)
        self.note = QPlainTextEdit()
        self.note.setPlaceholderText("e.g. 58-year-old with productive cough and fever for 5 days, denies hemoptysis, "
                                     "no chest pain. On salbutamol.")
        self.note.setMaximumHeight(110)
        lay.addWidget(self.note)
        self.entity_summary = QLabel("")
        self.entity_summary.setWordWrap(True)
        self.entity_summary.setTextFormat(Qt.RichText)
        lay.addWidget(self.entity_summary)
        return w

    # -- clinical note ---------------------------------------------------------------------------------------
    def _load_note(self):
        self.entities = []
        self.note.blockSignals(True)
        self.note.setPlainText("")
        self.note.blockSignals(False)
        self.entity_summary.setText("")
        if self.study_id is None:
            return
        for f in self.ctx.store.findings(self.study_id):
            if f.get("source") == NOTE_SOURCE:
                self.note.setPlainText(f.get("note") or "")
        if self.note.toPlainText().strip():
            self.entities = extract(self.note.toPlainText())
            self._highlight()

    def extract_entities(self):
        text = self.note.toPlainText()
        self.entities = extract(text)
        self._highlight()
        if self.study_id is not None:
            store = self.ctx.store
            for f in store.findings(self.study_id):
                if f.get("source") in (NOTE_SOURCE, ENTITY_SOURCE):
                    store.delete_finding(f["id"])
            store.add_finding(self.study_id, label="clinical note", source=NOTE_SOURCE, note=text, status="note")
            for e in self.entities:
                store.add_finding(self.study_id, label=e.canonical, source=ENTITY_SOURCE,
                                  note=json.dumps(e.as_dict()), status=e.status)
        self.status_message.emit(f"{len(self.entities)} entities found and saved with the study")

    def _highlight(self):
        sels = []
        for e in self.entities:
            cur = QTextCursor(self.note.document())
            cur.setPosition(e.start)
            cur.setPosition(e.end, QTextCursor.KeepAnchor)
            fmt = QTextCharFormat()
            fmt.setForeground(QColor(COLORS.get(e.category, "#888888")))
            fmt.setFontWeight(700)
            if e.negated:
                fmt.setFontStrikeOut(True)
            else:
                fmt.setBackground(QColor(COLORS.get(e.category, "#888888")).darker(350))
            sel = QTextEdit.ExtraSelection()
            sel.cursor, sel.format = cur, fmt
            sels.append(sel)
        self.note.setExtraSelections(sels)
        parts = []
        for cat, by in summary(self.entities).items():
            col = COLORS.get(cat, "#888")
            bits = []
            for status, names in by.items():
                shown = ", ".join(names)
                bits.append(f"<s>{shown}</s>" if status == "negated" else
                            (shown if status == "present" else f"{shown} <i>({status})</i>"))
            parts.append(f"<b style='color:{col}'>{cat}</b>: " + "; ".join(bits))
        self.entity_summary.setText(" · ".join(parts) if parts else
                                    ("<i>no entities found</i>" if self.note.toPlainText().strip() else ""))

"""File > Open as…: read a file (or folder) as a modality the user picks, whatever detection would say;
and the question the app asks when detection cannot tell (an image that is neither grey like a
radiograph nor coloured like mucosa: :class:`inference.detect.AmbiguousModality`)."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (QButtonGroup, QDialog, QDialogButtonBox, QLabel, QRadioButton, QVBoxLayout,
                               QWidget)

from inference.modalities import TITLES

# (modality, reader options, label) a folder can be opened as
FOLDER_CHOICES = (
    ("endo", {"folder_as": "set"}, "Endoscopy — a set of still images (each analysed on its own)"),
    ("endo", {"folder_as": "sequence"}, "Endoscopy — the frames of one video (played, findings over time)"),
)


def choices_for(path: str | Path, candidates: list[tuple[str, float]] | None = None) -> list[tuple[str, dict, str]]:
    """What a file can be opened as: detection's candidates (with how sure it was) when it could not
    tell; otherwise (File > Open as…) every modality whose reader takes the extension, then the rest."""
    from inference.detect import all_extensions

    p = Path(path)
    if p.is_dir():
        return list(FOLDER_CHOICES)
    ext = p.suffix.lower()
    out: list[tuple[str, dict, str]] = []
    seen = set()
    for m, s in candidates or []:
        out.append((m, {}, f"{TITLES.get(m, m)}  (content score {s:.2f})"))
        seen.add(m)
    if candidates:
        return out
    for m, exts in all_extensions().items():
        if m not in seen and ext in exts:
            out.append((m, {}, TITLES.get(m, m)))
            seen.add(m)
    for m in TITLES:  # any other modality: its reader gives a clear refusal if the file is not one
        if m not in seen:
            out.append((m, {}, f"{TITLES[m]}  (does not usually read {ext or 'this file'})"))
    return out


class OpenAsDialog(QDialog):
    def __init__(self, parent: QWidget | None, path: str | Path, candidates=None, why: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Open as…")
        self.options = choices_for(path, candidates)
        lay = QVBoxLayout(self)
        head = QLabel(f"<b>{Path(path).name}</b>" + (f"<br>{why}" if why else "") + "<br>Open it as:")
        head.setWordWrap(True)
        lay.addWidget(head)
        self.group = QButtonGroup(self)
        for k, (_m, _o, label) in enumerate(self.options):
            b = QRadioButton(label)
            self.group.addButton(b, k)
            lay.addWidget(b)
            if k == 0:
                b.setChecked(True)
        bb = QDialogButtonBox(QDialogButtonBox.Open | QDialogButtonBox.Cancel)
        bb.accepted.connect(self.accept)
        bb.rejected.connect(self.reject)
        lay.addWidget(bb)

    def choice(self) -> tuple[str, dict]:
        m, o, _ = self.options[max(self.group.checkedId(), 0)]
        return m, dict(o)


def ask(parent, path: str | Path, candidates=None, why: str = "") -> tuple[str, dict] | None:
    """(modality, reader options) the user picked, or None (cancelled)."""
    d = OpenAsDialog(parent, path, candidates, why)
    return d.choice() if d.exec() else None

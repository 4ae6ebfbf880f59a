"""Study: what a reader hands on — arrays + metadata + where they came from.

One small dataclass for every modality; the modality-specific payload lives in ``data``
(a dict of numpy arrays and plain values) so the store, the batch runner and the report
can treat every study alike.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.modalities import KEYS as MODALITIES, TITLES as MODALITY_TITLES  # noqa: E402  (the one table)


class ReadError(Exception):
    """A file could not be read as a study. The message names the file and the problem.

    Readers raise only this (never a bare library exception) so the UI and the batch runner
    can show the message as it is.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = str(path) if path is not None else None
        self.problem = problem
        name = Path(path).name if path is not None else "input"
        super().__init__(f"{name}: {problem}")

    def __reduce__(self):  # picklable: it crosses process boundaries (guarded readers, batch workers)
        return (ReadError, (self.path, self.problem))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Study:
    modality: str
    source: str  # path of the file (or folder) the study was read from
    sha256: str  # of the source file's bytes (folders: of the sorted member hashes)
    name: str  # what the study list shows
    metadata: dict[str, Any] = field(default_factory=dict)  # JSON-able facts (rate, size, notes)
    data: dict[str, Any] = field(default_factory=dict)  # arrays and payload, never stored as JSON
    notes: list[str] = field(default_factory=list)  # user-visible remarks (e.g. "resampled 1000→500 Hz")

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"unknown modality {self.modality!r}")

    @property
    def title(self) -> str:
        return MODALITY_TITLES[self.modality]

"""File readers, one module per modality (see inference.detect)."""
from __future__ import annotations

from pathlib import Path

from inference.study import ReadError


def require_file(path: Path) -> int:
    """The size of a readable, non-empty file, or ReadError saying what is wrong (every reader starts here)."""
    if not path.is_file():
        raise ReadError(path, "file not found")
    size = path.stat().st_size
    if size == 0:
        raise ReadError(path, "the file is empty (0 bytes)")
    return size


def read_head(path: Path, n: int = 132) -> bytes:
    """The first ``n`` bytes (132 covers a DICOM preamble and its 'DICM' magic)."""
    with open(path, "rb") as f:
        return f.read(n)

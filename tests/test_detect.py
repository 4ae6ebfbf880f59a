"""Modality detection and bad files: a clear message naming the file, never a traceback."""
from __future__ import annotations

import pytest

from inference import detect
from inference.study import ReadError


def test_missing_file(tmp_path):
    with pytest.raises(ReadError, match="nothere.hd5: file not found"):
        detect.open_study(tmp_path / "nothere.hd5")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(ReadError, match=r"empty.wav: the file is empty"):
        detect.open_study(p)


def test_unknown_extension(tmp_path):
    p = tmp_path / "notes.docx"
    p.write_bytes(b"PK\x03\x04 not a study")
    with pytest.raises(ReadError, match="not a format Lightbox opens"):
        detect.open_study(p)


def test_huge_file_refused_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "big.mp4"
    p.write_bytes(b"\0" * 2048)
    monkeypatch.setattr(detect, "MAX_FILE_BYTES", 1024)
    with pytest.raises(ReadError, match="Lightbox opens files up to"):
        detect.detect_modality(p)


@pytest.mark.parametrize("name,content", [
    ("fake.hd5", b"this is not hdf5 at all" * 10),
    ("fake.wav", b"RIFF\x00\x00\x00\x00WAVEjunk" * 4),
    ("fake.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 20),
    ("fake.dcm", b"\x00" * 128 + b"DICM" + b"\x00" * 10),
    ("fake.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 30),
])
def test_garbage_with_known_extension_is_a_clear_error(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content)
    if not any(p.suffix in exts for exts in detect.all_extensions().values()):
        pytest.skip(f"no reader for {p.suffix} yet")
    with pytest.raises(ReadError) as e:
        detect.open_study(p)
    assert name in str(e.value)
    assert "Traceback" not in str(e.value)

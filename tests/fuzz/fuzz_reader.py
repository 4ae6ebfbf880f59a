"""Coverage-guided fuzzing of one reader with atheris (not part of the default test run).

    make fuzz                       # every reader, 60 s each
    .venv/bin/python tests/fuzz/fuzz_reader.py ecg .hd5 -max_total_time=60

Any exception other than ReadError is a crash: atheris stops and writes the input to crash-*; turn it
into a regression test in tests/test_reliability.py.
"""
from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports():
    from inference.detect import reader_module
    from inference.study import ReadError

MODALITY, EXT = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
MOD = reader_module(MODALITY)
TMP = tempfile.mkdtemp(prefix="lightbox-fuzz-")
PATH = os.path.join(TMP, "input" + EXT)


def one(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        MOD.read(PATH)
    except ReadError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()

"""Coverage-guided fuzzing of one reader with atheris (not part of the default test run).

    make fuzz                       # every reader, 60 s each
    .venv/bin/python tests/fuzz/fuzz_reader.py ecg .hd5 -max_total_time=60

The reader module itself is instrumented (coverage guides the mutations through our code), and
unless a corpus folder is given the run starts from a small valid file of that format
(tests/fuzz/seeds.py), so mutations reach past the container's magic bytes.

Any exception other than ReadError is a crash: atheris stops and writes the input to crash-*; turn it
into a regression test in tests/test_reliability.py (inputs kept in tests/fuzz/crashes/). Add
-rss_limit_mb=2500 -timeout=20 to also catch inputs that exhaust memory or hang. Figures and the
open findings: README.md, "Reliability".
"""
from __future__ import annotations

import importlib
import os
import sys
import tempfile
import warnings

import atheris

# read in this process so the fuzzer sees the reader's coverage (the app reads HDF5 in a guarded child)
os.environ["LIGHTBOX_UNGUARDED_READERS"] = "1"

with atheris.instrument_imports():
    from inference.study import ReadError

MODALITY, EXT = sys.argv[1], sys.argv[2]
del sys.argv[1:3]
with atheris.instrument_imports(include=["inference", "pydicom", "PIL"]):
    from inference import modalities

    MOD = modalities.part(MODALITY, "reader")
    for _lib in ("pydicom", "PIL.Image", "PIL.PngImagePlugin", "PIL.GifImagePlugin"):  # pure-Python parsers
        try:  # imported here so that their code is instrumented too
            importlib.import_module(_lib)
        except ImportError:
            pass
TMP = tempfile.mkdtemp(prefix="lightbox-fuzz-")
PATH = os.path.join(TMP, "input" + EXT)
warnings.simplefilter("ignore")  # pydicom/OpenCV complaints about damaged input are expected


def _seed_corpus() -> None:
    """Add a seed folder holding one valid file when no corpus folder was passed."""
    if any(not a.startswith("-") for a in sys.argv[1:]):
        return
    from tests.fuzz.seeds import seed_bytes

    d = os.path.join(TMP, "seeds")
    os.makedirs(d)
    data = seed_bytes(MODALITY, EXT, d)
    for f in os.listdir(d):  # keep only the raw seed input, named without the extension
        os.rename(os.path.join(d, f), os.path.join(d, "seed"))
    if data is not None:
        sys.argv.append(d)


def one(data: bytes) -> None:
    with open(PATH, "wb") as f:
        f.write(data)
    try:
        MOD.read(PATH)
    except ReadError:
        pass


if __name__ == "__main__":
    _seed_corpus()
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()

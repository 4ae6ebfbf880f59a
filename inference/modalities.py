"""The one table of modalities: what each is called and which modules implement it.

Each modality is one package, ``inference/<key>/``, with the same parts:

    reader    EXTENSIONS, sniff(path, head) -> 0..1, read(path) -> Study   (raises ReadError)
    pipeline  MODELS (default first), analyse(study, model_id, registry, ctx) -> Result
    demo      make(folder) -> Path: one small deterministic demo study Lightbox generates itself
    bench     run() -> rows (label, value, unit, note) for ``lightbox bench``

The parts are named here in full and imported on first use, so that start-up stays fast and a missing
optional library (TensorFlow, pydicom plugins) disables one part, not the application. The app's own
table (viewer, PDF section) is ``app/modalities.py``. Adding a modality = one package here, one in
``app/``, and one row in each table.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Modality:
    key: str
    title: str
    reader: str
    pipeline: str
    demo: str
    bench: str

    def module(self, part: str) -> ModuleType:
        """The imported module of one part: 'reader', 'pipeline', 'demo' or 'bench'."""
        return importlib.import_module(getattr(self, part))


TABLE: tuple[Modality, ...] = (
    Modality("ecg", "ECG", "inference.ecg.reader", "inference.ecg.pipeline", "inference.ecg.demo",
             "inference.ecg.bench"),
    Modality("pcg", "Heart sounds", "inference.pcg.reader", "inference.pcg.pipeline", "inference.pcg.demo",
             "inference.pcg.bench"),
    Modality("echo", "Echo", "inference.echo.reader", "inference.echo.pipeline", "inference.echo.demo",
             "inference.echo.bench"),
    Modality("xray", "Chest X-ray", "inference.xray.reader", "inference.xray.pipeline", "inference.xray.demo",
             "inference.xray.bench"),
    Modality("endo", "Endoscopy", "inference.endo.reader", "inference.endo.pipeline", "inference.endo.demo",
             "inference.endo.bench"),
)

BY_KEY: dict[str, Modality] = {m.key: m for m in TABLE}
KEYS: tuple[str, ...] = tuple(m.key for m in TABLE)
TITLES: dict[str, str] = {m.key: m.title for m in TABLE}

# benchmarks that belong to no single modality: (name, module)
CORE_BENCHES: tuple[tuple[str, str], ...] = (
    ("startup", "inference.bench_startup"),
    ("batch", "inference.bench_batch"),
    ("dicom", "inference.dicomnet.bench"),
)


def get(key: str) -> Modality:
    try:
        return BY_KEY[key]
    except KeyError:
        raise ValueError(f"unknown modality {key!r}; known: {', '.join(KEYS)}") from None


def part(key: str, name: str) -> ModuleType:
    """``part('ecg', 'reader')`` is the ECG reader module."""
    return get(key).module(name)

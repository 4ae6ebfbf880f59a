"""Which modality is this file? Extension first, then content where the extension is ambiguous.

Each modality's reader module (``inference.<modality>.reader``, named in ``inference.modalities``) provides::

    EXTENSIONS: tuple[str, ...]            # lower-case, with the dot
    def sniff(path, head: bytes) -> float  # 0..1 confidence that the file is this modality
    def read(path) -> Study                # raises ReadError with a clear message

Reader modules are imported lazily, so a missing optional library only disables its modality.

An image file (PNG, JPEG, TIFF, BMP, GIF) is claimed by more than one modality (a radiograph, an
endoscopy photograph); its content decides. When no reader is sure of it (the best score is under
``AMBIGUOUS``: a colour photograph that is neither grey like a radiograph nor coloured like mucosa),
:func:`detect_modality` raises :class:`AmbiguousModality` naming the candidates, so the app asks the
user and the command line says to pass ``--modality``, instead of guessing.
"""
from __future__ import annotations

from pathlib import Path

from inference import modalities
from inference.study import MODALITIES, ReadError, Study

MAX_FILE_BYTES = 4 << 30  # refuse anything above 4 GiB before reading it
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
AMBIGUOUS = 0.5  # an image whose best modality scores under this is not opened by a guess


class AmbiguousModality(ReadError):
    """The content does not say which modality a file is; ``candidates``: [(modality, score)], best first."""

    def __init__(self, path, candidates: list[tuple[str, float]]):
        from inference.modalities import TITLES

        self.candidates = [(m, float(s)) for m, s in candidates]
        names = " or ".join(TITLES.get(m, m) for m, _ in self.candidates)
        super().__init__(path, f"could be {names}: its content does not say which. Choose: File > Open as… "
                               f"in the app, --modality {'|'.join(m for m, _ in self.candidates)} on the command line")

    def __reduce__(self):
        return (AmbiguousModality, (self.path, self.candidates))


def reader_module(modality: str):
    return modalities.part(modality, "reader")


def _available_readers():
    for m in MODALITIES:
        yield m, reader_module(m)


def all_extensions() -> dict[str, list[str]]:
    return {m: list(mod.EXTENSIONS) for m, mod in _available_readers()}


def detect_modality(path: str | Path) -> str:
    """The modality of a file or folder, or ReadError saying why none fits."""
    path = Path(path)
    if not path.exists():
        raise ReadError(path, "file not found")
    if path.is_dir():
        # a folder of frames is an endoscopy study; a WFDB record is picked by its .hea file
        return "endo"
    size = path.stat().st_size
    if size == 0:
        raise ReadError(path, "the file is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ReadError(path, f"the file is {size / 2**30:.1f} GiB; Lightbox opens files up to 4 GiB")
    ext = path.suffix.lower()
    with open(path, "rb") as f:
        head = f.read(4096)
    scores: list[tuple[float, str]] = []
    for m, mod in _available_readers():
        if ext in mod.EXTENSIONS:
            try:
                s = float(mod.sniff(path, head))
            except Exception:
                s = 0.0
            scores.append((s, m))
    scores.sort(reverse=True)
    if ext in IMAGE_EXTENSIONS and scores and 0 < scores[0][0] < AMBIGUOUS:
        raise AmbiguousModality(path, [(m, s) for s, m in scores])
    if scores and scores[0][0] > 0:
        return scores[0][1]
    if scores:
        raise ReadError(path, f"the content does not look like a {ext} file Lightbox can read "
                              "(wrong extension or damaged file)")
    known = sorted({e for exts in all_extensions().values() for e in exts})
    raise ReadError(path, f"'{ext or 'no extension'}' is not a format Lightbox opens "
                          f"(known: {' '.join(known)})")


def open_study(path: str | Path, modality: str | None = None, **options) -> Study:
    """Read a file as a Study (``modality`` given: read as that, whatever detection would say; options go
    to the reader, e.g. ``folder_as="set"`` for endoscopy). Any failure is a ReadError with a message
    for the user."""
    path = Path(path)
    if modality is not None and modality not in MODALITIES:
        raise ReadError(path, f"unknown modality {modality!r} (known: {', '.join(MODALITIES)})")
    if modality is not None and not path.exists():
        raise ReadError(path, "file not found")
    modality = modality or detect_modality(path)
    mod = reader_module(modality)
    options = {k: v for k, v in options.items() if v is not None}
    try:
        return mod.read(path, **options) if options else mod.read(path)
    except ReadError:
        raise
    except MemoryError:
        raise ReadError(path, "the file is too large to open in memory") from None
    except Exception as e:  # a reader bug must still not reach the user as a traceback
        raise ReadError(path, f"could not be read as {modality}: {type(e).__name__}: {e}") from e

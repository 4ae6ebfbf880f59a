"""The weights registry: ``weights/manifest.toml`` + the user's weights folder.

A model is
- ``ready``          its file is present and its sha256 matches the official hash in the manifest
                     (or it is one of Lightbox's own bundled models);
- ``demo``           the user explicitly installed a non-official file for it
                     (``lightbox weights install FILE --model ID --unofficial``): it runs, and every
                     result is stamped NOT A CLINICAL RESULT;
- ``not installed``  no file; the UI says which file to install and how;
- ``refused``        a file is there but its hash matches neither the manifest nor an explicit
                     local install (tampered or half-copied): it is never loaded;
- ``checking``       only from ``state(..., cached_only=True)``: the file is there but has not been
                     hashed yet in this session (the UI asks this way and hashes on a worker thread).

Nothing here downloads anything.
"""
from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - python < 3.11
    import tomli as tomllib  # type: ignore

from inference import paths
from inference.atomic import atomic_path, atomic_write_text
from inference.study import sha256_file

READY, DEMO, NOT_INSTALLED, REFUSED, CHECKING = "ready", "demo", "not installed", "refused", "checking"
STATUS_LABEL = {READY: "ready", DEMO: "demo weights", NOT_INSTALLED: "not installed", REFUSED: "refused",
                CHECKING: "checking"}
LOCAL_INSTALLS = "local_installs.json"


class WeightsError(Exception):
    """A model cannot be used; the message tells the user what to do."""


@dataclass(frozen=True)
class ModelEntry:
    id: str
    title: str
    modality: str
    framework: str  # onnx | torch | keras | numpy (an analysis that needs no weights: file = "")
    file: str
    sha256: str  # official file's sha256 ("" where the publisher gives none: every install is then local)
    source: str
    licence: str
    install: str = ""
    bundled: bool = False  # Lightbox's own model shipped in resources/models
    clinical: bool = True  # official weights are clinical results unless the manifest says otherwise
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelState:
    entry: ModelEntry
    status: str
    sha256: str | None  # of the file on disk, when present
    message: str

    @property
    def usable(self) -> bool:
        return self.status in (READY, DEMO)

    @property
    def may_start(self) -> bool:
        """Usable, or not verified yet: a job may start; the worker verifies the file before it loads it."""
        return self.usable or self.status == CHECKING

    @property
    def clinical(self) -> bool:
        return self.status == READY and self.entry.clinical


_KNOWN_KEYS = {"title", "modality", "framework", "file", "sha256", "source", "licence", "install",
               "bundled", "clinical", "inputs", "outputs"}


def load_manifest(path: str | Path | None = None) -> dict[str, ModelEntry]:
    path = Path(path) if path else paths.MANIFEST
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    out: dict[str, ModelEntry] = {}
    for mid, m in raw.get("models", {}).items():
        out[mid] = ModelEntry(
            id=mid,
            title=m.get("title", mid),
            modality=m["modality"],
            framework=m["framework"],
            file=m["file"],
            sha256=m.get("sha256", "").lower(),
            source=m.get("source", ""),
            licence=m.get("licence", ""),
            install=m.get("install", ""),
            bundled=bool(m.get("bundled", False)),
            clinical=bool(m.get("clinical", True)),
            inputs=m.get("inputs", {}),
            outputs=m.get("outputs", {}),
            extra={k: v for k, v in m.items() if k not in _KNOWN_KEYS},
        )
    return out


_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def file_sha256(path: Path, cached_only: bool = False) -> str | None:
    """sha256 of a file, cached on (path, size, mtime) so a verified file is hashed once a session.
    ``cached_only``: None instead of hashing a file not hashed yet (for callers on the UI thread)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    if cached_only:
        return None
    h = sha256_file(path)
    _remember(path, h, st)
    return h


def _remember(path: Path, sha: str, st=None) -> None:
    st = st or path.stat()
    with _hash_lock:
        _hash_cache[(str(path), st.st_size, st.st_mtime_ns)] = sha


class Registry:
    def __init__(self, manifest: str | Path | None = None, weights: str | Path | None = None):
        self.manifest_path = Path(manifest) if manifest else paths.MANIFEST
        self.entries = load_manifest(self.manifest_path)
        self._weights = Path(weights) if weights else None

    # -- where files live -------------------------------------------------------------------
    @property
    def weights_dir(self) -> Path:
        d = self._weights or paths.weights_dir()
        d.mkdir(parents=True, exist_ok=True)
        return d

    def path_of(self, entry: ModelEntry) -> Path:
        if entry.bundled:
            return paths.PROJECT_ROOT / entry.file
        return self.weights_dir / Path(entry.file).name

    def _local_installs(self) -> dict[str, dict]:
        p = self.weights_dir / LOCAL_INSTALLS
        if not p.exists():
            return {}
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return {}

    # -- state ------------------------------------------------------------------------------
    def get(self, model_id: str) -> ModelEntry:
        try:
            return self.entries[model_id]
        except KeyError:
            raise WeightsError(f"unknown model {model_id!r}; known: {', '.join(sorted(self.entries))}") from None

    def how_to_install(self, entry: ModelEntry) -> str:
        text = (f"Install {entry.title}: obtain '{Path(entry.file).name}' from {entry.source or 'its publisher'}"
                f" and run:  lightbox weights install /path/to/{Path(entry.file).name}")
        if entry.install:
            text += f"\n{entry.install}"
        return text

    def state(self, model_id: str, cached_only: bool = False) -> ModelState:
        """The model's state, hashing its file if this session has not yet (hundreds of MB for some
        models). ``cached_only``: never hash; a file not hashed yet is ``checking``."""
        entry = self.get(model_id)
        if not entry.file:  # an analysis that needs no weights (signal measurements)
            return ModelState(entry, READY, "", f"{entry.title}: needs no weights")
        path = self.path_of(entry)
        if not path.exists():
            return ModelState(entry, NOT_INSTALLED, None, self.how_to_install(entry))
        sha = file_sha256(path, cached_only)
        if sha is None:
            return ModelState(entry, CHECKING, None, f"{entry.title}: verifying the weights file's sha256…")
        if entry.sha256 and sha == entry.sha256:
            return ModelState(entry, READY, sha, f"{entry.title}: official weights ({sha[:12]})")
        local = self._local_installs().get(entry.id)
        if local and local.get("sha256") == sha:
            return ModelState(entry, DEMO, sha,
                              f"{entry.title}: non-official weights installed locally ({sha[:12]}) — "
                              "results are NOT A CLINICAL RESULT")
        return ModelState(entry, REFUSED, sha,
                          f"{entry.title}: '{path.name}' has sha256 {sha[:12]}…, which matches neither the "
                          "official file nor an explicit local install; it will not be loaded. "
                          "Re-install it with 'lightbox weights install'.")

    def states(self, cached_only: bool = False) -> list[ModelState]:
        return [self.state(mid, cached_only) for mid in self.entries]

    def require(self, model_id: str) -> ModelState:
        """The state of a usable model, or WeightsError with what to do."""
        st = self.state(model_id)
        if not st.usable:
            raise WeightsError(st.message)
        return st

    # -- install ----------------------------------------------------------------------------
    def install(self, src: str | Path, model_id: str | None = None, unofficial: bool = False) -> ModelState:
        """Copy a weights file into the weights folder after checking it.

        The official file is recognised by its sha256. Any other file needs ``model_id`` and
        ``unofficial=True``: an explicit, recorded decision that its results are not clinical.
        The copy is atomic: a half-copied file is never taken as installed.
        """
        src = Path(src)
        if not src.is_file():
            raise WeightsError(f"{src}: no such file")
        sha = sha256_file(src)
        matches = [e for e in self.entries.values() if e.sha256 and e.sha256 == sha and not e.bundled]
        if model_id:
            entry = self.get(model_id)
            if entry.bundled:
                raise WeightsError(f"{entry.title} ships with Lightbox; it is not installed by hand")
            if not entry.file:
                raise WeightsError(f"{entry.title} needs no weights; nothing to install")
            official = bool(entry.sha256) and sha == entry.sha256
        elif matches:
            entry, official = matches[0], True
        else:
            raise WeightsError(
                f"{src.name}: sha256 {sha} matches no official file in the manifest. "
                "To use it anyway (results will be stamped NOT A CLINICAL RESULT) run: "
                "lightbox weights install FILE --model ID --unofficial")
        if not official and not unofficial:
            raise WeightsError(
                f"{src.name}: sha256 {sha[:16]}… is not the official {entry.title} file "
                f"({entry.sha256[:16] or 'no official hash published'}…). Pass --unofficial to install it "
                "as non-official weights (results stamped NOT A CLINICAL RESULT).")
        dest = self.path_of(entry)
        locals_ = self._local_installs()
        # forget the old record first: a crash between the two steps leaves a refused file, never
        # a wrongly trusted one
        if entry.id in locals_:
            locals_.pop(entry.id)
            atomic_write_text(self.weights_dir / LOCAL_INSTALLS, json.dumps(locals_, indent=2))
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
            if sha256_file(tmp) != sha:
                raise WeightsError(f"{src.name}: copy did not verify; nothing installed")
        _remember(dest, sha)
        if not official:
            locals_[entry.id] = {"sha256": sha, "source": str(src.resolve())}
            atomic_write_text(self.weights_dir / LOCAL_INSTALLS, json.dumps(locals_, indent=2))
        return self.state(entry.id)

    def derived_path(self, model_id: str, suffix: str) -> Path:
        """Where an artefact derived from a model's weights lives (e.g. its ONNX export).

        The name carries the source weights' hash, so an export can never outlive the weights it
        was made from.
        """
        st = self.require(model_id)
        return self.weights_dir / "derived" / f"{model_id}-{st.sha256[:16]}{suffix}"


def default_registry() -> Registry:
    return Registry()


"""Plumbing the training commands share (``pcg-train``, ``ecg-rhythm-train``, ``xray-train``,
``polyp-train``): cache folder, seeds and threads, ONNX metadata, the ONNX Runtime session and the
torch-vs-ONNX check, model-card files and percentages, JSON-lines progress events.

Pure: torch, onnx and onnxruntime are imported inside the functions that need them, so importing this
module (and the CLI that lists the commands) stays cheap. What differs per model (network, loop, metrics,
card text) stays in each command.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable


# -- files ------------------------------------------------------------------------------------------
def cache_dir(env: str, name: str, default: str | Path | None = None) -> Path:
    """``$env``, else ``default``, else ``<temp>/<name>``; created. With ``default``, a folder that cannot
    be created falls back to ``<temp>/<name>``."""
    d = Path(os.environ.get(env) or default or Path(tempfile.gettempdir()) / name)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:
        if default is None:
            raise
        d = Path(tempfile.gettempdir()) / name
        d.mkdir(parents=True, exist_ok=True)
    return d


def file_facts(path: str | Path) -> dict:
    """``{"onnx_sha256": ..., "onnx_bytes": ...}`` of an exported file, for the manifest/card JSON."""
    path = Path(path)
    return {"onnx_sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "onnx_bytes": path.stat().st_size}


def write_card(out_dir: str | Path, name: str, meta: dict, markdown: str | None = None, *, indent: int = 2,
               default: Callable | None = None, end: str = "") -> None:
    """``<name>.json`` (``meta``) and, given ``markdown``, ``<name>.md`` in ``out_dir``."""
    out_dir = Path(out_dir)
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=indent, default=default) + end)
    if markdown is not None:
        (out_dir / f"{name}.md").write_text(markdown)


def pct(x: float | None) -> str:
    """A fraction as a card percentage, one decimal; ``–`` for None."""
    return "–" if x is None else f"{100 * x:.1f} %"


# -- torch ------------------------------------------------------------------------------------------
def seed_everything(seed: int, threads: int):
    """Fixed torch seed and thread count (what makes a run reproducible); the numpy RandomState to use."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    return np.random.RandomState(seed)


def state_snapshot(net) -> dict:
    """A detached copy of a module's weights (the best epoch so far)."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


# -- ONNX -------------------------------------------------------------------------------------------
def embed_onnx_metadata(path: str | Path, key: str, meta: dict, producer: str | None = None) -> None:
    """Replace the file's metadata_props by one entry ``key`` = JSON of ``meta`` (and set the producer name)."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    p = model.metadata_props.add()
    p.key, p.value = key, json.dumps(meta)
    if producer is not None:
        model.producer_name = producer
    onnx.save(model, str(path))


def read_onnx_metadata(path: str | Path, key: str) -> dict | None:
    """The JSON a training command embedded under ``key``, or None (weights are not loaded)."""
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    for p in m.metadata_props:
        if p.key == key:
            return json.loads(p.value)
    return None


def onnx_session(path: str | Path, threads: int):
    """A CPU ONNX Runtime session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def max_abs_diff(predict: Callable[[Any], Any], sess, input_name: str, x) -> float:
    """Largest |torch - ONNX| of the first output on ``x`` (``predict`` runs the torch model)."""
    import numpy as np

    return float(np.max(np.abs(predict(x) - sess.run(None, {input_name: x})[0])))


# -- command line -----------------------------------------------------------------------------------
def print_fields(e: dict) -> None:
    """An event as ``key=value`` words on one line."""
    print(" ".join(f"{k}={v}" for k, v in e.items()), flush=True)


def event_printer(jsonl: bool, human: Callable[[dict], None], default: Callable | None = None
                  ) -> Callable[[dict], None]:
    """The ``emit`` of a command: one JSON object per line with ``--jsonl`` (the app's retraining monitor
    reads them), else ``human(e)``."""
    def emit(e: dict) -> None:
        if jsonl:
            print(json.dumps(e, default=default), flush=True)
        else:
            human(e)
    return emit


def report_error(e: Exception, jsonl: bool) -> int:
    """A data error: an ``error`` event with ``--jsonl``, always ``error: ...`` on stderr; exit status 1."""
    if jsonl:
        print(json.dumps({"event": "error", "message": str(e)}), flush=True)
    print(f"error: {e}", file=sys.stderr)
    return 1

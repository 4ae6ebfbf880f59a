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


# -- the one training loop ---------------------------------------------------------------------------
class FitResult:
    """What :func:`fit` returns: the best weights (already loaded into the net), when and why it stopped."""

    def __init__(self, best_state: dict, best_epoch: int, best_score: float, history: list[dict],
                 stopped: str, seconds: float):
        self.best_state, self.best_epoch, self.best_score = best_state, best_epoch, best_score
        self.history, self.stopped, self.seconds = history, stopped, seconds

    def as_dict(self) -> dict:
        """The card's ``training`` facts (no weights)."""
        return {"epochs_run": len(self.history), "best_epoch": self.best_epoch, "best_val": self.best_score,
                "stopped": self.stopped, "seconds": round(self.seconds, 1), "history": self.history}


def fit(net, batches: Callable[[int], Any], step: Callable[[Any, Any], Any], validate: Callable[[Any], dict], *,
        epochs: int, patience: int, lr: float, weight_decay: float = 1e-4, params=None,
        schedule: str = "cosine", warmup_epochs: int = 0, monitor: str = "score",
        time_budget_s: float | None = None, emit: Callable[[dict], None] = lambda e: None,
        checkpoint: str | Path | None = None, on_epoch: Callable[[int, dict], None] | None = None,
        grad_clip: float | None = None, stop_after: int | None = None) -> FitResult:
    """Train ``net`` with AdamW and early stopping on a validation score (higher is better).

    - ``batches(epoch)`` yields the epoch's training batches (anything ``step`` understands), so a model
      brings its own sampling and augmentation;
    - ``step(net, batch)`` returns the loss tensor of one batch (the loop does zero_grad/backward/step);
    - ``validate(net)`` returns a dict of validation metrics with ``monitor`` among them (the net is in
      eval mode and under ``torch.no_grad`` while it runs);
    - ``params`` limits the optimised parameters (frozen blocks stay out); default: those requiring grad.
      It may also be a list of groups ``{"params": [...], "lr_scale": 0.1}`` (discriminative learning
      rates, e.g. a pretrained encoder slower than a new decoder): each group follows the schedule at
      ``lr * lr_scale``;
    - the schedule is cosine decay to 1 % of ``lr`` over ``epochs`` (after ``warmup_epochs`` of linear
      warm-up), or ``"constant"``;
    - ``time_budget_s`` stops between epochs once the next epoch would not fit; ``checkpoint`` saves the
      best state dict (plain tensors, so it reloads with ``weights_only=True``) after each improvement;
    - ``stop_after`` stops after that many epochs while the schedule still spans ``epochs`` (reproduces a
      run that was stopped by its time budget).

    Emits ``{"event": "epoch", ...}`` per epoch. The best weights are loaded back into ``net`` at the end.
    """
    import math
    import time

    import torch

    raw = list(params if params is not None else net.parameters())
    if raw and isinstance(raw[0], dict):
        groups = [{"params": [p for p in g["params"] if p.requires_grad], "lr_scale": float(g.get("lr_scale", 1.0))}
                  for g in raw]
        groups = [g for g in groups if g["params"]]
    else:
        groups = [{"params": [p for p in raw if p.requires_grad], "lr_scale": 1.0}]
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)

    def lr_at(epoch: int) -> float:
        if warmup_epochs and epoch < warmup_epochs:
            return lr * (epoch + 1) / (warmup_epochs + 1)
        if schedule == "constant":
            return lr
        t = (epoch - warmup_epochs) / max(1, epochs - warmup_epochs)
        return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    t0 = time.time()
    best_state, best_epoch, best_score = state_snapshot(net), -1, -math.inf
    history: list[dict] = []
    stopped, stale = f"ran all {epochs} epochs", 0
    for epoch in range(epochs):
        te = time.time()
        for g in opt.param_groups:
            g["lr"] = lr_at(epoch) * g["lr_scale"]
        net.train()
        total, n = 0.0, 0
        for batch in batches(epoch):
            loss = step(net, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            opt.step()
            total, n = total + float(loss.detach()), n + 1
        net.eval()
        with torch.no_grad():
            val = dict(validate(net))
        score = float(val[monitor])
        improved = score > best_score
        if improved:
            best_state, best_epoch, best_score, stale = state_snapshot(net), epoch, score, 0
            if checkpoint is not None:
                torch.save(best_state, str(checkpoint))
        else:
            stale += 1
        row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "train_loss": total / max(1, n),
               **{f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))},
               "best": improved, "seconds": round(time.time() - te, 1)}
        history.append(row)
        emit({"event": "epoch", **row})
        if on_epoch is not None:
            on_epoch(epoch, row)
        if stale >= patience:
            stopped = f"early stop: no validation {monitor} improvement for {patience} epochs"
            break
        if stop_after is not None and epoch + 1 >= stop_after and epoch + 1 < epochs:
            stopped = f"stopped after {stop_after} of {epochs} epochs (stop_after)"
            break
        spent = time.time() - t0
        if time_budget_s is not None and epoch + 1 < epochs and spent + spent / (epoch + 1) > time_budget_s:
            stopped = f"time budget {time_budget_s:.0f} s reached after {epoch + 1} epochs"
            break
    net.load_state_dict(best_state)
    net.eval()
    return FitResult(best_state, best_epoch, best_score, history, stopped, time.time() - t0)


def export_onnx(module, example, path: str | Path, *, input_names: list[str], output_names: list[str],
                dynamic_batch: bool = True, opset: int = 17, meta_key: str | None = None,
                meta: dict | None = None, producer: str | None = None,
                dynamic_axes: dict[str, dict[int, str]] | None = None) -> dict:
    """Export ``module`` (in eval mode) to ONNX at ``path`` with a dynamic batch axis, embed ``meta`` under
    ``meta_key``, and return :func:`file_facts` of the file. ``dynamic_axes`` adds further free axes
    (e.g. ``{"ecg": {2: "samples"}}`` for a network that takes any length)."""
    import torch

    module.eval()
    path = Path(path)
    axes = {n: {0: "batch"} for n in input_names + output_names} if dynamic_batch else None
    if dynamic_axes:
        axes = axes or {}
        for n, more in dynamic_axes.items():
            axes[n] = {**axes.get(n, {}), **more}
    with torch.no_grad():
        torch.onnx.export(module, example, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=axes, opset_version=opset, dynamo=False)
    if meta_key is not None:
        embed_onnx_metadata(path, meta_key, meta or {}, producer)
    return file_facts(path)


def agreement_check(module, path: str | Path, inputs: dict[str, Any], *, tol: float = 1e-4,
                    threads: int = 1, rtol: dict[str, float] | None = None) -> dict:
    """Run the torch ``module`` and the exported ONNX file on the same ``inputs`` (name -> numpy array)
    and compare every output. Returns ``{"max_abs_diff": ..., "per_output": {...}, "tol": tol, "ok": ...}``;
    raises ``AssertionError`` when any output differs by more than ``tol`` (a broken export never ships).
    ``rtol`` (output name -> fraction) lets an output with a large range (e.g. a squared distance) differ by
    ``tol + rtol * max|torch output|`` instead; ``max_abs_diff`` then covers the other outputs only."""
    import numpy as np
    import torch

    sess = onnx_session(path, threads)
    names = [o.name for o in sess.get_outputs()]
    got = sess.run(None, inputs)
    module.eval()
    with torch.no_grad():
        ref = module(*[torch.from_numpy(v) for v in inputs.values()])
    if not isinstance(ref, (tuple, list)):
        ref = (ref,)
    rtol = rtol or {}
    per, bad = {}, []
    for n, r, g in zip(names, ref, got):
        r = r.detach().cpu().numpy()
        per[n] = float(np.max(np.abs(r - g))) if r.size else 0.0
        if per[n] > tol + rtol.get(n, 0.0) * (float(np.max(np.abs(r))) if r.size else 0.0):
            bad.append(n)
    absolute = [v for n, v in per.items() if n not in rtol]
    worst = max(absolute) if absolute else 0.0
    out = {"max_abs_diff": worst, "per_output": per, "tol": tol, "ok": not bad, "n": int(
        next(iter(inputs.values())).shape[0])}
    if rtol:
        out["rtol"] = dict(rtol)
    if bad:
        raise AssertionError(f"torch and ONNX disagree on {', '.join(bad)} ({', '.join(f'{per[n]:.3g}' for n in bad)}; "
                             f"tol {tol:g}) on {path}")
    return out


def fit_whitening(feats, dims: int = 64, shrink: float = 0.05):
    """(mu, P): z = (f - mu) @ P is the training features' top ``dims`` principal components, whitened
    (eigenvalues shrunk toward their mean: a shrinkage covariance); ``|z|^2`` is then a Mahalanobis
    distance in that space (the out-of-domain score of the X-ray and polyp models)."""
    import numpy as np

    f = np.asarray(feats, np.float64)
    mu = f.mean(0)
    c = np.cov(f - mu, rowvar=False)
    ev, vec = np.linalg.eigh(c)
    order = np.argsort(ev)[::-1][:dims]
    ev, vec = ev[order], vec[:, order]
    ev = (1 - shrink) * ev + shrink * ev.mean() + 1e-6  # floor: a near-constant feature never explodes
    return mu.astype(np.float32), (vec / np.sqrt(ev)).astype(np.float32)

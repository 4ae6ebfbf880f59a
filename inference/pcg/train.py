"""``lightbox pcg-train``: train a heart-sound classifier on labelled recordings and export it to ONNX.

    lightbox pcg-train ../shared/reference/pcg --out resources/models        # the shipped default model
    lightbox pcg-train my_sounds/ --out /tmp/run --name my_model               # sub-folders are classes

Data: a PhysioNet-style folder (``labels.csv`` + ``recordings/``) or one sub-folder per class.
Split by recording (stratified by label and source database): train / validation (early stopping) /
test (held out: never used for training, early stopping or any choice; evaluated once at the end with
the exported ONNX file). Fixed seeds and a fixed thread count: the command reproduces the shipped model.

Writes ``<name>.onnx`` (preprocessing spec, classes and metrics embedded as ONNX metadata),
``<name>.json`` (spec, classes, split, history, validation and test metrics) and ``<name>.md`` (model
card). ``--jsonl`` prints one JSON event per line (the app's retraining monitor reads them).
"""
from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from inference.atomic import atomic_path
from inference.pcg.dataset import DatasetError, Item, classes_of, scan, split
from inference.pcg.features import FeatureSpec, fit_length, recording_logmel, standardise, windows
from inference.pcg.metrics import evaluate
from inference.training import (cache_dir, embed_onnx_metadata, event_printer, file_facts, fit, max_abs_diff,
                                onnx_session, pct as _pct, report_error, seed_everything,
                                write_card)
from inference.training import read_onnx_metadata as _read_onnx_metadata

ONNX_META_KEY = "lightbox.pcg"
DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "pcg"


def _cache_dir() -> Path:
    return cache_dir("LIGHTBOX_PCG_CACHE", "lightbox-pcg-cache")


def load_features(items: list[Item], spec: FeatureSpec, emit: Callable[[dict], None],
                  cache: bool = True) -> list[np.ndarray]:
    """Full-recording log-mel (n_mels x frames, float16) per item, cached in a temp .npz by content key."""
    from inference.pcg.reader import load_audio
    from inference.study import ReadError

    h = hashlib.sha256(spec.to_json().encode())
    for it in items:
        st = it.path.stat()
        h.update(f"{it.path}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    path = _cache_dir() / f"feat-{h.hexdigest()[:20]}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            feats = [z[f"f{i}"] for i in range(len(items))]
        emit({"event": "features", "done": len(items), "total": len(items), "cached": str(path)})
        return feats
    feats = []
    t0 = time.time()
    for i, it in enumerate(items):
        try:
            x, sr, _, _ = load_audio(it.path)
        except ReadError as e:  # an unreadable file is left out (and reported), not fatal
            emit({"event": "skipped", "file": str(it.path), "problem": e.problem})
            feats.append(np.zeros((spec.n_mels, 0), np.float16))
            continue
        mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
        feats.append(recording_logmel(mono, sr, spec).astype(np.float16))
        if i % 25 == 0 or i == len(items) - 1:
            emit({"event": "features", "done": i + 1, "total": len(items), "seconds": round(time.time() - t0, 1)})
    if cache:
        with atomic_path(path) as tmp:
            np.savez(tmp, **{f"f{i}": f for i, f in enumerate(feats)})
    return feats


def _sample_windows(feats, idx, labels, spec, k, rng, augment=True):
    W = spec.window_frames
    xs, ys = [], []
    for i in idx:
        m = feats[i]
        n = m.shape[1]
        for _ in range(k):
            s = int(rng.randint(0, n - W + 1)) if n > W else 0
            w = fit_length(m[:, s:s + W].astype(np.float32), W)
            xs.append(w)
            ys.append(labels[i])
    x = standardise(np.stack(xs))[:, None]
    if augment:  # SpecAugment-style masks: one time and one frequency band per window, half the time
        for j in range(len(x)):
            if rng.rand() < 0.5:
                t = rng.randint(0, W // 10 + 1)
                t0 = rng.randint(0, W - t + 1)
                x[j, 0, :, t0:t0 + t] = 0.0
            if rng.rand() < 0.5:
                f = rng.randint(0, spec.n_mels // 8 + 1)
                f0 = rng.randint(0, spec.n_mels - f + 1)
                x[j, 0, f0:f0 + f, :] = 0.0
    return x, np.asarray(ys, dtype=np.int64)


def _record_windows(feats, idx, spec):
    """Inference windows of each record: (stacked windows, owner index per window)."""
    xs, owner = [], []
    for r, i in enumerate(idx):
        w, _ = windows(feats[i].astype(np.float32), spec)
        xs.append(w)
        owner += [r] * len(w)
    return np.concatenate(xs), np.asarray(owner)


def _record_probs(win_probs: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((n, win_probs.shape[1]))
    for r in range(n):
        out[r] = win_probs[owner == r].mean(axis=0)
    return out


def train(items: list[Item], out_dir: str | Path, name: str = "heart_sound_cnn", *, spec: FeatureSpec | None = None,
          seed: int = 2016, epochs: int = 40, patience: int = 10, batch: int = 32, windows_per_record: int = 8,
          width: int = 12, lr: float = 1e-3, threads: int = 1, val_frac: float = 0.15, test_frac: float = 0.15,
          emit: Callable[[dict], None] | None = None, cache: bool = True, should_stop: Callable[[], bool] | None = None,
          data_description: str = "") -> dict:
    """Train, early-stop on validation balanced accuracy, export ONNX, evaluate the ONNX on the test split."""
    import torch
    from torch import nn

    from inference.pcg.model import HeartSoundCNN, export_onnx

    emit = emit or (lambda e: None)
    spec = spec or FeatureSpec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    rng = seed_everything(seed, threads)

    classes = classes_of(items)
    parts = split(items, seed=seed, val=val_frac, test=test_frac)
    emit({"event": "split", "classes": classes,
          **{k: {c: sum(1 for i in v if i.label == c) for c in classes} for k, v in parts.items()}})
    if not parts["train"] or not parts["val"]:
        raise DatasetError("too few recordings to split into training and validation sets "
                           "(need at least 3 per class)")
    order = parts["train"] + parts["val"] + parts["test"]
    feats = load_features(order, spec, emit, cache=cache)
    ok = {it.record for it, f in zip(order, feats) if f.shape[1] > 0}
    if len(ok) < len(order):
        feats = [f for f in feats if f.shape[1] > 0]
        parts = {k: [i for i in v if i.record in ok] for k, v in parts.items()}
        order = parts["train"] + parts["val"] + parts["test"]
        if not parts["train"] or not parts["val"]:
            raise DatasetError("too few readable recordings to train")
    labels = np.array([classes.index(i.label) for i in order])
    n_tr, n_va = len(parts["train"]), len(parts["val"])
    tr_idx = np.arange(n_tr)
    va_idx = np.arange(n_tr, n_tr + n_va)
    te_idx = np.arange(n_tr + n_va, len(order))

    counts = np.bincount(labels[tr_idx], minlength=len(classes)).astype(float)
    cw = counts.sum() / (len(classes) * np.maximum(counts, 1))
    net = HeartSoundCNN(len(classes), width=width)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(cw, dtype=torch.float32))
    # validation during training uses a 2-s window hop (cheaper); the final evaluation uses the model's own
    va_x, va_owner = _record_windows(feats, va_idx, replace(spec, hop_s=max(spec.hop_s, 2.0)))
    va_wy = labels[va_idx][va_owner]

    def predict(x: np.ndarray) -> np.ndarray:
        net.eval()
        out = []
        with torch.inference_mode():
            for s in range(0, len(x), 256):
                out.append(torch.softmax(net(torch.from_numpy(x[s:s + 256])), 1).numpy())
        return np.concatenate(out)

    # the one training loop (inference.training.fit); this model brings its sampling, loss and metrics
    tally = {"correct": 0, "n": 0, "t0": time.time(), "best_epoch": 0}

    def batches(epoch: int):
        tally.update(correct=0, n=0, t0=time.time())
        x, y = _sample_windows(feats, tr_idx, labels, spec, windows_per_record, rng)
        perm = rng.permutation(len(x))
        for s in range(0, len(perm), batch):
            b = perm[s:s + batch]
            if len(b) < 2:
                continue
            if should_stop and should_stop():
                raise KeyboardInterrupt("stopped")
            yield torch.from_numpy(x[b]), torch.from_numpy(y[b])

    def step(model, b):
        xb, yb = b
        logits = model(xb)
        tally["correct"] += int((logits.argmax(1) == yb).sum())
        tally["n"] += len(yb)
        return loss_fn(logits, yb)

    def validate(model) -> dict:
        wp = predict(va_x)
        va_loss = float(np.mean(-np.log(np.maximum(wp[np.arange(len(wp)), va_wy], 1e-7)) * cw[va_wy]) / np.mean(cw[va_wy]))
        vm = evaluate(labels[va_idx], _record_probs(wp, va_owner, len(va_idx)).argmax(1), classes)
        # balanced accuracy, equal accuracies told apart by the loss
        return {"loss": va_loss, "acc": vm["accuracy"], "balanced_acc": vm["balanced_accuracy"],
                "score": vm["balanced_accuracy"] - 1e-3 * va_loss}

    history: list[dict] = []

    def on_epoch_event(e: dict) -> None:  # the event the retraining monitor reads (1-based epochs)
        if e.get("event") != "epoch":
            return emit(e)
        ep = int(e["epoch"]) + 1
        if e.get("best"):
            tally["best_epoch"] = ep
        secs = max(time.time() - tally["t0"], 1e-6)
        row = {"event": "epoch", "epoch": ep, "train_loss": e["train_loss"],
               "train_acc": tally["correct"] / max(tally["n"], 1), "val_loss": e["val_loss"],
               "val_acc": e["val_acc"], "val_balanced_acc": e["val_balanced_acc"], "lr": e["lr"],
               "seconds": e["seconds"], "windows_per_s": round(tally["n"] / secs, 1),
               "best_epoch": tally["best_epoch"]}
        history.append(row)
        emit(row)

    res = fit(net, batches, step, validate, epochs=epochs, patience=patience, lr=lr, weight_decay=1e-3,
              monitor="score", emit=on_epoch_event)
    best_epoch = res.best_epoch + 1
    stopped = res.stopped
    net.eval()

    onnx_path = out_dir / f"{name}.onnx"
    export_onnx(net, onnx_path, spec.n_mels, spec.window_frames)
    # evaluate the exported file itself (what ships), on validation and the held-out test split
    sess = onnx_session(onnx_path, threads)

    def onnx_probs(idx):
        x, owner = _record_windows(feats, idx, spec)
        wp = np.concatenate([sess.run(None, {"logmel": x[s:s + 256]})[0] for s in range(0, len(x), 256)])
        return _record_probs(wp, owner, len(idx))

    check_x, _ = _record_windows(feats, va_idx[:4], spec)
    diff = max_abs_diff(predict, sess, "logmel", check_x)
    val_p = onnx_probs(va_idx)
    test_p = onnx_probs(te_idx) if len(te_idx) else None
    val_m = evaluate(labels[va_idx], val_p.argmax(1), classes)
    test_m = evaluate(labels[te_idx], test_p.argmax(1), classes) if test_p is not None else None
    if test_m is not None and len(classes) == 2:
        # AUROC with its bootstrap CI etc., by the same code as `lightbox evaluate` on a site's own cases
        from ..evaluate import held_out_metrics

        test_m["binary"] = held_out_metrics(classes, labels[te_idx], test_p, model_id="heart-sound").get("binary")
    meta = {
        "name": name, "classes": classes, "preprocessing": spec.to_dict(),
        "input": {"name": "logmel", "shape": [None, 1, spec.n_mels, spec.window_frames]},
        "output": {"name": "probabilities", "shape": [None, len(classes)]},
        "aggregation": "whole-recording probability = mean of the window probabilities; class = argmax",
        "metrics": {"validation": val_m, "test": test_m},
        "training": {"seed": seed, "epochs_run": len(history), "max_epochs": epochs, "patience": patience, "best_epoch": best_epoch, "stopped": stopped,
                     "windows_per_record_per_epoch": windows_per_record, "batch": batch, "width": width, "lr": lr,
                     "threads": threads, "class_weights": cw.tolist(), "seconds": round(time.time() - t_start, 1),
                     "torch_onnx_max_abs_diff": diff,
                     "params": int(sum(p.numel() for p in net.parameters()))},
        "split": {k: {"records": len(v), **{c: sum(1 for i in v if i.label == c) for c in classes},
                      "by_database": _by_db(v)} for k, v in parts.items()},
        "test_records": sorted(i.record for i in parts["test"]),
        "data": data_description,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _embed_metadata(onnx_path, {k: meta[k] for k in ("name", "classes", "preprocessing", "aggregation")}
                    | {"test": _short_metrics(test_m), "validation": _short_metrics(val_m)})
    meta.update(file_facts(onnx_path))
    meta["history"] = history
    write_card(out_dir, name, meta, model_card(meta))
    emit({"event": "done", "onnx": str(onnx_path), "sha256": meta["onnx_sha256"],
          "validation": _short_metrics(val_m), "test": _short_metrics(test_m), "confusion": (test_m or val_m)["confusion"],
          "per_class": (test_m or val_m)["per_class"], "classes": classes, "seconds": meta["training"]["seconds"]})
    return meta


def _by_db(items):
    out: dict[str, int] = {}
    for i in items:
        out[i.group or "-"] = out.get(i.group or "-", 0) + 1
    return dict(sorted(out.items()))


def _short_metrics(m):
    if not m:
        return None
    keys = ("n", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "macc")
    return {k: (round(m[k], 4) if isinstance(m[k], float) else m[k]) for k in keys if k in m}


def _embed_metadata(path: Path, meta: dict) -> None:
    embed_onnx_metadata(path, ONNX_META_KEY, meta, producer="lightbox pcg-train")


def read_onnx_metadata(path: str | Path) -> dict | None:
    """The preprocessing spec / classes a ``pcg-train`` ONNX file carries, or None."""
    return _read_onnx_metadata(path, ONNX_META_KEY)


def model_card(meta: dict) -> str:
    t = meta["metrics"]["test"] or {}
    v = meta["metrics"]["validation"]
    sp = meta["preprocessing"]
    tr = meta["training"]
    classes = meta["classes"]
    rows = "\n".join(f"| {k} | {d['records']} | " + " | ".join(str(d.get(c, 0)) for c in classes)
                     + f" | {', '.join(f'{a}: {b}' for a, b in d['by_database'].items())} |"
                     for k, d in meta["split"].items())
    cm = t.get("confusion")
    cm_txt = ""
    if cm:
        cm_txt = ("| truth \\ predicted | " + " | ".join(classes) + " |\n|---|" + "---|" * len(classes) + "\n"
                  + "\n".join(f"| {c} | " + " | ".join(str(x) for x in row) + " |" for c, row in zip(classes, cm)))
    per = "\n".join(f"| {c} | {_pct(d['precision'])} | {_pct(d['recall'])} | {_pct(d['f1'])} | {d['support']} |"
                    for c, d in (t.get("per_class") or {}).items())
    binary = "sensitivity" in t
    b = t.get("binary") or {}
    auroc = (f"| AUROC (95 % stratified bootstrap CI) | {b['auroc']:.3f} ({b['auroc_ci'][0]:.3f}–{b['auroc_ci'][1]:.3f}) | – |\n"
             if b.get("auroc") is not None and b["auroc"] == b["auroc"] else "")
    headline = auroc + (f"| Accuracy | {_pct(t.get('accuracy'))} | {_pct(v.get('accuracy'))} |\n"
                + (f"| Sensitivity (abnormal recall) | {_pct(t.get('sensitivity'))} | {_pct(v.get('sensitivity'))} |\n"
                   f"| Specificity (normal recall) | {_pct(t.get('specificity'))} | {_pct(v.get('specificity'))} |\n"
                   f"| MAcc = (Se + Sp) / 2 | {_pct(t.get('macc'))} | {_pct(v.get('macc'))} |\n" if binary else
                   f"| Balanced accuracy | {_pct(t.get('balanced_accuracy'))} | {_pct(v.get('balanced_accuracy'))} |\n"))
    return f"""# {meta['name']} — Lightbox heart-sound classifier ({' / '.join(classes)})

**Lightbox's own research model. It is not a validated medical device and has not been evaluated
clinically: every result it produces is stamped NOT A CLINICAL RESULT.** The figures below come from a
small held-out split of a public challenge data set; they say how the model does on recordings like
those, not how it does on your patients, stethoscope or room.

## Data
{meta['data'] or 'Labelled recordings supplied to `lightbox pcg-train`.'}

## Split (by recording; stratified by label and source database; seed {tr['seed']})
| part | records | {' | '.join(classes)} | by database |
|---|---|{'---|' * len(classes)}---|
{rows}

The test split was used once, after training, on the exported ONNX file: it was never seen in training,
early stopping or any other choice. Its record ids are listed in `{meta['name']}.json`.

## Preprocessing (also in the manifest and embedded in the ONNX file)
Mono mix -> resample to {sp['sample_rate']} Hz (polyphase) -> Butterworth band-pass order {sp['band_order']},
{sp['band_low_hz']:g}–{sp['band_high_hz']:g} Hz, zero phase -> divide by the 99th percentile of |x| -> STFT
(Hann, n_fft {sp['n_fft']} = {1000 * sp['n_fft'] / sp['sample_rate']:g} ms, hop {sp['hop']} = {1000 * sp['hop'] / sp['sample_rate']:g} ms)
-> {sp['n_mels']} mel bands {sp['fmin_hz']:g}–{sp['fmax_hz']:g} Hz -> log(power + {sp['log_eps']:g}) -> windows of
{sp['window_s']:g} s ({int(round(sp['window_s'] * sp['sample_rate'] / sp['hop']))} frames) every {sp['hop_s']:g} s, each standardised to zero mean and unit variance.
Input `logmel` (N, 1, {sp['n_mels']}, {int(round(sp['window_s'] * sp['sample_rate'] / sp['hop']))}); output `probabilities` (N, {len(classes)}) in the order {classes}.
Whole recording: mean of its window probabilities; the class is the larger mean (threshold 0.5).

## Model and training
Small CNN (4 blocks of 3x3 conv / batch norm / ReLU / 2x2 max-pool, {tr['width']}-{2 * tr['width']}-{4 * tr['width']}-{8 * tr['width']} channels, global average
pool, dropout 0.3, linear), {tr['params']:,} parameters, {meta.get('onnx_bytes', 0) / 1024:.0f} KiB as ONNX (opset 17).
PyTorch, AdamW (lr {tr['lr']:g}, cosine decay to 1 %, weight decay 1e-3), class-weighted cross-entropy {[round(c, 3) for c in tr['class_weights']]},
{tr['windows_per_record_per_epoch']} random 4-s crops per training recording per epoch with time/frequency masking,
batch {tr['batch']}, {tr['threads']} CPU thread(s). Early stopping on validation balanced accuracy (recording level):
best epoch {tr['best_epoch']} of {tr['epochs_run']} ({tr['stopped']}); {tr['seconds'] / 60:.1f} min.
ONNX and PyTorch outputs agree to {tr['torch_onnx_max_abs_diff']:.1e}.

## Results (recording level, ONNX file)
| metric | held-out test (n = {t.get('n', 0)}) | validation (n = {v.get('n', 0)}, used for early stopping) |
|---|---|---|
{headline}
Per class on the test split:

| class | precision | recall | F1 | n |
|---|---|---|---|---|
{per}

Confusion matrix (test):

{cm_txt}

With about {t.get('n', 0)} test recordings the 95 % confidence interval of each figure is roughly ±{100 * 1.96 * (0.25 / max(t.get('n', 1), 1)) ** 0.5:.0f} points.
For scale: the best entry of the PhysioNet/CinC Challenge 2016 scored MAcc 0.86 on the challenge's hidden
test set; that is a different evaluation (other recordings, quality-weighted scoring), so the numbers are not
directly comparable.

## Reproduce
    lightbox pcg-train ../shared/reference/pcg --out resources/models --seed {tr['seed']} --epochs {tr.get('max_epochs', tr['epochs_run'])} \\
        --patience {tr.get('patience', '?')} --windows-per-record {tr['windows_per_record_per_epoch']} --width {tr['width']} --batch {tr['batch']} --threads {tr['threads']}

(these are the command's defaults). The sha256 of this file is in the manifest; another torch build or CPU
may change the last digits of the weights, and so the hash, but not the figures above beyond noise.

## Limits
Trained on {sum(d['records'] for d in meta['split'].values())} recordings from five research databases (adults and children, various
stethoscopes, mostly 2 kHz). Normal/abnormal only: it does not name the lesion, and "abnormal" in the source
data covers murmurs of valve disease and coronary artery disease recordings alike. Poor-quality recordings were
not excluded and are classified like any other. Not for diagnosis.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightbox pcg-train", description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", default=str(DEFAULT_DATA),
                   help="labels.csv folder or one sub-folder per class (default: ../shared/reference/pcg)")
    p.add_argument("--out", default="out/pcg-train", help="output folder (resources/models for the shipped model)")
    p.add_argument("--name", default="heart_sound_cnn")
    p.add_argument("--seed", type=int, default=2016)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--windows-per-record", type=int, default=8)
    p.add_argument("--width", type=int, default=12)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (1: deterministic, and fastest on a shared 2-core machine)")
    p.add_argument("--window-s", type=float, default=None, help="window length in seconds (default 4)")
    p.add_argument("--val", type=float, default=0.15)
    p.add_argument("--test", type=float, default=0.15)
    p.add_argument("--no-cache", action="store_true", help="do not cache features in the temp folder")
    p.add_argument("--jsonl", action="store_true", help="print JSON events, one per line")
    args = p.parse_args(argv)

    def human(e: dict) -> None:
        if e["event"] == "epoch":
            print(f"epoch {e['epoch']:3d}  loss {e['train_loss']:.3f}  acc {e['train_acc']:.3f}  |  val loss "
                  f"{e['val_loss']:.3f}  acc {e['val_acc']:.3f}  bal.acc {e['val_balanced_acc']:.3f}  "
                  f"(best {e['best_epoch']}, {e['seconds']:.0f} s)", flush=True)
        elif e["event"] == "features":
            print(f"features {e['done']}/{e['total']}", flush=True)
        elif e["event"] == "split":
            print("split:", {k: e[k] for k in ("train", "val", "test")}, flush=True)
        elif e["event"] == "done":
            print(f"wrote {e['onnx']} (sha256 {e['sha256']})\nvalidation: {e['validation']}\ntest: {e['test']}",
                  flush=True)

    emit = event_printer(args.jsonl, human)
    try:
        items = scan(args.data)
        spec = FeatureSpec() if args.window_s is None else FeatureSpec(window_s=args.window_s)
        desc = _describe(Path(args.data), items)
        train(items, args.out, args.name, spec=spec, seed=args.seed, epochs=args.epochs, patience=args.patience,
              windows_per_record=args.windows_per_record, width=args.width, batch=args.batch, threads=args.threads,
              val_frac=args.val, test_frac=args.test, emit=emit, cache=not args.no_cache, data_description=desc)
    except DatasetError as e:
        return report_error(e, args.jsonl)
    return 0


def _describe(root: Path, items: list[Item]) -> str:
    n = len(items)
    labs = {c: sum(1 for i in items if i.label == c) for c in classes_of(items)}
    base = f"{n} recordings ({', '.join(f'{v} {k}' for k, v in labs.items())}) from `{root.name}`."
    if (root / "labels.csv").exists() and any(i.group.startswith("training-") for i in items):
        base = (f"{n} real heart-sound recordings ({', '.join(f'{v} {k}' for k, v in labs.items())}) from the "
                "PhysioNet/CinC Challenge 2016 training sets a, b, c, d and f (mono, 16-bit, 2000 Hz, 5–120 s; "
                "labels are the challenge's reference normal/abnormal), as redistributed in the public repository "
                "`zhj12399/HeartSoundSynthesis` (`train-data/Audios`). Licence: Open Data Commons Attribution. "
                "Attribution: Liu C, Springer D, Li Q, et al. An open access database for the evaluation of heart "
                "sound algorithms. Physiol Meas 2016;37(12):2181–2213; Goldberger AL, et al. PhysioBank, "
                "PhysioToolkit, and PhysioNet. Circulation 2000;101(23):e215–e220. No recording is shipped with "
                "Lightbox; only the trained weights are.")
    return base

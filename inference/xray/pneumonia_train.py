"""``lightbox xray-train``: train the chest X-ray pneumonia classifier and export it to ONNX.

    lightbox xray-train /work/data/xray/train --out resources/models            # the shipped model
    python -m inference.xray.pneumonia_train DATA_DIR --out DIR [--jsonl]         # same, without the CLI

Data: one sub-folder per class (``NORMAL`` / ``PNEUMONIA``; see ``pneumonia_data``). Split **by patient**
(stratified by label, fixed seed): train / validation (early stopping, threshold, calibration, OOD limits) /
test (held out: used once at the end, on the exported ONNX file, for the model card only).

Preprocessing (identical in training and in the app): the 8-bit default-display greyscale image (what the
X-ray reader shows) -> whole image resized to ``size`` x ``size`` with OpenCV INTER_AREA (aspect not kept)
-> float32 0-255. The network itself standardises each image to zero mean and unit variance, so the ONNX
input is the resized 8-bit image as float.

Network: 5 conv blocks (3x3 conv / batch norm / ReLU, max-pool between blocks), global average pool,
dropout, one linear unit (the pneumonia logit). The ONNX file has four outputs:
``prob`` (N,) calibrated P(pneumonia) (Platt scaling fitted on the validation split), ``cam`` (N, h, w)
class-activation map of the last conv block for the pneumonia logit (sum_k w_k F_k: with a global average
pool and one linear layer this is exactly Grad-CAM), ``features`` (N, C) pooled features and ``ood`` (N,)
squared Mahalanobis distance of the features to the training images' features (out-of-distribution score).

Writes ``<name>.onnx`` (spec, threshold, OOD limits and metrics embedded as ONNX metadata),
``<name>.json`` and ``<name>.md`` (model card). Checkpoints and predictions go to the cache folder
(``LIGHTBOX_XRAY_CACHE``, default /work/cache/xray), never next to the model.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..metrics import roc_auc, youden_threshold
from ..training import embed_onnx_metadata, event_printer, pct as _pct, print_fields, seed_everything, state_snapshot
from ..training import write_card as _write_card
from . import pneumonia_data as pdata

ONNX_META_KEY = "lightbox.xray_pneumonia"
NAME = "xray_pneumonia_cnn"
CLASSES = ["normal", "pneumonia"]
ATTRIBUTION = ("Kermany DS, Zhang K, Goldbaum M, et al. Identifying medical diagnoses and treatable diseases by "
               "image-based deep learning. Cell 2018;172(5):1122-1131. Data: Kermany D, Zhang K, Goldbaum M. "
               "Labeled Optical Coherence Tomography (OCT) and Chest X-Ray Images for Classification. "
               "Mendeley Data 2018, v2, doi 10.17632/rscbjbr9sj.2. Licence CC BY 4.0.")


# -- network ------------------------------------------------------------------------------------------
def build_net(width: int = 16, dropout: float = 0.2):
    from torch import nn

    def cbr(i, o, stride=1):
        return [nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]

    w = width

    class PneumoniaCNN(nn.Module):
        """(N, 1, S, S) float 0-255 -> pneumonia logit (N,), last conv feature maps (N, 8w, S/16, S/16)."""

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                *cbr(1, w, 2), *cbr(w, w), nn.MaxPool2d(2),              # S/4
                *cbr(w, 2 * w), *cbr(2 * w, 2 * w), nn.MaxPool2d(2),     # S/8
                *cbr(2 * w, 4 * w), *cbr(4 * w, 4 * w), nn.MaxPool2d(2),  # S/16
                *cbr(4 * w, 8 * w), *cbr(8 * w, 8 * w),                 # S/16: the CAM layer
            )
            self.drop = nn.Dropout(dropout)
            self.fc = nn.Linear(8 * w, 1)

        @staticmethod
        def standardise(x):
            m = x.mean(dim=(1, 2, 3), keepdim=True)
            s = x.std(dim=(1, 2, 3), keepdim=True)
            return (x - m) / (s + 1.0)  # +1 grey level: a flat image stays finite

        def features(self, x):
            return self.body(self.standardise(x))

        def forward(self, x):
            f = self.features(x)
            return self.fc(self.drop(f.mean(dim=(2, 3))))[:, 0]

    return PneumoniaCNN()


def export_wrapper(net, platt: tuple[float, float], mu: np.ndarray, prec: np.ndarray):
    """The exported graph: calibrated probability, CAM, pooled features, Mahalanobis OOD distance."""
    import torch
    from torch import nn

    class Export(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net
            self.register_buffer("a", torch.tensor(float(platt[0])))
            self.register_buffer("b", torch.tensor(float(platt[1])))
            self.register_buffer("mu", torch.tensor(mu, dtype=torch.float32))
            self.register_buffer("prec", torch.tensor(prec, dtype=torch.float32))

        def forward(self, image):
            f = self.net.features(image)
            pooled = f.mean(dim=(2, 3))
            logit = self.net.fc(pooled)[:, 0]
            prob = torch.sigmoid(self.a * logit + self.b)
            cam = torch.einsum("nchw,c->nhw", f, self.net.fc.weight[0])
            d = pooled - self.mu
            ood = ((d @ self.prec) * d).sum(dim=1)
            return prob, cam, pooled, ood

    return Export().eval()


# -- augmentation -------------------------------------------------------------------------------------
def augment(x, rng: np.random.RandomState):
    """Random affine (rotation +-8 deg, scale 0.9-1.1, shift +-6 %), gamma 0.75-1.33, contrast 0.85-1.15.
    x: (N, 1, S, S) float 0-255 tensor."""
    import torch
    import torch.nn.functional as F

    n = x.shape[0]
    ang = np.deg2rad(rng.uniform(-8, 8, n))
    sc = rng.uniform(0.9, 1.1, n)
    tx, ty = rng.uniform(-0.06, 0.06, n), rng.uniform(-0.06, 0.06, n)
    cos, sin = np.cos(ang) / sc, np.sin(ang) / sc
    theta = np.stack([np.stack([cos, -sin, tx], 1), np.stack([sin, cos, ty], 1)], 1).astype(np.float32)
    grid = F.affine_grid(torch.from_numpy(theta), list(x.shape), align_corners=False)
    fill = x.mean(dim=(1, 2, 3), keepdim=True)
    y = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    y = (y / 255.0).clamp(0, 1)
    gamma = torch.from_numpy(np.exp(rng.uniform(np.log(0.75), np.log(1.33), n)).astype(np.float32))
    y = y ** gamma.view(-1, 1, 1, 1)
    c = torch.from_numpy(rng.uniform(0.85, 1.15, n).astype(np.float32)).view(-1, 1, 1, 1)
    m = y.mean(dim=(1, 2, 3), keepdim=True)
    return ((y - m) * c + m).clamp(0, 1) * 255.0


# -- small numeric helpers ------------------------------------------------------------------------------
def fit_platt(logit: np.ndarray, y: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """Platt scaling P = sigmoid(a * logit + b) fitted on validation logits: damped Newton on the
    log-likelihood with Platt's smoothed targets (never a perfect-separation blow-up); a > 0 always."""
    z = np.asarray(logit, np.float64)
    y = np.asarray(y, np.float64)
    n1, n0 = y.sum(), len(y) - y.sum()
    t = np.where(y > 0, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))
    X = np.stack([z, np.ones_like(z)], 1)

    def nll(w):
        u = X @ w
        return float(np.sum(np.logaddexp(0, u) - t * u))

    w = np.array([1.0, 0.0])
    f = nll(w)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(X @ w, -500, 500)))
        g = X.T @ (p - t)
        H = (X * (p * (1 - p) + 1e-9)[:, None]).T @ X + 1e-6 * np.eye(2)
        step = np.linalg.solve(H, g)
        lam = 1.0
        while lam > 1e-6 and nll(w - lam * step) > f:
            lam /= 2
        w_new = w - lam * step
        f_new = nll(w_new)
        if f - f_new < 1e-10:
            break
        w, f = w_new, f_new
    if not (np.isfinite(w).all() and w[0] > 0):
        return 1.0, 0.0
    return float(w[0]), float(w[1])


def fit_gaussian(feats: np.ndarray, shrink: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    mu = feats.mean(0)
    c = np.cov(feats, rowvar=False)
    c = (1 - shrink) * c + shrink * np.eye(len(c)) * np.trace(c) / len(c)
    return mu.astype(np.float32), np.linalg.inv(c).astype(np.float32)


# -- training -----------------------------------------------------------------------------------------
def _predict(net, x: np.ndarray, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Logits and pooled features of uint8 images (N, S, S), eval mode, no augmentation."""
    import torch

    net.eval()
    logits, feats = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            t = torch.from_numpy(x[i:i + batch].astype(np.float32))[:, None]
            f = net.features(t).mean(dim=(2, 3))
            logits.append(net.fc(f)[:, 0].numpy())
            feats.append(f.numpy())
    return np.concatenate(logits), np.concatenate(feats)


def train(data_dir: str | Path, out_dir: str | Path, name: str = NAME, *, size: int = 160, width: int = 16,
          seed: int = 2018, epochs: int = 12, patience: int = 5, batch: int = 32, lr: float = 2e-3,
          threads: int = 1, max_minutes: float = 0.0, val_frac: float = 0.15, test_frac: float = 0.15,
          emit: Callable[[dict], None] | None = None, cache: bool = True, items=None, classes=None,
          data_description: str = "", from_checkpoint: str | Path | None = None,
          resumed_history: list[dict] | None = None, evaluate_test: bool = True) -> dict:
    """Train (or, with ``from_checkpoint``, only finish a run whose best weights were saved: calibration,
    threshold, OOD limits, export, test evaluation, card), early-stopping on validation AUROC."""
    import torch

    emit = emit or (lambda e: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    rng = seed_everything(seed, threads)

    if items is None:
        items, classes = pdata.scan(data_dir)
    classes = list(classes or CLASSES)
    parts = pdata.split(items, seed=seed, val=val_frac, test=test_frac)
    y_all = np.array([it.label for it in items], np.int64)
    split_info = {k: {"images": len(v), "patients": len({items[i].patient for i in v}),
                      classes[0]: int((y_all[v] == 0).sum()), classes[1]: int((y_all[v] == 1).sum())}
                  for k, v in parts.items()}
    emit({"event": "split", "classes": classes, **split_info})
    pt = {k: {items[i].patient for i in v} for k, v in parts.items()}
    assert not (pt["train"] & pt["val"] or pt["train"] & pt["test"] or pt["val"] & pt["test"]), "patient leak"
    if len(parts["train"]) < 4 or not parts["val"]:
        raise pdata.DatasetError("too few images to split into training and validation sets")

    x_all, shapes = pdata.load_images(items, size, emit, cache=cache)
    tr, va, te = (np.asarray(parts[k]) for k in ("train", "val", "test"))
    xtr, ytr = x_all[tr], y_all[tr]
    xva, yva = x_all[va], y_all[va]

    net = build_net(width)
    n_params = sum(p.numel() for p in net.parameters())
    n_pos, n_neg = int(ytr.sum()), int(len(ytr) - ytr.sum())
    pos_weight = n_neg / max(n_pos, 1)  # class weighting: both classes weigh the same in the loss
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight, dtype=torch.float32))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(xtr) / batch)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / steps_per_epoch) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))))
    emit({"event": "start", "params": n_params, "train": len(xtr), "val": len(xva), "pos_weight": pos_weight,
          "size": size, "epochs": epochs})

    ckpt = pdata.cache_dir() / f"{name}-seed{seed}-best.pt"
    best_auc, best_epoch, bad, history, stopped = -1.0, 0, 0, [], f"ran all {epochs} epochs"
    best_state = None
    if from_checkpoint:
        best_state = torch.load(str(from_checkpoint), map_location="cpu", weights_only=True)
        history = list(resumed_history or [])
        if history:
            best = max(history, key=lambda h: (h["val_auroc"], h["epoch"]))
            best_auc, best_epoch = best["val_auroc"], best["epoch"]
        stopped = ((f"ran all {epochs} epochs" if len(history) >= epochs else f"{len(history)} epochs logged")
                   + "; calibration, export and evaluation run from its saved best checkpoint (--from-checkpoint)")
    for ep in range(1, 0 if from_checkpoint else epochs + 1):
        net.train()
        t0 = time.time()
        order = rng.permutation(len(xtr))
        tot, nb = 0.0, 0
        for b in range(steps_per_epoch):
            idx = order[b * batch:(b + 1) * batch]
            if len(idx) < 2:
                continue
            xb = augment(torch.from_numpy(xtr[idx].astype(np.float32))[:, None], rng)
            yb = torch.from_numpy(ytr[idx].astype(np.float32))
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += loss.item()
            nb += 1
            if b % 20 == 0:
                emit({"event": "batch", "epoch": ep, "batch": b, "of": steps_per_epoch, "loss": round(tot / nb, 4),
                      "seconds": round(time.time() - t0, 1)})
        lv, _ = _predict(net, xva)
        auc = roc_auc(yva, lv)
        row = {"epoch": ep, "loss": round(tot / max(nb, 1), 4), "val_auroc": round(auc, 4),
               "seconds": round(time.time() - t0, 1), "lr": round(sched.get_last_lr()[0], 6)}
        history.append(row)
        emit({"event": "epoch", **row})
        if auc >= best_auc:  # ties: the later epoch (settled batch-norm statistics)
            best_auc, best_epoch, bad = auc, ep, 0
            best_state = state_snapshot(net)
            torch.save(best_state, ckpt)
        else:
            bad += 1
            if bad >= patience:
                stopped = f"early stop: no validation AUROC improvement for {patience} epochs"
                break
        if max_minutes and (time.time() - t_start) / 60 > max_minutes:
            stopped = f"time budget of {max_minutes:g} min reached"
            break
    net.load_state_dict(best_state)
    net.eval()
    train_minutes = (time.time() - t_start) / 60
    if from_checkpoint and history:  # the training run's own time, from its epoch log
        train_minutes = sum(float(h.get("seconds", 0)) for h in history) / 60
    emit({"event": "trained", "best_epoch": best_epoch, "val_auroc": best_auc, "stopped": stopped,
          "minutes": round(train_minutes, 1)})

    # validation-only choices: calibration, threshold, OOD limits
    lv, fva = _predict(net, xva)
    platt = fit_platt(lv, yva.astype(np.float64))
    pva = 1 / (1 + np.exp(-np.clip(platt[0] * lv + platt[1], -60, 60)))
    thr = youden_threshold(yva, pva)
    _, ftr = _predict(net, xtr)
    mu, prec = fit_gaussian(ftr)
    d_va = np.einsum("ij,jk,ik->i", fva - mu, prec, fva - mu)
    ood_limit = float(np.quantile(d_va, 0.995) * 1.5)
    from .pneumonia import fit_image_stats, image_stats

    stats_tr = np.stack([image_stats(im) for im in xtr])
    img_gate = fit_image_stats(stats_tr)
    img_va = np.array([img_gate.distance(image_stats(im)) for im in xva])
    img_gate.limit = float(np.quantile(img_va, 0.995) * 1.5)

    spec = {"size": size, "resize": "cv2.INTER_AREA, whole image to size x size (aspect not kept)",
            "input": "8-bit default-display greyscale as float32 0-255, shape (N, 1, size, size)",
            "normalisation": "inside the network: per-image (x - mean) / (std + 1)",
            "classes": classes, "threshold": round(thr, 6), "platt": platt,
            "ood_feature_limit": ood_limit, "image_gate": img_gate.to_dict(),
            "cam_grid": [size // 16, size // 16]}

    onnx_path = out_dir / f"{name}.onnx"
    agreement = export_onnx(net, spec, mu, prec, onnx_path, xva[:64])
    emit({"event": "exported", "file": str(onnx_path), "agreement": agreement})

    # the test split: once, on the ONNX file
    from .pneumonia import PneumoniaModel

    model = PneumoniaModel(onnx_path)
    evald = (("val", va), ("test", te)) if evaluate_test else (("val", va),)
    res = {k: model.run_batch(x_all[idx]) for k, idx in evald if len(idx)}
    preds = {k: {"y": y_all[idx], "prob": res[k]["prob"], "ood": res[k]["ood"],
                 "files": [items[i].path.name for i in idx]} for k, idx in evald if len(idx)}
    np.savez(pdata.cache_dir() / f"{name}-seed{seed}-preds{'' if evaluate_test else '-dev'}.npz",
             **{f"{k}_{f}": np.asarray(v[f]) for k, v in preds.items() for f in ("y", "prob", "ood", "files")})
    card = {
        "name": name, "classes": classes, "preprocessing": spec,
        "input": {"name": "image", "shape": [None, 1, size, size], "dtype": "float32"},
        "outputs": {"prob": [None], "cam": [None, size // 16, size // 16], "features": [None, 8 * width],
                    "ood": [None]},
        "data": data_description or "Kermany paediatric chest X-ray set, train/ folder only",
        "attribution": ATTRIBUTION,
        "split": {"by": "patient", "seed": seed, "fractions": [1 - val_frac - test_frac, val_frac, test_frac],
                  **split_info, "test_files": [items[i].path.name for i in te]},
        "training": {"seed": seed, "epochs_max": epochs, "epochs_run": len(history), "best_epoch": best_epoch,
                     "stopped": stopped, "patience": patience, "batch": batch, "lr": lr, "width": width,
                     "params": n_params, "pos_weight": round(pos_weight, 4), "threads": threads,
                     "minutes": round(train_minutes, 1), "history": history,
                     "torch": torch.__version__},
        "agreement_torch_onnx": agreement,
        "onnx_bytes": onnx_path.stat().st_size,
    }
    card["metrics"] = evaluate_card(preds, thr)
    card["ood"] = ood_report(model, {k: x_all[idx] for k, idx in evald if len(idx)}, xva)
    write_card(card, out_dir)
    emit({"event": "done", "test": {k: card["metrics"].get("test", {}).get(k) for k in
                                    ("auroc", "auroc_ci", "sensitivity", "specificity")},
          "minutes": round((time.time() - t_start) / 60, 1)})
    return card


def export_onnx(net, spec: dict, mu, prec, path: Path, check: np.ndarray) -> dict:
    import torch

    wrapper = export_wrapper(net, spec["platt"], mu, prec)
    dummy = torch.zeros(1, 1, spec["size"], spec["size"])
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(wrapper, dummy, str(tmp), input_names=["image"],
                      output_names=["prob", "cam", "features", "ood"], opset_version=17,
                      dynamic_axes={"image": {0: "n"}, "prob": {0: "n"}, "cam": {0: "n"},
                                    "features": {0: "n"}, "ood": {0: "n"}}, dynamo=False)
    embed_onnx_metadata(tmp, ONNX_META_KEY, spec)
    tmp.replace(path)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xin = check.astype(np.float32)[:, None]
    o = sess.run(None, {"image": xin})
    with torch.no_grad():
        t = wrapper(torch.from_numpy(xin))
    diffs = {n: float(np.abs(a - b.numpy()).max()) for n, a, b in zip(("prob", "cam", "features", "ood"), o, t)}
    if diffs["prob"] > 1e-4:
        raise RuntimeError(f"ONNX and torch disagree: {diffs}")
    return {"images": int(len(xin)), "max_abs_diff": diffs}


def ood_cases(val_images: np.ndarray, n: int = 8) -> list[tuple[str, np.ndarray]]:
    """Images that must be refused: generated ones, validation radiographs inverted / rotated 90 degrees, and
    whatever public non-radiograph test files this machine has (a colour photo, a CT and an MR slice)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:400, 0:400]
    cases = [("uniform noise", rng.integers(0, 256, (400, 400)).astype(np.uint8)),
             ("Gaussian noise", np.clip(rng.normal(128, 40, (400, 400)), 0, 255).astype(np.uint8)),
             ("blank grey image", np.full((300, 300), 128, np.uint8)),
             ("black image", np.zeros((300, 300), np.uint8)),
             ("grey ramp", (xx * 255 / 399).astype(np.uint8)),
             ("colour ramp (RGB)", np.stack([xx * 0.6, yy * 0.6, 255 - xx * 0.6], -1).astype(np.uint8))]
    pick = val_images[:: max(1, len(val_images) // n)][:n]
    cases += [(f"validation radiograph {i}, inverted", 255 - im) for i, im in enumerate(pick)]
    cases += [(f"validation radiograph {i}, rotated 90 degrees", np.ascontiguousarray(np.rot90(im)))
              for i, im in enumerate(pick)]
    try:
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if p.exists():
            im = pdata.decode_grey(p)
            import cv2

            rgb = cv2.imread(str(p))[..., ::-1]
            cases += [("colour photograph (matplotlib grace_hopper.jpg)", np.ascontiguousarray(rgb)),
                      ("the same photograph in greyscale", im)]
    except Exception:  # pragma: no cover - optional
        pass
    try:
        import pydicom
        from pydicom.data import get_testdata_file

        for f in ("CT_small.dcm", "MR_small.dcm"):
            ds = pydicom.dcmread(get_testdata_file(f))
            a = ds.pixel_array.astype(np.float32)
            lo, hi = np.percentile(a, [0.5, 99.5])
            g = np.clip((a - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
            cases.append((f"{ds.Modality} slice (pydicom {f}) as a greyscale image, no modality hint", g))
    except Exception:  # pragma: no cover - optional
        pass
    return cases


def ood_report(model, split_images: dict[str, np.ndarray], val_images: np.ndarray) -> dict:
    """How often the gate refuses in-distribution images (val/test), and what it does with OOD cases."""
    from .pneumonia import image_stats

    out = {"refused": {}}
    for k, xs in split_images.items():
        o = model.run_batch(xs)
        img_d = np.array([model.gate.distance(image_stats(im)) for im in xs])
        refused = (img_d > model.gate.limit) | (o["ood"] > model.feature_limit)
        out["refused"][k] = {"n": int(len(xs)), "refused": int(refused.sum()),
                             "by_image_stats": int((img_d > model.gate.limit).sum()),
                             "by_features": int((o["ood"] > model.feature_limit).sum())}
    out["cases"] = []
    for name, img in ood_cases(val_images):
        r = model.analyse(img)
        out["cases"].append({"case": name, "refused": not r["in_distribution"], "reason": r["ood_reason"],
                             "p": round(r["probability"], 3),
                             "image_stats_distance": r["ood_scores"]["image_stats_distance"],
                             "feature_distance": r["ood_scores"]["feature_distance"]})
    out["limits"] = {"image_stats": round(model.gate.limit, 3), "features": round(model.feature_limit, 3)}
    return out


def evaluate_card(preds: dict, thr: float) -> dict:
    from ..metrics import binary_summary  # the shared metric definitions

    out = {}
    from .pneumonia_data import patient_id

    for k, v in preds.items():
        # the interval resamples children, not images, when the file names are known (several images of
        # one child are not independent)
        files = v.get("files")
        clusters = [patient_id(str(f)) for f in files] if files is not None and len(files) else None
        s = binary_summary(np.asarray(v["y"]), np.asarray(v["prob"], np.float64), thr, clusters=clusters)
        s["threshold"] = thr
        out[k] = s
    return out


# -- model card -----------------------------------------------------------------------------------------
def write_card(card: dict, out_dir: Path) -> None:
    _write_card(out_dir, card["name"], card, card_markdown(card), indent=1, default=float, end="\n")


def card_markdown(c: dict) -> str:
    sp, tr, pre = c["split"], c["training"], c["preprocessing"]
    te, va = c["metrics"].get("test", {}), c["metrics"].get("val", {})
    cls = c["classes"]
    ci_note = ("The AUROC interval is a 2000-resample bootstrap over children: all images of one patient are "
               "resampled together,\nso several images of one child do not count as independent evidence."
               if str(te.get("auroc_ci_resampled", "")).startswith("clusters") else
               "The AUROC interval is a 2000-resample bootstrap over images (several images of one child are not\n"
               "independent, so the interval is somewhat optimistic).")
    rows = "\n".join(f"| {k} | {sp[k]['patients']} | {sp[k]['images']} | {sp[k][cls[0]]} | {sp[k][cls[1]]} |"
                     for k in ("train", "val", "test"))

    def ci(m):
        lo, hi = m.get("auroc_ci") or (None, None)
        return f"{m.get('auroc', float('nan')):.3f} (95 % CI {lo:.3f}–{hi:.3f})" if lo is not None else "–"

    conf = te.get("confusion") or [[0, 0], [0, 0]]
    ood = c.get("ood") or {"refused": {}, "cases": []}
    refused = "; ".join(f"{k}: {v['refused']} of {v['n']} ({v['by_image_stats']} by image statistics, "
                        f"{v['by_features']} by features)" for k, v in ood["refused"].items())
    cases = "\n".join(f"| {x['case']} | {'refused' if x['refused'] else '**accepted**'} | {x['reason'] or '–'} | "
                       f"{x.get('image_stats_distance', float('nan')):.0f} | {x.get('feature_distance', float('nan')):.1f} | "
                       f"{x['p']:.3f} |" for x in ood["cases"])
    lim = ood.get("limits") or {}
    cal = "\n".join(f"| {b['bin'][0]:.1f}–{b['bin'][1]:.1f} | {b['n']} | {b['mean_pred']:.2f} | {b['frac_pos']:.2f} |"
                    for b in te.get("calibration", []) if b.get("n"))
    return f"""# {c['name']} — Lightbox chest X-ray pneumonia classifier (normal / pneumonia)

**Lightbox's own research model. It is not a validated medical device and has not been evaluated
clinically: every result it produces is stamped NOT A CLINICAL RESULT.** The figures below come from
held-out children of one public data set; they say how the model does on radiographs like those, not on
your patients, your X-ray equipment or your population.

## Data
{c['data']}. Attribution: {c['attribution']}
No radiograph is shipped with the model; the two demo radiographs in `resources/xray/` are test-split
images of this set (CC BY 4.0, attribution shown in the app and the PDF).

## Population — read this before use
Paediatric patients aged one to five years, anterior-posterior chest radiographs, all from one centre
(Guangzhou Women and Children's Medical Center), labelled normal or pneumonia (bacterial or viral) by
the data set's graders. **Adults, lateral views, other centres, devices, lines/tubes and other diseases are
outside what this model was trained on.** A PNEUMONIA label here means "looks like the pneumonia images of this
set", not a diagnosis; the model does not distinguish bacterial from viral pneumonia.

## Split (by patient; stratified by label; seed {sp['seed']})
| part | patients | images | {cls[0]} | {cls[1]} |
|---|---|---|---|---|
{rows}

Patient id from the file name: `person1000_bacteria_2931` -> person1000, `IM-0115-0001` -> IM-0115,
`NORMAL2-IM-0383-0001` -> IM-0383 (the NORMAL2 and IM series share numbers, so they are merged: stricter,
never leaky). Only `train/` of the public copy was used (its `val/` and `test/` are resized copies of
`train/` files). The test split was used once, after training, on the exported ONNX file; its file names are
listed in `{c['name']}.json`.

## Preprocessing (embedded in the ONNX metadata under `{ONNX_META_KEY}`)
8-bit default-display greyscale (what the X-ray viewer shows; colour input is converted to luminance) ->
whole image resized to {pre['size']} x {pre['size']} px with OpenCV INTER_AREA (aspect ratio not kept) ->
float32 0–255 -> inside the network: per-image standardisation (x - mean) / (std + 1).
Input `image` (N, 1, {pre['size']}, {pre['size']}). Outputs: `prob` calibrated P(pneumonia) (Platt scaling
a = {pre['platt'][0]:.3f}, b = {pre['platt'][1]:.3f} on the validation logits; calibrated to this data set's
prevalence of about 74 % pneumonia, not to a clinical population), `cam` ({pre['cam_grid'][0]} x
{pre['cam_grid'][1]} class-activation map of the last conv block = Grad-CAM for this architecture),
`features`, `ood` (squared Mahalanobis distance of the pooled features to the training images').

## Model and training
CNN, 8 conv layers in 4 stages (3x3 conv / batch norm / ReLU, widths {tr['width']}-{2 * tr['width']}-{4 * tr['width']}-{8 * tr['width']},
stride-2 stem, max-pool between stages), global average pool, dropout 0.2, one linear unit; {tr['params']:,} parameters,
{c['onnx_bytes'] / 1024:.0f} KiB as ONNX (opset 17). PyTorch {tr['torch']}, AdamW (lr {tr['lr']}, warm-up 1 epoch, cosine
decay), class-weighted binary cross-entropy (pneumonia weight {tr['pos_weight']} = normal/pneumonia count ratio of
the training split), augmentation: random rotation ±8°, scale 0.9–1.1, shift ±6 %, gamma 0.75–1.33, contrast
0.85–1.15 (no flips). Batch {tr['batch']}, {tr['threads']} CPU thread. Early stopping on validation AUROC: best
epoch {tr['best_epoch']} of {tr['epochs_run']} ({tr['stopped']}); {tr['minutes']} min.
ONNX and PyTorch agree to {c['agreement_torch_onnx']['max_abs_diff']['prob']:.1e} (probability, {c['agreement_torch_onnx']['images']} validation images).

## Shipped threshold
P(pneumonia) >= **{pre['threshold']:.3f}** -> PNEUMONIA. Chosen on the validation split only (maximum of
sensitivity + specificity, Youden's J), never on the test split.

## Results (image level, ONNX file)
| metric | held-out test (n = {te.get('n')}) | validation (n = {va.get('n')}, used for choices) |
|---|---|---|
| AUROC | {ci(te)} | {ci(va)} |
| Sensitivity at threshold | {_pct(te.get('sensitivity'))} | {_pct(va.get('sensitivity'))} |
| Specificity at threshold | {_pct(te.get('specificity'))} | {_pct(va.get('specificity'))} |
| PPV | {_pct(te.get('ppv'))} | {_pct(va.get('ppv'))} |
| NPV | {_pct(te.get('npv'))} | {_pct(va.get('npv'))} |
| Accuracy | {_pct(te.get('accuracy'))} | {_pct(va.get('accuracy'))} |
| Brier score | {te.get('brier', float('nan')):.3f} | {va.get('brier', float('nan')):.3f} |

Confusion matrix (test, at the shipped threshold):

| truth \\ predicted | normal | pneumonia |
|---|---|---|
| normal | {conf[0][0]} | {conf[0][1]} |
| pneumonia | {conf[1][0]} | {conf[1][1]} |

Calibration (test; bins of predicted probability):

| bin | n | mean predicted | fraction pneumonia |
|---|---|---|---|
{cal}

{ci_note} For scale: Kermany et al. report AUROC 0.968 on their own
test set, and published models on this set reach about 0.97–0.99; those are different splits.

## Out of distribution
Two gates, both fitted on the training split with limits set on the validation split (1.5 x its
99.5th percentile): (1) statistics of the resized image (brightness, contrast, dark and bright fractions,
left-right and top-bottom symmetry, edge density, central vs border brightness, the bright mediastinal column
between dark lungs, and a 6 x 6 standardised thumbnail of the film's layout) as a Mahalanobis distance; (2) the network's own
pooled features as a Mahalanobis distance. A colour image or a DICOM of another modality is refused before
either. When a gate trips, the app says "outside what this model was trained on" and shows no pneumonia label.
The gates catch images that are clearly not paediatric frontal chest radiographs; they do not make an adult
chest radiograph in distribution.

In-distribution radiographs refused (the cost of the gate): {refused or '–'}.

| check image | gate | reason | image-statistics distance (limit {lim.get('image_stats', float('nan')):.0f}) | feature distance (limit {lim.get('features', float('nan')):.1f}) | P(pneumonia) the network would have given |
|---|---|---|---|---|---|
{cases}

The last column is why the gate exists: the network alone calls many non-radiographs "pneumonia" with high
confidence, and its feature distance by itself flags only the crudest cases (noise, blank images); the
image-statistics gate does most of the refusing. Judge the gate by this table, not by faith: an image that is a
chest radiograph of another population (an adult, another hospital) passes it.

## Reproduce
    lightbox xray-train /work/data/xray/train --out resources/models --seed {sp['seed']} --size {pre['size']} \\
        --width {tr['width']} --epochs {tr['epochs_max']} --patience {tr['patience']} --batch {tr['batch']} --threads {tr['threads']}

The sha256 of the ONNX file is in the manifest; another torch build or CPU may change the last digits of the
weights (and so the hash), not the figures above beyond noise.

## Limits
Not for diagnosis. One centre, children only, two labels. No lateral views. The heatmap shows where the
network's pneumonia evidence lies on the {pre['cam_grid'][0]} x {pre['cam_grid'][1]} grid of its last layer; it is not a
segmentation of consolidation and may highlight text markers or borders.
"""


def rebuild_card(out_dir: str | Path, name: str = NAME, seed: int = 2018) -> dict:
    """Recompute the card's metrics from the cached predictions (the test split is not re-run)."""
    out_dir = Path(out_dir)
    card = json.loads((out_dir / f"{name}.json").read_text())
    with np.load(pdata.cache_dir() / f"{name}-seed{seed}-preds.npz") as z:
        preds = {k: {f: z[f"{k}_{f}"] for f in ("y", "prob", "ood", "files") if f"{k}_{f}" in z}
                 for k in ("val", "test") if f"{k}_y" in z}
    card["metrics"] = evaluate_card(preds, float(card["preprocessing"]["threshold"]))
    card["onnx_bytes"] = (out_dir / f"{name}.onnx").stat().st_size
    write_card(card, out_dir)  # the OOD section is kept as the training run wrote it
    return card


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lightbox xray-train", description=__doc__.split("\n")[0])
    ap.add_argument("data", help="folder with NORMAL/ and PNEUMONIA/ sub-folders (or the release's top folder)")
    ap.add_argument("--out", required=True, help="output folder for the .onnx, .json and .md")
    ap.add_argument("--name", default=NAME)
    ap.add_argument("--seed", type=int, default=2018)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="stop after this long (keeps the best epoch)")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--jsonl", action="store_true", help="one JSON event per line")
    ap.add_argument("--from-checkpoint", help="skip training: finish from this saved best-weights file")
    ap.add_argument("--history-log", help="with --from-checkpoint: the run's --jsonl log, for the card's history")
    ap.add_argument("--no-test", action="store_true",
                    help="development export: do not evaluate the held-out test split")
    ap.add_argument("--card-only", action="store_true", help="rewrite the model card in --out from cached predictions")
    a = ap.parse_args(argv)
    if a.card_only:
        c = rebuild_card(a.out, a.name, a.seed)
        print(json.dumps({k: c["metrics"].get("test", {}).get(k) for k in ("auroc", "auroc_ci", "sensitivity",
                                                                          "specificity")}, default=float))
        return 0

    def human(e):
        if e["event"] in ("split", "start", "epoch", "trained", "exported", "done") or (
                e["event"] == "images" and e["done"] in (e["total"],)):
            print_fields(e)

    emit = event_printer(a.jsonl, human, default=float)

    try:
        hist = None
        if a.history_log:
            hist = [{k: v for k, v in e.items() if k != "event"} for e in map(json.loads, open(a.history_log))
                    if e.get("event") == "epoch"]
        train(a.data, a.out, a.name, size=a.size, width=a.width, seed=a.seed, epochs=a.epochs, patience=a.patience,
              batch=a.batch, lr=a.lr, threads=a.threads, max_minutes=a.max_minutes, emit=emit, cache=not a.no_cache,
              from_checkpoint=a.from_checkpoint, resumed_history=hist, evaluate_test=not a.no_test)
    except pdata.DatasetError as e:
        print(f"lightbox xray-train: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

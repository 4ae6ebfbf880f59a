"""The polyp model's feature gate: is a frame like the frames the model was trained on?

The colour rule (:func:`inference.endo.polyp.domain_check`) stops grey, dark and non-red images before the
model. It lets through anything red-pink -- e.g. the synthetic demo tunnel, which the model calls polyp at
confidence ~1.0. The feature gate looks at what the network itself sees: the global-average-pooled
bottleneck (the 320 channels of the last EfficientNet-Lite0 block the decoder starts from).

- fit (:func:`fit_gate`), TRAINING frames only (the sources the model was trained on, split == 'train'), each
  with ``views`` augmented views made by the training augmentation (crops, turns, flips, colour jitter, blur:
  what the segmenter was trained on, and what a moving endoscope shows; fitted on the whole frames alone, the
  gate refused one in ten frames of a slow pan over real polyps): mean and the top ``dims`` principal
  components whitened with a shrinkage covariance (:func:`inference.training.fit_whitening`); the score is
  |z|^2, a Mahalanobis distance in that space;
- limit, on VALIDATION frames only (and as many augmented views of each): the smallest distance that keeps
  >= ``keep`` of them in domain (the ``keep`` quantile, rounded up to the next frame);
- the constants go into the ONNX graph (output ``ood``, :class:`inference.endo.polyp_net.GatedUNet`) and the
  limit into its ``lightbox.polyp`` metadata (``domain_gate``), so the file's sha256 pins both.

:func:`gate_report` counts the frames the shipped file refuses (validation, the held-out test frames, the
cross-site model on another centre's frames, non-endoscopy images, the synthetic demo): the card's table.
Torch is imported by the fitting code only; the report runs the exported ONNX file through the class the
app uses.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

GATE_DIMS = None      # principal components kept: all of them (320 Lite0 features; 1782 training frames)
GATE_SHRINK = 0.05    # eigenvalues shrunk this far toward their mean
GATE_KEEP = 0.99      # the limit keeps at least this fraction of the validation frames in domain
GATE_VIEWS = 2        # augmented views per frame added to the fit and to the limit (camera motion, see fit_gate)
GATE_SEED = 7


def torch_features(net, images: np.ndarray, size: int, batch: int = 32) -> np.ndarray:
    """Pooled bottleneck features [N, C] of uint8 frames (resized to ``size``; C = 320 for Lite0), torch, eval mode."""
    import torch

    from .polyp_net import MeanUNet, bottleneck_features
    from .polyp_views import resize_all, to_input

    net = net.members[0] if isinstance(net, MeanUNet) else net  # the gate reads the first member's features
    net.eval()
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(to_input(resize_all(np.asarray(images[s:s + batch]), size)))
            out.append(bottleneck_features(net, x)[1].numpy())
    return np.concatenate(out) if out else np.zeros((0, getattr(net, "n_features", 320)), np.float32)


def feature_name(net) -> str:
    """What the gate's features are, for the card and the ONNX metadata."""
    from .polyp_net import ENCODERS, MeanUNet

    first = net.members[0] if isinstance(net, MeanUNet) else net
    enc = getattr(first, "encoder_name", "lite0")
    spec = ENCODERS[enc]
    return (f"global-average-pooled stride-32 bottleneck ({spec['channels'][-1]} channels of EfficientNet-"
            f"{enc.capitalize()} block {spec['taps'][-1]})")


def distances(feats: np.ndarray, mu: np.ndarray, proj: np.ndarray) -> np.ndarray:
    z = (np.asarray(feats, np.float64) - mu) @ proj
    return (z * z).sum(1)


LIMIT_MARGIN = 1e-3  # the torch-vs-ONNX tolerance of the 'ood' output (agreement check), so the frame that sets
                     # the limit stays in domain when the app computes its distance with ONNX Runtime


def limit_for(val_dist: np.ndarray, keep: float = GATE_KEEP) -> float:
    """The smallest distance that keeps >= ``keep`` of the validation frames (<= limit is in domain), raised
    by ``LIMIT_MARGIN`` (relative)."""
    d = np.sort(np.asarray(val_dist, np.float64))
    k = int(np.ceil(keep * len(d))) - 1
    return float(d[min(max(k, 0), len(d) - 1)]) * (1 + LIMIT_MARGIN)


def with_views(images: np.ndarray, masks: np.ndarray | None, views: int, size: int, seed: int = GATE_SEED) -> np.ndarray:
    """The frames (resized to ``size``) followed by ``views`` augmented views of each (the training
    augmentation, seeded), uint8 [N * (1 + views), size, size, 3]."""
    from .polyp_views import augment, resize_all

    base = resize_all(np.asarray(images), size)
    if not views:
        return base
    rng = np.random.RandomState(seed)
    out = [base]
    for _ in range(views):
        out.append(np.stack([augment(img, (masks[i] if masks is not None else np.zeros(img.shape[:2], np.uint8)),
                                     size, rng)[0] for i, img in enumerate(images)]))
    return np.concatenate(out)


def fit_gate(net, data: dict, use: np.ndarray, size: int, *, dims: int | None = GATE_DIMS, shrink: float = GATE_SHRINK,
             keep: float = GATE_KEEP, views: int = GATE_VIEWS, emit: Callable[[dict], None] = lambda e: None) -> dict:
    """Fit on the training frames of the model's sources (``use``) and ``views`` augmented views of each,
    the limit on their validation frames (with as many views). Returns {'mu', 'proj', 'facts'} (facts:
    JSON-able, stored in the ONNX metadata and on the card)."""
    from ..training import fit_whitening

    t = time.time()
    split, source = data["split"], data["source"]
    masks = data.get("masks")
    tr = np.flatnonzero(use & (split == "train"))
    va = np.flatnonzero(use & (split == "val"))
    f_tr = torch_features(net, with_views(data["images"][tr], None if masks is None else masks[tr], views, size, GATE_SEED), size)
    f_va = torch_features(net, with_views(data["images"][va], None if masks is None else masks[va], views, size, GATE_SEED + 1), size)
    dims = f_tr.shape[1] if dims is None else dims
    mu, proj = fit_whitening(f_tr, dims=dims, shrink=shrink)
    d_tr, d_va = distances(f_tr, mu, proj), distances(f_va, mu, proj)
    limit = limit_for(d_va, keep)
    facts = {
        "limit": round(limit, 3), "feature": feature_name(net),
        "score": f"|(f - mu) @ P|^2: Mahalanobis distance in the top {dims} principal components of the training "
                 f"frames' features, eigenvalues shrunk {shrink:g} toward their mean",
        "channels": int(f_tr.shape[1]), "dims": dims, "shrink": shrink, "keep": keep, "views": views,
        "fit_on": {s: int((source[tr] == s).sum()) for s in sorted(set(source[tr]))},
        "limit_on": {s: int((source[va] == s).sum()) for s in sorted(set(source[va]))},
        "augmented_views": f"each frame plus {views} views by the training augmentation (seeded): {len(f_tr)} fitted, {len(f_va)} for the limit",
        "rule": f"the smallest distance that keeps >= {keep:.0%} of the validation frames and their views in domain (+{LIMIT_MARGIN:.1%}, "
                "the torch-vs-ONNX tolerance)",
        "train_distance_quantiles": {q: round(float(np.quantile(d_tr, float(q))), 2) for q in ("0.5", "0.99")},
        "val_refused": int((d_va[:len(va)] > limit).sum()), "val_frames": int(len(va)),
        "val_views_refused": int((d_va[len(va):] > limit).sum()), "val_views": int(len(d_va) - len(va)),
        "val_refused_by_source": {s: int((d_va[:len(va)][source[va] == s] > limit).sum()) for s in sorted(set(source[va]))},
        "seconds": round(time.time() - t, 1),
    }
    emit({"event": "domain_gate", **{k: facts[k] for k in ("limit", "fit_on", "val_refused", "val_frames", "seconds")}})
    return {"mu": mu, "proj": proj, "facts": facts}


# -- the card's table --------------------------------------------------------------------------------------
def _refused(seg, frames, batch: int = 8) -> dict:
    """How many frames the gated segmenter refuses: by the colour rule, by the feature gate; and how
    many of the rest it calls polyp."""
    colour = feature = polyp = 0
    dist = []
    for s in range(0, len(frames), batch):
        for r in seg.analyse(list(frames[s:s + batch])):
            if not r.in_domain:
                if r.domain_distance is None:
                    colour += 1
                else:
                    feature += 1
            polyp += bool(r.polyp)
            if r.domain_distance is not None:
                dist.append(r.domain_distance)
    n = len(frames)
    return {"frames": n, "refused": colour + feature, "refused_colour": colour, "refused_features": feature,
            "called_polyp": polyp, "median_distance": round(float(np.median(dist)), 1) if dist else None}


def generated_ood(seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Non-endoscopy images generated here: uniform noise, red-pink noise (passes the colour rule)."""
    rng = np.random.default_rng(seed)
    noise = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(10)]
    pink = []
    for _ in range(10):
        a = rng.random((256, 256, 3))
        pink.append(np.clip(np.stack([150 + 100 * a[..., 0], 40 + 60 * a[..., 1], 50 + 60 * a[..., 2]], -1), 0, 255)
                    .astype(np.uint8))
    return {"uniform noise": noise, "red-pink noise (passes the colour rule)": pink}


def real_non_endo() -> dict[str, list[np.ndarray]]:
    """The X-ray demo radiograph shipped in resources/xray and an echo demo frame, when present."""
    import cv2

    out: dict[str, list[np.ndarray]] = {}
    root = Path(__file__).resolve().parents[2] / "resources" / "xray"
    xr = [p for p in sorted(root.glob("*")) if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    imgs = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in xr if cv2.imread(str(p)) is not None]
    if imgs:
        out["X-ray demo radiograph (resources/xray)"] = imgs
    return out


def gate_report(onnx_path, data: dict, *, min_confidence: float, cross_onnx=None,
                emit: Callable[[dict], None] = lambda e: None) -> dict:
    """Frames the shipped file refuses (colour rule + feature gate, as in the app)."""
    from .polyp import PolypSegmenter
    from .polyp_eval import _originals, demo_video_frames, ood_sets

    seg = PolypSegmenter(onnx_path, threads=1, gate=True, min_confidence=min_confidence)
    split, source = data["split"], data["source"]
    rows: dict[str, dict] = {}
    val = np.flatnonzero(split == "val")
    rows["validation frames (limit chosen here)"] = _refused(seg, data["images"][val])
    test = np.flatnonzero(split == "test")
    names = {"kvasir": "Kvasir-SEG", "cvc": "CVC-ClinicDB", "normal": "polyp-free crops"}
    for s in ("kvasir", "cvc", "normal"):
        idx = test[source[test] == s]
        rows[f"internal test: {names[s]}"] = _refused(seg, [img for img, _ in _originals(data, idx)])
    if cross_onnx is not None:  # the model trained without CVC-ClinicDB, gated by its own training frames
        xseg = PolypSegmenter(cross_onnx, threads=1, gate=True, min_confidence=min_confidence)
        cvc = np.flatnonzero(source == "cvc")
        rows["cross-site: CVC-ClinicDB, every frame, by the model trained without it"] = \
            _refused(xseg, [img for img, _ in _originals(data, cvc)])
    fr, free, usable, _fps = demo_video_frames()
    dn = np.flatnonzero(free & usable)
    rows["synthetic demo video: usable polyp-free frames"] = _refused(seg, [fr[i] for i in dn])
    blob = np.flatnonzero(~free & usable)
    rows["synthetic demo video: frames with its planted blob"] = _refused(seg, [fr[i] for i in blob])
    for k, frames in {**real_non_endo(), **ood_sets(), **generated_ood()}.items():
        rows[k] = _refused(seg, frames)
    emit({"event": "gate_report", **{k: f"{v['refused']}/{v['frames']}" for k, v in rows.items()}})
    return {"limit": seg.domain_limit, "rows": rows, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def card_update(data: dict, res: dict, xres: dict | None, out_dir, name: str, *, previous_onnx=None,
                emit: Callable[[dict], None] = lambda e: None, argv=None) -> dict:
    """``lightbox polyp-train ... --stage gate``: after a re-export (``--stage main --epochs 0 --init CKPT``,
    which scores nothing), add the feature gate's figures to the existing card WITHOUT rescoring the test
    split's segmentation or detection: the gate table (one logged look: refusals and calls, no Dice), the
    demo video, speed, the new file's hash and agreement check. Everything else on the card is kept."""
    import hashlib
    import json
    import shutil

    from ..training import write_card
    from .polyp import PolypSegmenter
    from .polyp_eval import demo_findings, log_look, model_card, speed

    out_dir = Path(out_dir)
    onnx_path = out_dir / f"{name}.onnx"
    if Path(res["onnx"]).resolve() != onnx_path.resolve():
        shutil.copyfile(res["onnx"], onnx_path)
    card_json = out_dir / f"{name}.json"
    meta = json.loads(card_json.read_text())
    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    M = meta["metrics"]
    op = M["operating_point"]
    gated = PolypSegmenter(onnx_path, threads=1, gate=True, min_confidence=op["min_confidence"])
    if gated.domain_limit is None:
        raise ValueError(f"{onnx_path} has no feature gate: re-export it first (--stage main --epochs 0 --init CKPT)")
    re_export = dict(meta.get("re_export") or {})
    if meta.get("onnx_sha256") != sha:
        re_export = {"previous_onnx_sha256": re_export.get("previous_onnx_sha256", meta.get("onnx_sha256")),
                     "from_checkpoint": Path(str(res.get("checkpoint"))).name}
        if previous_onnx:  # the mask output of the file it replaces, on validation frames
            old = PolypSegmenter(previous_onnx, threads=1, gate=False)
            vi = np.flatnonzero(data["split"] == "val")[:32]
            frames = list(data["images"][vi])
            a, b = old.probabilities(frames), gated.probabilities(frames)
            re_export["mask_probability_max_abs_diff_vs_previous"] = float(np.max(np.abs(a - b)))
            re_export["mask_pixels_disagreeing_vs_previous"] = float(((a >= 0.5) != (b >= 0.5)).mean())
            re_export["checked_on"] = f"{len(frames)} validation frames"
    fg = gate_report(onnx_path, data, min_confidence=op["min_confidence"],
                     cross_onnx=(xres or {}).get("onnx"), emit=emit)
    looks = log_look(name, {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "onnx_sha256": sha,
                            "what": "feature gate only: frames refused and called polyp per test source (no Dice, "
                                    "no operating point changed)"},
                     meta.get("test_looks", []))
    M["domain_gate"] = fg
    M["false_findings"]["demo_video"] = demo_findings(gated, op["persistence"]["persist_confidence"])
    val = np.flatnonzero(data["split"] == "val")
    M["speed"] = speed(gated, data["images"][val[0]])
    meta["output"]["features"] = (f"float32 [N, {(res.get('domain_gate') or {}).get('channels', 320)}]: "
                                  "pooled bottleneck features")
    meta["output"]["ood"] = "float32 [N, 1]: whitened distance from the training frames' features (the feature gate)"
    meta["domain_gate"] = res.get("domain_gate")
    meta["re_export"] = re_export
    meta["torch_onnx_agreement"] = res["agreement"]
    meta["test_looks"] = looks
    meta["onnx_sha256"], meta["onnx_bytes"] = sha, onnx_path.stat().st_size
    meta["gate_command"] = ("lightbox polyp-train DATA_DIR --out " + str(out_dir) + " --stage gate"
                            + (" --previous-onnx PREVIOUS.onnx" if previous_onnx else "")
                            + (" --no-cross-site" if xres is None else ""))
    meta["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_card(out_dir, name, meta, model_card(meta), indent=1, default=float, end="\n")
    emit({"event": "card", "onnx_sha256": sha, "limit": fg["limit"]})
    return meta

"""Seeded random checkpoints in the official file layouts, for tests and benchmarks.

They exercise the real loading code (``inference.xray.medsight``) end to end; their numbers
mean nothing, and the registry only accepts them as ``--unofficial`` installs, so every result from
them is stamped NOT A CLINICAL RESULT.

- ``vgg16-397923af.pth``: a torchvision VGG16 state dict (``features.*`` + ``classifier.*``). The
  classifier (~120 M parameters, ~480 MB) is never loaded by Lightbox, so by default its tensors are
  written as small placeholders under the official key names; ``full_classifier=True`` writes them at
  full size.
- ``pulmonary_anomaly_detector.pth``: the MedSight layout (vae_state, vit_state, config, calibration,
  threshold).
"""
from __future__ import annotations

from pathlib import Path

from inference.xray.medsight import (REFERENCE_CONFIG, Calibration, XrayAnomalyModel,
                                   save_reference_checkpoint, vgg16_features)

VGG_FILE = "vgg16-397923af.pth"
HEADS_FILE = "pulmonary_anomaly_detector.pth"
CLASSIFIER_SHAPES = {"classifier.0.weight": (4096, 25088), "classifier.0.bias": (4096,),
                     "classifier.3.weight": (4096, 4096), "classifier.3.bias": (4096,),
                     "classifier.6.weight": (1000, 4096), "classifier.6.bias": (1000,)}


def make_vgg16_file(path: str | Path, seed: int = 0, full_classifier: bool = False) -> Path:
    import torch

    torch.manual_seed(seed)
    feats = vgg16_features()
    sd = {f"features.{k}": v for k, v in feats.state_dict().items()}
    for k, shape in CLASSIFIER_SHAPES.items():
        sd[k] = torch.randn(*shape) * 0.01 if full_classifier else torch.zeros(1)
    path = Path(path)
    torch.save(sd, str(path))
    return path


def make_heads_file(path: str | Path, seed: int = 1, calibration: Calibration | None = None,
                    vgg_path: str | Path | None = None) -> Path:
    """Heads with seeded random weights. Without ``calibration``, the constants are measured on a
    few synthetic inputs through the given VGG16 file, so the fused score spreads around 0.5 as a
    calibrated model's would."""
    import torch

    torch.manual_seed(seed)
    model = XrayAnomalyModel(dict(REFERENCE_CONFIG), calibration or Calibration(0.0, 1.0, 0.0, 1.0),
                             features=vgg16_features() if vgg_path is None else None)
    if calibration is None:
        from inference.xray.medsight import load_vgg16_features

        if vgg_path is not None:
            model.features = load_vgg16_features(vgg_path)
        model.eval()
        with torch.no_grad():
            _, r, k, _ = model(torch.from_numpy(_calibration_images(seed)))
        # random inputs spread less than radiographs do: widen the spreads so the components of a
        # real-looking image land inside the sigmoid's range rather than at 0 or 1
        rm, km = float(r.mean()), float(k.mean())
        calibration = Calibration(rm, max(float(r.std()), 0.1 * abs(rm), 1e-6), km,
                                  max(float(k.std()), 0.1 * abs(km), 1e-6), 0.348)
        model.calibration = calibration
    path = Path(path)
    save_reference_checkpoint(model, path)
    return path


def _calibration_images(seed: int, n: int = 6):
    """Radiograph-like inputs for the synthetic calibration: the demo drawing under random
    gamma, contrast and noise (so the demo study scores inside the sigmoids' useful range)."""
    import numpy as np

    from inference.xray.demo import render
    from inference.xray.imaging import preprocess

    rng = np.random.default_rng(seed)
    base = render(256)
    base = (base - base.min()) / (np.ptp(base) + 1e-6)
    xs = []
    for _ in range(n):
        img = np.clip(base ** rng.uniform(0.7, 1.4) * rng.uniform(0.8, 1.0) + rng.normal(0, 0.03, base.shape), 0, 1)
        xs.append(preprocess((img * 255).astype(np.uint8))[0])
    return np.stack(xs).astype(np.float32)


def install_synthetic(registry, folder: str | Path, seed: int = 0):
    """Write both files into ``folder`` and install them as non-official weights."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vgg = make_vgg16_file(folder / VGG_FILE, seed=seed)
    heads = make_heads_file(folder / HEADS_FILE, seed=seed + 1, vgg_path=vgg)
    registry.install(vgg, "vgg16-imagenet", unofficial=True)
    registry.install(heads, "xray-anomaly", unofficial=True)
    return vgg, heads


def main(argv: list[str] | None = None) -> int:
    """``lightbox xray-demo-weights [--out DIR] [--install]``: write seeded random checkpoints in the
    official layouts (and optionally install them as non-official weights) to try the chest X-ray
    pipeline end to end. Every result from them is stamped NOT A CLINICAL RESULT."""
    import argparse

    from inference import paths
    from inference.registry import Registry

    p = argparse.ArgumentParser(prog="lightbox xray-demo-weights", description=main.__doc__)
    p.add_argument("--out", help="folder for the two .pth files (default: <data folder>/demo-weights)")
    p.add_argument("--install", action="store_true", help="install them as --unofficial weights")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else paths.data_home() / "demo-weights"
    out.mkdir(parents=True, exist_ok=True)
    if args.install:
        vgg, heads = install_synthetic(Registry(), out, seed=args.seed)
    else:
        vgg = make_vgg16_file(out / VGG_FILE, seed=args.seed)
        heads = make_heads_file(out / HEADS_FILE, seed=args.seed + 1, vgg_path=vgg)
    print(vgg)
    print(heads)
    if args.install:
        print("installed as non-official weights: results are stamped NOT A CLINICAL RESULT")
    return 0

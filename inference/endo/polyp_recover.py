"""Recover a polyp U-Net's PyTorch weights from its exported ONNX file (training only: torch + onnx).

The bundled ``polyp_unet.onnx`` is all that survives of a training run once its checkpoint is gone. Its graph
holds every weight, but the exporter folded each BatchNorm into the convolution before it:

    W' = W * gamma / sqrt(var + eps)          b' = beta - mean * gamma / sqrt(var + eps)

The folding cannot be undone (gamma, beta, mean and var are merged), but it need not be: in evaluation mode a
convolution with weights W' followed by a BatchNorm that is the identity (gamma 1, mean 0, var 1 - eps) plus
the bias b' computes exactly what the file computes. So :func:`state_dict_from_onnx` gives a
:class:`~.polyp_net.LiteUNet` state dict that reproduces the file's ``mask`` output, good for reading it with
another network (:class:`~.polyp_net.MeanUNet`) or re-exporting it. It is not a starting point for training
with BatchNorm in training mode (the batch statistics would replace the identity).

Convolutions are matched in graph order against the network's modules in forward order; every shape must
agree, and :func:`check` compares the recovered network with the file on real frames.

    python -m inference.endo.polyp_recover resources/models/polyp_unet.onnx OUT.pt --check FRAME_CACHE.npz
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


class RecoverError(ValueError):
    pass


def _bn_after(conv_name: str) -> str | None:
    """The BatchNorm that follows convolution ``conv_name`` in :class:`~.polyp_net.LiteUNet` (None: the head)."""
    head, _, last = conv_name.rpartition(".")
    pairs = {"_expand_conv": "_bn0", "_depthwise_conv": "_bn1", "_project_conv": "_bn2"}
    if last in pairs:
        return f"{head}.{pairs[last]}"
    if last.isdigit():  # nn.Sequential: stem.0 -> stem.1, up1.body.3 -> up1.body.4
        return f"{head}.{int(last) + 1}"
    return None


def state_dict_from_onnx(onnx_path: str | Path, size: int | None = None) -> tuple[dict, int]:
    """(LiteUNet state dict, input size) from an exported polyp ONNX file (see the module docstring)."""
    import onnx
    import torch
    from onnx import numpy_helper

    from .polyp_net import ENCODERS, LiteUNet

    model = onnx.load(str(onnx_path))
    g = model.graph
    if size is None:
        dims = g.input[0].type.tensor_type.shape.dim
        size = int(dims[-1].dim_value)
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    convs = [n for n in g.node if n.op_type == "Conv"]
    counts = {}
    for enc in ENCODERS:  # the encoder whose network has as many convolutions as the graph
        net = LiteUNet(size, pretrained=False, encoder=enc)
        mods = dict(net.named_modules())
        tconvs = [k for k, m in mods.items() if isinstance(m, torch.nn.Conv2d)]
        counts[enc] = len(tconvs)
        if len(convs) == len(tconvs):
            break
    else:
        raise RecoverError(f"{onnx_path}: {len(convs)} convolutions in the graph; the networks have "
                           + ", ".join(f"{n} ({e})" for e, n in counts.items()))
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    for node, name in zip(convs, tconvs):
        if len(node.input) < 2 or node.input[1] not in inits:
            raise RecoverError(f"{node.name}: weight is not a constant of the graph")
        w = inits[node.input[1]]
        b = inits[node.input[2]] if len(node.input) > 2 and node.input[2] in inits else None
        if tuple(w.shape) != tuple(sd[f"{name}.weight"].shape):
            raise RecoverError(f"{node.name} -> {name}: weight {w.shape} does not fit {tuple(sd[name + '.weight'].shape)}")
        sd[f"{name}.weight"] = torch.from_numpy(np.array(w, np.float32))
        bn = _bn_after(name)
        if bn is None or bn not in mods or not isinstance(mods[bn], torch.nn.BatchNorm2d):
            if f"{name}.bias" not in sd or b is None:
                raise RecoverError(f"{name}: no BatchNorm after it and no bias to take the graph's")
            sd[f"{name}.bias"] = torch.from_numpy(np.asarray(b, np.float32).copy())
            continue
        n = mods[bn].num_features
        bias = np.zeros(n, np.float32) if b is None else np.asarray(b, np.float32)
        sd[f"{bn}.weight"] = torch.ones(n)
        sd[f"{bn}.bias"] = torch.from_numpy(bias.copy())
        sd[f"{bn}.running_mean"] = torch.zeros(n)
        sd[f"{bn}.running_var"] = torch.full((n,), 1.0 - float(mods[bn].eps))
    return sd, size


def check(sd: dict, size: int, onnx_path: str | Path, frames: np.ndarray) -> float:
    """Largest |logit difference| between the recovered network (torch, eval) and the ONNX file's ``mask``
    on ``frames`` (uint8 RGB, N x H x W x 3), both fed the same preprocessed input
    (:func:`inference.training.agreement_check`, which compares the network's one output with the file's first)."""
    import torch

    from ..training import agreement_check
    from .polyp_net import LiteUNet
    from .polyp_online import plain_input

    net = LiteUNet.from_state(sd, size)
    x = plain_input(torch.from_numpy(np.ascontiguousarray(frames)), size).numpy()
    return agreement_check(net, onnx_path, {"image": x}, tol=float("inf"), threads=2)["per_output"]["mask"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inference.endo.polyp_recover", description=__doc__.split("\n")[0])
    ap.add_argument("onnx")
    ap.add_argument("out", help="state dict (.pt) for LiteUNet")
    ap.add_argument("--check", metavar="FRAME_CACHE", help="compare with the file on this cache's validation frames")
    ap.add_argument("--seed", type=int, default=2020, help="the split seed of the frame cache")
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--tolerance", type=float, default=1e-3)
    a = ap.parse_args(argv)
    import torch

    try:
        sd, size = state_dict_from_onnx(a.onnx)
    except RecoverError as e:
        print(f"polyp_recover: {e}", file=sys.stderr)
        return 2
    if a.check:
        from .polyp_online import read_cache

        b = read_cache(a.check, a.seed, size)
        va = np.flatnonzero(b["split"] == "val")
        pick = va[np.linspace(0, len(va) - 1, min(a.frames, len(va))).astype(int)]
        worst = check(sd, size, a.onnx, b["images"][pick])
        print(f"recovered vs {Path(a.onnx).name}: max |logit difference| {worst:.2e} on {len(pick)} validation frames")
        if worst > a.tolerance:
            print(f"polyp_recover: above the tolerance {a.tolerance}: not written", file=sys.stderr)
            return 1
    torch.save(sd, a.out)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

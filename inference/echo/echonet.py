"""EchoNet-Dynamic's two networks, built from torchvision (never re-written) with the published heads,
and the loader for the published checkpoint format.

Facts (from the reference implementation, echonet/dynamic):
- EF: ``torchvision.models.video.r2plus1d_18`` with ``fc`` replaced by ``Linear(512, 1)`` (bias
  initialised to the training EF mean, 55.6). Input (N, 3, 32, 112, 112), output (N, 1) = EF in %.
- LV segmentation: ``torchvision.models.segmentation.deeplabv3_resnet50`` (no auxiliary head) with
  ``classifier[-1]`` replaced by ``Conv2d(256, 1, kernel_size=1)``. Input (N, 3, 112, 112), output
  ``["out"]`` (N, 1, 112, 112) logits; LV = logit > 0.
- Checkpoints: ``torch.save`` of a dict whose ``"state_dict"`` was taken from a
  ``torch.nn.DataParallel`` wrapper, so every key starts with ``module.``; other keys (epoch,
  best_loss, loss, opt_dict, scheduler_dict, and for EF period, frames and r2) are training state.
  ``r2`` is sklearn's ``r2_score``, a numpy float64: the file pickles a numpy scalar and its dtype.
  ``torch.load(weights_only=True)`` stays on, with exactly those numpy globals allowed
  (``reference.numpy_safe_globals``: numeric scalars and dtypes only), scoped to the one load.

Everything is built with ``weights=None``: nothing is ever downloaded.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

EF_BIAS_INIT = 55.6


class CheckpointError(Exception):
    """The file is not an EchoNet-Dynamic checkpoint of the expected kind."""


def build_ef_model():
    import torch
    import torchvision

    m = torchvision.models.video.r2plus1d_18(weights=None)
    m.fc = torch.nn.Linear(m.fc.in_features, 1)
    with torch.no_grad():
        m.fc.bias.fill_(EF_BIAS_INIT)
    return m


def build_seg_model():
    import torch
    import torchvision

    m = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None,
                                                           aux_loss=False)
    last = m.classifier[-1]
    m.classifier[-1] = torch.nn.Conv2d(last.in_channels, 1, kernel_size=last.kernel_size)
    return m


BUILDERS = {"ef": build_ef_model, "seg": build_seg_model}


def strip_module_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """DataParallel's ``module.`` prefix off every key (keys without it are kept as they are)."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, loaded safely (tensors and plain containers only)."""
    import torch

    from inference.echo.reference import numpy_safe_globals

    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            ck = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{Path(path).name}: not a loadable PyTorch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})") from None
    if isinstance(ck, dict) and "state_dict" in ck and isinstance(ck["state_dict"], dict):
        return ck
    if isinstance(ck, dict) and ck and all(hasattr(v, "shape") for v in ck.values()):
        return {"state_dict": ck}  # a bare state dict: accepted, same keys
    raise CheckpointError(f"{Path(path).name}: expected a dict with 'state_dict' (EchoNet-Dynamic format)")


def load_model(kind: str, path: str | Path):
    """Build the network of ``kind`` ("ef" | "seg") and load the checkpoint into it, strictly.

    Returns ``(model.eval(), info)``; info carries the checkpoint's training metadata
    (epoch, frames, period, best_loss) where present.
    """
    ck = read_checkpoint(path)
    state = strip_module_prefix(ck["state_dict"])
    if kind == "seg":
        # the reference builds DeepLabV3 without the auxiliary classifier; a checkpoint that has one
        # (aux_loss=True training) still loads: the auxiliary head is not used at inference
        state = {k: v for k, v in state.items() if not k.startswith("aux_classifier.")}
    model = BUILDERS[kind]()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{Path(path).name}: does not match the EchoNet-Dynamic {'EF (r2plus1d_18)' if kind == 'ef' else 'segmentation (deeplabv3_resnet50)'}"
            f" network — {len(missing)} missing keys (e.g. {missing[:2]}), {len(unexpected)} unexpected"
            f" (e.g. {unexpected[:2]})")
    from inference.echo.reference import plain

    info = {k: plain(v) for k, v in ck.items() if k in ("epoch", "frames", "period", "best_loss", "loss", "r2")}
    if kind == "ef" and (info.get("frames", 32), info.get("period", 2)) != (32, 2):
        raise CheckpointError(f"{Path(path).name}: trained on clips of {info.get('frames')} frames every "
                              f"{info.get('period')} frames; Lightbox runs EchoNet-Dynamic's 32 x 2 clips")
    return model.eval(), info


class SegOut:
    """Wraps DeepLabV3 so it returns the ``out`` tensor (ONNX export and TorchRuntime want a tensor)."""

    def __new__(cls, model):
        import torch

        class _M(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, x):
                return self.m(x)["out"]

        return _M(model).eval()


def save_official_format(model, path: str | Path, **extra) -> Path:
    """Write ``model`` as EchoNet-Dynamic did (DataParallel keys, training-state dict). Used by tests
    and the benchmark to make seeded random-weights checkpoints; never for real weights."""
    import torch

    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    ck = {"epoch": 0, "state_dict": state, "best_loss": 0.0, "loss": 0.0, "opt_dict": {}, "scheduler_dict": {}}
    ck.update(extra)
    torch.save(ck, str(path))
    return Path(path)


def export_onnx_file(kind: str, model, out: str | Path, opset: int = 17) -> Path:
    """ONNX twin of a loaded model, batch dimension dynamic (and clip length for EF)."""
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "ef":
        net = model.eval()
        x = torch.zeros(1, 3, 32, 112, 112)
        names, outs = ["clip"], ["ef"]
        axes = {"clip": {0: "n", 2: "frames"}, "ef": {0: "n"}}
    else:
        net = SegOut(model)
        x = torch.zeros(1, 3, 112, 112)
        names, outs = ["frames"], ["logits"]
        axes = {"frames": {0: "n"}, "logits": {0: "n"}}
    tmp = out.with_suffix(out.suffix + ".part")
    kwargs = dict(input_names=names, output_names=outs, dynamic_axes=axes, opset_version=opset,
                  do_constant_folding=True)
    try:
        torch.onnx.export(net, (x,), str(tmp), dynamo=False, **kwargs)
    except TypeError:  # older torch without the dynamo switch
        torch.onnx.export(net, (x,), str(tmp), **kwargs)
    tmp.replace(out)
    return out

"""MedSight's chest X-ray anomaly model: frozen VGG16 -> beta-VAE on 512-d features -> ViT scorer on z.

The architecture and the checkpoint layout follow the reference system (MedSight AI,
``pulmonary_anomaly_detector.pth``). Facts checked against it:

* VGG16 = ``torchvision.models.vgg16(weights=None).features`` (frozen) -> AdaptiveAvgPool2d(1) -> 512.
* VAE (1,318,656 parameters): encoder 512 -> 512 -> 384 -> 256, each block Linear + LayerNorm +
  GELU + Dropout(0.1), heads ``fc_mu`` / ``fc_var`` 256 -> 256 (latent 256); decoder mirrors the
  hidden sizes (256 -> 256 -> 384 -> 512, same blocks) and ends with Linear 512 -> 512.
  At inference z = mu.
* ViT scorer (1,209,729 parameters): z (256) as 8 patches of 32 -> Linear to d_model 128, a CLS
  token, 9 positional embeddings, 6 pre-norm blocks (8 heads, qkv without bias, MLP 512, GELU),
  LayerNorm, CLS -> Linear 128 -> GELU -> Linear 1 -> Sigmoid.
* Components: recon = mean squared error over the 512 features; KL = -0.5 * mean(1 + logvar - mu^2
  - exp(logvar)) over the 256 latent dims; s_vit = the ViT output.
* Fused score = 0.4 * sigma((recon - mu_r) / sd_r) + 0.2 * sigma((KL - mu_k) / sd_k) + 0.4 * s_vit with
  the calibration constants saved in the checkpoint. Decision: ``score > threshold`` (the notebook's
  ``is_anomaly``). Threshold: the checkpoint's (the published run recorded 0.3483, Youden on its
  validation set); a checkpoint without one gets the reference's ``ckpt.get("threshold", 0.5)``.
* Input (``preprocess``): the reference's ``transforms.Resize((224, 224))`` on
  ``Image.open(path).convert("RGB")`` -- Pillow's bilinear filter, which torchvision always
  antialiases on PIL images (the triangle widens with the reduction factor) -- then ``ToTensor`` and
  ImageNet ``Normalize``.

Checkpoint (``torch.save`` of a dict, the notebook's "Save & Load Full Model" cell)::

    {"vae_state": {...}, "vit_state": {...},
     "config": CFG (the notebook's whole dict: the architecture keys below plus data_root, img_size,
               batch_size, epochs, learning rates, normal/anomaly classes, ...),
     "auroc": test AUROC (sklearn: a numpy float64),
     "threshold": Youden threshold (an element of roc_curve's thresholds: a numpy float),
     "vae_history": {...per-epoch lists...}, "vit_history": {...},
     "recon_mean": float, "recon_std": float, "kl_mean": float, "kl_std": float}

The architecture keys are vgg_feat_dim 512, vae_hidden [512, 384, 256], latent_dim 256,
vit_patch_dim 32, vit_depth 6, vit_heads 8, vit_mlp_dim 512, vit_dropout 0.1. The recorded AUROC and
the history lengths are kept as the model's ``info`` (shown with its results).

The VGG16 weights are torchvision's ImageNet file (``vgg16-397923af.pth``, a full VGG16 state dict):
a separate manifest entry, loaded into ``features`` only. Everything here loads with
``torch.load(weights_only=True)``; the only globals allowed beyond torch's own are numpy's scalar,
dtype and array reconstruction (how numpy 1.x and 2.x pickle a float64 or a small array).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FUSION_WEIGHTS = (0.4, 0.2, 0.4)
#: the reference's threshold when a checkpoint has none: ``float(ckpt.get("threshold", 0.5))``
DEFAULT_THRESHOLD = 0.5
#: what the published run recorded (notebook output "AUROC=0.7177 | threshold=0.3483")
PUBLISHED_THRESHOLD = 0.3483
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 224
#: index of the ReLU after conv5_3 in vgg16.features: the Grad-CAM layer (512 x 14 x 14)
GRADCAM_LAYER = 29

REFERENCE_CONFIG: dict[str, Any] = {
    "vgg_feat_dim": 512, "vae_hidden": [512, 384, 256], "latent_dim": 256,
    "vit_patch_dim": 32, "vit_depth": 6, "vit_heads": 8, "vit_mlp_dim": 512, "vit_dropout": 0.1,
}
CALIBRATION_KEYS = ("recon_mean", "recon_std", "kl_mean", "kl_std")


class CheckpointError(Exception):
    """A checkpoint is not in the expected layout; the message says what is wrong."""


# -- VAE ---------------------------------------------------------------------------------------------
def _block(i: int, o: int, p: float) -> list[nn.Module]:
    return [nn.Linear(i, o), nn.LayerNorm(o), nn.GELU(), nn.Dropout(p)]


class VAEEncoder(nn.Module):
    def __init__(self, in_dim: int, hidden: list[int], latent: int, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_dim
        for h in hidden:
            layers += _block(prev, h, dropout)
            prev = h
        self.net = nn.Sequential(*layers)
        self.fc_mu = nn.Linear(prev, latent)
        self.fc_var = nn.Linear(prev, latent)

    def forward(self, x):
        h = self.net(x)
        return self.fc_mu(h), self.fc_var(h)


class VAEDecoder(nn.Module):
    def __init__(self, latent: int, hidden: list[int], out_dim: int, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        prev = latent
        for h in reversed(hidden):
            layers += _block(prev, h, dropout)
            prev = h
        layers.append(nn.Linear(prev, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class FeatureVAE(nn.Module):
    def __init__(self, in_dim: int = 512, hidden: list[int] | None = None, latent: int = 256):
        super().__init__()
        hidden = list(hidden or REFERENCE_CONFIG["vae_hidden"])
        self.encoder = VAEEncoder(in_dim, hidden, latent)
        self.decoder = VAEDecoder(latent, hidden, in_dim)

    def forward(self, x):
        mu, logvar = self.encoder(x)
        if self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:
            z = mu
        return self.decoder(z), mu, logvar, z


# -- ViT on the latent ---------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError("dim must be divisible by heads")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        att = self.drop(att.softmax(dim=-1))
        out = torch.matmul(att, v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out), att


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(mlp, dim), nn.Dropout(dropout))

    def forward(self, x):
        a, w = self.attn(self.norm1(x))
        x = x + a
        return x + self.ffn(self.norm2(x)), w


class LatentViT(nn.Module):
    def __init__(self, latent: int = 256, patch: int = 32, depth: int = 6, heads: int = 8, mlp: int = 512,
                 dropout: float = 0.1):
        super().__init__()
        if latent % patch:
            raise ValueError("latent_dim must be a multiple of the patch size")
        self.num_patches = latent // patch
        d = patch * 4
        self.d_model = d
        self.patch_embed = nn.Linear(patch, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, d))
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(d, heads, mlp, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Sequential(nn.Linear(d, mlp // 4), nn.GELU(), nn.Dropout(dropout),
                                  nn.Linear(mlp // 4, 1), nn.Sigmoid())
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, z):
        b = z.shape[0]
        x = self.patch_embed(z.reshape(b, self.num_patches, -1))
        x = torch.cat([self.cls_token.expand(b, -1, -1), x], dim=1) + self.pos_embed
        x = self.dropout(x)
        for blk in self.blocks:
            x, _ = blk(x)
        return self.head(self.norm(x)[:, 0]).squeeze(-1)


# -- the whole detector --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    recon_mean: float
    recon_std: float
    kl_mean: float
    kl_std: float
    threshold: float = DEFAULT_THRESHOLD

    def as_dict(self) -> dict[str, float]:
        return {"recon_mean": self.recon_mean, "recon_std": self.recon_std, "kl_mean": self.kl_mean,
                "kl_std": self.kl_std, "threshold": self.threshold}


def vgg16_features() -> nn.Sequential:
    import torchvision

    return torchvision.models.vgg16(weights=None).features


class XrayAnomalyModel(nn.Module):
    """image (B,3,224,224, ImageNet-normalised) -> fused score, recon error, KL, ViT score.

    ``forward`` returns a tuple ``(fused, recon, kl, vit)``, each of shape (B,), so the same module
    runs under ``TorchRuntime`` and exports to ONNX; the calibration constants are buffers, so an
    exported graph carries them.
    """

    output_names = ("fused", "recon_error", "kl_divergence", "vit_score")

    def __init__(self, config: dict[str, Any] | None = None, calibration: Calibration | None = None,
                 features: nn.Sequential | None = None):
        super().__init__()
        cfg = dict(REFERENCE_CONFIG, **(config or {}))
        self.config = cfg
        self.features = features if features is not None else vgg16_features()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.vae = FeatureVAE(int(cfg["vgg_feat_dim"]), list(cfg["vae_hidden"]), int(cfg["latent_dim"]))
        self.vit = LatentViT(int(cfg["latent_dim"]), int(cfg["vit_patch_dim"]), int(cfg["vit_depth"]),
                             int(cfg["vit_heads"]), int(cfg["vit_mlp_dim"]), float(cfg["vit_dropout"]))
        cal = calibration or Calibration(0.0, 1.0, 0.0, 1.0)
        self.calibration = cal
        for k in CALIBRATION_KEYS:
            self.register_buffer(k, torch.tensor(float(getattr(cal, k)), dtype=torch.float32))
        self.fusion_weights = FUSION_WEIGHTS
        self.info: dict[str, Any] = {"auroc": None, "threshold": cal.threshold, "threshold_source": "given",
                                     "vae_epochs": None, "vit_epochs": None}

    def embed(self, x):
        return torch.flatten(self.pool(self.features(x)), 1)

    def heads(self, feats):
        x_hat, mu, logvar, z = self.vae(feats)
        recon = (x_hat - feats).pow(2).mean(dim=1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).mean(dim=1)
        vit = self.vit(z)
        w1, w2, w3 = self.fusion_weights
        fused = (w1 * torch.sigmoid((recon - self.recon_mean) / self.recon_std)
                 + w2 * torch.sigmoid((kl - self.kl_mean) / self.kl_std) + w3 * vit)
        return fused, recon, kl, vit

    def forward(self, x):
        return self.heads(self.embed(x))

    def normalised_components(self, recon: float, kl: float, vit: float) -> dict[str, float]:
        """Each component on the 0..1 scale it enters the fusion with, and its weighted share."""
        r = 1.0 / (1.0 + math.exp(-(recon - self.calibration.recon_mean) / self.calibration.recon_std))
        k = 1.0 / (1.0 + math.exp(-(kl - self.calibration.kl_mean) / self.calibration.kl_std))
        w1, w2, w3 = self.fusion_weights
        return {"recon_sigma": r, "kl_sigma": k, "vit": vit,
                "recon_contribution": w1 * r, "kl_contribution": w2 * k, "vit_contribution": w3 * vit}


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# -- loading ------------------------------------------------------------------------------------------
def _numpy_globals() -> list:
    """The numpy objects a checkpoint pickles for a numpy scalar or a small array, under numpy 2's
    names and numpy 1's (``numpy.core``), for torch's ``weights_only`` unpickler. None of them runs
    code: they rebuild a scalar / empty array from a dtype and raw bytes."""
    core = getattr(np, "_core", None) or np.core
    scalar, reconstruct = core.multiarray.scalar, core.multiarray._reconstruct
    allowed: list = [scalar, reconstruct, np.ndarray, np.dtype]
    for name, obj in (("numpy.core.multiarray.scalar", scalar), ("numpy.core.multiarray._reconstruct", reconstruct),
                      ("numpy._core.multiarray.scalar", scalar),
                      ("numpy._core.multiarray._reconstruct", reconstruct)):
        if f"{obj.__module__}.{obj.__name__}" != name:
            allowed.append((obj, name))
    for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
              np.float16, np.float32, np.float64):
        allowed.append(type(np.dtype(t)))  # numpy 2's dtype classes (numpy.dtypes.Float64DType, ...)
    return allowed


def _torch_load(path: str | Path) -> Any:
    """``torch.load(weights_only=True)``; numpy scalars and arrays (as the reference's notebook saves
    its AUROC, threshold and histories) are allowed through torch's safe-globals list, nothing else."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as first:
        try:
            with torch.serialization.safe_globals(_numpy_globals()):
                return torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception:
            msg = str(first).strip().splitlines()[0][:200] if str(first).strip() else type(first).__name__
            raise CheckpointError(f"{Path(path).name}: cannot be loaded safely (weights_only=True): {msg}") from None


def _scalar(v: Any, key: str) -> float:
    try:
        if isinstance(v, torch.Tensor):
            return float(v.reshape(-1)[0].item())
        return float(np.asarray(v).reshape(-1)[0])
    except Exception:
        raise CheckpointError(f"calibration value '{key}' is not a number ({type(v).__name__})") from None


def _epochs(history: Any) -> int | None:
    """Epochs recorded in a training history (a dict of per-epoch lists, or a list)."""
    if isinstance(history, dict):
        lens = [len(v) for v in history.values() if hasattr(v, "__len__") and not isinstance(v, str)]
        return max(lens) if lens else None
    if isinstance(history, (list, tuple)):
        return len(history)
    return None


def checkpoint_info(ck: dict) -> dict[str, Any]:
    """What the reference's checkpoint records besides the weights: test AUROC, threshold (and where
    it came from), the training histories' lengths and the data it names."""
    auroc = None
    if "auroc" in ck:
        try:
            auroc = _scalar(ck["auroc"], "auroc")
        except CheckpointError:
            auroc = None
    has_thr = "threshold" in ck
    cfg = ck.get("config") if isinstance(ck.get("config"), dict) else {}
    return {
        "auroc": auroc if auroc is None or math.isfinite(auroc) else None,
        "threshold": _scalar(ck["threshold"], "threshold") if has_thr else DEFAULT_THRESHOLD,
        "threshold_source": "checkpoint" if has_thr else
        f"reference default {DEFAULT_THRESHOLD} (the checkpoint has no threshold)",
        "vae_epochs": _epochs(ck.get("vae_history")),
        "vit_epochs": _epochs(ck.get("vit_history")),
        "normal_class": cfg.get("normal_class"),
        "anomaly_classes": list(cfg["anomaly_classes"]) if isinstance(cfg.get("anomaly_classes"), (list, tuple))
        else None,
    }


def read_checkpoint(path: str | Path) -> tuple[dict, dict, dict[str, Any], Calibration, dict[str, Any]]:
    """(vae_state, vit_state, config, calibration, info) from a reference-layout checkpoint."""
    ck = _torch_load(path)
    if not isinstance(ck, dict):
        raise CheckpointError(f"{Path(path).name}: expected a dict checkpoint, found {type(ck).__name__}")
    missing = [k for k in ("vae_state", "vit_state") if k not in ck]
    if missing:
        raise CheckpointError(f"{Path(path).name}: not a MedSight anomaly checkpoint (missing "
                              f"{', '.join(missing)}; keys: {', '.join(map(str, list(ck)[:8]))})")
    cfg = dict(REFERENCE_CONFIG)
    cfg.update({k: v for k, v in (ck.get("config") or {}).items() if k in REFERENCE_CONFIG})
    miss_cal = [k for k in CALIBRATION_KEYS if k not in ck]
    if miss_cal:
        raise CheckpointError(f"{Path(path).name}: the checkpoint carries no calibration statistics "
                              f"({', '.join(miss_cal)} missing); a fused score cannot be computed without them")
    vals = {k: _scalar(ck[k], k) for k in CALIBRATION_KEYS}
    for k in ("recon_std", "kl_std"):
        if not (vals[k] > 0 and math.isfinite(vals[k])):
            vals[k] = max(abs(vals[k]), 1e-8) if math.isfinite(vals[k]) else 1.0
    info = checkpoint_info(ck)
    return ck["vae_state"], ck["vit_state"], cfg, Calibration(**vals, threshold=info["threshold"]), info


def read_anomaly_checkpoint(path: str | Path) -> tuple[dict, dict, dict[str, Any], Calibration]:
    """(vae_state, vit_state, config, calibration) from a reference-layout checkpoint."""
    return read_checkpoint(path)[:4]


def load_vgg16_features(path: str | Path) -> nn.Sequential:
    """torchvision's ``vgg16-397923af.pth`` (a full VGG16 state dict) -> ``features`` with those weights.
    Only ``features.*`` are used; the classifier keys must be there (it is the ImageNet file) but are
    not loaded."""
    sd = _torch_load(path)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{Path(path).name}: expected a VGG16 state dict")
    feats = {k[len("features."):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith("features.")}
    if not feats:
        raise CheckpointError(f"{Path(path).name}: no 'features.*' weights: not a torchvision VGG16 state dict")
    if not any(isinstance(k, str) and k.startswith("classifier.") for k in sd):
        raise CheckpointError(f"{Path(path).name}: no 'classifier.*' weights: not the full torchvision VGG16 file")
    m = vgg16_features()
    try:
        m.load_state_dict(feats, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{Path(path).name}: VGG16 features do not match torchvision's vgg16 "
                              f"({str(e).splitlines()[0][:200]})") from None
    return m


def build_model(vgg_path: str | Path, heads_path: str | Path) -> XrayAnomalyModel:
    vae_state, vit_state, cfg, cal, info = read_checkpoint(heads_path)
    model = XrayAnomalyModel(cfg, cal, features=load_vgg16_features(vgg_path))
    model.info = info
    try:
        model.vae.load_state_dict(vae_state, strict=True)
        model.vit.load_state_dict(vit_state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{Path(heads_path).name}: weights do not fit the reference architecture "
                              f"({str(e).splitlines()[0][:240]})") from None
    # inference only: no parameter gradients (Grad-CAM differentiates w.r.t. an activation)
    return model.eval().requires_grad_(False)


def save_reference_checkpoint(model: XrayAnomalyModel, path: str | Path, extras: dict | None = None) -> None:
    """Write the heads in the reference layout (for tests and for the unofficial-install path);
    ``extras``: further reference keys (auroc, vae_history, vit_history)."""
    c = model.calibration
    torch.save({"vae_state": model.vae.state_dict(), "vit_state": model.vit.state_dict(),
                "config": dict(model.config), "recon_mean": c.recon_mean, "recon_std": c.recon_std,
                "kl_mean": c.kl_mean, "kl_std": c.kl_std, "threshold": c.threshold, **(extras or {})}, str(path))


# -- the input ------------------------------------------------------------------------------------------
def resize_for_model(image8: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """(H, W) grey or (H, W, 3) RGB 8-bit image -> (size, size, 3) uint8: the reference's
    ``Resize((size, size))`` on a PIL RGB image (torchvision -> Pillow BILINEAR, antialiased)."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    from inference.xray.imaging import to_uint8

    a = to_uint8(np.asarray(image8))
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]
    if a.ndim == 2:
        pil = Image.fromarray(np.ascontiguousarray(a), mode="L").convert("RGB")  # as .convert("RGB") does
    elif a.ndim == 3 and a.shape[2] == 3:
        pil = Image.fromarray(np.ascontiguousarray(a), mode="RGB")
    else:
        raise ValueError(f"expected a grey or RGB image, got shape {a.shape}")
    out = TF.resize(pil, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return np.asarray(out, dtype=np.uint8)


def preprocess(image8: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """The model input, float32 (1, 3, size, size): ``resize_for_model`` -> /255 (ToTensor) ->
    ImageNet normalisation."""
    x = resize_for_model(image8, size).astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


# -- Grad-CAM -------------------------------------------------------------------------------------------
def grad_cam(model: XrayAnomalyModel, x: torch.Tensor, layer: int = GRADCAM_LAYER):
    """Grad-CAM of the fused score on VGG16's last conv block (conv5_3 + ReLU, 14 x 14 for 224 input).

    Returns ``(cam, outputs)``: cam (H', W') float32 numpy, not normalised (>= 0), and the four
    outputs as floats. Gradients flow through the frozen features to the activation; the weights
    stay frozen.
    """
    feats_mod = model.features
    with torch.enable_grad():
        h = x
        act = None
        for i, m in enumerate(feats_mod):
            h = m(h)
            if i == layer:
                # ReLU(inplace=True) in torchvision: keep a non-inplace copy as the graph node
                act = h.clone() if not h.requires_grad else h
                act.requires_grad_(True)
                h = act
        f = torch.flatten(model.pool(h), 1)
        fused, recon, kl, vit = model.heads(f)
        grad = torch.autograd.grad(fused.sum(), act)[0]
    w = grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((w * act.detach()).sum(dim=1))[0]
    outs = {"fused": float(fused.detach()[0]), "recon_error": float(recon.detach()[0]),
            "kl_divergence": float(kl.detach()[0]), "vit_score": float(vit.detach()[0])}
    return cam.detach().cpu().numpy().astype("float32"), outs

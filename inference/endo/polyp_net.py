"""The Lightbox polyp segmenter: a compact U-Net of depthwise-separable convolutions (torch).

Input ``image`` float32 [N, 3, S, S] (RGB /255, ImageNet mean/std: the ``endo-polyp`` contract),
output ``mask`` float32 [N, 1, S, S] logits. Widths 16-32-64-128 at strides 2-4-8-16; ~0.1 M
parameters, small enough for every 2nd frame of 25 fps video on one CPU core at S = 160.
torch is imported only by the trainer and the tests, never by the app's inference path (ONNX Runtime).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F


def _bn_act(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.ReLU(inplace=True)]


class DSConv(nn.Sequential):
    """depthwise 3x3 (stride s, dilation d) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU"""

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__(nn.Conv2d(cin, cin, 3, stride, dilation, dilation=dilation, groups=cin, bias=False),
                         *_bn_act(cin), nn.Conv2d(cin, cout, 1, bias=False), *_bn_act(cout))


class Stage(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, n: int = 2, dilations: tuple[int, ...] = ()):
        super().__init__()
        layers = [DSConv(cin, cout, stride)]
        for k in range(n - 1):
            layers.append(DSConv(cout, cout, 1, dilations[k] if k < len(dilations) else 1))
        self.body = nn.Sequential(*layers)
        self.skip = cout == cin and stride == 1

    def forward(self, x):
        y = self.body(x)
        return y + x if self.skip else y


class PolypUNet(nn.Module):
    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 128)):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.stem = nn.Sequential(nn.Conv2d(3, w1, 3, 2, 1, bias=False), *_bn_act(w1))   # /2
        self.e1 = Stage(w1, w1, 1, 1)
        self.e2 = Stage(w1, w2, 2, 2)                                                   # /4
        self.e3 = Stage(w2, w3, 2, 3)                                                   # /8
        self.e4 = Stage(w3, w4, 2, 4, dilations=(2, 4, 1))                              # /16, wide context
        self.d3 = DSConv(w4 + w3, w3)
        self.d2 = DSConv(w3 + w2, w2)
        self.d1 = DSConv(w2 + w1, w1)
        self.head = nn.Conv2d(w1, 1, 1)

    @staticmethod
    def _up(x, ref):
        return F.interpolate(x, size=ref.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x):
        s1 = self.e1(self.stem(x))
        s2 = self.e2(s1)
        s3 = self.e3(s2)
        s4 = self.e4(s3)
        y = self.d3(torch.cat([self._up(s4, s3), s3], 1))
        y = self.d2(torch.cat([self._up(y, s2), s2], 1))
        y = self.d1(torch.cat([self._up(y, s1), s1], 1))
        y = self.head(y)
        return F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)


def export_onnx(net: nn.Module, path: str | Path, size: int) -> Path:
    """Fixed spatial size (the app reads it from the input shape), dynamic batch; opset 17."""
    net.eval()
    x = torch.zeros(1, 3, size, size)
    path = Path(path)
    torch.onnx.export(net, (x,), str(path), input_names=["image"], output_names=["mask"],
                      dynamic_axes={"image": {0: "N"}, "mask": {0: "N"}}, opset_version=17,
                      do_constant_folding=True, dynamo=False)
    return path

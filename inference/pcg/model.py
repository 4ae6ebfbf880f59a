"""The heart-sound classifier network (PyTorch), exported to ONNX for inference.

A small VGG-style CNN over one standardised log-mel window (1 x n_mels x frames):
four conv blocks (3x3 conv - batch norm - ReLU - 2x2 max pool) with ``width``, 2w, 4w, 8w channels,
global average pooling over frequency and time, dropout, and a linear layer to the classes.
The exported graph ends in a softmax: ONNX output ``probabilities`` (N, n_classes).
Default width 8: about 25 k parameters, ~0.1 MB as ONNX, ~12 MFLOP per 4-s window (32 x 200 input).
"""
from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True), nn.MaxPool2d(2))


class HeartSoundCNN(nn.Module):
    def __init__(self, n_classes: int = 2, width: int = 8, dropout: float = 0.3):
        super().__init__()
        w = width
        self.features = nn.Sequential(_block(1, w), _block(w, 2 * w), _block(2 * w, 4 * w), _block(4 * w, 8 * w))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(8 * w, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # logits
        z = self.features(x).mean(dim=(2, 3))
        return self.head(self.dropout(z))


class WithSoftmax(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1)


def export_onnx(net: nn.Module, path, n_mels: int, frames: int) -> None:
    """ONNX with input ``logmel`` (N, 1, n_mels, frames) and output ``probabilities`` (N, classes)."""
    import io

    net = net.eval()
    dummy = torch.zeros(1, 1, n_mels, frames)
    buf = io.BytesIO()
    torch.onnx.export(WithSoftmax(net), dummy, buf, input_names=["logmel"], output_names=["probabilities"],
                      dynamic_axes={"logmel": {0: "batch"}, "probabilities": {0: "batch"}},
                      opset_version=17, dynamo=False)
    from pathlib import Path

    Path(path).write_bytes(buf.getvalue())

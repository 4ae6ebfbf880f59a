"""Recovering a polyp U-Net from its exported ONNX file (inference.endo.polyp_recover): the exporter folds each
BatchNorm into its convolution; the recovered network (identity BatchNorms carrying the folded bias) must
compute what the original network and the file compute, and a file of another architecture is refused."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("efficientnet_lite_pytorch")


def _trained_looking_net(size: int, seed: int):
    """A LiteUNet whose BatchNorms are far from the identity (what folding has to undo)."""
    from inference.endo.polyp_net import LiteUNet

    torch.manual_seed(seed)
    net = LiteUNet(size, pretrained=False)
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=g)
            m.bias.data = torch.randn(n, generator=g) * 0.3
            m.running_mean = torch.randn(n, generator=g) * 0.5
            m.running_var = 0.5 + torch.rand(n, generator=g)
    return net.eval()


def _export(net, size, path):
    from inference.endo.polyp_net import GatedUNet
    from inference.training import export_onnx

    gated = GatedUNet(net, np.zeros(320, np.float32), np.eye(320, dtype=np.float32)).eval()
    export_onnx(gated, torch.zeros(1, 3, size, size), path, input_names=["image"],
                output_names=["mask", "features", "ood"])


def test_recovered_network_computes_what_the_file_and_the_original_compute(tmp_path):
    from inference.endo.polyp_net import LiteUNet
    from inference.endo.polyp_recover import check, state_dict_from_onnx

    size = 64
    net = _trained_looking_net(size, 3)
    _export(net, size, tmp_path / "p.onnx")
    sd, got_size = state_dict_from_onnx(tmp_path / "p.onnx")
    assert got_size == size
    rec = LiteUNet(size, pretrained=False)
    rec.load_state_dict(sd)
    rec.eval()
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = net(x), rec(x)
    assert want.abs().max() > 0.5                       # not a trivial map
    assert (want - got).abs().max() < 1e-3
    frames = np.random.default_rng(2).integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    assert check(sd, size, tmp_path / "p.onnx", frames) < 1e-3
    # the BatchNorms really are identities now: the weights moved into the convolutions
    assert not torch.allclose(sd["blocks.3._depthwise_conv.weight"], net.state_dict()["blocks.3._depthwise_conv.weight"])


def test_a_file_of_another_network_is_refused(tmp_path):
    from inference.endo.polyp_net import LiteUNet
    from inference.endo.polyp_recover import RecoverError, state_dict_from_onnx

    size = 64
    other = LiteUNet(size, pretrained=False, decoder=(64, 48, 32, 16)).eval()  # other decoder widths
    _export(other, size, tmp_path / "other.onnx")
    with pytest.raises(RecoverError):
        state_dict_from_onnx(tmp_path / "other.onnx")


def test_cli_writes_nothing_when_the_file_is_not_a_polyp_unet(tmp_path, capsys):
    from inference.endo.polyp_net import LiteUNet
    from inference.endo.polyp_recover import main

    _export(LiteUNet(64, pretrained=False, decoder=(64, 48, 32, 16)).eval(), 64, tmp_path / "other.onnx")
    assert main([str(tmp_path / "other.onnx"), str(tmp_path / "out.pt")]) == 2
    assert not (tmp_path / "out.pt").exists()
    assert "does not fit" in capsys.readouterr().err


def test_a_recovered_network_fine_tunes_only_with_its_batchnorm_statistics_frozen(tmp_path):
    """Its BatchNorms are folded (mean 0, variance 1): in training mode batch statistics would change what it
    computes from the first step. With freeze_batchnorm_stats it computes the file's map in training mode too,
    and a training step leaves the running statistics as they are while the weights learn."""
    from inference.endo.polyp_net import LiteUNet
    from inference.endo.polyp_recover import state_dict_from_onnx

    size = 64
    net = _trained_looking_net(size, 5)
    _export(net, size, tmp_path / "p.onnx")
    sd, _ = state_dict_from_onnx(tmp_path / "p.onnx")
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = net(x)
    plain = LiteUNet(size, pretrained=False)
    plain.load_state_dict(sd)
    plain.train()
    with torch.no_grad():
        assert (plain(x) - want).abs().max() > 0.1          # batch statistics: another function
    rec = LiteUNet(size, pretrained=False)
    rec.load_state_dict(sd)
    rec.freeze_batchnorm_stats()
    rec.train()
    assert rec.training and not any(m.training for m in rec.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert (rec(x) - want).abs().max() < 1e-3
    before = {k: v.clone() for k, v in rec.state_dict().items()}
    opt = torch.optim.SGD(rec.parameters(), lr=0.1)
    rec(x).mean().backward()
    opt.step()
    after = rec.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in after if "running_" in k or "num_batches" in k)
    assert not torch.equal(before["head.weight"], after["head.weight"])

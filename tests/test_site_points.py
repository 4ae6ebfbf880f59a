"""Site operating points: a threshold read off the site's own labelled cases, adopted with its provenance,
bound to the evaluated weights, and honoured by the X-ray pneumonia pipeline (label, heat scale, and the
threshold's source in the result, the viewer's panel and the PDF)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference import site_points as SP

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "resources" / "models" / "xray_pneumonia_effnet.onnx"


def _evaluation(folder: Path, n_pos=60, n_neg=60, sha="a" * 64, model="xray-pneumonia", shift=0.0) -> Path:
    """An evaluation.json as ``lightbox evaluate`` writes it: positives score 0.70..0.99, negatives
    0.01..0.80 (+ shift); with 60 positives, sensitivity >= 0.95 lets 3 fall below the threshold, so the
    threshold is the 4th-lowest positive score."""
    pos = np.linspace(0.70, 0.99, n_pos)
    neg = np.clip(np.linspace(0.01, 0.80, n_neg) + shift, 0, 1)
    cases = [{"file": f"p{i}.png", "reference": "pneumonia", "score": float(s)} for i, s in enumerate(pos)]
    cases += [{"file": f"n{i}.png", "reference": "normal", "score": float(s)} for i, s in enumerate(neg)]
    ev = {"kind": "classification", "model_id": model, "weights_sha256": sha, "date": "2026-12-05T10:00:00",
          "labels": {"sha256": "b" * 64}, "adapter": {"positive": "pneumonia", "negative": "normal"},
          "cases": cases + [{"file": "failed.png", "reference": "normal"}]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "evaluation.json").write_text(json.dumps(ev))
    return folder


def test_adopt_reads_the_known_threshold_and_keeps_its_provenance(tmp_path):
    pts = tmp_path / "points.json"
    ev = _evaluation(tmp_path / "ev")
    pt = SP.adopt(ev, 0.95, "Dr A. Reader", path=pts, note="first set")
    pos = np.linspace(0.70, 0.99, 60)
    assert pt.threshold == pytest.approx(pos[3]) and pt.sensitivity == pytest.approx(57 / 60)
    neg = np.linspace(0.01, 0.80, 60)
    assert pt.specificity == pytest.approx(float((neg < pos[3]).mean()))
    assert pt.confusion[1] == [3, 57] and pt.n_positive == 60 and pt.n_negative == 60
    assert pt.sensitivity_ci[0] < pt.sensitivity < pt.sensitivity_ci[1]
    assert pt.evaluation.endswith("evaluation.json") and len(pt.evaluation_sha256) == 64
    got, note = SP.current("xray-pneumonia", "a" * 64, path=pts)
    assert got is not None and got.threshold == pt.threshold and note == ""
    assert "Dr A. Reader" in got.describe() and "120 labelled cases" in got.describe()


def test_a_point_binds_to_its_weights_and_a_new_one_retires_the_old(tmp_path):
    pts = tmp_path / "points.json"
    SP.adopt(_evaluation(tmp_path / "ev1"), 0.95, "A", path=pts)
    other, note = SP.current("xray-pneumonia", "c" * 64, path=pts)
    assert other is None and "other weights" in note and "own threshold" in note
    second = SP.adopt(_evaluation(tmp_path / "ev2", shift=0.1), 0.90, "B", path=pts)
    allp = SP.load_all(pts)
    assert len(allp) == 2 and not allp[0].active and allp[0].retired_by == "B" and allp[1].active
    assert SP.current("xray-pneumonia", "a" * 64, path=pts)[0].threshold == second.threshold
    assert SP.retire("xray-pneumonia", "C", path=pts).adopted_by == "B"
    assert SP.current("xray-pneumonia", "a" * 64, path=pts) == (None, "")
    assert len(SP.load_all(pts)) == 2  # history kept
    assert SP.retire("xray-pneumonia", "C", path=pts) is None


@pytest.mark.parametrize("kw, says", [
    (dict(n_pos=30), "at least 50"),
    (dict(n_neg=10), "at least 50"),
    (dict(model="heart-sound"), "only read by"),
    (dict(sha=""), "which weights"),
])
def test_refusals_say_why_and_write_nothing(tmp_path, kw, says):
    pts = tmp_path / "points.json"
    with pytest.raises(SP.SitePointError, match=says):
        SP.adopt(_evaluation(tmp_path / "ev", **kw), 0.95, "A", path=pts)
    assert not pts.exists()


def test_other_refusals(tmp_path):
    pts = tmp_path / "points.json"
    ev = _evaluation(tmp_path / "ev")
    with pytest.raises(SP.SitePointError, match="who adopts"):
        SP.adopt(ev, 0.95, "  ", path=pts)
    with pytest.raises(SP.SitePointError, match="outside"):
        SP.adopt(ev, 1.0, "A", path=pts)
    with pytest.raises(SP.SitePointError, match="installed now"):
        SP.adopt(ev, 0.95, "A", path=pts, installed_sha256="d" * 64)
    with pytest.raises(SP.SitePointError, match="not a readable"):
        SP.adopt(tmp_path / "nowhere", 0.95, "A", path=pts)
    assert not pts.exists()
    pts.write_text("{broken")
    with pytest.raises(SP.SitePointError, match="cannot be read"):
        SP.load_all(pts)
    got, note = SP.current("xray-pneumonia", "a" * 64, path=pts)  # a pipeline never crashes on it
    assert got is None and "cannot be read" in note and "own threshold" in note


def test_cli_adopt_list_retire(tmp_path):
    pts = tmp_path / "points.json"
    ev = _evaluation(tmp_path / "ev")

    def run(*a):
        return subprocess.run([sys.executable, "-m", "inference.site_points", *a, "--file", str(pts)],
                              capture_output=True, text=True, cwd=ROOT)

    r = run("adopt", str(ev), "--sensitivity", "0.95", "--by", "Dr A")
    # the evaluation scored weights "aaaa..."; the installed file is another: refused, nothing written
    assert r.returncode == 1 and "installed now" in r.stderr and not pts.exists()
    SP.adopt(ev, 0.95, "Dr A", path=pts)
    r = run("list")
    assert r.returncode == 0 and "ACTIVE" in r.stdout and "Dr A" in r.stdout
    r = run("retire", "xray-pneumonia", "--by", "Dr B")
    assert r.returncode == 0 and "retired" in r.stdout
    assert "retired" in run("list").stdout


# -- the X-ray pipeline honours it ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_study(tmp_path_factory):
    if not SHIPPED.exists():
        pytest.skip("shipped X-ray pneumonia model not present")
    from inference.xray.demo import make
    from inference.xray.reader import read

    return read(make(tmp_path_factory.mktemp("xr_site")))


def test_pipeline_uses_the_site_point_for_label_heat_and_source(demo_study, tmp_path):
    from inference.pipeline import analyse
    from inference.registry import Registry

    reg = Registry()
    own = analyse(demo_study, "xray-pneumonia", reg)
    o = own.outputs
    assert o["label"] == "PNEUMONIA" and o["threshold"] == o["model_threshold"]
    assert "own" in o["threshold_source"] and "_site_point" not in o
    p = o["p_pneumonia"]
    # the site's cases put the threshold above this film's P: the same film is now called normal
    ev = _evaluation(tmp_path / "ev", sha=own.weights_sha256)
    pt = SP.adopt(ev, 0.95, "Dr A", path=SP.default_path())
    data = json.loads(SP.default_path().read_text())
    data["points"][-1]["threshold"] = 1 - 1e-9  # above any P the film can get
    SP.default_path().write_text(json.dumps(data))
    site = analyse(demo_study, "xray-pneumonia", reg).outputs
    assert site["label"] == "normal" and site["threshold"] >= p and site["model_threshold"] == o["model_threshold"]
    assert site["threshold_source"].startswith("site operating point") and "Dr A" in site["threshold_source"]
    assert site["_site_point"]["adopted_by"] == "Dr A" and site["_site_point"]["n_positive"] == pt.n_positive
    # heat is 0 at the decision threshold: a higher threshold moves the scale's zero up
    assert site["_heat_scale"]["zero_logit"] > o["_heat_scale"]["zero_logit"]
    assert site["_heat_scale"]["full_logit"] == o["_heat_scale"]["full_logit"]
    # other weights: the model's own threshold again, with the reason in the notes
    data["points"][-1]["weights_sha256"] = "e" * 64
    SP.default_path().write_text(json.dumps(data))
    again = analyse(demo_study, "xray-pneumonia", reg)
    assert again.outputs["threshold"] == o["threshold"] and any("other weights" in n for n in again.notes)


def test_evaluate_reports_the_site_threshold_as_the_source():
    from inference import evaluate as E

    ad = E.ADAPTERS["xray-pneumonia"]
    thr, src = E.model_threshold(ad, {"threshold": 0.97, "threshold_source": "site operating point adopted …"})
    assert thr == 0.97 and src.startswith("site operating point")


def test_viewer_and_pdf_say_which_threshold_made_the_call(main_window, demo_study, tmp_path):
    import subprocess

    from app.report import build_report
    from inference.pipeline import analyse
    from inference.registry import Registry

    reg = Registry()
    own = analyse(demo_study, "xray-pneumonia", reg)
    SP.adopt(_evaluation(tmp_path / "ev", sha=own.weights_sha256), 0.95, "Dr A. Reader", path=SP.default_path())
    r = analyse(demo_study, "xray-pneumonia", reg)
    sid = main_window.ctx.store.add_study(demo_study)
    main_window.show_study(demo_study, sid)
    v = main_window.current_viewer()
    main_window._analysis_done(sid, own)
    assert "site operating point" not in v.anomaly.band.text() and "chosen on validation" in v.anomaly.band.text()
    main_window._analysis_done(sid, r)
    assert "site operating point" in v.anomaly.band.text() and "Dr A. Reader" in v.anomaly.band.toolTip()
    main_window.ctx.store.add_result(sid, r)
    pdf = build_report(demo_study, main_window.ctx.store, sid, tmp_path / "r.pdf")
    text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout.split())
    assert "Threshold: site operating point adopted" in text and "Dr A. Reader" in text


def test_validate_dialog_adopts_a_site_point_after_a_classification_run(main_window, qtbot, tmp_path):
    reg = main_window.ctx.registry
    sha = reg.state("xray-pneumonia").sha256
    folder = _evaluation(tmp_path / "ev", sha=sha)
    ev = json.loads((folder / "evaluation.json").read_text())
    ev = dict(ev, labels=dict(ev["labels"], layout="file,label", path=str(tmp_path / "l.csv")), out_dir=str(folder), headline="AUROC 0.9",
              n_cases=120, n_failures=1, failures=[], metrics={})
    main_window.validate_models()
    d = main_window._validate_dialog
    qtbot.addWidget(d)
    d._done(ev)
    assert d.adopt_box.isVisibleTo(d)
    d.adopter.setText("")
    d.adopt()  # no name: refused, nothing written
    assert "who adopts" in d.status.text() and not SP.default_path().exists()
    d.adopter.setText("Dr A. Reader")
    d.target.setCurrentIndex(d.target.findData(0.95))
    d.adopt()
    pt, _ = SP.current("xray-pneumonia", sha)
    assert pt is not None and pt.adopted_by == "Dr A. Reader" and f"{pt.threshold:.4g}" in d.status.text()
    assert not d.adopt_box.isVisibleTo(d)
    d._done(dict(ev, model_id="heart-sound"))  # a model whose pipeline reads no site point: no adopt row
    assert not d.adopt_box.isVisibleTo(d)


def test_provenance_phrase_names_an_active_site_point(tmp_path, store):
    from app.validation.records import phrase

    assert "site operating point" not in phrase(store, "xray-pneumonia", "a" * 64)
    SP.adopt(_evaluation(tmp_path / "ev"), 0.95, "Dr A", path=SP.default_path())
    assert "site operating point: threshold" in phrase(store, "xray-pneumonia", "a" * 64)
    assert "Dr A" in phrase(store, "xray-pneumonia", "a" * 64)
    assert "site operating point" not in phrase(store, "xray-pneumonia", "f" * 64)  # other weights

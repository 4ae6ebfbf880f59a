"""lightbox evaluate: label files with known answers give the exact metrics; failures are listed, never
dropped; runs resume from batch's journal; the bundled heart-sound model runs end to end."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from inference import evaluate as E
from inference.results import Result
from inference.study import ReadError, Study, sha256_file


class FakeRunner(E._runner_class()):
    """batch.Runner with a stand-in pipeline: reads any file (a file starting 'BAD' is unreadable) and
    answers from ``answer(name) -> (outputs, arrays)``."""

    def __init__(self, modality: str, model_id: str, answer):
        from inference.registry import Registry

        self.registry = Registry()
        self.modality, self.model_id, self.weights_sha = modality, model_id, "f" * 64
        self.calls: list[str] = []

        def analyse(study, model_id, registry, ctx):
            self.calls.append(study.name)
            outputs, arrays = answer(study.name)
            return Result(model_id, self.weights_sha, "numpy", "CPU (test)", 0.01, outputs, clinical=False,
                          arrays=arrays or {})

        self.mod = SimpleNamespace(analyse=analyse)

    def _read(self, path: Path):
        if not path.exists():
            return None, f"{path.name}: file not found"
        if path.read_bytes()[:3] == b"BAD":
            return None, str(ReadError(path, "not a recording Lightbox can read"))
        return Study(self.modality, str(path), sha256_file(path), path.name), None


def _files(folder: Path, names, content=lambda n: n.encode()):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(content(n))


def _hs_adapter():
    return E.ADAPTERS["heart-sound"]


def _probs(p):
    return {"probabilities": {"normal": 1 - p, "abnormal": p}, "class": "abnormal" if p >= 0.5 else "normal"}


def test_perfect_and_constant_classifiers(tmp_path):
    names = [f"rec{i:02d}.wav" for i in range(20)]
    _files(tmp_path / "cases", names)
    truth = {n: ("abnormal" if i % 3 == 0 else "normal") for i, n in enumerate(names)}
    (tmp_path / "labels.csv").write_text("file,label\n" + "".join(f"cases/{n},{truth[n]}\n" for n in names))

    perfect = FakeRunner("pcg", "heart-sound", lambda n: (_probs(0.9 if truth[n] == "abnormal" else 0.2), None))
    ev = E.evaluate("heart-sound", tmp_path / "labels.csv", tmp_path / "out1", runner=perfect, n_boot=200)
    b = ev["metrics"]["binary"]
    assert ev["n_cases"] == 20 and ev["failures"] == []
    assert b["auroc"] == 1.0 and b["auroc_ci"] == [1.0, 1.0]
    assert b["sensitivity"] == 1.0 and b["specificity"] == 1.0 and b["ppv"] == 1.0 and b["npv"] == 1.0
    assert b["confusion"] == [[13, 0], [0, 7]] and b["threshold"] == 0.5
    assert b["roc"]["fpr"][0] == 0.0 and b["roc"]["tpr"][-1] == 1.0
    assert ev["headline"] == "AUROC 1.00"
    # operating points a site can read off its own cases (perfect model: every one is 100 % / 100 %)
    assert [op["target_sensitivity"] for op in b["operating_points"]] == [0.90, 0.93, 0.95, 0.97]
    assert all(op["specificity"] == 1.0 and op["sensitivity"] == 1.0 for op in b["operating_points"])
    lines = E.summary_lines(ev)
    assert any("operating points read off these cases" in ln for ln in lines)
    assert any(ln.startswith("  sensitivity >= 0.95: threshold") for ln in lines)

    constant = FakeRunner("pcg", "heart-sound", lambda n: (_probs(0.7), None))
    ev = E.evaluate("heart-sound", tmp_path / "labels.csv", tmp_path / "out2", runner=constant, n_boot=200)
    b = ev["metrics"]["binary"]
    assert b["auroc"] == 0.5
    assert b["sensitivity"] == 1.0 and b["specificity"] == 0.0  # everything called abnormal at 0.5
    assert b["confusion"] == [[0, 13], [0, 7]]
    # what was written: JSON with provenance, batch's table, per-case table
    j = json.loads((tmp_path / "out2" / E.JSON_NAME).read_text())
    assert j["model_id"] == "heart-sound" and j["weights_sha256"] == "f" * 64 and j["device"] == "CPU (test)"
    assert j["labels"]["sha256"] == sha256_file(tmp_path / "labels.csv") and j["date"]
    assert (tmp_path / "out2" / E.TABLE_NAME).read_text().startswith("path,sha256,modality,model_id")
    assert len((tmp_path / "out2" / E.CASES_NAME).read_text().strip().splitlines()) == 21


def test_operating_points_read_off_a_sites_cases_have_the_known_answer():
    from inference import metrics as M

    # 10 positives scored 0.91..1.00 and 10 negatives 0.05..0.95: the highest threshold keeping sensitivity
    # >= 0.90 lets 1 positive fall below it, i.e. the second-lowest positive score, 0.92
    y = np.r_[np.ones(10, int), np.zeros(10, int)]
    s = np.r_[np.linspace(0.91, 1.0, 10), np.linspace(0.05, 0.95, 10)]
    ops = {op["target_sensitivity"]: op for op in M.operating_points(y, s, (0.90, 0.97))}
    assert ops[0.90]["threshold"] == pytest.approx(0.92) and ops[0.90]["sensitivity"] == 0.9
    assert ops[0.90]["specificity"] == 0.9 and ops[0.90]["confusion"] == [[9, 1], [1, 9]]
    assert ops[0.97]["threshold"] == pytest.approx(0.91) and ops[0.97]["sensitivity"] == 1.0
    assert ops[0.97]["specificity"] == 0.9  # 0.95 >= 0.91: that normal case is called positive
    lo, hi = ops[0.90]["specificity_ci"]
    assert lo < 0.9 < hi
    assert M.operating_points(np.ones(4, int), np.ones(4)) == []  # one class only: nothing to read off
    # a reversed score still reaches the sensitivity, at the price of specificity
    rev = {op["target_sensitivity"]: op for op in M.operating_points(y, 1 - s, (0.90,))}
    assert rev[0.90]["sensitivity"] >= 0.9 and rev[0.90]["specificity"] < 0.2


def test_failures_are_listed_never_dropped(tmp_path):
    _files(tmp_path, ["a.wav", "b.wav", "c.wav", "d.wav"])
    (tmp_path / "broken.wav").write_bytes(b"BAD bytes")
    (tmp_path / "labels.csv").write_text(
        "file,label\na.wav,abnormal\nb.wav,normal\nbroken.wav,normal\nmissing.wav,normal\nc.wav,maybe\n"
        "d.wav,\n,normal\n")
    r = FakeRunner("pcg", "heart-sound", lambda n: (_probs(0.8 if n == "a.wav" else 0.1), None))
    ev = E.evaluate("heart-sound", tmp_path / "labels.csv", tmp_path / "out", runner=r, n_boot=100)
    assert ev["n_cases"] == 2
    fails = {f["line"]: f for f in ev["failures"]}
    assert set(fails) == {4, 5, 6, 7, 8}
    assert "broken.wav" in fails[4]["error"] and "read" in fails[4]["error"]
    assert fails[5]["error"] == "file not found" and fails[5]["file"] == "missing.wav"
    assert "'maybe' is not one of" in fails[6]["error"]
    assert "no label" in fails[7]["error"] and "no file" in fails[8]["error"]
    assert "missing.wav" in (tmp_path / "out" / E.CASES_NAME).read_text()
    assert "broken.wav" in (tmp_path / "out" / E.TABLE_NAME).read_text()  # a batch error row too


def test_ef_known_offset_gives_that_bias_and_filelist_layout(tmp_path):
    rng = np.random.default_rng(3)
    ref = {f"0X{i:04X}": float(v) for i, v in enumerate(rng.uniform(15, 75, 30).round(1))}
    _files(tmp_path / "Videos", [f"{k}.avi" for k in ref])
    lines = ["FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split"]
    for i, (k, v) in enumerate(ref.items()):
        lines.append(f"{k},{v},30,80,112,112,50,120,{'TEST' if i < 24 else 'TRAIN'}")
    (tmp_path / "FileList.csv").write_text("\n".join(lines) + "\n")
    labels = E.read_labels(tmp_path / "FileList.csv", split="test")
    assert labels.layout == "EchoNet FileList" and len(labels.cases) == 24 and labels.excluded == 6
    assert all(c.path is not None and c.path.suffix == ".avi" for c in labels.cases)

    r = FakeRunner("echo", "echonet-ef", lambda n: ({"LVEF_whole_video_%": ref[Path(n).stem] + 3.0}, None))
    ev = E.evaluate("echonet-ef", tmp_path / "FileList.csv", tmp_path / "out", runner=r, split="TEST")
    a = ev["metrics"]["agreement"]
    assert ev["n_cases"] == 24 and a["n"] == 24
    assert a["bias"] == pytest.approx(3.0) and a["mae"] == pytest.approx(3.0) and a["rmse"] == pytest.approx(3.0)
    assert a["loa_low"] == pytest.approx(3.0) and a["loa_high"] == pytest.approx(3.0)
    vals = np.array([ref[Path(c.file).stem] for c in labels.cases])
    assert a["r2"] == pytest.approx(1 - 9 * 24 / ((vals - vals.mean()) ** 2).sum())
    cat = ev["metrics"]["categories"]
    assert cat["cutoffs"] == E.EF_CUTOFFS and "ASE" in cat["source"] and np.sum(cat["confusion"]) == 24
    shifted = sum(E.ef_category(v) != E.ef_category(v + 3) for v in vals)
    assert cat["agreement"] == pytest.approx(1 - shifted / 24)
    assert ev["cases"][0]["difference"] == pytest.approx(3.0)
    assert ev["headline"].startswith("EF MAE 3.0")


def test_file_ef_layout_with_category_and_bad_values(tmp_path):
    _files(tmp_path, ["a.avi", "b.avi"])
    (tmp_path / "set.csv").write_text("file,ef,category,comment\na.avi,55,normal,clear\nb.avi,140,,\n"
                                      "c.avi,40,,\n")
    labels = E.read_labels(tmp_path / "set.csv")
    assert labels.layout == "file,ef" and labels.cases[0].comment == "clear"
    assert "between 0 and 100" in labels.cases[1].error and labels.cases[2].error == "file not found"


def test_segmentation_dice_iou_per_case_and_mean(tmp_path):
    import cv2

    ref = np.zeros((40, 40), np.uint8)
    ref[10:30, 10:30] = 255  # 400 px
    _files(tmp_path / "img", ["full.png", "half.png", "none.png"])
    (tmp_path / "masks").mkdir()
    for n in ("full", "half", "none"):
        cv2.imwrite(str(tmp_path / "masks" / f"{n}.png"), ref)
    pred = {"full.png": ref > 0, "half.png": np.zeros((40, 40), bool), "none.png": np.zeros((20, 20), bool)}
    pred["half.png"][10:30, 10:20] = True  # 200 px inside: Dice 2*200/600, IoU 200/400
    (tmp_path / "seg.csv").write_text("file,mask\n" + "".join(f"img/{n}.png,masks/{n}.png\n"
                                                              for n in ("full", "half", "none")))
    r = FakeRunner("endo", "endo-polyp", lambda n: ({"findings_count": 0}, {"mask": pred[n]}))
    ev = E.evaluate("endo-polyp", tmp_path / "seg.csv", tmp_path / "out", runner=r, n_boot=100)
    d = {Path(c["file"]).name: c for c in ev["cases"]}
    assert d["full.png"]["dice"] == 1.0 and d["full.png"]["iou"] == 1.0
    assert d["half.png"]["dice"] == pytest.approx(2 / 3, abs=1e-6) and d["half.png"]["iou"] == pytest.approx(0.5)
    assert d["none.png"]["dice"] == 0.0  # a smaller mask is resized to the reference, not refused
    s = ev["metrics"]["segmentation"]
    assert s["dice_mean"] == pytest.approx((1 + 2 / 3 + 0) / 3, abs=1e-6) and s["n"] == 3
    # a changed reference mask re-runs that case; unchanged ones come from the journal
    cv2.imwrite(str(tmp_path / "masks" / "none.png"), np.zeros((40, 40), np.uint8))
    r.calls.clear()
    ev = E.evaluate("endo-polyp", tmp_path / "seg.csv", tmp_path / "out", runner=r, n_boot=100)
    assert r.calls == ["none.png"]
    assert {Path(c["file"]).name: c["dice"] for c in ev["cases"]}["none.png"] == 1.0  # empty/empty


def test_resumes_from_the_journal_and_stores_results(tmp_path, store):
    names = [f"r{i}.wav" for i in range(6)]
    _files(tmp_path, names)
    (tmp_path / "l.csv").write_text("file,label\n" + "".join(f"{n},{'1' if i % 2 else '0'}\n"
                                                             for i, n in enumerate(names)))
    r = FakeRunner("pcg", "heart-sound", lambda n: (_probs(0.3 + 0.1 * int(n[1])), None))
    first = E.evaluate("heart-sound", tmp_path / "l.csv", tmp_path / "o", runner=r, store=store, n_boot=100)
    assert len(r.calls) == 6 and len(store.studies()) == 6
    r.calls.clear()
    again = E.evaluate("heart-sound", tmp_path / "l.csv", tmp_path / "o", runner=r, store=store, n_boot=100)
    assert r.calls == [] and again["metrics"]["binary"]["auroc"] == first["metrics"]["binary"]["auroc"]
    assert len(store.studies()) == 6 and sum(s["n_results"] for s in store.studies()) == 6


def test_cancel_keeps_what_ran(tmp_path):
    from inference.pipeline import Cancelled, JobContext

    names = [f"r{i}.wav" for i in range(10)]
    _files(tmp_path, names)
    (tmp_path / "l.csv").write_text("file,label\n" + "".join(f"{n},normal\n" for n in names))
    r = FakeRunner("pcg", "heart-sound", lambda n: (_probs(0.1), None))
    seen = []

    def progress(f, text):
        seen.append(f)
        if len(r.calls) >= 4:
            ctx.cancel()

    ctx = JobContext(progress=progress)
    with pytest.raises(Cancelled):
        E.evaluate("heart-sound", tmp_path / "l.csv", tmp_path / "o", runner=r, ctx=ctx)
    assert len(r.calls) == 4
    r.calls.clear()
    ev = E.evaluate("heart-sound", tmp_path / "l.csv", tmp_path / "o", runner=r)
    assert len(r.calls) == 6 and ev["n_cases"] == 10


def test_label_file_errors_are_clear(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "nohead.csv").write_text("a.wav,normal\n")
    (tmp_path / "noref.csv").write_text("file,notes\na.wav,x\n")
    for f, msg in (("empty.csv", "empty"), ("nohead.csv", "header"), ("noref.csv", "reference column"),
                   ("absent.csv", "not found")):
        with pytest.raises(E.LabelError, match=msg):
            E.read_labels(tmp_path / f)
    (tmp_path / "ef.csv").write_text("file,ef\na.wav,50\n")
    with pytest.raises(E.LabelError, match="cannot be checked against EF"):
        E.evaluate("heart-sound", tmp_path / "ef.csv", tmp_path / "o",
                   runner=FakeRunner("pcg", "heart-sound", lambda n: ({}, None)))


def test_adapters_say_which_output_is_the_score():
    hs = E.ADAPTERS["heart-sound"]
    assert E.score_of(hs, _probs(0.8)) == pytest.approx(0.8)
    assert E.normalise_label(hs, "-1") == "normal" and E.normalise_label(hs, "ABNORMAL") == "abnormal"
    rh = E.ADAPTERS["ecg-rhythm"]
    assert E.normalise_label(rh, "A") == "af" and E.normalise_label(rh, "~") == "noisy"
    assert E.normalise_label(rh, "yes") is None  # a 4-class model needs a class name
    ax = E.ADAPTERS["xray-anomaly"]
    thr, src = E.model_threshold(ax, {"threshold": 0.348})
    assert thr == pytest.approx(0.348) and "own threshold" in src and not ax.probabilistic
    assert E.score_of(E.ADAPTERS["endo-polyp"], {"_findings": [{"confidence": 0.4}, {"confidence": 0.9}]}) == 0.9
    assert E.score_of(E.ADAPTERS["endo-polyp"], {"_findings": []}) == 0.0
    assert E.adapter_for("echonet-ef").value == "LVEF_whole_video_%"


def test_multiclass_model_gets_confusion_and_one_vs_rest_auroc(tmp_path):
    classes = ("normal", "af", "other", "noisy")
    codes = ["N", "A", "O", "~"]
    names = [f"e{i}.hea" for i in range(12)]
    _files(tmp_path, names)
    truth = {n: classes[i % 4] for i, n in enumerate(names)}
    (tmp_path / "REFERENCE.csv").write_text("file,label\n" + "".join(f"{n},{codes[i % 4]}\n"
                                                                      for i, n in enumerate(names)))

    def answer(n):
        p = {c: 0.1 for c in classes}
        p[truth[n]] = 0.7
        return {"probabilities": p}, None

    ev = E.evaluate("ecg-rhythm", tmp_path / "REFERENCE.csv", tmp_path / "o",
                    runner=FakeRunner("ecg", "ecg-rhythm", answer), n_boot=100)
    mc = ev["metrics"]["multiclass"]
    assert mc["accuracy"] == 1.0 and mc["confusion"] == (np.eye(4, dtype=int) * 3).tolist()
    assert ev["metrics"]["binary"]["auroc"] == 1.0 and ev["metrics"]["binary"]["positive"] == "af"


def test_classifier_metrics_for_model_cards():
    """What a training script calls on its held-out set (no files): the card's numbers."""
    hs = E.ADAPTERS["heart-sound"]
    labels = ["normal"] * 6 + ["abnormal"] * 4
    scores = [0.1, 0.2, 0.3, 0.6, 0.1, 0.2, 0.9, 0.8, 0.4, 0.7]
    m = E.classifier_metrics(labels, scores, hs, 0.5, n_boot=200)["binary"]
    assert m["confusion"] == [[5, 1], [1, 3]] and m["sensitivity"] == 0.75
    assert 0.5 < m["auroc"] <= 1.0 and m["auroc_ci"][0] <= m["auroc"] <= m["auroc_ci"][1]


# -- the real bundled heart-sound model, end to end ---------------------------------------------------
def test_heart_sound_end_to_end_on_generated_wavs(tmp_path, store):
    from inference.pcg.synth import heart_sound, write_wav

    rows = ["file,label"]
    for i in range(6):
        murmur = 1.5 if i % 2 else 0.0
        hs = heart_sound(duration_s=6.0, bpm=60 + 7 * i, sr=2000, murmur=murmur, seed=i)
        write_wav(tmp_path / "wav" / f"s{i}.wav", hs["audio"], hs["sr"])
        rows.append(f"wav/s{i}.wav,{'abnormal' if murmur else 'normal'}")
    (tmp_path / "wav" / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    rows.append("wav/corrupt.wav,normal")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    ev = E.evaluate("heart-sound", tmp_path / "labels.csv", tmp_path / "out", store=store, n_boot=200)
    assert ev["n_cases"] == 6 and ev["weights_sha256"].startswith("adc412")
    assert [f["file"] for f in ev["failures"]] == ["wav/corrupt.wav"]
    b = ev["metrics"]["binary"]
    assert 0.0 <= b["auroc"] <= 1.0 and sum(map(sum, b["confusion"])) == 6
    assert ev["clinical"] is False and ev["runtime"] == "onnxruntime"
    assert len(store.studies()) == 6  # the same results the app would show
    assert any("AUROC" in line for line in E.summary_lines(ev))


def test_held_out_metrics_match_a_local_validation():
    """The training script's call and lightbox evaluate give the same numbers for the same cases."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    p1 = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, 80), 0, 1)
    probs = np.stack([1 - p1, p1], 1)
    card = E.held_out_metrics(("normal", "abnormal"), y, probs, model_id="heart-sound", n_boot=300)
    labels = ["abnormal" if v else "normal" for v in y]
    local = E.classifier_metrics(labels, p1, E.ADAPTERS["heart-sound"], 0.5, n_boot=300)["binary"]
    for k in ("auroc", "auroc_ci", "sensitivity", "specificity", "ppv", "npv", "confusion", "brier"):
        assert card["binary"][k] == local[k], k
    assert card["multiclass"]["confusion"][1][1] == local["confusion"][1][1]  # argmax == p >= 0.5 here


def test_cli_writes_files_stores_the_validation_and_never_imports_qt(tmp_path):
    import subprocess
    import sys

    from app.store import Store
    from app.validation import records
    from inference.pcg.synth import heart_sound, write_wav
    from tests.conftest import ROOT

    rows = ["file,label"]
    for i in range(4):
        hs = heart_sound(duration_s=5.0, bpm=70, sr=2000, murmur=1.5 * (i % 2), seed=i)
        write_wav(tmp_path / f"s{i}.wav", hs["audio"], hs["sr"])
        rows.append(f"s{i}.wav,{i % 2}")
    rows.append("gone.wav,0")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    db, out = tmp_path / "v.sqlite", tmp_path / "out"
    code = ("import sys; from app.cli import main; rc = main(sys.argv[1:]); "
            "assert 'PySide6' not in sys.modules, 'Qt imported'; sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, "evaluate", "heart-sound", str(tmp_path / "labels.csv"),
                        "--out", str(out), "--db", str(db), "--boot", "100"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "heart-sound on 4 cases" in p.stdout and "AUROC" in p.stdout and "gone.wav: file not found" in p.stdout
    assert "stored as heart-sound's local validation" in p.stdout
    for name in (E.JSON_NAME, E.PDF_NAME, E.CASES_NAME, E.TABLE_NAME):
        assert (out / name).stat().st_size > 0, name
    st = Store(db)
    assert records.phrase(st, "heart-sound").startswith("validated here on 4 cases: AUROC")
    st.close()
    bad = subprocess.run([sys.executable, "-m", "app.cli", "evaluate", "heart-sound", str(tmp_path / "none.csv")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "label file not found" in bad.stderr


def test_bundled_models_have_a_score_the_adapter_can_read(tmp_path):
    """Each bundled model's real result carries the output its adapter reads (the X-ray adapter read keys
    the pneumonia pipeline never writes, so every case failed with 'no score')."""
    from inference.detect import open_study
    from inference.pipeline import analyse
    from inference.registry import Registry
    from inference.xray import demo as xdemo

    reg = Registry()
    for which, expect in (("pneumonia", "pneumonia"), ("normal", "normal")):
        r = analyse(open_study(xdemo.make(tmp_path, which)), "xray-pneumonia", reg)
        ad = E.adapter_for("xray-pneumonia", reg)
        p = E.score_of(ad, r.outputs)
        assert p is not None and p == r.outputs["p_pneumonia"]
        assert (p >= E.model_threshold(ad, r.outputs, reg)[0]) == (expect == "pneumonia")
    for mid in ("endo-polyp", "endo-polyp-lightbox"):
        assert E.adapter_for(mid, reg).score_fn is not None

"""Still endoscopy images: detection by content (real Kvasir-SEG JPEGs vs the committed Kermany X-rays),
ambiguous images refused with the candidates, --modality overrides, a batch named by the polyp model over a
folder of JPEGs, a folder of stills analysed as a set, the mask store's schema step."""
from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.endo_clips import kvasir_fixtures

XRAYS = sorted((ROOT / "resources" / "xray").glob("*.jpeg"))


def _write(path: Path, rgb: np.ndarray) -> Path:
    import cv2

    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))
    return path


@pytest.fixture
def stills(tmp_path):
    """The five Kvasir fixtures as JPEG, PNG, TIFF, BMP and JPEG again, in one folder."""
    d = tmp_path / "kvasir"
    d.mkdir()
    for (img, _), ext in zip(kvasir_fixtures(), (".jpg", ".png", ".tif", ".bmp", ".jpeg")):
        _write(d / f"polyp{ext}", img) if ext != ".jpeg" else _write(d / "polyp5.jpeg", img)
    return d


def _outdoor(tmp_path) -> Path:
    from inference.endo.polyp_eval import outdoor_scene

    return _write(tmp_path / "holiday.png", outdoor_scene(3, 320))


def test_colour_endoscopy_stills_open_as_endoscopy_and_radiographs_stay_xray(stills, tmp_path):
    import cv2

    from inference.detect import detect_modality, open_study
    from inference.endo.stills import endo_still_score

    files = sorted(stills.iterdir())
    assert {p.suffix for p in files} == {".jpg", ".png", ".tif", ".bmp", ".jpeg"}
    for p in files:
        assert detect_modality(p) == "endo", p
        st = open_study(p)
        assert st.modality == "endo" and st.metadata["format"] == "image" and st.metadata["frame_count"] == 1
        assert st.data["source"].frame(0).shape[2] == 3
    assert len(XRAYS) == 2
    for p in XRAYS:
        assert detect_modality(p) == "xray", p
        grey = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        assert endo_still_score(grey) == 0.0
        # grey stored as RGB (a screenshot of a radiograph) is still a radiograph
        rgb = _write(tmp_path / (p.stem + "_rgb.png"), np.repeat(grey[..., None], 3, -1))
        assert detect_modality(rgb) == "xray"
    # the three signs each count: colour alone, + the scope's black mask, + its text overlay
    from inference.endo.stills import evidence

    e = evidence(kvasir_fixtures()[4][0])  # date and time on the black border, bottom left
    assert e["reddish"] > 0.6 and e["vignette"] > 0.5 and e["text"] == 1.0
    plain = kvasir_fixtures()[4][0].copy()
    plain[(plain.max(axis=2) < 40)] = 128  # no black mask, no overlay: colour alone still says endoscopy
    e2 = evidence(plain)
    assert e2["vignette"] == 0 and e2["text"] == 0 and endo_still_score(plain) >= 0.5


def test_an_ambiguous_image_is_not_guessed_and_modality_overrides(tmp_path, capsys):
    from app.cli import main
    from inference.detect import AmbiguousModality, detect_modality, open_study

    p = _outdoor(tmp_path)
    with pytest.raises(AmbiguousModality) as e:
        detect_modality(p)
    assert [m for m, _ in e.value.candidates] == ["endo", "xray"] and "--modality" in str(e.value)
    assert open_study(p, "endo").modality == "endo" and open_study(p, "xray").modality == "xray"
    db = str(tmp_path / "a.sqlite")
    assert main(["analyse", str(p), "--db", db]) == 1
    assert "could be Endoscopy or Chest X-ray" in capsys.readouterr().err
    assert main(["analyse", str(p), "--db", db, "--modality", "endo"]) == 0
    out = capsys.readouterr().out
    assert "outside what this model was trained on" in out or "in_domain: False" in out
    # a radiograph read as endoscopy on request: the polyp model says it is outside its domain
    assert main(["analyse", str(XRAYS[0]), "--db", db, "--modality", "endo"]) == 0
    assert "in_domain: False" in capsys.readouterr().out
    assert main(["analyse", str(XRAYS[0]), "--db", db, "--modality", "endo", "--model", "xray-pneumonia"]) == 2


def test_a_still_is_analysed_as_it_is_with_its_mask(stills, registry):
    from inference.detect import open_study
    from inference.endo.masks import BLOB_NAME, MaskTrack
    from inference.pipeline import analyse

    from tests.endo_clips import iou

    img, gt = kvasir_fixtures()[0]
    r = analyse(open_study(stills / "polyp.jpg"), None, registry)
    o = r.outputs
    assert o["polyp"] is True and o["confidence"] > 0.9 and o["in_domain"] and o["findings_count"] == 1
    assert o["_findings"][0]["note"].startswith("polyp.jpg; area")
    m = MaskTrack.from_bytes(r.blobs[BLOB_NAME]).mask(0)
    assert iou(m, gt) > 0.3


def test_batch_named_by_the_polyp_model_reads_a_folder_of_jpegs_as_endoscopy(stills, tmp_path):
    from app.cli import main

    jpgs = tmp_path / "jpgs"
    jpgs.mkdir()
    for (img, _), k in zip(kvasir_fixtures(), range(5)):
        _write(jpgs / f"frame_{k}.jpg", img)
    out = tmp_path / "r.csv"
    assert main(["batch", "endo-polyp-lightbox", str(jpgs), "--out", str(out), "--no-store", "--workers", "1"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 5 and all(r["error"] == "" for r in rows), [r["error"] for r in rows]
    assert all(r["modality"] == "endo" and r["polyp"] == "True" for r in rows)
    # a radiograph given to the polyp model is read as endoscopy too: the model's gate answers
    (jpgs / "xray.jpeg").write_bytes(XRAYS[0].read_bytes())
    out2 = tmp_path / "r2.csv"
    assert main(["batch", "endo-polyp-lightbox", str(jpgs), "--out", str(out2), "--no-store", "--workers", "1"]) == 0
    rows = {Path(r["path"]).name: r for r in csv.DictReader(open(out2))}
    assert rows["xray.jpeg"]["error"] == "" and rows["xray.jpeg"]["in_domain"] == "False"
    # the same folder as one video's frames: one row
    out3 = tmp_path / "r3.csv"
    assert main(["batch", "endo-polyp-lightbox", str(jpgs), "--out", str(out3), "--no-store", "--workers", "1",
                 "--folder-as", "sequence"]) == 0
    (row,) = list(csv.DictReader(open(out3)))
    assert row["error"] == "" and int(row["frames_total"]) == 6
    assert main(["batch", "endo-polyp-lightbox", str(jpgs), "--out", str(out3), "--modality", "xray"]) == 2


def test_a_folder_of_stills_as_a_set_and_as_a_sequence(stills, tmp_path, capsys):
    from app.cli import main
    from inference.detect import open_study

    st = open_study(stills)
    assert st.metadata["folder_as"] == "set" and "scene cuts" in st.notes[0]
    seq = open_study(stills, "endo", folder_as="sequence")
    assert seq.metadata["folder_as"] == "sequence" and seq.sha256 != st.sha256
    db = str(tmp_path / "s.sqlite")
    assert main(["analyse", str(stills), "--db", db]) == 0
    out = capsys.readouterr().out
    assert "images_with_polyp: 5" in out and out.count(": polyp (confidence") == 5
    assert "findings_count: 5" in out
    assert main(["analyse", str(stills), "--db", db, "--folder-as", "sequence"]) == 0
    out = capsys.readouterr().out
    assert "scene_cuts: 4" in out and "images_with_polyp" not in out


def test_schema_step_adds_result_blobs_to_a_version_4_database(tmp_path):
    import sqlite_utils

    from app.store import MIGRATIONS, SCHEMA_VERSION, Store
    from inference.results import Result
    from inference.study import Study

    p = tmp_path / "v4.sqlite"
    conn = sqlite3.connect(str(p), isolation_level=None)
    db = sqlite_utils.Database(conn)
    db["meta"].create({"key": str, "value": str}, pk="key")
    for n in (1, 2, 3, 4):
        MIGRATIONS[n](db)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '4')")
    conn.execute("INSERT INTO studies (modality, name, source_path, sha256, metadata, created_at, opened_at) "
                 "VALUES ('endo', 'old.mp4', '/x/old.mp4', 'aa', '{}', '2025-01-01', '2025-01-01')")
    conn.execute("INSERT INTO results (study_id, model_id, weights_sha256, runtime, device, seconds, outputs, "
                 "clinical, stamp, notes, created_at) VALUES (1, 'endo-polyp-lightbox', 'ab', 'onnxruntime', 'CPU', "
                 "1.0, ?, 0, 'NOT A CLINICAL RESULT', '[]', '2025-01-01')", (json.dumps({"findings_count": 0}),))
    conn.close()
    s = Store(p)
    assert s.schema_version() == SCHEMA_VERSION >= 5 and "result_blobs" in s.db.table_names()
    (old,) = s.results(1)
    assert old.outputs == {"findings_count": 0} and s.result_blob(old.id, "polyp_masks") is None
    sid = s.save(Study("endo", "/x/new.mp4", "bb", "new.mp4"),
                 [Result("endo-polyp-lightbox", "ab", "onnxruntime", "CPU", 1.0, {}, False, blobs={"polyp_masks": b"x" * 10})])
    new = s.results(sid)[0]
    assert s.result_blob(new.id, "polyp_masks") == b"x" * 10 and new.blobs == {}
    s.close()
    from app.store import _m_blobs

    s = Store(p)
    _m_blobs(s.db)  # idempotent (another branch's numbering, a re-run)
    assert s.result_blob(new.id, "polyp_masks") == b"x" * 10
    s.close()


def test_evaluate_scores_the_polyp_model_on_still_images_with_masks(tmp_path):
    """lightbox evaluate on this site's labelled stills (file,mask): the JPEGs are read as endoscopy (they
    were read as X-rays and failed before) and the still's mask is scored against the reference."""
    import shutil

    from app.cli import main

    from tests.endo_clips import FIXTURES

    rows = ["file,mask"]
    for p in sorted(FIXTURES.glob("kvasir_*.jpg")):
        shutil.copy(p, tmp_path / p.name)
        shutil.copy(p.with_name(p.stem + "_mask.png"), tmp_path / (p.stem + "_mask.png"))
        rows.append(f"{p.name},{p.stem}_mask.png")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    assert main(["evaluate", "endo-polyp-lightbox", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "out")]) == 0
    ev = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert ev["n_cases"] == 5 and not ev["failures"]
    seg = ev["metrics"]["segmentation"]
    assert seg["n"] == 5 and seg["dice_mean"] > 0.6, seg

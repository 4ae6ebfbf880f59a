"""lightbox batch: folders of studies, bad files as rows, resumable after a kill, engines agree."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from inference.batch import FIXED_COLUMNS, read_journal, run_batch
from inference.ecg.demo import synth_ecg
from inference.ecg.reader import write_ml4h_hd5
from tests.conftest import ROOT

N_GOOD, N_BAD = 200, 12  # plus one byte-identical copy of a good file (same study, its own row)


@pytest.fixture(scope="module")
def ecg_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("ecgs")
    rng = np.random.default_rng(0)
    for i in range(N_GOOD):
        hr = float(rng.uniform(50, 110))
        sig = synth_ecg(hr=hr, seed=i).astype(np.float32)
        sub = d / f"site{i % 3}"
        sub.mkdir(exist_ok=True)
        write_ml4h_hd5(sub / f"ecg_{i:04d}.hd5", sig, 500)
    bad = d / "bad"
    bad.mkdir()
    for i in range(N_BAD):
        p = bad / f"broken_{i:02d}.hd5"
        p.write_bytes(b"" if i == 0 else os.urandom(500 + i))
    (d / "notes.txt").write_text("not a study")  # ignored: not an ECG extension
    dup = d / "copies"
    dup.mkdir()
    (dup / "same_as_0000.hd5").write_bytes((d / "site0" / "ecg_0000.hd5").read_bytes())
    return d


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _comparable(rows):
    return sorted((Path(r["path"]).name, r["sha256"], r["weights_sha256"], r["error"] != "",
                   json.dumps(json.loads(r["outputs"]), sort_keys=True)) for r in rows)


def test_local_batch_rows_errors_and_store(ecg_folder, tmp_path):
    from app.store import Store

    out = tmp_path / "res.csv"
    db = tmp_path / "b.sqlite"
    s = run_batch("ecg-measure", [str(ecg_folder)], out, workers=1, db=str(db), progress=False)
    assert (s.total, s.done, s.skipped, s.errors) == (N_GOOD + N_BAD + 1, N_GOOD + N_BAD, 1, N_BAD)
    rows = _rows(out)
    assert len(rows) == N_GOOD + N_BAD + 1
    copy = next(r for r in rows if r["path"].endswith("same_as_0000.hd5"))
    orig = next(r for r in rows if r["path"].endswith("ecg_0000.hd5"))
    assert copy["outputs"] == orig["outputs"] and copy["sha256"] == orig["sha256"]
    assert list(rows[0])[: len(FIXED_COLUMNS)] == FIXED_COLUMNS
    bad = [r for r in rows if r["error"]]
    assert len(bad) == N_BAD and all(Path(r["path"]).name in r["error"] for r in bad)
    good = [r for r in rows if not r["error"]]
    assert all(40 < float(r["heart_rate_bpm"]) < 120 for r in good)
    st = Store(db)
    assert len(st.studies(limit=10000)) == N_GOOD  # bad files write no study row
    # a second run skips everything
    s2 = run_batch("ecg-measure", [str(ecg_folder)], out, workers=1, db=str(db), progress=False)
    assert (s2.done, s2.skipped) == (0, N_GOOD + N_BAD + 1)
    assert len(_rows(out)) == N_GOOD + N_BAD + 1
    assert len(st.studies(limit=10000)) == N_GOOD


def test_two_workers_give_identical_rows(ecg_folder, tmp_path):
    a = tmp_path / "a.csv"
    b = tmp_path / "b.parquet"
    run_batch("ecg-measure", [str(ecg_folder / "site0"), str(ecg_folder / "bad")], a, workers=1,
              store=False, progress=False)
    run_batch("ecg-measure", [str(ecg_folder / "site0"), str(ecg_folder / "bad")], b, workers=2, chunk=8,
              store=False, progress=False)
    import pyarrow.parquet as pq

    rows_b = [{k: ("" if v is None else v) for k, v in r.items()} for r in pq.read_table(b).to_pylist()]
    assert _comparable(_rows(a)) == _comparable(rows_b)


def test_killed_run_resumes_with_every_study_once(ecg_folder, tmp_path):
    out = tmp_path / "k.csv"
    journal = out.with_name(out.name + ".journal.jsonl")
    cmd = [sys.executable, "-m", "app.cli", "batch", "ecg-measure", str(ecg_folder), "--out", str(out),
           "--workers", "1", "--chunk", "4", "--no-store"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        if journal.exists() and len(read_journal(journal)) >= 40:
            break
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(read_journal(journal))
    assert 0 < done_before < N_GOOD + N_BAD
    jrows = read_journal(journal)
    assert len({(r["sha256"]) for r in jrows}) == len(jrows)  # nothing ran twice
    with open(journal, "ab") as f:
        f.write(b'{"path": "half a line')  # a kill mid-write
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    jrows = read_journal(journal)
    assert len({r["sha256"] for r in jrows}) == len(jrows) == N_GOOD + N_BAD  # each study ran exactly once
    rows = _rows(out)
    names = [Path(r["path"]).name for r in rows]
    assert len(names) == len(set(names)) == N_GOOD + N_BAD + 1


def test_ray_engine_matches_local(ecg_folder, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed")
    a = tmp_path / "a.csv"
    b = tmp_path / "b.csv"
    inputs = [str(ecg_folder / "site1"), str(ecg_folder / "bad")]
    run_batch("ecg-measure", inputs, a, workers=1, store=False, progress=False)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    except Exception as e:  # pragma: no cover - depends on the machine
        pytest.skip(f"Ray cannot start a local cluster here: {e}")
    try:
        run_batch("ecg-measure", inputs, b, engine="ray", workers=2, chunk=8, store=False, progress=False)
    finally:
        ray.shutdown()
    assert _comparable(_rows(a)) == _comparable(_rows(b))


def test_unknown_model_and_missing_weights(tmp_path, capsys):
    from app.cli import main

    assert main(["batch", "nope", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 1
    assert "unknown model" in capsys.readouterr().err
    assert main(["batch", "ecg2af", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 1
    assert "lightbox weights install" in capsys.readouterr().err


def test_cli_says_when_no_input_file_fits_the_model(tmp_path, capsys):
    from inference.batch import main

    (tmp_path / "notes.txt").write_text("not a recording")
    assert main(["heart-sound", str(tmp_path), "--out", str(tmp_path / "o.csv"), "--no-store"]) == 0
    err = capsys.readouterr().err
    assert "no pcg files (.wav .flac .ogg .mp3)" in err and (tmp_path / "o.csv").exists()

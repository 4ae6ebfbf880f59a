"""Models ▸ Validate on my cases… (pytest-qt, offscreen): the bundled heart-sound model on generated WAVs
runs on a worker, is stored as the model's local validation, and every provenance line then says so;
a cancelled run keeps what ran and resumes."""
from __future__ import annotations

import time

import pytest

from inference import evaluate as E

from test_evaluate import FakeRunner, _probs  # noqa: E402  (same folder)


def _wavs(folder, n=4):
    from inference.pcg.synth import heart_sound, write_wav

    rows = ["file,label"]
    for i in range(n):
        hs = heart_sound(duration_s=5.0, bpm=66 + 3 * i, sr=2000, murmur=1.5 * (i % 2), seed=i)
        write_wav(folder / f"s{i}.wav", hs["audio"], hs["sr"])
        rows.append(f"s{i}.wav,{'abnormal' if i % 2 else 'normal'}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


def test_validate_dialog_stores_and_every_provenance_line_says_so(main_window, qtbot, tmp_path):
    from app.validation import records

    labels = _wavs(tmp_path)
    main_window.results.set_models(("heart-sound",))
    assert "not validated on local cases" in main_window.results.state.text()
    main_window.validate_models()
    d = main_window._validate_dialog
    qtbot.addWidget(d)
    d.model.setCurrentIndex(d.model.findData("heart-sound"))
    d.labels.setText(str(labels))
    d.start()
    assert not d.run_btn.isEnabled() and d.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: d.ev is not None, timeout=120000)
    assert d.ev["n_cases"] == 4 and "AUROC" in d.summary.toPlainText() and d.pdf_btn.isEnabled()
    assert (tmp_path / "labels_heart-sound_evaluation" / E.PDF_NAME).stat().st_size > 5000
    phrase = records.phrase(main_window.ctx.store, "heart-sound")
    assert phrase.startswith("validated here on 4 cases: AUROC")
    # the model info, and a result's provenance line (screen and PDF)
    qtbot.waitUntil(lambda: phrase in main_window.results.state.text(), timeout=5000)
    main_window.open_path(tmp_path / "s1.wav")
    qtbot.waitUntil(lambda: main_window.study is not None, timeout=30000)
    assert main_window.results.result is not None  # the validation stored each case's result
    assert phrase in main_window.results.prov.text()
    from app.report import build_report

    pdf = build_report(main_window.study, main_window.ctx.store, main_window.study_id, tmp_path / "r.pdf")
    import subprocess

    txt = subprocess.run(["pdftotext", pdf, "-"], capture_output=True, text=True).stdout
    assert "validated here on 4" in txt.replace("\n", " ")


def test_validate_dialog_cancel_keeps_what_ran(main_window, qtbot, tmp_path, monkeypatch):
    names = [f"r{i}.wav" for i in range(12)]
    for n in names:
        (tmp_path / n).write_bytes(n.encode())
    (tmp_path / "l.csv").write_text("file,label\n" + "".join(f"{n},normal\n" for n in names))

    def slow(name):
        time.sleep(0.15)
        return _probs(0.2), None

    runner = FakeRunner("pcg", "heart-sound", slow)
    monkeypatch.setattr(E, "make_runner", lambda model_id, registry=None: runner)
    from app.validation.dialog import ValidateDialog

    d = ValidateDialog(main_window.ctx, main_window, model_id="heart-sound")
    qtbot.addWidget(d)
    d.labels.setText(str(tmp_path / "l.csv"))
    d.start()
    qtbot.waitUntil(lambda: len(runner.calls) >= 1, timeout=10000)
    d.cancel()
    qtbot.waitUntil(lambda: d.job is None, timeout=20000)
    assert "Cancelled" in d.status.text() and d.ev is None
    done = len(runner.calls)
    assert 1 <= done < 12
    runner.calls.clear()
    d.start()
    qtbot.waitUntil(lambda: d.ev is not None, timeout=30000)
    assert len(runner.calls) == 12 - done and d.ev["n_cases"] == 12


def test_wrong_label_file_is_said_before_any_worker(main_window, qtbot, tmp_path):
    from app.validation.dialog import ValidateDialog

    (tmp_path / "x.csv").write_text("file,notes\na.wav,?\n")
    d = ValidateDialog(main_window.ctx, main_window, model_id="heart-sound")
    qtbot.addWidget(d)
    d.labels.setText(str(tmp_path / "x.csv"))
    d.start()
    assert d.job is None and "reference column" in d.status.text()


@pytest.mark.parametrize("mid", ["heart-sound", "echonet-ef", "xray-anomaly", "endo-polyp"])
def test_models_with_adapters_are_offered(main_window, mid):
    from app.validation.dialog import validatable_models

    assert mid in validatable_models(main_window.ctx.registry)

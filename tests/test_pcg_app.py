"""Heart-sound viewer, batch and retraining dialogs (pytest-qt, offscreen) and the PDF report."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from inference.pcg.synth import heart_sound, write_wav


@pytest.fixture
def demo(tmp_path):
    from inference.pcg.demo import make

    return make(tmp_path)


def _open(main_window, qtbot, path):
    main_window.open_path(str(path))
    qtbot.waitUntil(lambda: main_window.study is not None, timeout=20000)
    return main_window.current_viewer()


def test_viewer_shows_recording_marks_and_result(main_window, qtbot, demo):
    from app.pcg.viewer import PcgViewer

    v = _open(main_window, qtbot, demo)
    assert isinstance(v, PcgViewer)
    assert v.wave_curve.xData[-1] == pytest.approx(12.0, abs=0.01)  # full data (the view clips)
    assert v.spec_img.image is not None and v.spec_img.image.shape[1] == 96
    # S1/S2 marks come from the envelope segmentation before any model runs
    assert v.seg_outputs["heart_rate_bpm"] == pytest.approx(72, abs=3)
    assert len(v.marks) >= 4
    assert "72 bpm" in v.bars.hr.text() or "71 bpm" in v.bars.hr.text()
    # the spectrogram, waveform and probability strip share one time axis
    v.wave.setXRange(2, 5, padding=0)
    lo, hi = v.spec.viewRange()[0]
    assert (lo, hi) == pytest.approx((2, 5), abs=0.05)
    assert v.prob.viewRange()[0] == pytest.approx([2, 5], abs=0.05)
    main_window.run_analysis("heart-sound")
    qtbot.waitUntil(lambda: main_window.results.result is not None, timeout=30000)
    r = main_window.results.result
    assert r.model_id == "heart-sound" and not r.clinical
    assert main_window.results.stamp.isVisibleTo(main_window)  # NOT A CLINICAL RESULT
    assert len(v.prob_items) >= 2  # probability curve + fill
    assert r.outputs["class"] in v.bars.head.text()
    assert main_window.ctx.store.latest_result(main_window.study_id).id == r.id


def test_playback_without_audio_device_is_a_message(main_window, qtbot, demo):
    v = _open(main_window, qtbot, demo)
    v.player.available = False
    v.player.message = "No audio output device: playback is unavailable on this machine."
    v._set_controls()
    assert not v.play_btn.isEnabled()
    v.toggle_play()  # e.g. through the keyboard shortcut: must not raise
    v.play_selection()
    assert "No audio output device" in v.audio_msg.text()
    v.seek(3.0)
    assert v.cursors[1].value() == pytest.approx(3.0, abs=0.01)
    v.shutdown()


def test_player_callback_gain_loop_and_selection():
    from app.pcg.viewer import AudioPlayer

    p = AudioPlayer()
    audio = np.tile(np.linspace(-0.5, 0.5, 100, dtype=np.float32)[:, None], (1, 2))
    p.load(audio, 100)

    class _SD:
        class CallbackStop(Exception):
            pass

    p._sd = _SD
    p.start_frame, p.end_frame, p.pos, p.loop, p.gain = 10, 20, 10, True, 2.0
    out = np.zeros((25, 2), np.float32)
    p._callback(out, 25, None, None)
    assert out[0, 0] == pytest.approx(np.clip(2 * audio[10, 0], -1, 1))
    assert out[10, 0] == pytest.approx(out[0, 0])  # looped back to the selection start
    assert 10 <= p.pos <= 20
    p.loop = False
    p.pos = 15
    with pytest.raises(_SD.CallbackStop):
        p._callback(out, 25, None, None)
    assert np.all(out[5:] == 0)


def test_batch_dialog(main_window, qtbot, tmp_path):
    from app.pcg.tools import BatchDialog

    d = tmp_path / "folder"
    for i, bpm in enumerate((65, 95)):
        s = heart_sound(duration_s=6, bpm=bpm, seed=i)
        write_wav(d / f"r{i}.wav", s["audio"], s["sr"])
    (d / "bad.flac").write_bytes(b"fLaC garbage")
    dlg = BatchDialog(main_window.ctx, main_window)
    qtbot.addWidget(dlg)
    out = tmp_path / "b.csv"
    dlg.run(str(d), str(out))
    qtbot.waitUntil(lambda: dlg.result is not None, timeout=30000)
    assert out.exists() and dlg.table.rowCount() == 3
    assert "1 could not be read" in dlg.status.text()
    assert len(main_window.ctx.store.studies()) >= 2  # batch results are stored with provenance


def test_training_dialog_process_versions_and_switch_back(main_window, qtbot, tmp_path):
    """Real retraining in a separate process on generated data, then version switching."""
    from app.pcg.tools import LOCAL_ID, TrainingDialog

    data = tmp_path / "data"
    for cls, murmur in (("normal", 0.0), ("murmur", 0.8)):
        for i in range(8):
            s = heart_sound(duration_s=5, bpm=60 + 5 * i, sr=2000, murmur=murmur, seed=i + 50 * (murmur > 0))
            write_wav(data / cls / f"{i}.wav", s["audio"], s["sr"])
    dlg = TrainingDialog(main_window.ctx, main_window,
                         extra_args=["--width", "4", "--windows-per-record", "4", "--batch", "8", "--no-cache",
                                     "--val", "0.25", "--test", "0.25"])
    qtbot.addWidget(dlg)
    dlg.folder.setText(str(data))
    assert dlg.inspect() and "normal" in dlg.summary.text()
    dlg.epochs.setValue(3)
    dlg.start()
    assert dlg.proc is not None  # a separate process, not the UI thread
    qtbot.waitUntil(lambda: dlg.proc is None, timeout=120000)
    assert dlg.final is not None, dlg.state.text()
    assert len(dlg.history) >= 1 and len(dlg.c_tl.getData()[0]) == len(dlg.history)
    assert dlg.per_class.rowCount() == 2 and dlg.confusion.rowCount() == 2
    versions = main_window.ctx.store.model_versions(LOCAL_ID)
    assert len(versions) == 1 and versions[0]["active"] and "test" in versions[0]["metrics"]
    st = main_window.ctx.registry.state(LOCAL_ID)
    assert st.status == "demo" and st.sha256 == versions[0]["sha256"] and not st.clinical
    # a second version (same file content is fine for the bookkeeping), then switch back to v1
    second = tmp_path / "v2" / "heart_sound_cnn.onnx"
    second.parent.mkdir()
    shutil.copy(dlg.final["onnx"], second)
    shutil.copy(str(dlg.final["onnx"]).replace(".onnx", ".json"), second.with_suffix(".json"))
    dlg.register(second)
    assert [v["active"] for v in main_window.ctx.store.model_versions(LOCAL_ID)] == [0, 1]
    dlg.activate_selected(0)
    assert [v["active"] for v in main_window.ctx.store.model_versions(LOCAL_ID)] == [1, 0]
    assert dlg.versions.rowCount() == 2 and "active" in dlg.versions.item(0, 0).text()


def test_training_dialog_live_curves_from_events(main_window, qtbot):
    from app.pcg.tools import TrainingDialog

    dlg = TrainingDialog(main_window.ctx, main_window)
    qtbot.addWidget(dlg)
    for ep in (1, 2, 3):
        dlg.on_event({"event": "epoch", "epoch": ep, "train_loss": 1 / ep, "val_loss": 1.1 / ep, "train_acc": 0.5 + ep / 10,
                      "val_acc": 0.5, "val_balanced_acc": 0.5, "best_epoch": ep, "windows_per_s": 100.0})
    assert list(dlg.c_vl.getData()[0]) == [1, 2, 3]
    assert "epoch 3" in dlg.state.text()


def test_pdf_report(tmp_path, demo, registry, store):
    from app.report import build_report
    from inference.detect import open_study
    from inference.pipeline import analyse

    study = open_study(demo)
    r = analyse(study, "heart-sound", registry)
    sid = store.save(study, [r])
    out = build_report(study, store, sid, tmp_path / "r.pdf", extra={"selection_s": [1.0, 3.0]})
    assert (tmp_path / "r.pdf").stat().st_size > 20000
    if shutil.which("pdftotext"):
        text = subprocess.run(["pdftotext", out, "-"], capture_output=True, text=True).stdout
        assert "Heart rate" in text and "bpm" in text and "NOT A CLINICAL RESULT" in text
        assert r.weights_sha256[:16] in text.replace("\n", "")

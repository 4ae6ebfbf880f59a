"""ECG opening: every CSV variant the reader documents is accepted by detection (the app and
``lightbox analyse`` open files through ``detect_modality``), and long recordings (a 30-min 2-lead 360 Hz
'Holter') open with bounded memory and get a rhythm band."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.detect import detect_modality, open_study
from inference.ecg import reader as R
from inference.ecg.rhythm_synth import synth_episode, synth_lead
from inference.study import ReadError

FS = 360.0


def _sig(seconds=6.0, fs=FS):
    x = synth_lead(seconds, fs, seed=4)
    return x, 0.6 * x


def _write(path: Path, text: str, encoding="utf-8") -> Path:
    path.write_text(text, encoding=encoding)
    return path


def _rows(cols, delim=",", fmt="{:.5f}"):
    return "\n".join(delim.join(fmt.format(v) for v in r) for r in np.column_stack(cols)) + "\n"


# (file name, text builder, expected fs): one per variant the README's CSV row documents
def _variants():
    a, b = _sig()
    n = len(a)
    t = np.arange(n) / FS
    return [
        ("fs_comment.csv", "# fs=360\nI,II\n" + _rows([a, b]), 360.0),
        ("fs_comment_spaces.csv", "#  sampling_rate: 360\n# patient: demo\n\nI,II\n" + _rows([a, b]), 360.0),
        ("sample_rate.csv", "# sample rate = 360\nMLII,V1\n" + _rows([a, b]), 360.0),
        ("no_rate.csv", "I,II\n" + _rows([a, b]), 500.0),
        ("time_s.csv", "time_s,I,II\n" + _rows([t, a, b]), 360.0),
        ("time_ms.csv", "ms,I,II\n" + _rows([t * 1000, a, b]), 360.0),
        ("semicolon.csv", "# fs=360\nI;II\n" + _rows([a, b], ";"), 360.0),
        ("tab.csv", "# fs=360\nI\tII\n" + _rows([a, b], "\t"), 360.0),
        ("aliases.csv", "# fs=360\nLead I (Einthoven),DII,V1 [mV]\n" + _rows([a, b, a]), 360.0),
        ("microvolts.csv", "# fs=360\nI_uV,II_uV\n" + _rows([a * 1000, b * 1000], fmt="{:.2f}"), 360.0),
        ("quoted.csv", '# fs=360\n"I","II"\n' + _rows([a, b]), 360.0),
    ]


@pytest.mark.parametrize("name,text,fs", _variants(), ids=[v[0] for v in _variants()])
def test_every_documented_csv_variant_opens(tmp_path, name, text, fs):
    p = _write(tmp_path / name, text)
    assert detect_modality(p) == "ecg"
    s = open_study(p)
    assert s.data["fs"] == pytest.approx(fs, rel=1e-3)
    present = [ld for ld, row in zip(R.LEADS, s.data["signal_mv"]) if np.isfinite(row).all()]
    assert len(present) >= 2 and "II" in present
    row = s.data["signal_mv"][R.LEADS.index("II")]
    assert 0.3 < np.ptp(row) < 3  # millivolts whatever the file's unit


def test_csv_with_byte_order_mark_and_fs_line(tmp_path):
    a, b = _sig()
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbf" + ("# fs=360\nI,II\n" + _rows([a, b])).encode())
    assert detect_modality(p) == "ecg"
    assert open_study(p).data["fs"] == 360.0


def test_csv_comment_only_is_still_refused(tmp_path):
    p = _write(tmp_path / "x.csv", "# fs=360\n# nothing else\n")
    with pytest.raises(ReadError):
        open_study(p)


def test_cli_analyse_accepts_fs_comment_csv(tmp_path, capsys):
    from app.cli import main

    a, b = _sig(20.0)
    p = _write(tmp_path / "rec.csv", "# fs=360\nI,II\n" + _rows([a, b]))
    assert main(["analyse", str(p), "--model", "ecg-measure", "--db", str(tmp_path / "db.sqlite")]) == 0
    assert "heart_rate_bpm" in capsys.readouterr().out


# -- long recordings --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def holter(tmp_path_factory):
    """30 min, 2 leads (MLII, V1) at 360 Hz as WFDB, AF from minute 10 to 15."""
    import wfdb

    d = tmp_path_factory.mktemp("holter")
    x = synth_episode(1800, FS, 600, 900, seed=11, leads=2)
    wfdb.wrsamp("holter", fs=FS, units=["mV", "mV"], sig_name=["MLII", "V1"], p_signal=x.T.astype(np.float64),
                fmt=["16", "16"], adc_gain=[200.0, 200.0], baseline=[0, 0], write_dir=str(d))
    return d / "holter.hea"


def test_30_min_two_lead_record_opens(holter):
    s = open_study(holter)
    assert s.metadata["duration_s"] == pytest.approx(1800, abs=0.01)
    assert s.data["signal_mv"].dtype == np.float32
    assert s.data["model_input"].shape == (5000, 12)  # ECG2AF still takes its first 10 s
    assert any("ECG2AF sees the first 10 s" in n and "1800.0 s" in n for n in s.notes)


def test_beyond_the_sample_budget_is_refused_before_reading(tmp_path):
    (tmp_path / "big.hea").write_text(f"big 1 360 {R.MAX_SAMPLES + 1}\nbig.dat 16 200 16 0 0 0 0 MLII\n")
    (tmp_path / "big.dat").write_bytes(b"\0" * 64)
    with pytest.raises(ReadError, match="samples per lead"):
        open_study(tmp_path / "big.hea")


def test_long_record_gets_a_rhythm_band(holter, registry):
    from inference.ecg.pipeline import analyse, RHYTHM_ID
    from inference.pipeline import JobContext

    if not registry.state(RHYTHM_ID).usable:
        pytest.skip("rhythm model not bundled in this checkout")
    s = open_study(holter)
    r = analyse(s, RHYTHM_ID, registry, JobContext())
    wins = r.outputs["_windows"]
    assert r.outputs["lead"] == "II, V1" and len(wins) >= 100  # MLII and V1 (model v2 uses every lead it knows), every 15 s over 30 min
    assert wins[-1]["end_s"] == pytest.approx(1800, abs=0.1)
    assert not r.clinical
    assert any(n.startswith("Leads used: II, V1") for n in r.notes)  # the screen says which leads were read


def test_single_signal_named_ecg_opens_as_lead_i(tmp_path):
    """The PhysioNet/CinC 2017 (AliveCor) layout: one signal called 'ECG', 300 Hz."""
    import wfdb

    x = synth_lead(30, 300.0, seed=8)
    wfdb.wrsamp("A99999", fs=300, units=["mV"], sig_name=["ECG"], p_signal=x[:, None].astype(np.float64),
                fmt=["16"], adc_gain=[1000.0], baseline=[0], write_dir=str(tmp_path))
    s = open_study(tmp_path / "A99999.hea")
    i = R.LEADS.index("I")
    assert np.isfinite(s.data["signal_mv"][i]).all() and len(s.metadata["missing_leads"]) == 11
    assert any("named 'ECG'" in n and "lead I" in n for n in s.notes)
    np.testing.assert_allclose(s.data["signal_mv"][i], x, atol=2e-3)

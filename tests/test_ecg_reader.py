"""ECG reader: every format to the same Study, lead mapping, resampling, bad input -> ReadError."""
from __future__ import annotations

import numpy as np
import pytest

from inference.ecg import demo
from inference.detect import detect_modality, open_study
from inference.ecg import reader as R
from inference.study import ReadError
from tests.conftest import shared_file


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory):
    return demo.make(tmp_path_factory.mktemp("demo"))


def test_demo_is_ml4h_layout_ecg2af_reads(demo_path):
    import h5py

    with h5py.File(demo_path, "r") as f:
        for lead in R.LEADS:  # the exact datasets ml4h's ecg_rest_mgb tensor map reads
            ds = f[f"ukb_ecg_rest/strip_{lead}/instance_0"]
            assert ds.shape == (5000,)
        assert "ukb_ecg_rest/ecg_rest_text/instance_0" in f
    s = open_study(demo_path)
    assert s.modality == "ecg" and detect_modality(demo_path) == "ecg"
    assert s.data["signal_mv"].shape == (12, 5000) and s.data["fs"] == 500
    assert s.data["model_input"].shape == (5000, 12)
    assert s.metadata["missing_leads"] == [] and s.metadata["resampled"] is False
    assert not any("Resampled" in n for n in s.notes)
    # µV on disk -> mV in the study; model input is the same signal (no resampling at 500 Hz)
    np.testing.assert_allclose(s.data["model_input"].T, s.data["signal_mv"], atol=1e-6)
    assert 0.8 < np.nanmax(s.data["signal_mv"][1]) < 2.0


def test_demo_is_deterministic_and_physiological(tmp_path):
    a, b = demo.make(tmp_path / "a"), demo.make(tmp_path / "b")
    assert a.read_bytes() == b.read_bytes()
    sig = demo.synth_ecg()
    i = {n: k for k, n in enumerate(R.LEADS)}
    # Einthoven and Goldberger hold exactly for the dipole model
    np.testing.assert_allclose(sig[i["III"]], sig[i["II"]] - sig[i["I"]], atol=0.02)
    np.testing.assert_allclose(sig[i["aVR"]], -(sig[i["I"]] + sig[i["II"]]) / 2, atol=0.02)
    # R-wave progression: V1 rS, V6 qR
    beat = slice(190, 240)
    assert -sig[i["V1"], beat].min() > sig[i["V1"], beat].max()
    assert sig[i["V6"], beat].max() > -sig[i["V6"], beat].min()


@pytest.mark.parametrize("raw,expected", [
    ("strip_aVF", "aVF"), ("Lead I (Einthoven)", "I"), ("avl", "aVL"), ("MLII", "II"), ("v3", "V3"),
    ("V6 [mV]", "V6"), ("III_uV", "III"), ("vx", None), ("time", None), ("DII", "II"),
])
def test_lead_name_mapping(raw, expected):
    assert R.lead_name(raw) == expected


def test_wfdb_real_record_resampled_and_mapped():
    hea = shared_file("reference", "ecg", "s0010_re.hea")
    shas = set()
    for p in (hea, hea.with_suffix(".dat")):  # the .dat opens too, by finding its .hea
        s = open_study(p)
        shas.add(s.sha256)
        assert s.source == str(hea) and s.metadata["files"] == ["s0010_re.hea", "s0010_re.dat", "s0010_re.xyz"]
        assert s.metadata["format"] == "WFDB" and s.data["fs"] == 1000
        assert s.data["signal_mv"].shape == (12, 38400)
        assert s.data["model_input"].shape == (5000, 12)
        assert s.metadata["resampled"] is True
        assert any("1000 Hz -> 500 Hz" in n for n in s.notes)
        assert any("first 10 s" in n for n in s.notes)
        assert any("vx" in n for n in s.notes)
    assert len(shas) == 1  # one record, one study, whichever file was opened
    import wfdb

    rec = wfdb.rdrecord(str(hea.with_suffix("")))
    # lead mapping: our V4 row is the record's 'v4' channel, in mV
    np.testing.assert_allclose(s.data["signal_mv"][R.LEADS.index("V4")], rec.p_signal[:, rec.sig_name.index("v4")],
                               atol=1e-6)
    # resampling keeps the waveform: 500 Hz model input matches every other original sample closely
    ii = R.LEADS.index("II")
    orig = s.data["signal_mv"][ii, :10000:2]
    assert np.corrcoef(orig, s.data["model_input"][:, ii])[0, 1] > 0.99


def test_resampling_sine_amplitude_and_length():
    fs = 250.0
    t = np.arange(int(8 * fs)) / fs
    sig = np.tile(np.sin(2 * np.pi * 5 * t), (12, 1))
    x, notes = R.model_input(sig, fs)
    assert x.shape == (5000, 12)
    # 8 s at 500 Hz = 4000 samples, then ML4H zero padding
    assert np.all(x[4000:] == 0)
    assert abs(np.abs(x[100:3900, 0]).max() - 1.0) < 0.02
    assert any("250 Hz -> 500 Hz" in n for n in notes) and any("zero-padded" in n for n in notes)


def _write_csv(path, header, rows, comment=""):
    with open(path, "w") as f:
        if comment:
            f.write(comment + "\n")
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(f"{v:.5f}" for v in r) + "\n")
    return path


def test_csv_with_lead_header_and_missing_lead(tmp_path):
    sig = demo.synth_ecg(seconds=10, fs=250)
    header = ["time_s"] + [ld for ld in R.LEADS if ld != "V3"]
    t = np.arange(sig.shape[1]) / 250
    rows = np.column_stack([t] + [sig[R.LEADS.index(ld)] for ld in header[1:]])
    p = _write_csv(tmp_path / "ecg.csv", header, rows)
    s = open_study(p)
    assert s.data["fs"] == pytest.approx(250, rel=1e-3)
    assert s.metadata["missing_leads"] == ["V3"]
    assert np.isnan(s.data["signal_mv"][R.LEADS.index("V3")]).all()
    assert np.isnan(s.data["model_input"][:, R.LEADS.index("V3")]).all()
    assert any("Missing lead: V3" in n for n in s.notes)
    np.testing.assert_allclose(s.data["signal_mv"][R.LEADS.index("aVL")], sig[R.LEADS.index("aVL")], atol=1e-4)


def test_csv_fs_comment_and_uv_columns(tmp_path):
    sig = demo.synth_ecg(seconds=4, fs=1000)
    p = _write_csv(tmp_path / "uv.csv", [f"{ld} (uV)" for ld in R.LEADS], sig.T * 1000, "# fs=1000")
    s = R.read(p)
    assert s.data["fs"] == 1000
    np.testing.assert_allclose(s.data["signal_mv"], sig, atol=1e-4)


def test_dicom_12_lead_waveform():
    from pydicom.data import get_testdata_file

    p = get_testdata_file("waveform_ecg.dcm")
    s = open_study(p)
    assert s.metadata["format"] == "DICOM waveform" and s.data["fs"] == 1000
    assert s.data["signal_mv"].shape == (12, 10000) and s.metadata["missing_leads"] == []
    assert s.metadata["multiplex_group"] == "RHYTHM"
    # 1.25 µV/LSB -> mV: a real QRS is around 1 mV, not 1000
    assert 0.3 < np.ptp(s.data["signal_mv"][1]) < 5


def _hd5(path, leads: dict, fs=None):
    import h5py

    with h5py.File(path, "w") as f:
        for name, v in leads.items():
            ds = f.create_dataset(f"ukb_ecg_rest/strip_{name}/instance_0", data=v)
            if fs:
                ds.attrs["sampling_frequency"] = fs
    return path


def test_malformed_inputs_give_clear_messages(tmp_path):
    import h5py

    sig = demo.synth_ecg() * 1000
    cases = {}
    with h5py.File(tmp_path / "other.hd5", "w") as f:
        f.create_dataset("images/frame", data=np.zeros((4, 4)))
    cases["other.hd5"] = "without an ML4H resting ECG"
    _hd5(tmp_path / "nan.hd5", {ld: sig[i].copy() for i, ld in enumerate(R.LEADS)})
    with h5py.File(tmp_path / "nan.hd5", "r+") as f:
        d = f["ukb_ecg_rest/strip_V2/instance_0"]
        v = d[()]
        v[100:150] = np.nan
        d[...] = v
    cases["nan.hd5"] = "lead V2 has 50 missing (NaN) samples"
    _hd5(tmp_path / "len.hd5", {"I": sig[0], "II": sig[1][:4000]})
    cases["len.hd5"] = "different lengths"
    _hd5(tmp_path / "flat.hd5", {ld: np.zeros(5000) for ld in R.LEADS})
    cases["flat.hd5"] = "every lead is flat"
    _hd5(tmp_path / "short.hd5", {"I": sig[0][:300], "II": sig[1][:300]}, fs=500)
    cases["short.hd5"] = "at least 2 s"
    with h5py.File(tmp_path / "empty_group.hd5", "w") as f:
        f.create_group("ukb_ecg_rest")
    cases["empty_group.hd5"] = "holds no strip_<lead>"
    (tmp_path / "trunc.hd5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 50)
    cases["trunc.hd5"] = ""
    (tmp_path / "junk.csv").write_text("a,b,c\n1,2,3\n")
    cases["junk.csv"] = ""
    (tmp_path / "bad.csv").write_text("I,II\n1,2\n3,x\n")
    cases["bad.csv"] = "not all numeric"
    (tmp_path / "orphan.dat").write_bytes(b"\0" * 100)
    cases["orphan.dat"] = ""
    for name, msg in cases.items():
        with pytest.raises(ReadError) as ei:
            open_study(tmp_path / name)
        assert msg in str(ei.value), (name, str(ei.value))
        assert name in str(ei.value)


def test_flat_lead_is_reported_not_fatal(tmp_path):
    sig = demo.synth_ecg() * 1000
    leads = {ld: sig[i] for i, ld in enumerate(R.LEADS)}
    leads["V4"] = np.zeros(5000)
    s = R.read(_hd5(tmp_path / "flatv4.hd5", leads))
    assert s.metadata["flat_leads"] == ["V4"]
    assert any("Flat lead" in n and "V4" in n for n in s.notes)


def test_keras_file_is_not_an_ecg(tmp_path):
    import h5py

    with h5py.File(tmp_path / "model.h5", "w") as f:
        f.attrs["model_config"] = "{}"
    with pytest.raises(ReadError, match="Keras model file"):
        R.read(tmp_path / "model.h5")


def test_dicom_image_is_not_claimed():
    from pydicom.data import get_testdata_file

    p = get_testdata_file("CT_small.dcm")
    with open(p, "rb") as f:
        assert R.sniff(p, f.read(4096)) == 0.0


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(alphabet="0123456789.,-eE \nIVaRLFx#=;", max_size=400))
def test_csv_fuzz_never_crashes(tmp_path, body):
    p = tmp_path / "fuzz.csv"
    p.write_text("I,II,V1\n" + body)
    try:
        s = R.read(p)
    except ReadError as e:
        assert "fuzz.csv" in str(e)
    else:
        assert s.data["signal_mv"].shape[0] == 12


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=2048))
def test_binary_fuzz_never_crashes(tmp_path, blob):
    for ext in (".hd5", ".dcm", ".hea"):
        p = tmp_path / f"fuzz{ext}"
        p.write_bytes(b"\x89HDF\r\n\x1a\n" + blob if ext == ".hd5" else blob)
        try:
            R.read(p)  # the reader itself, not open_study's safety net
        except ReadError:
            pass


def test_hd5_without_units_attribute(tmp_path):
    sig = demo.synth_ecg()
    uv = R.read(_hd5(tmp_path / "uv.hd5", {ld: np.round(sig[i] * 1000) for i, ld in enumerate(R.LEADS)}))
    mv = R.read(_hd5(tmp_path / "mv.hd5", {ld: sig[i] for i, ld in enumerate(R.LEADS)}))
    np.testing.assert_allclose(uv.data["signal_mv"], mv.data["signal_mv"], atol=1e-3)
    assert any("taken as µV" in n for n in uv.notes) and any("look like mV" in n for n in mv.notes)

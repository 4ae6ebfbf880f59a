"""Patients (pure part): identity from DICOM / WFDB / HDF5 metadata, codes, the scrubber, key results,
the study-list filter and grouping."""
from __future__ import annotations

import datetime as dt

from inference.patients import (
    UNASSIGNED,
    Identity,
    KeyResult,
    Scrubber,
    StudyFilter,
    date_variants,
    deltas,
    group_by_patient,
    identity_from_attrs,
    identity_from_dicom,
    identity_from_metadata,
    identity_from_wfdb,
    iso_date,
    key_result,
    patient_code,
    patient_label,
    person_name,
    study_code,
    study_day,
)
from inference.results import Result


def test_dicom_identity_and_placeholders():
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PatientName = "DOE^JOHN^Q^^"
    ds.PatientID = " PID-4711 "
    ds.IssuerOfPatientID = "HOSP"
    ds.PatientBirthDate = "19610417"
    ds.PatientSex = "M"
    ds.StudyDate = "20240131"
    ds.StudyTime = "093015.123"
    ds.AccessionNumber = "ACC-9"
    ident = identity_from_dicom(ds)
    assert ident == Identity("PID-4711", "HOSP", "DOE, JOHN Q", "1961-04-17", "M", "2024-01-31", "09:30:15",
                             "ACC-9", "DICOM")
    assert ident.key() == "id:hosp|PID-4711"
    anon = Dataset()
    anon.PatientName = "ANONYMOUS"
    anon.PatientID = ""
    anon.SeriesDate = "20200229"
    a = identity_from_dicom(anon)
    assert not a.assigned and a.key() is None and a.study_date == "2020-02-29"


def test_name_key_ignores_case_and_order():
    a = Identity(name="DOE, JOHN", birth_date="1961-04-17")
    b = Identity(name="john doe", birth_date="1961-04-17")
    assert a.key() == b.key() != Identity(name="John Doe").key()


def test_dates_and_names():
    assert iso_date("20240131") == "2024-01-31"
    assert iso_date("31/01/2024") == "2024-01-31"
    assert iso_date(dt.date(2024, 1, 31)) == "2024-01-31"
    assert iso_date("20240231") == "" and iso_date("yesterday") == ""
    assert person_name("DOE^JANE") == "DOE, JANE" and person_name("Jane Doe") == "Jane Doe"
    assert person_name("") == "" and person_name("Anonymous") == ""
    assert "17 Apr 1961" in date_variants("1961-04-17") and "04/17/1961" in date_variants("1961-04-17")


def test_wfdb_and_hdf5_identity():
    w = identity_from_wfdb(["patient_id: 123-45", "name: Jane Roe", "<age>: 63 <sex>: F"], dt.date(2019, 5, 1))
    assert (w.external_id, w.name, w.sex, w.study_date, w.source) == ("123-45", "Jane Roe", "F", "2019-05-01",
                                                                      "WFDB header")
    assert identity_from_wfdb(["<age>: 63 <sex>: M"]).key() is None  # PhysioNet: no patient
    h = identity_from_attrs({"PatientID": b"H-1", "dob": "1950-02-03", "acquisition_date": "20200101",
                             "sampling_frequency": 500})
    assert (h.external_id, h.birth_date, h.study_date) == ("H-1", "1950-02-03", "2020-01-01")
    assert identity_from_attrs({"sampling_frequency": 500}) == Identity()


def test_metadata_identity_reads_old_xray_rows():
    old = identity_from_metadata({"patient_id": "PID-4711", "study_date": "20190312"})
    assert old.external_id == "PID-4711" and old.study_date == "2019-03-12"
    new = identity_from_metadata({"patient": {"external_id": "X", "name": "A, B"}})
    assert new.name == "A, B"
    assert identity_from_metadata({}).key() is None


def test_codes_are_stable_and_salted():
    a = study_code("ab" * 32, "echo", "salt1")
    assert a == study_code("ab" * 32, "echo", "salt1") and a.startswith("ECHO-") and len(a) == 13
    assert a != study_code("ab" * 32, "echo", "salt2") != study_code("cd" * 32, "echo", "salt1")
    assert patient_code(7, "s").startswith("P-") and patient_code(None) == ""


def test_scrubber_text_and_dicts():
    ident = Identity("PID-4711", "", "TESTPERSON, ALICE", "1961-04-17", "F", "2024-01-31", "", "ACC-55501")
    s = Scrubber([ident], replacement="[x]")
    text = ("Alice Testperson (PID-4711), born 17.04.1961 / 19610417, accession acc-55501; "
            "file /data/TESTPERSON_ALICE/chest.dcm")
    out = s.text(text)
    assert s.found(out) == []
    for t in ("Alice", "TESTPERSON", "4711", "1961", "55501"):
        assert t.lower() not in out.lower()
    assert "chest.dcm" in out  # the rest stays
    d = s({"patient": {"name": "x"}, "PatientID": "PID-4711", "note": "for Alice", "fs": 500,
           "nested": [{"accession": "ACC-55501", "label": "TESTPERSON"}]})
    assert d == {"note": "for [x]", "fs": 500, "nested": [{"label": "[x]"}]}
    # a short name matches whole words only
    s2 = Scrubber([Identity(name="LEE, AL")])
    assert s2.text("Al Lee sleeps in Leeds, Lee too") == "[removed] sleeps in Leeds, [removed] too"


def _r(model, outputs, clinical=True, rid=1):
    return Result(model, "", "numpy", "CPU", 0.1, outputs, clinical, id=rid)


def test_key_results_per_modality():
    k = key_result("echo", [_r("echonet-ef", {"LVEF_whole_video_%": 54.6, "LVEF_category": "normal"}, False)])
    assert k.text == "EF 55 % (normal)" and k.metrics == {"EF %": 54.6} and not k.clinical
    k = key_result("ecg", [_r("ecg2af", {"af_risk_5y": 0.123}), _r("ecg-measure", {"heart_rate_bpm": 71.6}, rid=2),
                           _r("ecg-rhythm", {"rhythm": "AF", "probability": 0.9}, rid=3)])
    assert k.text == "rhythm AF · AF risk 5 y 12 % · HR 72/min" and k.labels == {"rhythm": "AF"}
    assert sorted(k.result_ids) == [1, 2, 3]
    k = key_result("xray", [_r("xray-pneumonia", {"pneumonia_probability": 0.71}),
                            _r("xray-anomaly", {"anomaly_score": 0.42, "risk_band": "moderate"}, rid=2)])
    assert k.text == "P(pneumonia) 0.71 · anomaly 0.42 (moderate)"
    k = key_result("pcg", [_r("heart-sound", {"class": "murmur", "probability": 0.8})])
    assert k.text == "murmur (0.80)" and k.labels == {"heart sound": "murmur"}
    k = key_result("endo", [_r("endo-quality", {"findings_count": 3})],
                   [{"status": "confirmed"}, {"status": "rejected"}, {"status": "proposed"}])
    assert k.text == "2 polyp findings, 1 confirmed"
    assert key_result("echo", []) is None


def test_deltas():
    a = KeyResult("", {"EF %": 45.0}, {"rhythm": "sinus"})
    b = KeyResult("", {"EF %": 52.4}, {"rhythm": "AF"})
    assert deltas(a, b) == ["ΔEF +7 %", "rhythm: sinus → AF"]
    assert deltas(None, b) == []


ROWS = [
    {"id": 1, "modality": "echo", "name": "a.avi", "patient_id": 5, "patient_name": "DOE, JOHN",
     "patient_external_id": "PID-1", "study_date": "2019-03-01", "created_at": "2024-05-01T10:00:00",
     "n_results": 1, "n_non_clinical": 1},
    {"id": 2, "modality": "echo", "name": "b.avi", "patient_id": 5, "patient_name": "DOE, JOHN",
     "patient_external_id": "PID-1", "study_date": "2023-03-01", "created_at": "2024-05-01T10:00:00",
     "n_results": 0, "n_non_clinical": 0},
    {"id": 3, "modality": "ecg", "name": "c.hd5", "patient_id": None, "study_date": None,
     "created_at": "2024-06-01T10:00:00", "n_results": 2, "n_non_clinical": 0},
    {"id": 4, "modality": "xray", "name": "d.dcm", "patient_id": 9, "patient_name": "ROE, JANE",
     "patient_external_id": "PID-2", "study_date": "2024-07-01", "created_at": "2024-07-02T10:00:00",
     "n_results": 1, "n_non_clinical": 0},
]


def test_filter_and_group():
    def ids(f):
        return [r["id"] for r in ROWS if f.matches(r)]

    assert not StudyFilter().active() and ids(StudyFilter()) == [1, 2, 3, 4]
    assert ids(StudyFilter(text="john")) == [1, 2] and ids(StudyFilter(text="pid-2")) == [4]
    assert ids(StudyFilter(text="doe john")) == [1, 2]
    assert ids(StudyFilter(modality="echo", date_from="2020-01-01")) == [2]
    assert ids(StudyFilter(date_to="2024-06-30")) == [1, 2, 3]  # study 3 placed at the day it was opened
    assert ids(StudyFilter(non_clinical=True)) == [1] and ids(StudyFilter(not_analysed=True)) == [2]
    assert study_day(ROWS[2]) == "2024-06-01"
    groups = group_by_patient(ROWS)
    assert [(g[0]["id"] if g[0] else None, [r["id"] for r in g[1]]) for g in groups] == [
        (9, [4]), (5, [2, 1]), (None, [3])]
    assert patient_label(groups[1][0]) == "DOE, JOHN · ID PID-1" and patient_label(None) == UNASSIGNED


def test_a_still_image_is_not_a_cine_loop(tmp_path):
    """A one-frame GIF opens in the image viewer (X-ray), never as an echo 'loop' with nothing to play;
    asked for as echo it is refused with the reason. A real GIF loop stays an echo."""
    import numpy as np
    import pytest
    from PIL import Image

    from inference.detect import detect_modality, open_study
    from inference.study import ReadError

    g = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1))
    still = tmp_path / "still.gif"
    Image.fromarray(g).save(still)
    assert detect_modality(still) == "xray"
    s = open_study(still)
    assert s.modality == "xray" and s.data["display"].shape == (48, 64)
    assert any("not as a cine loop" in n for n in s.notes)
    with pytest.raises(ReadError, match="single still image, not a cine loop"):
        open_study(still, "echo")
    loop = tmp_path / "loop.gif"
    imgs = [Image.fromarray(np.roll(g, i, axis=1)) for i in range(4)]
    imgs[0].save(loop, save_all=True, append_images=imgs[1:], duration=40, loop=0)
    assert detect_modality(loop) == "echo"
    with pytest.raises(ReadError, match="cine loop, not a radiograph"):
        open_study(loop, "xray")


def test_ecg_readers_fill_identity_from_wfdb_and_hdf5(tmp_path):
    import h5py
    import wfdb

    from inference.ecg.demo import synth_ecg
    from inference.ecg.reader import LEADS, read, write_ml4h_hd5

    sig = synth_ecg(seconds=10.0, fs=500)
    wfdb.wrsamp("rec", fs=500, units=["mV"] * 12, sig_name=list(LEADS), p_signal=sig.T, fmt=["16"] * 12,
                adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path),
                comments=["patient_id: W-77", "name: ROE^JANE", "dob: 1970-01-02"], base_date=dt.date(2021, 3, 4), base_time=dt.time(9, 30))
    st = read(tmp_path / "rec.hea")
    p = st.metadata["patient"]
    assert (p["external_id"], p["name"], p["birth_date"], p["study_date"]) == ("W-77", "ROE, JANE", "1970-01-02",
                                                                              "2021-03-04")
    h = write_ml4h_hd5(tmp_path / "e.hd5", sig, 500)
    with h5py.File(h, "a") as f:
        f.attrs["patient_id"] = "H-5"
        f.attrs["acquisition_date"] = "20200202"
    p = read(h).metadata["patient"]
    assert p["external_id"] == "H-5" and p["study_date"] == "2020-02-02" and p["source"] == "HDF5 attributes"
    plain = write_ml4h_hd5(tmp_path / "plain.hd5", sig, 500)
    assert "patient" not in read(plain).metadata  # nothing in the file: unassigned


def test_key_results_read_generic_keys_of_rhythm_and_pneumonia_models():
    k = key_result("ecg", [_r("ecg-rhythm", {"class": "AF", "probabilities": {"AF": 0.9}})])
    assert k.labels == {"rhythm": "AF"}
    k = key_result("xray", [_r("xray-pneumonia", {"probability": 0.33, "label": "PNEUMONIA"})])
    assert k.metrics == {"P(pneumonia)": 0.33} and k.labels == {"pneumonia": "PNEUMONIA"}

"""Anonymised export: generated DICOMs (X-ray, 12-lead ECG waveform, ultrasound cine) carry a name, an ID, a
birth date and an accession number — in their headers, file names and descriptions, and in notes and
findings typed about them. Their anonymised PDF reports (text, document info and every string drawn into a
report figure), the CSV/JSON results table and the endoscopy bundle contain none of it; the identified ones
do (so the search itself works)."""
from __future__ import annotations

import base64
import re
import shutil
import subprocess
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from app.patients.export import export_endo_bundle, export_pdf, export_table, table_rows
from inference.detect import open_study
from inference.results import Result

NAME = ("TESTPERSON", "ALICE", "MARIANNE")
PID = "PID-98765-Q"
DOB = "19610417"
ACC = "ACC-55501"
PHI_TERMS = [*NAME, PID, "98765", DOB, "1961-04-17", "17.04.1961", "17/04/1961", "04/17/1961", ACC, "55501"]


def _phi(ds, desc: bool = True):
    ds.PatientName = "^".join((NAME[0], NAME[1], NAME[2]))
    ds.PatientID = PID
    ds.PatientBirthDate = DOB
    ds.AccessionNumber = ACC
    ds.PatientSex = "F"
    ds.StudyDate = "20240131"
    if desc:
        ds.SeriesDescription = f"Chest PA {NAME[0]} {NAME[1]}"
    return ds


@pytest.fixture(scope="module")
def phi_files(tmp_path_factory):
    import pydicom
    from pydicom.data import get_testdata_file

    from inference.xray import demo as xdemo

    d = tmp_path_factory.mktemp("phi")
    out = {}
    src = xdemo.make_dicom(d / "xr")
    ds = _phi(pydicom.dcmread(src))
    out["xray"] = d / f"{NAME[0]}_{NAME[1]}_chest.dcm"
    ds.save_as(out["xray"])
    ds = _phi(pydicom.dcmread(get_testdata_file("waveform_ecg.dcm")), desc=False)
    out["ecg"] = d / f"ecg_{PID}.dcm"
    ds.save_as(out["ecg"])
    ds = _phi(pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm")), desc=False)
    out["echo"] = d / f"echo_{ACC}.dcm"
    ds.save_as(out["echo"])
    frames = d / f"{NAME[0]}_colonoscopy"
    frames.mkdir()
    import cv2

    rng = np.random.default_rng(0)
    for i in range(4):
        img = np.full((96, 128, 3), (40, 60, 170), np.uint8) + rng.integers(0, 40, (96, 128, 3), dtype=np.uint8)
        cv2.imwrite(str(frames / f"f{i:03d}.png"), img)
    out["endo"] = frames
    from inference.pcg import demo as pdemo

    wav = pdemo.make(d / "pcg")
    out["pcg"] = d / f"{NAME[0]}_{NAME[1]}_apex.wav"  # a heart sound named after the patient (no header)
    out["pcg"].write_bytes(wav.read_bytes())
    return out


def _pdf_text(pdf: Path) -> str:
    """Everything in the PDF that is text: the objects outside streams (document info), every decoded
    non-image stream (page content, fonts, metadata) and what pdftotext reads. Image streams are left
    out: their encoded pixels are not text, and their ASCII85 alphabet holds any five digits by chance
    (a report once had '98765' inside a waveform picture). Text burnt into images is checked through
    `drawn_text` instead."""
    raw = pdf.read_bytes()
    stream = re.compile(rb"(<<(?:(?!>>\s*stream).)*?>>)\s*stream\r?\n(.*?)\s*endstream", re.DOTALL)
    parts = [stream.sub(rb"\1", raw).decode("latin-1")]
    for m in stream.finditer(raw):
        head, body = m.group(1), m.group(2)
        if re.search(rb"/Subtype\s*/Image", head):
            continue
        try:
            if b"ASCII85Decode" in head:
                body = base64.a85decode(body.strip(), adobe=body.strip().startswith(b"<~"))
            if b"FlateDecode" in head:
                body = zlib.decompress(body)
        except (ValueError, zlib.error):
            pass
        parts.append(body.decode("latin-1"))
    if shutil.which("pdftotext"):
        parts.append(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=False).stdout)
    return "\n".join(parts)


def _found(text: str) -> list[str]:
    low = text.lower()
    return [t for t in PHI_TERMS if t.lower() in low]


@pytest.fixture
def drawn_text(monkeypatch):
    """Every string matplotlib draws into a figure (titles, labels, annotations burnt into report images)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.text import Text

    seen: list[str] = []
    orig = Text.draw

    def draw(self, renderer):
        seen.append(self.get_text())
        return orig(self, renderer)

    monkeypatch.setattr(Text, "draw", draw)
    return seen


def _store_all(store, files):
    sids = {}
    for m in ("xray", "ecg", "echo"):
        st = open_study(files[m], m)
        assert st.metadata["patient"]["external_id"] == PID  # the reader filled identity from the header
        note = f"{NAME[1]} {NAME[0]} ({PID}, born 17.04.1961, accession {ACC}) seen today"
        sids[m] = store.save(st, [Result(f"{m}-test", "", "numpy", "CPU", 0.1,
                                         {"comment": note, "_hidden": PID}, False, notes=[note])])
        store.add_finding(sids[m], label="note", note=note, source="symptoms-note", time_s=0.0)
        sids[m, "study"] = st
    pid = store.study(sids["xray"])["patient_id"]
    for m in ("endo", "pcg"):  # no identity in the file: filed under the patient by hand
        st = open_study(files[m], m)
        sids[m] = store.save(st)
        sids[m, "study"] = st
        store.assign_study(sids[m], pid)
    store.add_finding(sids["endo"], label="polyp", note=f"location: caecum; seen by {NAME[1]}'s request",
                      source="polyp-seg", time_s=0.04, frame_index=1, confidence=0.9, box=[0.1, 0.1, 0.3, 0.3])
    return sids


def test_readers_link_all_three_dicoms_to_one_patient(store, phi_files):
    sids = _store_all(store, phi_files)
    pids = {store.study(sids[m])["patient_id"] for m in ("xray", "ecg", "echo", "endo", "pcg")}
    assert len(pids) == 1 and None not in pids
    p = store.patient(pids.pop())
    assert (p["name"], p["external_id"], p["birth_date"]) == ("TESTPERSON, ALICE MARIANNE", PID, "1961-04-17")
    assert store.study(sids["ecg"])["study_date"] == "2024-01-31" and store.study(sids["ecg"])["accession"] == ACC


@pytest.mark.parametrize("modality", ["xray", "ecg", "echo", "pcg"])
def test_anonymised_pdf_has_no_phi(store, phi_files, tmp_path, drawn_text, modality):
    sids = _store_all(store, phi_files)
    study, sid = sids[modality, "study"], sids[modality]
    ident = tmp_path / "identified.pdf"
    export_pdf(study, store, sid, ident)
    assert {"TESTPERSON", PID} <= set(_found(_pdf_text(ident)))  # the search finds what is there
    drawn_text.clear()
    anon = tmp_path / "anon.pdf"
    export_pdf(study, store, sid, anon, anonymise=True)
    text = _pdf_text(anon)
    assert _found(text) == [], _found(text)
    assert _found("\n".join(drawn_text)) == []
    assert re.search(r"(XR|ECG|ECHO|PCG)-[A-Z2-7]{8}", text)  # the study code stands in
    if modality == "pcg":  # the waveform figure's title was the file name: now the code
        assert any(re.match(r"PCG-[A-Z2-7]{8} — ", t) for t in drawn_text)


def test_anonymised_table_has_no_phi(store, phi_files, tmp_path):
    sids = _store_all(store, phi_files)
    ids = [sids[m] for m in ("xray", "ecg", "echo", "endo")]
    for ext in ("csv", "json"):
        p = tmp_path / f"anon.{ext}"
        export_table(store, ids, p, anonymise=True)
        assert _found(p.read_text()) == []
        q = tmp_path / f"ident.{ext}"
        export_table(store, ids, q)
        assert PID in q.read_text()
    rows = table_rows(store, ids, anonymise=True)
    assert len({r["patient"] for r in rows}) == 1 and rows[0]["patient"].startswith("P-")
    assert len({r["study"] for r in rows}) == 4


def test_anonymised_endo_bundle_has_no_phi(store, phi_files, tmp_path):
    sids = _store_all(store, phi_files)
    p = tmp_path / "anon.zip"
    export_endo_bundle(sids["endo", "study"], store, sids["endo"], p, anonymise=True)
    with zipfile.ZipFile(p) as z:
        names = z.namelist()
        text = "\n".join(z.read(n).decode("utf-8", "replace") for n in names if not n.endswith(".jpg"))
    assert not any(n.endswith(".jpg") for n in names)  # key frames left out: an endoscope burns names in
    assert _found(text + "\n".join(names)) == [], _found(text)
    assert "caecum" in text  # the finding itself survives
    q = tmp_path / "ident.zip"
    export_endo_bundle(sids["endo", "study"], store, sids["endo"], q)
    with zipfile.ZipFile(q) as z:
        assert "TESTPERSON" in z.read("metadata.json").decode()

"""Lightbox against a real PACS: Orthanc started by the tests on loopback ports (tests/orthanc_pacs.py).

The demo studies (X-ray CR, 12-lead ECG waveform, VL endoscopic stills; an ultrasound cine from pydicom's
test data under the same patient; an older X-ray as the prior) are pushed into Orthanc, found with C-FIND,
fetched with C-MOVE and C-GET into the store, analysed, and their PDF report, SR and overlays sent back;
Orthanc's REST API and pydicom then check that the objects arrived, parse, and reference the right study.
Unknown AE titles are refused both ways; dcmtk's echoscu/storescu poke the node like a modality would."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from inference.dicomnet import config as C
from inference.dicomnet import scu, sendback
from inference.dicomnet.fetch import fetch_priors, retrieve
from inference.dicomnet.node import Node
from inference.dicomnet.receive import Receiver
from inference.dicomnet.scu import StudyQuery, find_studies
from inference.dicomnet.uids import new_root
from orthanc_pacs import Orthanc, free_port, listening_addresses

ROOT = Path(__file__).resolve().parents[1]
MODALITY = "MODALITY"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """{kind: [files]}: the demo DICOMs, a US cine and an older X-ray of the same patient."""
    from pydicom.data import get_testdata_file

    from inference.dicomnet import demo as D

    d = tmp_path_factory.mktemp("demo_dicom")
    out = D.make_all(d, only=("xray", "ecg", "endo"))
    us = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
    for k, v in D.PATIENT.items():
        setattr(us, k, v)
    us.AccessionNumber = "LBXDEMO-US"
    us.save_as(d / "us.dcm")
    out["echo"] = [d / "us.dcm"]
    prior = pydicom.dcmread(out["xray"][0])
    prior.StudyInstanceUID, prior.SeriesInstanceUID = D._uid("xray-prior", "study"), D._uid("xray-prior", "series")
    prior.SOPInstanceUID = prior.file_meta.MediaStorageSOPInstanceUID = D._uid("xray-prior", "instance")
    prior.StudyDate, prior.AccessionNumber = "20230115", "LBXDEMO-XR-OLD"
    prior.save_as(d / "xray_prior.dcm")
    out["xray-prior"] = [d / "xray_prior.dcm"]
    return out


@pytest.fixture(scope="module")
def node_port():
    return free_port()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory, node_port):
    o = Orthanc(tmp_path_factory.mktemp("orthanc"), {
        "lightbox": {"AET": "LIGHTBOX", "Host": "127.0.0.1", "Port": node_port, "AllowEcho": True,
                     "AllowFind": True, "AllowMove": True, "AllowGet": True, "AllowStore": True}})
    o.start()
    yield o
    o.stop()


@pytest.fixture
def cfg(orthanc, node_port):
    c = C.NodeConfig(ae_title="LIGHTBOX", port=node_port, callers=[C.Caller(MODALITY, "127.0.0.1")],
                     pacs=[C.Peer("PACS", orthanc.aet, "127.0.0.1", orthanc.dicom_port, "move")],
                     uid_root=new_root())
    C.save(c)  # the per-test data folder: what `lightbox query/retrieve` read
    return c.validated()


@pytest.fixture(scope="module")
def pushed(demo, orthanc, node_port):
    """The demo studies in Orthanc (sent by Lightbox's own C-STORE SCU)."""
    c = C.NodeConfig(ae_title="LIGHTBOX", uid_root=new_root())
    peer = C.Peer("PACS", orthanc.aet, "127.0.0.1", orthanc.dicom_port)
    files = [f for fs in demo.values() for f in fs]
    out = scu.store(c, peer, files)
    assert [o.status for o in out] == [0] * len(files), [o.message for o in out if o.status]
    return {k: pydicom.dcmread(v[0], stop_before_pixels=True).StudyInstanceUID for k, v in demo.items()}


def _items(seq, out=None):
    """(concept name meaning, value) of every SR content item, depth first."""
    out = [] if out is None else out
    for it in seq:
        name = it.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in it else ""
        if "TextValue" in it:
            out.append((name, str(it.TextValue)))
        elif "MeasuredValueSequence" in it:
            out.append((name, float(it.MeasuredValueSequence[0].NumericValue)))
        elif "ConceptCodeSequence" in it:
            out.append((name, it.ConceptCodeSequence[0].CodeMeaning))
        if "ContentSequence" in it:
            _items(it.ContentSequence, out)
    return out


def test_orthanc_listens_on_loopback_only(orthanc):
    addrs = listening_addresses(orthanc.proc.pid)
    assert {p for _a, p in addrs} >= {orthanc.http_port, orthanc.dicom_port}
    assert {a for a, _p in addrs} <= {"127.0.0.1", "::1"}, addrs


def test_push_query_retrieve_analyse_and_send_back(demo, pushed, orthanc, cfg, tmp_path):
    from app.store import Store
    from inference.pipeline import analyse

    pacs = cfg.pacs[0]
    # -- query ----------------------------------------------------------------------------------------------
    hits = find_studies(cfg, pacs, StudyQuery(patient_id="LIGHTBOX-DEMO"))
    assert {h.study_uid for h in hits} == set(pushed.values())
    assert hits[0].study_date >= hits[-1].study_date  # newest first
    assert {h.study_uid for h in find_studies(cfg, pacs, StudyQuery(patient_name="demo"))} == set(pushed.values())
    assert {h.study_uid for h in find_studies(cfg, pacs, StudyQuery(modality="CR"))} == {pushed["xray"], pushed["xray-prior"]}
    assert [h.study_uid for h in find_studies(cfg, pacs, StudyQuery(accession="LBXDEMO-ECG"))] == [pushed["ecg"]]
    old = find_studies(cfg, pacs, StudyQuery(patient_id="LIGHTBOX-DEMO", date_from="2023-01-01", date_to="2023-12-31"))
    assert [h.study_uid for h in old] == [pushed["xray-prior"]] and old[0].patient_name == "DEMO, SYNTHETIC"
    # -- retrieve: C-MOVE to the node (X-ray, echo, endoscopy), C-GET on the association (ECG) ------------------
    db = tmp_path / "lightbox.sqlite"
    node = Node(cfg, db=db).start()
    try:
        outs = [scu.move_study(cfg, pacs, pushed[k]) for k in ("xray", "echo", "endo")]
        assert [o.completed for o in outs] == [1, 1, len(demo["endo"])] and all(o.ok for o in outs)
        rec = Receiver(db=db)
        got = scu.get_study(cfg, pacs, pushed["ecg"], rec)
        assert got.completed == 1 and rec.wait_idle(60)
        assert rec.counters.last_from == orthanc.aet  # C-GET: the sender is the PACS
        rec.close()
        assert node.receiver.wait_idle(60)
        st = Store(db)
        t_end = time.time() + 30  # the endoscopy series is read once Orthanc's association has closed
        while time.time() < t_end and len(st.studies()) < 4:
            time.sleep(0.1)
        rows = {r["modality"]: r for r in st.studies()}
        assert set(rows) == {"xray", "echo", "ecg", "endo"}
        assert len({r["patient_id"] for r in rows.values()}) == 1  # one patient, from the headers
        assert rows["xray"]["accession"] == "LBXDEMO-XRAY" and rows["endo"]["study_date"] == "2025-03-01"
        assert st.known_study_uids() == {pushed[k] for k in ("xray", "echo", "endo", "ecg")}
        # -- priors: opening the X-ray fetches the older X-ray of the same patient ------------------------------
        pri = fetch_priors(cfg, st, rows["xray"]["id"], db=db)
        assert [o.study_uid for o in pri] == [pushed["xray-prior"]] and pri[0].completed == 1
        assert fetch_priors(cfg, st, rows["xray"]["id"], db=db) == []  # held now: not fetched twice
    finally:
        node.stop()
    xr = [r for r in st.studies() if r["modality"] == "xray"]
    assert len(xr) == 2
    # -- analyse ----------------------------------------------------------------------------------------------
    from inference.detect import open_study

    sids = {}
    for m, model in (("xray", "xray-pneumonia"), ("ecg", "ecg-rhythm"), ("endo", "endo-polyp-lightbox")):
        row = rows[m]
        study = open_study(row["source_path"], m)
        r = analyse(study, model)
        st.add_result(row["id"], r)
        st.file_proposed_findings(row["id"], r)
        sids[m] = row["id"]
    # the endoscopy demo is synthetic: the polyp model's feature gate answers its stills 'outside what this model was
    # trained on' (resources/models/polyp_unet.md), so it has no finding, and its report says so
    endo_result = st.latest_result(sids["endo"])
    assert not st.findings(sids["endo"]), "the synthetic demo is outside the polyp model's domain"
    assert endo_result.outputs["frames_out_of_domain"] == endo_result.outputs["frames_to_model"] > 0
    # -- send back --------------------------------------------------------------------------------------------
    reports = {m: sendback.send(st, sid, cfg, pacs) for m, sid in sids.items()}
    for m, rep in reports.items():
        assert rep.ok, rep.summary()
    assert [k for k, _ in reports["xray"].sent] == ["pdf", "sr", "sc"]
    assert [k for k, _ in reports["ecg"].sent] == ["pdf", "sr"]
    assert [k for k, _ in reports["endo"].sent] == ["pdf", "sr"]  # no finding: no key frame to send
    # -- what Orthanc holds now, through its REST API and pydicom ----------------------------------------------
    for m, rep in reports.items():
        src = pydicom.dcmread(demo[m][0], stop_before_pixels=True)
        inst = {i["MainDicomTags"]["SOPInstanceUID"]: i["ID"] for i in orthanc.instances_of_study(pushed[m])}
        for kind, sop in rep.sent:
            assert sop in inst, (m, kind)  # arrived, in the source study
            ds = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.instance_file(inst[sop])))
            assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.PatientID == "LIGHTBOX-DEMO"
            assert ds.SeriesInstanceUID not in (src.SeriesInstanceUID,) and ds.SOPInstanceUID.startswith(cfg.uid_root)
            assert ds.Manufacturer == "Lightbox"
            if kind == "pdf":
                assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1" and ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
                assert ds.EncapsulatedDocument[:5] == b"%PDF-"
                assert src.SOPInstanceUID in [r.ReferencedSOPInstanceUID for r in ds.SourceInstanceSequence]
            elif kind == "sr":
                assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and ds.VerificationFlag == "UNVERIFIED"
                refs = [s.ReferencedSOPInstanceUID for e in ds.CurrentRequestedProcedureEvidenceSequence
                        for se in e.ReferencedSeriesSequence for s in se.ReferencedSOPSequence]
                assert src.SOPInstanceUID in refs
                items = _items(ds.ContentSequence)
                result = st.latest_result(sids[m])
                assert ("Algorithm Name", result.model_id) in items
                assert ("Algorithm Version", result.weights_sha256 or "no weights") in items
                texts = " ".join(v for n, v in items if n == "Comment")
                assert ("NOT A CLINICAL RESULT" in texts) == (not result.clinical)
                assert "not a diagnosis" in texts
                if m == "xray":
                    assert ("Probability of pneumonia (model output)", pytest.approx(result.outputs["p_pneumonia"])) in items
                    assert any(n == "Source of Measurement" for n, _v in items) or "ContentSequence" in ds
                if m == "ecg":  # the rhythm label, coded (normal sinus rhythm / atrial fibrillation in SNOMED CT)
                    label = {"N": "Normal sinus rhythm", "AF": "Atrial fibrillation"}.get(result.outputs["rhythm"],
                                                                                         result.outputs["rhythm"])
                    assert ("rhythm", label) in items
                if m == "endo":  # no finding is reported for frames the model refused
                    assert not any(n == "Finding" and "polyp" in str(v).lower() for n, v in items)
            else:
                assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.pixel_array.ndim == 3
                sources = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in demo[m]}
                assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID in sources
                if m == "endo":
                    assert "the model's mask (tinted, outlined) and box drawn" in ds.ImageComments
                    k = int(ds.ImageComments.split(" at frame ")[1].split(",")[0])  # the key frame's index
                    own = pydicom.dcmread(demo["endo"][k], stop_before_pixels=True).SOPInstanceUID
                    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == own  # the still it came from
    # what left the workstation is kept beside the exports, the user's alone
    import os
    import stat

    from inference import paths

    kept = list((paths.exports_dir() / "dicom-sent").rglob("*.dcm"))
    assert len(kept) == sum(len(r.sent) for r in reports.values())
    assert all(stat.S_IMODE(os.stat(k).st_mode) == 0o600 for k in kept)
    st.close()


def test_unknown_aes_are_refused_both_ways(pushed, orthanc, cfg, tmp_path):
    pacs = cfg.pacs[0]
    stranger = C.NodeConfig(ae_title="STRANGER", uid_root=cfg.uid_root)
    with pytest.raises(scu.DicomNetError, match="rejected the association|no association"):
        find_studies(stranger, pacs, StudyQuery(patient_id="LIGHTBOX-DEMO"))
    with pytest.raises(scu.DicomNetError, match="could not send the study to 'NOWHERE'"):
        scu.move_study(cfg, pacs, pushed["ecg"], destination="NOWHERE")
    node = Node(cfg, db=tmp_path / "x.sqlite").start()
    try:
        with pytest.raises(scu.DicomNetError, match="Calling AE title not recognised"):
            scu.echo(stranger, C.Peer("node", "LIGHTBOX", "127.0.0.1", node.port))
        assert node.state().rejected_associations == 1
    finally:
        node.stop()


@pytest.mark.skipif(not shutil.which("echoscu") or not shutil.which("storescu"),
                    reason="dcmtk is not installed (`make setup` installs the Debian package 'dcmtk')")
def test_dcmtk_modality_echoes_and_stores_and_a_stranger_is_refused(demo, cfg, tmp_path):
    from app.store import Store

    db = tmp_path / "lightbox.sqlite"
    node = Node(cfg, db=db).start()
    try:
        base = ["-aec", "LIGHTBOX", "127.0.0.1", str(node.port)]
        ok = subprocess.run(["echoscu", "-aet", MODALITY, *base], capture_output=True, text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        bad = subprocess.run(["echoscu", "-aet", "STRANGER", *base], capture_output=True, text=True, timeout=30)
        assert bad.returncode != 0 and "Calling AE Title Not Recognized" in (bad.stdout + bad.stderr)
        sent = subprocess.run(["storescu", "-aet", MODALITY, *base, str(demo["xray"][0]), str(demo["ecg"][0])],
                              capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        assert node.receiver.wait_idle(60)
        st = Store(db)
        assert sorted(r["modality"] for r in st.studies()) == ["ecg", "xray"]
        assert {r["calling_ae"] for r in st.received_instances()} == {MODALITY}
        st.close()
    finally:
        node.stop()


def test_cli_query_retrieve_received_and_batch_send(pushed, orthanc, cfg, tmp_path, capsys):
    from app.cli import main

    db = str(tmp_path / "cli.sqlite")
    assert main(["query", "PACS", "--modality", "ECG"]) == 0
    out = capsys.readouterr().out
    assert pushed["ecg"] in out and "1 studies on PACS" in out and "DEMO, SYNTHETIC" in out
    assert main(["retrieve", "PACS", pushed["ecg"], "--get", "--db", db]) == 0
    assert " instance(s) retrieved" in capsys.readouterr().out  # the ECG (and what an earlier test sent back)
    assert main(["retrieve", "PACS", pushed["xray"], "--db", db]) == 0  # C-MOVE: a node started for it
    assert main(["received", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "study #" in out and "ECG-" in out and "CR-" in out
    assert main(["query", "NOPE"]) == 1 and "no PACS called 'NOPE'" in capsys.readouterr().err
    # lightbox batch … --send PACS: the batch's stored results go back to the PACS
    from app.store import Store

    st = Store(db)
    xray = next(r for r in st.received_instances() if r["dicom_modality"] == "CR")["path"]
    st.close()
    n_before = len(orthanc.instances_of_study(pushed["xray"]))
    rc = main(["batch", "xray-pneumonia", xray, "--out", str(tmp_path / "b.csv"), "--workers", "1", "--db", db,
               "--send", "PACS"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "sent to PACS: 1 PDF report, 1 AI results (SR), 1 overlay" in out
    assert len(orthanc.instances_of_study(pushed["xray"])) == n_before + 3


def test_lightbox_node_runs_headless_and_stops_on_sigterm(tmp_path, cfg):
    env = dict(__import__("os").environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "app.cli", "node", "--allow", f"{MODALITY}@127.0.0.1",
                          "--db", str(tmp_path / "n.sqlite")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        t_end = time.time() + 60
        while time.time() < t_end and "(log: " not in line:
            line = p.stdout.readline()
        assert f"listening on 127.0.0.1:{cfg.port} (log: " in line
        assert scu.echo(C.NodeConfig(ae_title=MODALITY, uid_root=cfg.uid_root),
                        C.Peer("n", "LIGHTBOX", "127.0.0.1", cfg.port)) < 5
        p.send_signal(signal.SIGTERM)
        rest = p.communicate(timeout=30)[0]
        assert p.returncode == 0 and "DICOM LIGHTBOX@127.0.0.1" in rest
    finally:
        if p.poll() is None:
            p.kill()

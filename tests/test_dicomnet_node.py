"""The DICOM node without a PACS: settings, UIDs, association policy, receiving (read, kept-unreadable,
endoscopy series), and every bad input the issue names -- malformed datasets, truncated pixel data, a
transfer cut short, an unsupported transfer syntax, a full disk -- each a logged refusal with nothing
half-written, the node still serving afterwards."""
from __future__ import annotations

import errno
import os
import socket
import stat
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from inference import paths
from inference.dicomnet import config as C
from inference.dicomnet import scu
from inference.dicomnet.node import Node
from inference.dicomnet.policy import AssociationPolicy
from inference.dicomnet.uids import UidFactory, is_uid, new_root

MODALITY = "MODALITY"


@pytest.fixture(scope="module")
def xray_file(tmp_path_factory):
    from inference.xray.demo import make_dicom

    return make_dicom(tmp_path_factory.mktemp("xr"))


@pytest.fixture
def node(tmp_path):
    cfg = C.NodeConfig(port=0, callers=[C.Caller(MODALITY, "127.0.0.1")], uid_root=new_root())
    seen = []
    n = Node(cfg, db=tmp_path / "node.sqlite", on_ingested=lambda sid, info: seen.append((sid, info))).start()
    n.seen = seen
    yield n
    n.stop()


def me(ae=MODALITY):
    return C.NodeConfig(ae_title=ae, uid_root="2.25.1")


def peer_of(node, ae="LIGHTBOX"):
    return C.Peer("node", ae, "127.0.0.1", node.port)


def store_of(node):
    from app.store import Store

    return Store(node.receiver.db)


def node_log() -> str:
    return (paths.logs_dir() / "dicom-node.log").read_text()


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


# -- settings, UIDs, policy ---------------------------------------------------------------------------------
def test_settings_round_trip_private_and_validated(tmp_path):
    p = tmp_path / "dicom.json"
    cfg = C.NodeConfig(ae_title="READING1", port=11112, bind="0.0.0.0", callers=[C.Caller("US_ROOM_2", "10.1.2.3")],
                       pacs=[C.Peer("PACS", "ORTHANC", "pacs.example.org", 4242, "get")])
    C.save(cfg, p)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    back = C.load(p)
    assert back.pacs[0].retrieve == "get" and back.callers[0].host == "10.1.2.3"
    assert back.uid_root.startswith("2.25.") and C.load(p).uid_root == back.uid_root  # made once, kept
    assert back.peer("PACS").port == 4242 and back.peer("X@10.0.0.9:104").ae_title == "X"
    for bad, msg in ((dict(ae_title="A" * 17), "longer than 16"), (dict(ae_title="A\\B"), "backslash"),
                     (dict(port=70000), "outside"), (dict(bind="not a host!"), "neither an IP"),
                     (dict(pacs=[C.Peer("P", "A", "h", 1, "fetch")]), "retrieve is")):
        with pytest.raises(C.ConfigError, match=msg):
            C.NodeConfig(**bad).validated()
    with pytest.raises(C.ConfigError, match="no PACS called"):
        back.peer("NOPE")
    p.write_text("{not json")
    with pytest.raises(C.ConfigError, match="not a valid DICOM settings file"):
        C.load(p)


def test_uids_are_valid_unique_and_under_the_root():
    root = new_root()
    f = UidFactory(root)
    uids = [f() for _ in range(2000)]
    assert len(set(uids)) == 2000
    assert all(is_uid(u) and u.startswith(root + ".") and len(u) <= 64 for u in uids)
    with pytest.raises(C.ConfigError):
        UidFactory("1.02.3")


def test_policy_accepts_only_configured_callers_from_their_hosts():
    cfg = C.NodeConfig(callers=[C.Caller("US_ROOM", "10.0.0.5"), C.Caller("ANYWHERE")],
                       pacs=[C.Peer("PACS", "ORTHANC", "127.0.0.1", 4242)])
    pol = AssociationPolicy(cfg)
    assert pol.check("US_ROOM", "LIGHTBOX", "10.0.0.5").ok
    assert pol.check("US_ROOM", "LIGHTBOX", "::ffff:10.0.0.5").ok
    assert not pol.check("US_ROOM", "LIGHTBOX", "10.0.0.6").ok
    assert pol.check("ANYWHERE", "LIGHTBOX", "192.168.7.7").ok
    assert pol.check("ORTHANC", "LIGHTBOX", "127.0.0.1").ok  # a PACS delivers C-MOVEs
    d = pol.check("STRANGER", "LIGHTBOX", "10.0.0.5")
    assert not d.ok and d.reject == (1, 1, 3) and "not an allowed caller" in d.reason
    d = pol.check("US_ROOM", "OTHERNODE", "10.0.0.5")
    assert not d.ok and d.reject == (1, 1, 7)
    assert "no callers are configured" in AssociationPolicy(C.NodeConfig()).check("X", "LIGHTBOX", "1.2.3.4").reason


# -- receiving ----------------------------------------------------------------------------------------------
def test_received_studies_are_read_linked_private_and_unreadable_ones_kept(node, xray_file):
    ct = get_testdata_file("CT_small.dcm")
    out = scu.store(me(), peer_of(node), [xray_file, get_testdata_file("waveform_ecg.dcm"),
                                          get_testdata_file("examples_ybr_color.dcm"), ct])
    assert [o.status for o in out] == [0, 0, 0, 0]
    assert node.receiver.wait_idle(60)
    st = store_of(node)
    rows = {r["dicom_modality"]: r for r in st.received_instances()}
    assert {rows[m]["status"] for m in ("CR", "ECG", "US")} == {"read"}
    assert rows["CT"]["status"] == "unreadable" and "not a kind of study Lightbox reads" in rows["CT"]["problem"]
    assert Path(rows["CT"]["path"]).exists()  # kept, not dropped
    mods = {r["modality"] for r in st.studies()}
    assert mods == {"xray", "ecg", "echo"}
    x = st.study(rows["CR"]["study_id"])
    assert st.patient(x["patient_id"])["external_id"] == "LIGHTBOX-DEMO"  # identity from the header
    assert x["source_path"] == rows["CR"]["path"]
    assert len([s for s, _ in node.seen if s]) == 3 and any(s is None for s, _ in node.seen)  # live callbacks
    for r in rows.values():
        assert stat.S_IMODE(os.stat(r["path"]).st_mode) == 0o600
        p = Path(r["path"])
        assert p.parent.name == r["series_uid"] and p.parent.parent.name == r["study_uid"]
    assert stat.S_IMODE(os.stat(node.receiver.root).st_mode) == 0o700
    assert pydicom.dcmread(rows["CR"]["path"]).file_meta.SourceApplicationEntityTitle == MODALITY
    assert node.state().read == 3 and node.state().unreadable == 1
    st.close()


def test_unknown_calling_ae_wrong_host_and_wrong_called_ae_are_refused_and_logged(node):
    assert scu.echo(me(), peer_of(node)) < 5
    with pytest.raises(scu.DicomNetError, match="Calling AE title not recognised"):
        scu.echo(me("STRANGER"), peer_of(node))
    with pytest.raises(scu.DicomNetError, match="Called AE title not recognised"):
        scu.echo(me(), peer_of(node, "SOMEONEELSE"))
    log = node_log()
    assert "association from STRANGER (127.0.0.1" in log and "not an allowed caller" in log
    assert "called AE title 'SOMEONEELSE'" in log
    assert node.state().rejected_associations == 2


def test_malformed_dataset_is_refused_with_nothing_on_disk(node, xray_file, tmp_path, monkeypatch):
    import pynetdicom._config as pcfg
    from pynetdicom import AE

    raw = Path(xray_file).read_bytes()
    ds = pydicom.dcmread(xray_file)
    # a header element whose length runs past the end of the data: bytes no parser can read
    i = raw.index(b"\x08\x00\x60\x00")  # (0008,0060) Modality, explicit VR little endian
    bad = raw[:i + 6] + (60000).to_bytes(2, "little") + raw[i + 8:i + 400]
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(bad)
    short = tmp_path / "short_pixels.dcm"
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 3]
    ds.save_as(short, enforce_file_format=True)
    monkeypatch.setattr(pcfg, "STORE_SEND_CHUNKED_DATASET", True)  # send the file's bytes as they are
    ae = AE(ae_title=MODALITY)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="LIGHTBOX")
    assert assoc.is_established
    codes = [int(assoc.send_c_store(p).Status) for p in (broken, short)]
    assoc.release()
    assert codes == [0xC210, 0xC210]
    assert files_under(node.receiver.root) == []
    log = node_log()
    assert log.count("refused (0xC210)") == 2  # the broken header: "does not parse" or a UID found missing
    assert "the pixel data is truncated: 174762 of 524288 bytes" in log
    assert node.state().refused == 2
    out = scu.store(me(), peer_of(node), [xray_file])  # and the node still serves
    assert out[0].status == 0


def test_a_transfer_cut_short_leaves_nothing(node, xray_file):
    from pynetdicom import AE

    ds = pydicom.dcmread(xray_file)
    ae = AE(ae_title=MODALITY)
    ae.dimse_timeout = ae.network_timeout = 3
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", node.port, ae_title="LIGHTBOX")
    assert assoc.is_established
    sock = assoc.dul.socket
    orig = sock.send

    def cut(data: bytes) -> None:  # the dataset's P-DATA: half of it, then the cable is pulled
        if data[:1] == b"\x04" and len(data) > 100_000:
            sock.socket.sendall(data[: len(data) // 2])
            sock.socket.shutdown(socket.SHUT_RDWR)
            return
        orig(data)

    sock.send = cut
    try:
        assoc.send_c_store(ds)
    except Exception:
        pass
    assoc.abort()
    t_end = time.time() + 10
    while time.time() < t_end and "aborted" not in node_log():
        time.sleep(0.1)
    assert node.receiver.wait_idle(10)
    assert files_under(node.receiver.root) == [] and store_of(node).received_instances() == []
    assert "was aborted (the peer aborted or the connection dropped); only instances received in full were kept" in node_log()
    assert scu.store(me(), peer_of(node), [xray_file])[0].status == 0


def test_unsupported_transfer_syntax_is_refused_and_logged(node, xray_file, tmp_path):
    from pynetdicom import AE
    from pydicom.uid import JPEGLosslessSV1

    from inference.dicomnet.classify import receivable_transfer_syntaxes

    if JPEGLosslessSV1 in receivable_transfer_syntaxes():
        pytest.skip("this installation decodes JPEG Lossless")
    ae = AE(ae_title=MODALITY)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1", JPEGLosslessSV1)
    ae.add_requested_context("1.2.840.10008.1.1")  # Verification, so the association itself stands
    assoc = ae.associate("127.0.0.1", node.port, ae_title="LIGHTBOX")
    assert assoc.is_established
    assert [c.abstract_syntax for c in assoc.accepted_contexts] == ["1.2.840.10008.1.1"]
    ds = pydicom.dcmread(xray_file)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    with pytest.raises(ValueError, match="No presentation context"):
        assoc.send_c_store(ds)
    assoc.release()
    assert "Computed Radiography Image refused: offered only JPEG Lossless" in node_log()
    assert files_under(node.receiver.root) == []


def test_a_full_disk_is_refused_and_nothing_half_written(node, xray_file, monkeypatch):
    """The writer gets as far as the temporary file; flushing it to disk fails with ENOSPC."""
    calls = []

    def no_space(fd):
        calls.append(fd)
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", no_space)
        out = scu.store(me(), peer_of(node), [xray_file])
    assert out[0].status == 0xA700
    assert calls and files_under(node.receiver.root) == []  # neither the file nor its temporary
    assert "is full; the instance was not stored (nothing half-written is left)" in node_log()
    st = store_of(node)
    assert st.studies() == [] and st.received_instances() == []
    assert scu.store(me(), peer_of(node), [xray_file])[0].status == 0  # space again: it is stored
    assert node.receiver.wait_idle(30) and len(st.studies()) == 1
    st.close()


def test_endoscopy_series_becomes_one_study_and_orphans_are_read_on_start(node, tmp_path):
    from inference.dicomnet.demo import endo_dicoms

    files = endo_dicoms(tmp_path / "endo", range(86, 92))
    out = scu.store(me(), peer_of(node), files)
    assert all(o.status == 0 for o in out)
    assert node.receiver.wait_idle(30)
    t_end = time.time() + 20  # the series is read once its association has closed
    st = store_of(node)
    while time.time() < t_end and not st.studies():
        time.sleep(0.1)
    rows = st.studies()
    assert [r["modality"] for r in rows] == ["endo"]
    s = st.study(rows[0]["id"])
    assert s["metadata"]["frame_count"] == 6 and rows[0]["patient_external_id"] == "LIGHTBOX-DEMO"
    assert len(st.dicom_sources(rows[0]["id"])) == 6
    # a file that reached the disk while the store did not learn of it (a crash in between) is read on start
    node.stop()
    ct = get_testdata_file("CT_small.dcm")
    d = node.receiver.root / "1.2.3" / "1.2.3.4"
    d.mkdir(parents=True)
    (d / "CT-1-1-orphan.dcm").write_bytes(Path(ct).read_bytes())
    (d / ".x.dcm.123.part").write_bytes(b"half")
    os.utime(d / ".x.dcm.123.part", (time.time() - 7200, time.time() - 7200))
    os.utime(d / "CT-1-1-orphan.dcm", (time.time() - 60, time.time() - 60))  # it was there before the start
    node.receiver.__init__(node.receiver.root, node.receiver.db)
    node.start()
    assert node.receiver.wait_idle(30)
    assert any(r["path"].endswith("CT-1-1-orphan.dcm") for r in st.received_instances("unreadable"))
    assert not (d / ".x.dcm.123.part").exists()
    st.close()


def test_migration_from_a_schema_4_database_keeps_every_row(tmp_path):
    import sqlite3

    from app.store import SCHEMA_VERSION, Store

    p = tmp_path / "v4.sqlite"
    con = sqlite3.connect(p)
    con.executescript((Path(__file__).parent / "fixtures" / "store_v4.sql").read_text())
    tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    before = {t: con.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables}
    con.close()
    s = Store(p)
    assert s.schema_version() == SCHEMA_VERSION == 6  # the landed version was 4: steps 5 and 6 run
    for t, rows in before.items():
        after = s.conn.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall()
        if t == "meta":
            assert {r for r in after if r[0] != "schema_version"} == {r for r in rows if r[0] != "schema_version"}
        else:
            assert after == rows, t
    assert s.received_instances() == [] and s.known_study_uids() == set()
    assert s.patient(s.study(1)["patient_id"])["external_id"] == "PID-4711"
    s.close()
    assert Store(p).schema_version() == 6  # opening again changes nothing


def test_a_study_not_opened_from_dicom_is_not_sent(store, tmp_path):
    from inference.detect import open_study
    from inference.dicomnet import sendback
    from inference.ecg.demo import make

    sid = store.save(open_study(make(tmp_path)))
    with pytest.raises(sendback.SendError, match="was not opened from DICOM: there is no PACS study"):
        sendback.build(store, sid, UidFactory(new_root()))


def test_sr_codes_units_and_stamp_without_a_network(store, xray_file):
    """The SR on its own: parsed back by highdicom, the measurement's code and unit, the stamp."""
    import highdicom as hd

    from inference.detect import open_study
    from inference.dicomnet import sendback
    from inference.results import Result

    st = open_study(xray_file)
    r = Result("xray-pneumonia", "ab" * 32, "onnxruntime", "CPU", 0.1,
               {"p_pneumonia": 0.83, "label": "PNEUMONIA", "threshold": 0.55, "in_distribution": True,
                "hottest_regions_px": [[1, 2, 3, 4]], "population": "x" * 100, "_gradcam_grid": [[0.0]]}, False)
    sid = store.save(st, [r])
    objs = sendback.build(store, sid, UidFactory(new_root()), kinds=("sr",))
    sr = objs[0].dataset
    parsed = hd.sr.ComprehensiveSR.from_dataset(sr)  # highdicom reads it back as a Comprehensive SR
    assert parsed.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and parsed.VerificationFlag == "UNVERIFIED"
    items = {}

    def walk(seq):
        for it in seq:
            name = it.ConceptNameCodeSequence[0]
            if "MeasuredValueSequence" in it:
                mv = it.MeasuredValueSequence[0]
                items[name.CodeMeaning] = (float(mv.NumericValue), mv.MeasurementUnitsCodeSequence[0].CodeValue)
            elif "ConceptCodeSequence" in it:
                c = it.ConceptCodeSequence[0]
                items[name.CodeMeaning] = (c.CodeValue, c.CodingSchemeDesignator)
            elif "TextValue" in it:
                items.setdefault("texts", []).append(it.TextValue)
            if "ContentSequence" in it:
                walk(it.ContentSequence)

    walk(sr.ContentSequence)
    assert items["Probability of pneumonia (model output)"] == (0.83, "1")
    assert items["label"] == ("233604007", "SCT")  # PNEUMONIA -> SNOMED CT pneumonia
    assert items["in_distribution"] == ("373066001", "SCT")
    assert "population" not in items and "hottest_regions_px" not in items  # prose and lists stay in the PDF
    assert any(t.startswith("NOT A CLINICAL RESULT: xray-pneumonia") for t in items["texts"])
    assert sr.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == "99LBX"

"""The DICOM node in the app (pytest-qt, offscreen): the Network menu and status bar, the settings dialog,
studies arriving in the study list live, the query dialog, Send to PACS from an open study (a second
Lightbox node stands in for the PACS), and the background priors fetch on opening a study."""
from __future__ import annotations

import pytest

from inference.dicomnet import config as C
from inference.dicomnet import scu
from inference.dicomnet.node import Node
from inference.dicomnet.uids import new_root
from orthanc_pacs import free_port


@pytest.fixture(scope="module")
def xray_file(tmp_path_factory):
    from inference.dicomnet.demo import xray_dicom

    return xray_dicom(tmp_path_factory.mktemp("xr"))


@pytest.fixture
def pacs(tmp_path):
    """A second Lightbox node playing the PACS: it takes what LIGHTBOX sends."""
    n = Node(C.NodeConfig(ae_title="PACSNODE", port=0, callers=[C.Caller("LIGHTBOX", "127.0.0.1")],
                          uid_root=new_root()), db=tmp_path / "pacs.sqlite", root=tmp_path / "pacs-received",
             log_file=False).start()
    yield n
    n.stop()


def test_settings_dialog_validates_and_saves(main_window, qtbot):
    from app.dicomnet.settings import DicomSettingsDialog

    w = main_window
    assert "&Network" in [a.text() for a in w.menuBar().actions()]
    assert w.dicom_label.text() == "DICOM node off"
    d = DicomSettingsDialog(w.dicom, w)
    qtbot.addWidget(d)
    d.ae.setText("READING 1")
    d.callers.add(["US_ROOM_2", "10.1.2.3"])
    d.pacs.add(["PACS", "ORTHANC", "pacs.example.org", "4242", "get"])
    d.pacs.add(["BAD", "X", "host", "port?", "move"])
    d.save()
    assert "the port 'port?' is not a number" in d.status.text() and d.result() == 0
    d.pacs.table.selectRow(1)
    d.pacs.remove()
    d.save()
    cfg = C.load()
    assert cfg.ae_title == "READING 1" and cfg.callers[0].host == "10.1.2.3" and cfg.pacs[0].retrieve == "get"
    assert w.dicom.cfg.pacs[0].name == "PACS"


def test_received_studies_appear_live_and_the_status_bar_counts(main_window, qtbot, xray_file):
    w = main_window
    port = free_port()
    w.dicom.save(C.NodeConfig(port=port, callers=[C.Caller("MODALITY", "127.0.0.1")], uid_root=new_root()))
    w.toggle_node()
    assert w.dicom.running and f"LIGHTBOX@127.0.0.1:{port}" in w.dicom_label.text()
    assert w.dicom_toggle.text() == "&Stop DICOM node"
    before = len(w.study_list.rows)
    out = scu.store(C.NodeConfig(ae_title="MODALITY", uid_root="2.25.1"), C.Peer("n", "LIGHTBOX", "127.0.0.1", port),
                    [xray_file])
    assert out[0].status == 0
    qtbot.waitUntil(lambda: len(w.study_list.rows) == before + 1, timeout=30000)
    assert w.study_list.rows[0]["modality"] == "xray" and w.study_list.rows[0]["patient_external_id"] == "LIGHTBOX-DEMO"
    w.dicom.emit_state()
    assert "1 received" in w.dicom_label.text()
    w.toggle_node()
    qtbot.waitUntil(lambda: w.dicom_label.text().startswith("DICOM node off"), timeout=20000)


def test_send_to_pacs_from_an_open_study(main_window, qtbot, xray_file, pacs):
    w = main_window
    w.dicom.save(C.NodeConfig(port=free_port(), pacs=[C.Peer("PACS", "PACSNODE", "127.0.0.1", pacs.port)],
                              fetch_priors=False, uid_root=new_root()))
    w.send_to_pacs()
    assert "Open a study first" in w.statusBar().currentMessage()
    w.open_path(xray_file)
    qtbot.waitUntil(lambda: w.study_id is not None, timeout=30000)
    w.run_analysis("xray-pneumonia")
    qtbot.waitUntil(lambda: w.ctx.store.latest_result(w.study_id) is not None, timeout=60000)
    w.send_to_pacs()
    qtbot.waitUntil(lambda: "sent to PACS" in w.statusBar().currentMessage(), timeout=60000)
    assert "1 PDF report, 1 AI results (SR), 1 overlay" in w.statusBar().currentMessage()
    assert pacs.receiver.wait_idle(30)
    from app.store import Store

    st = Store(pacs.receiver.db)
    kinds = sorted(r["sop_class_uid"] for r in st.received_instances())
    assert kinds == ["1.2.840.10008.5.1.4.1.1.104.1", "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.33"]
    st.close()


def test_query_dialog_searches_and_marks_studies_held_here(main_window, qtbot):
    from app.dicomnet.query import QueryDialog
    from inference.dicomnet.bench import _find_scp

    server = _find_scp(20)
    try:
        w = main_window
        w.dicom.save(C.NodeConfig(port=free_port(), pacs=[C.Peer("BENCH", "BENCHPACS", "127.0.0.1",
                                                                  server.server_address[1])], uid_root=new_root()))
        d = QueryDialog(w.dicom, w)
        qtbot.addWidget(d)
        d.date_from.setText("2024-13-01")
        d.search()
        assert "dates are YYYY-MM-DD" in d.status.text()
        d.date_from.setText("")
        d.pid.setText("B00002")
        d.search()
        qtbot.waitUntil(lambda: d.table.rowCount() == 5, timeout=30000)
        assert d.table.item(0, 2).text() == "B00002" and "5 studies on BENCH" in d.status.text()
        assert all(d.table.item(r, 8).text() == "" for r in range(5))  # none held here
    finally:
        server.shutdown()


def test_opening_a_study_fetches_its_priors_once(main_window, qtbot, xray_file, monkeypatch):
    import inference.dicomnet.fetch as F

    calls = []
    monkeypatch.setattr(F, "fetch_priors", lambda cfg, st, sid, db=None, ctx=None: calls.append(sid) or [])
    w = main_window
    w.dicom.save(C.NodeConfig(port=free_port(), pacs=[C.Peer("PACS", "X", "127.0.0.1", 4242)], uid_root=new_root()))
    w.open_path(xray_file)
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=30000)
    w.dicom_study_opened(w.study_id)  # the same patient and modality again: asked once per session
    qtbot.wait(200)
    assert calls == [w.study_id]

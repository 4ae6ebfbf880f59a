"""``lightbox bench --only dicom``: the node's receive throughput and C-FIND latency over loopback.

- receive: a Lightbox SCU sends N instances on one association to a node on 127.0.0.1 (temporary data
  folder and store); instances/s and MB/s from the first C-STORE to the last response (checks, atomic
  write with fsync included), then how fast the received instances are read into the store.
  Two loads: the synthetic CR radiograph (0.5 MB) and the echo phantom cine (US multi-frame, JPEG-LS, ~8 MB).
- query: C-FIND at study level against an in-process pynetdicom Q/R SCP holding 1000 studies (the network
  and DICOM round trip of Lightbox's SCU; a real PACS adds its own search time): one patient (5 studies)
  and a wildcard over all 1000.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

N_CR = 60
N_US = 6
N_STUDIES = 1000


def _copies(src: Path, n: int, folder: Path) -> list:
    import pydicom

    from inference.dicomnet.uids import UidFactory, new_root

    uid = UidFactory(new_root())
    base = pydicom.dcmread(str(src))
    out = []
    for i in range(n):
        ds = base.copy()
        ds.file_meta = base.file_meta.copy()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid()
        ds.InstanceNumber = i + 1
        out.append(ds)
    return out


def _receive(label: str, datasets: list, mb: float, tmp: Path):
    from inference.dicomnet import scu
    from inference.dicomnet.config import Caller, NodeConfig, Peer
    from inference.dicomnet.node import Node

    cfg = NodeConfig(port=0, callers=[Caller("BENCH", "127.0.0.1")], uid_root="2.25.1")
    node = Node(cfg, db=tmp / f"{label}.sqlite", root=tmp / f"received-{label}", log_file=False).start()
    try:
        me = NodeConfig(ae_title="BENCH", uid_root="2.25.1")
        t0 = time.perf_counter()
        out = scu.store(me, Peer("node", "LIGHTBOX", "127.0.0.1", node.port), datasets)
        dt = time.perf_counter() - t0
        assert all(o.status == 0 for o in out), [o.message for o in out if o.status]
        t1 = time.perf_counter()
        node.receiver.wait_idle(600)
        read_s = time.perf_counter() - t1 + dt  # reading overlaps with receiving
        n = len(datasets)
        yield (f"receive {label}: instances/s", n / dt, "inst/s", f"{n} x {mb / n:.2f} MB, one association")
        yield (f"receive {label}: MB/s", mb / dt, "MB/s", "loopback, atomic write + fsync per instance")
        yield (f"received {label} read into the store", n / read_s, "inst/s",
               f"{node.state().read} studies read by the modality reader")
    finally:
        node.stop()


def _find_scp(n: int):
    """An in-process Study Root C-FIND SCP over ``n`` synthetic studies (5 per patient)."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    studies = []
    for i in range(n):
        d = Dataset()
        d.QueryRetrieveLevel = "STUDY"
        d.PatientName, d.PatientID = f"BENCH^PATIENT{i // 5:04d}", f"B{i // 5:05d}"
        d.StudyInstanceUID = f"2.25.{10**20 + i}"
        d.StudyDate, d.StudyTime, d.AccessionNumber = f"2024{1 + i % 12:02d}{1 + i % 28:02d}", "101500", f"A{i:06d}"
        d.ModalitiesInStudy, d.StudyDescription = "CR", "bench"
        d.NumberOfStudyRelatedSeries, d.NumberOfStudyRelatedInstances = 1, 1
        studies.append(d)

    def handle(event):
        q = event.identifier
        pid = str(q.get("PatientID", "") or "")
        for d in studies:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            if pid and d.PatientID != pid:
                continue
            yield 0xFF00, d

    ae = AE(ae_title="BENCHPACS")
    ae.add_supported_context(FIND)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_FIND, handle)])
    return server


def run():
    from inference.dicomnet import scu
    from inference.dicomnet.config import NodeConfig, Peer
    from inference.dicomnet.demo import echo_dicom, xray_dicom

    with tempfile.TemporaryDirectory(prefix="lightbox-bench-dicom-") as d:
        tmp = Path(d)
        cr = xray_dicom(tmp / "src")
        yield from _receive("CR 0.5 MB", _copies(cr, N_CR, tmp), N_CR * cr.stat().st_size / 1e6, tmp)
        us = echo_dicom(tmp / "src")
        yield from _receive("US cine", _copies(us, N_US, tmp), N_US * us.stat().st_size / 1e6, tmp)
    server = _find_scp(N_STUDIES)
    try:
        me = NodeConfig(ae_title="LIGHTBOX", uid_root="2.25.1")
        peer = Peer("bench", "BENCHPACS", "127.0.0.1", server.server_address[1])
        one, every = [], []
        for _ in range(7):
            t0 = time.perf_counter()
            hits = scu.find_studies(me, peer, scu.StudyQuery(patient_id="B00042"))
            one.append(time.perf_counter() - t0)
        assert len(hits) == 5
        for _ in range(3):
            t0 = time.perf_counter()
            hits = scu.find_studies(me, peer, scu.StudyQuery(patient_name="BENCH*"), limit=N_STUDIES + 1)
            every.append(time.perf_counter() - t0)
        assert len(hits) == N_STUDIES
        yield ("C-FIND one patient (5 studies)", 1000 * statistics.median(one), "ms",
               f"median of 7, association included; best {1000 * min(one):.0f} ms")
        yield (f"C-FIND {N_STUDIES} studies", 1000 * statistics.median(every), "ms",
               f"median of 3; {1000 * statistics.median(every) / N_STUDIES:.2f} ms per match")
    finally:
        server.shutdown()

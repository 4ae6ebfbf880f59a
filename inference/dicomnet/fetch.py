"""Fetching studies into Lightbox: retrieval by C-MOVE or C-GET, and a patient's priors.

``retrieve`` makes sure something receives a C-MOVE: it starts the node for the retrieval, or, when a node
(the app's, ``lightbox node``) already listens on the port, lets that one receive and waits until the
store lists the instances. ``prior_candidates`` / ``fetch_priors``: when a study is opened, the other studies
of its patient (same PatientID) with the same kind of images on the configured PACS, newest first, that
this store does not hold yet.
"""
from __future__ import annotations

import logging
import time

from inference.dicomnet.classify import DICOM_MODALITIES

log = logging.getLogger("lightbox.dicom")


def retrieve(cfg, peer, study_uids: list[str], method: str | None = None, db=None, ctx=None,
             timeout: float = 300.0) -> list:
    """Fetch studies into the store by C-MOVE (this node receives: started for the retrieval unless one is
    already listening on the port) or C-GET. Returns one RetrieveOutcome per study; waits until they are read."""
    from inference.dicomnet.node import Node, NodeError
    from inference.dicomnet.receive import Receiver
    from inference.dicomnet.scu import get_study, move_study

    method = method or peer.retrieve
    outcomes = []
    if method == "get":
        rec = Receiver(db=db)
        try:
            for uid in study_uids:
                outcomes.append(get_study(cfg, peer, uid, rec, ctx))
            rec.wait_idle(timeout)
        finally:
            rec.close()
        return outcomes
    node = Node(cfg, db=db)
    try:
        node.start()
        own = True
    except NodeError:
        own = False  # the app's or `lightbox node`'s node is listening on the port and receives it
        log.info("retrieve: a node is already listening on %s:%d; it receives the studies", cfg.bind, cfg.port)
    try:
        for uid in study_uids:
            outcomes.append(move_study(cfg, peer, uid, ctx))
        if own:
            node.receiver.wait_idle(timeout)
        else:
            _wait_stored(db, study_uids, outcomes, timeout)
    finally:
        if own:
            node.stop()
    return outcomes


def _wait_stored(db, study_uids, outcomes, timeout: float) -> None:
    """Another process's node receives: wait until the store lists as many instances as were moved."""
    from app.store import Store

    want = {o.study_uid: o.completed for o in outcomes}
    st = Store(db)
    try:
        t_end = time.time() + timeout
        while time.time() < t_end:
            have = {u: st.conn.execute("SELECT COUNT(*) FROM dicom_instances WHERE study_uid = ?", (u,)).fetchone()[0]
                    for u in study_uids}
            if all(have[u] >= want.get(u, 0) for u in study_uids):
                return
            time.sleep(0.2)
    finally:
        st.close()


def prior_candidates(cfg, peer, store, study_id: int, ctx=None) -> list:
    """StudyHits on ``peer`` of the study's patient and modality that this store does not hold, newest first."""
    from inference.dicomnet.scu import StudyQuery, find_studies

    row = store.study(study_id)
    if not row or row.get("patient_id") is None:
        return []
    pat = store.patient(row["patient_id"]) or {}
    pid = (pat.get("external_id") or "").strip()
    if not pid:
        return []
    known = store.known_study_uids()
    hits: dict[str, object] = {}
    for mod in DICOM_MODALITIES.get(row["modality"], ()):
        for h in find_studies(cfg, peer, StudyQuery(patient_id=pid, modality=mod), ctx):
            if h.patient_id == pid and h.study_uid not in known:
                hits.setdefault(h.study_uid, h)
    return sorted(hits.values(), key=lambda h: (h.study_date, h.study_time), reverse=True)


def fetch_priors(cfg, store, study_id: int, db=None, ctx=None) -> list:
    """Retrieve up to ``cfg.priors_max`` priors of a study from the configured PACS (the first that has them);
    one RetrieveOutcome per study fetched."""
    from inference.dicomnet.scu import DicomNetError

    out = []
    want = cfg.priors_max
    for peer in cfg.pacs:
        if want <= 0:
            break
        try:
            hits = prior_candidates(cfg, peer, store, study_id, ctx)[:want]
        except DicomNetError as e:
            log.warning("priors of study #%d: %s", study_id, e)
            continue
        if hits:
            out += retrieve(cfg, peer, [h.study_uid for h in hits], db=db, ctx=ctx)
            want -= len(hits)
    return out

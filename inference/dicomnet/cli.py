"""``lightbox node | query | retrieve | received`` (no Qt).

    lightbox node [--ae-title T] [--port N] [--bind ADDR] [--allow AE[@HOST] ...] [--save] [--db PATH]
        run the DICOM node headless (a service): receive, read into the store, log; Ctrl+C / SIGTERM stops it
    lightbox query PACS [--name N] [--id ID] [--from DATE] [--to DATE] [--modality M] [--accession A] [--json]
        C-FIND at study level; PACS is a configured name or AE@host:port
    lightbox retrieve PACS STUDY_UID ... [--get] [--db PATH]
        C-MOVE (default, to this node: started for the retrieval unless one is already listening) or C-GET
    lightbox received [--unreadable] [--db PATH]
        what the node received, newest first (unreadable objects with the reason)

The node's settings live in ``<data folder>/dicom.json`` (the app's Settings ▸ DICOM node writes it).
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time

from inference.dicomnet.config import Caller, ConfigError, load, save

log = logging.getLogger("lightbox.dicom")


def _config(args):
    cfg = load()
    if getattr(args, "ae_title", None):
        cfg.ae_title = args.ae_title
    if getattr(args, "port", None) is not None:
        cfg.port = args.port
    if getattr(args, "bind", None):
        cfg.bind = args.bind
    for spec in getattr(args, "allow", None) or []:
        ae, _, host = spec.partition("@")
        cfg.callers.append(Caller(ae, host))
    return cfg.validated()


def node_main(argv: list[str] | None = None) -> int:
    from inference.dicomnet.node import Node, NodeError, attach_log_file

    p = argparse.ArgumentParser(prog="lightbox node", description="Run the DICOM node (Storage SCP) headless.")
    p.add_argument("--ae-title")
    p.add_argument("--port", type=int)
    p.add_argument("--bind", help="address to listen on (default from settings: 127.0.0.1)")
    p.add_argument("--allow", action="append", metavar="AE[@HOST]", help="an allowed calling AE title (repeatable)")
    p.add_argument("--save", action="store_true", help="save these options as the node's settings")
    p.add_argument("--db", help="database file (default: the app's)")
    args = p.parse_args(argv)
    try:
        cfg = _config(args)
        if args.save:
            print(f"settings saved to {save(cfg)}")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log.setLevel(logging.INFO)  # the node's lines go to stderr (and its log file)

    def ingested(sid, info):
        if sid is not None:
            print(f"study #{sid} ({info.get('modality')}) from {info.get('calling_ae') or 'disk'}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    node = Node(cfg, db=args.db, on_ingested=ingested)
    try:
        node.start()
    except NodeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"DICOM node {cfg.ae_title} listening on {cfg.bind}:{node.port} (log: {attach_log_file()})", flush=True)
    if not cfg.callers and not cfg.pacs:
        print("warning: no allowed callers and no PACS configured: every association will be refused "
              "(--allow AE[@HOST], or Settings ▸ DICOM node in the app)", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    node.receiver.wait_idle(30)
    final = node.state()
    node.stop()
    print(f"stopped; {final.summary()}", flush=True)
    return 0


def query_main(argv: list[str] | None = None) -> int:
    from inference.dicomnet.scu import DicomNetError, StudyQuery, find_studies

    p = argparse.ArgumentParser(prog="lightbox query", description="C-FIND studies on a PACS.")
    p.add_argument("pacs", help="a configured PACS name, or AE@host:port")
    p.add_argument("--name", default="", help="patient name (DOE, DOE^JOHN, do* …)")
    p.add_argument("--id", default="", help="patient ID")
    p.add_argument("--from", dest="date_from", default="", help="studies on or after YYYY-MM-DD")
    p.add_argument("--to", dest="date_to", default="", help="studies on or before YYYY-MM-DD")
    p.add_argument("--modality", default="", help="DICOM modality in the study (CR, DX, US, ECG, ES …)")
    p.add_argument("--accession", default="")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        cfg = load()
        peer = cfg.peer(args.pacs)
        t0 = time.perf_counter()
        hits = find_studies(cfg, peer, StudyQuery(args.name, args.id, args.date_from, args.date_to, args.modality,
                                                  args.accession))
    except (ConfigError, DicomNetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=2))
        return 0
    for h in hits:
        print(f"{h.study_date or '----------'}  {h.patient_name or '(no name)':<24} {h.patient_id:<16} "
              f"{'/'.join(h.modalities):<8} {h.accession:<16} {h.description[:30]:<30} {h.study_uid}")
    print(f"{len(hits)} studies on {peer.name} ({time.perf_counter() - t0:.2f} s)")
    return 0


def retrieve_main(argv: list[str] | None = None) -> int:
    from inference.dicomnet.fetch import retrieve
    from inference.dicomnet.scu import DicomNetError

    p = argparse.ArgumentParser(prog="lightbox retrieve", description="Fetch studies from a PACS into Lightbox.")
    p.add_argument("pacs")
    p.add_argument("study_uid", nargs="+")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--get", action="store_true", help="C-GET (the PACS answers on the same association)")
    g.add_argument("--move", action="store_true", help="C-MOVE to this node")
    p.add_argument("--db")
    args = p.parse_args(argv)
    try:
        cfg = load()
        peer = cfg.peer(args.pacs)
        method = "get" if args.get else "move" if args.move else None
        outs = retrieve(cfg, peer, args.study_uid, method, args.db)
    except (ConfigError, DicomNetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    bad = 0
    for o in outs:
        print(f"{o.study_uid}: {o.summary()}")
        bad += not o.ok
    return 1 if bad else 0


def received_main(argv: list[str] | None = None) -> int:
    from app.store import Store
    from inference.dicomnet.receive import describe

    p = argparse.ArgumentParser(prog="lightbox received", description="What the DICOM node received.")
    p.add_argument("--unreadable", action="store_true", help="only objects Lightbox could not read")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--db")
    args = p.parse_args(argv)
    st = Store(args.db)
    rows = st.received_instances("unreadable" if args.unreadable else None, args.limit)
    for r in rows:
        where = f"study #{r['study_id']}" if r["study_id"] else f"NOT READ: {r['problem']}"
        print(f"{r['received_at']}  {describe(r)}  -> {where}")
    print(f"{len(rows)} instance(s)")
    st.close()
    return 0

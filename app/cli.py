"""The ``lightbox`` command.

    lightbox [FILE ...] [--demo] [--db PATH]     start the workstation (optionally opening files)
    lightbox weights list | verify | install FILE [--model ID --unofficial] | export MODEL
    lightbox analyse FILE [--model ID] [--modality M] [--folder-as set|sequence] [--pdf OUT.pdf]
                                                         headless: read, run, store, report
    lightbox batch MODEL INPUT ... --out results.csv     a folder of studies to one CSV (each file read
                                                         as the model's modality)
    lightbox evaluate MODEL LABELS.csv [--out DIR]       validate a model on this site's labelled cases
    lightbox site-point adopt EVAL_DIR --sensitivity S --by NAME | list | retire MODEL --by NAME
                                                         a threshold chosen on this site's cases (inference/site_points.py)
    lightbox bench [--only ecg,pcg,...]                  timing and memory figures
    lightbox demo [--out DIR] [--dicom]                  write the synthetic demo studies (--dicom: as DICOM)
    lightbox node | query PACS | retrieve PACS UID | received   the DICOM node (inference/dicomnet/cli.py)
    lightbox ecg-rhythm-train DATA_DIR --out DIR          train the ECG rhythm model (PhysioNet/CinC 2017 layout)
    lightbox ecg-rhythm-eval ptbxl|holter PATH ...        the rhythm model on PTB-XL (ecg_id <= 500) / Holter records
    lightbox polyp-train DATA_DIR --out DIR               train the polyp segmenter (Kvasir-SEG + CVC-ClinicDB layout)

Sub-commands that do not show a window never import Qt.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# modality-specific commands: name -> "module:function" taking argv (the module owns its parser)
EXTRA_COMMANDS: dict[str, str] = {
    "pcg-train": "inference.pcg.train:main",
    "polyp-train": "inference.endo.polyp_train:main",
    "ecg-rhythm-train": "inference.ecg.rhythm_train:main",
    "ecg-rhythm-eval": "inference.ecg.rhythm_eval:main",
    "evaluate": "app.validation.cli:main",
    "site-point": "inference.site_points:main",
    "endo-export": "inference.endo.cli:main",
    "xray-demo-weights": "inference.xray.synthetic_weights:main",
    "xray-train": "inference.xray.pneumonia_train:main",
    "node": "inference.dicomnet.cli:node_main",
    "query": "inference.dicomnet.cli:query_main",
    "retrieve": "inference.dicomnet.cli:retrieve_main",
    "received": "inference.dicomnet.cli:received_main",
}


def _weights(args) -> int:
    from inference.registry import STATUS_LABEL, Registry, WeightsError

    reg = Registry()
    if args.action in ("list", "verify"):
        bad = 0
        for st in reg.states():
            print(f"{st.entry.id:<18} {STATUS_LABEL[st.status]:<14} {st.entry.framework:<6} {st.entry.file}")
            if args.action == "verify":
                print(f"    {st.message}")
                bad += st.status == "refused"
        print(f"weights folder: {reg.weights_dir}")
        return 1 if bad else 0
    if args.action == "install":
        if not args.file:
            print("usage: lightbox weights install FILE [--model ID --unofficial]", file=sys.stderr)
            return 2
        try:
            st = reg.install(args.file, model_id=args.model, unofficial=args.unofficial)
        except WeightsError as e:
            print(f"refused: {e}", file=sys.stderr)
            return 1
        print(st.message)
        return 0
    if args.action == "export":
        if not args.file:
            print("usage: lightbox weights export MODEL", file=sys.stderr)
            return 2
        from inference.export import export_onnx

        try:
            out = export_onnx(args.file, reg)
        except WeightsError as e:
            print(f"cannot export: {e}", file=sys.stderr)
            return 1
        print(f"wrote {out}")
        return 0
    return 2


def _analyse(args) -> int:
    from app.store import Store
    from inference.detect import open_study
    from inference.pipeline import analyse
    from inference.registry import Registry, WeightsError
    from inference.study import ReadError

    reg = Registry()
    store = Store(args.db)
    try:
        modality = args.modality
        if args.model:  # a model named: the file is read as that model's modality
            from inference.batch import resolve_model

            want, _ = resolve_model(reg, args.model)
            if modality is not None and modality != want:
                print(f"error: {args.model} analyses {want} studies, not {modality}", file=sys.stderr)
                return 2
            modality = want
        study = open_study(args.file, modality, **({"folder_as": args.folder_as} if args.folder_as else {}))
        result = analyse(study, args.model, reg)
    except (ReadError, WeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sid = store.save(study, [result])
    filed = store.file_proposed_findings(sid, result)
    for k, v in result.outputs.items():
        if not k.startswith("_"):  # "_" keys are machine payload (grids, curves), not readouts
            print(f"{k}: {v}")
    for p in result.outputs.get("_per_image") or []:  # a folder of stills read as a set: one line per image
        print(f"  {p.get('file', p['index'])}: " + ("polyp" if p["polyp"] else "no polyp")
              + f" (confidence {p['confidence']:.2f})" + (f" — {p['note']}" if p.get("note") else ""))
    print(result.provenance() + (f"  [{result.stamp}]" if result.stamp else ""))
    if filed:
        print(f"{filed} proposed finding(s) filed for review")
    if args.pdf:
        from app.patients.export import export_pdf

        print("report:", export_pdf(study, store, sid, args.pdf, anonymise=args.anonymise))
    return 0


def _modality_keys() -> list[str]:
    from inference.modalities import KEYS

    return list(KEYS)


def _demo(args) -> int:
    from inference.demo import ensure_demo_studies

    if args.dicom:  # the same studies as a modality would send them (to push into a PACS or the node)
        from inference.dicomnet.demo import make_all

        for files in make_all(args.out or "lightbox-demo-dicom").values():
            for p in files:
                print(p)
        return 0
    for p in ensure_demo_studies(args.out):
        print(p)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=os.environ.get("LIGHTBOX_LOG", "WARNING"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in EXTRA_COMMANDS:
        mod, fn = EXTRA_COMMANDS[argv[0]].split(":")
        return int(getattr(importlib.import_module(mod), fn)(argv[1:]) or 0)
    if argv and argv[0] == "bench":
        from inference.bench import main as bench_main

        return bench_main(argv[1:])
    if argv and argv[0] == "batch":
        from inference.batch import main as batch_main

        return batch_main(argv[1:])
    if argv and argv[0] in ("weights", "analyse", "demo"):
        p = argparse.ArgumentParser(prog="lightbox")
        sub = p.add_subparsers(dest="cmd", required=True)
        w = sub.add_parser("weights", help="list, verify, install or export model weights")
        w.add_argument("action", choices=["list", "verify", "install", "export"])
        w.add_argument("file", nargs="?", help="weights file (install) or model id (export)")
        w.add_argument("--model", help="model id the file is for (needed for non-official files)")
        w.add_argument("--unofficial", action="store_true",
                       help="install a non-official file; its results are stamped NOT A CLINICAL RESULT")
        a = sub.add_parser("analyse", help="read a study, run a model, store the result, optional PDF")
        a.add_argument("file")
        a.add_argument("--model")
        a.add_argument("--modality", choices=_modality_keys(),
                       help="read the file as this modality (default: detected from its content)")
        a.add_argument("--folder-as", choices=["auto", "set", "sequence"],
                       help="endoscopy: a folder of images as a set of stills (one verdict per image) or as "
                            "the frames of one video (default: decided by its content)")
        a.add_argument("--pdf")
        a.add_argument("--anonymise", action="store_true",
                       help="the PDF without name, ID, birth date or accession (the study is named by its code)")
        a.add_argument("--db")
        d = sub.add_parser("demo", help="write the synthetic demo studies")
        d.add_argument("--out")
        d.add_argument("--dicom", action="store_true", help="write them as DICOM (CR, ECG waveform, US, VL endoscopic)")
        args = p.parse_args(argv)
        return {"weights": _weights, "analyse": _analyse, "demo": _demo}[args.cmd](args)

    p = argparse.ArgumentParser(prog="lightbox", description="Lightbox — offline clinical AI reading workstation",
                                epilog="Other commands: weights, analyse, batch, bench, demo, "
                                       + ", ".join(EXTRA_COMMANDS))
    p.add_argument("files", nargs="*", help="studies to open")
    p.add_argument("--demo", action="store_true", help="open the bundled synthetic demo studies")
    p.add_argument("--db", help="database file (default: $LIGHTBOX_DB or the user data folder)")
    p.add_argument("--quit-after", type=float, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    from app.main import run_gui

    return run_gui(args.files, db=args.db, demo=args.demo, quit_after=args.quit_after)


if __name__ == "__main__":
    sys.exit(main())

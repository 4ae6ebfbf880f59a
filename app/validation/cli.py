"""``lightbox evaluate MODEL LABELS.csv [--out DIR]``: validate a model on the site's own labelled cases.

Runs the model as the app and ``lightbox batch`` do (resumable: run it again after a stop and it carries
on), prints the metrics, writes evaluation.json, evaluation.pdf, cases.csv and results.csv into the
output folder and stores the run as the model's local validation (the app's provenance lines then say
"validated here on N cases: …"). No Qt.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inference import evaluate as E


def run_validation(model_id: str, labels: str, out_dir: str | None, db_path, split: str | None, ctx=None,
                   registry=None, store: bool = True, n_boot: int = 2000) -> dict:
    """Evaluate, write the PDF, store the record (the app's Validate dialog runs exactly this on a worker,
    with its own database connection)."""
    from app.store import Store
    from app.validation import records, report

    st = Store(db_path) if store else None
    try:
        ev = E.evaluate(model_id, labels, out_dir, registry=registry, ctx=ctx, store=st, split=split or None,
                        n_boot=n_boot)
        pdf = Path(ev["out_dir"]) / E.PDF_NAME
        report.build(ev, pdf)
        ev["pdf"] = str(pdf)
        if st is not None:
            ev["validation_id"] = records.save(st, ev, pdf=str(pdf))
        return ev
    finally:
        if st is not None:
            st.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightbox evaluate", description=__doc__.split("\n\n")[0],
                                epilog="Label files: file,label (classifiers) | file,ef (EF, %) | file,mask "
                                       "(segmentation) | EchoNet FileList.csv. Paths are relative to the CSV.")
    p.add_argument("model", help="model id (see 'lightbox weights list')")
    p.add_argument("labels", help="LABELS.csv")
    p.add_argument("--out", help="output folder (default: <labels>_<model>_evaluation beside the CSV)")
    p.add_argument("--split", help="only rows whose Split column is this (e.g. TEST in a FileList.csv)")
    p.add_argument("--db", help="database to store results and the validation in (default: the app's)")
    p.add_argument("--no-store", action="store_true", help="write the files only; store nothing")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap resamples for the AUROC interval")
    p.add_argument("--a4c", action="store_true",
                   help="echo: every loop is an apical 4-chamber view (e.g. EchoNet-Dynamic's own videos); "
                        "recorded in each result as the operator's confirmation (LIGHTBOX_ECHO_VIEW=A4C)")
    args = p.parse_args(argv)
    if args.a4c:
        import os

        os.environ["LIGHTBOX_ECHO_VIEW"] = "A4C"

    from inference.pipeline import JobContext
    from inference.registry import WeightsError

    bar = None

    def progress(f: float, text: str) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=1000, file=sys.stderr, dynamic_ncols=True,
                       bar_format=args.model + " {percentage:3.0f}%|{bar}| {desc}")
        bar.n = int(1000 * f)
        bar.set_description_str(text, refresh=True)

    try:
        ev = run_validation(args.model, args.labels, args.out, args.db, args.split, JobContext(progress=progress),
                            store=not args.no_store, n_boot=args.boot)
    except (E.LabelError, WeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    for line in E.summary_lines(ev):
        print(line)
    print(f"wrote {ev['out_dir']}/{{{E.JSON_NAME}, {E.PDF_NAME}, {E.CASES_NAME}, {E.TABLE_NAME}}}")
    if ev.get("validation_id"):
        print(f"stored as {args.model}'s local validation #{ev['validation_id']}: "
              f"validated here on {ev['n_cases']} cases: {ev['headline']}")
    return 0

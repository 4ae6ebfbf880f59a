"""``lightbox endo-export VIDEO --out BUNDLE.zip``: analyse (or reuse the stored analysis) and write
the export bundle (+ ``--pdf``) without a window. Qt is never imported."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightbox endo-export",
                                description="Write the endoscopy export bundle for a video (zip: metadata.json, "
                                            "summary.json, findings.csv, findings.json, report.txt)")
    p.add_argument("video")
    p.add_argument("--out", required=True, help="bundle .zip to write")
    p.add_argument("--model", default="endo-quality", help="model to run when no stored result exists")
    p.add_argument("--pdf", help="also write the PDF report here")
    p.add_argument("--db", help="database (default: the user's Lightbox database)")
    p.add_argument("--no-frames", action="store_true", help="leave the key-frame JPEGs out of the zip")
    args = p.parse_args(argv)

    from app.store import Store  # the store is Qt-free
    from inference.detect import open_study
    from inference.pipeline import analyse
    from inference.registry import Registry, WeightsError
    from inference.study import ReadError

    from inference.endo.export import export_from_store

    store, reg = Store(args.db), Registry()
    try:
        study = open_study(args.video, "endo")
        sid = store.add_study(study)
        st = reg.require(args.model)
        if store.find_result(study.sha256, "endo", args.model, st.sha256 or "") is None:
            store.add_result(sid, analyse(study, args.model, reg))
        out = export_from_store(store, study, sid, args.out, with_frames=not args.no_frames)
    except (ReadError, WeightsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"bundle: {out}")
    if args.pdf:
        from app.report import build_report

        print("report:", build_report(study, store, sid, args.pdf))
    return 0

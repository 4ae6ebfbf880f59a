"""``lightbox batch MODEL INPUT... --out results.csv|parquet``: archive-scale runs with the workstation's code.

- Walks folders and glob patterns, keeps the files the model's modality reads, and runs the same
  pipeline the app runs. Each file is read as the model's modality (the model says what the files are:
  a folder of colonoscopy JPEGs given to the polyp model is read as endoscopy stills, whatever the
  content detection would guess). An endoscopy folder of images is one study when it holds the frames
  of one video, or one study per image when it is a set of stills (``--folder-as``; by default its
  content decides: scene cuts between most consecutive images make it a set). One row per study: path, sha256, model id, weights sha256, outputs, device,
  seconds, error. A bad file is a row with its message, never a stop.
- Resumable: every finished row is appended (and flushed) to ``<out>.journal.jsonl`` as it lands; a
  restarted run skips studies already done, keyed by (file sha256, model id, weights sha256). The final
  CSV/Parquet is rewritten atomically from the journal at the end of each run.
- Results also land in the SQLite store the app reads (one transaction per study), unless ``--no-store``.
- Engines: ``local`` (a process pool sized to the cores; the model is loaded once per worker and the next
  file is read while the model runs) or ``ray`` (one model actor per worker on an existing Ray cluster,
  GPU actors where the cluster has GPUs). The engine changes where work runs, never what it computes.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import glob
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from inference.atomic import atomic_path
from inference.detect import open_study, reader_module
from inference.pipeline import JobContext, pipeline_module
from inference.registry import Registry, WeightsError
from inference.results import NOT_CLINICAL, jsonable
from inference.study import ReadError, sha256_file

FIXED_COLUMNS = ["path", "sha256", "modality", "model_id", "weights_sha256", "clinical", "stamp", "runtime",
                 "device", "seconds", "error", "outputs"]


# -- inputs ---------------------------------------------------------------------------------------
def _endo_folder_is_sequence(folder: Path, folder_as: str) -> bool:
    if folder_as in ("sequence", "set"):
        return folder_as == "sequence"
    from inference.endo.reader import _imread, frame_files
    from inference.endo.stills import folder_is_set

    return not folder_is_set(frame_files(folder), _imread)[0]


def collect_inputs(inputs: Iterable[str], modality: str, folder_as: str = "auto") -> list[Path]:
    """Files under the given folders / globs / paths that the modality's reader takes, sorted, unique.
    Endoscopy: a folder of images that is one video's frames is one input (a sequence); a set of stills
    gives one input per image."""
    exts = set(reader_module(modality).EXTENSIONS)
    skip_companions = {".dat", ".xyz", ".atr"}  # WFDB signal files are read through their .hea
    out: list[Path] = []
    for item in inputs:
        matches = [Path(m) for m in glob.glob(item, recursive=True)] if glob.has_magic(item) else [Path(item)]
        for m in matches:
            if m.is_dir():
                if modality == "endo":
                    from inference.endo.reader import frame_files

                    if frame_files(m) and _endo_folder_is_sequence(m, folder_as):
                        out.append(m)
                        continue
                out += [p for p in m.rglob("*") if p.is_file() and p.suffix.lower() in exts
                        and not (p.suffix.lower() in skip_companions and p.with_suffix(".hea").exists())]
            elif m.exists():
                out.append(m)
            else:
                out.append(m)  # becomes an error row ("file not found")
    seen, uniq = set(), []
    for p in sorted(out, key=lambda p: str(p)):
        k = str(p.resolve()) if p.exists() else str(p)
        if k not in seen:
            seen.add(k)
            uniq.append(p)
    return uniq


def file_key(path: Path) -> str:
    """The study's sha256 as its reader computes it (a folder of endoscopy frames: the reader's folder hash)."""
    try:
        if path.is_dir():
            from inference.endo.reader import folder_sha256

            return folder_sha256(path)
        return sha256_file(path)
    except OSError:
        return ""


def resolve_model(registry: Registry, model_id: str) -> tuple[str, str]:
    """(modality, weights sha256) of a model: a manifest model must be usable; a model-free analysis
    (listed in a pipeline's MODELS but not in the manifest) has no weights."""
    if model_id in registry.entries:
        st = registry.require(model_id)  # refuse early: not installed / tampered
        return st.entry.modality, st.sha256 or ""
    from inference.study import MODALITIES
    from inference.pipeline import models_for

    for m in MODALITIES:
        if model_id in models_for(m):
            return m, ""
    known = sorted(set(registry.entries) | {x for m in MODALITIES for x in models_for(m)})
    raise WeightsError(f"unknown model {model_id!r}; known: {', '.join(known)}")


# -- one worker's job -------------------------------------------------------------------------------
class Runner:
    """Runs one model over paths in one process: the registry/model state is loaded once and reused."""

    def __init__(self, model_id: str, manifest: str | None = None, weights: str | None = None,
                 registry: Registry | None = None):
        self.registry = registry or Registry(manifest, weights)
        self.modality, self.weights_sha = resolve_model(self.registry, model_id)
        self.model_id = model_id
        self.mod = pipeline_module(self.modality)

    def row(self, path: Path, sha: str, error: str | None = None) -> dict[str, Any]:
        return {"path": str(path), "sha256": sha, "modality": self.modality, "model_id": self.model_id,
                "weights_sha256": self.weights_sha, "clinical": None, "runtime": "", "device": "", "seconds": None,
                "error": error or "", "outputs": {}}

    def run_paths(self, items: list[tuple[str, str]], batch: int = 16) -> list[dict[str, Any]]:
        """items: (path, sha256). Files are read on a thread ahead of the model: while the model runs on
        one group of studies the next group is being read. Pipelines with ``analyse_many`` get a group
        per call (batched inference); the others one study at a time."""
        many = getattr(self.mod, "analyse_many", None)
        group = batch if many else 1
        rows: list[dict[str, Any]] = []
        with cf.ThreadPoolExecutor(1) as reader:
            reads = [reader.submit(self._read, Path(p)) for p, _ in items]
            for g in range(0, len(items), group):
                got = [(Path(items[i][0]), items[i][1], *reads[i].result())
                       for i in range(g, min(g + group, len(items)))]
                if many:
                    studies = [s for _, _, s, _ in got if s is not None]
                    try:
                        results = iter(many(studies, self.model_id, self.registry, JobContext()))
                    except Exception as e:  # the whole group failed: every study gets the message
                        results = iter([e] * len(studies))
                    for path, sha, study, err in got:
                        rows.append(self._row(path, sha, study, err, next(results) if study is not None else None))
                else:
                    for path, sha, study, err in got:
                        rows.append(self._row(path, sha, study, err, self._run_one(study) if study is not None else None))
        return rows

    def _run_one(self, study):
        try:
            return self.mod.analyse(study, self.model_id, self.registry, JobContext())
        except Exception as e:
            return e

    def _read(self, path: Path):
        try:
            if not path.exists():
                raise ReadError(path, "file not found")
            # the model names the modality: read every file as that (a folder given here is one video's frames)
            opts = {"folder_as": "sequence"} if path.is_dir() and self.modality == "endo" else {}
            return open_study(path, self.modality, **opts), None
        except ReadError as e:
            return None, str(e)
        except Exception as e:  # pragma: no cover - readers raise ReadError
            return None, f"{path.name}: {type(e).__name__}: {e}"

    def _row(self, path: Path, sha: str, study, err: str | None, r) -> dict[str, Any]:
        row = self.row(path, sha, error=err)
        if study is None:
            return row
        if isinstance(r, (ReadError, WeightsError)):
            row["error"] = str(r)
            return row
        if isinstance(r, Exception):
            row["error"] = f"{path.name}: {type(r).__name__}: {r}"
            return row
        row["sha256"] = sha or study.sha256  # the reader hashed the file too: callers may pass ""
        row.update(weights_sha256=r.weights_sha256, clinical=bool(r.clinical), runtime=r.runtime,
                   device=r.device, seconds=round(float(r.seconds), 4), outputs=jsonable(r.outputs),
                   _study={"name": study.name, "metadata": jsonable(study.metadata), "modality": study.modality},
                   _created=r.created, _notes=list(r.notes))
        return row


_WORKER: Runner | None = None


def _init_worker(model_id: str, manifest: str | None, weights: str | None, threads: int) -> None:
    global _WORKER
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    _WORKER = Runner(model_id, manifest, weights)


def _work(items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    assert _WORKER is not None
    return _WORKER.run_paths(items)


# -- engines ----------------------------------------------------------------------------------------
def _chunks(seq: list, n: int) -> Iterator[list]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def run_local(model_id: str, items: list[tuple[str, str]], workers: int, chunk: int,
              manifest: str | None = None, weights: str | None = None) -> Iterator[list[dict[str, Any]]]:
    if workers <= 1:
        runner = Runner(model_id, manifest, weights)
        for c in _chunks(items, chunk):
            yield runner.run_paths(c)
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # a clean interpreter per worker: no inherited framework state
    threads = max(1, (os.cpu_count() or 1) // workers)
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                initargs=(model_id, manifest, weights, threads)) as pool:
        pending = set()
        it = iter(_chunks(items, chunk))
        for c in it:
            pending.add(pool.submit(_work, c))
            if len(pending) >= workers * 2:
                break
        while pending:
            done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for f in done:
                yield f.result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.add(pool.submit(_work, nxt))


def run_ray(model_id: str, items: list[tuple[str, str]], workers: int, chunk: int, address: str | None,
            manifest: str | None = None, weights: str | None = None) -> Iterator[list[dict[str, Any]]]:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise SystemExit("the ray engine needs Ray: pip install 'lightbox[batch]' (or pip install ray)")
    started_here = False
    if not ray.is_initialized():
        if address in (None, "", "local"):
            ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}})
        else:
            ray.init(address=address, log_to_driver=False)
        started_here = True
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        per_actor_gpu = 1 if gpus >= workers and gpus > 0 else (gpus / workers if gpus else 0)
        Actor = ray.remote(num_cpus=1, num_gpus=per_actor_gpu)(Runner)
        actors = [Actor.remote(model_id, manifest, weights) for _ in range(workers)]
        pool = ActorPool(actors)
        yield from pool.map_unordered(lambda a, c: a.run_paths.remote(c), list(_chunks(items, chunk)))
    finally:
        if started_here:
            ray.shutdown()


# -- journal and outputs ------------------------------------------------------------------------------
def row_key(row: dict[str, Any]) -> tuple[str, str, str]:
    return (row["sha256"], row["model_id"], row["weights_sha256"])


def read_journal(path: Path) -> list[dict[str, Any]]:
    rows = []
    if not path.exists():
        return rows
    with open(path, "rb") as f:
        data = f.read()
    good_end = data.rfind(b"\n") + 1  # a kill can leave half a line at the end: drop it
    if good_end != len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    for line in data[:good_end].splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def write_table(rows: list[dict[str, Any]], out: Path) -> None:
    scalar_keys: list[str] = []
    for r in rows:
        for k, v in (r.get("outputs") or {}).items():
            if isinstance(v, (int, float, str, bool)) and k not in scalar_keys and k not in FIXED_COLUMNS:
                scalar_keys.append(k)
    table = []
    for r in rows:
        d = {k: r.get(k) for k in FIXED_COLUMNS}
        d["stamp"] = NOT_CLINICAL if r.get("clinical") is False else ""
        d["outputs"] = json.dumps(r.get("outputs") or {}, sort_keys=True)
        for k in scalar_keys:
            v = (r.get("outputs") or {}).get(k)
            d[k] = v if isinstance(v, (int, float, str, bool)) else None
        table.append(d)
    cols = FIXED_COLUMNS + scalar_keys
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(table), tmp)
        else:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                w.writerows(table)


@dataclass
class Summary:
    modality: str
    total: int
    skipped: int
    done: int
    errors: int
    seconds: float

    @property
    def per_minute(self) -> float:
        return 60.0 * self.done / self.seconds if self.seconds > 0 else 0.0


def run_batch(model_id: str, inputs: list[str], out: str | Path, engine: str = "local", workers: int | None = None,
              chunk: int = 16, address: str | None = None, db: str | None = None, store: bool = True,
              progress: bool = True, manifest: str | None = None, weights: str | None = None,
              folder_as: str = "auto") -> Summary:
    out = Path(out)
    modality, weights_sha = resolve_model(Registry(manifest, weights), model_id)
    workers = workers or max(1, min(os.cpu_count() or 1, 8))
    paths = collect_inputs(inputs, modality, folder_as)
    journal = out.with_name(out.name + ".journal.jsonl")
    old = read_journal(journal)
    done_keys = {row_key(r) for r in old}
    t0 = time.perf_counter()
    keys: dict[str, str] = {}  # path -> file sha256
    todo: list[tuple[str, str]] = []
    queued: set[str] = set()
    for p in paths:
        sha = keys[str(p)] = file_key(p)
        if (sha, model_id, weights_sha) not in done_keys and sha not in queued:
            queued.add(sha)  # identical files are one study: run once
            todo.append((str(p), sha))
    skipped = len(paths) - len(todo)  # already done, or the same content as another input

    st = None
    if store:
        from app.store import Store  # Qt-free module of the app: the same store the workstation reads

        st = Store(db)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), initial=skipped, unit="study", desc=model_id, file=sys.stderr,
                   dynamic_ncols=True, smoothing=0.1)
    if engine == "ray":
        stream = run_ray(model_id, todo, workers, chunk, address, manifest, weights)
    else:
        stream = run_local(model_id, todo, workers, chunk, manifest, weights)
    done = errors = 0
    with open(journal, "a", encoding="utf-8") as jf:
        for rows in stream:
            for row in rows:
                extra = {k: row.pop(k) for k in [k for k in row if k.startswith("_")]}
                if st is not None and not row["error"]:
                    _store_row(st, row, extra)
                jf.write(json.dumps(row, sort_keys=True) + "\n")
                done += 1
                errors += bool(row["error"])
            jf.flush()
            os.fsync(jf.fileno())
            if bar:
                bar.update(len(rows))
    if bar:
        bar.close()
    # one row per input path: the latest journal row for its (sha256, model, weights)
    latest = {row_key(r): r for r in read_journal(journal)}
    final = []
    for p in paths:
        r = latest.get((keys[str(p)], model_id, weights_sha))
        if r is not None:
            final.append(dict(r, path=str(p)))
    write_table(final, out)
    summary = Summary(modality, len(paths), skipped, done, errors, time.perf_counter() - t0)
    if st is not None:
        st.close()
    return summary


def row_records(row: dict[str, Any], extra: dict[str, Any]):
    """The (Study, Result) a successful row stands for (pixels/samples dropped), for the store."""
    from inference.results import Result
    from inference.study import Study

    s = extra.get("_study", {})
    study = Study(s.get("modality", row["modality"]), row["path"], row["sha256"],
                  s.get("name", Path(row["path"]).name), metadata=s.get("metadata", {}))
    r = Result(row["model_id"], row["weights_sha256"], row["runtime"], row["device"], row["seconds"] or 0.0,
               row["outputs"], bool(row["clinical"]), created=extra.get("_created", ""),
               notes=extra.get("_notes", []))
    return study, r


def _store_row(st, row: dict[str, Any], extra: dict[str, Any]) -> None:
    study, r = row_records(row, extra)
    if st.find_result(study.sha256, study.modality, r.model_id, r.weights_sha256) is None:
        st.save(study, [r])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightbox batch", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="model id (see 'lightbox weights list')")
    p.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
    p.add_argument("--out", required=True, help="results.csv or results.parquet")
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--workers", type=int, help="processes (local) or actors (ray); default: the cores")
    p.add_argument("--chunk", type=int, default=16, help="studies per task")
    p.add_argument("--address", help="Ray cluster: auto | ray://host:port (default: start a local one)")
    p.add_argument("--db", help="store results in this database (default: the app's)")
    p.add_argument("--no-store", action="store_true", help="do not write results to the app's database")
    p.add_argument("--modality", help="the modality the files are (must be the model's: every file is read as "
                                      "the model's modality anyway)")
    p.add_argument("--folder-as", choices=["auto", "set", "sequence"], default="auto",
                   help="endoscopy: a folder of images as a set of stills (one row per image) or as one video's "
                        "frames (one row); default: decided by its content")
    p.add_argument("--send", metavar="PACS", help="then send each DICOM study's PDF report, AI results (SR) and "
                                                  "overlays to this PACS (a configured name or AE@host:port)")
    args = p.parse_args(argv)
    if args.send and args.no_store:
        print("error: --send sends what the store holds; it cannot be used with --no-store", file=sys.stderr)
        return 2
    try:
        if args.modality:
            want, _ = resolve_model(Registry(), args.model)
            if args.modality != want:
                print(f"error: {args.model} analyses {want} studies, not {args.modality}", file=sys.stderr)
                return 2
        s = run_batch(args.model, args.inputs, args.out, engine=args.engine, workers=args.workers,
                      chunk=args.chunk, address=args.address, db=args.db, store=not args.no_store,
                      folder_as=args.folder_as)
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if s.total == 0:
        exts = " ".join(reader_module(s.modality).EXTENSIONS)
        print(f"warning: no {s.modality} files ({exts}) in {' '.join(args.inputs)}; wrote an empty table",
              file=sys.stderr)
    print(f"{s.total} studies: {s.done} run now, {s.skipped} already done, {s.errors} errors; "
          f"{s.seconds:.1f} s ({s.per_minute:.0f} studies/min) -> {args.out}")
    if args.send:
        from inference.dicomnet.sendback import send_inputs

        return send_inputs(collect_inputs(args.inputs, s.modality), s.modality, args.send, args.db)
    return 0

"""Polyp data sets for ``lightbox polyp-train``: scanning, decoding, de-duplication, splitting, caching.

Layout read (``DATA_DIR`` = the ``datasets/`` folder of ``ViniciusSimm/Colo-Retal-Induscon2023`` at
commit c5846892339ad5295f05c4dbec123f7b6bbbf3e6, or any folder with the same sub-folders):

- ``Kvasir-SEG/{images,masks}/<id>.jpg``: 1000 polyp images with masks at original sizes (Jha et al.,
  MMM 2020). No patient ids are published: split by image after grouping near-duplicates (cosine
  similarity of ImageNet EfficientNet-Lite0 embeddings, :func:`near_duplicate_groups`; the embedding
  itself is computed by :mod:`inference.endo.polyp_views`), so that two views of one polyp never fall
  on both sides of a split.
- ``CVC-ClinicDB/{images,masks}/<n>.tif``: 612 frames, 384x288 (Bernal et al., CMIG 2015). In that
  snapshot the two folders hold EACH OTHER's files: ``images/<n>.tif`` is the 1-channel mask and
  ``masks/<n>.tif`` the RGB frame, whose TIFF header says 1 colour channel + 2 "extra samples"
  (photometric = min-is-black with 3 samples per pixel): readers that trust it return only the red
  plane. :func:`read_tiff` reads the raw strips and keeps all 3 samples; :func:`load_pair` decides which
  file is the frame by its content (3 samples, many grey levels), not by the folder name. Frames
  1-612 come from 29 video sequences (table in the data set's README, :data:`CVC_SEQUENCES`) of 25
  examinations; which sequences share an examination is not published, so :func:`cvc_video_groups`
  merges adjacent sequences that look like one examination (same endoscope image mask and colour
  rendition). A merged group is never split.
- ``Children_NoPolip/{images,masks}/<n>.jpg``: 1000 close-up 256x256 crops of polyp-free mucosa with
  all-zero masks. Used as negatives (frames without a polyp), split in blocks of 50 consecutive
  numbers so that neighbouring crops stay together, blocks joined when they hold near-duplicates (the
  folder holds 24 byte-identical-looking pairs far apart in numbering, e.g. 154 and 756).
- Not used: ``Kvasir-recortado`` (960 of the Kvasir-SEG images, same ids, cropped and resized to
  256x256: duplicates) and ``sessile-main-Kvasir-SEG`` (196 of the Kvasir-SEG images, same ids: the
  Kvasir-Sessile subset). Using them would put copies of test images into training.
"""
from __future__ import annotations

import hashlib
import json
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

# frame-number ranges of the 29 CVC-ClinicDB sequences (from the data set's README)
CVC_SEQUENCES = [(1, 25), (26, 50), (51, 67), (68, 78), (79, 103), (104, 126), (127, 151), (152, 177),
                 (178, 199), (200, 205), (206, 227), (228, 252), (253, 277), (278, 297), (298, 317),
                 (318, 342), (343, 363), (364, 383), (384, 408), (409, 428), (429, 447), (448, 466),
                 (467, 478), (479, 503), (504, 528), (529, 546), (547, 571), (572, 591), (592, 612)]
SOURCES = ("kvasir", "cvc", "normal")
NEG_BLOCK = 50
UNUSED = {"Kvasir-recortado": "duplicates of Kvasir-SEG images (same ids, cropped and resized to 256 px)",
          "sessile-main-Kvasir-SEG": "a subset of Kvasir-SEG (same ids: the sessile polyps)"}


class PolypDataError(Exception):
    pass


@dataclass
class Item:
    source: str      # kvasir | cvc | normal
    id: str
    image: Path
    mask: Path | None
    group: str       # split unit: a CVC sequence, a Kvasir near-duplicate group, a block of negatives


def cvc_sequence(frame: int) -> int:
    for k, (a, b) in enumerate(CVC_SEQUENCES, 1):
        if a <= frame <= b:
            return k
    raise PolypDataError(f"CVC-ClinicDB frame {frame} is outside the README's sequence table (1-612)")


# -- TIFF ------------------------------------------------------------------------------------------
_TYPES = {1: ("B", 1), 3: ("H", 2), 4: ("I", 4), 16: ("Q", 8)}


def read_tiff(path: str | Path) -> np.ndarray:
    """Uncompressed, chunky, 8-bit baseline TIFF -> uint8 [H, W] or [H, W, samples], by its strips.

    Trusts SamplesPerPixel (tag 277) and the strip byte counts, not the photometric interpretation:
    CVC-ClinicDB's frames declare min-is-black (1 colour channel) with 3 samples per pixel."""
    b = Path(path).read_bytes()
    if b[:2] not in (b"II", b"MM"):
        raise PolypDataError(f"{Path(path).name}: not a TIFF file")
    e = "<" if b[:2] == b"II" else ">"
    (magic, off) = struct.unpack(e + "HI", b[2:8])
    if magic != 42:
        raise PolypDataError(f"{Path(path).name}: not a classic TIFF (magic {magic})")
    (n,) = struct.unpack(e + "H", b[off:off + 2])
    tags: dict[int, list[int]] = {}
    for k in range(n):
        tag, typ, cnt, val = struct.unpack(e + "HHI4s", b[off + 2 + 12 * k: off + 14 + 12 * k])
        if typ not in _TYPES:
            continue
        fmt, size = _TYPES[typ]
        raw = val if size * cnt <= 4 else b[struct.unpack(e + "I", val)[0]:][:size * cnt]
        tags[tag] = list(struct.unpack(e + fmt * cnt, raw[:size * cnt]))
    w, h = tags[256][0], tags[257][0]
    spp = tags.get(277, [1])[0]
    bits = tags.get(258, [8])
    if tags.get(259, [1])[0] != 1 or any(x != 8 for x in bits) or tags.get(284, [1])[0] != 1:
        raise PolypDataError(f"{Path(path).name}: only uncompressed chunky 8-bit TIFF is read here")
    data = b"".join(b[o:o + c] for o, c in zip(tags[273], tags[279]))
    need = w * h * spp
    if len(data) < need:
        raise PolypDataError(f"{Path(path).name}: {len(data)} bytes of pixels, {need} expected")
    a = np.frombuffer(data[:need], np.uint8).reshape(h, w, spp)
    return a[:, :, 0].copy() if spp == 1 else a.copy()


def _read_any(path: Path) -> np.ndarray:
    """RGB uint8 [H,W,3] or grey [H,W]."""
    import cv2

    if path.suffix.lower() in (".tif", ".tiff"):
        a = read_tiff(path)
        return a[:, :, :3] if a.ndim == 3 else a
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if a is None:
        raise PolypDataError(f"{path.name}: cannot be decoded")
    if a.ndim == 3:
        a = cv2.cvtColor(a[:, :, :3], cv2.COLOR_BGR2RGB)
    return a


def _is_mask(a: np.ndarray) -> bool:
    """A mask: one channel (or three equal ones) and nearly all pixels near 0 or 255."""
    g = a if a.ndim == 2 else a[:, :, 0]
    if a.ndim == 3 and (np.abs(a[:, :, 0].astype(int) - a[:, :, 1]).mean() > 2):
        return False
    return float(((g < 40) | (g > 215)).mean()) > 0.97


def load_pair(item: Item) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 frame, bool mask). For CVC the two files are told apart by content."""
    img = _read_any(item.image)
    if item.mask is None:
        m = np.zeros(img.shape[:2], bool)
    else:
        msk = _read_any(item.mask)
        if _is_mask(img) and not _is_mask(msk):
            img, msk = msk, img
        m = (msk if msk.ndim == 2 else msk.max(axis=2)) > 127
    if img.ndim == 2:
        raise PolypDataError(f"{item.image.name}: the frame has a single channel (is it a mask?)")
    if img.shape[:2] != m.shape:
        raise PolypDataError(f"{item.image.name}: frame {img.shape[:2]} and mask {m.shape} differ in size")
    return img, m


# -- scanning --------------------------------------------------------------------------------------
def _find(root: Path, name: str) -> Path | None:
    for c in (root / name / name, root / name):
        if (c / "images").is_dir():
            return c
    return None


def scan(data_dir: str | Path) -> tuple[list[Item], list[str]]:
    """All usable items under DATA_DIR and notes on what was found / left out."""
    root = Path(data_dir)
    if not root.is_dir():
        raise PolypDataError(f"{root}: no such folder")
    items: list[Item] = []
    notes: list[str] = []
    kv = _find(root, "Kvasir-SEG")
    if kv:
        for p in sorted((kv / "images").glob("*.jpg")):
            m = kv / "masks" / p.name
            if m.exists():
                items.append(Item("kvasir", p.stem, p, m, "kv:" + p.stem))
    cvc = _find(root, "CVC-ClinicDB")
    if cvc:
        for p in sorted((cvc / "images").glob("*.tif"), key=lambda q: int(q.stem) if q.stem.isdigit() else 0):
            if not p.stem.isdigit():
                continue
            m = cvc / "masks" / p.name
            if m.exists():
                items.append(Item("cvc", p.stem, p, m, f"cvc:seq{cvc_sequence(int(p.stem)):02d}"))
    neg = _find(root, "Children_NoPolip")
    if neg:
        for p in sorted((neg / "images").glob("*.jpg"), key=lambda q: int(q.stem) if q.stem.isdigit() else 0):
            if p.stem.isdigit():
                items.append(Item("normal", p.stem, p, None, f"neg:{(int(p.stem) - 1) // NEG_BLOCK:02d}"))
    for name, why in UNUSED.items():
        if _find(root, name):
            notes.append(f"{name}: not used ({why})")
    if not items:
        raise PolypDataError(f"{root}: no Kvasir-SEG, CVC-ClinicDB or Children_NoPolip folders with images/ "
                             "and masks/ found")
    return items, notes


# -- cache -----------------------------------------------------------------------------------------
CACHE_VERSION = "polyp-cache-v2"


def _letterless_resize(a: np.ndarray, size: int, mask: bool = False):
    import cv2

    if mask:
        return cv2.resize(a.astype(np.uint8) * 255, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA)


def phash(rgb: np.ndarray) -> np.ndarray:
    """64-bit DCT perceptual hash (grey 32x32, the 8x8 lowest frequencies without DC vs their median):
    63 bools. Kept in the cache for the record; near-duplicates are found with embeddings (pHash is
    dominated by Kvasir's black overlay box: unrelated frames sit 6-10 bits apart)."""
    import cv2

    g = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    d = cv2.dct(g)[:8, :8].ravel()[1:]
    return d > np.median(d)


def build_cache(items: list[Item], size: int, cache_dir: str | Path,
                emit: Callable[[dict], None] = lambda e: None) -> Path:
    """Decode every item once, resize to size x size (square, ignoring aspect: what the app does to a
    frame), store uint8 in an .npz keyed by the file list + sizes + mtimes. Masks keep the area-resized
    soft value 0..255. Also: the original height/width and a perceptual hash per item."""
    from ..atomic import atomic_path

    h = hashlib.sha256(f"{CACHE_VERSION}|{size}".encode())
    for it in items:
        for p in (it.image, it.mask):
            if p is not None:
                st = p.stat()
                h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"polyp-{size}-{h.hexdigest()[:16]}.npz"
    if path.exists():
        emit({"event": "cache", "path": str(path), "cached": True, "total": len(items)})
        return path
    n = len(items)
    imgs = np.zeros((n, size, size, 3), np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    orig = np.zeros((n, 2), np.int32)
    hashes = np.zeros((n, 63), bool)
    t0 = time.time()
    for i, it in enumerate(items):
        img, m = load_pair(it)
        orig[i] = img.shape[:2]
        imgs[i] = _letterless_resize(img, size)
        masks[i] = _letterless_resize(m, size, mask=True)
        hashes[i] = phash(imgs[i])
        if i % 200 == 0 or i == n - 1:
            emit({"event": "cache", "done": i + 1, "total": n, "seconds": round(time.time() - t0, 1)})
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, images=imgs, masks=masks, orig_hw=orig, phash=hashes,
                     source=np.array([it.source for it in items]), ids=np.array([it.id for it in items]),
                     group=np.array([it.group for it in items]),
                     files=np.array([json.dumps([str(it.image), str(it.mask) if it.mask else None]) for it in items]))
    return path


def item_of(data: dict, i: int) -> Item:
    """The :class:`Item` of cached row i (to reload the original files, e.g. for full-size test Dice)."""
    img, msk = json.loads(str(data["files"][i]))
    return Item(str(data["source"][i]), str(data["ids"][i]), Path(img), Path(msk) if msk else None,
                str(data["group"][i]))


# -- grouping ----------------------------------------------------------------------------------------
class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


# CVC-ClinicDB: adjacent sequences are taken for one examination when their endoscope image masks
# (pixels dark in >= 90 % of the sequence's frames) overlap with IoU >= CVC_MASK_IOU and their mean colours
# (CIELAB of lit pixels, OpenCV 8-bit scale) differ by <= CVC_MAX_DLAB.
CVC_DARK_V = 30
CVC_MASK_IOU = 0.95
CVC_MAX_DLAB = 10.0


def cvc_sequence_signature(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(endoscope image mask: bool [H, W], mean CIELAB of lit pixels: [3]) of one sequence's frames."""
    import cv2

    dark, lab = [], []
    for f in frames:
        v = cv2.cvtColor(f, cv2.COLOR_RGB2HSV)[..., 2]
        dark.append(v < CVC_DARK_V)
        lab.append(cv2.cvtColor(f, cv2.COLOR_RGB2LAB)[v > 2 * CVC_DARK_V].reshape(-1, 3).mean(0))
    return np.mean(dark, 0) > 0.9, np.mean(lab, 0)


def cvc_video_groups(images: np.ndarray, source: np.ndarray, ids: np.ndarray, group: np.ndarray
                     ) -> tuple[np.ndarray, list[dict]]:
    """Merge adjacent CVC-ClinicDB sequences that look like one examination (see the constants above).

    The README says the 29 sequences come from 25 examinations but not which; no two adjacent sequences
    have near-identical boundary frames, so that cannot tell either. Same examination => same video
    processor image mask and the same light / white balance; the rule merges more pairs than the 4 that
    must exist, which only makes the split coarser. Returns the new groups and one row per adjacent pair
    (the evidence, for the model card)."""
    g = group.astype(object)
    sel = np.flatnonzero(source == "cvc")
    if not len(sel):
        return g.astype(str), []
    seq = np.array([cvc_sequence(int(ids[i])) for i in sel])
    present = sorted(set(seq))
    sig = {k: cvc_sequence_signature(images[sel[seq == k]]) for k in present}
    uf = _UnionFind(30)
    rows = []
    for a, b in zip(present, present[1:]):
        if b != a + 1:
            continue
        (ma, ca), (mb, cb) = sig[a], sig[b]
        iou = float((ma & mb).sum() / max((ma | mb).sum(), 1))
        dlab = float(np.linalg.norm(ca - cb))
        same = iou >= CVC_MASK_IOU and dlab <= CVC_MAX_DLAB
        rows.append({"pair": f"{a}-{b}", "mask_iou": round(iou, 3), "dlab": round(dlab, 1), "merged": same})
        if same:
            uf.union(a, b)
    members: dict[int, list[int]] = {}
    for k in present:
        members.setdefault(uf.find(k), []).append(k)
    name = {k: "cvc:seq" + "+".join(f"{m:02d}" for m in sorted(ms)) for ms in members.values() for k in ms}
    for i, k in zip(sel, seq):
        g[i] = name[k]
    return g.astype(str), rows


# cosine similarity (masked Lite0 embedding, :func:`inference.endo.polyp_views.embeddings`) at which two
# frames of one source are near-duplicates. Kvasir-SEG: every pair >= 0.88 and about half of the pairs in
# 0.845-0.88 showed the same polyp on visual review, few below 0.845; union-find chains start to grow
# beyond 0.84 (largest group 5 at 0.84, 91 at 0.82). Polyp-free crops (close-ups of vessels, all alike):
# only (near-)identical crops, >= 0.95.
DUP_THRESHOLDS = {"kvasir": 0.84, "normal": 0.95}


def near_duplicate_groups(group: np.ndarray, source: np.ndarray, emb: np.ndarray,
                          thr: dict[str, float] | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Within each source of ``thr``, items whose embeddings have cosine similarity >= thr[source] join
    one group (union-find over all pairs, on top of the existing groups). Rows of ``emb`` of other sources
    are ignored. Returns (groups, pairs linked per source)."""
    thr = DUP_THRESHOLDS if thr is None else thr
    g = group.astype(object)
    e = emb / np.sqrt((emb.astype(np.float64) ** 2).sum(1, keepdims=True) + 1e-12)
    linked: dict[str, int] = {}
    for src, t in thr.items():
        idx = np.flatnonzero(source == src)
        if len(idx) < 2:
            continue
        uf = _UnionFind(len(idx))
        first: dict[str, int] = {}
        for k, i in enumerate(idx):  # existing groups (e.g. blocks of negatives) stay together
            if g[i] in first:
                uf.union(k, first[g[i]])
            else:
                first[g[i]] = k
        c = e[idx] @ e[idx].T
        ii, jj = np.nonzero(np.triu(c, 1) >= t)
        linked[src] = int(len(ii))
        for a, b in zip(ii, jj):
            uf.union(int(a), int(b))
        names: dict[int, str] = {}
        for k, i in enumerate(idx):
            r = uf.find(k)
            names.setdefault(r, str(g[idx[r]]))
        for k, i in enumerate(idx):
            g[i] = names[uf.find(k)]
    return g.astype(str), linked


def split_groups(group: np.ndarray, source: np.ndarray, seed: int,
                 fracs: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """Per source, shuffle the groups with the seed and assign whole groups to test, then validation, then
    train, by cumulative item count (fractions (val, test) per source). Returns 'train' | 'val' | 'test'."""
    fracs = fracs or {"kvasir": (0.1, 0.1), "cvc": (0.15, 0.2), "normal": (0.1, 0.3)}
    out = np.array(["train"] * len(group), dtype=object)
    rng = np.random.RandomState(seed)
    for src in SOURCES:
        sel = np.flatnonzero(source == src)
        if not len(sel):
            continue
        gs = sorted(set(group[sel]))
        rng.shuffle(gs)
        fv, ft = fracs.get(src, (0.1, 0.1))
        n = len(sel)
        count = {gname: int((group[sel] == gname).sum()) for gname in gs}
        done = 0
        for gname in gs:
            where = "test" if done < ft * n else "val" if done < (ft + fv) * n else "train"
            out[sel[group[sel] == gname]] = where
            done += count[gname]
    return out.astype(str)

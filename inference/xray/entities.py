"""Clinical entities from a free-text note, offline: diseases, symptoms, medications, anatomy, with
negation ("no fever", "denies cough", "pneumonia was ruled out"), uncertainty ("possible TB"),
history ("history of asthma") and family experiencer ("mother has asthma").

Why not spaCy/medspaCy: neither is installed in Lightbox's environment, spaCy pulls a compiled
stack (thinc, blis, pydantic, typer ...) that pins numpy and would be shared with TensorFlow and
torch, and scispaCy's ``en_core_sci_sm`` (the reference's NER) is a model downloaded from S3 — not
allowed at run time here. So this module implements the NegEx algorithm (Chapman et al., J Biomed
Inform 2001) with ConText-style modifiers (Harkema et al., 2009) over a dictionary matcher:

* the lexicon (``resources/xray/clinical_lexicon.json``, kept by the project) maps surface forms to
  a canonical concept in one of four categories, and lists the trigger phrases;
* tokens are matched longest-first; pseudo-triggers ("no change", "gram negative") are consumed so
  they never trigger;
* a pre-trigger's scope runs forward up to 6 words (an entity counts as one word) to the end of the
  clause: a sentence end or a termination term ("but", "however", "has", ...); a post-trigger
  ("... was ruled out") looks back up to 5 words. Lists keep the scope: "no fever, chills or cough"
  negates all three.

Pure Python, deterministic, ~0.1 ms per sentence.
"""
from __future__ import annotations

import functools
import html
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inference import paths

CATEGORIES = ("disease", "symptom", "medication", "anatomy")
LEXICON_PATH = Path(paths.PROJECT_ROOT) / "resources" / "xray" / "clinical_lexicon.json"
PRE_WINDOW = 6
POST_WINDOW = 5
_TOKEN = re.compile(r"[a-z0-9]+(?:[-'/][a-z0-9]+)*|[^\sa-z0-9]")
_EOS = {".", "!", "?", ";", "\n"}
_VERBS = {"has", "reports", "presents with", "complains of", "still", "now"}

COLORS = {"disease": "#e5534b", "symptom": "#d29922", "medication": "#3fb950", "anatomy": "#58a6ff"}


@dataclass
class Entity:
    text: str
    canonical: str
    category: str
    start: int
    end: int
    negated: bool = False
    uncertain: bool = False
    historical: bool = False
    family: bool = False
    triggers: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.negated:
            return "negated"
        if self.family:
            return "family"
        if self.uncertain:
            return "uncertain"
        if self.historical:
            return "historical"
        return "present"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status
        return d


@dataclass
class _Tok:
    text: str
    start: int
    end: int


def _tokens(text: str) -> list[_Tok]:
    low = text.lower()
    out = []
    for m in _TOKEN.finditer(low):
        out.append(_Tok(m.group(0), m.start(), m.end()))
    # newlines end sentences too
    for m in re.finditer(r"\n", low):
        out.append(_Tok("\n", m.start(), m.end()))
    out.sort(key=lambda t: t.start)
    return out


def _tok_phrase(s: str) -> tuple[str, ...]:
    return tuple(m.group(0) for m in _TOKEN.finditer(s.lower()))


class Lexicon:
    def __init__(self, data: dict):
        self.terms: dict[tuple[str, ...], tuple[str, str]] = {}
        for cat in CATEGORIES:
            for canonical, forms in data.get(cat, {}).items():
                for f in [canonical, *forms]:
                    t = _tok_phrase(f)
                    if not t:
                        continue
                    self.terms.setdefault(t, (cat, canonical))
                    last = t[-1]
                    if last.isalpha() and len(last) > 3:  # simple plurals
                        for suf in ("s", "es"):
                            self.terms.setdefault(t[:-1] + (last + suf,), (cat, canonical))
        self.triggers: dict[tuple[str, ...], tuple[str, str]] = {}
        for t in data.get("negation", {}).get("pseudo", []):
            self.triggers[_tok_phrase(t)] = ("pseudo", "")
        for kind in ("negation", "uncertain", "historical", "family"):
            for direction in ("pre", "post"):
                for t in data.get(kind, {}).get(direction, []):
                    self.triggers.setdefault(_tok_phrase(t), (kind, direction))
        for t in data.get("negation", {}).get("terminate", []):
            self.triggers.setdefault(_tok_phrase(t), ("terminate", ""))
        self.max_len = max([len(k) for k in list(self.terms) + list(self.triggers)] or [1])

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Lexicon":
        with open(path or LEXICON_PATH, encoding="utf-8") as f:
            return cls(json.load(f))


@functools.lru_cache(maxsize=1)
def default_lexicon() -> Lexicon:
    return Lexicon.load()


def extract(text: str, lexicon: Lexicon | None = None) -> list[Entity]:
    """Entities in ``text`` with character offsets into ``text`` and their NegEx/ConText status."""
    lex = lexicon or default_lexicon()
    toks = _tokens(text or "")
    items: list[tuple[str, object, int, int]] = []  # (kind, payload, tok_start, tok_end)
    i = 0
    n = len(toks)
    while i < n:
        if toks[i].text in _EOS:
            items.append(("eos", None, i, i + 1))
            i += 1
            continue
        best = None
        for L in range(min(lex.max_len, n - i), 0, -1):
            key = tuple(t.text for t in toks[i:i + L])
            if any(k in _EOS for k in key):
                continue
            trig = lex.triggers.get(key)
            term = lex.terms.get(key)
            if trig is not None and (trig[0] in ("pseudo",) or term is None):
                best = ("trigger", trig, i, i + L)
                break
            if term is not None:
                best = ("entity", term, i, i + L)
                break
        if best is None:
            kind = "punct" if not toks[i].text[0].isalnum() else "word"
            items.append((kind, None, i, i + 1))
            i += 1
        else:
            items.append(best)
            i = best[3]

    entities: dict[int, Entity] = {}
    for idx, (kind, payload, a, b) in enumerate(items):
        if kind == "entity":
            cat, canonical = payload  # type: ignore[misc]
            s, e = toks[a].start, toks[b - 1].end
            entities[idx] = Entity(text[s:e], canonical, cat, s, e)

    def trig_text(a: int, b: int) -> str:
        return text[toks[a].start:toks[b - 1].end]

    for idx, (kind, payload, a, b) in enumerate(items):
        if kind != "trigger":
            continue
        tkind, direction = payload  # type: ignore[misc]
        if tkind not in ("negation", "uncertain", "historical", "family"):
            continue
        attr = {"negation": "negated", "uncertain": "uncertain", "historical": "historical",
                "family": "family"}[tkind]
        step, window = (1, PRE_WINDOW) if direction == "pre" else (-1, POST_WINDOW)
        j, words = idx + step, 0
        while 0 <= j < len(items) and words < window:
            k2, p2, _, _ = items[j]
            if k2 == "eos":
                break
            if k2 == "trigger" and p2[0] == "terminate":  # type: ignore[index]
                # "mother has asthma": a verb ends a negation's scope, not the experiencer's
                if not (tkind == "family" and trig_text(items[j][2], items[j][3]).lower() in _VERBS):
                    break
            if k2 == "trigger" and direction == "post" and p2[0] == "negation":  # type: ignore[index]
                break
            if k2 == "entity":
                ent = entities[j]
                setattr(ent, attr, True)
                ent.triggers.append(trig_text(a, b))
            if k2 != "punct":
                words += 1
            j += step
    return [entities[k] for k in sorted(entities)]


def summary(entities: list[Entity]) -> dict[str, dict[str, list[str]]]:
    """{category: {"present": [...], "negated": [...], ...}} with canonical names, de-duplicated."""
    out: dict[str, dict[str, list[str]]] = {}
    for e in entities:
        lst = out.setdefault(e.category, {}).setdefault(e.status, [])
        if e.canonical not in lst:
            lst.append(e.canonical)
    return out


def highlight_html(text: str, entities: list[Entity], for_pdf: bool = False) -> str:
    """The note with entities coloured by category; negated ones struck through (reportlab- and
    Qt-rich-text compatible markup)."""
    out, pos = [], 0
    for e in sorted(entities, key=lambda e: e.start):
        if e.start < pos:
            continue
        out.append(html.escape(text[pos:e.start]))
        frag = html.escape(text[e.start:e.end])
        color = COLORS.get(e.category, "#888888")
        if e.negated:
            frag = f"<strike>{frag}</strike>"
        tag = {"negated": " (neg)", "uncertain": " (?)", "historical": " (hx)", "family": " (fam)"}.get(e.status, "")
        if for_pdf:
            out.append(f"<font color='{color}'><b>{frag}</b></font><font size='6' color='#666666'>{tag}</font>")
        else:
            out.append(f"<span style='color:{color}; font-weight:600'>{frag}</span>"
                       f"<span style='color:#8b949e; font-size:small'>{tag}</span>")
        pos = e.end
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", "<br/>")

"""The works of the music21 corpus: enumeration, deterministic selection and loading.

A *work* is one piece: one score file (Bach chorale, Palestrina mass movement, quartet
movement...) or one tune inside a multi-tune ABC file (Essen, O'Neill, Aird's...). Each has
a stable id (``collection/file#n``) that seeds its randomness and decides its split, so a
work's clips never land in two splits and a rebuild reproduces it exactly.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cadenza.errors import CadenzaError

# Collections that are test files or analyses rather than music to listen to.
EXCLUDED_COLLECTIONS = frozenset({"demos", "theoryExercises"})
SCORE_EXTENSIONS = (".mxl", ".xml", ".musicxml", ".krn", ".abc")  # .rntxt are Roman-numeral analyses: skipped
_X_LINE = re.compile(r"(?m)^(?=X:)")


@dataclass(frozen=True)
class WorkRef:
    """One work of the corpus: where it lives and how big its source text is."""

    work_id: str  # e.g. "essenFolksong/altdeu10#12" or "bach/bwv1.6"
    path: str  # file path relative to the corpus root
    collection: str
    number: int | None  # 1-based position of the tune in a multi-tune ABC file
    size: int  # bytes of source text (the tune for ABC), a proxy for parse time

    @property
    def slug(self) -> str:
        """A file-name-safe form of the id."""
        return slugify(self.work_id)


def slugify(text: str) -> str:
    """Letters, digits, '-' and '_' only, so ids work as file names everywhere."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text.replace("#", "-n")).strip("_")


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of the parts that is the same in every process and Python version."""
    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")


def split_for(key: str, valid_pct: int = 5, test_pct: int = 5) -> str:
    """train/valid/test by a hash of the work (or file) id, independent of the seed."""
    bucket = stable_hash("split", key) % 100
    if bucket < valid_pct:
        return "valid"
    if bucket < valid_pct + test_pct:
        return "test"
    return "train"


@lru_cache(maxsize=1)
def corpus_root() -> Path:
    """The folder holding music21's bundled corpus."""
    try:
        from music21 import corpus
    except ImportError as exc:  # pragma: no cover - music21 is a dependency
        raise CadenzaError("music21 is not installed", "pip install music21") from exc
    return Path(corpus.__file__).parent


def _split_abc(text: str) -> tuple[str, list[str]]:
    """File header (text before the first ``X:``) and the tunes."""
    chunks = _X_LINE.split(text)
    return chunks[0], chunks[1:]


@lru_cache(maxsize=1)
def list_works() -> tuple[WorkRef, ...]:
    """Every work in the corpus, sorted by id (a few hundred ms: reads the ABC files' text)."""
    from music21 import corpus

    root = corpus_root()
    works: list[WorkRef] = []
    for p in sorted(str(x) for x in corpus.getPaths()):
        rel = os.path.relpath(p, root)
        collection = rel.split(os.sep)[0]
        ext = os.path.splitext(rel)[1].lower()
        if collection in EXCLUDED_COLLECTIONS or ext not in SCORE_EXTENSIONS:
            continue
        stem = os.path.splitext(rel)[0].replace(os.sep, "/")
        if ext == ".abc":
            with open(p, encoding="latin-1") as fh:
                _, tunes = _split_abc(fh.read())
            for i, tune in enumerate(tunes, start=1):
                if re.search(r"(?m)^K:", tune):  # a tune without a key line is a fragment
                    works.append(WorkRef(f"{stem}#{i}", rel, collection, i, len(tune)))
        else:
            works.append(WorkRef(stem, rel, collection, None, os.path.getsize(p)))
    # a few works ship in two formats (bwv277.krn and .mxl): keep one, the MusicXML if any
    rank = {".mxl": 0, ".musicxml": 1, ".xml": 2, ".krn": 3, ".abc": 4}
    best: dict[str, WorkRef] = {}
    for w in works:
        cur = best.get(w.work_id)
        if cur is None or rank[os.path.splitext(w.path)[1].lower()] < rank[os.path.splitext(cur.path)[1].lower()]:
            best[w.work_id] = w
    return tuple(sorted(best.values(), key=lambda w: w.work_id))


def select_works(n_works: int | None, seed: int, max_size: int | None = None, held_out_first: bool = False) -> list[WorkRef]:
    """Pick ``n_works`` works deterministically, spread over the collections.

    Each collection is shuffled by a hash of (seed, work id); the collections are then
    visited round-robin, so a small selection already holds folk tunes, chorales,
    Renaissance polyphony and classical movements instead of 300 Essen songs.
    ``max_size`` skips works whose source is larger (slow to parse; for the tiny preset).
    ``held_out_first`` moves the first valid and the first test work of that order to the front,
    so even a selection of three works has all three splits (the tiny preset: without it, its
    8 works would usually all be train works, about 10 % of works being held out).
    """
    groups: dict[str, list[WorkRef]] = defaultdict(list)
    for w in list_works():
        if max_size is None or w.size <= max_size:
            groups[w.collection].append(w)
    for name in groups:
        groups[name].sort(key=lambda w: stable_hash("select", seed, w.work_id))
    order = sorted(groups, key=lambda name: stable_hash("collection", seed, name))
    ordered: list[WorkRef] = []
    total = sum(len(g) for g in groups.values())
    for depth in range(max((len(g) for g in groups.values()), default=0)):
        ordered += [groups[name][depth] for name in order if depth < len(groups[name])]
    if held_out_first:
        front = [next((w for w in ordered if split_for(w.work_id) == split), None) for split in ("valid", "test")]
        front = [w for w in front if w is not None]
        ordered = front + [w for w in ordered if w not in front]
    return ordered[: total if n_works is None else min(n_works, total)]


def find_work(work_id: str) -> WorkRef:
    """The work with this id, or a CadenzaError naming a close match."""
    for w in list_works():
        if w.work_id == work_id:
            return w
    raise CadenzaError(f"no work '{work_id}' in the music21 corpus", "ids look like 'bach/bwv1.6' or 'essenFolksong/altdeu10#12'")


def load_work(ref: WorkRef):
    """Parse a work into a music21 ``Score`` (one tune for multi-tune ABC files).

    Parsed from source every time (``forceSource``): music21's own cache writes pickles.
    """
    from music21 import converter, stream

    path = corpus_root() / ref.path
    if ref.number is not None:
        with open(path, encoding="latin-1") as fh:
            header, tunes = _split_abc(fh.read())
        tune = tunes[ref.number - 1]
        # header lines that are ABC fields (e.g. a default L: or M:) apply to every tune
        fields = "".join(line + "\n" for line in header.splitlines() if re.match(r"^[A-Za-z]:", line))
        parsed = converter.parse(fields + tune if fields else tune, format="abc", forceSource=True)
    else:
        parsed = converter.parse(str(path), forceSource=True)
    if isinstance(parsed, stream.Opus):
        scores = list(parsed.scores)
        if not scores:
            raise CadenzaError(f"{ref.work_id}: file holds no score")
        parsed = scores[0]
    if isinstance(parsed, stream.Part):
        score = stream.Score()
        score.insert(0, parsed)
        score.metadata = parsed.metadata
        parsed = score
    return parsed


def abc_fields(ref: WorkRef) -> dict[str, str]:
    """Header fields of an ABC tune (T, C, O, R, N, ...), first value of each, for captions."""
    if ref.number is None:
        return {}
    with open(corpus_root() / ref.path, encoding="latin-1") as fh:
        _, tunes = _split_abc(fh.read())
    out: dict[str, str] = {}
    for line in tunes[ref.number - 1].splitlines():
        m = re.match(r"^([A-Za-z]):\s*(.*)$", line)
        if m and m.group(1) not in out and m.group(2).strip():
            out[m.group(1)] = m.group(2).strip()
        if line.startswith("K:"):
            break
    return out

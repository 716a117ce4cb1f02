"""Generation history: one SQLite row per finished generation, its files in a folder beside it.

Layout under the studio root (default ``~/.cadenza/studio``)::

    history.sqlite3            the rows (inputs, seed, model id, timings, status, file names)
    generations/<id>/          audio.wav, controls.npz, controls.zip, plot.png, request.json, inputs/
    staging/<id>/              a generation in progress (never referenced by a row)

Why this order: a generation is written completely into ``staging/<id>/``, the folder is then
renamed into ``generations/`` (one atomic ``os.replace`` on the same file system), and only
then is the row inserted, in one transaction. A crash at any point before the commit leaves
no row at all; the leftover folder is swept the next time the store opens. A row therefore
always points at files that exist. File names in rows are relative to the generation's
folder and are resolved (and checked to stay inside it) on every read, so nothing stored in
the database can make the studio open a file elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cadenza.errors import CadenzaError

DB_NAME = "history.sqlite3"
GENERATIONS = "generations"
STAGING = "staging"
DEFAULT_ROOT = Path("~/.cadenza/studio")
SCHEMA_VERSION = 1
STATUSES = ("done", "failed")
ID_PATTERN = re.compile(r"^[0-9a-f]{12}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    id          TEXT PRIMARY KEY,
    created     REAL NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('done', 'failed')),
    prompt      TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    duration_s  REAL NOT NULL,
    model_id    TEXT NOT NULL,
    request     TEXT NOT NULL,
    files       TEXT NOT NULL,
    info        TEXT NOT NULL,
    error       TEXT,
    rerun_of    TEXT
);
CREATE INDEX IF NOT EXISTS generations_created ON generations (created);
"""


def new_id() -> str:
    """A fresh generation id: 12 lowercase hex digits (the only id form the studio accepts)."""
    return uuid.uuid4().hex[:12]


def check_id(gid: str) -> str:
    """Validate an id from outside (URL, CLI) so it can never act as a path."""
    if not isinstance(gid, str) or not ID_PATTERN.match(gid):
        raise CadenzaError(f"'{str(gid)[:40]}' is not a generation id", "ids are 12 hex digits, as listed by 'cadenza history list'")
    return gid


@dataclass
class Generation:
    """One history row, with JSON columns decoded."""

    id: str
    created: float
    status: str
    prompt: str
    seed: int
    duration_s: float
    model_id: str
    request: dict
    files: dict[str, str]
    info: dict
    error: str | None = None
    rerun_of: str | None = None
    folder: Path = field(default=Path("."), repr=False)

    def path(self, kind: str) -> Path:
        """Absolute path of one stored file by its kind ('audio', 'plot', ...), checked to stay in the folder."""
        name = self.files.get(kind)
        if not name:
            raise CadenzaError(f"generation {self.id} has no '{kind}' file", f"it has: {', '.join(sorted(self.files)) or 'none'}")
        folder = self.folder.resolve()
        path = (folder / name).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            raise CadenzaError(f"generation {self.id}: its '{kind}' file is missing", "the studio folder was changed by hand")
        return path

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (no file-system paths: files are named by kind only)."""
        return {
            "id": self.id, "created": self.created, "status": self.status, "prompt": self.prompt, "seed": self.seed,
            "duration_s": self.duration_s, "model_id": self.model_id, "request": self.request,
            "files": sorted(self.files), "info": self.info, "error": self.error, "rerun_of": self.rerun_of,
        }


class History:
    """The SQLite store of generations under ``root``; safe to use from several threads and processes."""

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT, sweep: bool = True) -> None:
        self.root = Path(root).expanduser()
        if self.root.exists() and not self.root.is_dir():
            raise CadenzaError(f"{self.root}: exists and is not a folder", "give a folder for the studio's history (--root)")
        try:
            self.generations.mkdir(parents=True, exist_ok=True)
            self.staging.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CadenzaError(f"{self.root}: cannot create the history folder ({exc.strerror})", "choose a writable --root") from None
        with closing(self._connect()) as conn, conn:
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if sweep:
            self.sweep()

    # ------------------------------------------------------------------ paths
    @property
    def db_path(self) -> Path:
        return self.root / DB_NAME

    @property
    def generations(self) -> Path:
        return self.root / GENERATIONS

    @property
    def staging(self) -> Path:
        return self.root / STAGING

    def folder(self, gid: str) -> Path:
        return self.generations / check_id(gid)

    def stage(self, gid: str) -> Path:
        """A fresh, empty staging folder for generation ``gid``."""
        path = self.staging / check_id(gid)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def discard(self, gid: str) -> None:
        """Remove a staging folder (a generation that failed or was refused)."""
        shutil.rmtree(self.staging / check_id(gid), ignore_errors=True)

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level="DEFERRED")
        except sqlite3.Error as exc:
            raise CadenzaError(f"{self.db_path}: cannot open the history database ({exc})", "check the folder's permissions") from None
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    # ------------------------------------------------------------------ writing
    def commit(
        self,
        gid: str,
        *,
        prompt: str,
        seed: int,
        duration_s: float,
        model_id: str,
        request: dict,
        files: dict[str, str],
        info: dict,
        status: str = "done",
        error: str | None = None,
        rerun_of: str | None = None,
    ) -> Generation:
        """Move ``staging/<gid>`` into place, then insert its row in one transaction.

        Every file named in ``files`` must already exist in the staging folder; a missing one
        is an error and nothing is recorded.
        """
        if status not in STATUSES:
            raise CadenzaError(f"unknown generation status '{status}'", f"use one of {', '.join(STATUSES)}")
        src = self.staging / check_id(gid)
        if not src.is_dir():
            raise CadenzaError(f"generation {gid}: nothing staged to commit")
        for kind, name in files.items():
            if Path(name).is_absolute() or ".." in Path(name).parts or not (src / name).is_file():
                raise CadenzaError(f"generation {gid}: staged file for '{kind}' ({name}) is missing or outside its folder")
        dst = self.folder(gid)
        if dst.exists():
            raise CadenzaError(f"generation {gid} already exists")
        os.replace(src, dst)
        row = (
            gid, time.time(), status, prompt, int(seed), float(duration_s), model_id, json.dumps(request),
            json.dumps(files), json.dumps(info, default=str), error, rerun_of,
        )
        try:
            with closing(self._connect()) as conn, conn:
                conn.execute("INSERT INTO generations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        except BaseException:
            shutil.rmtree(dst, ignore_errors=True)  # no row: the folder must not survive either
            raise
        return self.get(gid)

    def sweep(self, keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Remove leftovers of crashed generations: staging folders (but those in ``keep``), and generation folders without a row."""
        removed = []
        for path in self.staging.iterdir():
            if path.name in keep:
                continue
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path.name)
        with closing(self._connect()) as conn:
            known = {r["id"] for r in conn.execute("SELECT id FROM generations")}
        for path in self.generations.iterdir():
            if path.name not in known:
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def delete(self, gid: str) -> None:
        """Delete a row, then its folder."""
        with closing(self._connect()) as conn, conn:
            conn.execute("DELETE FROM generations WHERE id = ?", (check_id(gid),))
        shutil.rmtree(self.folder(gid), ignore_errors=True)

    # ------------------------------------------------------------------ reading
    def _row(self, row: sqlite3.Row) -> Generation:
        return Generation(
            id=row["id"], created=row["created"], status=row["status"], prompt=row["prompt"], seed=row["seed"],
            duration_s=row["duration_s"], model_id=row["model_id"], request=json.loads(row["request"]),
            files=json.loads(row["files"]), info=json.loads(row["info"]), error=row["error"], rerun_of=row["rerun_of"],
            folder=self.generations / row["id"],
        )

    def get(self, gid: str) -> Generation:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT * FROM generations WHERE id = ?", (check_id(gid),)).fetchone()
        if row is None:
            raise CadenzaError(f"no generation with id {gid}", "list them with 'cadenza history list'")
        return self._row(row)

    def list(self, limit: int = 50, offset: int = 0) -> list[Generation]:
        """Newest first."""
        if limit < 1 or offset < 0:
            raise CadenzaError(f"invalid page (limit {limit}, offset {offset})", "limit must be at least 1 and offset not negative")
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT * FROM generations ORDER BY created DESC, id LIMIT ? OFFSET ?", (int(limit), int(offset))).fetchall()
        return [self._row(r) for r in rows]

    def ids(self) -> set[str]:
        """Every stored generation's id (no rows decoded)."""
        with closing(self._connect()) as conn:
            return {r["id"] for r in conn.execute("SELECT id FROM generations")}

    def count(self) -> int:
        with closing(self._connect()) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def __iter__(self) -> Iterator[Generation]:
        return iter(self.list(limit=1 << 30))

    def __len__(self) -> int:
        return self.count()

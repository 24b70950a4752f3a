"""Crash-safe state of a batch screening run: one SQLite file, ``OUT/screen.sqlite`` (Qt-free).

Results are committed in small batches of whole studies (:data:`BATCH_SECONDS`, WAL mode): a
killed run loses at most the studies of the last second, never part of a study, never a
committed one, and running the same command again picks up where it stopped. A study is trusted on
resume only if its source files are unchanged (same paths, sizes and mtimes) and the database was
written by the same model (``Bundle.model_id``) on the same source root with the same decoding
(exact, or ``--fast-decode``'s reduced resolution); otherwise the study is re-scored, or, for a
different model, root or decoding, the run is refused until ``--restart``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from models.errors import ConfigError
from models.reduction import CODECS, codec_names

DB_NAME = "screen.sqlite"
SCHEMA_VERSION = 3  # 2: run.decode (issue #6); 3: scope refusals (issue #15). Older files are migrated
#: The verdict of a study none of whose images the model is indicated for (models.scope): it gets
#: no probability and is listed apart from the ranked worklist.
NOT_INDICATED = "not_indicated"

#: How a run decoded its images: every file in full, or JPEG 2000 / baseline JPEG at a reduced
#: resolution (``mura-screen --fast-decode``). A worklist mixing both would rank scores made
#: from different pixels, so a run only ever resumes with the decoding it started with.
DECODE_EXACT = "exact"
DECODE_FAST = "fast"  # both codecs; "fast:jpeg2000" when a card validated JPEG 2000 alone
#: A run's decoding as the screener's functions take it: False (exact), True (``--fast-decode``:
#: every codec with a reduced decode) or the codecs to decode reduced (what a card validated).
FastDecode = bool | Collection[str]


def decode_codecs(fast: FastDecode) -> frozenset[str]:
    """The codecs a run decodes at reduced resolution (empty: every file exactly)."""
    if isinstance(fast, bool):
        return CODECS if fast else frozenset()
    unknown = set(fast) - CODECS
    if unknown:
        raise ConfigError(f"no reduced decode for {sorted(unknown)}: known are {sorted(CODECS)}")
    return frozenset(fast)


def decode_mode(fast: FastDecode) -> str:
    """The decoding as the state records it: 'exact', 'fast' (every codec) or 'fast:jpeg2000'."""
    codecs = decode_codecs(fast)
    if not codecs:
        return DECODE_EXACT
    return DECODE_FAST if codecs == CODECS else f"{DECODE_FAST}:{','.join(sorted(codecs))}"


def mode_codecs(mode: str) -> frozenset[str]:
    """Inverse of :func:`decode_mode`; :class:`~models.errors.ConfigError` for anything else."""
    if mode == DECODE_EXACT:
        return frozenset()
    head, _, tail = mode.partition(":")
    if head == DECODE_FAST:
        codecs = CODECS if not tail else frozenset(tail.split(","))
        if codecs <= CODECS and codecs and decode_mode(codecs) == mode:
            return codecs
    raise ConfigError(f"unknown decoding {mode!r}: expected {DECODE_EXACT!r}, {DECODE_FAST!r} or "
                      f"{DECODE_FAST!r}:CODEC for one of {sorted(CODECS)}")


def describe_mode(mode: str) -> tuple[str, str]:
    """How a decoding is said in messages, and what gives it: ('exactly', '--exact-decode')."""
    codecs = mode_codecs(mode)
    if not codecs:
        return "exactly", "--exact-decode"
    if codecs == CODECS:
        return "at reduced resolution", "--fast-decode"
    return (f"at reduced resolution for {codec_names(codecs)} only",
            "no decoding flag: the model card's validated default")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    model_id TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    source_root TEXT NOT NULL,
    salt TEXT NOT NULL,
    started_at REAL NOT NULL,
    decode TEXT NOT NULL DEFAULT 'exact',
    anonymize INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    probability REAL,
    body_part TEXT NOT NULL,
    verdict TEXT NOT NULL,
    n_images INTEGER NOT NULL,
    n_failed INTEGER NOT NULL,
    modality TEXT NOT NULL,
    description TEXT NOT NULL,
    first_image TEXT NOT NULL,
    scored_at REAL NOT NULL,
    n_refused INTEGER NOT NULL DEFAULT 0,
    scope TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_key TEXT NOT NULL REFERENCES studies(key) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    probability REAL,
    body_part TEXT NOT NULL,
    error TEXT,
    thumbnail BLOB,
    refused TEXT
);
CREATE INDEX IF NOT EXISTS images_study ON images(study_key);
"""


@dataclass(frozen=True)
class FileStamp:
    """What identifies a source file's content cheaply: a changed size or mtime means re-score."""

    path: str
    size: int
    mtime_ns: int


def stamp(path: str | Path) -> FileStamp:
    st = os.stat(path)
    return FileStamp(str(path), int(st.st_size), int(st.st_mtime_ns))


def fingerprint(stamps: list[FileStamp]) -> str:
    """One hash over every file of a study: adding, removing or touching a file changes it."""
    h = hashlib.sha256()
    for s in sorted(stamps, key=lambda s: s.path):
        h.update(f"{s.path}\0{s.size}\0{s.mtime_ns}\n".encode())
    return h.hexdigest()


@dataclass
class ImageRow:
    """An image's outcome: a probability, or an error saying why it could not be scored."""

    stamp: FileStamp
    probability: float | None = None
    body_part: str = ""
    error: str | None = None
    thumbnail: bytes | None = None
    refused: str | None = None  # why the model is not indicated for this image (not an error)


@dataclass
class StudyRow:
    key: str
    probability: float | None
    body_part: str
    verdict: str
    n_images: int
    n_failed: int
    modality: str = ""
    description: str = ""
    first_image: str = ""
    id: int = 0
    scored_at: float = 0.0
    n_refused: int = 0
    scope: str = ""  # the reason a study is NOT_INDICATED


#: A batch of finished studies is committed when it is this old (or :data:`BATCH_STUDIES` long).
#: Each commit is an fsync (synchronous=FULL): per study that was ~1 ms on a fast SSD and tens of
#: ms on a clinic PC's disk, for a kill -9 that would lose at most one second of work anyway.
BATCH_SECONDS = 1.0
BATCH_STUDIES = 64


class ScreenState:
    """The SQLite state of one output folder (or an in-memory one when there is no folder)."""

    def __init__(self, out: str | Path | None) -> None:
        self.path = None if out is None else Path(out) / DB_NAME
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._pending, self._since = 0, time.monotonic()
            self.db = sqlite3.connect(":memory:" if self.path is None else str(self.path))
            self.db.row_factory = sqlite3.Row
            if self.path is not None:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(_SCHEMA)
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise ConfigError(f"{self.path}: not a usable screening state database ({e}); "
                              "move it away or pass --restart") from e

    def close(self) -> None:
        """Commit the open batch and close: a finished (or interrupted) run keeps every study."""
        self.flush()
        self.db.close()

    def flush(self) -> None:
        """Commit the studies written since the last commit."""
        if self.db.in_transaction:
            self.db.commit()
        self._pending = 0
        self._since = time.monotonic()

    def _migrate(self) -> None:
        """Version 1 files predate ``run.decode`` (every one of their results was decoded exactly);
        versions 1-2 predate the scope checks, so their studies are dropped and scored again: a
        chest film they ranked must not keep its verdict."""
        cols = {r["name"] for r in self.db.execute("PRAGMA table_info(run)")}
        with self.db:
            if "decode" not in cols:
                self.db.execute(f"ALTER TABLE run ADD COLUMN decode TEXT NOT NULL DEFAULT '{DECODE_EXACT}'")
            if "anonymize" not in cols:
                self.db.execute("ALTER TABLE run ADD COLUMN anonymize INTEGER NOT NULL DEFAULT 0")
            if "refused" not in {r["name"] for r in self.db.execute("PRAGMA table_info(images)")}:
                self.db.execute("ALTER TABLE images ADD COLUMN refused TEXT")
                self.db.execute("ALTER TABLE studies ADD COLUMN n_refused INTEGER NOT NULL DEFAULT 0")
                self.db.execute("ALTER TABLE studies ADD COLUMN scope TEXT NOT NULL DEFAULT ''")
                self.db.execute("DELETE FROM images")
                self.db.execute("DELETE FROM studies")
            self.db.execute("UPDATE run SET schema_version = ? WHERE schema_version < ?",
                            (SCHEMA_VERSION, SCHEMA_VERSION))

    # -- run identity -------------------------------------------------------------------------

    def run_info(self) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM run WHERE id = 1").fetchone()

    def begin(self, *, model_id: str, model_name: str, model_version: str, source_root: str,
              restart: bool = False, decode: str = DECODE_EXACT, anonymize: bool = False) -> None:
        """Claim the state for this model and source, refusing to mix results of another model.

        Mixing would put scores of two models into one worklist, whose ranks would then mean
        nothing; so a different model or source root is an error unless ``restart`` clears it.
        The same holds for ``decode`` (:func:`decode_mode`): reduced-decoded
        scores differ slightly from exact ones, so a run never resumes with the other decoding.
        ``anonymize``: an anonymized state keys studies and paths by their salted hashes, so it
        cannot be resumed without ``--anonymize`` (nor the other way round).
        """
        how, flag = describe_mode(decode)  # raises for an unknown decoding
        if restart:
            self.clear()
        row = self.run_info()
        if row is not None:
            if row["schema_version"] != SCHEMA_VERSION:
                raise ConfigError(f"{self.path}: state schema {row['schema_version']} is not "
                                  f"{SCHEMA_VERSION}; pass --restart to start over")
            if row["model_id"] != model_id:
                raise ConfigError(
                    f"{self.path}: results there come from model {row['model_id']}, this run uses "
                    f"{model_id}; pass --restart to discard them, or choose another --out")
            if row["source_root"] != source_root:
                raise ConfigError(
                    f"{self.path}: results there are for source {row['source_root']}, this run "
                    f"screens {source_root}; pass --restart to discard them, or choose another --out")
            if row["decode"] != decode:
                was_how, was_flag = _describe_or_raw(row["decode"])
                raise ConfigError(
                    f"{self.path}: results there were decoded {was_how} ({was_flag}), this run decodes "
                    f"{how} ({flag}); a worklist must not mix the two: resume them with {was_flag}, "
                    "pass --restart to discard them, or choose another --out")
            if bool(row["anonymize"]) != bool(anonymize):
                said = "with" if row["anonymize"] else "without"
                raise ConfigError(
                    f"{self.path}: results there were stored {said} --anonymize; resume them the "
                    "same way, or pass --restart to discard them, or choose another --out")
            return
        with self.db:
            self.db.execute(
                "INSERT INTO run (id, schema_version, model_id, model_name, model_version, "
                "source_root, salt, started_at, decode, anonymize) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (SCHEMA_VERSION, model_id, model_name, model_version, source_root,
                 secrets.token_hex(16), time.time(), decode, int(bool(anonymize))))

    @property
    def decode(self) -> str:
        """How this run's results were decoded (:data:`DECODE_EXACT` before :meth:`begin`)."""
        row = self.run_info()
        return row["decode"] if row is not None else DECODE_EXACT

    def clear(self) -> None:
        with self.db:
            self.db.execute("DELETE FROM images")
            self.db.execute("DELETE FROM studies")
            self.db.execute("DELETE FROM run")

    @property
    def salt(self) -> str:
        row = self.run_info()
        return row["salt"] if row is not None else ""

    # -- studies -------------------------------------------------------------------------------

    def finished(self, key: str, fp: str) -> bool:
        """True when ``key`` was committed from exactly these source files: it need not be redone."""
        row = self.db.execute("SELECT fingerprint FROM studies WHERE key = ?", (key,)).fetchone()
        return row is not None and row["fingerprint"] == fp

    def commit_study(self, study: StudyRow, fp: str, images: list[ImageRow]) -> None:
        """Replace the study's rows in the open batch; the batch is committed when due
        (:data:`BATCH_SECONDS`), on :meth:`flush` and on :meth:`close`. A transaction holds whole
        studies only: after a crash each study is either all there, or not at all."""
        if not self.db.in_transaction:
            self.db.execute("BEGIN")
        self.db.execute("SAVEPOINT study")  # nested: RELEASE does not commit the batch
        try:
            self._write_study(study, fp, images)
        except BaseException:
            self.db.execute("ROLLBACK TO study")  # this study goes; the batch before it stays
            self.db.execute("RELEASE study")
            raise
        self.db.execute("RELEASE study")
        self._pending += 1
        if self._pending >= BATCH_STUDIES or time.monotonic() - self._since >= BATCH_SECONDS:
            self.flush()

    def _write_study(self, study: StudyRow, fp: str, images: list[ImageRow]) -> None:
        self.db.execute("DELETE FROM images WHERE study_key = ?", (study.key,))
        self.db.execute("DELETE FROM studies WHERE key = ?", (study.key,))
        self.db.execute(
            "INSERT INTO studies (key, fingerprint, probability, body_part, verdict, n_images, "
            "n_failed, modality, description, first_image, scored_at, n_refused, scope) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (study.key, fp, study.probability, study.body_part, study.verdict, study.n_images,
             study.n_failed, study.modality, study.description, study.first_image, time.time(),
             study.n_refused, study.scope))
        self.db.executemany(
            "INSERT INTO images (study_key, path, size, mtime_ns, probability, body_part, error, "
            "thumbnail, refused) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(study.key, r.stamp.path, r.stamp.size, r.stamp.mtime_ns, r.probability,
              r.body_part, r.error, r.thumbnail, r.refused) for r in images])

    def forget_except(self, keys: set[str]) -> int:
        """Drop studies no longer under the source, so the worklist mirrors the folder as it is."""
        stale = [r["key"] for r in self.db.execute("SELECT key FROM studies")
                 if r["key"] not in keys]
        with self.db:
            for k in stale:
                self.db.execute("DELETE FROM images WHERE study_key = ?", (k,))
                self.db.execute("DELETE FROM studies WHERE key = ?", (k,))
        return len(stale)

    def studies(self) -> list[StudyRow]:
        """Every finished study, most suspicious first; unscorable studies last."""
        return self._study_rows("ORDER BY probability IS NULL, probability DESC, key", ())

    def _study_rows(self, tail: str, args: tuple) -> list[StudyRow]:
        rows = self.db.execute(f"SELECT * FROM studies {tail}", args).fetchall()
        return [StudyRow(r["key"], r["probability"], r["body_part"], r["verdict"], r["n_images"],
                         r["n_failed"], r["modality"], r["description"], r["first_image"],
                         r["id"], r["scored_at"], r["n_refused"], r["scope"]) for r in rows]

    def study(self, key: str) -> StudyRow | None:
        return next((r for r in self._study_rows("WHERE key = ?", (key,))), None)

    def images(self, key: str) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM images WHERE study_key = ? ORDER BY id",
                               (key,)).fetchall()

    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of every image that could not be scored, in discovery order."""
        return [(r["path"], r["error"]) for r in self.db.execute(
            "SELECT path, error FROM images WHERE error IS NOT NULL ORDER BY id")]

    def refusals(self) -> list[tuple[str, str]]:
        """(path, reason) of every image the model is not indicated for, in discovery order."""
        return [(r["path"], r["refused"]) for r in self.db.execute(
            "SELECT path, refused FROM images WHERE refused IS NOT NULL ORDER BY id")]

    def best_thumbnail(self, key: str) -> bytes | None:
        """The thumbnail of the study's most suspicious image: the one a reader should see first."""
        row = self.db.execute(
            "SELECT thumbnail FROM images WHERE study_key = ? AND thumbnail IS NOT NULL "
            "ORDER BY probability IS NULL, probability DESC LIMIT 1", (key,)).fetchone()
        return None if row is None else bytes(row["thumbnail"])


def _describe_or_raw(mode: str) -> tuple[str, str]:
    """:func:`describe_mode`, or the raw value of a state written by a later version."""
    try:
        return describe_mode(mode)
    except ConfigError:
        return repr(mode), "the program version that wrote them"

"""The workspace catalogue: a DuckDB file (<ws>/catalog.duckdb) that says which input
files were ingested (by content hash), how far each got, and which detector runs wrote
evidence. It is the only mutable state besides the Parquet files themselves.

A file row goes `started` -> `done` (or `failed`). A `started` row seen by a later ingest
means the earlier one was interrupted: its partitions are removed and the file redone.
DuckDB lets one process hold the file for writing, so two ingests cannot interleave.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from minewatch.errors import UsageError

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS files (
    sha256 VARCHAR PRIMARY KEY,
    path VARCHAR NOT NULL,          -- as given on the command line
    source_file VARCHAR NOT NULL,   -- the value stored in the tables' source_file column
    size BIGINT,
    format VARCHAR,
    status VARCHAR NOT NULL,        -- started | done | failed
    accepted BIGINT DEFAULT 0,
    rejected BIGINT DEFAULT 0,
    tables VARCHAR,                 -- JSON {table: rows}
    notes VARCHAR,                  -- JSON [text]: assumptions, skipped packets, ...
    error VARCHAR,
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS runs (
    run_id BIGINT,
    detector VARCHAR,
    version INTEGER,
    engine VARCHAR,
    status VARCHAR,                 -- done | failed
    rows BIGINT,
    seconds DOUBLE,
    error VARCHAR,
    finished_at TIMESTAMPTZ
);
"""


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class FileRow:
    sha256: str
    path: str
    source_file: str
    size: int
    format: str | None
    status: str
    accepted: int
    rejected: int
    tables: dict
    notes: list
    error: str | None


class Catalogue:
    """Open with `Catalogue(path)`; use as a context manager or call close()."""

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise UsageError(f"workspace catalogue {self.path} is in use by another process "
                                 "(an ingest or detect still running?)") from None
            raise UsageError(f"cannot open workspace catalogue {self.path}: {exc}".splitlines()[0]) from None
        if not read_only:
            self.con.execute(SCHEMA_SQL)

    def __enter__(self) -> "Catalogue":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    # ---- files ---------------------------------------------------------------------------

    def file(self, sha256: str) -> FileRow | None:
        rows = self.con.execute(
            "SELECT sha256, path, source_file, size, format, status, accepted, rejected, tables, notes, error "
            "FROM files WHERE sha256 = ?", [sha256]).fetchall()
        return _file_row(rows[0]) if rows else None

    def files(self, status: str | None = None) -> list[FileRow]:
        query = ("SELECT sha256, path, source_file, size, format, status, accepted, rejected, tables, notes, error "
                 "FROM files")
        params = []
        if status:
            query += " WHERE status = ?"
            params.append(status)
        return [_file_row(r) for r in self.con.execute(query + " ORDER BY started_at, sha256", params).fetchall()]

    def source_file_taken(self, source_file: str, sha256: str) -> bool:
        """True when another content was already stored under this source_file name."""
        rows = self.con.execute("SELECT count(*) FROM files WHERE source_file = ? AND sha256 <> ?",
                                [source_file, sha256]).fetchall()
        return rows[0][0] > 0

    def done_with_size(self, size: int) -> bool:
        """True when some content of this size is ingested (the same file again, likely)."""
        rows = self.con.execute("SELECT count(*) FROM files WHERE size = ? AND status = 'done'", [size]).fetchall()
        return rows[0][0] > 0

    def start_file(self, sha256: str, path: str, source_file: str, size: int, fmt: str | None) -> None:
        self.con.execute("DELETE FROM files WHERE sha256 = ?", [sha256])
        self.con.execute(
            "INSERT INTO files (sha256, path, source_file, size, format, status, started_at) "
            "VALUES (?, ?, ?, ?, ?, 'started', ?)", [sha256, path, source_file, size, fmt, _now()])

    def finish_file(self, sha256: str, accepted: int, rejected: int, tables: dict, notes: list) -> None:
        self.con.execute(
            "UPDATE files SET status = 'done', accepted = ?, rejected = ?, tables = ?, notes = ?, finished_at = ? "
            "WHERE sha256 = ?", [accepted, rejected, json.dumps(tables), json.dumps(notes), _now(), sha256])

    def fail_file(self, sha256: str, error: str, rejected: int = 0) -> None:
        self.con.execute(
            "UPDATE files SET status = 'failed', error = ?, accepted = 0, rejected = ?, finished_at = ? "
            "WHERE sha256 = ?", [error, rejected, _now(), sha256])

    # ---- detector runs -------------------------------------------------------------------

    def next_run_id(self) -> int:
        return self.con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchall()[0][0]

    def record_run(self, run_id: int, detector: str, version: int, engine: str, status: str, rows: int,
                   seconds: float, error: str | None = None) -> None:
        self.con.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [run_id, detector, version, engine, status, rows, seconds, error, _now()])

    def last_runs(self) -> dict[str, tuple[int, datetime]]:
        """detector -> (version, finished_at) of its latest successful run."""
        rows = self.con.execute("SELECT detector, arg_max(version, finished_at), max(finished_at) FROM runs "
                                "WHERE status = 'done' GROUP BY detector").fetchall()
        return {d: (v, t) for d, v, t in rows}

    def files_done_after(self, when: datetime) -> list[FileRow]:
        """Inputs whose ingest finished after `when`."""
        rows = self.con.execute(
            "SELECT sha256, path, source_file, size, format, status, accepted, rejected, tables, notes, error "
            "FROM files WHERE status = 'done' AND finished_at > ? ORDER BY finished_at, sha256", [when]).fetchall()
        return [_file_row(r) for r in rows]

    def runs(self, run_id: int | None = None) -> list[dict]:
        query = "SELECT run_id, detector, version, engine, status, rows, seconds, error FROM runs"
        params = []
        if run_id is not None:
            query += " WHERE run_id = ?"
            params.append(run_id)
        cols = ("run_id", "detector", "version", "engine", "status", "rows", "seconds", "error")
        return [dict(zip(cols, r)) for r in self.con.execute(query + " ORDER BY run_id, detector", params).fetchall()]


def _file_row(r) -> FileRow:
    return FileRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6] or 0, r[7] or 0,
                   json.loads(r[8]) if r[8] else {}, json.loads(r[9]) if r[9] else [], r[10])

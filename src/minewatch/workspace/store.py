"""Where a workspace keeps its data, and how one input file's rows get there.

    <ws>/catalog.duckdb                                        see catalogue.py
    <ws>/tables/<table>/source=<format>/day=YYYY-MM-DD/part-<sha12>-<n>.parquet
    <ws>/tables/evidence/detector_id=<id>/day=YYYY-MM-DD/part-<key>-<n>.parquet
    (the key is not `detector`: a partition column may not repeat a column of the files)
    <ws>/rejects/<sha12>.jsonl                                 one rejected record per line

Every file written for an input carries the input's hash prefix in its name, so an
interrupted ingest can be undone by name alone. A part file is written under a hidden
temporary name and renamed when complete: readers never see half a file. The day of a
row is its time's UTC date (`day_numbers`); rows without a time go to day=unknown.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from minewatch.errors import MinewatchError, UsageError
from minewatch.schema import EVIDENCE, TABLES

SHA_PREFIX = 16
TIME_COLUMN = {"flows": "ts_start", "evidence": "ts_start"}  # others: "ts"
NO_DAY = "unknown"
# Payload heads are parsed at ingest (packet detectors) and not kept: they would dominate
# the size of the flow table and no SQL detector reads them.
STORED_DROPS = {"flows": ("src_payload_head", "dst_payload_head")}
RECORD_TABLES = tuple(t for t in TABLES if t != "evidence")


def stored_schema(table: str) -> pa.Schema:
    schema = TABLES[table]
    for name in STORED_DROPS.get(table, ()):
        schema = schema.remove(schema.get_field_index(name))
    return schema


def partition_value(text: str) -> str:
    """A value safe as one path component (detector ids and formats are already tame)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


class Workspace:
    """A folder of Parquet partitions plus the catalogue; creates its folders on demand."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.tables_dir = self.root / "tables"
        self.rejects_dir = self.root / "rejects"
        self.tmp_dir = self.root / "tmp"
        self.catalogue_path = self.root / "catalog.duckdb"

    def create(self) -> "Workspace":
        for d in (self.tables_dir, self.rejects_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def exists(self) -> bool:
        return self.catalogue_path.exists()

    def must_exist(self) -> "Workspace":
        """Itself, or a UsageError saying the folder is no workspace yet."""
        if not self.exists:
            raise UsageError(f"{self.root} is not a workspace (no catalog.duckdb): run `minewatch ingest` first")
        return self

    def table_glob(self, table: str) -> str:
        return str(self.tables_dir / table / "*" / "*" / "*.parquet")

    def has_files(self, table: str) -> bool:
        return any((self.tables_dir / table).glob("*/*/*.parquet"))

    def rejects_path(self, sha256: str) -> Path:
        return self.rejects_dir / f"{sha256[:SHA_PREFIX]}.jsonl"

    def detector_dir(self, detector: str) -> Path:
        return self.tables_dir / "evidence" / f"detector_id={partition_value(detector)}"

    def remove_input(self, sha256: str) -> int:
        """Delete every part file and the rejects file written for one input; returns how many."""
        prefix = sha256[:SHA_PREFIX]
        removed = 0
        if self.tables_dir.exists():
            for pattern in (f"*/*/*/part-{prefix}-*.parquet", f"*/*/*/.part-{prefix}-*"):
                for path in self.tables_dir.glob(pattern):
                    path.unlink()
                    removed += 1
        rejects = self.rejects_path(sha256)
        for path in (rejects, rejects.with_suffix(".jsonl.tmp")):
            if path.exists():
                path.unlink()
                removed += 1
        return removed

    def replace_detector_evidence(self, detector: str, new_dir: Path) -> None:
        """Swap a detector's evidence folder for a freshly written one."""
        target = self.detector_dir(detector)
        old = self.tmp_dir / f"old-{target.name}"
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            target.rename(old)
        target.parent.mkdir(parents=True, exist_ok=True)
        if new_dir.exists():
            new_dir.rename(target)
        if old.exists():
            shutil.rmtree(old)


DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_NULL_DAY = np.iinfo(np.int64).min  # a missing time: the `unknown` partition
# Rows are gathered per partition and written in parts of up to PART_ROWS rows or
# PART_BYTES (Arrow buffers); fewer, larger parts cost less to write than one per batch
# (~0.6 vs ~1.0 us per flow row) and compress better. Over all partitions, at most
# BUFFERED_BYTES are held: beyond, the fullest partition is written.
PART_ROWS = 500_000
PART_BYTES = 64 << 20
BUFFERED_BYTES = 128 << 20
QUEUE_BATCHES = 4  # batches handed over and not yet taken by the writing thread
PENDING_BYTES = 256 << 20  # encoded parts held while the input's hash is computed
# Parts are encoded by this many threads at once (Parquet encoding releases the GIL):
# one thread alone held the readers back. Parts are still committed (renamed, reported)
# one at a time, in order.
ENCODERS = 2


class WorkspaceWriteError(MinewatchError):
    """The workspace could not be written (disk full, no permission)."""


def day_numbers(column) -> np.ndarray:
    """Days since 1970-01-01 (UTC) of a timestamp[us, UTC] column, floored (times before
    1970 belong to the day before); missing times get `_NULL_DAY`."""
    micros = pc.cast(column, pa.int64())
    days = np.floor_divide(pc.fill_null(micros, 0).to_numpy(), DAY_US)
    if micros.null_count:
        days[pc.is_null(micros).to_numpy(zero_copy_only=False)] = _NULL_DAY
    return days


def day_name(number: int) -> str:
    """`YYYY-MM-DD` of a day number, as strftime('%Y-%m-%d') writes it."""
    if number == _NULL_DAY:
        return NO_DAY
    try:
        return (_EPOCH + timedelta(days=int(number))).isoformat()
    except OverflowError:  # beyond year 9999
        stamp = pa.scalar(int(number) * DAY_US, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        return pc.strftime(stamp, format="%Y-%m-%d").as_py()


UNIQUE_COLUMNS = ("flow_ref",)  # one value a row: a dictionary is built, then dropped


def _dictionary_columns(schema: pa.Schema) -> list[str]:
    """Columns worth a dictionary: not the floating ones (means, deviations), whose
    values rarely repeat; trying costs ~30% of the write of a packet-derived flow table."""
    return [f.name for f in schema if not pa.types.is_floating(f.type) and f.name not in UNIQUE_COLUMNS]


# Min/max statistics of free text (addresses, names) prune next to nothing and cost
# some 10-15% of a flow part's encoding (a noisy micro-benchmark); numbers and times
# keep theirs.
STATISTICS_TYPES = (pa.types.is_integer, pa.types.is_timestamp, pa.types.is_floating, pa.types.is_boolean)


def _write_options(schema: pa.Schema) -> dict:
    return {
        "compression": "zstd",
        "use_dictionary": _dictionary_columns(schema),
        "write_statistics": [f.name for f in schema if any(is_type(f.type) for is_type in STATISTICS_TYPES)],
        # the Arrow schema is not stored: a one-value source_file column is written as
        # a dictionary (see `_one_value`) and must still read back as plain text
        "store_schema": False,
    }


def _one_value(value: str, rows: int) -> pa.DictionaryArray:
    """`rows` times `value`, as a dictionary of one: no text copied per row, and the
    Parquet writer takes it as it is instead of hashing every row's copy."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array([value], pa.string()))


class _Stopped(Exception):
    """The ingest was abandoned: the writing thread drops what it holds."""


class InputWriter:
    """Writes the batches of one input file into day partitions, named after its hash.

    `write` hands a batch to a writing thread (through a short queue, so the reader
    waits when the writer lags and memory stays flat) and returns; the thread casts,
    splits by day, gathers rows per partition and hands parts of up to PART_ROWS rows
    to ENCODERS encoding threads; it commits the encoded parts in order (renamed from
    their hidden temporary names, `on_part`). Part names need the input's hash: until
    `identify` gives it (it is computed while the file is read), encoded parts are held
    in memory (up to PENDING_BYTES) and written after it; when the rows' source_file
    value is not known either, the thread gathers rows and waits for `identify` before
    its first part. `close` waits for the last file and raises what the threads met;
    `abort` drops everything not yet written."""

    def __init__(self, ws: Workspace, sha256: str | None, source: str,
                 on_part: Callable[[Path], None] | None = None, source_file: str | None = None):
        self.ws, self.source = ws, partition_value(source)
        self.sha256 = self.prefix = None
        self.source_file = source_file  # when set, the value of every row's source_file column
        self.parts = 0
        self.rows: dict[str, int] = {}
        self.on_part = on_part  # called after each part file (progress, tests), in the writing thread
        self._queue: queue.Queue = queue.Queue(QUEUE_BATCHES)
        self._identified = threading.Event()
        self._awaiting = threading.Event()  # the thread waits for `identify`
        self._stopping = False
        self._error: BaseException | None = None
        self._buffers: dict[tuple[str, Path], list[pa.Table]] = {}
        self._buffered: dict[tuple[str, Path], tuple[int, int]] = {}  # rows, bytes
        self._encoders = ThreadPoolExecutor(ENCODERS, thread_name_prefix="minewatch-encode")
        self._encoding: deque[Future] = deque()  # parts being encoded, in part order
        self._pending: list[tuple[Path, int, pa.Buffer]] = []  # encoded before the hash was known
        self._named_rows = False  # parts were encoded with self.source_file
        if sha256 is not None:
            self.identify(sha256, source_file)
        self._thread = threading.Thread(target=self._run, name="minewatch-writer", daemon=True)
        self._thread.start()

    def identify(self, sha256: str, source_file: str | None = None) -> None:
        """The input's hash and the rows' source_file value (None: the rows carry theirs).
        A value given at creation must not change: parts may be encoded with it."""
        if self._named_rows and source_file != self.source_file:
            self._error = RuntimeError(f"source_file changed after parts were encoded: {source_file}")
            self._stopping = True
        self.sha256, self.prefix, self.source_file = sha256, sha256[:SHA_PREFIX], source_file
        self._identified.set()

    def waits_for_identity(self) -> bool:
        """True when the writing thread cannot go on before `identify`."""
        return self.sha256 is None and self._awaiting.is_set()

    def write(self, table_name: str, batch: pa.RecordBatch | pa.Table,
              identify: Callable[[], None] | None = None) -> None:
        """Hand a batch to the writing thread; waits while it is busy. When it waits for
        `identify` meanwhile, `identify` is called (it must call `self.identify`)."""
        self._raise_error()
        if not batch.num_rows:
            return
        while True:
            try:
                self._queue.put((table_name, batch), timeout=0.05)
                return
            except queue.Full:
                self._raise_error()
                if identify is not None and self.waits_for_identity():
                    identify()

    def close(self) -> None:
        """Write what is gathered, wait for the thread; raises its error if it met one."""
        self._queue.put(None)
        self._thread.join()
        self._raise_error()

    def abort(self) -> None:
        """Stop without writing more (files already renamed stay: the caller removes them)."""
        self._stopping = True
        self._identified.set()
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        item = ()
        try:
            while (item := self._queue.get()) is not None:
                if not self._stopping:
                    self._add(*item)
            if not self._stopping:
                for key in sorted(self._buffers, key=str):
                    self._flush(key)
                self._commit(until=0)
                self._wait_identified()
                self._store_pending()
        except _Stopped:
            pass
        except OSError as exc:
            where = exc.filename or self.ws.tables_dir
            self._error = WorkspaceWriteError(f"cannot write to the workspace: {where}: {exc.strerror or exc}")
        except BaseException as exc:  # re-raised in the caller's thread
            self._error = exc
        finally:
            self._stopping = self._stopping or self._error is not None
            self._encoders.shutdown(wait=True, cancel_futures=True)
            for future in self._encoding:  # encoded, never committed: hidden files to drop
                if not future.cancelled() and future.exception() is None:
                    _, _, content = future.result()
                    if isinstance(content, Path):
                        content.unlink(missing_ok=True)
        while item is not None:  # keep taking, so that a caller never blocks on a full queue
            item = self._queue.get()

    def _add(self, table_name: str, batch: pa.RecordBatch | pa.Table) -> None:
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        schema = stored_schema(table_name)
        table = table.select(schema.names).cast(schema)
        if table_name == "evidence":
            for detector in pc.unique(table.column("detector")).to_pylist():
                subset = table.filter(pc.equal(table.column("detector"), detector))
                self._add_days(subset, self.ws.detector_dir(detector), "evidence")
        else:
            self._add_days(table, self.ws.tables_dir / table_name / f"source={self.source}", table_name)
        self.rows[table_name] = self.rows.get(table_name, 0) + table.num_rows

    def _add_days(self, table: pa.Table, base: Path, table_name: str) -> None:
        days = day_numbers(table.column(TIME_COLUMN.get(table_name, "ts")))
        distinct = days[:1] if len(days) and days.min() == days.max() else np.unique(days)  # mostly one day
        for day in distinct:
            part = table if len(distinct) == 1 else table.filter(pa.array(days == day))
            key = (table_name, base / f"day={day_name(day)}")
            self._buffers.setdefault(key, []).append(part)
            rows, size = self._buffered.get(key, (0, 0))
            rows, size = rows + part.num_rows, size + part.get_total_buffer_size()
            self._buffered[key] = rows, size
            if rows >= PART_ROWS or size >= PART_BYTES:
                self._flush(key)
        while sum(size for _, size in self._buffered.values()) > BUFFERED_BYTES:
            self._flush(max(self._buffered, key=lambda k: self._buffered[k][1]))

    def _wait_identified(self) -> None:
        if not self._identified.is_set():
            self._awaiting.set()
            self._identified.wait()
        if self._stopping:
            raise _Stopped

    def _flush(self, key: tuple[str, Path]) -> None:
        """Encode one partition's gathered rows as a part; store it once the hash is known."""
        _, folder = key
        pieces = self._buffers.pop(key)
        self._buffered.pop(key)
        if self.source_file is None:
            self._wait_identified()  # the rows' source_file value comes with the hash
        if self._stopping:
            raise _Stopped
        table = pa.concat_tables(pieces)
        if self.source_file is not None and "source_file" in table.schema.names:
            index = table.schema.get_field_index("source_file")
            self._named_rows = True
            table = table.set_column(index, pa.field("source_file", pa.dictionary(pa.int32(), pa.string()), False),
                                     _one_value(self.source_file, table.num_rows))
        number, self.parts = self.parts, self.parts + 1
        self._encoding.append(self._encoders.submit(self._encode, folder, number, table))
        self._commit(until=ENCODERS)

    def _encode(self, folder: Path, number: int, table: pa.Table) -> tuple[Path, int, Path | pa.Buffer]:
        """In an encoding thread: the part as a hidden file when its name is known, else
        in memory."""
        if self._stopping:
            raise _Stopped
        if self._identified.is_set():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{self._part_name(number)}.tmp"
            pq.write_table(table, tmp, **_write_options(table.schema))
            return folder, number, tmp
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **_write_options(table.schema))
        return folder, number, sink.getvalue()

    def _commit(self, until: int) -> None:
        """Commit encoded parts in order until at most `until` are in flight (each waits
        for its encoding); a part encoded in memory waits for the hash."""
        while len(self._encoding) > until or (self._encoding and self._encoding[0].done()):
            folder, number, content = self._encoding.popleft().result()
            if isinstance(content, Path):
                self._store_pending()
                self._rename(folder, number, content)
            else:
                self._pending.append((folder, number, content))
        if self._pending and self._identified.is_set():
            self._store_pending()
        elif sum(data.size for _, _, data in self._pending) > PENDING_BYTES:
            self._wait_identified()
            self._store_pending()

    def _store_pending(self) -> None:
        """Write the parts encoded before the hash was known (the thread knows it now)."""
        while self._pending:
            folder, number, data = self._pending.pop(0)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{self._part_name(number)}.tmp"
            with open(tmp, "wb") as out:
                out.write(data)
            self._rename(folder, number, tmp)

    def _part_name(self, number: int) -> str:
        return f"part-{self.prefix}-{number:05d}.parquet"

    def _rename(self, folder: Path, number: int, tmp: Path) -> None:
        if self._stopping:
            tmp.unlink(missing_ok=True)
            raise _Stopped
        os.replace(tmp, folder / self._part_name(number))
        if self.on_part:
            self.on_part(folder / self._part_name(number))


def write_rejects(ws: Workspace, sha256: str, rejects: Iterable, not_kept: int, source_file: str) -> int:
    """One JSON line per rejected record (file, line, reason, raw); a last line counts those
    whose text was not kept. Returns lines written; writes nothing when there is nothing."""
    target = ws.rejects_path(sha256)
    tmp = target.with_suffix(".jsonl.tmp")
    lines = 0
    with open(tmp, "w", encoding="utf-8") as out:
        for r in rejects:
            out.write(json.dumps({"file": r.source_file, "line": r.line, "reason": r.reason, "raw": r.raw},
                                 ensure_ascii=False) + "\n")
            lines += 1
        if not_kept:
            out.write(json.dumps({"file": source_file, "line": None,
                                  "reason": f"{not_kept} more rejected records (counted; text not kept)",
                                  "raw": ""}) + "\n")
            lines += 1
    if lines:
        os.replace(tmp, target)
    else:
        tmp.unlink()
    return lines


def empty_table(table: str) -> pa.Table:
    return (EVIDENCE if table == "evidence" else stored_schema(table)).empty_table()

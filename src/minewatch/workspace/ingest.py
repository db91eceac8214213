"""`minewatch ingest`: input files -> day partitions of the canonical tables.

Idempotent by content: a file whose sha256 the catalogue lists as done adds nothing.
Resumable: a file left `started` (the process was killed) or `failed` is cleaned up and
read again. Captures also go through the packet detectors here, since the payload
heads they need are not stored; their evidence lands in the evidence table.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from minewatch.detect import Context, load_all
from minewatch.errors import InputError
from minewatch.sources import ReadStats, sha256_file
from minewatch.sources._records import Reject, SourceStats
from minewatch.sources.detect_format import detect_format
from minewatch.workspace.catalogue import Catalogue
from minewatch.workspace.store import InputWriter, Workspace, WorkspaceWriteError, write_rejects

GENERIC_TABLES = ("csv", "parquet")


@dataclass
class FileResult:
    path: str
    sha256: str | None = None
    format: str | None = None
    status: str = ""  # ingested | redone | skipped (already done) | ignored (not an input, in a folder) | failed
    accepted: int = 0
    rejected: int = 0
    tables: dict = field(default_factory=dict)  # table -> rows written
    reasons: Counter = field(default_factory=Counter)  # reject reason -> count
    notes: list = field(default_factory=list)
    error: str | None = None
    rejects_file: str | None = None


@dataclass
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    detector_errors: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)


@dataclass
class IngestOptions:
    mapping: dict | None = None  # column mapping for generic CSV / Parquet tables
    naive_tz: str = "UTC"
    ctx: Context | None = None  # intel for the packet detectors
    on_part: Callable[[Path], None] | None = None  # after each Parquet part file


def expand_paths(paths: list[str]) -> list[tuple[str, bool]]:
    """(path, found in a folder) for the files named and every non-hidden file under the
    folders named (recursively, sorted). A workspace met in a folder (the one being
    written, say, when a run ingests `.`) is listed as itself, not walked: its Parquet
    parts would be read back as new flows."""
    out: list[tuple[str, bool]] = []
    for p in paths:
        if Path(p).is_dir():
            if Workspace(p).exists:
                out.append((p, False))
                continue
            for root, dirs, files in os.walk(p):
                inner = sorted(d for d in dirs if not d.startswith("."))
                workspaces = {d for d in inner if Workspace(os.path.join(root, d)).exists}
                out.extend((os.path.join(root, d), True) for d in inner if d in workspaces)
                dirs[:] = [d for d in inner if d not in workspaces]
                out.extend((os.path.join(root, f), True) for f in sorted(files) if not f.startswith("."))
        else:
            out.append((p, False))
    return out


def ingest(ws: Workspace, paths: list[str], options: IngestOptions | None = None,
           on_file: Callable[[FileResult], None] | None = None) -> IngestReport:
    options = options or IngestOptions()
    ws.create()
    report = IngestReport()
    with _reusing_allocator(), Catalogue(ws.catalogue_path) as cat:
        for path, in_folder in expand_paths(paths):
            result = ingest_file(ws, cat, path, options, report.detector_errors, in_folder)
            report.files.append(result)
            if on_file:
                on_file(result)
    return report


@contextmanager
def _reusing_allocator() -> Iterator[None]:
    """Arrow's default allocator (mimalloc) hands freed memory back to the system at
    once, so every batch and Parquet part faults in fresh zeroed pages: ~10% of an
    ingest's CPU time. jemalloc keeps them for reuse. An allocator chosen with
    ARROW_DEFAULT_MEMORY_POOL is left as it is."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        yield
        return
    try:
        pool = pa.jemalloc_memory_pool()
    except NotImplementedError:  # a pyarrow built without it
        yield
        return
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


class _AlreadyDone(Exception):
    """The catalogue lists the file's content as ingested: nothing to add."""


class _Entry:
    """One input's place in the catalogue. Its hash is computed in a thread from the
    start, while the file is read; `start` waits for it, then skips a content already
    done, undoes what an interrupted run left, and writes the `started` row."""

    def __init__(self, ws: Workspace, cat: Catalogue, path: str, size: int, result: FileResult):
        self.ws, self.cat, self.path, self.size, self.result = ws, cat, path, size, result
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="minewatch-hash")
        self._hashing = self._pool.submit(sha256_file, path)
        self.started = False
        self.source_file: str | None = None
        self.name = str(Path(path).resolve())  # the rows' source_file, unless another content has it

    def hashed(self) -> bool:
        return self._hashing.done()

    def start(self) -> str:
        """The source_file value for the file's rows; raises _AlreadyDone."""
        result = self.result
        try:
            result.sha256 = sha = self._hashing.result()
        except OSError as exc:  # the file went away or became unreadable while hashed
            raise InputError(self.path, exc.strerror or str(exc)) from None
        previous = self.cat.file(sha)
        if previous is not None and previous.status == "done":
            result.format = previous.format
            raise _AlreadyDone(f"already ingested as {previous.path}")
        result.status = "ingested" if previous is None else "redone"
        if previous is not None:  # interrupted or failed before: undo what it left, then redo
            self.ws.remove_input(sha)
        source_file = self.name
        if self.cat.source_file_taken(source_file, sha):  # same name, other content (a rotated log)
            source_file = f"{source_file}#sha256:{sha[:16]}"
        self.cat.start_file(sha, self.path, source_file, self.size, result.format)
        self.started, self.source_file = True, source_file
        return source_file

    def early_source_file(self) -> str | None:
        """The rows' source_file value before the hash is known, when the hash cannot
        change it (no input was stored under this name yet); else None."""
        return None if self.cat.source_file_taken(self.name, "") else self.name  # "": no hash, so any input

    def fail(self, error: str) -> None:
        """Undo what the input wrote and say why in the catalogue (nothing of it is kept)."""
        if not self.started:
            try:
                self.start()
            except InputError:  # not even hashed: nothing in the catalogue
                pass
        result = self.result
        result.status, result.error, result.tables, result.accepted = "failed", error, {}, 0
        if self.started:
            self.ws.remove_input(result.sha256)
            self.cat.fail_file(result.sha256, error, result.rejected)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def ingest_file(ws: Workspace, cat: Catalogue, path: str, options: IngestOptions,
                detector_errors: list[str], in_folder: bool = False) -> FileResult:
    """Ingest one file. A file met while walking a folder that is of no known input format
    (a README, a list) is ignored and counted; named explicitly, it fails."""
    result = FileResult(path)
    if Path(path).is_dir() and Workspace(path).exists:
        what = "a minewatch workspace, not an input (name its tables/<table> folder to read them)"
        result.status, result.error = ("ignored", what) if in_folder else ("failed", f"{path}: {what}")
        return result
    try:
        if Path(path).is_dir():
            raise IsADirectoryError(21, "is a directory")
        size = Path(path).stat().st_size
        open(path, "rb").close()
    except OSError as exc:
        result.status, result.error = "failed", f"{path}: {exc.strerror or exc}"
        return result
    try:
        result.format, format_error = detect_format(path), None
    except InputError as exc:
        format_error = exc
        if in_folder:
            result.status, result.error = "ignored", exc.reason
            return result
    entry = _Entry(ws, cat, path, size, result)
    try:
        return _ingest_entry(entry, path, options, detector_errors, format_error)
    except _AlreadyDone as done:  # whatever was read meanwhile is dropped
        result.status, result.notes, result.tables = "skipped", [str(done)], {}
        result.accepted = result.rejected = 0
        result.reasons, result.rejects_file = Counter(), None
        return result
    finally:
        entry.close()


def _ingest_entry(entry: _Entry, path: str, options: IngestOptions, detector_errors: list[str],
                  format_error: InputError | None) -> FileResult:
    result = entry.result
    # Reading starts before the hash is known unless the content may well be in the
    # catalogue already (a file of the same size is), or a capture (evidence rows carry it).
    overlap = format_error is None and result.format != "pcap" and not entry.cat.done_with_size(entry.size)
    try:
        source_file = None if overlap else entry.start()
    except InputError as exc:
        result.status, result.error = "failed", str(exc)
        return result
    if overlap:  # known early, the writer encodes parts while the hash is computed
        source_file = entry.early_source_file()
    writer = InputWriter(entry.ws, result.sha256, result.format or "unknown", options.on_part,
                         source_file if result.format != "pcap" else None)  # capture rows carry it
    try:
        if format_error is not None:
            raise format_error
        if result.format == "pcap":
            _ingest_capture(path, source_file, result.sha256, writer, options, result, detector_errors)
        else:
            _ingest_records(path, entry, writer, options, result)
        writer.close()
    except _AlreadyDone:
        writer.abort()
        raise
    except InputError as exc:
        writer.abort()
        entry.fail(str(exc))
        return result
    except WorkspaceWriteError as exc:
        writer.abort()
        entry.fail(f"{path}: {exc}")
        return result
    except Exception as exc:  # a reader bug must not stop the other files
        writer.abort()
        entry.fail(f"{path}: internal error while reading: {exc!r}")
        return result
    except BaseException:  # interrupted: the `started` row makes the next run undo it
        writer.abort()
        raise
    result.tables = dict(writer.rows)
    entry.cat.finish_file(result.sha256, result.accepted, result.rejected, result.tables, result.notes)
    return result


def _with_source(batch: pa.RecordBatch, source_file: str) -> pa.RecordBatch:
    """The stored source_file names the input unambiguously (absolute, hash-tagged if reused)."""
    index = batch.schema.get_field_index("source_file")
    return batch.set_column(index, batch.schema.field(index), pa.repeat(source_file, batch.num_rows))


def _record_batches(path: str, fmt: str, stats: SourceStats, options: IngestOptions) -> Iterator:
    if fmt == "zeek":
        from minewatch.sources.zeek import read_zeek
        return read_zeek(path, stats=stats)
    if fmt == "suricata":
        from minewatch.sources.suricata import read_suricata
        return read_suricata(path, stats=stats)
    if fmt in ("nfcapd", "nfdump-csv"):
        from minewatch.sources.nfdump import read_nfdump
        return read_nfdump(path, stats=stats, naive_tz=options.naive_tz)
    if fmt == "dnslog":
        from minewatch.sources.dnslog import read_dnslog
        return read_dnslog(path, stats=stats, naive_tz=options.naive_tz)
    if fmt in GENERIC_TABLES:  # without a mapping: the columns with canonical names
        from minewatch.sources.tabular import read_tabular
        return read_tabular(path, options.mapping, stats=stats, naive_tz=options.naive_tz)
    raise InputError(path, f"no reader for format {fmt}")


def _ingest_records(path: str, entry: _Entry, writer: InputWriter, options: IngestOptions,
                    result: FileResult) -> None:
    """Batches go to the writer as they come; it learns the file's hash and stored name
    (`identify`) as soon as the hash is done, and writes no part file before."""
    stats = SourceStats(path)
    try:
        identify = partial(_identify, writer, entry)
        for table_name, batch in _record_batches(path, result.format, stats, options):
            if writer.sha256 is None and entry.hashed():
                identify()
            writer.write(table_name, batch, identify=identify)
        if writer.sha256 is None:
            _identify(writer, entry)
    finally:
        result.accepted, result.rejected = stats.accepted_total, stats.rejected_total
        result.reasons = Counter(stats.rejected)
        result.notes.extend(stats.notes)
        if stats.ignored:
            result.notes.append("ignored " + ", ".join(f"{n} {k}" for k, n in stats.ignored.most_common()))
        if stats.adjusted:
            result.notes.append("adjusted " + ", ".join(f"{n} {k}" for k, n in stats.adjusted.most_common()))
    source_file = entry.source_file
    rejects = [Reject(source_file, r.line, r.reason, r.raw) for r in stats.rejects]
    if write_rejects(writer.ws, writer.sha256, rejects, stats.rejects_not_kept, source_file):
        result.rejects_file = str(writer.ws.rejects_path(writer.sha256))


def _identify(writer: InputWriter, entry: _Entry) -> None:
    source_file = entry.start()
    writer.identify(entry.result.sha256, source_file)


def _capture_batches(path: str, stats: ReadStats) -> Iterator[pa.RecordBatch]:
    from minewatch.sources.pcap import UnsupportedCapture, read_pcap

    try:
        yield from read_pcap(path, stats=stats)
        return
    except UnsupportedCapture:
        stats.packets_skipped.clear()
    from minewatch.sources.nfstream_source import read_nfstream

    yield from read_nfstream(path, stats=stats)


def _ingest_capture(path: str, source_file: str, sha: str, writer: InputWriter, options: IngestOptions,
                    result: FileResult, detector_errors: list[str]) -> None:
    from minewatch.evidence import detect_flows

    ctx = options.ctx or Context()
    detectors = list(load_all().values())
    stats = ReadStats(path)
    for batch in _capture_batches(path, stats):
        batch = _with_source(batch, source_file)
        writer.write("evidence", detect_flows(batch, detectors, ctx, sha, detector_errors))
        writer.write("flows", batch)
    result.accepted = stats.flows
    for reason, n in stats.packets_skipped.most_common():
        result.notes.append(f"{n} packets skipped: {reason}")
    if stats.error:  # a capture cut short: the flows before the cut are kept
        result.rejected = 1
        result.reasons = Counter({stats.error: 1})
        write_rejects(writer.ws, writer.sha256, [Reject(source_file, 0, stats.error, "")], 0, source_file)
        result.rejects_file = str(writer.ws.rejects_path(sha))

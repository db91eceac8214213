"""Shared machinery of the record readers (Zeek, Suricata, nfdump, resolver logs, tables).

- `SourceStats`: what one file gave, per table, and every rejected record with its
  position and reason (kept so the caller can write a rejects file).
- `RowBatcher`: collects Python rows of one canonical schema and cuts them into
  record batches of a bounded size (for the line-oriented readers).
- Vectorised converters for the columnar readers (CSV/Parquet): string columns in,
  typed columns plus a mask of the rows that could not be converted out.
- Scalar helpers: timestamps, protocol names, TCP flag strings.
- Pieces and threads: `line_pieces` cuts a stream at line ends, `ordered_map` runs a
  worker per piece in threads (pyarrow releases the GIL) and gives results in order,
  `ArrowBatcher` cuts what comes back into batches of at most `batch_rows`.
"""

from __future__ import annotations

import gzip
import ipaddress
import math
import os
import re
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from minewatch.errors import InputError
from minewatch.schema.flows import TS

try:
    from minewatch.sources import _fastcsv
except ImportError:  # not built: addresses are checked with the ipaddress module
    _fastcsv = None

BATCH_ROWS = 65536
MAX_KEPT_REJECTS = 100_000  # raw rejected records kept in memory; counts are always exact
MAX_RAW_CHARS = 2000  # a rejected record's text is cut to this length

Batch = tuple[str, pa.RecordBatch]  # (canonical table name, batch)


@dataclass
class Reject:
    source_file: str
    line: int  # 1-based line (or record) number in the file; 0 when not known
    reason: str
    raw: str

    def __str__(self) -> str:
        return f"{self.source_file}:{self.line}: {self.reason}"


@dataclass
class SourceStats:
    """Per-file bookkeeping of a record reader."""

    path: str
    reader: str = ""  # which reader handled the file (zeek-tsv, suricata, nfdump-csv, ...)
    accepted: Counter = field(default_factory=Counter)  # table -> rows
    rejected: Counter = field(default_factory=Counter)  # reason -> records
    ignored: Counter = field(default_factory=Counter)  # kind -> records read on purpose but not used
    adjusted: Counter = field(default_factory=Counter)  # what was changed -> records kept with a value changed
    rejects: list[Reject] = field(default_factory=list)
    rejects_not_kept: int = 0  # rejected beyond MAX_KEPT_REJECTS (counted, raw text not kept)
    notes: list[str] = field(default_factory=list)  # assumptions taken (year, time zone, truncation)

    def reject(self, line: int, reason: str, raw: str | bytes = "", detail: str = "") -> None:
        """Count `reason`; keep the record with `reason: detail` (the offending value, say),
        so that the counts stay per kind of fault while each record says what was wrong."""
        self.rejected[reason] += 1
        if len(self.rejects) >= MAX_KEPT_REJECTS:
            self.rejects_not_kept += 1
            return
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if detail:
            reason = f"{reason}: {detail}"
        self.rejects.append(Reject(self.path, line, reason, raw.rstrip("\r\n")[:MAX_RAW_CHARS]))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def ignore(self, kind: str, n: int = 1) -> None:
        self.ignored[kind] += n

    def adjust(self, what: str, n: int = 1) -> None:
        """Count records kept with a value changed (`what` says which and how)."""
        self.adjusted[what] += n

    def absorb(self, other: "SourceStats") -> None:
        """Add what a worker counted on its own (one chunk of the file) to these stats."""
        self.accepted.update(other.accepted)
        self.rejected.update(other.rejected)
        self.ignored.update(other.ignored)
        self.adjusted.update(other.adjusted)
        room = max(0, MAX_KEPT_REJECTS - len(self.rejects))
        self.rejects.extend(other.rejects[:room])
        self.rejects_not_kept += other.rejects_not_kept + max(0, len(other.rejects) - room)
        for text in other.notes:
            self.note(text)

    @property
    def accepted_total(self) -> int:
        return sum(self.accepted.values())

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def summary(self) -> str:
        parts = [f"{self.path}: read {self.accepted_total} ({', '.join(f'{t} {n}' for t, n in sorted(self.accepted.items())) or 'nothing'})"]
        if self.rejected:
            parts.append("rejected " + ", ".join(f"{n} {r}" for r, n in self.rejected.most_common()))
        if self.ignored:
            parts.append("ignored " + ", ".join(f"{n} {k}" for k, n in self.ignored.most_common()))
        if self.adjusted:
            parts.append("adjusted " + ", ".join(f"{n} {k}" for k, n in self.adjusted.most_common()))
        return "; ".join(parts + self.notes)


class RowBatcher:
    """Collects rows (dicts keyed by column) of one canonical table; yields full batches."""

    def __init__(self, table: str, schema: pa.Schema, stats: SourceStats, batch_rows: int = BATCH_ROWS):
        self.table, self.schema, self.stats, self.batch_rows = table, schema, stats, batch_rows
        self.columns: dict[str, list] = {name: [] for name in schema.names}
        self.rows = 0

    def add(self, row: dict) -> Batch | None:
        for name, values in self.columns.items():
            values.append(row.get(name))
        self.rows += 1
        return self.flush() if self.rows >= self.batch_rows else None

    def flush(self) -> Batch | None:
        if not self.rows:
            return None
        arrays = [pa.array(self.columns[f.name], type=f.type) for f in self.schema]
        batch = pa.RecordBatch.from_arrays(arrays, schema=self.schema)
        self.stats.accepted[self.table] += self.rows
        self.columns = {name: [] for name in self.schema.names}
        self.rows = 0
        return (self.table, batch)


class PieceJoiner:
    """Puts back together the tables of a file read in pieces (in file order): each
    piece's line-relative record numbers and reject lines are shifted by the lines read
    before it, and rows are re-batched per table."""

    def __init__(self, stats: SourceStats, batch_rows: int = BATCH_ROWS):
        self.stats, self.batch_rows = stats, batch_rows
        self.batchers: dict[str, ArrowBatcher] = {}
        self.lines_before = 0

    def add(self, tables, piece_stats: SourceStats | None, piece_lines: int) -> Iterator[Batch]:
        before = self.lines_before
        if piece_stats is not None:
            for reject in piece_stats.rejects:
                reject.line += before
            self.stats.absorb(piece_stats)
        for table, batch in tables:
            index = batch.schema.get_field_index("flow_ref" if table == "flows" else "record_ref")
            shifted = pc.add(batch.column(index), pa.scalar(before, pa.int64()))
            batch = batch.set_column(index, batch.schema.field(index), shifted)
            batcher = self.batchers.get(table)
            if batcher is None:
                batcher = self.batchers[table] = ArrowBatcher(table, self.stats, self.batch_rows)
            yield from batcher.add(batch)
        self.lines_before += piece_lines

    def finish(self, errors: list[str]) -> Iterator[Batch]:
        if errors:
            self.stats.reject(self.lines_before + 1, "compressed file cut short or corrupt", errors[0])
        for batcher in self.batchers.values():
            yield from batcher.flush()


class ArrowBatcher:
    """Collects record batches of one table and yields batches of at most `batch_rows`.
    Big batches are only sliced (no copy); small ones are gathered until they make a
    quarter of `batch_rows`, so that no stream of tiny batches comes out. Counts accepted rows."""

    def __init__(self, table: str, stats: SourceStats, batch_rows: int = BATCH_ROWS):
        self.table, self.stats, self.batch_rows = table, stats, batch_rows
        self.pending: list[pa.RecordBatch] = []
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> Iterator[Batch]:
        if batch.num_rows:
            self.pending.append(batch)
            self.rows += batch.num_rows
        if self.rows >= max(1, self.batch_rows // 4):
            yield from self.flush()

    def flush(self) -> Iterator[Batch]:
        if not self.rows:
            return
        if len(self.pending) == 1:
            whole = self.pending[0]
        else:
            whole = pa.Table.from_batches(self.pending).combine_chunks().to_batches()[0]
        self.pending, self.rows = [], 0
        for start in range(0, whole.num_rows, self.batch_rows):
            part = whole.slice(start, self.batch_rows)
            self.stats.accepted[self.table] += part.num_rows
            yield (self.table, part)


class Batchers:
    """One RowBatcher per table, created on first use."""

    def __init__(self, schemas: dict[str, pa.Schema], stats: SourceStats, batch_rows: int = BATCH_ROWS):
        self.schemas, self.stats, self.batch_rows = schemas, stats, batch_rows
        self.by_table: dict[str, RowBatcher] = {}

    def add(self, table: str, row: dict) -> Batch | None:
        batcher = self.by_table.get(table)
        if batcher is None:
            batcher = self.by_table[table] = RowBatcher(table, self.schemas[table], self.stats, self.batch_rows)
        return batcher.add(row)

    def flush_all(self) -> Iterator[Batch]:
        for batcher in self.by_table.values():
            if (out := batcher.flush()) is not None:
                yield out


# ---------------------------------------------------------------- files and lines


def open_input(path: str | Path):
    """Open a file for reading (gzip is decompressed on the fly; a UTF-8 byte-order mark,
    as Windows tools write one, is skipped) or raise InputError (missing, a directory,
    unreadable)."""
    try:
        f = open(path, "rb")
        if f.read(2) == b"\x1f\x8b":
            f.close()
            f = gzip.open(path, "rb")
        f.seek(0)
        if f.read(3) != b"\xef\xbb\xbf":
            f.seek(0)
        return f
    except IsADirectoryError:
        raise InputError(path, "is a directory, not a file") from None
    except OSError as e:
        raise InputError(path, e.strerror or str(e)) from None


CHUNK_BYTES = 4 << 20  # text handed to one worker at a time
WORKERS = max(1, min(4, os.cpu_count() or 1))


def skip_lines(stream, count: int) -> int:
    """Read past `count` lines (a header); returns how many there were."""
    for done in range(count):
        if not stream.readline():
            return done
    return count


def line_pieces(stream, chunk_bytes: int | None = None, errors: list | None = None,
                slots: int | None = None) -> Iterator[memoryview]:
    """Consecutive pieces of a text stream, each cut after a newline so that every line
    lies in one piece (the last piece may lack its final newline). Each piece is read
    straight into a buffer (no copy of the text); the reader counts lines itself, from
    what its parser saw, so nothing here scans the text but for the last newline.
    A corrupt or cut gzip stream ends the pieces; the error is appended to `errors`.

    With `slots`, pieces are read into a ring of that many reused buffers (no fresh
    allocation and page faults per piece): a piece's memory is overwritten `slots`
    pieces later, so the caller must be done with it by then — `ordered_map(...,
    ahead=slots - 2)` guarantees it, as long as what a worker returns holds no view of
    its piece (pyarrow.csv copies). Without, every piece has its own buffer."""
    size = chunk_bytes or CHUNK_BYTES
    ring: list[bytearray] = []
    carry = b""
    slot = 0
    while True:
        need = len(carry) + size
        if slots is None:
            buffer = bytearray(need)
        else:
            if slot == len(ring):
                ring.append(bytearray(need))
            elif len(ring[slot]) < need:  # a long line was carried over
                ring[slot] = bytearray(need)
            buffer = ring[slot]
        buffer[:len(carry)] = carry
        end = len(carry) + _fill(stream, memoryview(buffer)[len(carry):need], errors)
        if end == len(carry):  # the end of the stream
            if carry:
                yield memoryview(carry)
            return
        cut = buffer.rfind(b"\n", 0, end) + 1
        if cut == 0:  # one very long line: read on
            carry = bytes(buffer[:end])
            continue
        carry = bytes(buffer[cut:end])
        yield memoryview(buffer)[:cut]
        if slots is not None:
            slot = (slot + 1) % slots


def _fill(stream, view: memoryview, errors: list | None) -> int:
    """Read into `view` until it is full or the stream ends; the count of bytes read."""
    done = 0
    while done < len(view):
        try:
            got = stream.readinto(view[done:])
        except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
            if errors is None:
                raise
            errors.append(str(e) or type(e).__name__)
            return done
        if not got:
            break
        done += got
    return done


def piece_has(piece: memoryview, needle: bytes) -> bool:
    """`needle in piece` at C speed (a memoryview's own `in` goes item by item); pieces
    from `line_pieces` always start at the beginning of their bytes object."""
    return piece.obj.find(needle, 0, piece.nbytes) >= 0


def ordered_map(function, items: Iterable, workers: int = WORKERS, ahead: int | None = None) -> Iterator:
    """function(item) for each item, run in `workers` threads (pyarrow parsing and
    compute release the GIL), results in the order of the items; at most `ahead` items
    are in flight, so memory stays bounded. Stopping early cancels what is queued."""
    if workers <= 1:
        yield from map(function, items)
        return
    ahead = ahead or workers + 1
    pending: deque[Future] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minewatch-read")
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


_CONTROL_BYTES = bytes([*range(9), *range(14, 32)])


def looks_binary(head: bytes) -> bool:
    """True for bytes that are not text: NULs or many control bytes."""
    if not head:
        return False
    if b"\x00" in head:
        return True
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return controls > len(head) // 20


def text_lines(path: str | Path, stats: SourceStats) -> Iterator[tuple[int, str]]:
    """(line number, text without end of line) for each line; lines not valid UTF-8 are
    decoded with replacement characters. A binary file raises InputError."""
    with open_input(path) as f:
        start = f.tell()  # after a byte-order mark
        head = f.read(4096)
        if looks_binary(head):
            raise InputError(path, "binary data, not a text log", "byte 0")
        f.seek(start)
        for number, raw in enumerate(_safe_lines(f, stats), start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", "replace")
            yield number, text.rstrip("\r\n")


def _safe_lines(f, stats: SourceStats) -> Iterator[bytes]:
    """Lines of a file; a corrupt or cut gzip stream ends the file, counted as a reject."""
    number = 0
    try:
        for number, line in enumerate(f, start=1):
            yield line
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        stats.reject(number + 1, "compressed file cut short or corrupt", str(e))


def too_broken(stats: SourceStats, path: str | Path, what: str) -> None:
    """A file of which nothing was usable and most was rejected is the wrong kind of file."""
    if stats.accepted_total == 0 and stats.rejected_total > 0:
        top, _ = stats.rejected.most_common(1)[0]
        first = stats.rejects[0] if stats.rejects else None
        where = f"line {first.line}" if first else None
        raise InputError(path, f"not a {what}: no record could be read ({stats.rejected_total} rejected, mostly: {top})", where)


# ---------------------------------------------------------------- scalar conversions

PORT_PROTOCOLS = frozenset({6, 17, 132, 136})  # protocols whose flows have ports
L4_BY_NUMBER = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 51: "AH", 58: "ICMPv6", 132: "SCTP"}
PROTO_BY_NAME = {
    "icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51,
    "icmp6": 58, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132,
}
TCP_FLAG_BITS = {"C": 0x80, "E": 0x40, "U": 0x20, "A": 0x10, "P": 0x08, "R": 0x04, "S": 0x02, "F": 0x01}


def proto_number(value: str | int | None) -> int | None:
    """IP protocol number from a name (tcp, UDP, ICMP6, IPv6-ICMP) or a number."""
    if value is None:
        return None
    if isinstance(value, int):
        return value if 0 <= value <= 255 else None
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
        return number if number <= 255 else None
    return PROTO_BY_NAME.get(text.lower())


def l4_name(number: int | None) -> str | None:
    if number is None:
        return None
    return L4_BY_NUMBER.get(number, str(number))


def tcp_flags_value(text: str | int | None) -> int | None:
    """TCP flags from nfdump's letter string (`...A.R..`, `.AP.SF`), hex (`0x12`, `1b`
    as Suricata writes it) or a decimal number."""
    if text is None:
        return None
    if isinstance(text, int):
        return text & 0xFF
    text = text.strip()
    if not text:
        return None
    if text.lower().startswith("0x"):
        return int(text, 16) & 0xFF
    if text.isdigit():
        return int(text) & 0xFF
    if set(text) <= set(TCP_FLAG_BITS) | {"."}:
        value = 0
        for ch in text:
            value |= TCP_FLAG_BITS.get(ch, 0)
        return value
    raise ValueError(f"bad TCP flags {text!r}")


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def epoch_to_us(value: float | int | str, unit: str = "s") -> int:
    """Microseconds since the epoch from a number of s/ms/us."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"bad time {value!r}")
    scale = {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    if isinstance(value, str) and unit == "s" and "." in value:
        whole, _, frac = value.strip().partition(".")  # exact, no float rounding
        sign = -1 if whole.startswith("-") else 1
        return int(whole) * 1_000_000 + sign * int((frac + "000000")[:6] or 0)
    return round(number * scale)


def iso_to_us(text: str, naive_tz: timezone = timezone.utc) -> int:
    """Microseconds since the epoch from ISO 8601 (`2021-06-06T15:59:46.457984+0200`,
    `...Z`, or without zone, which is taken in `naive_tz`)."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=naive_tz)
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def any_time_to_us(value) -> int:
    """Epoch seconds (number or numeric text) or ISO 8601 text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return epoch_to_us(value)
    if isinstance(value, str):
        stripped = value.strip()
        if _NUMBER.match(stripped):
            return epoch_to_us(stripped)
        return iso_to_us(stripped)
    raise ValueError(f"bad time {value!r}")


_NUMBER = re.compile(r"^-?\d+(\.\d*)?$")


def opt_int(value, low: int = 0, high: int = 1 << 62) -> int | None:
    """An int from a JSON/TSV value, None for missing; ValueError when it is not a count."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"not an integer: {value!r}")
        value = int(value)
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f"out of range: {value!r}")
    return number


def clean_domain(name: str | None) -> str | None:
    if name is None:
        return None
    name = name.strip().rstrip(".").lower()
    return name or None


# ---------------------------------------------------------------- vectorised conversions

TIME_UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1}
_INT_PATTERN = r"^\s*-?[0-9]+\s*$"
_NUM_PATTERN = r"^\s*-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?\s*$"


def _fill_bad(values: pa.Array, ok: pa.Array) -> pa.Array:
    """Null where `ok` is false, so a cast of the rest cannot fail."""
    return pc.if_else(ok, values, pa.scalar(None, values.type))


def as_strings(column: pa.Array) -> pa.Array:
    """A single array (not chunked)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column


def _is_text(column: pa.Array) -> bool:
    return pa.types.is_string(column.type) or pa.types.is_large_string(column.type)


def _no_bad(n: int) -> pa.Array:
    """n times False (built from zeroed bits: no per-value conversion)."""
    return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bytes((n + 7) // 8))])


def to_int_column(column: pa.Array, type_: pa.DataType) -> tuple[pa.Array, pa.Array]:
    """(typed column, bad mask). Empty text becomes null, not bad; padding is trimmed."""
    column = as_strings(column)
    if column.type == type_:  # every value fits
        return column, _no_bad(len(column))
    if pa.types.is_integer(column.type):
        ok = pc.fill_null(pc.and_(pc.greater_equal(column, _min_of(type_)), pc.less_equal(column, _max_of(type_))), True)
        return _fill_bad(column, ok).cast(type_), pc.invert(ok)
    if pa.types.is_floating(column.type):
        ok = pc.fill_null(pc.equal(pc.floor(column), column), True)
        return _fill_bad(column, ok).cast(type_, safe=False), pc.invert(ok)
    if not _is_text(column):
        raise TypeError(f"cannot read numbers from a {column.type} column")
    try:
        return column.cast(type_), _no_bad(len(column))  # the common case: clean digits
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    column = _empty_to_null(pc.utf8_trim_whitespace(column))
    ok = pc.fill_null(pc.match_substring_regex(column, _INT_PATTERN), True)
    numbers, overflow = _int64_or_overflow(_fill_bad(column, ok))
    in_range = pc.fill_null(pc.and_(pc.greater_equal(numbers, _min_of(type_)), pc.less_equal(numbers, _max_of(type_))), True)
    ok = pc.and_(pc.and_(ok, in_range), pc.invert(overflow))
    return _fill_bad(numbers, in_range).cast(type_), pc.invert(ok)


def _int64_or_overflow(column: pa.Array) -> tuple[pa.Array, pa.Array]:
    """int64 from integer text (nulls stay null), and the mask of values beyond int64
    (nulls in the result): a cast would fail on the whole column for one of them."""
    too_long = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(column)), 18), False)
    if not pc.any(too_long).as_py():
        return column.cast(pa.int64()), too_long
    values = column.to_pylist()
    overflow = np.zeros(len(values), bool)
    for index in np.flatnonzero(too_long.to_numpy(zero_copy_only=False)):
        number = int(values[index])
        overflow[index] = not -(1 << 63) <= number < (1 << 63)
        values[index] = None if overflow[index] else number
    numbers = pa.array([None if v is None else int(v) for v in values], pa.int64())
    return numbers, pa.array(overflow)


def _min_of(type_: pa.DataType) -> int:
    return 0 if pa.types.is_unsigned_integer(type_) else -(1 << (type_.bit_width - 1))


def _max_of(type_: pa.DataType) -> int:
    bits = type_.bit_width - (0 if pa.types.is_unsigned_integer(type_) else 1)
    return (1 << bits) - 1


def _empty_to_null(column: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column)


def to_float_column(column: pa.Array) -> tuple[pa.Array, pa.Array]:
    column = as_strings(column)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return column.cast(pa.float64()), _no_bad(len(column))
    try:
        return column.cast(pa.float64()), _no_bad(len(column))
    except pa.ArrowInvalid:
        pass
    column = _empty_to_null(pc.utf8_trim_whitespace(column))
    ok = pc.fill_null(pc.match_substring_regex(column, _NUM_PATTERN), True)
    return _fill_bad(column, ok).cast(pa.float64()), pc.invert(ok)


def to_time_column(column: pa.Array, unit: str = "auto", naive_tz: str = "UTC") -> tuple[pa.Array, pa.Array]:
    """(TS column, bad mask) from epoch numbers (s/ms/us, or `auto` by magnitude) or
    ISO 8601 text with or without zone (`naive_tz` for those without). Clean columns
    take one cast; mixed or broken ones fall back to masks, row by row only at the end."""
    column = as_strings(column)
    if pa.types.is_date(column.type):  # a day only: its midnight, local to naive_tz
        column = column.cast(pa.timestamp("s"))
    if pa.types.is_timestamp(column.type):
        if column.type.tz is None:
            column = pc.assume_timezone(column, naive_tz) if naive_tz != "UTC" else column
        return column.cast(TS), _no_bad(len(column))
    if _is_text(column):
        sample = next((v for v in column.slice(0, 100).to_pylist() if v), "") or ""
        dated = "-" in sample.strip()[1:] or ":" in sample  # else epoch numbers are likelier
        attempts = (_naive_text, _zoned_text, _epoch_text) if dated else (_epoch_text, _naive_text, _zoned_text)
        for attempt in attempts:
            try:
                return attempt(column, unit, naive_tz), _no_bad(len(column))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        column = _empty_to_null(pc.utf8_trim_whitespace(column))
        numeric = pc.fill_null(pc.match_substring_regex(column, _NUM_PATTERN), False)
        if pc.all(pc.or_(numeric, pc.is_null(column))).as_py():
            column = column.cast(pa.float64())
        elif pc.any(numeric).as_py():  # some numbers, some text: text wins, numbers are bad rows
            return _iso_times(_fill_bad(column, pc.invert(numeric)), naive_tz, extra_bad=numeric)
        else:
            return _iso_times(column, naive_tz)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise TypeError(f"a column of {column.type} values cannot hold times")
    return _epoch_numbers(column.cast(pa.float64()), unit)


def _epoch_numbers(values: pa.Array, unit: str) -> tuple[pa.Array, pa.Array]:
    if unit == "auto":
        unit = guess_epoch_unit(values)
    micros = pc.multiply(values, float(TIME_UNITS[unit]))
    ok = pc.fill_null(pc.and_(pc.greater_equal(micros, -62e15), pc.less_equal(micros, 253e15)), True)
    micros = pc.round(_fill_bad(micros, ok))
    return micros.cast(pa.int64()).cast(TS), pc.invert(ok)


def _epoch_text(column: pa.Array, unit: str, naive_tz: str) -> pa.Array:
    values, bad = _epoch_numbers(column.cast(pa.float64()), unit)
    if pc.any(bad).as_py():
        raise pa.ArrowInvalid("epoch out of range")
    return values


def _naive_text(column: pa.Array, unit: str, naive_tz: str) -> pa.Array:
    return _cast_iso(column, False, naive_tz)


def _zoned_text(column: pa.Array, unit: str, naive_tz: str) -> pa.Array:
    return column.cast(TS)


def guess_epoch_unit(values: pa.Array) -> str:
    """s, ms or us from the magnitude of the largest value (up to year 5138 in seconds)."""
    top = pc.max(pc.abs(values)).as_py() or 0
    if top > 1e14:
        return "us"
    if top > 1e11:
        return "ms"
    return "s"


def _iso_times(column: pa.Array, naive_tz: str, extra_bad: pa.Array | None = None) -> tuple[pa.Array, pa.Array]:
    """ISO 8601 text; rows with a zone and rows without may be mixed."""
    text = pc.replace_substring_regex(column, r"^(\d{4})[-/](\d\d)[-/](\d\d)[ T]", r"\1-\2-\3T")
    zoned = pc.fill_null(pc.match_substring_regex(text, r"(Z|[+-]\d\d:?\d\d)$"), False)
    out = pa.nulls(len(column), TS)
    bad = pa.array(np.zeros(len(column), bool))
    for mask, with_zone in ((zoned, True), (pc.invert(zoned), False)):
        part = _fill_bad(text, mask)
        if pc.all(pc.is_null(part)).as_py():
            continue
        try:
            converted = _cast_iso(part, with_zone, naive_tz)
            part_bad = pa.array(np.zeros(len(column), bool))
        except (pa.ArrowInvalid, ValueError):
            converted, part_bad = _cast_iso_slow(part, with_zone, naive_tz)
        out = pc.if_else(mask, converted, out)
        bad = pc.or_(bad, part_bad)
    if extra_bad is not None:
        bad = pc.or_(bad, extra_bad)
    return out, bad


def _cast_iso(part: pa.Array, with_zone: bool, naive_tz: str) -> pa.Array:
    if with_zone:
        return part.cast(TS)
    return naive_to_utc(part.cast(pa.timestamp("us")), naive_tz)


def is_time_zone(name: str) -> bool:
    """Whether `name` is a time zone the readers can use (an IANA name, or UTC)."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def header_delimiter(header_line: str) -> str:
    """The delimiter of a header line: the most frequent of comma, tab, semicolon and bar
    (a comma when none is there)."""
    return max(DELIMITERS, key=lambda d: (header_line.count(d), d == ","))


DELIMITERS = (",", "\t", ";", "|")


def first_of_lists(items: pa.Array) -> pa.Array:
    """The first element of each list; null for an empty or null list."""
    empty = pc.fill_null(pc.equal(pc.list_value_length(items), 0), False)
    return pc.list_element(pc.if_else(empty, pa.scalar(None, items.type), items), 0)


def naive_to_utc(naive: pa.Array, naive_tz: str) -> pa.Array:
    """Zone-less timestamps read as local time in `naive_tz` -> TS (UTC). A local time
    that does not exist or is ambiguous there raises ArrowInvalid."""
    return pc.assume_timezone(naive, naive_tz).cast(TS) if naive_tz != "UTC" else naive.cast(TS)


def _cast_iso_slow(part: pa.Array, with_zone: bool, naive_tz: str) -> tuple[pa.Array, pa.Array]:
    """Value by value: the rows that do not parse are nulls and bad."""
    tz = timezone.utc if naive_tz == "UTC" else ZoneInfo(naive_tz)
    values, bad = [], []
    for text in part.to_pylist():
        if text is None:
            values.append(None)
            bad.append(False)
            continue
        try:
            values.append(iso_to_us(text, tz))
            bad.append(False)
        except ValueError:
            values.append(None)
            bad.append(True)
    return pa.array(values, pa.int64()).cast(TS), pa.array(bad)


class RecordError(ValueError):
    """A record that cannot be used: `reason` is counted (a kind of fault), `detail` (the
    offending value) is kept with the rejected record only. str() gives both."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def address_field(value, name: str) -> str | None:
    """An address field of a record as text; None when absent; RecordError when present
    but not an address (`ip_text_ok`)."""
    if value in (None, ""):
        return None
    text = str(value)
    if not ip_text_ok(text):
        raise RecordError(f"bad address in {name}", repr(text[:60]))
    return text


def ip_text_ok(text: str | bytes | None) -> bool:
    """True when `text` is an IPv4 or IPv6 address as flow tools print it: a dotted
    quad of 0-255 without leading zeros, or RFC 4291 IPv6 text (an IPv4 tail allowed,
    no zone id `%eth0`), with nothing around it. The rule is `address_ok` in _fastcsv.c;
    `_address_ok_python` is the same rule where the extension is not built."""
    if text is None:
        return False
    if isinstance(text, str):
        if not text.isascii():
            return False
        text = text.encode("ascii")
    if _fastcsv is None:
        return _address_ok_python(text)
    return _fastcsv.address_ok(text)


def _address_ok_python(text: bytes) -> bool:
    if not 2 <= len(text) <= 45 or not _ADDRESS_BYTES.issuperset(text):
        return False
    try:
        ipaddress.ip_address(text.decode("ascii"))  # refuses leading zeros in IPv4 (Python >= 3.9.5)
    except ValueError:
        return False
    return True


_ADDRESS_BYTES = frozenset(b"0123456789abcdefABCDEF:.")  # a zone id (`%`) or space is refused here


def ip_text_bad(column: pa.Array) -> pa.Array:
    """Boolean mask of the rows whose value is present but not an address (`ip_text_ok`);
    nulls are not bad (the caller counts them as missing). Checked in C over the
    column's buffers, without making Python strings."""
    column = as_strings(column)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if not _is_text(column):
        column = column.cast(pa.string())
    if _fastcsv is None:
        return pa.array([value is not None and not ip_text_ok(value) for value in column.to_pylist()], pa.bool_())
    bad = np.zeros(len(column), bool)
    if len(column):
        validity, offsets, data = column.buffers()[:3]
        _fastcsv.bad_addresses(offsets, data, validity if column.null_count else None, column.offset,
                               pa.types.is_large_string(column.type), bad)
    return pa.array(bad)


def byte_class(allowed: bytes) -> np.ndarray:
    table = np.zeros(256, bool)
    table[np.frombuffer(allowed, np.uint8)] = True
    return table


DIGITS = byte_class(b"0123456789")
DECIMALS = byte_class(b"0123456789.")


def text_within(column: pa.Array, allowed: np.ndarray, first: np.ndarray | None = None) -> bool:
    """True when every non-null value is non-empty text of bytes in `allowed` (and starts
    with a byte in `first`): a cheap guarantee that a cast reads it as Python would."""
    column = as_strings(column)
    if not pa.types.is_string(column.type):
        return False
    if len(column) == 0:
        return True
    offsets = np.frombuffer(column.buffers()[1], np.int32)[column.offset:column.offset + len(column) + 1]
    data = column.buffers()[2]
    raw = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    valid = column.is_valid().to_numpy(zero_copy_only=False) if column.null_count else None
    lengths = np.diff(offsets)
    empty = lengths == 0
    if valid is not None:
        empty &= valid
    if empty.any():
        return False
    outside = np.flatnonzero(~allowed[raw[offsets[0]:offsets[-1]]])
    if len(outside):
        return False
    if first is not None:
        starts = offsets[:-1] if valid is None else offsets[:-1][valid & (lengths > 0)]
        if not first[raw[starts]].all():
            return False
    return True


def epoch_text_to_us(column: pa.Array) -> pa.Array | None:
    """Exact microseconds from epoch-seconds text of digits with at most 6 decimals
    (`1601998366.785668`), as `epoch_to_us` reads them; None when any value is otherwise."""
    if column.null_count or not text_within(column, DECIMALS, DIGITS):
        return None
    try:
        fixed = as_strings(column).cast(pa.decimal128(24, 6))  # exact; more decimals fail
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    units = np.frombuffer(fixed.buffers()[1], np.int64)[2 * fixed.offset::2][:len(fixed)]  # low words
    if len(units) and (units.max() > 253e15 or units.min() < 0):
        return None
    return pa.array(units, pa.int64())


def map_distinct(column: pa.Array, function, type_: pa.DataType) -> tuple[pa.Array, pa.Array]:
    """Apply a Python function to each distinct value only (protocol names, flag
    strings): fast for columns with few distinct values. ValueError -> bad row.
    A column already dictionary-encoded is used as it is."""
    encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
    mapped, bad_codes = [], []
    for value in encoded.dictionary.to_pylist():
        try:
            mapped.append(function(value))
            bad_codes.append(False)
        except (ValueError, TypeError):
            mapped.append(None)
            bad_codes.append(True)
    indices = encoded.indices
    values = pc.take(pa.array(mapped, type_), indices)
    bad = pc.fill_null(pc.take(pa.array(bad_codes, pa.bool_()), indices), False)
    return values, bad


def lines_of_rows(first_row: int, count: int, header_lines: int, skipped: Iterable[int]) -> np.ndarray:
    """Physical 1-based line numbers of `count` parsed rows starting at parsed-row index
    `first_row`, given the header line count and the sorted physical line numbers of
    rows the CSV parser skipped (bad column counts, blank lines)."""
    positions = np.arange(first_row, first_row + count, dtype=np.int64) + header_lines + 1
    skipped = np.asarray(sorted(skipped), dtype=np.int64)
    if len(skipped):
        adjusted = skipped - np.arange(len(skipped))
        positions = positions + np.searchsorted(adjusted, positions, side="right")
    return positions


def collect_tables(batches: Iterable[Batch]) -> dict[str, pa.Table]:
    """All batches of a reader gathered per table (for tests and small inputs only)."""
    grouped: dict[str, list[pa.RecordBatch]] = {}
    for table, batch in batches:
        grouped.setdefault(table, []).append(batch)
    return {table: pa.Table.from_batches(parts) for table, parts in grouped.items()}

"""Generic flow tables (CSV or Parquet) with a column mapping -> flows.

The mapping names, for each canonical column, the source column that holds it:
`{"ts_start": "StartTime", "src_ip": "SrcAddr", ...}` (the CLI's
`--map ts_start=StartTime,src_ip=SrcAddr`). Required: ts_start, src_ip, dst_ip.
`ts_end` may be replaced by `duration` (seconds). `ip_proto` takes numbers or names
(tcp, UDP, icmp6); tcp flags take letters (`.AP.SF`), hex or numbers.

Times: epoch seconds, milliseconds or microseconds (`time_unit`, or `auto` from the
magnitude) or ISO 8601 text; text with a zone offset is converted to UTC, text
without one is read in `naive_tz` (default UTC), and the stats say so.

This module also holds `columns_to_flows`, the vectorised conversion the nfdump
reader shares: source columns in, a FLOWS batch and per-row rejects out, and the CSV
loop (`_stream_csv`) that splits and converts pieces of the file in worker threads.
Pieces are split by the compiled `_fastcsv` (the wanted columns only, plus the values
of the plainest spellings: digits, `YYYY-MM-DD HH:MM:SS`, whether an address is one,
small code sets), or by pyarrow.csv where a piece has quotes or a lone carriage return, or
when `_fastcsv` is not built; both give the same rows, rejects and line numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from minewatch.errors import InputError
from minewatch.schema.flows import FLOWS, MESSAGE_FIELDS, TS
from minewatch.sources import _records

try:
    from minewatch.sources import _fastcsv
except ImportError:  # not built: pyarrow.csv splits every piece
    _fastcsv = None
from minewatch.sources._records import (
    BATCH_ROWS,
    PORT_PROTOCOLS,
    Batch,
    SourceStats,
    as_strings,
    ip_text_bad,
    l4_name,
    line_pieces,
    lines_of_rows,
    looks_binary,
    map_distinct,
    header_delimiter,
    naive_to_utc,
    open_input,
    ordered_map,
    piece_has,
    proto_number,
    skip_lines,
    tcp_flags_value,
    to_float_column,
    to_int_column,
    to_time_column,
    too_broken,
)

REQUIRED = ("ts_start", "src_ip", "dst_ip")
INT_COLUMNS = {
    "src_port": pa.int32(), "dst_port": pa.int32(), "vlan_id": pa.int32(),
    "src_packets": pa.int64(), "dst_packets": pa.int64(), "src_bytes": pa.int64(), "dst_bytes": pa.int64(),
    "src_payload_packets": pa.int64(), "dst_payload_packets": pa.int64(),
    "src_payload_bytes": pa.int64(), "dst_payload_bytes": pa.int64(),
    "src_msgs": pa.int64(), "dst_msgs": pa.int64(),
}
FLOAT_COLUMNS = ("src_iat_mean_ms", "src_iat_std_ms") + tuple(
    name for name in MESSAGE_FIELDS if FLOWS.field(name).type == pa.float64())
PIECE_SCALE = 4  # CSV pieces are this many _records.CHUNK_BYTES: each piece costs some 100 Arrow calls
MAPPABLE = set(FLOWS.names) - {"source_file", "flow_ref", "src_payload_head", "dst_payload_head"} | {"duration"}


def check_mapping(mapping: dict[str, str]) -> None:
    """A mapping must name known canonical columns and the required ones."""
    from minewatch.errors import UsageError

    unknown = sorted(set(mapping) - MAPPABLE)
    if unknown:
        raise UsageError(f"unknown canonical column(s) in the mapping: {', '.join(unknown)}; known: {', '.join(sorted(MAPPABLE))}")
    missing = [c for c in REQUIRED if c not in mapping]
    if missing:
        raise UsageError(f"the mapping lacks required column(s): {', '.join(missing)}")


def parse_mapping(text: str) -> dict[str, str]:
    """`src_ip=SrcAddr,dst_ip=DstAddr` -> {"src_ip": "SrcAddr", "dst_ip": "DstAddr"}."""
    from minewatch.errors import UsageError

    mapping = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        canonical, sep, column = part.partition("=")
        if not sep or not canonical.strip() or not column.strip():
            raise UsageError(f"bad mapping item {part!r}: expected canonical=source_column")
        mapping[canonical.strip()] = column.strip()
    return mapping


# Argus `ra -c ,` bidirectional flows (CTU and Stratosphere datasets: `*.binetflow`).
# TotPkts/TotBytes count both directions: they are read into dst_packets/dst_bytes and
# the source side's counts taken off (`_reverse_from_totals`) when SrcPkts/SrcBytes exist.
ARGUS_COLUMNS = {"ts_start": "StartTime", "duration": "Dur", "ip_proto": "Proto", "src_ip": "SrcAddr",
                 "src_port": "Sport", "dst_ip": "DstAddr", "dst_port": "Dport", "src_packets": "SrcPkts",
                 "src_bytes": "SrcBytes", "dst_packets": "TotPkts", "dst_bytes": "TotBytes"}


def known_mapping(names: list[str]) -> tuple[str, dict[str, str]] | None:
    """(name, mapping) when the columns are those of a known flow export (Argus)."""
    if {"StartTime", "SrcAddr", "DstAddr"} <= set(names):
        mapping = {c: n for c, n in ARGUS_COLUMNS.items() if n in names}
        for side, total in (("src_packets", "dst_packets"), ("src_bytes", "dst_bytes")):
            if side not in mapping:  # a total without the source's share says nothing of the reverse
                mapping.pop(total, None)
        return "Argus binetflow", mapping
    return None


def _reverse_from_totals(batches: Iterator[Batch], stats: SourceStats) -> Iterator[Batch]:
    """Argus totals (read into dst_packets/dst_bytes) less the source side's counts; a
    total below its source share is an inconsistent record: its reverse count is left
    empty and counted as adjusted."""
    for table, batch in batches:
        columns = {name: batch.column(name) for name in batch.schema.names}
        for src, dst in (("src_packets", "dst_packets"), ("src_bytes", "dst_bytes")):
            reverse = pc.subtract(columns[dst], columns[src])
            negative = pc.fill_null(pc.less(reverse, 0), False)
            if pc.any(negative).as_py():
                stats.adjust(f"with a total {dst.split('_')[1]} count below the source's (reverse count left empty)",
                             pc.sum(negative).as_py())
                reverse = pc.if_else(negative, pa.scalar(None, reverse.type), reverse)
            columns[dst] = reverse
        yield table, pa.RecordBatch.from_arrays([columns[n] for n in batch.schema.names], schema=batch.schema)


def canonical_mapping(path: str | Path, names: list[str]) -> dict[str, str]:
    """For a table without a mapping: each column named like a canonical one (a FLOWS
    export, say) is read as that column; ts_start, src_ip and dst_ip must be there."""
    mapping = {name: name for name in names if name in MAPPABLE}
    missing = [name for name in REQUIRED if name not in mapping]
    if missing:
        raise InputError(path, "a generic table needs a column mapping (--map ts_start=...,src_ip=...,dst_ip=...) "
                               f"or columns with the canonical names; {', '.join(missing)} not found", "line 1")
    return mapping


def table_columns(path: str | Path, delimiter: str | None = None) -> list[str]:
    """Column names of a Parquet file or of a CSV file's header line."""
    with open_input(path) as f:
        head = f.read(65536)
    if head[:4] == b"PAR1":
        try:
            return pq.read_schema(path).names
        except (pa.ArrowInvalid, OSError) as e:
            raise InputError(path, f"unreadable Parquet file: {e}") from None
    header_line = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip("\r\n")
    return [n.strip() for n in header_line.split(delimiter or header_delimiter(header_line))]


def read_tabular(
    path: str | Path,
    mapping: dict[str, str] | None,
    *,
    stats: SourceStats,
    time_unit: str = "auto",
    naive_tz: str = "UTC",
    delimiter: str | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[Batch]:
    """Yield ("flows", batch) for a CSV or Parquet file read through `mapping` (None:
    the columns with canonical names, see `canonical_mapping`). `delimiter` None: the
    header line's (`header_delimiter`)."""
    if mapping is None:
        names = table_columns(path, delimiter)
        if (known := known_mapping(names)) is not None:
            mapping = known[1]
            totals = "dst_packets" in mapping or "dst_bytes" in mapping
            stats.note(f"read as {known[0]}: " + ", ".join(f"{c}={n}" for c, n in mapping.items())
                       + (" (the reverse direction's counts: the totals less the source's)" if totals else ""))
            if totals:
                yield from _reverse_from_totals(read_tabular(path, mapping, stats=stats, time_unit=time_unit,
                                                             naive_tz=naive_tz, delimiter=delimiter,
                                                             batch_rows=batch_rows), stats)
                return
        else:
            mapping = canonical_mapping(path, names)
            stats.note("columns read by their canonical names: " + ", ".join(mapping))
    check_mapping(mapping)
    with open_input(path) as f:
        head = f.read(4)
    if head == b"PAR1":
        stats.reader = "parquet"
        yield from _read_parquet(path, mapping, stats, time_unit, naive_tz, batch_rows)
    else:
        stats.reader = "csv"
        yield from read_flow_csv(path, mapping, stats=stats, time_unit=time_unit, naive_tz=naive_tz,
                                 delimiter=delimiter, batch_rows=batch_rows)
    too_broken(stats, path, "flow table")


def _read_parquet(path, mapping, stats, time_unit, naive_tz, batch_rows) -> Iterator[Batch]:
    try:
        # read column chunks through a small buffer, not a whole row group ahead (pre_buffer):
        # 200 instead of 650 MiB and less CPU for 5 M canonical rows
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(path, f"unreadable Parquet file: {e}") from None
    names = set(parquet.schema_arrow.names)
    _check_columns(path, mapping, names)
    wanted = sorted(set(mapping.values()))
    first = 0
    try:
        # one thread: the writer and the hash run beside the reader, and threaded decoding
        # costs more CPU in all (3.2 vs 4.6 CPU-s for 5 M canonical rows)
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted, use_threads=False):
            lines = np.arange(first + 1, first + 1 + batch.num_rows)  # row number, 1-based
            first += batch.num_rows
            out = columns_to_flows(batch, mapping, lines, str(path), stats, time_unit, naive_tz)
            if out is not None:
                yield out
    except (pa.ArrowInvalid, OSError) as e:
        stats.reject(first + 1, f"Parquet file cut short or corrupt: {e}", "")


def _check_columns(path, mapping: dict[str, str], names) -> None:
    missing = sorted({source for source in mapping.values() if source not in names})
    if missing:
        raise InputError(path, f"column(s) named in the mapping are not in the file: {', '.join(missing)}", "line 1")


def read_flow_csv(
    path: str | Path,
    mapping: dict[str, str],
    *,
    stats: SourceStats,
    time_unit: str = "auto",
    naive_tz: str = "UTC",
    delimiter: str | None = ",",
    batch_rows: int = BATCH_ROWS,
    trailer_marker: str | None = None,
    note_naive: bool = True,
) -> Iterator[Batch]:
    """CSV with a header line, streamed in pieces (see `_stream_csv`). Rows with a
    wrong number of fields are rejected with their line; from a line equal to
    `trailer_marker` on (nfdump's `Summary`), the rest is a trailer, not records."""
    with open_input(path) as f:
        head = f.read(65536)
    if not head.strip():
        stats.note("empty file")
        return
    if looks_binary(head):
        raise InputError(path, "binary data, not a CSV text file", "byte 0")
    header_line = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip("\r\n")
    delimiter = delimiter or header_delimiter(header_line)
    names = [n.strip() for n in header_line.split(delimiter)]
    _check_columns(path, mapping, names)
    yield from _stream_csv(open_input(path), path, names, mapping, stats, time_unit, naive_tz,
                           delimiter, batch_rows, trailer_marker, header_lines=1, note_naive=note_naive)


@dataclass
class _Piece:
    """What a worker made of one piece of CSV text; line numbers relative to the piece."""

    outputs: list[pa.RecordBatch]
    stats: SourceStats
    lines: int  # physical lines in the piece
    trailer: bool = False  # the trailer started in this piece: nothing after it is a record
    error: str | None = None


def _stream_csv(stream, path, names, mapping, stats, time_unit, naive_tz, delimiter, batch_rows,
                trailer_marker, header_lines: int, note_naive: bool = True) -> Iterator[Batch]:
    """The CSV loop shared by files and the nfdump program's output.

    The text is cut into pieces at line ends; each piece is split into rows in a worker
    thread (the compiled splitter, or pyarrow.csv for pieces with quotes, lone carriage
    returns or when it is not built; one thread per piece, so row numbers are exact) and
    converted there, and the results come back in file order, where the piece's line
    numbers are shifted by the lines before it. A line equal to `trailer_marker`
    (nfdump's `Summary`) ends the records: it and what follows are a trailer."""
    used = set(mapping.values())
    wanted = [name for name in dict.fromkeys(names) if name in used]  # in file order
    indexes = _split_indexes(names, wanted, delimiter)
    kinds = _split_kinds(mapping, wanted)
    convert_options = pcsv.ConvertOptions(include_columns=wanted,
                                          column_types={c: pa.string() for c in wanted},
                                          strings_can_be_null=False)

    def work(data: memoryview) -> _Piece:
        piece = _Piece([], SourceStats(str(path)), 0)
        skipped: list[int] = []  # piece lines that are not rows (wrong field count)
        trailer_line = 0

        def invalid(number: int, fields: int, text: str) -> None:
            nonlocal trailer_line
            skipped.append(number)
            if trailer_marker and not trailer_line and text.strip() == trailer_marker:
                trailer_line = number
            if not trailer_line and text.strip():  # blank lines are not records
                piece.stats.reject(number, f"wrong number of fields ({fields}, expected {len(names)})", text)

        split = None if indexes is None else _fastcsv.split(data, len(names), indexes, kinds, delimiter)
        plain = None
        if split is not None:
            rows, _, columns, bad, high_bytes = split
            for number, fields, start, end in bad:
                invalid(number, fields, data[start:end].tobytes().decode("utf-8", "replace"))
            arrays = [pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(text))
                      for offsets, text, _ in columns]
            batch = pa.RecordBatch.from_arrays(arrays, names=wanted)
            if not high_bytes:  # else the text (checked below) is the only source
                plain = _plain_batch(rows, wanted, kinds, columns)
        else:
            high_bytes = False
            try:
                batch = _parse_with_pyarrow(data, names, delimiter, convert_options, invalid)
            except pa.ArrowInvalid as e:
                piece.error = str(e)
                return piece
        piece.lines = batch.num_rows + len(skipped)  # every line is a row or was skipped
        lines = lines_of_rows(0, batch.num_rows, 0, skipped)
        keep = batch.num_rows
        if trailer_line:
            piece.trailer = True
            keep = int(np.searchsorted(lines, trailer_line))
        if high_bytes:
            batch, lines, keep = _reject_non_utf8(batch, lines, keep, piece.stats)
        batch, lines = batch.slice(0, keep), lines[:keep]
        if plain is not None:
            plain = plain.slice(0, keep)
        for start in range(0, batch.num_rows, batch_rows):
            out = columns_to_flows(batch.slice(start, batch_rows), mapping, lines[start:start + batch_rows],
                                   str(path), piece.stats, time_unit, naive_tz, note_naive,
                                   plain.slice(start, batch_rows) if plain is not None else None)
            if out is not None:
                piece.outputs.append(out[1])
        return piece

    try:
        before = skip_lines(stream, header_lines)  # lines before the current piece
        errors: list[str] = []
        ahead = _records.WORKERS + 1  # pieces in flight; the buffer ring has two more
        pieces = line_pieces(stream, _records.CHUNK_BYTES * PIECE_SCALE, errors, slots=ahead + 2)
        for piece in ordered_map(work, pieces, workers=_records.WORKERS, ahead=ahead):
            if piece.error is not None:
                # the parser gives up (a cut multi-byte character): the pieces before are
                # kept, the rest of the file is reported as one reject
                stats.reject(before + 1, f"unreadable from here on: {piece.error}", "")
                return
            for reject in piece.stats.rejects:
                reject.line += before
            stats.absorb(piece.stats)
            for batch in piece.outputs:
                refs = batch.schema.get_field_index("flow_ref")
                shifted = pc.add(batch.column(refs), pa.scalar(before, pa.int64()))
                yield ("flows", batch.set_column(refs, FLOWS.field("flow_ref"), shifted))
            before += piece.lines
            if piece.trailer:
                return
        if errors:
            stats.reject(before + 1, "compressed file cut short or corrupt", errors[0])
    finally:
        stream.close()


def _split_indexes(names: list[str], wanted: list[str], delimiter: str) -> list[int] | None:
    """Positions of the wanted columns for the compiled splitter; None when it cannot
    serve (not built, a wanted name twice in the header, an unusual delimiter)."""
    if _fastcsv is None or len(delimiter) != 1 or not " " <= delimiter < "\x7f" and delimiter != "\t":
        return None
    if any(names.count(name) > 1 for name in wanted):
        return None
    return [names.index(name) for name in wanted]


def _split_kinds(mapping: dict[str, str], wanted: list[str]) -> list[int]:
    """What the splitter works out besides the text, per wanted column: from the
    canonical column it is mapped to (plain text when mapped to several of other kinds)."""
    if _fastcsv is None:
        return []
    kind_of = {"ts_start": _fastcsv.TIME, "ts_end": _fastcsv.TIME, "src_ip": _fastcsv.IP, "dst_ip": _fastcsv.IP,
               "ip_proto": _fastcsv.CODE, "src_tcp_flags": _fastcsv.CODE, "dst_tcp_flags": _fastcsv.CODE,
               **{name: _fastcsv.INT for name in INT_COLUMNS}}
    kinds = []
    for name in wanted:
        found = {kind_of.get(canonical, _fastcsv.TEXT) for canonical, source in mapping.items() if source == name}
        kinds.append(found.pop() if len(found) == 1 else _fastcsv.TEXT)
    return kinds


def _plain_batch(rows: int, names: list[str], kinds: list[int], columns) -> pa.RecordBatch | None:
    """The splitter's extras as a batch of the same rows (for `columns_to_flows`):
    int64 or naive timestamp columns null where the text is not plain, IP bad masks,
    dictionary-encoded codes."""
    arrays, kept = [], []
    for name, kind, (_, _, extra) in zip(names, kinds, columns):
        if extra is None:
            continue
        if kind in (_fastcsv.INT, _fastcsv.TIME):
            values, is_plain = extra
            valid = np.packbits(np.frombuffer(is_plain, np.uint8), bitorder="little")
            type_ = pa.int64() if kind == _fastcsv.INT else pa.timestamp("us")
            array = pa.Array.from_buffers(type_, rows, [pa.py_buffer(valid), pa.py_buffer(values)])
        elif kind == _fastcsv.IP:
            bits = np.packbits(np.frombuffer(extra, np.uint8), bitorder="little")
            array = pa.Array.from_buffers(pa.bool_(), rows, [None, pa.py_buffer(bits)])
        else:
            codes, texts = extra
            array = pa.DictionaryArray.from_arrays(pa.Array.from_buffers(pa.int32(), rows, [None, pa.py_buffer(codes)]),
                                                   pa.array([t.decode() for t in texts], pa.string()))
        arrays.append(array)
        kept.append(name)
    return pa.RecordBatch.from_arrays(arrays, names=kept) if arrays else None


def _parse_with_pyarrow(data: memoryview, names, delimiter, convert_options, invalid) -> pa.RecordBatch:
    """One piece through pyarrow.csv (quotes understood); lines with a wrong field count
    go to `invalid(number, fields, text)`."""
    # without any quote in the piece, quoting changes nothing and parsing is twice as fast
    quoted = piece_has(data, b'"')

    def on_invalid(row) -> str:
        invalid(row.number or 0, row.actual_columns, row.text or "")
        return "skip"

    read_options = pcsv.ReadOptions(use_threads=False, column_names=names, block_size=len(data) + 1)
    parse_options = pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid,
                                      ignore_empty_lines=False, quote_char='"' if quoted else False)
    table = pcsv.read_csv(pa.py_buffer(data), read_options=read_options, parse_options=parse_options,
                          convert_options=convert_options)
    if table.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=table.schema)
    return table.combine_chunks().to_batches()[0]


def _reject_non_utf8(batch: pa.RecordBatch, lines: np.ndarray, keep: int, stats: SourceStats):
    """Rows (of the first `keep`) with a field that is not UTF-8 are rejected and taken
    out: the compiled splitter copies bytes without decoding them."""
    fields = [_offsets_and_text(column) for column in batch.columns]
    bad: dict[int, str] = {}  # row -> first column found not UTF-8
    for name, column, (offsets, text) in zip(batch.schema.names, batch.columns, fields):
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        high = np.flatnonzero(np.frombuffer(text, np.uint8) >= 0x80)
        for row in np.unique(np.searchsorted(offsets, high, side="right") - 1):
            try:
                text[offsets[row]:offsets[row + 1]].decode("utf-8")
            except UnicodeDecodeError:
                if row < keep:
                    bad.setdefault(int(row), name)
    if not bad:
        return batch, lines, keep
    for row, name in sorted(bad.items()):
        raw = b",".join(text[offsets[row]:offsets[row + 1]] for offsets, text in fields)
        stats.reject(int(lines[row]), f"not UTF-8 text in {name}", raw.decode("utf-8", "replace"))
    good = np.ones(batch.num_rows, bool)
    good[list(bad)] = False
    return batch.filter(pa.array(good)), lines[good], keep - len(bad)


def _offsets_and_text(column: pa.Array) -> tuple[np.ndarray, bytes]:
    """The offsets and bytes of a fresh (unsliced) string column."""
    return np.frombuffer(column.buffers()[1], np.int32)[:len(column) + 1], column.buffers()[2].to_pybytes()


def columns_to_flows(
    batch: pa.RecordBatch,
    mapping: dict[str, str],
    lines: np.ndarray,
    source_file: str,
    stats: SourceStats,
    time_unit: str = "auto",
    naive_tz: str = "UTC",
    note_naive: bool = True,
    plain: pa.RecordBatch | None = None,
) -> Batch | None:
    """Convert source columns to a FLOWS batch; rows with a bad or missing required
    value are rejected (reason per column), the others kept.

    `plain` (from the compiled splitter, same rows) may hold, per source column, what
    its plainest values already are (see `_plain_batch`); a column is taken from there
    only when that gives what the text would, otherwise from the text."""
    n = batch.num_rows
    if n == 0:
        return None
    source = {name: batch.column(name) for name in batch.schema.names}
    quick = {name: plain.column(name) for name in plain.schema.names} if plain is not None else {}
    out: dict[str, pa.Array] = {}
    problems: list[tuple[str, np.ndarray]] = []

    def column(canonical: str):
        name = mapping.get(canonical)
        return source[name] if name is not None else None

    def shortcut(canonical: str):
        return quick.get(mapping.get(canonical))

    def times(canonical: str):
        values = shortcut(canonical)
        if values is not None and values.null_count == 0:  # every value plain
            try:
                return naive_to_utc(values, naive_tz), _records._no_bad(n)
            except pa.ArrowInvalid:  # a local time the zone skips or repeats: the text decides
                pass
        try:
            return to_time_column(column(canonical), time_unit, naive_tz)
        except TypeError as exc:  # a column of another kind (booleans, lists): the mapping's fault
            raise InputError(source_file, f"{mapping[canonical]}: {exc}") from None

    def flag(reason: str, mask, shown: pa.Array | None = None) -> None:
        """Rows of `mask` are rejected for `reason` (the first found per row); with
        `shown`, each reject also says the row's value there."""
        if isinstance(mask, pa.Array) and not pc.any(mask).as_py():  # the usual case: nothing to convert
            return
        mask = np.asarray(mask.to_numpy(zero_copy_only=False) if hasattr(mask, "to_numpy") else mask, bool)
        if mask.any():
            problems.append((reason, mask, shown))

    start_plain = shortcut("ts_start")
    if start_plain is not None and start_plain.null_count == 0:
        blank = None  # every start time is there
    else:
        blank = _blank_rows(column("ts_start"), column("src_ip"), column("dst_ip"))
    if blank is not None:  # empty lines (or rows of empty fields): not records, nothing to keep
        stats.ignore("empty rows", int(blank.sum()))
        problems.append(("", blank, None))
    start, bad = times("ts_start")
    flag(f"bad time in {mapping['ts_start']}", bad)
    flag(f"missing {mapping['ts_start']}", pc.is_null(start))
    out["ts_start"] = start
    if column("ts_end") is not None:
        end, bad = times("ts_end")
        flag(f"bad time in {mapping['ts_end']}", bad)
        # Exporters do write flows ending before they start (softflowd's IPFIX through
        # nfcapd: ~60% of a replay's IPv6 flows): kept, the end taken as the start, counted.
        early = pc.fill_null(pc.less(end, start), False)
        if pc.any(early).as_py():
            stats.adjust(f"with {mapping['ts_end']} before {mapping['ts_start']} (end set to the start)",
                         pc.sum(early).as_py())
            end = pc.if_else(early, start, end)
        out["ts_end"] = pc.coalesce(end, start)
    elif column("duration") is not None:
        seconds, bad = to_float_column(column("duration"))
        flag(f"bad duration in {mapping['duration']}", pc.or_(bad, pc.fill_null(pc.less(seconds, 0), False)))
        micros = pc.round(pc.multiply(pc.fill_null(seconds, 0.0), 1e6)).cast(pa.int64())
        out["ts_end"] = pc.add(start.cast(pa.int64()), micros).cast(TS)
    else:
        out["ts_end"] = start
    if note_naive and _has_naive_text(column("ts_start")):
        stats.note(f"times without a zone were read as {naive_tz}")

    for side in ("src_ip", "dst_ip"):
        values = as_strings(column(side)).cast(pa.string())
        bad = shortcut(side) if shortcut(side) is not None else ip_text_bad(values)
        if pc.any(bad).as_py():  # padded (nfdump fmt output) or empty: trim and look again
            written = values
            values = pc.utf8_trim_whitespace(values)
            values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
            bad = ip_text_bad(values)
        else:
            written = None
        flag(f"missing {mapping[side]}", pc.is_null(values))
        flag(f"bad address in {mapping[side]}", bad, written)
        out[side] = values

    proto = None
    if column("ip_proto") is not None:
        text = shortcut("ip_proto")
        if text is None:
            text = as_strings(column("ip_proto"))
        if pa.types.is_integer(text.type):  # typed (Parquet): checked and named without text
            proto, out["l4"], bad = _typed_proto_and_l4(text)
        else:
            proto, out["l4"], bad = _proto_and_l4(text.cast(pa.string()) if not _is_dictionary(text) else text)
        flag(f"bad protocol in {mapping['ip_proto']}", bad)
        out["ip_proto"] = proto
    if column("l4") is not None and "l4" not in out:
        out["l4"] = as_strings(column("l4")).cast(pa.string())

    # ports only mean something for TCP, UDP, SCTP, UDP-Lite (nfdump writes ICMP type.code there)
    has_ports = None
    if proto is not None:
        has_ports = pc.fill_null(pc.is_in(proto, pa.array(sorted(PORT_PROTOCOLS), pa.int16())), True)
    for name, type_ in INT_COLUMNS.items():
        if column(name) is None:
            continue
        raw = _plain_ints(shortcut(name), has_ports if name in ("src_port", "dst_port") else None)
        if raw is None:
            raw = column(name)
        if has_ports is not None and name in ("src_port", "dst_port"):
            raw = as_strings(raw)
            if pa.types.is_string(raw.type) and not pc.all(has_ports).as_py():
                # nfdump's ICMP `type.code` in the port column: blank it before the cast,
                # or every batch with ICMP takes the slow per-value path
                raw = pc.if_else(has_ports, raw, pa.scalar(None, raw.type))
        values, bad = to_int_column(raw, type_)
        if name in ("src_port", "dst_port"):
            too_big = pc.fill_null(pc.greater(values, 65535), False)
            bad = pc.or_(bad, too_big)
            values = pc.if_else(too_big, pa.scalar(None, type_), values)
        if has_ports is not None and name in ("src_port", "dst_port"):
            bad = pc.and_(bad, has_ports)
            values = pc.if_else(has_ports, values, pa.scalar(None, type_))
        flag(f"bad number in {mapping[name]}", bad)
        out[name] = values
    for name in ("src_tcp_flags", "dst_tcp_flags"):
        if column(name) is not None:
            text = shortcut(name)
            if text is None:
                text = as_strings(column(name))
            if pa.types.is_integer(text.type):
                values, bad = _typed_flags(text)
            else:
                values, bad = map_distinct(text if _is_dictionary(text) else text.cast(pa.string()),
                                           tcp_flags_value, pa.uint8())
            flag(f"bad TCP flags in {mapping[name]}", bad)
            out[name] = values
    for name in ("app_protocol",):
        if column(name) is not None:
            out[name] = as_strings(column(name)).cast(pa.string())
    for name in FLOAT_COLUMNS:
        if column(name) is not None:
            values, bad = to_float_column(column(name))
            flag(f"bad number in {mapping[name]}", bad)
            out[name] = values

    keep = None
    if problems:
        any_bad = np.zeros(n, bool)
        for reason, mask, shown in problems:
            new = mask & ~any_bad  # one reason per row: the first found
            for index in np.flatnonzero(new) if reason else ():
                detail = _shown_value(shown[int(index)].as_py()) if shown is not None else ""
                stats.reject(int(lines[index]), reason, _row_text(batch, int(index)), detail)
            any_bad |= mask
        if any_bad.all():
            return None
        keep = pa.array(~any_bad)
    out["source_file"] = pa.array([source_file], pa.string()).take(np.zeros(n, dtype=np.int32))
    out["flow_ref"] = pa.array(np.asarray(lines, dtype=np.int64))
    arrays = [_as_array(out.get(f.name), n, f.type) for f in FLOWS]
    result = pa.RecordBatch.from_arrays(arrays, schema=FLOWS)
    if keep is not None:
        result = result.filter(keep)
    stats.accepted["flows"] += result.num_rows
    return ("flows", result)


def _plain_ints(values: pa.Array | None, has_ports: pa.Array | None) -> pa.Array | None:
    """The splitter's int64 column (null where the text is not plain digits) when it
    gives what the text would: every value plain, or (ports) every one that counts."""
    if values is None or values.null_count == 0:
        return values
    unplain = pc.is_null(values)
    if has_ports is not None:
        unplain = pc.and_(unplain, has_ports)
    return None if pc.any(unplain).as_py() else values


def _proto_and_l4(text: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(protocol number, l4 name, bad mask) from protocol names or numbers, worked out
    once per distinct value."""
    encoded = text if pa.types.is_dictionary(text.type) else pc.dictionary_encode(text)
    numbers, names, bad = [], [], []
    for value in encoded.dictionary.to_pylist():
        try:
            number = _proto_or_fail(value)
        except (ValueError, TypeError):
            number = None
            bad.append(True)
        else:
            bad.append(False)
        numbers.append(number)
        names.append(l4_name(number))
    indices = encoded.indices
    return (pc.take(pa.array(numbers, pa.int16()), indices), pc.take(pa.array(names, pa.string()), indices),
            pc.fill_null(pc.take(pa.array(bad, pa.bool_()), indices), False))


_L4_NAMES = pa.array([l4_name(number) for number in range(256)], pa.string())


def _typed_proto_and_l4(numbers: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(protocol number, l4 name, bad mask) from an integer column: 0-255 or null."""
    proto, bad = to_int_column(numbers, pa.int16())
    out_of_range = pc.fill_null(pc.or_(pc.less(proto, 0), pc.greater(proto, 255)), False)
    if pc.any(out_of_range).as_py():
        bad = pc.or_(bad, out_of_range)
        proto = pc.if_else(out_of_range, pa.scalar(None, pa.int16()), proto)
    return proto, pc.take(_L4_NAMES, proto), bad


def _typed_flags(numbers: pa.Array) -> tuple[pa.Array, pa.Array]:
    """TCP flags from an integer column as `tcp_flags_value` reads numbers: the low
    byte; a negative number is bad."""
    negative = pc.fill_null(pc.less(numbers, 0), False)
    low = pc.bit_wise_and(numbers, pa.scalar(0xFF, numbers.type)).cast(pa.uint8(), safe=False)
    if pc.any(negative).as_py():
        return pc.if_else(negative, pa.scalar(None, pa.uint8()), low), negative
    return low, negative


def _is_dictionary(column: pa.Array) -> bool:
    return pa.types.is_dictionary(column.type)


def _blank_rows(*columns) -> np.ndarray | None:
    """Mask of rows whose key columns are all null or empty text; None when there are none."""
    blank = None
    for column in columns:
        column = as_strings(column)
        empty = pc.is_null(column)
        if pa.types.is_string(column.type):
            empty = pc.or_(empty, pc.fill_null(pc.equal(column, ""), False))
        blank = empty if blank is None else pc.and_(blank, empty)
    if not pc.any(blank).as_py():
        return None
    return np.asarray(blank.to_numpy(zero_copy_only=False), bool)


def _proto_or_fail(value):
    if value is None or value == "":
        return None
    number = proto_number(value)
    if number is None:
        raise ValueError(f"unknown protocol {value!r}")
    return number


def _has_naive_text(column) -> bool:
    if column is None or not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return False
    for sample in column.slice(0, 50).to_pylist():
        sample = (sample or "").strip()
        if len(sample) > 10 and sample[4] in "-/" and not re.search(r"(Z|[+-]\d\d:?\d\d)$", sample):
            return True
    return False


def _as_array(values, n: int, type_: pa.DataType) -> pa.Array:
    if values is None:
        return pa.nulls(n, type_)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values if values.type == type_ else values.cast(type_)


def _shown_value(value) -> str:
    """A field's value for a reject reason: quoted (spaces and odd bytes visible), cut short."""
    text = "" if value is None else str(value)
    return repr(text if len(text) <= 60 else text[:60] + "...")


def _row_text(batch: pa.RecordBatch, index: int) -> str:
    row = batch.slice(index, 1).to_pylist()[0]
    return ",".join("" if v is None else str(v) for v in row.values())

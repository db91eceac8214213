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
loop (`_stream_csv`) that parses and converts pieces of the file in worker threads.
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
from minewatch.schema.flows import FLOWS, TS
from minewatch.sources import _records
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
}
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


def read_tabular(
    path: str | Path,
    mapping: dict[str, str],
    *,
    stats: SourceStats,
    time_unit: str = "auto",
    naive_tz: str = "UTC",
    delimiter: str = ",",
    batch_rows: int = BATCH_ROWS,
) -> Iterator[Batch]:
    """Yield ("flows", batch) for a CSV or Parquet file read through `mapping`."""
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
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise InputError(path, f"unreadable Parquet file: {e}") from None
    names = set(parquet.schema_arrow.names)
    _check_columns(path, mapping, names)
    wanted = sorted(set(mapping.values()))
    first = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=wanted):
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
    delimiter: str = ",",
    batch_rows: int = BATCH_ROWS,
    trailer_marker: str | None = None,
    note_naive: bool = True,
) -> Iterator[Batch]:
    """CSV with a header line, streamed with pyarrow.csv. Rows with a wrong number of
    fields are rejected with their line; from a line equal to `trailer_marker` on
    (nfdump's `Summary`), the rest is a trailer, not records."""
    with open_input(path) as f:
        head = f.read(65536)
    if not head.strip():
        stats.note("empty file")
        return
    if looks_binary(head):
        raise InputError(path, "binary data, not a CSV text file", "byte 0")
    header_line = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip("\r\n")
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

    The text is cut into pieces at line ends; each piece is parsed (pyarrow.csv, one
    thread per piece, so the parser's row numbers are exact) and converted in a worker
    thread, and the results come back in file order, where the piece's line numbers are
    shifted by the lines before it. A line equal to `trailer_marker` (nfdump's `Summary`)
    ends the records: it and what follows are a trailer."""
    used = set(mapping.values())
    wanted = [name for name in dict.fromkeys(names) if name in used]  # in file order
    convert_options = pcsv.ConvertOptions(include_columns=wanted,
                                          column_types={c: pa.string() for c in wanted},
                                          strings_can_be_null=False)

    def work(data: memoryview) -> _Piece:
        piece = _Piece([], SourceStats(str(path)), 0)
        skipped: list[int] = []  # piece lines the parser did not turn into rows
        trailer_line = 0

        def on_invalid(row) -> str:
            nonlocal trailer_line
            number = row.number or 0
            skipped.append(number)
            text = row.text or ""
            if trailer_marker and not trailer_line and text.strip() == trailer_marker:
                trailer_line = number
            if not trailer_line and text.strip():  # blank lines are not records
                piece.stats.reject(number, f"wrong number of fields ({row.actual_columns}, expected {row.expected_columns})", text)
            return "skip"

        read_options = pcsv.ReadOptions(use_threads=False, column_names=names, block_size=len(data) + 1)
        # without any quote in the piece, quoting changes nothing and parsing is twice as fast
        quote_char = '"' if piece_has(data, b'"') else False
        parse_options = pcsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid,
                                          ignore_empty_lines=False, quote_char=quote_char)
        try:
            table = pcsv.read_csv(pa.py_buffer(data), read_options=read_options, parse_options=parse_options,
                                  convert_options=convert_options)
        except pa.ArrowInvalid as e:
            piece.error = str(e)
            return piece
        piece.lines = table.num_rows + len(skipped)  # every line is a row or was skipped
        lines = lines_of_rows(0, table.num_rows, 0, skipped)
        if trailer_line:
            piece.trailer = True
            keep = int(np.searchsorted(lines, trailer_line))
            table, lines = table.slice(0, keep), lines[:keep]
        if table.num_rows:
            batch = table.combine_chunks().to_batches()[0]
            for start in range(0, batch.num_rows, batch_rows):
                out = columns_to_flows(batch.slice(start, batch_rows), mapping, lines[start:start + batch_rows],
                                       str(path), piece.stats, time_unit, naive_tz, note_naive)
                if out is not None:
                    piece.outputs.append(out[1])
        return piece

    try:
        before = skip_lines(stream, header_lines)  # lines before the current piece
        errors: list[str] = []
        ahead = _records.WORKERS + 1  # pieces in flight; the buffer ring has two more
        pieces = line_pieces(stream, _records.CHUNK_BYTES, errors, slots=ahead + 2)
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


def _rebatch(reader, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """pyarrow.csv blocks cut into batches of at most `batch_rows`."""
    for batch in reader:
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows)


def columns_to_flows(
    batch: pa.RecordBatch,
    mapping: dict[str, str],
    lines: np.ndarray,
    source_file: str,
    stats: SourceStats,
    time_unit: str = "auto",
    naive_tz: str = "UTC",
    note_naive: bool = True,
) -> Batch | None:
    """Convert source columns to a FLOWS batch; rows with a bad or missing required
    value are rejected (reason per column), the others kept."""
    n = batch.num_rows
    if n == 0:
        return None
    source = {name: batch.column(name) for name in batch.schema.names}
    out: dict[str, pa.Array] = {}
    problems: list[tuple[str, np.ndarray]] = []

    def column(canonical: str):
        name = mapping.get(canonical)
        return source[name] if name is not None else None

    def flag(reason: str, mask) -> None:
        mask = np.asarray(mask.to_numpy(zero_copy_only=False) if hasattr(mask, "to_numpy") else mask, bool)
        if mask.any():
            problems.append((reason, mask))

    blank = _blank_rows(column("ts_start"), column("src_ip"), column("dst_ip"))
    if blank is not None:  # empty lines (or rows of empty fields): not records, nothing to keep
        stats.ignore("empty rows", int(blank.sum()))
        problems.append(("", blank))
    start, bad = to_time_column(column("ts_start"), time_unit, naive_tz)
    flag(f"bad time in {mapping['ts_start']}", bad)
    flag(f"missing {mapping['ts_start']}", pc.is_null(start))
    out["ts_start"] = start
    if column("ts_end") is not None:
        end, bad = to_time_column(column("ts_end"), time_unit, naive_tz)
        flag(f"bad time in {mapping['ts_end']}", bad)
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
        bad = ip_text_bad(values)
        if pc.any(bad).as_py():  # padded (nfdump fmt output) or empty: trim and look again
            values = pc.utf8_trim_whitespace(values)
            values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
            bad = ip_text_bad(values)
        flag(f"missing {mapping[side]}", pc.is_null(values))
        flag(f"bad address in {mapping[side]}", bad)
        out[side] = values

    proto = None
    if column("ip_proto") is not None:
        proto, bad = map_distinct(as_strings(column("ip_proto")).cast(pa.string()), _proto_or_fail, pa.int16())
        flag(f"bad protocol in {mapping['ip_proto']}", bad)
        out["ip_proto"] = proto
        out["l4"] = map_distinct(proto, l4_name, pa.string())[0]
    if column("l4") is not None and "l4" not in out:
        out["l4"] = as_strings(column("l4")).cast(pa.string())

    # ports only mean something for TCP, UDP, SCTP, UDP-Lite (nfdump writes ICMP type.code there)
    has_ports = None
    if proto is not None:
        has_ports = pc.fill_null(pc.is_in(proto, pa.array(sorted(PORT_PROTOCOLS), pa.int16())), True)
    for name, type_ in INT_COLUMNS.items():
        if column(name) is None:
            continue
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
            values, bad = map_distinct(as_strings(column(name)).cast(pa.string()), tcp_flags_value, pa.uint8())
            flag(f"bad TCP flags in {mapping[name]}", bad)
            out[name] = values
    for name in ("app_protocol",):
        if column(name) is not None:
            out[name] = as_strings(column(name)).cast(pa.string())
    for name in ("src_iat_mean_ms", "src_iat_std_ms"):
        if column(name) is not None:
            values, bad = to_float_column(column(name))
            flag(f"bad number in {mapping[name]}", bad)
            out[name] = values

    keep = None
    if problems:
        any_bad = np.zeros(n, bool)
        for reason, mask in problems:
            new = mask & ~any_bad  # one reason per row: the first found
            for index in np.flatnonzero(new) if reason else ():
                stats.reject(int(lines[index]), reason, _row_text(batch, int(index)))
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


def _row_text(batch: pa.RecordBatch, index: int) -> str:
    row = batch.slice(index, 1).to_pylist()[0]
    return ",".join("" if v is None else str(v) for v in row.values())

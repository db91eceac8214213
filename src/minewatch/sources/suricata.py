"""Suricata EVE JSON lines -> flows, dns, tls, http, alerts.

- `flow` events (bidirectional: to-server side is src) and `netflow` events
  (one direction each; the reverse counters stay null) -> flows.
- `dns`: version 1 (one event per query, one per answer record, flat `rrname`/`rdata`),
  version 2 (answer events with an `answers` array and `grouped`), version 3
  (`queries` and `answers` arrays) -> one dns row per event.
- `tls` -> tls, `http` -> http, `alert` -> alerts. Other event types (fileinfo,
  anomaly, stats, ...) are counted under `ignored`.

Speed: the file is read in pieces by worker threads; `flow`, `alert`, `dns`, `tls` and
`http` events are parsed with pyarrow.json and converted with vectorised compute, the
other events (and any the vectorised path is not sure of) with the per-event code of the
line reader (`_read_by_line`, the reference the tests compare to).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from minewatch.errors import InputError
from minewatch.schema.alerts import ALERTS
from minewatch.schema.dns import DNS
from minewatch.schema.flows import FLOWS
from minewatch.schema.http import HTTP
from minewatch.schema.tls import TLS
from minewatch.sources._names import clean_domains
from minewatch.sources._records import (
    BATCH_ROWS,
    PieceJoiner,
    RecordError,
    first_of_lists,
    address_field,
    ip_text_bad,
    line_pieces,
    looks_binary,
    map_distinct,
    open_input,
    ordered_map,
    piece_has,
    PORT_PROTOCOLS,
    Batch,
    Batchers,
    SourceStats,
    any_time_to_us,
    clean_domain,
    l4_name,
    opt_int,
    proto_number,
    tcp_flags_value,
    text_lines,
    too_broken,
)

DNS_PORTS = (53, 853, 5353, 5355)
ZONED = r"(Z|[+-][0-9]{2}:?[0-9]{2})$"  # Suricata writes +0000; a time without one is read as UTC
NAIVE_NOTE = "EVE times without a zone offset were read as UTC"
SCHEMAS = {"flows": FLOWS, "dns": DNS, "tls": TLS, "http": HTTP, "alerts": ALERTS}


def read_suricata(path: str | Path, *, stats: SourceStats, batch_rows: int = BATCH_ROWS) -> Iterator[Batch]:
    """Yield (table, batch) for one eve.json file; fills `stats`."""
    source = str(path)
    stats.reader = "suricata-eve"
    with open_input(path) as f:
        head = f.read(65536)
    content = [line for line in head.split(b"\n")[:-1] if line.strip()]
    if looks_binary(head[:4096]) or not content or not content[0].lstrip().startswith(b"{"):
        yield from _read_by_line(path, source, stats, batch_rows)  # says what is wrong, or reads a tiny file
        return
    yield from _read_in_pieces(path, source, stats, batch_rows)
    too_broken(stats, path, "Suricata EVE file")


def _read_by_line(path, source: str, stats: SourceStats, batch_rows: int) -> Iterator[Batch]:
    """The line-by-line reader (the reference the fast path must match)."""
    batchers = Batchers(SCHEMAS, stats, batch_rows)
    saw_content = False
    for number, text in text_lines(path, stats):
        if not text.strip():
            continue
        if not saw_content:
            saw_content = True
            if not text.lstrip().startswith("{"):
                raise InputError(path, "not Suricata EVE JSON: the first line is not a JSON object", f"line {number}")
        made = _event_row(number, text, source, stats)
        if made is not None and (out := batchers.add(*made)) is not None:
            yield out
    yield from batchers.flush_all()
    too_broken(stats, path, "Suricata EVE file")


def _event_row(number: int, text: str, source: str, stats: SourceStats) -> tuple[str, dict] | None:
    """(table, row) for one EVE line, or None (counted as rejected or ignored)."""
    try:
        event = json.loads(text)
    except ValueError as e:
        stats.reject(number, f"malformed JSON ({getattr(e, 'msg', e)})", text)
        return None
    if not isinstance(event, dict):
        stats.reject(number, "JSON line is not an object", text)
        return None
    kind = event.get("event_type")
    mapper = MAPPERS.get(kind)
    if mapper is None:
        stats.ignore(f"{kind or 'untyped'} events")
        return None
    try:
        table, row = mapper(event)
    except RecordError as e:
        stats.reject(number, e.reason, text, detail=e.detail)
        return None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
        stats.reject(number, f"bad {kind} event: {e}", text)
        return None
    row["source_file"] = source
    row["flow_ref" if table == "flows" else "record_ref"] = number
    stamp = event.get("timestamp")
    if isinstance(stamp, str) and not re.search(ZONED, stamp):
        stats.note(NAIVE_NOTE)
    return table, row


# ---------------------------------------------------------------- pieces in threads
#
# The file is cut into pieces at line ends; a worker reads each piece with
# pyarrow.json and converts its `flow` events (most of an eve.json) with vectorised
# compute; the other events, and whole pieces the vectorised path is not sure of (a
# malformed line, a blank line, a value of an odd type or out of range), go through the
# line reader's per-event code. Line numbers are relative to the piece, shifted in order.


@dataclass
class _PieceResult:
    lines: int
    tables: list[tuple[str, pa.RecordBatch]]
    stats: SourceStats


def _read_in_pieces(path, source: str, stats: SourceStats, batch_rows: int) -> Iterator[Batch]:
    joiner = PieceJoiner(stats, batch_rows)
    errors: list[str] = []
    with open_input(path) as stream:
        for result in ordered_map(lambda piece: _read_piece(piece, source), line_pieces(stream, errors=errors)):
            yield from joiner.add(result.tables, result.stats, result.lines)
    yield from joiner.finish(errors)


def _read_piece(piece: memoryview, source: str) -> _PieceResult:
    local = SourceStats(source)
    data = piece.obj
    lines = data.count(b"\n", 0, piece.nbytes) + (0 if data[piece.nbytes - 1:piece.nbytes] == b"\n" else 1)
    built: list[tuple[str, pa.RecordBatch]] = []
    done = np.zeros(0, np.int64)  # rows (0-based) converted by the vectorised path
    table = _parse_json(piece, lines)
    if table is not None:
        stamps = table.column("timestamp").combine_chunks()
        if not pc.all(pc.fill_null(pc.match_substring_regex(stamps, ZONED), True)).as_py():
            local.note(NAIVE_NOTE)
        kinds = table.column("event_type").combine_chunks()
        for kind, (name, builder) in FAST_EVENTS.items():
            rows = np.flatnonzero(pc.fill_null(pc.equal(kinds, kind), False).to_numpy(zero_copy_only=False))
            if len(rows):
                batch = builder(table.take(rows), source, rows + 1)
                if batch is not None:
                    built.append((name, batch))
                    done = np.concatenate([done, rows])
    # every line not converted above goes through the per-event code
    rows_by_table: dict[str, list[dict]] = {}
    if len(done) < lines:
        skip = np.zeros(lines + 1, bool)
        skip[done + 1] = True
        texts = bytes(piece).split(b"\n")
        for number, raw in enumerate(texts[:lines], start=1):
            if skip[number]:
                continue
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not text.strip():
                continue
            made = _event_row(number, text, source, local)
            if made is not None:
                rows_by_table.setdefault(made[0], []).append(made[1])
    for name, items in rows_by_table.items():
        schema = SCHEMAS[name]
        arrays = [pa.array([row.get(f.name) for row in items], type=f.type) for f in schema]
        built.append((name, pa.RecordBatch.from_arrays(arrays, schema=schema)))
    tables = []
    for name in dict.fromkeys(name for name, _ in built):
        parts = [batch for table_name, batch in built if table_name == name]
        if len(parts) == 1:
            tables.append((name, parts[0]))
            continue
        whole = pa.Table.from_batches(parts).sort_by("flow_ref" if name == "flows" else "record_ref")
        tables.append((name, whole.combine_chunks().to_batches()[0]))
    return _PieceResult(lines, tables, local)


# the fields the vectorised path reads; the others are skipped by the parser
_EVENT_FIELDS = pa.schema([
    ("event_type", pa.string()), ("timestamp", pa.string()), ("src_ip", pa.string()), ("dest_ip", pa.string()),
    ("src_port", pa.int64()), ("dest_port", pa.int64()), ("proto", pa.string()), ("app_proto", pa.string()),
    ("vlan", pa.list_(pa.int64())),
    ("flow", pa.struct([("pkts_toserver", pa.int64()), ("pkts_toclient", pa.int64()), ("bytes_toserver", pa.int64()),
                        ("bytes_toclient", pa.int64()), ("start", pa.string()), ("end", pa.string())])),
    ("tcp", pa.struct([("tcp_flags_ts", pa.string()), ("tcp_flags_tc", pa.string())])),
    ("alert", pa.struct([("signature_id", pa.int64()), ("signature", pa.string()), ("category", pa.string()),
                         ("severity", pa.int64())])),
])


def _parse_json(piece: memoryview, lines: int) -> pa.Table | None:
    """The piece as one table of events, row i being line i+1; None when it cannot be (a
    malformed line, a blank one, a value of another type than `_EVENT_FIELDS` says). An
    app-layer object of an unexpected shape costs only the piece's dns/tls/http events the
    fast path: the piece is parsed again without the app-layer fields, flows stay fast."""
    if piece_has(piece, b"\r"):
        return None
    for schema in (_ALL_FIELDS, _EVENT_FIELDS):
        try:
            table = pjson.read_json(pa.py_buffer(piece),
                                    read_options=pjson.ReadOptions(use_threads=False, block_size=piece.nbytes + 1),
                                    parse_options=pjson.ParseOptions(explicit_schema=schema,
                                                                     unexpected_field_behavior="ignore"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return table if table.num_rows == lines else None
    return None


_NAMED = pa.list_(pa.struct([("rrname", pa.string()), ("rrtype", pa.string())]))
_APP_FIELDS = [
    ("dns", pa.struct([("type", pa.string()), ("id", pa.int64()), ("rrname", pa.string()), ("rrtype", pa.string()),
                       ("rcode", pa.string()), ("rdata", pa.string()), ("queries", _NAMED),
                       ("answers", pa.list_(pa.struct([("rdata", pa.string())])))])),
    ("tls", pa.struct([("sni", pa.string()), ("version", pa.string()), ("subject", pa.string()),
                       ("issuerdn", pa.string()), ("ja3", pa.struct([("hash", pa.string())])),
                       ("ja3s", pa.struct([("hash", pa.string())]))])),
    ("http", pa.struct([("http_method", pa.string()), ("hostname", pa.string()), ("url", pa.string()),
                        ("http_user_agent", pa.string()), ("status", pa.int64()), ("request_body_len", pa.int64()),
                        ("length", pa.int64()), ("http_content_type", pa.string())])),
]
_ALL_FIELDS = pa.schema(list(_EVENT_FIELDS) + [pa.field(name, type_) for name, type_ in _APP_FIELDS])


class _Columns:
    """Top-level and nested columns of a table of events."""

    def __init__(self, events: pa.Table):
        self.n = events.num_rows
        self.top = {name: events.column(name).combine_chunks() for name in events.column_names}

    def get(self, name: str, inner: str | None = None) -> pa.Array | None:
        column = self.top.get(name)
        if column is None or inner is None:
            return column
        return pc.struct_field(column, inner) if column.type.get_field_index(inner) >= 0 else None


def _endpoints_fast(cols: _Columns, need_addresses: bool) -> dict | None:
    """Vectorised `_endpoints` (+ l4 as `_flow` and `_alert` make it)."""
    src_ip, dst_ip = cols.get("src_ip"), cols.get("dest_ip")
    if need_addresses and (src_ip.null_count or dst_ip.null_count
                           or pc.any(pc.or_(pc.equal(src_ip, ""), pc.equal(dst_ip, ""))).as_py()):
        return None
    if pc.any(ip_text_bad(src_ip)).as_py() or pc.any(ip_text_bad(dst_ip)).as_py():
        return None  # the per-event code rejects them with their value
    raw_proto = cols.get("proto")
    proto = map_distinct(raw_proto, proto_number, pa.int16())[0]
    l4 = pc.coalesce(map_distinct(proto, l4_name, pa.string())[0], raw_proto)
    has_ports = pc.fill_null(pc.is_in(proto, pa.array(sorted(PORT_PROTOCOLS), pa.int16())), False)
    out = {"src_ip": src_ip, "dst_ip": dst_ip, "_proto": proto, "l4": l4}
    for name, column in (("src_port", cols.get("src_port")), ("dst_port", cols.get("dest_port"))):
        values = _ints(pc.if_else(has_ports, column, pa.scalar(None, column.type)), 65535)
        if values is False:
            return None
        out[name] = values
    return out


def _flows_fast(events: pa.Table, source: str, refs: np.ndarray) -> pa.RecordBatch | None:
    """Vectorised `_flow` for `flow` events; None when a row might not come out exactly as
    `_flow` makes it (those events then go through the per-event code)."""
    cols = _Columns(events)
    n = cols.n
    out = _endpoints_fast(cols, need_addresses=True)
    if out is None:
        return None
    out["ip_proto"] = out.pop("_proto")
    start_text = cols.get("flow", "start")
    start_text = pc.if_else(pc.fill_null(pc.not_equal(start_text, ""), False), start_text, cols.get("timestamp"))
    start = _times(start_text)
    if start is None or start.null_count:
        return None
    end_text = cols.get("flow", "end")
    given = pc.fill_null(pc.not_equal(end_text, ""), False)
    end = start
    if pc.any(given).as_py():
        parsed = _times(pc.if_else(given, end_text, pa.scalar(None, pa.string())))
        if parsed is None:
            return None
        end = pc.if_else(given, parsed, start)
    later = pc.max_element_wise(end.cast(pa.int64()), start.cast(pa.int64()))
    out["ts_start"], out["ts_end"] = start, later.cast(start.type)
    for name, field_name in (("src_tcp_flags", "tcp_flags_ts"), ("dst_tcp_flags", "tcp_flags_tc")):
        values, bad = map_distinct(cols.get("tcp", field_name), lambda v: tcp_flags_value(v and "0x" + v), pa.uint8())
        if pc.any(bad).as_py():
            return None
        out[name] = values
    vlan = cols.get("vlan")
    if vlan.null_count < n:
        first = pc.list_element(pc.if_else(pc.fill_null(pc.greater(pc.list_value_length(vlan), 0), False), vlan,
                                           pa.scalar(None, vlan.type)), 0)
        values = _ints(first, 4095)
        if values is False:
            return None
        out["vlan_id"] = values
    for name, field_name in (("src_packets", "pkts_toserver"), ("dst_packets", "pkts_toclient"),
                             ("src_bytes", "bytes_toserver"), ("dst_bytes", "bytes_toclient")):
        values = _ints(cols.get("flow", field_name), 1 << 62)
        if values is False:
            return None
        out[name] = values
    app = cols.get("app_proto")
    out["app_protocol"] = pc.if_else(pc.fill_null(pc.equal(app, "failed"), False), pa.scalar(None, pa.string()), app)
    return _batch(FLOWS, out, source, "flow_ref", refs)


def _alerts_fast(events: pa.Table, source: str, refs: np.ndarray) -> pa.RecordBatch | None:
    """Vectorised `_alert`; None when a row might not come out exactly as `_alert` makes it."""
    cols = _Columns(events)
    alert = cols.get("alert")
    if alert.null_count:
        return None  # "alert event without an alert object": the per-event code says so
    out = _endpoints_fast(cols, need_addresses=False)
    if out is None:
        return None
    out.pop("_proto")
    ts = cols.get("timestamp")
    out["ts"] = _times(ts) if not pc.any(pc.fill_null(pc.equal(ts, ""), True)).as_py() else None
    if out["ts"] is None or out["ts"].null_count:
        return None
    for name, high in (("signature_id", 1 << 62), ("severity", 255)):
        values = _ints(cols.get("alert", name), high)
        if values is False:
            return None
        out[name] = values
    out["signature"], out["category"] = cols.get("alert", "signature"), cols.get("alert", "category")
    return _batch(ALERTS, out, source, "record_ref", refs)


def _app_common(cols: _Columns, app: str) -> dict | None:
    """Time and endpoints of dns/tls/http events (`_common`); None when the per-event code
    must decide (no app-layer object, a missing or odd time, a bad port)."""
    if cols.get(app) is None or cols.get(app).null_count:
        return None  # "<app> event without a <app> object", or parsed without the app fields
    ts = cols.get("timestamp")
    if ts.null_count or pc.any(pc.equal(ts, "")).as_py():
        return None
    out = _endpoints_fast(cols, need_addresses=False)
    times = _times(ts)
    if out is None or times is None:
        return None
    out["ts"] = times
    return out


def _dns_fast(events: pa.Table, source: str, refs: np.ndarray) -> pa.RecordBatch | None:
    """Vectorised `_dns` (versions 1, 2 and 3)."""
    cols = _Columns(events)
    out = _app_common(cols, "dns")
    if out is None:
        return None
    proto = out.pop("_proto")
    trans_id = _ints(cols.get("dns", "id"), 65535)
    if trans_id is False:
        return None
    response = pc.fill_null(pc.is_in(cols.get("dns", "type"), pa.array(["answer", "response"])), False)
    first = first_of_lists(cols.get("dns", "queries"))  # a null struct stands for `first_query = {}`
    query = pc.coalesce(cols.get("dns", "rrname"), pc.struct_field(first, "rrname"))
    listed = cols.get("dns", "answers")
    rdata = cols.get("dns", "rdata")
    single = pc.if_else(pc.and_(response, pc.is_valid(rdata)), _one_item_lists(rdata), pa.scalar([], _NAMES))
    answers = pc.if_else(pc.is_valid(listed), _present_rdata(listed), single)
    src_port, dst_port = out["src_port"], out["dst_port"]
    ports = pa.array(DNS_PORTS, pa.int64())
    swap = pc.and_(pc.fill_null(pc.is_in(src_port, ports), False),
                   pc.invert(pc.fill_null(pc.is_in(dst_port, ports), False)))
    side = lambda a, b: pc.if_else(swap, b, a)  # noqa: E731
    rows = {
        "ts": out["ts"], "client_ip": side(out["src_ip"], out["dst_ip"]),
        "client_port": side(src_port, dst_port), "server_ip": side(out["dst_ip"], out["src_ip"]),
        "server_port": side(dst_port, src_port), "l4": map_distinct(proto, l4_name, pa.string())[0],
        "trans_id": trans_id, "query": clean_domains(query),
        "qtype": pc.coalesce(cols.get("dns", "rrtype"), pc.struct_field(first, "rrtype")),
        "rcode": pc.if_else(response, cols.get("dns", "rcode"), pa.scalar(None, pa.string())),
        "answers": answers, "response": response,
    }
    return _batch(DNS, rows, source, "record_ref", refs)


_NAMES = pa.list_(pa.string())


def _one_item_lists(values: pa.Array) -> pa.Array:
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values.cast(pa.string()))


def _present_rdata(answers: pa.Array) -> pa.Array:
    """Each answer list's non-null `rdata` values, in order (nulls of the list kept)."""
    answers = answers if answers.offset == 0 else pa.concat_arrays([answers])
    values = pc.struct_field(answers.values, "rdata")
    keep = pc.is_valid(values).to_numpy(zero_copy_only=False)
    offsets = answers.offsets.to_numpy(zero_copy_only=False)
    kept_before = np.r_[0, np.cumsum(keep)]
    new_offsets = pa.array(kept_before[offsets].astype(np.int32))
    return pa.ListArray.from_arrays(new_offsets, values.filter(pa.array(keep)), mask=answers.is_null())


def _tls_fast(events: pa.Table, source: str, refs: np.ndarray) -> pa.RecordBatch | None:
    """Vectorised `_tls`."""
    cols = _Columns(events)
    out = _app_common(cols, "tls")  # its _proto and l4 are not TLS columns: `_batch` leaves them
    if out is None:
        return None
    out.update({"server_name": clean_domains(cols.get("tls", "sni")), "version": cols.get("tls", "version"),
                "ja3": pc.struct_field(cols.get("tls", "ja3"), "hash"),
                "ja3s": pc.struct_field(cols.get("tls", "ja3s"), "hash"),
                "subject": cols.get("tls", "subject"), "issuer": cols.get("tls", "issuerdn")})
    return _batch(TLS, out, source, "record_ref", refs)


def _http_fast(events: pa.Table, source: str, refs: np.ndarray) -> pa.RecordBatch | None:
    """Vectorised `_http`."""
    cols = _Columns(events)
    out = _app_common(cols, "http")  # its _proto and l4 are not HTTP columns: `_batch` leaves them
    if out is None:
        return None
    for name, field_name, high in (("status", "status", 999), ("request_body_len", "request_body_len", 1 << 62),
                                   ("response_body_len", "length", 1 << 62)):
        values = _ints(cols.get("http", field_name), high)
        if values is False:
            return None
        out[name] = values
    out.update({"method": cols.get("http", "http_method"), "host": cols.get("http", "hostname"),
                "uri": cols.get("http", "url"), "user_agent": cols.get("http", "http_user_agent"),
                "content_type": cols.get("http", "http_content_type")})
    return _batch(HTTP, out, source, "record_ref", refs)


def _batch(schema: pa.Schema, out: dict, source: str, ref: str, refs: np.ndarray) -> pa.RecordBatch:
    n = len(refs)
    out["source_file"] = pa.array([source], pa.string()).take(np.zeros(n, np.int32))
    out[ref] = pa.array(refs.astype(np.int64))
    return pa.RecordBatch.from_arrays([_typed(out.get(f.name), n, f.type) for f in schema], schema=schema)


def _ints(column: pa.Array | None, high: int):
    """int64 values of a JSON integer column within 0..high (nulls stay null); False when
    any value is of another type or out of range; None for an absent column."""
    if column is None:
        return None
    if column.null_count == len(column):
        return pa.nulls(len(column), pa.int64())
    if not pa.types.is_integer(column.type):
        return False
    low_ok = pc.min(column).as_py() >= 0
    high_ok = pc.max(column).as_py() <= high
    return column.cast(pa.int64()) if low_ok and high_ok else False


def _times(column: pa.Array) -> pa.Array | None:
    """ISO 8601 text with a zone -> TS; None when any value would need the per-event code
    (no zone, epoch numbers, odd spacing)."""
    try:
        return column.cast(FLOWS.field("ts_start").type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def _typed(values, n: int, type_: pa.DataType) -> pa.Array:
    if values is None:
        return pa.nulls(n, type_)
    return values if values.type == type_ else values.cast(type_)


def _time(value, what: str) -> int:
    if value in (None, ""):
        raise RecordError(f"missing {what}")
    try:
        return any_time_to_us(value)
    except (ValueError, OverflowError):
        raise RecordError(f"bad time in {what}", repr(value)) from None


def _endpoints(event: dict) -> dict:
    proto = proto_number(event.get("proto"))
    has_ports = proto in PORT_PROTOCOLS
    return {
        "src_ip": address_field(event.get("src_ip"), "src_ip"),
        "src_port": opt_int(event.get("src_port"), 0, 65535) if has_ports else None,
        "dst_ip": address_field(event.get("dest_ip"), "dest_ip"),
        "dst_port": opt_int(event.get("dest_port"), 0, 65535) if has_ports else None,
        "_proto": proto,
    }


def _flow(event: dict) -> tuple[str, dict]:
    ends = _endpoints(event)
    if not ends["src_ip"] or not ends["dst_ip"]:
        raise RecordError("missing src_ip or dest_ip")
    proto = ends.pop("_proto")
    netflow = event["event_type"] == "netflow"
    counters = event.get("netflow" if netflow else "flow") or {}
    start = _time(counters.get("start") or event.get("timestamp"), "start")
    end = _time(counters["end"], "end") if counters.get("end") else start
    tcp = event.get("tcp") or {}
    if netflow:
        src_packets, src_bytes = counters.get("pkts"), counters.get("bytes")
        dst_packets = dst_bytes = None
        src_flags, dst_flags = tcp_flags_value(tcp.get("tcp_flags") and "0x" + tcp["tcp_flags"]), None
    else:
        src_packets, src_bytes = counters.get("pkts_toserver"), counters.get("bytes_toserver")
        dst_packets, dst_bytes = counters.get("pkts_toclient"), counters.get("bytes_toclient")
        src_flags = tcp_flags_value(tcp.get("tcp_flags_ts") and "0x" + tcp["tcp_flags_ts"])
        dst_flags = tcp_flags_value(tcp.get("tcp_flags_tc") and "0x" + tcp["tcp_flags_tc"])
    return "flows", {
        **ends,
        "ts_start": start,
        "ts_end": max(end, start),
        "ip_proto": proto,
        "l4": l4_name(proto) if proto is not None else event.get("proto"),
        "vlan_id": opt_int(_first(event.get("vlan")), 0, 4095),
        "src_packets": opt_int(src_packets),
        "dst_packets": opt_int(dst_packets),
        "src_bytes": opt_int(src_bytes),
        "dst_bytes": opt_int(dst_bytes),
        "src_tcp_flags": src_flags,
        "dst_tcp_flags": dst_flags,
        "app_protocol": event.get("app_proto") if event.get("app_proto") not in (None, "failed") else None,
    }


def _first(value):
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _common(event: dict) -> dict:
    ends = _endpoints(event)
    ends.pop("_proto")
    return {"ts": _time(event.get("timestamp"), "timestamp"), **ends}


def _dns(event: dict) -> tuple[str, dict]:
    dns = event.get("dns")
    if not isinstance(dns, dict):
        raise RecordError("dns event without a dns object")
    common = _common(event)
    kind = dns.get("type")
    response = kind in ("answer", "response")
    queries = dns.get("queries") or []  # version 3
    first_query = queries[0] if queries and isinstance(queries[0], dict) else {}
    query = dns.get("rrname") if "rrname" in dns else first_query.get("rrname")
    qtype = dns.get("rrtype") if "rrtype" in dns else first_query.get("rrtype")
    answers = []
    if isinstance(dns.get("answers"), list):  # version 2 and 3
        answers = [str(a["rdata"]) for a in dns["answers"] if isinstance(a, dict) and a.get("rdata") is not None]
    elif response and dns.get("rdata") is not None:  # version 1: one event per answer record
        answers = [str(dns["rdata"])]
    proto = proto_number(event.get("proto"))
    # newer Suricata logs answers in the flow's direction (src = client), older in the
    # packet's (src = server): the DNS port tells which side is the server
    swap = common["src_port"] in DNS_PORTS and common["dst_port"] not in DNS_PORTS
    return "dns", {
        "ts": common["ts"],
        "client_ip": common["dst_ip"] if swap else common["src_ip"],
        "client_port": common["dst_port"] if swap else common["src_port"],
        "server_ip": common["src_ip"] if swap else common["dst_ip"],
        "server_port": common["src_port"] if swap else common["dst_port"],
        "l4": l4_name(proto),
        "trans_id": opt_int(dns.get("id"), 0, 65535),
        "query": clean_domain(query),
        "qtype": str(qtype) if qtype is not None else None,
        "rcode": dns.get("rcode") if response else None,
        "answers": answers,
        "response": response,
    }


def _tls(event: dict) -> tuple[str, dict]:
    tls = event.get("tls")
    if not isinstance(tls, dict):
        raise RecordError("tls event without a tls object")
    return "tls", {
        **_common(event),
        "server_name": clean_domain(tls.get("sni")),
        "version": tls.get("version"),
        "ja3": (tls.get("ja3") or {}).get("hash"),
        "ja3s": (tls.get("ja3s") or {}).get("hash"),
        "subject": tls.get("subject"),
        "issuer": tls.get("issuerdn"),
        "established": None,  # EVE does not say whether the handshake completed
    }


def _http(event: dict) -> tuple[str, dict]:
    http = event.get("http")
    if not isinstance(http, dict):
        raise RecordError("http event without an http object")
    return "http", {
        **_common(event),
        "method": http.get("http_method"),
        "host": http.get("hostname"),
        "uri": http.get("url"),
        "user_agent": http.get("http_user_agent"),
        "status": opt_int(http.get("status"), 0, 999),
        "request_body_len": opt_int(http.get("request_body_len")),  # not in every EVE version
        "response_body_len": opt_int(http.get("length")),
        "content_type": http.get("http_content_type"),
    }


def _alert(event: dict) -> tuple[str, dict]:
    alert = event.get("alert")
    if not isinstance(alert, dict):
        raise RecordError("alert event without an alert object")
    proto = proto_number(event.get("proto"))
    return "alerts", {
        **_common(event),
        "l4": l4_name(proto) if proto is not None else event.get("proto"),
        "signature_id": opt_int(alert.get("signature_id")),
        "signature": alert.get("signature"),
        "category": alert.get("category"),
        "severity": opt_int(alert.get("severity"), 0, 255),
    }


FAST_EVENTS = {"flow": ("flows", _flows_fast), "alert": ("alerts", _alerts_fast), "dns": ("dns", _dns_fast),
               "tls": ("tls", _tls_fast), "http": ("http", _http_fast)}
MAPPERS = {"flow": _flow, "netflow": _flow, "dns": _dns, "tls": _tls, "http": _http, "alert": _alert}

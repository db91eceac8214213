"""Zeek logs (TSV with `#fields` headers, or JSON lines) -> flows, dns, tls, http.

conn.log -> flows, dns.log -> dns, ssl.log -> tls, http.log -> http. Other logs
(files, x509, weird, ...) are recognised and skipped whole, counted under `ignored`.
Extra columns (the `label`/`detailedlabel` of `*.labeled` files, ja3 fields from
packages) are accepted. In TSV `-` is unset, `(empty)` an empty set/string, and
set/vector fields are split on `#set_separator`.

Speed: conn, dns, ssl and http logs, TSV or JSON, are read in pieces by worker threads
(pyarrow.csv / pyarrow.json and vectorised conversion, see `_read_tsv` and
`_read_json_pieces`); what the vectorised path is not sure of goes through the line
reader's code, which stays the reference (`_read_by_line`). JSON logs whose file name
does not tell their kind are read line by line.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.json as pjson

from minewatch.errors import InputError
from minewatch.schema.dns import DNS
from minewatch.schema.flows import FLOWS
from minewatch.schema.http import HTTP
from minewatch.schema.tls import TLS
from minewatch.sources._names import clean_domains
from minewatch.sources._records import (
    BATCH_ROWS,
    DECIMALS,
    RecordError,
    address_field,
    ip_text_bad,
    DIGITS,
    PieceJoiner,
    epoch_text_to_us,
    first_of_lists,
    line_pieces,
    map_distinct,
    ordered_map,
    piece_has,
    text_within,
    PORT_PROTOCOLS,
    Batch,
    Batchers,
    SourceStats,
    any_time_to_us,
    clean_domain,
    l4_name,
    looks_binary,
    open_input,
    opt_int,
    text_lines,
    too_broken,
)

TABLE_OF_LOG = {"conn": "flows", "dns": "dns", "ssl": "tls", "http": "http"}
SCHEMAS = {"flows": FLOWS, "dns": DNS, "tls": TLS, "http": HTTP}
# fields that tell a JSON log's kind when its file name does not
SIGNATURE_FIELDS = [
    ("conn", ("conn_state", "orig_pkts", "history")),
    ("dns", ("qtype_name", "trans_id", "rcode_name")),
    ("ssl", ("cipher", "server_name", "established")),
    ("http", ("method", "status_code", "trans_depth")),
    ("x509", ("certificate.subject",)),
    ("files", ("fuid", "mime_type", "seen_bytes")),
]

# Zeek history letters (uppercase: originator, lowercase: responder) -> TCP flag bits
HISTORY_FLAGS = {"s": 0x02, "h": 0x12, "a": 0x10, "d": 0x18, "f": 0x01, "r": 0x04}
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def read_zeek(path: str | Path, *, stats: SourceStats, batch_rows: int = BATCH_ROWS) -> Iterator[Batch]:
    """Yield (table, batch) for one Zeek log, TSV or JSON lines; fills `stats`."""
    source = str(path)
    with open_input(path) as f:
        head = f.read(65536)
    if looks_binary(head[:4096]):
        raise InputError(path, "binary data, not a text log", "byte 0")
    first = _first_content(head)
    if first is None and len(head) < 65536:
        stats.reader = "zeek"
        stats.note("empty file")
        return
    if first is not None and first[1].startswith(b"#"):
        stats.reader = "zeek-tsv"
        yield from _read_tsv(path, source, stats, batch_rows)
        too_broken(stats, path, "Zeek log")
        return
    if first is not None and first[1].startswith(b"{") and _kind_from_name(source) in FAST_JSON:
        stats.reader = "zeek-json"
        yield from _read_json_pieces(path, source, stats, batch_rows)
        too_broken(stats, path, "Zeek log")
        return
    yield from _read_by_line(path, source, stats, batch_rows)


def _first_content(head: bytes) -> tuple[int, bytes] | None:
    """(line number, stripped text) of the first non-blank line in the head of a file."""
    for number, line in enumerate(head.split(b"\n")[:-1] if b"\n" in head else [head], start=1):
        if line.strip():
            return number, line.lstrip()
    return None


def _read_by_line(path, source: str, stats: SourceStats, batch_rows: int) -> Iterator[Batch]:
    """The line-by-line reader: JSON logs, and whatever the TSV fast path does not take."""
    batchers = Batchers(SCHEMAS, stats, batch_rows)
    lines = text_lines(path, stats)
    first = _first_content_line(lines)
    if first is None:
        stats.reader = "zeek"
        stats.note("empty file")
        return
    number, text = first
    if text.lstrip().startswith("#"):
        stats.reader = "zeek-tsv"
        records = _tsv_records(source, [(number, text)], lines, stats)
    elif text.lstrip().startswith("{"):
        stats.reader = "zeek-json"
        records = _json_records(source, [(number, text)], lines, stats)
    else:
        raise InputError(path, "not a Zeek log: neither a #separator header nor JSON", f"line {number}")
    for table, row in _map_records(records, source, stats):
        if (out := batchers.add(table, row)) is not None:
            yield out
    yield from batchers.flush_all()
    too_broken(stats, path, "Zeek log")


def _map_records(records, source: str, stats: SourceStats) -> Iterator[tuple[str, dict]]:
    """(table, canonical row) for each usable record; the others counted in `stats`."""
    for line_no, kind, fields in records:
        table = TABLE_OF_LOG.get(kind)
        if table is None:
            stats.ignore(f"{kind or 'unknown'} log records")
            continue
        try:
            row = MAPPERS[kind](fields)
        except RecordError as e:
            stats.reject(line_no, e.reason, _raw(fields), detail=e.detail)
            continue
        except (ValueError, TypeError, OverflowError) as e:
            stats.reject(line_no, f"bad value: {e}", _raw(fields))
            continue
        row["source_file"] = source
        row["flow_ref" if table == "flows" else "record_ref"] = line_no
        yield table, row


def _first_content_line(lines: Iterator[tuple[int, str]]) -> tuple[int, str] | None:
    for number, text in lines:
        if text.strip():
            return number, text
    return None


def _raw(fields: dict) -> str:
    raw = fields.get("_raw")
    if raw is not None:
        return raw
    return json.dumps({k: v for k, v in fields.items() if not k.startswith("_")}, default=str)


# ---------------------------------------------------------------- TSV


class _TsvHeader:
    def __init__(self) -> None:
        self.separator = "\t"
        self.set_separator = ","
        self.empty = "(empty)"
        self.unset = "-"
        self.path = ""
        self.fields: list[str] = []
        self.types: list[str] = []

    def directive(self, text: str) -> None:
        body = text.lstrip()[1:]
        if body.startswith("separator"):
            value = body[len("separator"):].strip()
            self.separator = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value) or "\t"
            return
        key, _, value = body.partition(self.separator)
        if key == "set_separator":
            self.set_separator = value
        elif key == "empty_field":
            self.empty = value
        elif key == "unset_field":
            self.unset = value
        elif key == "path":
            self.path = value
        elif key == "fields":
            self.fields = value.split(self.separator)
        elif key == "types":
            self.types = value.split(self.separator)


def _tsv_records(source: str, head: list, lines: Iterator, stats: SourceStats) -> Iterator[tuple[int, str, dict]]:
    header = _TsvHeader()
    closed = False
    kind = _kind_from_name(source)
    for number, text in _chain(head, lines):
        if not text.strip():
            continue
        if text.lstrip().startswith("#"):
            header.directive(text)
            if text.startswith("#close"):
                closed = True
            elif text.startswith("#fields"):
                closed = False
            if header.path:
                kind = header.path
            continue
        record = _data_record(header, kind, number, text, stats)
        if record is not None:
            yield record
    if not closed and header.fields:
        stats.note("no #close line: the log may be cut short or still being written")


def _tsv_value(value: str, type_name: str, header: _TsvHeader):
    if value == header.unset:
        return None
    container = type_name.startswith(("set[", "vector["))
    if value == header.empty:
        return [] if container else ""
    if container:  # split first: a separator inside an element is written escaped
        return [_unescape(item) for item in value.split(header.set_separator)]
    return _unescape(value)


def _unescape(value: str) -> str:
    """Zeek's `\\xNN` escapes (separators and non-printable bytes inside a value)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value) if "\\x" in value else value


def _chain(head: list, rest: Iterator):
    yield from head
    yield from rest


# ---------------------------------------------------------------- JSON


def _json_records(source: str, head: list, lines: Iterator, stats: SourceStats) -> Iterator[tuple[int, str, dict]]:
    kind = _kind_from_name(source)
    for number, text in _chain(head, lines):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except ValueError as e:
            stats.reject(number, f"malformed JSON ({e.msg})" if hasattr(e, "msg") else "malformed JSON", text)
            continue
        if not isinstance(record, dict):
            stats.reject(number, "JSON line is not an object", text)
            continue
        fields = _flatten(record)
        fields["_raw"] = text
        yield number, kind or _kind_from_fields(fields), fields


def _flatten(record: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _kind_from_name(source: str) -> str:
    """conn.log, conn.log.labeled, conn.00:00:00-01:00:00.log.gz, dns.json -> conn, dns."""
    name = Path(source).name.lower()
    stem = name.split(".", 1)[0]
    known = {k for k, _ in SIGNATURE_FIELDS} | {"weird", "notice", "dhcp", "smtp", "software", "tunnel",
                                                 "arp", "pe", "quic", "telemetry", "capture_loss",
                                                 "loaded_scripts", "packet_filter", "reporter", "stats"}
    return stem if stem in known else ""


def _kind_from_fields(fields: dict) -> str:
    for kind, names in SIGNATURE_FIELDS:
        if any(n in fields for n in names):
            return kind
    return ""


# ---------------------------------------------------------------- mapping to tables


def _ts(fields: dict, name: str = "ts") -> int:
    value = fields.get(name)
    if value is None or value == "":
        raise RecordError(f"missing {name}")
    try:
        return any_time_to_us(value)
    except (ValueError, OverflowError):
        raise RecordError(f"bad time in {name}", repr(value)) from None


def _addr(fields: dict, name: str, required: bool = True) -> str | None:
    value = address_field(fields.get(name), name)
    if value is None and required:
        raise RecordError(f"missing {name}")
    return value


def _port(fields: dict, name: str) -> int | None:
    try:
        return opt_int(fields.get(name), 0, 65535)
    except ValueError:
        raise RecordError(f"bad port in {name}", repr(fields.get(name))) from None


def _count(fields: dict, name: str, high: int = 1 << 62) -> int | None:
    try:
        return opt_int(fields.get(name), 0, high)
    except ValueError:
        raise RecordError(f"bad count in {name}", repr(fields.get(name))) from None


def _bool(value) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("t", "true", "1"):
        return True
    if text in ("f", "false", "0"):
        return False
    raise RecordError("bad boolean", repr(value))


def _first(value):
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _history_flags(history: str | None) -> tuple[int | None, int | None]:
    if not history:
        return None, None
    src = dst = 0
    for letter in history:
        bits = HISTORY_FLAGS.get(letter.lower(), 0)
        if letter.isupper():
            src |= bits
        else:
            dst |= bits
    return src, dst


def _conn(fields: dict) -> dict:
    start = _ts(fields)
    duration = fields.get("duration")
    try:
        seconds = float(duration) if duration not in (None, "") else 0.0
    except ValueError:
        raise RecordError("bad duration", repr(duration)) from None
    if not seconds >= 0:
        raise RecordError("bad duration", repr(duration))
    src_ip, dst_ip = _addr(fields, "id.orig_h"), _addr(fields, "id.resp_h")
    proto_name = str(fields.get("proto") or "").lower()
    proto = {"tcp": 6, "udp": 17, "icmp": 58 if ":" in src_ip else 1}.get(proto_name)
    has_ports = proto in PORT_PROTOCOLS
    src_flags, dst_flags = _history_flags(fields.get("history")) if proto == 6 else (None, None)
    return {
        "ts_start": start,
        "ts_end": start + round(seconds * 1_000_000),
        "src_ip": src_ip,
        "src_port": _port(fields, "id.orig_p") if has_ports else None,
        "dst_ip": dst_ip,
        "dst_port": _port(fields, "id.resp_p") if has_ports else None,
        "ip_proto": proto,
        "l4": l4_name(proto) if proto else (proto_name.upper() or None),
        "vlan_id": _count(fields, "vlan"),
        "src_packets": _count(fields, "orig_pkts"),
        "dst_packets": _count(fields, "resp_pkts"),
        "src_bytes": _count(fields, "orig_ip_bytes"),
        "dst_bytes": _count(fields, "resp_ip_bytes"),
        "src_payload_bytes": _count(fields, "orig_bytes"),
        "dst_payload_bytes": _count(fields, "resp_bytes"),
        "src_tcp_flags": src_flags,
        "dst_tcp_flags": dst_flags,
        "app_protocol": _first(fields.get("service")) or None,  # Zeek's own service guess
    }


def _dns(fields: dict) -> dict:
    rcode = fields.get("rcode_name") or (str(fields["rcode"]) if fields.get("rcode") not in (None, "") else None)
    qtype = fields.get("qtype_name") or (str(fields["qtype"]) if fields.get("qtype") not in (None, "") else None)
    answers = fields.get("answers")
    if isinstance(answers, str):
        answers = [answers]
    proto = str(fields.get("proto") or "").upper() or None
    return {
        "ts": _ts(fields),
        "client_ip": _addr(fields, "id.orig_h", False),
        "client_port": _port(fields, "id.orig_p"),
        "server_ip": _addr(fields, "id.resp_h", False),
        "server_port": _port(fields, "id.resp_p"),
        "l4": proto,
        "trans_id": _count(fields, "trans_id", (1 << 31) - 1),
        "query": clean_domain(fields.get("query")),
        "qtype": qtype,
        "rcode": rcode,
        "answers": [str(a) for a in answers] if answers else [],
        "response": rcode is not None,
    }


def _endpoints(fields: dict) -> dict:
    """Time and connection endpoints of a Zeek record (orig = src, the client)."""
    return {
        "ts": _ts(fields),
        "src_ip": _addr(fields, "id.orig_h", False),
        "src_port": _port(fields, "id.orig_p"),
        "dst_ip": _addr(fields, "id.resp_h", False),
        "dst_port": _port(fields, "id.resp_p"),
    }


def _ssl(fields: dict) -> dict:
    return {
        **_endpoints(fields),
        "server_name": clean_domain(fields.get("server_name")),
        "version": fields.get("version") or None,
        "ja3": fields.get("ja3") or None,
        "ja3s": fields.get("ja3s") or None,
        "subject": fields.get("subject") or None,
        "issuer": fields.get("issuer") or None,
        "established": _bool(fields.get("established")),
    }


def _http(fields: dict) -> dict:
    status = fields.get("status_code")
    try:
        status = opt_int(status, 0, 999)
    except ValueError:
        raise RecordError("bad status_code", repr(status)) from None
    return {
        **_endpoints(fields),
        "method": fields.get("method") or None,
        "host": fields.get("host") or None,
        "uri": fields.get("uri") or None,
        "user_agent": fields.get("user_agent") or None,
        "status": status,
        "request_body_len": _count(fields, "request_body_len"),
        "response_body_len": _count(fields, "response_body_len"),
        "content_type": _first(fields.get("resp_mime_types")) or None,
    }


MAPPERS: dict[str, Callable[[dict], dict]] = {"conn": _conn, "dns": _dns, "ssl": _ssl, "http": _http}


# ---------------------------------------------------------------- TSV, the fast path
#
# The file is cut into pieces at line ends (in the main thread, which also reads the
# `#` directive lines); each stretch of data lines goes to a worker thread, which parses
# it with pyarrow.csv and converts it with vectorised compute. A stretch with anything
# the vectorised conversion is not sure to read exactly as the line reader would (a
# wrong field count, a blank line, an `(empty)` or escaped value, a bad number or time)
# is read by the line reader instead, so rejects keep their lines and reasons. Line
# numbers are relative to the stretch in the worker and shifted in file order.


@dataclass
class _Stretch:
    """Data lines under one header (or one directive line when `directive` is set)."""

    data: memoryview | None
    header: _TsvHeader | None
    kind: str
    directive: bool = False


@dataclass
class _StretchResult:
    lines: int
    tables: list[tuple[str, pa.RecordBatch]] = field(default_factory=list)
    stats: SourceStats | None = None


def _read_tsv(path, source: str, stats: SourceStats, batch_rows: int) -> Iterator[Batch]:
    state = {"closed": False, "fields": False}

    def work(stretch: _Stretch) -> _StretchResult:
        if stretch.directive:
            return _StretchResult(1)
        return _read_stretch(stretch, source)

    errors: list[str] = []
    with open_input(path) as stream:
        yield from _gather(ordered_map(work, _stretches(stream, source, state, errors)), stats, batch_rows, errors)
    if not state["closed"] and state["fields"]:
        stats.note("no #close line: the log may be cut short or still being written")


def _gather(results: Iterator[_StretchResult], stats: SourceStats, batch_rows: int, errors: list) -> Iterator[Batch]:
    """Results of the workers, in file order: line numbers shifted, batches of `batch_rows`."""
    joiner = PieceJoiner(stats, batch_rows)
    for result in results:
        yield from joiner.add(result.tables, result.stats, result.lines)
    yield from joiner.finish(errors)


def _stretches(stream, source: str, state: dict, errors: list) -> Iterator[_Stretch]:
    """Directive lines (read here, in order) and the stretches of data lines between them."""
    header = _TsvHeader()
    kind = _kind_from_name(source)
    snapshot = copy.deepcopy(header)
    for piece in line_pieces(stream, errors=errors):
        if not (piece[:1] == b"#" or piece_has(piece, b"\n#")):
            yield _Stretch(piece, snapshot, kind)
            continue
        data = piece.obj  # pieces start at the beginning of their bytes object
        end, start = piece.nbytes, 0
        while start < end:
            if data[start:start + 1] == b"#":
                at = start
            else:
                at = data.find(b"\n#", start, end)
                at = at + 1 if at >= 0 else -1
            if at < 0:  # no directive in the rest
                yield _Stretch(_own(piece[start:end]), snapshot, kind)
                break
            if at > start:
                yield _Stretch(_own(piece[start:at]), snapshot, kind)
            stop = data.find(b"\n", at, end)
            stop = end if stop < 0 else stop + 1
            text = bytes(data[at:stop]).decode("utf-8", "replace").rstrip("\r\n")
            header.directive(text)
            if text.startswith("#close"):
                state["closed"] = True
            elif text.startswith("#fields"):
                state["closed"] = False
                state["fields"] = True
            if header.path:
                kind = header.path
            snapshot = copy.deepcopy(header)
            yield _Stretch(None, None, kind, directive=True)
            start = stop


def _own(view: memoryview) -> memoryview:
    """A copy starting at the beginning of its own bytes (what `piece_has` expects); only
    the few pieces that hold directive lines are cut this way."""
    return memoryview(bytes(view))


def _read_stretch(stretch: _Stretch, source: str) -> _StretchResult:
    fast = None
    if stretch.kind in FAST_MAPPERS and stretch.header.fields:
        fast = _fast_stretch(stretch, source)
    return fast if fast is not None else _slow_stretch(stretch, source)


def _slow_stretch(stretch: _Stretch, source: str) -> _StretchResult:
    """The line reader on one stretch (no directives in it), line numbers from 1."""
    local = SourceStats(source)
    text = bytes(stretch.data)
    lines = text.split(b"\n")
    if text.endswith(b"\n"):
        lines.pop()
    numbered = []
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", "replace")
        numbered.append((number, line.rstrip("\r\n")))
    tables = _batches(_map_records(_stretch_records(stretch, numbered, local), source, local))
    return _StretchResult(len(lines), tables, local)


def _batches(records) -> list[tuple[str, pa.RecordBatch]]:
    """(table, row dict) pairs from the line reader -> one record batch per table."""
    rows: dict[str, list[dict]] = {}
    for table, row in records:
        rows.setdefault(table, []).append(row)
    out = []
    for table, items in rows.items():
        schema = SCHEMAS[table]
        arrays = [pa.array([row.get(f.name) for row in items], type=f.type) for f in schema]
        out.append((table, pa.RecordBatch.from_arrays(arrays, schema=schema)))
    return out


def _stretch_records(stretch: _Stretch, numbered, stats: SourceStats) -> Iterator[tuple[int, str, dict]]:
    """`_tsv_records` for data lines under a known header."""
    header, kind = stretch.header, stretch.kind
    for number, text in numbered:
        if not text.strip():
            continue
        record = _data_record(header, kind, number, text, stats)
        if record is not None:
            yield record


def _data_record(header, kind: str, number: int, text: str, stats: SourceStats) -> tuple[int, str, dict] | None:
    """One TSV data line under `header` as (line, log kind, fields), or None when rejected."""
    if kind not in TABLE_OF_LOG and kind:
        return number, kind, {}  # a log we skip: no need to check it
    if not header.fields:
        stats.reject(number, "data line before the #fields header", text)
        return None
    values = text.split(header.separator)
    if len(values) != len(header.fields):
        stats.reject(number, f"wrong number of fields ({len(values)}, expected {len(header.fields)})", text)
        return None
    fields = {"_raw": text}
    types = header.types if len(header.types) == len(header.fields) else [""] * len(header.fields)
    for name, kind_of_value, value in zip(header.fields, types, values):
        fields[name] = _tsv_value(value, kind_of_value, header)
    return number, kind, fields


def _fast_stretch(stretch: _Stretch, source: str) -> _StretchResult | None:
    """pyarrow.csv and vectorised conversion; None when the stretch needs the line reader."""
    header, data = stretch.header, stretch.data
    if len(header.separator) != 1 or piece_has(data, b"\r"):
        return None
    if len(set(header.fields)) != len(header.fields):
        return None
    def on_invalid(row) -> str:
        return "error"  # a wrong field count: the line reader rejects it with its line

    mapper, wanted = FAST_MAPPERS[stretch.kind]
    wanted = [name for name in wanted if name in header.fields]
    read_options = pcsv.ReadOptions(use_threads=False, column_names=header.fields, block_size=data.nbytes + 1)
    parse_options = pcsv.ParseOptions(delimiter=header.separator, quote_char=False, escape_char=False,
                                      double_quote=False, ignore_empty_lines=False, invalid_row_handler=on_invalid)
    convert_options = pcsv.ConvertOptions(include_columns=wanted, column_types={c: pa.string() for c in wanted},
                                          null_values=[header.unset], strings_can_be_null=True, check_utf8=True)
    try:
        table = pcsv.read_csv(pa.py_buffer(data), read_options=read_options, parse_options=parse_options,
                              convert_options=convert_options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows == 0:
        return None
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    types = dict(zip(header.fields, header.types)) if len(header.types) == len(header.fields) else {}
    escaped = piece_has(data, b"\\x")  # one scan of the piece; columns are searched only when it has one
    for name, column in columns.items():
        container = types.get(name, "").startswith(("set[", "vector["))
        empty = pc.equal(column, header.empty)
        if container:  # an empty set reads as no value in every mapper (no answers, no service)
            column = columns[name] = pc.if_else(empty, pa.scalar(None, pa.string()), column)
            empty = pc.equal(column, "")
        else:
            empty = pc.or_(empty, pc.equal(column, ""))
        if pc.any(empty).as_py():  # an empty string: the line reader knows what each mapper does
            return None
        if escaped and pc.any(pc.match_substring(column, "\\x")).as_py():
            columns[name] = _unescaped_items(column, header) if container else \
                map_distinct(column, _unescape, pa.string())[0]
    batch = mapper(columns, types, header, table.num_rows)
    if batch is None:
        return None
    n = table.num_rows
    ref = "flow_ref" if TABLE_OF_LOG[stretch.kind] == "flows" else "record_ref"
    arrays = {"source_file": pa.array([source], pa.string()).take(np.zeros(n, np.int32)),
              ref: pa.array(np.arange(1, n + 1, dtype=np.int64))}
    arrays.update(batch)
    schema = SCHEMAS[TABLE_OF_LOG[stretch.kind]]
    out = pa.RecordBatch.from_arrays([_typed(arrays.get(f.name), n, f.type) for f in schema], schema=schema)
    return _StretchResult(n, [(TABLE_OF_LOG[stretch.kind], out)], None)


def _typed(values, n: int, type_: pa.DataType) -> pa.Array:
    if values is None:
        return pa.nulls(n, type_)
    return values if values.type == type_ else values.cast(type_)


def _text_ints(column: pa.Array | None) -> pa.Array | None | bool:
    """int64 values of a TSV count column of plain digits (nulls stay null); False when
    a value is anything else; None for an absent column."""
    if column is None:
        return None
    if column.null_count == len(column):
        return pa.nulls(len(column), pa.int64())
    if pa.types.is_integer(column.type):  # JSON numbers: a count is never negative
        low = pc.min(column).as_py()
        return False if low is not None and low < 0 else column.cast(pa.int64())
    if not text_within(column, DIGITS):
        return False
    try:
        return column.cast(pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


COUNT_FIELDS = (("vlan_id", "vlan"), ("src_packets", "orig_pkts"), ("dst_packets", "resp_pkts"),
                ("src_bytes", "orig_ip_bytes"), ("dst_bytes", "resp_ip_bytes"),
                ("src_payload_bytes", "orig_bytes"), ("dst_payload_bytes", "resp_bytes"))
PORT_FIELDS = (("src_port", "id.orig_p"), ("dst_port", "id.resp_p"))


def _conn_fast(columns: dict, types: dict, header: _TsvHeader, n: int) -> dict | None:
    """Vectorised `_conn` for TSV text; None when a row might not come out exactly as
    `_conn` makes it."""
    get = columns.get
    start = _micros(get("ts"))
    if start is None:
        return None
    duration = get("duration")
    seconds = None
    if duration is not None and duration.null_count < n:
        if not text_within(duration, DECIMALS, DIGITS):
            return None
        seconds = duration.cast(pa.float64())
    ints = {name: _text_ints(get(column)) for name, column in PORT_FIELDS + COUNT_FIELDS}
    if any(values is False for values in ints.values()):
        return None
    service = get("service")
    if service is not None and types.get("service", "").startswith(("set[", "vector[")):
        service = _first_items(service, header)
    return _conn_typed(n, start, seconds, get("id.orig_h"), get("id.resp_h"), get("proto"), ints,
                       get("history"), service)


def _conn_typed(n: int, start: pa.Array, seconds: pa.Array | None, src_ip, dst_ip, proto_text, ints: dict,
                history, service) -> dict | None:
    """The rest of `_conn` once values are typed (TSV and JSON alike): int64 microseconds,
    float seconds, strings, int64 counts; None when a row would be rejected."""
    if src_ip is None or dst_ip is None or src_ip.null_count or dst_ip.null_count:
        return None
    if pc.any(pc.or_(pc.equal(src_ip, ""), pc.equal(dst_ip, ""))).as_py() or _any_bad_address(src_ip, dst_ip):
        return None
    if seconds is None:
        seconds = pa.array(np.zeros(n))
    seconds = pc.fill_null(seconds, 0.0)
    if not pc.all(pc.greater_equal(seconds, 0.0)).as_py() or not pc.all(pc.is_finite(seconds)).as_py():
        return None  # negative, NaN or infinite: rejected by `_conn`
    end = pc.add(start, pc.round(pc.multiply(seconds, 1e6), round_mode="half_to_even").cast(pa.int64()))
    proto_name = pc.utf8_lower(proto_text) if proto_text is not None else pa.nulls(n, pa.string())
    v6 = pc.match_substring(src_ip, ":")
    proto = pc.case_when(
        pc.make_struct(pc.equal(proto_name, "tcp"), pc.equal(proto_name, "udp"),
                       pc.and_(pc.equal(proto_name, "icmp"), v6), pc.equal(proto_name, "icmp")),
        pa.scalar(6, pa.int16()), pa.scalar(17, pa.int16()), pa.scalar(58, pa.int16()), pa.scalar(1, pa.int16()))
    upper = pc.utf8_upper(proto_name)
    l4 = pc.coalesce(map_distinct(proto, l4_name, pa.string())[0],
                     pc.if_else(pc.equal(upper, ""), pa.scalar(None, pa.string()), upper))
    has_ports = pc.fill_null(pc.is_in(proto, pa.array([6, 17], pa.int16())), False)
    out = {"ts_start": start.cast(TS_TYPE), "ts_end": end.cast(TS_TYPE), "src_ip": src_ip, "dst_ip": dst_ip,
           "ip_proto": proto, "l4": l4}
    for name, values in ints.items():
        if values is None:
            continue
        if name in ("src_port", "dst_port"):
            values = pc.if_else(has_ports, values, pa.scalar(None, pa.int64()))
        high = 65535 if name in ("src_port", "dst_port") else (1 << 31) - 1 if name == "vlan_id" else 1 << 62
        low_value, high_value = pc.min(values).as_py(), pc.max(values).as_py()
        if low_value is not None and (low_value < 0 or high_value > high):
            return None
        out[name] = values
    if history is not None:
        tcp_history = pc.if_else(pc.equal(proto, pa.scalar(6, pa.int16())), history, pa.scalar(None, pa.string()))
        out["src_tcp_flags"] = map_distinct(tcp_history, lambda h: _history_flags(h)[0], pa.uint8())[0]
        out["dst_tcp_flags"] = map_distinct(tcp_history, lambda h: _history_flags(h)[1], pa.uint8())[0]
    if service is not None:
        out["app_protocol"] = pc.if_else(pc.equal(service, ""), pa.scalar(None, pa.string()), service)
    return out


def _ranged_ints(column: pa.Array | None, high: int) -> pa.Array | None | bool:
    """`_text_ints` within 0..high; False when a value is outside (the line reader says why)."""
    values = _text_ints(column)
    if values is None or values is False:
        return values
    top = pc.max(values).as_py()
    return False if top is not None and top > high else values


def _items(column: pa.Array, header: _TsvHeader) -> pa.Array:
    """A set/vector field as a list array (split on the set separator unless already split)."""
    return column if pa.types.is_list(column.type) else pc.split_pattern(column, header.set_separator)


def _unescaped_items(column: pa.Array, header: _TsvHeader) -> pa.Array:
    """Split, then each element's escapes decoded (as `_tsv_value` does)."""
    items = _items(column, header)
    values = map_distinct(items.flatten(), _unescape, pa.string())[0]
    return pa.ListArray.from_arrays(items.offsets, values, mask=items.is_null())


def _first_items(column: pa.Array | None, header: _TsvHeader) -> pa.Array | None:
    """The first element of a set/vector field (`_first`: none for an empty one)."""
    return None if column is None else first_of_lists(_items(column, header))


def _micros(column: pa.Array | None) -> pa.Array | None:
    """Epoch microseconds of a `ts` column: TSV text exactly, JSON numbers as `epoch_to_us`
    rounds them; None when a value is missing or out of range."""
    if column is None or column.null_count:
        return None
    if pa.types.is_string(column.type):
        return epoch_text_to_us(column)
    if not pc.all(pc.is_finite(column)).as_py():
        return None
    micros = pc.round(pc.multiply(column, 1e6), round_mode="half_to_even")
    return None if pc.max(pc.abs(micros)).as_py() > 9e18 else micros.cast(pa.int64())


def _any_bad_address(*columns) -> bool:
    """Whether a present value of these columns is not an address (the line reader says which)."""
    return any(c is not None and pc.any(ip_text_bad(c)).as_py() for c in columns)


def _endpoints_fast(get) -> dict | None:
    start = _micros(get("ts"))
    if start is None:
        return None
    if _any_bad_address(get("id.orig_h"), get("id.resp_h")):
        return None
    out = {"ts": start.cast(TS_TYPE), "src_ip": get("id.orig_h"), "dst_ip": get("id.resp_h")}
    for name, column in PORT_FIELDS:
        out[name] = _ranged_ints(get(column), 65535)
    return None if any(v is False for v in out.values()) else out


def _dns_fast(columns: dict, types: dict, header: _TsvHeader, n: int) -> dict | None:
    """Vectorised `_dns` for TSV text."""
    get = columns.get
    ends = _endpoints_fast(get)
    trans_id = _ranged_ints(get("trans_id"), (1 << 31) - 1)
    if ends is None or trans_id is False:
        return None
    rcode = [_text(c) for c in (get("rcode_name"), get("rcode")) if c is not None]
    rcode = pc.coalesce(*rcode) if rcode else pa.nulls(n, pa.string())
    qtype = [_text(c) for c in (get("qtype_name"), get("qtype")) if c is not None]
    answers = get("answers")
    if answers is None:
        answers = pa.nulls(n, pa.list_(pa.string()))
    else:
        answers = _items(answers, header)
    no_answers = pa.array([[]] * n, pa.list_(pa.string()))
    proto = get("proto")
    return {
        "ts": ends["ts"], "client_ip": ends["src_ip"], "client_port": ends["src_port"],
        "server_ip": ends["dst_ip"], "server_port": ends["dst_port"],
        "l4": pc.utf8_upper(proto) if proto is not None else None,
        "trans_id": trans_id,
        "query": clean_domains(get("query")),
        "qtype": pc.coalesce(*qtype) if qtype else None,
        "rcode": rcode,
        "answers": pc.if_else(pc.is_null(answers), no_answers, answers),
        "response": pc.is_valid(rcode),
    }


def _text(column: pa.Array) -> pa.Array:
    return column if pa.types.is_string(column.type) else column.cast(pa.string())


def _bools(column: pa.Array | None) -> pa.Array | None | bool:
    if column is None or pa.types.is_boolean(column.type):
        return column
    values, bad = map_distinct(column, _bool, pa.bool_())  # its RecordError is a ValueError: a bad row
    return False if pc.any(bad).as_py() else values


def _ssl_fast(columns: dict, types: dict, header: _TsvHeader, n: int) -> dict | None:
    """Vectorised `_ssl` for TSV text."""
    get = columns.get
    ends = _endpoints_fast(get)
    established = _bools(get("established"))
    if ends is None or established is False:
        return None
    out = {**ends, "server_name": clean_domains(get("server_name")), "established": established}
    for name in ("version", "ja3", "ja3s", "subject", "issuer"):
        out[name] = get(name)
    return out


def _http_fast(columns: dict, types: dict, header: _TsvHeader, n: int) -> dict | None:
    """Vectorised `_http` for TSV text."""
    get = columns.get
    ends = _endpoints_fast(get)
    status = _ranged_ints(get("status_code"), 999)
    lengths = {name: _ranged_ints(get(name), 1 << 62) for name in ("request_body_len", "response_body_len")}
    if ends is None or status is False or any(v is False for v in lengths.values()):
        return None
    mime = get("resp_mime_types")
    if mime is not None and types.get("resp_mime_types", "").startswith(("set[", "vector[")):
        mime = _first_items(mime, header)
    out = {**ends, "status": status, "content_type": mime, **lengths}
    for name in ("method", "host", "uri", "user_agent"):
        out[name] = get(name)
    return out


TS_TYPE = FLOWS.field("ts_start").type
ENDPOINT_COLUMNS = ["ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"]
CONN_COLUMNS = ["ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
                "orig_bytes", "resp_bytes", "history", "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes",
                "vlan"]
FAST_MAPPERS: dict[str, tuple[Callable, list[str]]] = {
    "conn": (_conn_fast, CONN_COLUMNS),
    "dns": (_dns_fast, ENDPOINT_COLUMNS + ["proto", "trans_id", "query", "qtype", "qtype_name", "rcode",
                                           "rcode_name", "answers"]),
    "ssl": (_ssl_fast, ENDPOINT_COLUMNS + ["server_name", "version", "ja3", "ja3s", "subject", "issuer",
                                           "established"]),
    "http": (_http_fast, ENDPOINT_COLUMNS + ["method", "host", "uri", "user_agent", "status_code",
                                             "request_body_len", "response_body_len", "resp_mime_types"]),
}


# ---------------------------------------------------------------- JSON, the fast path (conn logs)
#
# Pieces of lines read by pyarrow.json with the conn fields' types given; a piece with
# anything else (a malformed line, a blank one, nested `id` objects, a value of another
# type) goes through the line reader's code.

CONN_JSON_FIELDS = pa.schema(
    [("ts", pa.float64()), ("id.orig_h", pa.string()), ("id.resp_h", pa.string()), ("proto", pa.string()),
     ("service", pa.string()), ("duration", pa.float64()), ("history", pa.string())]
    + [(column, pa.int64()) for _, column in PORT_FIELDS + COUNT_FIELDS]
)
_ENDPOINTS_JSON = [("ts", pa.float64()), ("id.orig_h", pa.string()), ("id.orig_p", pa.int64()),
                   ("id.resp_h", pa.string()), ("id.resp_p", pa.int64())]
_NAMES = pa.list_(pa.string())
JSON_FIELDS = {
    "conn": CONN_JSON_FIELDS,
    "dns": pa.schema(_ENDPOINTS_JSON + [
        ("proto", pa.string()), ("trans_id", pa.int64()), ("query", pa.string()), ("qtype", pa.int64()),
        ("qtype_name", pa.string()), ("rcode", pa.int64()), ("rcode_name", pa.string()), ("answers", _NAMES)]),
    "ssl": pa.schema(_ENDPOINTS_JSON + [
        ("server_name", pa.string()), ("version", pa.string()), ("ja3", pa.string()), ("ja3s", pa.string()),
        ("subject", pa.string()), ("issuer", pa.string()), ("established", pa.bool_())]),
    "http": pa.schema(_ENDPOINTS_JSON + [
        ("method", pa.string()), ("host", pa.string()), ("uri", pa.string()), ("user_agent", pa.string()),
        ("status_code", pa.int64()), ("request_body_len", pa.int64()), ("response_body_len", pa.int64()),
        ("resp_mime_types", _NAMES)]),
}
JSON_TYPES = {"answers": "vector[string]", "resp_mime_types": "vector[string]"}


def _read_json_pieces(path, source: str, stats: SourceStats, batch_rows: int) -> Iterator[Batch]:
    errors: list[str] = []
    kind = _kind_from_name(source)
    with open_input(path) as stream:
        results = ordered_map(lambda piece: _json_piece(piece, source, kind), line_pieces(stream, errors=errors))
        yield from _gather(results, stats, batch_rows, errors)


def _json_piece(piece: memoryview, source: str, kind: str = "conn") -> _StretchResult:
    data = piece.obj
    lines = data.count(b"\n", 0, piece.nbytes) + (0 if data[piece.nbytes - 1:piece.nbytes] == b"\n" else 1)
    table = None
    if not piece_has(piece, b"\r"):
        try:
            table = pjson.read_json(pa.py_buffer(piece),
                                    read_options=pjson.ReadOptions(use_threads=False, block_size=piece.nbytes + 1),
                                    parse_options=pjson.ParseOptions(explicit_schema=JSON_FIELDS[kind],
                                                                     unexpected_field_behavior="ignore"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            table = None
    if table is not None and table.num_rows == lines:
        columns = {name: table.column(name).combine_chunks() for name in table.column_names}
        out = _json_typed(kind, columns, lines)
        if out is not None:
            n, name = lines, TABLE_OF_LOG[kind]
            out["source_file"] = pa.array([source], pa.string()).take(np.zeros(n, np.int32))
            out["flow_ref" if name == "flows" else "record_ref"] = pa.array(np.arange(1, n + 1, dtype=np.int64))
            schema = SCHEMAS[name]
            batch = pa.RecordBatch.from_arrays([_typed(out.get(f.name), n, f.type) for f in schema], schema=schema)
            return _StretchResult(n, [(name, batch)], None)
    # the line reader's code on this piece
    local = SourceStats(source)
    texts = bytes(piece).split(b"\n")[:lines]
    numbered = [(number, raw.decode("utf-8", "replace").rstrip("\r\n")) for number, raw in enumerate(texts, start=1)]
    batches = _batches(_map_records(_json_records(source, [], iter(numbered), local), source, local))
    return _StretchResult(lines, batches, local)


def _json_typed(kind: str, columns: dict, n: int) -> dict | None:
    """Vectorised mapping of typed JSON columns; None when the line reader must decide."""
    if kind == "conn":
        return _conn_json_fast(columns, n)
    for column in columns.values():  # "" means "no value" to some mappers, text to others
        if pa.types.is_string(column.type) and pc.any(pc.equal(column, "")).as_py():
            return None
    return FAST_MAPPERS[kind][0](columns, JSON_TYPES, _TsvHeader(), n)


def _conn_json_fast(columns: dict, n: int) -> dict | None:
    """Vectorised `_conn` for JSON values (numbers as numbers)."""
    micros = _micros(columns["ts"])
    if micros is None:
        return None
    ints = {name: columns[column] for name, column in PORT_FIELDS + COUNT_FIELDS}
    duration = columns["duration"]
    return _conn_typed(n, micros, duration if duration.null_count < n else None,
                       columns["id.orig_h"], columns["id.resp_h"], columns["proto"], ints, columns["history"],
                       columns["service"])


FAST_JSON = set(JSON_FIELDS)

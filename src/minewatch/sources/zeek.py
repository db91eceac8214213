"""Zeek logs (TSV with `#fields` headers, or JSON lines) -> flows, dns, tls, http.

conn.log -> flows, dns.log -> dns, ssl.log -> tls, http.log -> http. Other logs
(files, x509, weird, ...) are recognised and skipped whole, counted under `ignored`.
Extra columns (the `label`/`detailedlabel` of `*.labeled` files, ja3 fields from
packages) are accepted. In TSV `-` is unset, `(empty)` an empty set/string, and
set/vector fields are split on `#set_separator`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Iterator

from minewatch.errors import InputError
from minewatch.schema.dns import DNS
from minewatch.schema.flows import FLOWS
from minewatch.schema.http import HTTP
from minewatch.schema.tls import TLS
from minewatch.sources._records import (
    BATCH_ROWS,
    PORT_PROTOCOLS,
    Batch,
    Batchers,
    SourceStats,
    any_time_to_us,
    clean_domain,
    l4_name,
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


class RecordError(ValueError):
    """A record that cannot be used; the message is the reject reason."""


def read_zeek(path: str | Path, *, stats: SourceStats, batch_rows: int = BATCH_ROWS) -> Iterator[Batch]:
    """Yield (table, batch) for one Zeek log, TSV or JSON lines; fills `stats`."""
    source = str(path)
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

    for line_no, kind, fields in records:
        table = TABLE_OF_LOG.get(kind)
        if table is None:
            stats.ignore(f"{kind or 'unknown'} log records")
            continue
        try:
            row = MAPPERS[kind](fields)
        except RecordError as e:
            stats.reject(line_no, str(e), _raw(fields))
            continue
        except (ValueError, TypeError, OverflowError) as e:
            stats.reject(line_no, f"bad value: {e}", _raw(fields))
            continue
        row["source_file"] = source
        row["flow_ref" if table == "flows" else "record_ref"] = line_no
        if (out := batchers.add(table, row)) is not None:
            yield out
    yield from batchers.flush_all()
    too_broken(stats, path, "Zeek log")


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
        if kind not in TABLE_OF_LOG and kind:
            yield number, kind, {}  # a log we skip: no need to check it
            continue
        if not header.fields:
            stats.reject(number, "data line before the #fields header", text)
            continue
        values = text.split(header.separator)
        if len(values) != len(header.fields):
            stats.reject(number, f"wrong number of fields ({len(values)}, expected {len(header.fields)})", text)
            continue
        fields = {"_raw": text}
        types = header.types if len(header.types) == len(header.fields) else [""] * len(header.fields)
        for name, kind_of_value, value in zip(header.fields, types, values):
            fields[name] = _tsv_value(value, kind_of_value, header)
        yield number, kind, fields
    if not closed and header.fields:
        stats.note("no #close line: the log may be cut short or still being written")


def _tsv_value(value: str, type_name: str, header: _TsvHeader):
    if value == header.unset:
        return None
    container = type_name.startswith(("set[", "vector["))
    if value == header.empty:
        return [] if container else ""
    if "\\x" in value:
        value = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    if container:
        return value.split(header.set_separator)
    return value


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
        raise RecordError(f"bad time in {name}: {value!r}") from None


def _addr(fields: dict, name: str, required: bool = True) -> str | None:
    value = fields.get(name)
    if value in (None, ""):
        if required:
            raise RecordError(f"missing {name}")
        return None
    return str(value)


def _port(fields: dict, name: str) -> int | None:
    try:
        return opt_int(fields.get(name), 0, 65535)
    except ValueError:
        raise RecordError(f"bad port in {name}: {fields.get(name)!r}") from None


def _count(fields: dict, name: str) -> int | None:
    try:
        return opt_int(fields.get(name))
    except ValueError:
        raise RecordError(f"bad count in {name}: {fields.get(name)!r}") from None


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
    raise RecordError(f"bad boolean {value!r}")


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
        raise RecordError(f"bad duration {duration!r}") from None
    if not seconds >= 0:
        raise RecordError(f"bad duration {duration!r}")
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
        "trans_id": _count(fields, "trans_id"),
        "query": clean_domain(fields.get("query")),
        "qtype": qtype,
        "rcode": rcode,
        "answers": [str(a) for a in answers] if answers else [],
        "response": rcode is not None,
    }


def _ssl(fields: dict) -> dict:
    return {
        "ts": _ts(fields),
        "src_ip": _addr(fields, "id.orig_h", False),
        "src_port": _port(fields, "id.orig_p"),
        "dst_ip": _addr(fields, "id.resp_h", False),
        "dst_port": _port(fields, "id.resp_p"),
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
        raise RecordError(f"bad status_code {status!r}") from None
    return {
        "ts": _ts(fields),
        "src_ip": _addr(fields, "id.orig_h", False),
        "src_port": _port(fields, "id.orig_p"),
        "dst_ip": _addr(fields, "id.resp_h", False),
        "dst_port": _port(fields, "id.resp_p"),
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

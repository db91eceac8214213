"""Suricata EVE JSON lines -> flows, dns, tls, http, alerts.

- `flow` events (bidirectional: to-server side is src) and `netflow` events
  (one direction each; the reverse counters stay null) -> flows.
- `dns`: version 1 (one event per query, one per answer record, flat `rrname`/`rdata`),
  version 2 (answer events with an `answers` array and `grouped`), version 3
  (`queries` and `answers` arrays) -> one dns row per event.
- `tls` -> tls, `http` -> http, `alert` -> alerts. Other event types (fileinfo,
  anomaly, stats, ...) are counted under `ignored`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from minewatch.errors import InputError
from minewatch.schema.alerts import ALERTS
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
    proto_number,
    tcp_flags_value,
    text_lines,
    too_broken,
)

DNS_PORTS = (53, 853, 5353, 5355)
SCHEMAS = {"flows": FLOWS, "dns": DNS, "tls": TLS, "http": HTTP, "alerts": ALERTS}


class RecordError(ValueError):
    """A record that cannot be used; the message is the reject reason."""


def read_suricata(path: str | Path, *, stats: SourceStats, batch_rows: int = BATCH_ROWS) -> Iterator[Batch]:
    """Yield (table, batch) for one eve.json file; fills `stats`."""
    source = str(path)
    stats.reader = "suricata-eve"
    batchers = Batchers(SCHEMAS, stats, batch_rows)
    saw_content = False
    for number, text in text_lines(path, stats):
        if not text.strip():
            continue
        if not saw_content:
            saw_content = True
            if not text.lstrip().startswith("{"):
                raise InputError(path, "not Suricata EVE JSON: the first line is not a JSON object", f"line {number}")
        try:
            event = json.loads(text)
        except ValueError as e:
            stats.reject(number, f"malformed JSON ({getattr(e, 'msg', e)})", text)
            continue
        if not isinstance(event, dict):
            stats.reject(number, "JSON line is not an object", text)
            continue
        kind = event.get("event_type")
        mapper = MAPPERS.get(kind)
        if mapper is None:
            stats.ignore(f"{kind or 'untyped'} events")
            continue
        try:
            table, row = mapper(event)
        except RecordError as e:
            stats.reject(number, str(e), text)
            continue
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            stats.reject(number, f"bad {kind} event: {e}", text)
            continue
        row["source_file"] = source
        row["flow_ref" if table == "flows" else "record_ref"] = number
        if (out := batchers.add(table, row)) is not None:
            yield out
    yield from batchers.flush_all()
    too_broken(stats, path, "Suricata EVE file")


def _time(value, what: str) -> int:
    if value in (None, ""):
        raise RecordError(f"missing {what}")
    try:
        return any_time_to_us(value)
    except (ValueError, OverflowError):
        raise RecordError(f"bad time in {what}: {value!r}") from None


def _endpoints(event: dict) -> dict:
    proto = proto_number(event.get("proto"))
    has_ports = proto in PORT_PROTOCOLS
    return {
        "src_ip": event.get("src_ip"),
        "src_port": opt_int(event.get("src_port"), 0, 65535) if has_ports else None,
        "dst_ip": event.get("dest_ip"),
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


MAPPERS = {"flow": _flow, "netflow": _flow, "dns": _dns, "tls": _tls, "http": _http, "alert": _alert}

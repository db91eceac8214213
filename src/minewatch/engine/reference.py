"""Reference tables the SQL detectors join against, built once per run from an IntelSet.

    intel_domains  domain, match (exact|suffix), tail2 (last two labels: the join key),
                   category, description, details_tail
    intel_ips      ip, port (null = any), prefix_len, indicator, category, description, details_tail
    miner_ports    port, source, note

`details_tail` is the indicator's provenance as JSON object members without the braces,
so that SQL can put a few per-record members in front of it with plain concatenation.
Networks are expanded to addresses up to MAX_EXPANDED addresses; larger ones are
reported in `problems` (a range join that Spark and DuckDB both do well is later work).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field

import pyarrow as pa

from minewatch.detect.intel import _describe
from minewatch.intel import Indicator, IntelSet

MAX_EXPANDED = 4096

INTEL_DOMAINS = pa.schema([
    ("domain", pa.string()), ("match", pa.string()), ("tail2", pa.string()), ("category", pa.string()),
    ("description", pa.string()), ("details_tail", pa.string()),
])
INTEL_IPS = pa.schema([
    ("ip", pa.string()), ("port", pa.int32()), ("prefix_len", pa.int32()), ("indicator", pa.string()),
    ("category", pa.string()), ("description", pa.string()), ("details_tail", pa.string()),
])
MINER_PORTS = pa.schema([("port", pa.int32()), ("source", pa.string()), ("note", pa.string())])


@dataclass
class ReferenceTables:
    tables: dict[str, pa.Table]
    problems: list[str] = field(default_factory=list)


def details_tail(ind: Indicator) -> str:
    return json.dumps(ind.as_details(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))[1:-1]


def tail2(domain: str) -> str:
    return ".".join(domain.split(".")[-2:])


def build(intel: IntelSet) -> ReferenceTables:
    problems: list[str] = []
    domains = [
        {"domain": ind.value, "match": match, "tail2": tail2(name), "category": ind.category,
         "description": _describe(ind), "details_tail": details_tail(ind)}
        for match, table in (("exact", intel.exact_domains), ("suffix", intel.suffix_domains))
        for name, ind in table.items()
    ]
    ips = []
    for ip, entries in intel.ips.items():
        for ind in entries:
            prefix = 32 if ":" not in ip else 128
            ips.append(_ip_row(ip, ind, prefix))
    for (version, prefix), table in intel.networks.items():
        for value, ind in table.items():
            net = ipaddress.ip_network((value, prefix))
            if net.num_addresses > MAX_EXPANDED:
                problems.append(f"{ind.origin or ind.value}: network {net} has more than {MAX_EXPANDED} "
                                "addresses; the SQL engines match it only from --intel lists up to that size")
                continue
            ips.extend(_ip_row(str(addr), ind, prefix) for addr in net)
    ports = [{"port": p.port, "source": p.source, "note": p.note} for p in intel.miner_ports.values()]
    return ReferenceTables({
        "intel_domains": pa.Table.from_pylist(domains, schema=INTEL_DOMAINS),
        "intel_ips": pa.Table.from_pylist(ips, schema=INTEL_IPS),
        "miner_ports": pa.Table.from_pylist(ports, schema=MINER_PORTS),
    }, problems)


def _ip_row(ip: str, ind: Indicator, prefix: int) -> dict:
    return {"ip": ip, "port": ind.port, "prefix_len": prefix, "indicator": ind.value, "category": ind.category,
            "description": _describe(ind), "details_tail": details_tail(ind)}

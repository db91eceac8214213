"""Detector registry. A detector is one function in one module of this package,
registered with @flow_detector; nothing else needs editing to add one.

A flow detector receives a `Flow` (one row of the canonical flow table) and the scan
`Context`, and yields `Hit`s. The pipeline turns each hit into one evidence row,
adding provenance (source file, hash, flow reference) and the 5-tuple.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable


@dataclass(slots=True)
class Flow:
    """One conversation, with the first payload bytes of each side (may be empty).
    Times are as the source gave them: datetimes, or integer microseconds since the epoch
    (UTC) when built from a batch by the pipeline."""

    source_file: str
    flow_ref: int
    ts_start: Any
    ts_end: Any
    src_ip: str
    src_port: int | None
    dst_ip: str
    dst_port: int | None
    ip_proto: int | None
    l4: str | None
    src_packets: int = 0
    dst_packets: int = 0
    src_bytes: int = 0
    dst_bytes: int = 0
    src_payload_packets: int = 0
    dst_payload_packets: int = 0
    src_payload_bytes: int = 0
    dst_payload_bytes: int = 0
    src_payload_head: bytes = b""
    dst_payload_head: bytes = b""
    app_protocol: str | None = None
    vlan_id: int | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: dict) -> "Flow":
        known = {k: row.get(k) for k in FLOW_FIELDS if k in row}
        for k in COUNT_FIELDS:
            known[k] = known.get(k) or 0
        for k in HEAD_FIELDS:
            known[k] = known.get(k) or b""
        return cls(**known)


FLOW_FIELDS = tuple(f for f in Flow.__slots__ if f != "extra")
COUNT_FIELDS = ("src_packets", "dst_packets", "src_bytes", "dst_bytes", "src_payload_packets",
                "dst_payload_packets", "src_payload_bytes", "dst_payload_bytes")
HEAD_FIELDS = ("src_payload_head", "dst_payload_head")


@dataclass(slots=True)
class Hit:
    """What a detector found in one flow; the pipeline adds who/when/where-from."""

    confidence: float  # 0..1
    summary: str  # one human sentence
    details: dict  # dialect, methods, coin, algorithm, agent, worker, pool_host...
    category: str | None = None  # defaults to the detector's category
    severity: str = "high"
    miner_is_dst: bool = False  # True when the flow's dst side is the miner (initiator unseen)


@dataclass
class Context:
    """What every detector may consult during one scan."""

    show_wallets: bool = False
    intel: Any = None  # minewatch.intel.IntelSet, loaded once per scan
    options: dict = field(default_factory=dict)
    # Addresses that listed pool names resolved to in the traffic seen so far:
    # ip -> (name, Indicator, when). Filled by intel.pool_domain from DNS answers; a
    # detector later in the registry (or a later batch) can use it.
    resolved: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Detector:
    id: str  # stable, e.g. proto.stratum_v1
    version: int  # bump when the logic changes
    category: str
    description: str
    fn: Callable[[Flow, Context], Iterable[Hit]]
    # Vectorised necessary condition over a batch (minewatch.detect.heads.Heads -> bool
    # array); None means every flow that carries payload.
    prefilter: Callable[[Any, Context], Any] | None = None
    # Detectors run by stage, then id: stage 0 learns context later ones use (DNS answers
    # naming pools), stage 1 (the default) uses it.
    stage: int = 1


REGISTRY: dict[str, Detector] = {}


@dataclass(frozen=True)
class SqlDetector:
    """A detector written once as SQL (DuckDB dialect) over canonical tables; the engine
    (DuckDB, or Spark through sqlglot) runs it. `sql(params)` returns one SELECT whose
    columns are the evidence columns except detector, detector_version and source_sha256,
    which the engine adds: source_file, source_ref, ts_start, ts_end, src_ip, src_port,
    dst_ip, dst_port, l4, category, confidence, severity, summary, details (JSON text).
    Tables are named as in minewatch.schema.TABLES (flows, dns, tls, http, alerts) plus
    the engine's reference tables (intel_domains, intel_ips, ...)."""

    id: str
    version: int
    category: str
    description: str
    reads: tuple[str, ...]
    sql: Callable[[dict], str]


SQL_REGISTRY: dict[str, SqlDetector] = {}


def sql_detector(id: str, version: int, category: str, description: str, reads: tuple[str, ...]):
    """Register `fn(params: dict) -> str` (a SELECT in DuckDB's dialect) under a stable id."""

    def register(fn):
        if id in SQL_REGISTRY or id in REGISTRY:
            raise ValueError(f"detector id {id} registered twice")
        SQL_REGISTRY[id] = SqlDetector(id, version, category, description, tuple(reads), fn)
        return fn

    return register


def flow_detector(id: str, version: int, category: str, description: str, prefilter=None, stage: int = 1):
    """Register `fn(flow, ctx) -> iterable of Hit` under a stable id."""

    def register(fn):
        if id in REGISTRY:
            raise ValueError(f"detector id {id} registered twice")
        REGISTRY[id] = Detector(id, version, category, description, fn, prefilter, stage)
        return fn

    return register


def load_all() -> dict[str, Detector]:
    """Import every module of this package so that each registers its detectors; the
    result is in running order (stage, then id)."""
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return dict(sorted(REGISTRY.items(), key=lambda item: (item[1].stage, item[0])))

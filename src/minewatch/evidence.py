"""Run the registered flow detectors over a batch of canonical flows -> evidence rows."""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from minewatch.detect import COUNT_FIELDS, FLOW_FIELDS, HEAD_FIELDS, Context, Detector, Flow, Hit
from minewatch.detect.heads import Heads
from minewatch.schema import EVIDENCE


def _flows(batch: pa.RecordBatch) -> list[Flow]:
    """Flow objects built column by column; times stay integer microseconds (cheap)."""
    names = [f for f in FLOW_FIELDS if f in batch.schema.names]
    columns = []
    for name in names:
        col = batch.column(name)
        if pa.types.is_timestamp(col.type):
            col = pc.cast(col, pa.int64())
        elif name in COUNT_FIELDS:
            col = pc.fill_null(col, 0)
        elif name in HEAD_FIELDS:
            col = pc.fill_null(col, b"")
        columns.append(col.to_pylist())
    return [Flow(**dict(zip(names, values))) for values in zip(*columns)]


def _row(flow: Flow, det: Detector, hit: Hit, sha256: str | None, ctx: Context) -> dict:
    a_ip, a_port, b_ip, b_port = flow.src_ip, flow.src_port, flow.dst_ip, flow.dst_port
    if hit.miner_is_dst:
        a_ip, a_port, b_ip, b_port = b_ip, b_port, a_ip, a_port
    if "pool_host" not in hit.details and b_ip in ctx.resolved and (hit.category or det.category) == "mining":
        hit.details["pool_host"] = ctx.resolved[b_ip][0]  # named by a DNS answer seen earlier
        hit.details["pool_host_from"] = "dns_answer"
    return {
        "source_file": flow.source_file,
        "source_sha256": sha256,
        "source_ref": f"flow {flow.flow_ref}",
        "ts_start": flow.ts_start,
        "ts_end": flow.ts_end,
        "src_ip": a_ip,
        "src_port": a_port,
        "dst_ip": b_ip,
        "dst_port": b_port,
        "l4": flow.l4,
        "detector": det.id,
        "detector_version": det.version,
        "category": hit.category or det.category,
        "confidence": round(min(max(float(hit.confidence), 0.0), 1.0), 3),
        "severity": hit.severity,
        "summary": hit.summary,
        "details": json.dumps(hit.details, ensure_ascii=False, sort_keys=True, default=str),
    }


def detect_flows(
    batch: pa.RecordBatch,
    detectors: Iterable[Detector],
    ctx: Context,
    sha256: str | None = None,
    errors: list[str] | None = None,
) -> pa.Table:
    """Evidence for one flow batch. A detector that fails on a flow is reported, never fatal.

    Each detector's vectorised prefilter picks the rows it could match; only those rows
    become Python objects, and each is shown only to the detectors that want it."""
    detectors = list(detectors)
    rows: list[dict] = []
    if batch.num_rows == 0 or not detectors:
        return pa.Table.from_pylist(rows, schema=EVIDENCE)
    heads = Heads(batch)
    flows: dict[int, Flow] = {}  # row -> Flow, built once, only for rows some detector wants
    for det in detectors:
        # Each prefilter is evaluated just before its detector runs, so it can use what an
        # earlier detector learned from this batch (ctx.resolved).
        wanted = np.flatnonzero(det.prefilter(heads, ctx) if det.prefilter else heads.has_payload)
        missing = [int(i) for i in wanted if int(i) not in flows]
        if missing:
            flows.update(zip(missing, _flows(batch.take(pa.array(missing, pa.int64())))))
        for i in wanted:
            flow = flows[int(i)]
            try:
                for hit in det.fn(flow, ctx):
                    rows.append(_row(flow, det, hit, sha256, ctx))
            except Exception as exc:  # a detector bug must not stop a scan; it is reported
                if errors is not None:
                    errors.append(f"{flow.source_file}: flow {flow.flow_ref}: detector {det.id} failed: {exc!r}")
    rows.sort(key=lambda r: (r["ts_start"], r["source_ref"], r["detector"]))
    return pa.Table.from_pylist(rows, schema=EVIDENCE)

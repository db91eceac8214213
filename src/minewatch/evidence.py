"""Run the registered flow detectors over a batch of canonical flows -> evidence rows."""

from __future__ import annotations

import json
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from minewatch.detect import Context, Detector, Flow, Hit
from minewatch.schema import EVIDENCE


def _candidates(batch: pa.RecordBatch, ctx: Context) -> pa.RecordBatch:
    """Flows worth a detector's look: those with payload, or all when IP indicators are loaded."""
    if ctx.intel is not None and getattr(ctx.intel, "has_ip_indicators", False):
        return batch
    if "src_payload_head" not in batch.schema.names:
        return batch
    has = pc.or_(
        pc.greater(pc.fill_null(pc.binary_length(batch["src_payload_head"]), 0), 0),
        pc.greater(pc.fill_null(pc.binary_length(batch["dst_payload_head"]), 0), 0),
    )
    return batch.filter(has)


def _row(flow: Flow, det: Detector, hit: Hit, sha256: str | None) -> dict:
    a_ip, a_port, b_ip, b_port = flow.src_ip, flow.src_port, flow.dst_ip, flow.dst_port
    if hit.miner_is_dst:
        a_ip, a_port, b_ip, b_port = b_ip, b_port, a_ip, a_port
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
    """Evidence for one flow batch. A detector that fails on a flow is reported, never fatal."""
    detectors = list(detectors)
    rows: list[dict] = []
    for record in _candidates(batch, ctx).to_pylist():
        flow = Flow.from_row(record)
        for det in detectors:
            try:
                for hit in det.fn(flow, ctx):
                    rows.append(_row(flow, det, hit, sha256))
            except Exception as exc:  # a detector bug must not stop a scan; it is reported
                if errors is not None:
                    errors.append(f"{flow.source_file}: flow {flow.flow_ref}: detector {det.id} failed: {exc!r}")
    return pa.Table.from_pylist(rows, schema=EVIDENCE)

"""A host whose only evidence is the flow-shape detector's is a lead, said so and listed
after the hosts with proof (payload, indicators, alerts)."""

from datetime import datetime, timezone

import pyarrow as pa
from rich.console import Console

from minewatch.cli import print_host_table
from minewatch.findings import HomeNet, host_findings
from minewatch.schema import EVIDENCE

T = datetime(2026, 11, 1, 8, tzinfo=timezone.utc)


def row(src: str, detector: str, confidence: float, ref: str) -> dict:
    out = {f.name: None for f in EVIDENCE}
    out.update(source_file="f", source_ref=ref, ts_start=T, ts_end=T, src_ip=src, dst_ip="198.51.100.7",
               dst_port=3333, l4="TCP", detector=detector, detector_version=1, category="mining",
               confidence=confidence, severity="medium", summary=f"{detector} on {src}", details="{}")
    return out


def findings(rows: list[dict]) -> list[dict]:
    return host_findings(pa.Table.from_pylist(rows, schema=EVIDENCE), HomeNet.parse([]))


def test_shape_only_hosts_are_leads_after_the_proven():
    hosts = findings([
        row("10.0.0.1", "beh.periodic_low_rate", 0.7, "a"),  # shape alone, even at a high confidence
        row("10.0.0.2", "intel.pool_ip_log", 0.6, "b"),  # a listed pool
        row("10.0.0.3", "beh.periodic_low_rate", 0.6, "c"),  # shape and a listed pool
        row("10.0.0.3", "intel.pool_ip_log", 0.6, "d"),
    ])
    assert [(h["host"], h["shape_only"]) for h in hosts] == [
        ("10.0.0.3", False), ("10.0.0.2", False), ("10.0.0.1", True)]
    console = Console(width=250, record=True)
    print_host_table(console, hosts)
    text = console.export_text()
    lead = next(line for line in text.splitlines() if "10.0.0.1" in line)
    assert "flow shape only: a lead" in lead
    assert sum("a lead" in line for line in text.splitlines()) == 1

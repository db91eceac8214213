"""`minewatch demo`: the whole pipeline, as far as it exists, on bundled real data."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.rule import Rule

CAPTURES = Path(__file__).parent / "captures"


def run_network_demo(out_dir: Path, console: Console) -> int:
    import pyarrow as pa

    from minewatch.cli import print_host_table, print_read_summary
    from minewatch.detect import Context
    from minewatch.findings import HomeNet, host_findings
    from minewatch.intel import IntelSet
    from minewatch.output import EvidenceWriter
    from minewatch.scan import Scanner, expand_inputs
    from minewatch.schema import EVIDENCE

    console.print(Rule("1. Network monitoring: bundled packet captures"))
    scanner = Scanner(Context(intel=IntelSet.load()))
    evidence_path = out_dir / "evidence.jsonl"
    writer = EvidenceWriter(str(evidence_path), "jsonl")
    tables = []
    for path in expand_inputs([str(CAPTURES)], scanner.report):
        for table in scanner.scan_file(path):
            writer.write(table)
            tables.append(table)
    writer.close()
    evidence = pa.concat_tables(tables) if tables else EVIDENCE.empty_table()
    print_host_table(console, host_findings(evidence, HomeNet.parse([])))
    print_read_summary(console, scanner.report)
    for row in evidence.filter(pa.compute.equal(evidence["category"], "mining")).to_pylist()[:6]:
        console.print(f"  [bold]{row['detector']}[/] {row['src_ip']} -> {row['dst_ip']}:{row['dst_port']}: {row['summary']}")
    console.print(f"evidence: {evidence_path} ({evidence.num_rows} records)")
    return 1 if scanner.report.failed else 0


def run_demo(out_dir: Path, console: Console) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    status = run_network_demo(out_dir, console)
    try:
        from minewatch.power.demo import run_power_demo
    except ImportError:
        return status
    return max(status, run_power_demo(out_dir, console))

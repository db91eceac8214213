"""Typer commands of the workspace verbs; minewatch.cli registers them:

    app.command()(ingest); app.command()(detect); app.command()(findings); app.command()(evidence)
"""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from minewatch.errors import UsageError

WORKSPACE_HELP = "Workspace folder (Parquet tables + catalog.duckdb); created by ingest."
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    return console


def _intel(files: list[str]):
    from minewatch.intel import IntelSet

    intel = IntelSet.load(extra_files=files)
    for problem in intel.problems:
        err.print(f"[yellow]warning:[/] {escape(str(problem))}")
    return intel


def _check_zone(name: str) -> None:
    from minewatch.sources._records import is_time_zone

    if not is_time_zone(name):
        raise UsageError(f"--tz {name!r} is not a time zone (an IANA name such as Asia/Shanghai, or UTC)")


def _describe_file(result) -> str:
    """One line of rich markup about one input (its names and messages escaped)."""
    path, error = escape(str(result.path)), escape(str(result.error))
    if result.status == "failed":
        return f"[red]error:[/] {error}"
    if result.status == "skipped":
        return f"{path}: already ingested, nothing added"
    if result.status == "ignored":
        return f"[dim]{path}: ignored ({error})[/]"
    tables = ", ".join(f"{t} {n:,}" for t, n in sorted(result.tables.items())) or "no rows"
    text = f"{path}: {result.format}, accepted {result.accepted:,} ({tables}), rejected {result.rejected:,}"
    if result.reasons:
        shown = "; ".join(f"{n} {r}" for r, n in result.reasons.most_common(3))
        if len(result.reasons) > 3:
            more, kinds = sum(n for _, n in result.reasons.most_common()[3:]), len(result.reasons) - 3
            shown += f"; {more} more for {kinds} other reason{'s' if kinds > 1 else ''}"
        text += " (" + escape(shown) + ")"
    if result.rejects_file:
        text += f" -> {escape(str(result.rejects_file))}"
    if result.status == "redone":
        text += " [yellow](an earlier, unfinished ingest of this file was undone)[/]"
    for note in result.notes:  # assumptions taken, records ignored or adjusted: said, not silent
        text += f"\n  [dim]{escape(str(note))}[/]"
    return text


def ingest(
    paths: List[str] = typer.Argument(..., help="Log, flow or capture files, or folders (read recursively)."),
    workspace: str = typer.Option(..., "--workspace", "-w", help=WORKSPACE_HELP),
    intel: List[str] = typer.Option([], "--intel", help="Extra indicator list for the packet detectors run on captures."),
    mapping: Optional[str] = typer.Option(None, "--map", help="Column mapping for generic CSV/Parquet: ts_start=col,src_ip=col,..."),
    naive_tz: str = typer.Option("UTC", "--tz", help="Time zone of times written without one (nfdump CSV, resolver logs)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print errors only."),
):
    """Read input files into a workspace; a file already ingested (same content) adds nothing."""
    from minewatch.detect import Context
    from minewatch.sources.tabular import check_mapping, parse_mapping
    from minewatch.workspace.ingest import IngestOptions, ingest as run_ingest
    from minewatch.workspace.store import Workspace

    mapped = parse_mapping(mapping) if mapping else None
    if mapped is not None:
        check_mapping(mapped)  # before any file: a wrong mapping is the user's, not a file's
    _check_zone(naive_tz)
    options = IngestOptions(mapping=mapped, naive_tz=naive_tz, ctx=Context(intel=_intel(intel)))
    out = _console()

    def show(result) -> None:
        if result.status == "failed":
            err.print(_describe_file(result))
        elif not quiet:
            out.print(_describe_file(result), soft_wrap=True)  # one line per file, for logs and grep

    report = run_ingest(Workspace(workspace), list(paths), options, on_file=show)
    for message in report.detector_errors:
        err.print(f"[yellow]warning:[/] {escape(str(message))}")
    if not quiet:
        accepted = sum(f.accepted for f in report.files)
        rejected = sum(f.rejected for f in report.files)
        out.print(f"{len(report.files)} files: {report.count('ingested') + report.count('redone')} ingested, "
                  f"{report.count('skipped')} already there, {report.count('ignored')} ignored (not an input format), "
                  f"{report.count('failed')} failed; "
                  f"{accepted:,} records accepted, {rejected:,} rejected")
    if report.count("failed"):
        raise typer.Exit(1)


def detect(
    workspace: str = typer.Option(..., "--workspace", "-w", help=WORKSPACE_HELP),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (embedded) or spark (needs PySpark and Java)."),
    spark_master: Optional[str] = typer.Option(None, "--spark-master", help="Spark master URL, e.g. spark://host:7077 (default local[2])."),
    spark_tables: Optional[str] = typer.Option(None, "--spark-tables", help="Where Spark reads the workspace tables (hdfs://..., s3a://...; default: the workspace folder)."),
    intel: List[str] = typer.Option([], "--intel", help="Extra indicator list: domains, IPs/CIDRs, ip:port (repeatable)."),
    detector: List[str] = typer.Option([], "--detector", help="Run only this SQL detector (repeatable)."),
    since: Optional[str] = typer.Option(None, "--since", help="Redo only the days from this one on (YYYY-MM-DD, UTC): "
                                        "only their partitions are read; older evidence is kept."),
    changed: bool = typer.Option(False, "--changed", help="Redo only the days touched by inputs ingested since "
                                 "the detectors' last run (nothing when nothing is new)."),
    memory_limit: str = typer.Option("1536MB", "--memory-limit", help="DuckDB memory limit."),
    threads: Optional[int] = typer.Option(None, "--threads", help="DuckDB threads (default: all cores)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print errors only."),
):
    """Run the SQL detectors over the workspace tables; evidence goes to the workspace."""
    from minewatch.workspace.store import Workspace

    if engine not in ("duckdb", "spark"):
        raise UsageError(f"--engine must be duckdb or spark, not {engine!r}")
    if engine == "duckdb" and (spark_master or spark_tables):
        raise UsageError("--spark-master and --spark-tables need --engine spark")
    from minewatch.engine.duckdb import check_day

    check_day(since)  # before Spark starts
    if changed:
        if since:
            raise UsageError("--changed and --since exclude each other")
        plan = _changed_plan(Workspace(workspace), detector)
        if not quiet:
            err.print(f"--changed: {plan.why}")
        if not plan.run:
            return
        since = plan.since
    if engine == "spark":
        from minewatch.engine.spark import SparkEngine, java_problem

        problem = java_problem()
        if problem:
            raise UsageError(f"the Spark engine cannot start: {problem}; or use --engine duckdb")
        spark_engine = SparkEngine(Workspace(workspace), _intel(intel), master=spark_master, tables_url=spark_tables)
        try:
            report = spark_engine.run(detector or None, since)
        finally:
            spark_engine.close()
    else:
        from minewatch.engine.duckdb import DuckDBEngine

        report = DuckDBEngine(Workspace(workspace), _intel(intel), memory_limit, threads).run(detector or None, since)
    for problem in report.problems:
        err.print(f"[yellow]warning:[/] {escape(str(problem))}")
    for result in report.failed:
        err.print(f"[red]error:[/] detector {result.id} failed: {escape(str(result.error))}")
    if not quiet:
        days = f", days from {since.strip()}" if since else ""
        table = Table(title=f"Detector run {report.run_id} ({engine}{days})")
        for col in ("detector", "version", "evidence", "seconds", "status"):
            table.add_column(col)
        for r in report.results:
            table.add_row(r.id, str(r.version), f"{r.rows:,}", f"{r.seconds:.2f}", "failed" if r.error else "ok")
        _console().print(table)
    if report.failed:
        raise typer.Exit(1)


def _changed_plan(ws, ids: list[str]):
    from minewatch.engine.changes import changed_days
    from minewatch.engine.duckdb import select_detectors
    from minewatch.workspace.catalogue import Catalogue

    ws.must_exist()
    detectors = select_detectors(ids or None)
    with Catalogue(ws.catalogue_path) as cat:
        return changed_days(ws, cat, detectors)


def _json_default(value):
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(type(value).__name__)


def findings(
    workspace: str = typer.Option(..., "--workspace", "-w", help=WORKSPACE_HELP),
    since: Optional[str] = typer.Option(None, "--since", help="From this date or time (UTC), inclusive."),
    until: Optional[str] = typer.Option(None, "--until", help="Up to this date (inclusive) or time (exclusive)."),
    home_net: List[str] = typer.Option([], "--home-net", help="Internal network CIDR (repeatable; default private ranges)."),
    fmt: str = typer.Option("table", "--format", help="table or jsonl."),
    prefix: Optional[int] = typer.Option(None, "--prefix", help="One finding per IPv4 network of this length (e.g. 24) instead of per address."),
    prefix6: Optional[int] = typer.Option(None, "--prefix6", help="IPv6 prefix length for --prefix grouping (default 64)."),
    new: bool = typer.Option(False, "--new", help="Only hosts with no evidence before --since (new since then)."),
):
    """One finding per host (or prefix): all its evidence in the workspace, combined and explained."""
    from minewatch.findings import HomeNet, Prefixes
    from minewatch.workspace.query import EvidenceFilter, workspace_findings
    from minewatch.workspace.store import Workspace

    if fmt not in ("table", "jsonl"):
        raise UsageError(f"--format must be table or jsonl, not {fmt!r}")
    hosts = workspace_findings(Workspace(workspace), HomeNet.parse(home_net), EvidenceFilter(since, until),
                               Prefixes.parse(prefix, prefix6), new_only=new)
    if fmt == "jsonl":
        for host in hosts:
            typer.echo(json.dumps(host, ensure_ascii=False, default=_json_default))
        return
    from minewatch.cli import print_host_table

    print_host_table(_console(), hosts)


def evidence(
    workspace: str = typer.Option(..., "--workspace", "-w", help=WORKSPACE_HELP),
    output: str = typer.Option(..., "--output", "-o", help="Write evidence here ('-' = standard output)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="jsonl, csv or parquet (default: from the extension)."),
    since: Optional[str] = typer.Option(None, "--since", help="From this date or time (UTC), inclusive."),
    until: Optional[str] = typer.Option(None, "--until", help="Up to this date (inclusive) or time (exclusive)."),
    detector: List[str] = typer.Option([], "--detector", help="Only this detector (repeatable)."),
    category: List[str] = typer.Option([], "--category", help="Only this category (repeatable)."),
):
    """Export the workspace evidence in the same record format as `scan`."""
    from minewatch.output import EvidenceWriter, choose_format
    from minewatch.workspace.query import EvidenceFilter, export_evidence
    from minewatch.workspace.store import Workspace

    ws = Workspace(workspace).must_exist()
    writer = EvidenceWriter(output, choose_format(output, fmt))
    try:
        rows = export_evidence(ws, writer, EvidenceFilter(since, until, detector, category))
    finally:
        writer.close()
    if output != "-":
        err.print(f"{rows:,} evidence records written to {output}", markup=False)

"""Command line: verbs mirror the stages (scan, detectors, demo, meters, equipment...)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from minewatch import __version__
from minewatch.errors import MinewatchError, UsageError

app = typer.Typer(
    help="minewatch: find cryptocurrency mining where it should not be.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # progress, warnings, errors


def _version(value: bool):
    if value:
        print(f"minewatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version.")):
    pass


def _load_context(intel_files: list[str], show_wallets: bool):
    from minewatch.detect import Context
    from minewatch.intel import IntelSet

    intel = IntelSet.load(extra_files=intel_files)
    for problem in intel.problems:
        err.print(f"[yellow]warning:[/] {escape(str(problem))}")
    return Context(show_wallets=show_wallets, intel=intel)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        TimeRemainingColumn(), console=err, disable=quiet, transient=False,
    )


def _fmt_list(values) -> str:
    return ", ".join(v for v in (values or []) if v) or "-"


def _fmt_seen(first, last) -> str:
    if first is None:
        return "-"
    start = first.strftime("%Y-%m-%d %H:%M")
    if last is None or last == first:
        return start
    end = last.strftime("%H:%M" if last.date() == first.date() else "%Y-%m-%d %H:%M")
    return f"{start} → {end}"


def wide_console(stderr: bool = False) -> Console:
    """A console that keeps summary tables readable when output is not a terminal."""
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 160)
    return console


def print_host_table(console: Console, hosts: list[dict]) -> None:
    if not hosts:
        console.print("No mining evidence found.")
        return
    table = Table(title="Hosts with mining evidence (miner side; HOME_NET hosts first)")
    for col in ("host", "what", "coin", "pool", "agent", "worker", "flows", "seen (UTC)", "conf."):
        table.add_column(col, overflow="fold")
    for h in hosts:
        what = _fmt_list(h["categories"])
        if h["dialects"]:
            what += f" ({_fmt_list(h['dialects'])})"
        if h.get("shape_only"):
            what += " [yellow](flow shape only: a lead)[/]"
        host = h["host"]
        if len(h.get("hosts") or []) > 1 or "/" in host:
            host += f" ({len(h['hosts'])} hosts)"
        if not h["internal"]:
            host += " [dim](outside HOME_NET)[/]"
        table.add_row(
            host, what, _fmt_list(h["coins"]), _fmt_list(h["pools"]), _fmt_list(h["agents"]),
            _fmt_list(h["workers"]), str(h["flows"]), _fmt_seen(h["first_seen"], h["last_seen"]),
            f"{h['confidence']:.2f}",
        )
    console.print(table)
    console.print("Why, per host (each detector's strongest evidence):")
    for h in hosts:
        if h.get("explanation"):
            console.print(f"  [bold]{escape(h['host'])}[/]: {escape(h['explanation'])}")


def print_read_summary(console: Console, report) -> None:
    files = report.files
    ok = [s for s in files if not s.failed]
    skipped = {}
    for s in files:
        for reason, n in s.packets_skipped.items():
            skipped[reason] = skipped.get(reason, 0) + n
    table = Table(title="Inputs", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("inputs scanned", str(len(files)))
    table.add_row("inputs failed", str(len(report.failed)))
    if report.skipped_paths:
        table.add_row("files skipped in folders (not captures)", str(len(report.skipped_paths)))
    table.add_row("packets read", f"{sum(s.packets_read for s in files):,}")
    for reason, n in sorted(skipped.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  packets skipped: {reason}", f"{n:,}")
    table.add_row("flows", f"{sum(s.flows for s in files):,}")
    table.add_row("evidence records", f"{report.evidence_rows:,}")
    readers = sorted({s.reader for s in ok if s.reader})
    if readers:
        table.add_row("readers used", ", ".join(readers))
    console.print(table)


@app.command()
def scan(
    paths: List[str] = typer.Argument(None, help="Capture files (pcap, pcapng) or folders, scanned recursively."),
    interface: Optional[str] = typer.Option(None, "--interface", "-i", help="Capture live from this interface (root)."),
    duration: Optional[float] = typer.Option(None, help="Seconds of live capture (with --interface)."),
    save_capture: Optional[str] = typer.Option(None, "--save-capture", help="With --interface: keep the packets in this pcap (hashed into the evidence)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Write evidence here ('-' = standard output)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="jsonl, csv or parquet (default: from the extension)."),
    home_net: List[str] = typer.Option([], "--home-net", help="Internal network CIDR (repeatable; default private ranges)."),
    intel: List[str] = typer.Option([], "--intel", help="Extra indicator list: hosts, domains, IPs/CIDRs, ip:port (repeatable)."),
    show_wallets: bool = typer.Option(False, "--show-wallets", help="Print wallet addresses in full."),
    reader: str = typer.Option("auto", help="auto (compiled reader, nfstream for exotic links), fast, or nfstream (nDPI labels)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary tables."),
):
    """Find mining conversations in packet captures or on a live interface."""
    from minewatch.findings import HomeNet, host_findings
    from minewatch.output import EvidenceWriter, choose_format
    from minewatch.scan import ScanOptions, Scanner, expand_inputs

    if not paths and not interface:
        raise UsageError("give capture files or folders, or --interface")
    if paths and interface:
        raise UsageError("give either capture files or --interface, not both")
    home = HomeNet.parse(home_net)
    ctx = _load_context(intel, show_wallets)
    scanner = Scanner(ctx, ScanOptions(reader=reader))
    writer = EvidenceWriter(output, choose_format(output, fmt)) if output else None
    summary = wide_console(stderr=output == "-")
    collected = []

    def consume(tables):
        for table in tables:
            if table.num_rows:
                collected.append(table)
                if writer:
                    writer.write(table)

    try:
        if interface:
            if not quiet:
                err.print(f"capturing on {escape(str(interface))}" + (f" for {duration:g} s" if duration else " (Ctrl-C to stop)"))
            try:
                consume(scanner.scan_interface(interface, duration, save_capture))
            except KeyboardInterrupt:
                err.print("capture stopped")
        else:
            files = expand_inputs(paths, scanner.report)
            sizes = {f: (Path(f).stat().st_size if Path(f).is_file() else 0) for f in files}
            with _progress(quiet) as progress:
                task = progress.add_task("scanning", total=sum(sizes.values()) or None)
                done_before = 0
                for f in files:
                    progress.update(task, description=f"scanning {escape(Path(f).name[:40])}")
                    consume(scanner.scan_file(
                        f, on_progress=lambda n, base=done_before: progress.update(task, completed=base + n)
                    ))
                    done_before += sizes[f]
                    progress.update(task, completed=done_before)
    finally:
        if writer:
            writer.close()

    report = scanner.report
    for stats in report.failed:
        err.print(f"[red]error:[/] {escape(str(stats.path))}: {escape(str(stats.error))}")
    for message in report.detector_errors:
        err.print(f"[yellow]warning:[/] {escape(str(message))}")
    if not quiet:
        import pyarrow as pa

        from minewatch.schema import EVIDENCE

        evidence = pa.concat_tables(collected) if collected else EVIDENCE.empty_table()
        print_host_table(summary, host_findings(evidence, home))
        print_read_summary(summary, report)
        if writer and output != "-":
            summary.print(f"{writer.rows:,} evidence records written to {output}", markup=False)
    if report.failed:
        raise typer.Exit(1)


@app.command()
def detectors():
    """List the registered detectors with their ids and versions."""
    from minewatch.detect import load_all

    table = Table(title="Detectors")
    for col in ("id", "version", "category", "looks for"):
        table.add_column(col, overflow="fold")
    for det in sorted(load_all().values(), key=lambda d: d.id):
        table.add_row(det.id, str(det.version), det.category, det.description)
    Console().print(table)


def _mount_stage_commands() -> None:
    """Commands of the other stages live beside their code; they are registered here."""
    from minewatch.power.cli import equipment_app, meters_app
    from minewatch.workspace import cli as workspace_cli

    for command in (workspace_cli.ingest, workspace_cli.detect, workspace_cli.findings, workspace_cli.evidence):
        app.command()(command)
    app.add_typer(meters_app, name="meters", help="Electricity-meter data: ingest, score, show.")
    app.add_typer(equipment_app, name="equipment", help="Miner hardware catalogue and power estimates.")


_mount_stage_commands()


@app.command()
def demo(
    out_dir: str = typer.Option("demo-output", help="Where the demo writes its outputs."),
):
    """Run the whole pipeline on the bundled data and print what it finds."""
    from minewatch.demo import run_demo

    raise typer.Exit(run_demo(Path(out_dir), wide_console()))


def main() -> None:
    try:
        app()
    except MinewatchError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}")
        sys.exit(2 if isinstance(exc, UsageError) else 1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)

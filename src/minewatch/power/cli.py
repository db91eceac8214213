"""Typer sub-apps: `minewatch meters ...` and `minewatch equipment ...`.

The power modules (DuckDB, numpy) are imported inside the commands, so that every other
minewatch command starts without them."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from minewatch.errors import MinewatchError

meters_app = typer.Typer(help="Electricity meters: ingest readings, score them for mining, show one meter.",
                         no_args_is_help=True)
equipment_app = typer.Typer(help="Miner hardware catalogue and the seized-equipment calculator.",
                            no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

WS = typer.Option(Path("./ws"), "--workspace", "-w", help="workspace folder")


@meters_app.command("ingest")
def ingest_cmd(
    files: list[Path] = typer.Argument(..., help="CSV or Parquet files (long or wide layout)"),
    workspace: Path = WS,
    tz: str = typer.Option("UTC", help="time zone of timestamps without an offset (IANA name)"),
    unit: Optional[str] = typer.Option(None, help="kwh|kw|wh|w; default from the column name, else kwh"),
    metadata: Optional[Path] = typer.Option(None, help="CSV: meter_id,declared_business,contracted_kw,tariff_class"),
    show_meters: int = typer.Option(10, help="list at most this many meters with input problems"),
) -> None:
    """Add readings to the workspace; the same file twice adds nothing."""
    from minewatch.errors import UsageError
    from minewatch.power.ingest import check_options

    try:
        check_options(tz, unit)
    except UsageError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2)
    failed = 0
    for f in files:
        try:
            from minewatch.power.ingest import ingest_file

            res = ingest_file(workspace, f, tz, unit)
        except MinewatchError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}")
            failed += 1
            continue
        if res.skipped:
            out.print(f"{f}: already ingested (sha256 {res.sha256[:12]}), nothing added", markup=False)
            continue
        out.print(f"{f}: {res.readings:,} readings of {res.meters:,} meters ({'; '.join(res.notes)})", markup=False)
        if res.malformed:
            reasons = "; ".join(f"{n} {r}" for r, n in res.malformed_reasons().most_common(3))
            err.print(f"[yellow]warning:[/] {escape(str(f))}: {len(res.malformed):,} lines not read "
                      f"({escape(reasons)}), first at line {res.malformed[0][0]} -> {escape(str(res.rejects_file))}")
        bad = [r for r in res.quality if r.summary() != "clean"]
        if bad:
            out.print(f"  {len(bad)} meters with input problems (all counted in catalog table `quality`):")
            for r in bad[:show_meters]:
                out.print(f"  {r.meter_id}: {r.summary()}", markup=False)
    if metadata:
        try:
            from minewatch.power.ingest import load_metadata

            n, malformed = load_metadata(workspace, metadata)
            out.print(f"metadata: {n} meters described")
            for line, reason, _ in malformed[:5]:
                where = f"line {line}: {reason} (not read)" if line is not None else reason
                err.print(f"[yellow]warning:[/] {escape(str(metadata))}: {escape(where)}")
            if len(malformed) > 5:
                err.print(f"[yellow]warning:[/] {escape(str(metadata))}: {len(malformed) - 5} more problems")
        except MinewatchError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}")
            failed += 1
    if failed:
        raise typer.Exit(1)


@meters_app.command("score")
def score_cmd(
    workspace: Path = WS,
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="JSON lines; default: stdout"),
    utc_offset: float = typer.Option(0.0, help="local time = UTC + this many hours (for day/night)"),
    top: int = typer.Option(20, help="flagged meters to list on the console"),
    engine: str = typer.Option("duckdb", "--engine", help="duckdb (embedded) or spark (same results; needs PySpark and Java)"),
    spark_master: Optional[str] = typer.Option(None, "--spark-master", help="Spark master URL, e.g. spark://host:7077 (default local[2])"),
    since: Optional[str] = typer.Option(None, "--since", help="score only onsets from this local date on (YYYY-MM-DD); older readings are history: last year's same weeks tell a building's season from a new load"),
) -> None:
    """Score every meter; write one JSON verdict per line, flagged first."""
    from minewatch.errors import UsageError
    from minewatch.power.scoring import score_workspace

    try:
        records = score_workspace(workspace, utc_offset, engine, spark_master, since=since)
    except MinewatchError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2 if isinstance(e, UsageError) else 1)
    if not records:
        err.print(f"[red]error:[/red] no readings in {escape(str(workspace))}: run `minewatch meters ingest` first")
        raise typer.Exit(1)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if output is None:
        sys.stdout.write(lines)
        return
    output.write_text(lines, encoding="utf-8")
    flagged = [r for r in records if r["flagged"]]
    out.print(f"{len(records):,} meters scored ({engine}), {len(flagged):,} flagged -> {output}")
    for r in flagged[:top]:
        out.print(f"  {r['meter_id']}  score {r['score']:.2f}  {r['explanation']}", markup=False)


def _chart(days, mean, base, onset: Optional[int],
           miner_kw: float, pre_base: float, width: int, height: int) -> list[str]:
    """Text chart: daily mean (░) over daily base (█); onset column '|'; estimated
    miner load as '─' from the onset at pre-onset base + added kW."""
    import numpy as np

    from minewatch.power.scoring import day_str
    n = len(days)
    cols = min(width, n)
    edges = np.linspace(0, n, cols + 1).astype(int)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m = np.array([np.nanmean(mean[a:b]) for a, b in zip(edges[:-1], edges[1:])])
            bs = np.array([np.nanmean(base[a:b]) for a, b in zip(edges[:-1], edges[1:])])
    top = np.nanmax(np.r_[m, pre_base + miner_kw]) or 1.0
    onset_col = None if onset is None else int(np.searchsorted(edges, onset - days[0], side="right") - 1)
    rows = []
    for level in range(height, 0, -1):
        lo = top * (level - 1) / height
        line = []
        for c in range(cols):
            ch = " "
            if not math.isnan(bs[c]) and bs[c] > lo:
                ch = "█"
            elif not math.isnan(m[c]) and m[c] > lo:
                ch = "░"
            if onset_col is not None and miner_kw > 0 and c >= onset_col and lo < pre_base + miner_kw <= lo + top / height:
                ch = "─" if ch == " " else ch
            if c == onset_col and ch == " ":
                ch = "|"
            line.append(ch)
        label = f"{top * level / height:9.1f} kW " if level in (height, 1) or level == height // 2 else " " * 13
        rows.append(label + "".join(line))
    rows.append(" " * 13 + f"{day_str(days[0])}{' ' * max(1, cols - 20)}{day_str(days[-1])}")
    return rows


@meters_app.command("show")
def show_cmd(
    meter_id: str = typer.Argument(..., help="meter to show"),
    workspace: Path = WS,
    width: int = typer.Option(100, help="chart width in characters"),
    height: int = typer.Option(12, help="chart height in lines"),
    utc_offset: float = typer.Option(0.0, help="local time = UTC + this many hours"),
) -> None:
    """Chart one meter: daily load, onset, estimated miner load, and the verdict."""
    import numpy as np

    from minewatch.power import equipment as eq
    from minewatch.power.scoring import meter_daily
    dm, rec = meter_daily(workspace, meter_id, utc_offset)
    if rec is None or not len(dm.meters):
        err.print(f"[red]error:[/red] meter {escape(repr(meter_id))} is not in {escape(str(workspace))}")
        raise typer.Exit(1)
    days = dm.day0 + np.arange(dm.base.shape[1])
    onset = None
    if rec.get("onset"):
        from datetime import date
        onset = (date.fromisoformat(rec["onset"]) - date(1970, 1, 1)).days
    pre = float(rec.get("tests", {}).get("pre_base") or 0.0)
    out.print(f"meter {escape(meter_id)}: {'[bold red]FLAGGED[/bold red]' if rec['flagged'] else 'not flagged'}"
              f"  score {rec['score']:.2f}")
    for line in _chart(days, dm.mean[0], dm.base[0], onset, rec["estimated_kw"], pre, width, height):
        out.print(line, markup=False)
    out.print("█ daily base (minimum)  ░ daily mean  | onset  ─ base before onset + estimated miner load")
    out.print(rec["explanation"], markup=False)
    if rec["estimated_units"]:
        cat = eq.load_catalogue()
        out.print("estimated units: " + ", ".join(f"{cat[k].name} {v}" for k, v in rec["estimated_units"].items()))


def _hashrate(value: float, unit: str) -> str:
    """13.5e6 TH/s -> '13.5 EH/s' (unit like 'TH/s', 'MH/s', 'kH/s')."""
    prefixes = "kMGTPEZ"
    p = prefixes.index(unit[0]) if unit[0] in prefixes else -1
    while value >= 1000 and p + 1 < len(prefixes):
        value, p = value / 1000, p + 1
    return f"{value:,.3g} {prefixes[p] if p >= 0 else ''}{unit.lstrip(prefixes)}"


@equipment_app.command("estimate")
def estimate_cmd(
    model: list[str] = typer.Option(..., "--model", "-m", help="catalogue model id (repeat, paired with --count)"),
    count: list[int] = typer.Option(..., "--count", "-n", help="number of units (repeat)"),
    uptime: float = typer.Option(1.0, help="share of the year the miners run (0..1]"),
    pue: float = typer.Option(1.0, help="facility overhead factor (cooling etc.), >= 1"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Power, energy per year and hashrate of seized or suspected equipment."""
    from minewatch.power import equipment as eq
    if len(model) != len(count):
        err.print(f"[red]error:[/red] give one --count per --model ({len(model)} models, {len(count)} counts)")
        raise typer.Exit(2)
    try:
        est = eq.estimate_fleet(list(zip(model, count)), uptime, pue)
    except MinewatchError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2)
    if as_json:
        out.print_json(data={
            "lines": [{"model": ln.model.model_id, "count": ln.count, "unit_w": ln.model.power_w,
                       "power_mw": ln.power_mw, "power_mw_range": [ln.power_mw_low, ln.power_mw_high],
                       "energy_gwh_year": ln.energy_gwh_year, "hashrate": ln.hashrate,
                       "hashrate_unit": ln.model.hashrate_unit, "source": ln.model.source} for ln in est.lines],
            "total_power_mw": est.power_mw, "total_energy_gwh_year": est.energy_gwh_year,
            "assumptions": est.assumptions()})
        return
    t = Table(title="Seized / suspected equipment")
    for c in ("model", "count", "unit W", "MW (range)", "GWh / year", "hashrate"):
        t.add_column(c, justify="left" if c == "model" else "right")
    for ln in est.lines:
        t.add_row(ln.model.name, f"{ln.count:,}", f"{ln.model.power_w:,.0f}",
                  f"{ln.power_mw:,.1f} ({ln.power_mw_low:,.1f}-{ln.power_mw_high:,.1f})",
                  f"{ln.energy_gwh_year:,.0f}", _hashrate(ln.hashrate, ln.model.hashrate_unit))
    t.add_row("total", f"{sum(ln.count for ln in est.lines):,}", "", f"{est.power_mw:,.1f}",
              f"{est.energy_gwh_year:,.0f}", "")
    out.print(t)
    out.print("Assumptions: " + "; ".join(est.assumptions()) + ".")
    out.print("Sources: " + " | ".join(f"{ln.model.name}: {ln.model.source}" for ln in est.lines))


@equipment_app.command("list")
def list_cmd() -> None:
    """The miner hardware catalogue with power, efficiency and sources."""
    from minewatch.power import equipment as eq
    out.print(f"Miner hardware catalogue ({eq.CATALOGUE})")
    for m in eq.load_catalogue().values():
        per = m.hashrate_unit.split("/")[0]
        out.print(f"{m.model_id:18} {m.name:22} {m.algorithm:10} {m.hashrate:g} {m.hashrate_unit:5} "
                  f"{m.power_w:6.0f} W  {m.watts_per_hash_unit:.4g} W per {per}/s")
        out.print(f"{'':18} source: {m.source}", markup=False)

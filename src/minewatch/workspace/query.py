"""Reading a workspace's evidence: per-host findings and exports, filtered by time,
detector and category, all in DuckDB over the Parquet (nothing is loaded whole)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import duckdb

from minewatch.errors import UsageError
from minewatch.findings import HomeNet, Prefixes, host_findings_in
from minewatch.workspace.store import Workspace

EXPORT_BATCH_ROWS = 65536


@dataclass
class EvidenceFilter:
    since: str | None = None  # date or ISO time, UTC; inclusive
    until: str | None = None  # a date includes that whole day; a time is exclusive
    detectors: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)

    def where(self) -> str:
        """A WHERE clause with the values inlined as literals (views cannot take parameters):
        times are parsed first and strings quoted, so nothing of the user's text is SQL."""
        clauses = []
        if self.since:
            clauses.append(f"ts_start >= {_time_literal(parse_moment(self.since, '--since'))}")
        if self.until:
            moment = parse_moment(self.until, "--until")
            if len(self.until.strip()) == 10:  # a date: up to the end of that day
                moment += timedelta(days=1)
            clauses.append(f"ts_start < {_time_literal(moment)}")
        for column, values in (("detector", self.detectors), ("category", self.categories)):
            if values:
                clauses.append(f"{column} IN ({', '.join(_text_literal(v) for v in values)})")
        return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def _time_literal(moment: datetime) -> str:
    return f"TIMESTAMPTZ '{moment.astimezone(timezone.utc).isoformat()}'"


def _text_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def parse_moment(text: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date (2026-11-01) or an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def open_evidence(ws: Workspace, selection: EvidenceFilter | None = None) -> duckdb.DuckDBPyConnection:
    """A connection with view `evidence_sel`: the workspace evidence matching `selection`."""
    from minewatch.engine.duckdb import connect

    ws.must_exist()
    con = connect(ws, tables=())
    where = (selection or EvidenceFilter()).where()
    con.execute(f"CREATE TEMP VIEW evidence_sel AS SELECT * FROM evidence_all{where}")
    return con


def workspace_findings(ws: Workspace, home: HomeNet, selection: EvidenceFilter | None = None,
                       prefixes: Prefixes = Prefixes(), new_only: bool = False) -> list[dict]:
    """One finding per host (or prefix) over the selected evidence. `new_only`: only the
    hosts with no evidence at all before the selection's `since` (the morning question:
    what is new since yesterday, not what is still going on)."""
    selection = selection or EvidenceFilter()
    if new_only and not selection.since:
        raise UsageError("--new needs --since: new since when?")
    con = open_evidence(ws, selection)
    try:
        hosts = host_findings_in(con, "evidence_sel", home, prefixes)
    finally:
        con.close()
    if new_only and hosts:
        start = parse_moment(selection.since, "--since").astimezone(timezone.utc).isoformat()
        before = EvidenceFilter(until=start, detectors=selection.detectors, categories=selection.categories)
        con = open_evidence(ws, before)
        try:
            seen = {(h["host"], h["internal"]) for h in host_findings_in(con, "evidence_sel", home, prefixes)}
        finally:
            con.close()
        hosts = [h for h in hosts if (h["host"], h["internal"]) not in seen]
    return hosts


def export_evidence(ws: Workspace, writer, selection: EvidenceFilter | None = None) -> int:
    """Stream the selected evidence, ordered by time, into an output.EvidenceWriter."""
    from minewatch.schema import EVIDENCE

    con = open_evidence(ws, selection)
    try:
        columns = ", ".join(EVIDENCE.names)
        reader = con.sql(f"SELECT {columns} FROM evidence_sel "
                         "ORDER BY ts_start, detector, source_file, source_ref").to_arrow_reader(EXPORT_BATCH_ROWS)
        rows = 0
        for batch in reader:
            writer.write(batch)
            rows += batch.num_rows
        return rows
    finally:
        con.close()

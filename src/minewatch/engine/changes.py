"""Which days a detector run must redo to take in what was ingested since the last one
(`minewatch detect --changed`)."""

from __future__ import annotations

from dataclasses import dataclass

from minewatch.detect import SqlDetector
from minewatch.workspace.catalogue import Catalogue
from minewatch.workspace.store import NO_DAY, RECORD_TABLES, SHA_PREFIX, Workspace


@dataclass
class Plan:
    run: bool  # False: nothing new, nothing to do
    since: str | None  # the first day to redo; None with run=True: every day
    why: str


def changed_days(ws: Workspace, cat: Catalogue, detectors: list[SqlDetector]) -> Plan:
    """The days from which every detector's evidence must be redone: those touched by the
    inputs ingested after the detector's last successful run. A detector that never ran,
    or ran in another version, needs every day; so does an input with records of no time."""
    last = cat.last_runs()
    for det in detectors:
        if det.id not in last:
            return Plan(True, None, f"{det.id} has not run here yet: every day")
        if last[det.id][0] != det.version:
            return Plan(True, None, f"{det.id} ran as version {last[det.id][0]}, now {det.version}: every day")
    oldest = min(last[det.id][1] for det in detectors)
    files = cat.files_done_after(oldest)
    days_of = _days_by_input(ws) if files else {}
    days = {day for f in files for day in days_of.get(f.sha256[:SHA_PREFIX], ())}
    if not days:
        return Plan(False, None, "nothing ingested since the last run")
    if NO_DAY in days:
        return Plan(True, None, f"{len(files)} inputs ingested since the last run, some records without a time: every day")
    first = min(days)
    return Plan(True, first, f"{len(files)} inputs ingested since the last run touch days from {first}")


def _days_by_input(ws: Workspace) -> dict[str, set[str]]:
    """Hash prefix of each input -> the day partitions of the record tables holding its
    parts (part files are named part-<prefix>-<n>.parquet): one walk for all inputs."""
    out: dict[str, set[str]] = {}
    for table in RECORD_TABLES:
        for part in (ws.tables_dir / table).glob("source=*/day=*/part-*.parquet"):
            out.setdefault(part.name[5:5 + SHA_PREFIX], set()).add(part.parent.name[4:])
    return out

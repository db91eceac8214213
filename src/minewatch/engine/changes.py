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
    days = {day for f in files for day in _days_of(ws, f.sha256)}
    if not days:
        return Plan(False, None, "nothing ingested since the last run")
    if NO_DAY in days:
        return Plan(True, None, f"{len(files)} inputs ingested since the last run, some records without a time: every day")
    first = min(days)
    return Plan(True, first, f"{len(files)} inputs ingested since the last run touch days from {first}")


def _days_of(ws: Workspace, sha256: str) -> set[str]:
    """The day partitions of the record tables holding a part written for this input."""
    prefix = sha256[:SHA_PREFIX]
    return {part.parent.name[4:] for table in RECORD_TABLES
            for part in (ws.tables_dir / table).glob(f"source=*/day=*/part-{prefix}-*.parquet")}

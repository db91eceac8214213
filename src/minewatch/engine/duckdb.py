"""The embedded engine: every registered SQL detector over a workspace, in DuckDB.

The canonical tables are views over their Parquet partitions (hive columns `source` and
`day` added); the reference tables come from the IntelSet. Each detector's SELECT is
wrapped so that the engine adds detector, version, source_sha256 (from the catalogue)
and casts to the evidence schema; the result goes straight from DuckDB to Parquet in
<ws>/tables/evidence/detector_id=<id>/day=.../ (rewritten whole on each run). A detector
that fails is reported and the others still run.

With `since` (a UTC day), only the day partitions from that day on are read, and only the
detector's evidence of those days is replaced; older days keep theirs. Every detector's
evidence for a day depends on that day's records only (the behaviour detector's sessions
end at midnight), so this gives what a run over everything would give for those days.
Records without a time (the `unknown` day) are read only by runs without `since`.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from minewatch.detect import SQL_REGISTRY, SqlDetector, load_all
from minewatch.errors import UsageError
from minewatch.intel import IntelSet
from minewatch.schema import EVIDENCE
from minewatch.workspace.catalogue import Catalogue
from minewatch.workspace.store import NO_DAY, RECORD_TABLES, Workspace, empty_table

ENGINE_NAME = "duckdb"
DEFAULT_MEMORY_LIMIT = "1536MB"
EVIDENCE_SELECT = """
SELECT
    CAST(e.source_file AS VARCHAR) AS source_file,
    s.sha256 AS source_sha256,
    CAST(e.source_ref AS VARCHAR) AS source_ref,
    CAST(e.ts_start AS TIMESTAMPTZ) AS ts_start,
    CAST(e.ts_end AS TIMESTAMPTZ) AS ts_end,
    CAST(e.src_ip AS VARCHAR) AS src_ip,
    CAST(e.src_port AS INTEGER) AS src_port,
    CAST(e.dst_ip AS VARCHAR) AS dst_ip,
    CAST(e.dst_port AS INTEGER) AS dst_port,
    CAST(e.l4 AS VARCHAR) AS l4,
    '{id}' AS detector,
    CAST({version} AS INTEGER) AS detector_version,
    CAST(e.category AS VARCHAR) AS category,
    CAST(round(CAST(e.confidence AS DOUBLE), 3) AS DOUBLE) AS confidence,
    CAST(e.severity AS VARCHAR) AS severity,
    CAST(e.summary AS VARCHAR) AS summary,
    CAST(e.details AS VARCHAR) AS details,
    coalesce(strftime(e.ts_start, '%Y-%m-%d'), '{no_day}') AS day
FROM ({sql}) AS e
LEFT JOIN source_files AS s ON s.source_file = e.source_file
"""


@dataclass
class DetectorResult:
    id: str
    version: int
    rows: int = 0
    seconds: float = 0.0
    error: str | None = None


@dataclass
class DetectReport:
    run_id: int = 0
    results: list[DetectorResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # intel entries not usable in SQL, cleaned inputs

    @property
    def failed(self) -> list[DetectorResult]:
        return [r for r in self.results if r.error]


def connect(ws: Workspace, memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int | None = None,
            tables: tuple[str, ...] = RECORD_TABLES, since: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per canonical table over the workspace's Parquet
    (only the day partitions from `since` on, when given)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET preserve_insertion_order = false")
    ws.tmp_dir.mkdir(parents=True, exist_ok=True)
    con.execute(f"SET temp_directory = '{_quote(str(ws.tmp_dir / 'duckdb'))}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    for table in tables:
        create_table_view(con, ws, table, since)
    create_evidence_view(con, ws)
    return con


def _quote(text: str) -> str:
    return text.replace("'", "''")


def since_filter(since: str | None) -> str:
    """SQL condition on the hive `day` partition: the days from `since` on (no unknown day)."""
    if since is None:
        return "TRUE"
    return f"(day >= '{_quote(since)}' AND day <> '{NO_DAY}')"


def create_table_view(con, ws: Workspace, table: str, since: str | None = None) -> None:
    """The table as a view over its Parquet partitions. An empty relation of the current
    schema is united by name, so that columns added to a schema after some files were
    written (e.g. the flows' message columns) read as NULL there instead of failing.
    With `since`, the partitions of earlier days are not read."""
    empty = empty_table(table)
    empty = empty.append_column("source", pa.array([], pa.string())).append_column("day", pa.array([], pa.string()))
    con.register(f"_empty_{table}", empty)
    if ws.has_files(table):
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet('{_quote(ws.table_glob(table))}', "
                    "hive_partitioning = true, hive_types_autocast = false, union_by_name = true) "
                    f"WHERE {since_filter(since)} UNION ALL BY NAME SELECT * FROM _empty_{table}")
    else:  # no data yet
        con.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM _empty_{table}")


def create_evidence_view(con, ws: Workspace, name: str = "evidence_all") -> None:
    """All evidence: packet detectors' (written at ingest) and SQL detectors' (written by runs)."""
    if ws.has_files("evidence"):
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet("
                    f"'{_quote(ws.table_glob('evidence'))}', hive_partitioning = false, union_by_name = true)")
    else:
        con.register(f"_empty_{name}", EVIDENCE.empty_table())
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _empty_{name}")


class DuckDBEngine:
    def __init__(self, ws: Workspace, intel: IntelSet | None = None, memory_limit: str = DEFAULT_MEMORY_LIMIT,
                 threads: int | None = None, params: dict | None = None):
        ws.must_exist()
        self.ws, self.memory_limit, self.threads = ws, memory_limit, threads
        self.intel = intel if intel is not None else IntelSet.load()
        self.params = params or {}
        self.since: str | None = None

    def detectors(self, ids: list[str] | None = None) -> list[SqlDetector]:
        return select_detectors(ids)

    def run(self, ids: list[str] | None = None, since: str | None = None) -> DetectReport:
        """Run the detectors (all, or `ids`) over every day, or over the days from `since`
        (YYYY-MM-DD, UTC) on."""
        from minewatch.engine.reference import build

        detectors = self.detectors(ids)
        report = DetectReport()
        self.since = check_day(since)
        with Catalogue(self.ws.catalogue_path) as cat:
            report.problems.extend(self._clean_interrupted(cat))
            report.run_id = cat.next_run_id()
            con = connect(self.ws, self.memory_limit, self.threads, since=self.since)
            try:
                reference = build(self.intel)
                report.problems.extend(reference.problems)
                for name, table in reference.tables.items():
                    con.register(name, table)
                files = [(f.source_file, f.sha256) for f in cat.files("done")]
                con.register("source_files", pa.table({"source_file": pa.array([f[0] for f in files], pa.string()),
                                                       "sha256": pa.array([f[1] for f in files], pa.string())}))
                for det in detectors:
                    result = self._run_one(con, det)
                    report.results.append(result)
                    if self.since and not result.error:
                        report.problems.extend(older_versions(con, self.ws, det, self.since))
                    cat.record_run(report.run_id, det.id, det.version, ENGINE_NAME,
                                   "failed" if result.error else "done", result.rows, result.seconds, result.error)
            finally:
                con.close()
        return report

    def _clean_interrupted(self, cat: Catalogue) -> list[str]:
        """Files left `started` by an ingest that died: their partial rows must not be detected on."""
        notes = []
        for f in cat.files("started"):
            self.ws.remove_input(f.sha256)
            cat.fail_file(f.sha256, "ingest was interrupted; run ingest again")
            notes.append(f"{f.path}: its ingest was interrupted; partial data removed (ingest it again)")
        return notes

    def _run_one(self, con, det: SqlDetector) -> DetectorResult:
        result = DetectorResult(det.id, det.version)
        started = time.perf_counter()
        out_dir = self.ws.tmp_dir / f"evidence-{det.id}"
        try:
            if out_dir.exists():
                shutil.rmtree(out_dir)
            sql = evidence_sql(det, self.params, self.since)
            rows = con.execute(f"COPY ({sql}) TO '{_quote(str(out_dir))}' "
                               "(FORMAT parquet, COMPRESSION zstd, PARTITION_BY (day))").fetchall()
            result.rows = int(rows[0][0]) if rows else 0
            if self.since:
                replace_days(self.ws.detector_dir(det.id), out_dir, self.since, self.ws.tmp_dir)
            else:
                self.ws.replace_detector_evidence(det.id, out_dir)
        except (duckdb.Error, OSError, ValueError, KeyError) as exc:
            result.error = str(exc).splitlines()[0][:500]
            if out_dir.exists():
                shutil.rmtree(out_dir, ignore_errors=True)
        result.seconds = time.perf_counter() - started
        return result


def select_detectors(ids: list[str] | None = None) -> list[SqlDetector]:
    """The registered SQL detectors named (all when none), or a UsageError naming the unknown."""
    load_all()
    if not ids:
        return sorted(SQL_REGISTRY.values(), key=lambda d: d.id)
    unknown = [i for i in ids if i not in SQL_REGISTRY]
    if unknown:
        raise UsageError(f"unknown SQL detector(s): {', '.join(unknown)}; known: {', '.join(sorted(SQL_REGISTRY))}")
    return [SQL_REGISTRY[i] for i in ids]


def check_day(since: str | None) -> str | None:
    """`since` as YYYY-MM-DD, or a UsageError naming what is wrong with it."""
    if since is None:
        return None
    from datetime import date

    try:
        return date.fromisoformat(since.strip()).isoformat()
    except ValueError:
        raise UsageError(f"--since {since!r} is not a day (YYYY-MM-DD, UTC)") from None


def evidence_sql(det: SqlDetector, params: dict, since: str | None) -> str:
    """The detector's SELECT wrapped into evidence rows (of the days from `since` on)."""
    sql = EVIDENCE_SELECT.format(id=det.id.replace("'", "''"), version=int(det.version),
                                 no_day=NO_DAY, sql=det.sql(params))
    return sql if since is None else f"SELECT * FROM ({sql}) AS ev WHERE {since_filter(since)}"


def redone_day(folder_name: str, since: str) -> bool:
    """True for a day=... partition that a run from `since` on replaces (not the unknown day)."""
    day = folder_name[4:] if folder_name.startswith("day=") else None
    return day is not None and day >= since and day != NO_DAY


def replace_days(target: Path, new_dir: Path, since: str, tmp_dir: Path) -> None:
    """Replace the day partitions of `target` from `since` on (not the unknown day) by those
    of `new_dir`; earlier days stay. Old partitions are moved aside before the new ones go
    in, and removed after."""
    old = tmp_dir / f"old-days-{target.name}"
    if old.exists():
        shutil.rmtree(old)
    old.mkdir(parents=True)
    target.mkdir(parents=True, exist_ok=True)
    for folder in sorted(target.iterdir()):
        if redone_day(folder.name, since):
            folder.rename(old / folder.name)
    if new_dir.exists():
        for folder in sorted(new_dir.iterdir()):
            if folder.name.startswith("day="):
                folder.rename(target / folder.name)
        shutil.rmtree(new_dir)
    shutil.rmtree(old)


def older_versions(con, ws: Workspace, det: SqlDetector, since: str) -> list[str]:
    """A warning when the detector's evidence before `since` came from another version."""
    folder = ws.detector_dir(det.id)
    if not any(folder.glob("day=*/*.parquet")):
        return []
    versions = [v for (v,) in con.execute(
        "SELECT DISTINCT detector_version FROM read_parquet(?, hive_partitioning = true, hive_types_autocast = false, "
        "union_by_name = true) "
        "WHERE day < ? OR day = ?", [str(folder / "day=*" / "*.parquet"), since, NO_DAY]).fetchall()]
    return version_warning(det, since, versions)


def version_warning(det: SqlDetector, since: str, versions) -> list[str]:
    """The warning for evidence kept from before `since` that other versions wrote."""
    other = sorted({int(v) for v in versions if v is not None and int(v) != det.version})
    if not other:
        return []
    return [f"{det.id}: evidence before {since} is from version {', '.join(map(str, other))}, "
            f"this is version {det.version}: run detect without --since to redo it"]


__all__ = ["DuckDBEngine", "DetectReport", "DetectorResult", "connect", "create_evidence_view"]

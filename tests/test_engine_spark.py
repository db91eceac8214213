"""The Spark engine: every SQL detector gives the same evidence on Spark (local mode) as
on DuckDB over the same workspace, and `minewatch detect --engine spark` works.

One Spark session serves the whole module; the module is skipped when Java or PySpark
is missing."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from minewatch.detect import SQL_REGISTRY, load_all, sql_detector
from minewatch.engine.dialect import to_dialect
from minewatch.engine.duckdb import DuckDBEngine
from minewatch.engine.spark import SMALL_DATA_CONF, SparkEngine, as_url, java_problem, start_session
from minewatch.intel import IntelSet
from minewatch.workspace import Workspace
from minewatch.workspace.catalogue import Catalogue

from test_workspace_ingest import DATA as WS_DATA, LOGS, MINING_PCAP, run

REASON = java_problem()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

load_all()
SPARK_DATA = Path(__file__).parent / "data" / "spark"
INPUTS = [LOGS, MINING_PCAP] + [SPARK_DATA / n for n in
                                ("nfdump_sessions.csv", "eve_extra.json", "dns_extra.log")]
INTEL_FILES = [WS_DATA / "intel" / "pools.txt", SPARK_DATA / "intel" / "pools_extra.txt"]
ORDER = ("source_file", "source_ref", "ts_start", "src_ip", "dst_ip", "dst_port", "summary", "details")


@pytest.fixture(scope="module")
def spark():
    session = start_session(conf=SMALL_DATA_CONF)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("spark") / "ws"
    result = run("ingest", *INPUTS, "--workspace", ws)
    assert result.exit_code == 0, result.output
    return ws


@pytest.fixture(scope="module")
def both(ingested, spark, tmp_path_factory) -> dict[str, Path]:
    """The same ingested workspace, detected on by each engine (all SQL detectors)."""
    intel = IntelSet.load([str(p) for p in INTEL_FILES])
    out = {}
    for name in ("duckdb", "spark"):
        ws = tmp_path_factory.mktemp(name) / "ws"
        shutil.copytree(ingested, ws)
        engine = DuckDBEngine(Workspace(ws), intel) if name == "duckdb" else SparkEngine(Workspace(ws), intel, spark=spark)
        report = engine.run()
        assert not report.failed, [(r.id, r.error) for r in report.failed]
        out[name] = ws
    return out


def evidence(ws: Path, detector: str) -> list[dict]:
    folder = ws / "tables" / "evidence" / f"detector_id={detector}"
    rows = [row for f in sorted(folder.rglob("*.parquet")) for row in pq.read_table(f).to_pylist()]
    for row in rows:
        row["details"] = json.loads(row["details"]) if row["details"] is not None else None
    return sorted(rows, key=lambda r: tuple(json.dumps(r[k], sort_keys=True, default=str) for k in ORDER))


@pytest.mark.parametrize("detector_id", sorted(SQL_REGISTRY))
def test_same_evidence_on_both_engines(both, detector_id):
    duck, spark = evidence(both["duckdb"], detector_id), evidence(both["spark"], detector_id)
    assert duck, f"{detector_id} has no positive in the fixtures: add one under tests/data/spark"
    assert len(spark) == len(duck)
    for d, s in zip(duck, spark):
        assert s == d  # every column; details as parsed JSON; times to the microsecond


def test_evidence_files_have_the_duckdb_layout_and_types(both):
    for detector_id in SQL_REGISTRY:
        names = {p.relative_to(both["spark"] / "tables" / "evidence").parts[:2]
                 for p in (both["spark"] / "tables" / "evidence").rglob("*.parquet")}
        assert any(parts[0] == f"detector_id={detector_id}" and parts[1].startswith("day=") for parts in names)
    leftovers = [p.name for p in (both["spark"] / "tables").rglob("*") if p.name.startswith(("_", "."))]
    assert leftovers == []  # no _SUCCESS, no .crc
    sample = next((both["spark"] / "tables" / "evidence" / "detector_id=intel.pool_ip_log").rglob("*.parquet"))
    duck_sample = next((both["duckdb"] / "tables" / "evidence" / "detector_id=intel.pool_ip_log").rglob("*.parquet"))
    spark_types = {f.name: str(f.type) for f in pq.read_schema(sample)}
    assert spark_types == {f.name: str(f.type) for f in pq.read_schema(duck_sample)}
    assert spark_types["ts_start"] == "timestamp[us, tz=UTC]"


def test_sub_second_times_and_non_ascii_survive(both):
    rows = evidence(both["spark"], "ids.coin_miner_alert")
    browser = next(r for r in rows if r["src_ip"] == "10.20.0.40")
    assert browser["ts_start"] == datetime(2026, 11, 3, 7, 0, 0, 123456, tzinfo=timezone.utc)
    assert browser["category"] == "browser_mining" and "浏览器挖矿" in browser["details"]["signature"]
    no_category = next(r for r in rows if r["src_ip"] == "10.20.0.41")
    assert no_category["details"]["alert_category"] is None  # null members kept, as DuckDB does
    with Catalogue(both["spark"] / "catalog.duckdb", read_only=True) as cat:
        runs = cat.runs()
    assert {r["engine"] for r in runs} == {"spark"} and all(r["status"] == "done" for r in runs)


# DuckDB semantics that Spark computes differently unless dialect.py rewrites them.
EXPRESSIONS = [
    "7 / 2.0",
    "CAST(17 AS DECIMAL(10, 2)) / 3",
    "round(CAST(24.95 AS DOUBLE), 1)",
    "round(CAST(2.675 AS DOUBLE), 2)",
    "round(CAST(-2.5 AS DOUBLE))",
    "round(CAST(0.125 AS DOUBLE), 2)",
    "round(CAST(-24.95 AS DOUBLE), 1)",
    "round(CAST(1.5e-7 AS DOUBLE), 7)",
    "round(CAST(24.95 AS DECIMAL(6, 2)), 1)",
    "date_diff('second', TIMESTAMP '2026-01-01 00:00:00.9', TIMESTAMP '2026-01-01 00:00:02.1')",
    "date_diff('minute', TIMESTAMP '2026-01-01 00:00:59', TIMESTAMP '2026-01-01 00:01:00')",
    "date_diff('day', TIMESTAMP '1969-12-31 23:59:59', TIMESTAMP '1970-01-01 00:00:00')",
    "strftime(TIMESTAMP '2026-11-03 23:59:59.5', '%Y-%m-%d')",
    "to_json(struct_pack(a := 1, b := NULL, c := 'x\"y'))",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_expression_means_the_same_on_both_engines(spark, expression):
    sql = f"SELECT {expression} AS v"
    want = duckdb.connect().execute(sql).fetchall()[0][0]
    got = spark.sql(to_dialect(sql, "spark")).collect()[0][0]
    assert _plain(got) == _plain(want)


def _plain(value):
    if isinstance(value, str) and value.startswith("{"):
        return json.loads(value)
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return float(value)
    return value


def test_detect_cli_with_spark_engine(ingested, spark, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(ingested, ws)
    result = run("detect", "--workspace", ws, "--engine", "spark", "--spark-master", "local[2]",
                 "--intel", INTEL_FILES[0], "--detector", "intel.pool_ip_log")
    assert result.exit_code == 0, result.output
    assert "(spark)" in result.output and "intel.pool_ip_log" in result.output
    rows = evidence(ws, "intel.pool_ip_log")
    assert sorted(r["source_ref"] for r in rows if r["dst_ip"] == "203.0.113.50") == ["flow 2", "flow 3"]
    assert all(len(r["source_sha256"]) == 64 for r in rows)
    assert spark.sparkContext._jsc is not None  # the CLI left the module's session running


def test_tables_given_as_url_and_a_failing_detector(ingested, spark, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(ingested, ws)

    @sql_detector("test.broken_spark", 1, "mining", "deliberately wrong SQL", reads=("flows",))
    def broken(params):
        return "SELECT no_such_column FROM flows"

    try:
        engine = SparkEngine(Workspace(ws), IntelSet.load(), tables_url=as_url(ws / "tables"), spark=spark)
        report = engine.run(["test.broken_spark", "ids.coin_miner_alert"])
    finally:
        SQL_REGISTRY.pop("test.broken_spark")
    broken_result, alerts = report.results
    assert broken_result.error and "no_such_column" in broken_result.error
    assert alerts.error is None and alerts.rows == 5
    assert not (ws / "tables" / "_minewatch_tmp" / "evidence-test.broken_spark").exists()


def test_not_a_workspace_is_refused(tmp_path):
    from minewatch.errors import UsageError

    with pytest.raises(UsageError, match="not a workspace"):
        SparkEngine(Workspace(tmp_path / "nothing"))


def test_unreachable_master_is_refused_before_spark_starts(tmp_path):
    from minewatch.engine.spark import check_master
    from minewatch.errors import UsageError

    with pytest.raises(UsageError, match="cannot reach the Spark master spark://127.0.0.1:1"):
        check_master("spark://127.0.0.1:1", timeout_s=1)
    check_master("local[2]")  # nothing to reach
    for fine in ("local", "local[*]", "local[4,2]", "yarn", "k8s://https://host:6443", "mesos://host:5050"):
        check_master(fine)
    for wrong in ("nonsense://x", "local[x]", "spark:/host", "localhost:7077", ""):
        with pytest.raises(UsageError, match="is not a Spark master URL"):
            check_master(wrong)


def test_flows_written_before_new_columns_and_no_flows_at_all(spark, tmp_path):
    """Columns added to a schema after files were written read as NULL on Spark too, and a
    workspace with no flows at all (only DNS logs) still gets an empty flows view."""
    old = tmp_path / "old"
    assert run("ingest", MINING_PCAP, "--workspace", old, "-q").exit_code == 0
    for part in (old / "tables" / "flows").rglob("*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.select([c for c in table.column_names if "_msg" not in c]), part)
    dns_only = tmp_path / "dns-only"
    assert run("ingest", LOGS / "dns.log", "--workspace", dns_only, "-q").exit_code == 0
    for ws in (old, dns_only):
        report = SparkEngine(Workspace(ws), IntelSet.load(), spark=spark).run()
        assert [r.error for r in report.results if r.error] == [], ws

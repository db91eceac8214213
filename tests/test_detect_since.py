"""`minewatch detect --since DAY`: only the days from DAY on are read and rewritten, and
their evidence is what a run over every day gives for them."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minewatch.engine.duckdb import DuckDBEngine
from minewatch.errors import UsageError
from minewatch.intel import IntelSet
from minewatch.schema import FLOWS
from minewatch.sources.tabular import MAPPABLE
from minewatch.workspace import Workspace

from test_workspace_ingest import run

DAY1 = datetime(2026, 11, 1, tzinfo=timezone.utc)
POOL = "198.51.100.7"
DETECTORS = ("beh.periodic_low_rate", "intel.pool_ip_log")


def paced(ref: int, start: datetime, minutes: float, client: str = "10.0.0.5", port: int = 40000) -> dict:
    """A held client -> pool connection: a 200-byte share up and a 300-byte job down every 20 s."""
    msgs = max(2, int(minutes * 3))
    row = {f.name: None for f in FLOWS}
    row.update(source_file="x", flow_ref=ref, ts_start=start, ts_end=start + timedelta(minutes=minutes),
               src_ip=client, dst_ip=POOL, src_port=port, dst_port=3333, ip_proto=6, l4="TCP",
               src_packets=2 * msgs, dst_packets=2 * msgs, src_bytes=msgs * 280, dst_bytes=msgs * 380,
               src_payload_packets=msgs, dst_payload_packets=msgs, src_payload_bytes=msgs * 200,
               dst_payload_bytes=msgs * 300)
    return row


def day_file(folder: Path, day: int, rows: list[dict]) -> Path:
    path = folder / f"flows-day{day}.parquet"
    table = pa.Table.from_pylist(rows, schema=FLOWS)
    table = table.select([f.name for f in FLOWS if f.name in MAPPABLE])
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    """Three days of flows: a miner holding a pool connection from day 1, 22:00 to day 2,
    02:00 (across midnight, in one-hour records), again on day 3; a second host's short
    pool contact each day."""
    folder = tmp_path_factory.mktemp("since")
    days = []
    for d in range(3):
        base = DAY1 + timedelta(days=d)
        rows = [paced(100 * d + 50, base + timedelta(hours=9), 0.5, client="10.0.0.9", port=41000 + d)]
        if d == 0:
            rows += [paced(1, base + timedelta(hours=22), 60), paced(2, base + timedelta(hours=23), 60)]
        if d == 1:
            rows += [paced(3, base, 60), paced(4, base + timedelta(hours=1), 60)]
        if d == 2:
            rows += [paced(5, base + timedelta(hours=10), 90, port=40500)]
        days.append(day_file(folder, d + 1, rows))
    return days


def intel(tmp_path: Path) -> IntelSet:
    listed = tmp_path / "pools.txt"
    listed.write_text(f"{POOL}:3333  # a pool of the test\n")
    return IntelSet.load([str(listed)])


def ingest(ws: Path, *files: Path) -> None:
    mapping = ",".join(f"{f.name}={f.name}" for f in FLOWS if f.name in MAPPABLE)
    result = run("ingest", "--workspace", ws, "--map", mapping, *files)
    assert result.exit_code == 0, result.output


def evidence(ws: Path, detector: str) -> list[tuple]:
    folder = ws / "tables" / "evidence" / f"detector_id={detector}"
    rows = [r for f in sorted(folder.rglob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    return sorted((r["ts_start"], r["ts_end"], r["src_ip"], r["dst_ip"], r["source_ref"], r["summary"],
                   json.dumps(json.loads(r["details"]), sort_keys=True)) for r in rows)


def day_folders(ws: Path, detector: str) -> dict[str, list[int]]:
    folder = ws / "tables" / "evidence" / f"detector_id={detector}"
    return {p.name: sorted(f.stat().st_ino for f in p.glob("*.parquet")) for p in sorted(folder.glob("day=*"))}


def test_sessions_end_at_midnight(inputs, tmp_path):
    ws = tmp_path / "ws"
    ingest(ws, *inputs)
    DuckDBEngine(Workspace(ws), intel(tmp_path)).run(list(DETECTORS))
    sessions = [(start.date().isoformat(), start.hour, end.hour) for start, end, *_ in evidence(ws, DETECTORS[0])]
    # the miner's night is one session before midnight and one after; day 3 its own
    assert sessions == [("2026-11-01", 22, 0), ("2026-11-02", 0, 2), ("2026-11-03", 10, 11)]


def test_since_gives_what_a_full_run_gives_and_keeps_older_days(inputs, tmp_path):
    full = tmp_path / "full"
    ingest(full, *inputs)
    DuckDBEngine(Workspace(full), intel(tmp_path)).run(list(DETECTORS))

    ws = tmp_path / "ws"
    ingest(ws, *inputs[:2])
    DuckDBEngine(Workspace(ws), intel(tmp_path)).run(list(DETECTORS))
    before = day_folders(ws, DETECTORS[1])
    ingest(ws, inputs[2])  # day 3 arrives
    report = DuckDBEngine(Workspace(ws), intel(tmp_path)).run(list(DETECTORS), since="2026-11-02")
    assert not report.failed and not report.problems
    for detector in DETECTORS:
        assert evidence(ws, detector) == evidence(full, detector)
    after = day_folders(ws, DETECTORS[1])
    assert after["day=2026-11-01"] == before["day=2026-11-01"]  # the same files, not rewritten
    assert after["day=2026-11-02"] != before["day=2026-11-02"]
    assert set(after) == {"day=2026-11-01", "day=2026-11-02", "day=2026-11-03"}


def test_since_reads_only_its_days(inputs, tmp_path):
    """Evidence of an earlier day stays as it was even when that day's flows are gone:
    the run never read them."""
    ws = tmp_path / "ws"
    ingest(ws, *inputs)
    DuckDBEngine(Workspace(ws), intel(tmp_path)).run(list(DETECTORS))
    kept = [e for e in evidence(ws, DETECTORS[0]) if e[0].date().isoformat() == "2026-11-01"]
    for part in (ws / "tables" / "flows").glob("source=*/day=2026-11-01"):
        shutil.rmtree(part)
    DuckDBEngine(Workspace(ws), intel(tmp_path)).run(list(DETECTORS), since="2026-11-02")
    assert [e for e in evidence(ws, DETECTORS[0]) if e[0].date().isoformat() == "2026-11-01"] == kept
    assert len(kept) == 1
    DuckDBEngine(Workspace(ws), intel(tmp_path)).run(list(DETECTORS))  # a full run redoes day 1 too
    assert [e for e in evidence(ws, DETECTORS[0]) if e[0].date().isoformat() == "2026-11-01"] == []


def test_evidence_of_another_version_before_since_is_said(inputs, tmp_path):
    ws = tmp_path / "ws"
    ingest(ws, *inputs)
    DuckDBEngine(Workspace(ws), intel(tmp_path)).run([DETECTORS[0]])
    old = next((ws / "tables" / "evidence" / f"detector_id={DETECTORS[0]}" / "day=2026-11-01").glob("*.parquet"))
    table = pq.read_table(old)
    column = table.schema.get_field_index("detector_version")
    pq.write_table(table.set_column(column, "detector_version", pa.array([4] * table.num_rows, pa.int32())), old)
    report = DuckDBEngine(Workspace(ws), intel(tmp_path)).run([DETECTORS[0]], since="2026-11-02")
    assert len(report.problems) == 1
    assert "before 2026-11-02 is from version 4" in report.problems[0] and "without --since" in report.problems[0]


def test_since_on_the_command_line(inputs, tmp_path):
    ws = tmp_path / "ws"
    ingest(ws, *inputs)
    result = run("detect", "--workspace", ws, "--since", "2026-11-03", "--detector", DETECTORS[0])
    assert result.exit_code == 0, result.output
    assert "days from 2026-11-03" in result.output
    assert [e[0].date().isoformat() for e in evidence(ws, DETECTORS[0])] == ["2026-11-03"]
    bad = run("detect", "--workspace", ws, "--since", "2026-13-01")
    assert bad.exit_code != 0 and isinstance(bad.exception, UsageError)  # one line from the entry point
    assert "'2026-13-01' is not a day" in str(bad.exception)
    with pytest.raises(UsageError):
        DuckDBEngine(Workspace(ws)).run(since="yesterday")


@pytest.mark.skipif(os.environ.get("MINEWATCH_SKIP_SPARK") == "1", reason="Spark tests switched off")
def test_since_on_spark_replaces_the_same_days(inputs, tmp_path):
    from minewatch.engine.spark import SMALL_DATA_CONF, SparkEngine, java_problem, start_session

    if java_problem():
        pytest.fail(java_problem())
    duck, spark_ws = tmp_path / "duck", tmp_path / "spark"
    for ws in (duck, spark_ws):
        ingest(ws, *inputs[:2])
    DuckDBEngine(Workspace(duck), intel(tmp_path)).run(list(DETECTORS))
    spark = start_session(conf=SMALL_DATA_CONF)
    try:
        SparkEngine(Workspace(spark_ws), intel(tmp_path), spark=spark).run(list(DETECTORS))
        before = day_folders(spark_ws, DETECTORS[1])
        for ws in (duck, spark_ws):
            ingest(ws, inputs[2])
        DuckDBEngine(Workspace(duck), intel(tmp_path)).run(list(DETECTORS), since="2026-11-02")
        report = SparkEngine(Workspace(spark_ws), intel(tmp_path), spark=spark).run(list(DETECTORS),
                                                                                     since="2026-11-02")
    finally:
        spark.stop()
    assert not report.failed and not report.problems
    for detector in DETECTORS:
        assert evidence(spark_ws, detector) == evidence(duck, detector)
    assert day_folders(spark_ws, DETECTORS[1])["day=2026-11-01"] == before["day=2026-11-01"]
    leftovers = [p.name for p in (spark_ws / "tables").rglob("*") if p.name.startswith(("_", "."))]
    assert leftovers == []


def test_changed_redoes_the_days_new_input_touches(inputs, tmp_path):
    ws = tmp_path / "ws"
    ingest(ws, *inputs[:2])
    pools = tmp_path / "pools.txt"
    pools.write_text(f"{POOL}:3333\n")
    only = [arg for d in DETECTORS for arg in ("--detector", d)]
    first = run("detect", "--workspace", ws, "--intel", pools, "--changed", *only)
    assert first.exit_code == 0 and "has not run here yet: every day" in first.output, first.output
    before = day_folders(ws, DETECTORS[1])

    again = run("detect", "--workspace", ws, "--intel", pools, "--changed", *only)
    assert again.exit_code == 0 and "nothing ingested since the last run" in again.output
    assert "Detector run" not in again.output and day_folders(ws, DETECTORS[1]) == before

    ingest(ws, inputs[2])
    late = tmp_path / "late"
    late.mkdir()
    # a late file for day 2 as well: the days from day 2 on are redone, day 1 is kept
    ingest(ws, day_file(late, 2, [paced(900, DAY1 + timedelta(days=1, hours=15), 0.5, client="10.0.0.77")]))
    third = run("detect", "--workspace", ws, "--intel", pools, "--changed", *only)
    assert third.exit_code == 0 and "2 inputs ingested since the last run touch days from 2026-11-02" in third.output
    after = day_folders(ws, DETECTORS[1])
    assert after["day=2026-11-01"] == before["day=2026-11-01"]
    assert "10.0.0.77" in {e[2] for e in evidence(ws, DETECTORS[1])}
    assert len(evidence(ws, DETECTORS[1])) == 9  # every flow to the listed pool: 8, and the late one

    both = run("detect", "--workspace", ws, "--changed", "--since", "2026-11-02")
    assert both.exit_code != 0 and "exclude each other" in str(both.exception)


def test_changed_after_a_new_detector_version_redoes_everything(inputs, tmp_path):
    from minewatch.workspace.catalogue import Catalogue

    ws = tmp_path / "ws"
    ingest(ws, *inputs)
    DuckDBEngine(Workspace(ws), intel(tmp_path)).run([DETECTORS[0]])
    with Catalogue(ws / "catalog.duckdb") as cat:
        cat.con.execute("UPDATE runs SET version = version - 1")
    result = run("detect", "--workspace", ws, "--changed", "--detector", DETECTORS[0])
    assert result.exit_code == 0 and "ran as version 4, now 5: every day" in result.output

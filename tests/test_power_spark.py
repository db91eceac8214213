"""Meter scoring on Spark (local mode, started here): the same verdict records as DuckDB
for every meter of a workspace of real Cambridge buildings (with an injected miner,
readings of one hour in two files, and a half-hourly meter), and one-line errors.

Skipped when Java, PySpark or ../shared/corpus is missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from minewatch.engine.spark import SMALL_DATA_CONF, java_problem
from minewatch.power.cli import meters_app
from minewatch.power.ingest import ingest_file
from minewatch.power.scoring import score_workspace

REASON = java_problem()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

# 16 buildings (b0 ends 2018 with zeros, i.e. missing): enough for the city's common
# mode (power/common.py), which scoring takes once over the workspace
BUILDINGS = ["b0", "b2", "b4", "b6", "b8", "b12", "b14", "b16", "b20", "b22", "b24", "b26", "b40", "b52",
             "b58", "b64"]
MINER = "b64"
MINER_KW, MINER_ONSET = 120.0, "2018-06-04"
app = typer.Typer()
app.add_typer(meters_app, name="meters")
runner = CliRunner()


@pytest.fixture(scope="module")
def spark():
    from minewatch.power.spark import open_session

    session, started = open_session(conf=SMALL_DATA_CONF)
    yield session
    if started:
        session.stop()


def _miner_load(n: int, onset: int, seed: int = 7) -> np.ndarray:
    """MINER_KW from hour `onset` on, +/- 2 % jitter, and 2-3 restarts a month (1-3 hours
    at 0-30 % of the load), as the issue's injection model describes miners."""
    rng = np.random.default_rng(seed)
    load = np.zeros(n)
    load[onset:] = MINER_KW * rng.uniform(0.98, 1.02, n - onset)
    for start in rng.integers(onset, n, int((n - onset) / 720 * 2.5) + 1):
        load[start : start + int(rng.integers(1, 4))] *= rng.uniform(0.0, 0.3)
    return load


def _buildings(corpus: Path) -> pa.Table:
    """2018 and Jan-Mar 2019 of BUILDINGS, the miner added to MINER from MINER_ONSET."""
    years = []
    for year in (2018, 2019):
        t = pacsv.read_csv(corpus / "power" / "cambridge" / f"electricity_kwh_hourly_{year}.csv",
                           convert_options=pacsv.ConvertOptions(column_types={"timestamp_utc": pa.string()}))
        years.append(t.select(["timestamp_utc"] + BUILDINGS).cast(pa.schema(
            [("timestamp_utc", pa.string())] + [(b, pa.float64()) for b in BUILDINGS])))
    t = pa.concat_tables(years)
    t = t.filter(pc.less(t["timestamp_utc"], "2019-04-01"))
    ts = t["timestamp_utc"].to_pylist()
    load = t[MINER].to_numpy(zero_copy_only=False) + _miner_load(len(ts), ts.index(f"{MINER_ONSET} 09:00:00"))
    return t.set_column(t.column_names.index(MINER), MINER, pa.array(np.round(load, 1)))


@pytest.fixture(scope="module")
def workspace(corpus, tmp_path_factory) -> Path:
    """2018 and Jan-Mar 2019 of BUILDINGS (a miner added to b64 from June 2018); the
    2019 file repeats the last three days of 2018 (two readings in one hour); b22 again
    as a half-hourly meter (each hour split 40/60, long layout)."""
    folder = tmp_path_factory.mktemp("power_spark")
    t = _buildings(corpus)
    y2018 = t.filter(pc.less(t["timestamp_utc"], "2019"))
    y2019 = t.slice(y2018.num_rows)
    pacsv.write_csv(y2018, folder / "2018.csv")
    pacsv.write_csv(pa.concat_tables([y2018.slice(y2018.num_rows - 72), y2019]), folder / "2019q1.csv")
    hours = y2019["timestamp_utc"].to_pylist()
    kwh = y2019["b22"].to_numpy(zero_copy_only=False)
    rows = [("b22_30min", f"{h[:14]}{m}:00", f"{v * share:.4f}")
            for h, v in zip(hours, kwh) for m, share in (("00", 0.4), ("30", 0.6))]
    half = folder / "b22_half_hourly.csv"
    half.write_text("meter_id,timestamp,kwh\n" + "".join(",".join(r) + "\n" for r in rows))
    ws = folder / "ws"
    for f in (folder / "2018.csv", folder / "2019q1.csv", half):
        ingest_file(ws, f)
    return ws


def _copy(ws: Path, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(ws, target)
    return target


def test_same_records_on_both_engines(workspace, spark, tmp_path):
    duck = score_workspace(_copy(workspace, tmp_path, "duck"), utc_offset_h=8.0)
    on_spark = score_workspace(_copy(workspace, tmp_path, "spark"), utc_offset_h=8.0, engine="spark", spark=spark)
    assert [r["meter_id"] for r in duck] == [r["meter_id"] for r in on_spark]
    assert {r["meter_id"] for r in duck} == set(BUILDINGS) | {"b22_30min"}
    for d, s in zip(duck, on_spark):
        assert s == d  # flagged, score, onset, kW, units, explanation, every test value
    flagged = [r["meter_id"] for r in duck if r["flagged"]]
    assert MINER in flagged
    miner = next(r for r in duck if r["meter_id"] == MINER)
    assert abs(miner["estimated_kw"] - MINER_KW) < 0.25 * MINER_KW and miner["estimated_units"]


def test_same_records_on_both_engines_scored_since_a_date(workspace, spark, tmp_path):
    """`since`: only onsets from that day on, the earlier readings as history, on both engines."""
    duck = score_workspace(_copy(workspace, tmp_path, "duck"), utc_offset_h=8.0, since="2018-06-01")
    on_spark = score_workspace(_copy(workspace, tmp_path, "spark"), utc_offset_h=8.0, engine="spark", spark=spark,
                               since="2018-06-01")
    assert duck == on_spark
    assert all(r["onset"] is None or r["onset"] >= "2018-06-01" for r in duck)
    assert MINER in [r["meter_id"] for r in duck if r["flagged"]]


def test_cli_spark_engine_writes_the_duckdb_output(workspace, spark, tmp_path):
    outputs = {}
    for engine in ("duckdb", "spark"):
        ws, out = _copy(workspace, tmp_path, engine), tmp_path / f"{engine}.jsonl"
        args = ["meters", "score", "-w", str(ws), "-o", str(out), "--engine", engine]
        if engine == "spark":
            args += ["--spark-master", "local[2]"]  # the module's session is reused
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        assert f"17 meters scored ({engine})" in r.output and MINER in r.output
        outputs[engine] = out.read_text()
    assert outputs["spark"] == outputs["duckdb"]
    assert any(json.loads(line)["flagged"] for line in outputs["spark"].splitlines())
    assert spark.sparkContext._jsc is not None  # a session the command did not start stays up


def test_same_verdicts_in_blocks_of_five_meters(workspace, spark):
    """Several blocks (HourGrid.key_ranges): Spark's partitions hold DuckDB's blocks."""
    import duckdb

    from minewatch.engine.spark import as_url
    from minewatch.power.features import hourly_blocks
    from minewatch.power.model import score_meters
    from minewatch.power.scoring import verdict_record
    from minewatch.power.spark import spark_verdicts

    max_cells = 5 * 24 * 460  # 455 days of readings: five meters a block
    files = sorted((workspace / "meters").glob("*.parquet"))
    con = duckdb.connect()
    blocks = list(hourly_blocks(con, f"read_parquet('{workspace}/meters/*.parquet')", max_cells=max_cells,
                                files=files))
    assert [len(b.meters) for b in blocks] == [5, 5, 5, 2]
    duck = [v for b in blocks for v in score_meters(b)]
    on_spark = spark_verdicts(spark, as_url(workspace / "meters") + "/*.parquet", max_cells=max_cells)

    def records(verdicts):
        return sorted((verdict_record(v, str(v.meter)) for v in verdicts), key=lambda r: r["meter_id"])

    assert records(on_spark) == records(duck)


def test_workspace_common_mode_makes_verdicts_independent_of_blocks(workspace, spark):
    """Scoring passes one common mode, taken over the workspace, to every block: blocks of
    five meters (too few for a common mode of their own) give the verdicts of one block
    of all sixteen, on both engines; without it they would not have to."""
    import duckdb

    from minewatch.engine.spark import as_url
    from minewatch.power.features import hourly_blocks
    from minewatch.power.ingest import open_catalog
    from minewatch.power.model import score_meters
    from minewatch.power.scoring import verdict_record, workspace_common
    from minewatch.power.spark import spark_verdicts

    con = open_catalog(workspace)
    try:
        common = workspace_common(con, workspace)
    finally:
        con.close()
    assert common is not None and len(common.values) > 400
    files = sorted((workspace / "meters").glob("*.parquet"))
    source = f"read_parquet('{workspace}/meters/*.parquet')"

    def records(verdicts):
        return sorted((verdict_record(v, str(v.meter)) for v in verdicts), key=lambda r: r["meter_id"])

    con = duckdb.connect()
    small = [v for b in hourly_blocks(con, source, max_cells=5 * 24 * 460, files=files) for v in score_meters(b, common)]
    whole = [v for b in hourly_blocks(con, source, files=files) for v in score_meters(b, common)]
    assert records(small) == records(whole)
    alone = [v for b in hourly_blocks(con, source, max_cells=5 * 24 * 460, files=files) for v in score_meters(b)]
    assert records(alone) != records(whole)  # block by block, the small blocks have none of their own
    on_spark = spark_verdicts(spark, as_url(workspace / "meters") + "/*.parquet", max_cells=5 * 24 * 460,
                              common=common)
    assert records(on_spark) == records(whole)
    assert any(r["flagged"] for r in records(whole))


def _one_line_error(result, *words) -> None:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    for w in words:
        assert w in lines[0], lines[0]


def test_missing_workspace_is_one_line(tmp_path):
    missing = tmp_path / "no-such-ws"
    r = runner.invoke(app, ["meters", "score", "-w", str(missing), "--engine", "spark"])
    assert r.exit_code == 1
    _one_line_error(r, str(missing), "meters ingest")
    assert not missing.exists()


def test_bad_options_are_one_line(workspace, tmp_path):
    ws = str(workspace)
    r = runner.invoke(app, ["meters", "score", "-w", ws, "--engine", "sparkle"])
    assert r.exit_code == 2
    _one_line_error(r, "--engine", "sparkle")
    r = runner.invoke(app, ["meters", "score", "-w", ws, "--spark-master", "local[2]"])
    assert r.exit_code == 2
    _one_line_error(r, "--spark-master needs --engine spark")
    r = runner.invoke(app, ["meters", "score", "-w", ws, "--engine", "spark", "--spark-master", "spark://127.0.0.1:1"])
    assert r.exit_code == 2
    _one_line_error(r, "cannot reach the Spark master spark://127.0.0.1:1")


def test_damaged_or_foreign_readings_file_is_one_line_on_both_engines(workspace, tmp_path):
    foreign = pa.table({"x": [1, 2]})
    for engine in ("duckdb", "spark"):
        for name, write in (("0000damaged.parquet", lambda p: p.write_bytes(b"PAR1 not really parquet")),
                            ("0000foreign.parquet", lambda p: pq.write_table(foreign, p))):
            ws = _copy(workspace, tmp_path, f"{engine}-{name}")
            write(ws / "meters" / name)
            r = runner.invoke(app, ["meters", "score", "-w", str(ws), "--engine", engine])
            assert r.exit_code == 1, (engine, r.output)
            _one_line_error(r, str(ws / "meters" / name))


def test_spark_groups_are_the_duckdb_blocks():
    """Both engines cut meters into blocks the same way, wherever the key range starts."""
    from minewatch.power.features import HourGrid

    grid = HourGrid(19723, 720, 0)
    size = grid.block_size(8 * 720)
    assert size == 8
    assert grid.key_ranges(3, 20, 8 * 720) == [(3, 7), (8, 15), (16, 20)]
    assert all(a // size == b // size for a, b in grid.key_ranges(3, 20, 8 * 720))
    assert np.array_equal(np.floor(np.array([3, 7, 8, 15, 16, 20]) / size), [0, 0, 1, 1, 2, 2])

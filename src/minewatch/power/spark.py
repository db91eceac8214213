"""Meter scoring on Spark: the verdicts of the DuckDB path, computed by a cluster.

Spark reads the workspace's readings (<ws>/meters/*.parquet), keeps the valid ones
(features.VALID_SQL), finds their span and meter keys, and sends every block of meters
the DuckDB path reads (HourGrid.key_ranges: block n = keys n * size ...) whole to one
partition. A Python worker builds each block's hourly matrix with the functions DuckDB's
blocks go through (features.place_hours: integer hour cells, order-independent averaging
of sub-hourly readings, hence the same float32 values bit for bit) and scores it with
model.score_meters. The verdicts come back as Arrow columns (floats as float64, no text
round trip); scoring.py turns them into records exactly as for DuckDB.

Workers need minewatch and numpy; in local mode they run this Python.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

from minewatch.errors import MinewatchError, UsageError
from minewatch.power import model
from minewatch.power.common import CommonMode
from minewatch.power.features import MAX_CELLS, VALID_SQL, HourGrid, offset_us, place_hours, present_rows

BATCH_CONF = "spark.sql.execution.arrow.maxRecordsPerBatch"
ARROW_BATCH_ROWS = 1 << 20  # rows per Arrow batch sent to Python (Spark's default, 10,000, costs more)
VERDICT_SCHEMA = ("meter_key long, flagged boolean, score double, onset_day long, estimated_kw double, "
                  "z double, tests map<string,double>, failed array<string>, reason string")
_ARROW_SCHEMA = pa.schema([
    ("meter_key", pa.int64()), ("flagged", pa.bool_()), ("score", pa.float64()), ("onset_day", pa.int64()),
    ("estimated_kw", pa.float64()), ("z", pa.float64()), ("tests", pa.map_(pa.string(), pa.float64())),
    ("failed", pa.list_(pa.string())), ("reason", pa.string()),
])


def verdict_table(verdicts: list[model.Verdict]) -> pa.Table:
    return pa.Table.from_pylist([{
        "meter_key": int(v.meter), "flagged": bool(v.flagged), "score": float(v.score),
        "onset_day": None if v.onset_day is None else int(v.onset_day),
        "estimated_kw": float(v.estimated_kw), "z": float(v.z),
        "tests": [(k, float(x)) for k, x in v.tests.items()], "failed": [str(f) for f in v.failed],
        "reason": v.reason,
    } for v in verdicts], schema=_ARROW_SCHEMA)


def verdicts_from(table: pa.Table) -> list[model.Verdict]:
    return [model.Verdict(r["meter_key"], r["flagged"], r["score"], r["onset_day"], r["estimated_kw"], r["z"],
                          dict(r["tests"]), list(r["failed"]), r["reason"])
            for r in table.to_pylist()]


def _block_scorer(grid: HourGrid, size: int, lo: int, hi: int, common: CommonMode | None = None,
                  since: int | None = None):
    """The function each worker runs on one partition: its readings, split into their
    blocks (block n = keys n * size ... n * size + size - 1), each scored whole."""

    def score(batches):
        parts: dict[int, list] = {}
        for batch in batches:
            key, us, kw = (batch.column(c).to_numpy() for c in ("meter_key", "us", "kw"))
            number = key // size
            for n in np.unique(number).tolist():
                pick = number == n
                parts.setdefault(n, []).append((key, us, kw) if pick.all() else (key[pick], us[pick], kw[pick]))
        for n in sorted(parts):
            a, b = max(n * size, lo), min(hi, n * size + size - 1)
            kw_block = place_hours(parts.pop(n), grid, a, b - a + 1)
            block = present_rows(np.arange(a, b + 1), grid.day0, kw_block)
            if block is not None:
                yield from verdict_table(model.score_meters(block, common, since=since)).to_batches()

    return score


def spark_verdicts(spark, readings_url: str, utc_offset_h: float = 0.0,
                   max_cells: int = MAX_CELLS, common: CommonMode | None = None,
                   since: int | None = None) -> list[model.Verdict]:
    """Score every meter of the readings at `readings_url` (Parquet files: a Hadoop path or glob)."""
    from pyspark.sql import functions as F

    rows = (spark.read.parquet(readings_url)
            .where(F.expr(f"{VALID_SQL} AND meter_key IS NOT NULL"))
            .select(F.col("meter_key").cast("long").alias("meter_key"),
                    F.unix_micros("ts").alias("us"), F.col("kw").cast("float").alias("kw")))
    lo, hi, first, last = rows.agg(F.min("meter_key"), F.max("meter_key"), F.min("us"), F.max("us")).first()
    if lo is None:
        return []
    grid = HourGrid.spanning(int(first), int(last), offset_us(utc_offset_h))
    size = grid.block_size(max_cells)
    n_blocks = len(grid.key_ranges(int(lo), int(hi), max_cells))
    # whole blocks to each partition (hashed, unsorted: cheaper than a grouped apply,
    # which sorts every reading), handed to Python in large Arrow batches
    by_block = rows.repartition(n_blocks, F.floor(F.col("meter_key") / size))
    old = spark.conf.get(BATCH_CONF, None)
    spark.conf.set(BATCH_CONF, str(ARROW_BATCH_ROWS))
    try:
        with warnings.catch_warnings():  # PySpark warns about pandas 3 here; no pandas is used
            warnings.simplefilter("ignore", FutureWarning)
            scored = by_block.mapInArrow(_block_scorer(grid, size, int(lo), int(hi), common, since), VERDICT_SCHEMA)
            return verdicts_from(scored.toArrow())
    finally:
        if old is None:
            spark.conf.unset(BATCH_CONF)
        else:
            spark.conf.set(BATCH_CONF, old)


def open_session(master: str | None = None, conf: dict[str, str] | None = None):
    """(session, started_here): the Spark session of engine/spark.py, with Python workers
    that run this interpreter (where minewatch and numpy are) unless told otherwise."""
    from pyspark.sql import SparkSession

    from minewatch.engine.spark import check_master, java_problem, start_session

    problem = java_problem()
    if problem:
        raise UsageError(f"Spark cannot start: {problem}; or use --engine duckdb")
    if master:
        check_master(master)  # also when a session is already running: a wrong URL is an error
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    started = SparkSession.getActiveSession() is None
    return start_session(master, conf), started


def score_with_spark(ws: str | Path, utc_offset_h: float = 0.0, master: str | None = None,
                     spark=None, common: CommonMode | None = None, since: int | None = None) -> list[model.Verdict]:
    """Verdicts of every meter of a workspace, scored by Spark (a session given, or one
    started here and stopped afterwards). Spark's failures become one-line errors."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    from minewatch.engine.spark import as_url

    started = False
    if spark is None:
        spark, started = open_session(master)
    try:
        return spark_verdicts(spark, as_url(Path(ws) / "meters") + "/*.parquet", utc_offset_h, common=common,
                              since=since)
    except (PySparkException, Py4JError) as exc:
        raise MinewatchError(f"{ws}: Spark could not score the meters: {_reason(exc)}") from None
    finally:
        if started:
            spark.stop()


def _reason(exc: Exception) -> str:
    """The innermost message of a Spark error (Java causes included), on one line."""
    java = getattr(exc, "java_exception", None)
    message = None
    while java is not None:
        message = java.getMessage() or message
        java = java.getCause()
    text = message or str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]

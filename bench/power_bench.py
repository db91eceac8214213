"""Speed of meter scoring: synthetic hourly readings in Parquet, scored with the real
pipeline, against a bare DuckDB scan of the same files in the same run, repeated.

    PYTHONPATH=src python bench/power_bench.py --meters 1000000 --days 30 [--repeat 3]
        [--spark-meters 50000 | --spark-meters 0] [--dir /tmp/pwrbench]

Synthetic load: a per-meter level, a day/night shape and noise; 1 % of meters get a
flat 20 kW step (mining-like) from a day with >= 10 days before and >= 14 after.

Each repetition measures, on the same files:
  bare scan      DuckDB reads every column of every reading (count and sums): the reference
  hourly blocks  DuckDB scans each block of meters, numpy places the readings into the
                 hourly matrices (features.py) and nothing else: the data path alone
  end to end     the same, with the model scoring each block while the next ones are read
                 on the second core (what `minewatch meters score` does); "model" is the
                 wall time spent in model.score_meters (model.py, a separate concern)
Readings/s = readings / wall seconds; "x scan" = that rate as a share of the bare scan's;
(CPU) = CPU seconds of the whole process (DuckDB's threads included): with other jobs on
the machine, readings per CPU-second are the comparable number.

Spark (local mode, 2 cores): a smaller set of meters (--spark-meters; Spark's start-up
and shuffle make the full million impractical in a bench run), scored end to end on
DuckDB and on Spark; the verdict records must be identical; Spark's session start-up is
reported apart from its scoring time.

Targets (issue 4): >= 10 M readings/s end to end on DuckDB; 1,000,000 meters x 30 days
hourly (720 M readings) within 120 s on this 2-core machine (run with --meters 1000000
to measure it directly; smaller runs extrapolate linearly: blocks are independent).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import duckdb

from minewatch.power.features import hourly_blocks
from minewatch.power.model import score_meters
from minewatch.power.scoring import sample_common, verdict_record

GEN_SQL = """
COPY (
  SELECT CAST(m AS INTEGER) AS meter_key,
         TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_hours(CAST(h AS BIGINT)) AS ts,
         CAST((5 + (m % 97)) * (1 + 0.4 * sin((h % 24) / 24.0 * 2 * pi())) * (0.9 + 0.2 * random())
              + CASE WHEN m % 100 = 0 AND h >= 24 * {onset} THEN 20 ELSE 0 END AS FLOAT) AS kw
  FROM range({lo}, {hi}) AS a(m), range({hours}) AS b(h)
) TO '{path}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1000000)
"""


def generate(folder: Path, meters: int, days: int, per_file: int = 100_000) -> int:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    for i, lo in enumerate(range(0, meters, per_file)):
        hi = min(meters, lo + per_file)
        # planted onsets where the model can judge them: >= 10 days before, >= 14 after
        onset = f"(10 + m % {max(1, days - 24)})"
        con.execute(GEN_SQL.format(lo=lo, hi=hi, hours=days * 24, onset=onset,
                                   path=folder / f"part{i:04d}.parquet"))
    return meters * days * 24


def connect(threads: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET enable_progress_bar = false")
    return con


def bare_scan(con, src: str) -> float:
    t0 = time.perf_counter()
    con.sql(f"SELECT count(*), sum(meter_key), max(ts), sum(kw) FROM {src}").fetchall()
    return time.perf_counter() - t0


def blocks_only(con, src: str, files: list[Path]) -> tuple[float, float]:
    """(wall s, CPU s of the process) to build every block, nothing else."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    for block in hourly_blocks(con, src, "meter_key", prefetch=False, files=files):
        del block
    return time.perf_counter() - t0, time.process_time() - cpu0


def end_to_end(con, src: str, files: list[Path], meters: int) -> tuple[float, float, float, list, object]:
    """(wall s, CPU s of the process, s inside score_meters, verdicts, the common mode),
    as `meters score` does: the workspace's common mode first, then every block."""
    verdicts, model_s = [], 0.0
    cpu0, t0 = time.process_time(), time.perf_counter()
    common = sample_common(con, src, list(range(meters)))
    for block in hourly_blocks(con, src, "meter_key", files=files):  # bounded memory: a few blocks at a time
        t1 = time.perf_counter()
        verdicts += score_meters(block, common)
        model_s += time.perf_counter() - t1
    return time.perf_counter() - t0, time.process_time() - cpu0, model_s, verdicts, common


def records(verdicts) -> list[dict]:
    return sorted((verdict_record(v, str(v.meter)) for v in verdicts), key=lambda r: r["meter_id"])


def run_duckdb(folder: Path, rows: int, meters: int, days: int, repeat: int, threads: int) -> None:
    src, files = f"read_parquet('{folder}/*.parquet')", sorted(folder.glob("*.parquet"))
    con = connect(threads)
    print("run   bare scan            hourly blocks only (CPU)          end to end (CPU)"
          "                   model")
    speeds, ratios, ends, cpu_rates = [], [], [], []
    for i in range(repeat):
        scan_s = bare_scan(con, src)
        feat_s, feat_cpu = blocks_only(con, src, files)
        total_s, cpu_s, model_s, verdicts, _ = end_to_end(con, src, files, meters)
        speed = rows / total_s / 1e6
        speeds.append(speed)
        ratios.append(scan_s / total_s)
        ends.append(total_s)
        cpu_rates.append((rows / feat_cpu / 1e6, rows / cpu_s / 1e6))
        print(f"{i + 1:>3} {scan_s:6.2f} s {rows / scan_s / 1e6:5.1f} M/s"
              f" {feat_s:6.2f} s {rows / feat_s / 1e6:5.1f} M/s x{scan_s / feat_s:5.3f} ({feat_cpu:5.1f} s)"
              f" {total_s:6.2f} s {speed:5.1f} M/s x{scan_s / total_s:5.3f} ({cpu_s:5.1f} s)"
              f" {model_s:6.2f} s", flush=True)
    print("readings per CPU-second (independent of other load): hourly blocks "
          + ", ".join(f"{a:.1f} M" for a, _ in cpu_rates) + "; end to end "
          + ", ".join(f"{b:.1f} M" for _, b in cpu_rates)
          + " (two free cores give up to twice these per wall second)")
    flagged = sum(v.flagged for v in verdicts)
    print(f"flagged {flagged:,} of {meters:,} (planted: {len(range(0, meters, 100)):,}); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work slows wall times)")
    per_million = statistics.median(ends) * 1_000_000 / meters * 30 / days
    how = "measured" if meters == 1_000_000 and days == 30 else "linear extrapolation"
    print(f"TARGET end to end >= 10 M readings/s: median {statistics.median(speeds):.1f}, "
          f"range {min(speeds):.1f}-{max(speeds):.1f} -> {'met' if min(speeds) >= 10 else 'NOT met in every run'}; "
          f"x bare scan {min(ratios):.3f}-{max(ratios):.3f}")
    print(f"TARGET 1,000,000 meters x 30 days <= 120 s ({how}): median {per_million:.0f} s -> "
          f"{'met' if per_million <= 120 else 'NOT met'}")


def run_spark(folder: Path, meters: int, days: int, repeat: int, threads: int) -> None:
    from minewatch.engine.spark import as_url, java_problem

    problem = java_problem()
    if problem:
        print(f"Spark: skipped ({problem})")
        return
    from minewatch.power.spark import open_session, spark_verdicts

    rows = generate(folder, meters, days)
    src, files = f"read_parquet('{folder}/*.parquet')", sorted(folder.glob("*.parquet"))
    con = connect(threads)
    t0 = time.perf_counter()
    spark, started = open_session()
    start_s = time.perf_counter() - t0
    print(f"\nSpark local mode vs DuckDB: {meters:,} meters x {days} days = {rows:,} readings "
          f"(Spark session start-up {start_s:.1f} s, not counted)")
    try:
        for i in range(repeat):
            scan_s = bare_scan(con, src)
            duck_s, _, _, duck, common = end_to_end(con, src, files, meters)
            t0 = time.perf_counter()
            on_spark = spark_verdicts(spark, as_url(folder) + "/*.parquet", common=common)
            spark_s = time.perf_counter() - t0
            same = records(duck) == records(on_spark)
            print(f"{i + 1:>3} DuckDB {duck_s:6.2f} s {rows / duck_s / 1e6:5.1f} M/s x{scan_s / duck_s:5.3f} scan | "
                  f"Spark {spark_s:6.2f} s {rows / spark_s / 1e6:5.1f} M/s x{scan_s / spark_s:5.3f} scan | "
                  f"Spark / DuckDB time {spark_s / duck_s:5.2f} | verdict records identical: "
                  f"{'yes' if same else 'NO'} ({len(on_spark):,} meters)", flush=True)
    finally:
        if started:
            spark.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--spark-meters", type=int, default=50_000, help="0: no Spark run")
    ap.add_argument("--spark-repeat", type=int, default=2)
    ap.add_argument("--dir", default="/tmp/minewatch_power_bench")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", action="store_true", help="keep the generated Parquet files")
    args = ap.parse_args(argv)
    folder = Path(args.dir)
    t0 = time.perf_counter()
    rows = generate(folder / "duckdb", args.meters, args.days)
    size_mb = sum(p.stat().st_size for p in (folder / "duckdb").glob("*.parquet")) / 1e6
    print(f"{args.meters:,} meters x {args.days} days hourly = {rows:,} readings "
          f"({size_mb:,.0f} MB Parquet, generated in {time.perf_counter() - t0:.1f} s), DuckDB threads {args.threads}")
    try:
        run_duckdb(folder / "duckdb", rows, args.meters, args.days, args.repeat, args.threads)
        if args.spark_meters > 0:
            run_spark(folder / "spark", args.spark_meters, args.days, args.spark_repeat, args.threads)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

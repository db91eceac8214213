"""Speed of meter scoring: synthetic hourly readings in Parquet, scored with the real
pipeline (DuckDB streams blocks of meters into hourly matrices; numpy change detection,
hourly tests on candidates only), against a bare scan of the same files in the same run.

    PYTHONPATH=src python bench/power_bench.py --meters 100000 --days 30 [--dir /tmp/pwrbench]

Synthetic load: a per-meter level, a day/night shape and noise; 1 % of meters get a
flat 20 kW step (mining-like) from a day with >= 10 days before and >= 14 after. Readings/s = rows / wall seconds.

Targets (issue 4): score >= 10 M readings/s end to end; 1,000,000 meters x 30 days
hourly (720 M readings) within 120 s on a 2-core machine. Run with --meters 1000000 to
measure the second directly; smaller runs extrapolate linearly (blocks are independent).
Blocks are read on a second thread while the current one is scored, so "hourly blocks"
below is only the time the model waited for data.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import duckdb

from minewatch.power.features import hourly_blocks
from minewatch.power.model import score_meters

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
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    for i, lo in enumerate(range(0, meters, per_file)):
        hi = min(meters, lo + per_file)
        # planted onsets where the model can judge them: >= 10 days before, >= 14 after
        onset = f"(10 + m % {max(1, days - 24)})"
        con.execute(GEN_SQL.format(lo=lo, hi=hi, hours=days * 24, onset=onset,
                                   path=folder / f"part{i:04d}.parquet"))
    return meters * days * 24


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--dir", default="/tmp/minewatch_power_bench")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--keep", action="store_true", help="keep the generated Parquet files")
    args = ap.parse_args(argv)
    folder = Path(args.dir)
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    rows = generate(folder, args.meters, args.days)
    gen_s = time.perf_counter() - t0
    src = f"read_parquet('{folder}/*.parquet')"
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    con.execute("SET enable_progress_bar = false")

    t0 = time.perf_counter()
    con.sql(f"SELECT count(*), sum(meter_key), max(ts), sum(kw) FROM {src}").fetchall()
    scan_s = time.perf_counter() - t0

    feat_s = model_s = 0.0
    verdicts = []
    cpu0 = time.process_time()  # all threads of this process (DuckDB's too)
    t0 = time.perf_counter()
    for block in hourly_blocks(con, src, "meter_key"):  # bounded memory: one block at a time
        t1 = time.perf_counter()
        feat_s += t1 - t0
        verdicts += score_meters(block)
        t0 = time.perf_counter()
        model_s += t0 - t1
    cpu_s = time.process_time() - cpu0
    flagged = sum(v.flagged for v in verdicts)
    total = feat_s + model_s
    size_mb = sum(p.stat().st_size for p in folder.glob("*.parquet")) / 1e6
    print(f"{args.meters:,} meters x {args.days} days hourly = {rows:,} readings "
          f"({size_mb:,.0f} MB Parquet, generated in {gen_s:.1f} s), {args.threads} threads")
    print(f"bare scan      {scan_s:7.2f} s  {rows / scan_s / 1e6:8.1f} M readings/s")
    print(f"hourly blocks  {feat_s:7.2f} s  waiting for DuckDB -> numpy (overlapped with scoring)")
    print(f"change model   {model_s:7.2f} s  {args.meters / model_s:10,.0f} meters/s (numpy)")
    speed = rows / total / 1e6
    print(f"score total    {total:7.2f} s  {speed:8.1f} M readings/s end to end; "
          f"ratio to bare scan {scan_s / total:.3f} (the scan reads {rows / scan_s / 1e6:.1f} M/s)")
    print(f"CPU time       {cpu_s:7.2f} s  {rows / cpu_s / 1e6:8.1f} M readings per CPU-second "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other work slows the wall time)")
    print(f"flagged {flagged:,} of {args.meters:,} (planted: {len(range(0, args.meters, 100)):,})")
    per_million = total * 1_000_000 / args.meters * 30 / args.days
    how = "measured" if args.meters == 1_000_000 and args.days == 30 else "linear extrapolation"
    print(f"TARGET speed >= 10 M readings/s: {speed:.1f} -> {'met' if speed >= 10 else 'NOT met'}")
    print(f"TARGET 1,000,000 meters x 30 days <= 120 s ({how}): {per_million:.0f} s -> "
          f"{'met' if per_million <= 120 else 'NOT met'}")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

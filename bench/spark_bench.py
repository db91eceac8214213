"""The SQL detector set on DuckDB and on Spark local mode over one synthetic workspace.

    PYTHONPATH=src python bench/spark_bench.py [--rows 3000000] [--master local[2]] [--keep DIR]

Writes a workspace of synthetic flows (and a quarter as many DNS records) straight as
Parquet partitions, with some paced sessions to listed pool addresses so that the
detectors have work to do; runs every registered SQL detector on DuckDB, then on Spark;
prints the times per detector, the totals and the Spark/DuckDB ratio. Spark's JVM
start-up is timed on its own and not counted in its total. Both engines must find the
same number of evidence rows (checked, not timed). No timed assertions: this only reports.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from minewatch.engine.duckdb import DuckDBEngine
from minewatch.engine.spark import SparkEngine, java_problem, start_session
from minewatch.intel import IntelSet
from minewatch.workspace import Workspace
from minewatch.workspace.catalogue import Catalogue
from minewatch.workspace.store import stored_schema

DAY0 = np.datetime64("2026-11-01T00:00:00", "us")
POOL_NET = ipaddress.ip_network("203.0.113.0/26")  # listed in the bench's own intel file
PART_ROWS = 500_000


def _ips(base: str, ids: np.ndarray) -> np.ndarray:
    start = int(ipaddress.ip_address(base))
    return np.array([str(ipaddress.ip_address(start + int(i))) for i in range(int(ids.max()) + 1)])[ids]


def synthetic_flows(rows: int, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    miners = max(rows // 20_000, 10)  # paced sessions: about 5% of the rows
    paced = miners * 100
    background = rows - paced
    client = np.concatenate([rng.integers(0, 20_000, background), np.repeat(np.arange(miners), 100) % 20_000])
    server_ids = np.concatenate([rng.integers(0, 60_000, background), np.repeat(np.arange(miners) % 64, 100)])
    is_pool = np.arange(rows) >= background
    start_s = np.concatenate([rng.uniform(0, 3 * 86_400, background),
                              (np.repeat(rng.uniform(0, 2 * 86_400, miners), 100)
                               + np.tile(np.arange(100) * 60.0, miners))])
    duration = np.where(is_pool, 58.0, rng.exponential(30.0, rows))
    src_packets = np.where(is_pool, 6, rng.integers(1, 400, rows))
    dst_packets = np.where(is_pool, 5, rng.integers(0, 400, rows))
    server_ip = np.where(is_pool, _ips(str(POOL_NET[0]), server_ids % 64), _ips("198.18.0.0", server_ids))
    ts_start = DAY0 + (start_s * 1e6).astype("timedelta64[us]")
    columns = {
        "source_file": pa.array(np.full(rows, "synthetic-flows")),
        "flow_ref": pa.array(np.arange(rows, dtype=np.int64)),
        "ts_start": pa.array(ts_start, pa.timestamp("us", "UTC")),
        "ts_end": pa.array(ts_start + (duration * 1e6).astype("timedelta64[us]"), pa.timestamp("us", "UTC")),
        "src_ip": pa.array(_ips("10.0.0.0", client)),
        "src_port": pa.array(np.where(is_pool, 40_000 + client % 20_000, rng.integers(32_768, 61_000, rows)).astype(np.int32)),
        "dst_ip": pa.array(server_ip),
        "dst_port": pa.array(np.where(is_pool, 3333, rng.choice([443, 80, 53, 8080, 3333], rows)).astype(np.int32)),
        "ip_proto": pa.array(np.full(rows, 6, np.int16)),
        "l4": pa.array(np.full(rows, "TCP")),
        "src_packets": pa.array(src_packets.astype(np.int64)),
        "dst_packets": pa.array(dst_packets.astype(np.int64)),
        "src_bytes": pa.array((src_packets * np.where(is_pool, 230, rng.integers(60, 1400, rows))).astype(np.int64)),
        "dst_bytes": pa.array((dst_packets * np.where(is_pool, 260, rng.integers(60, 1400, rows))).astype(np.int64)),
    }
    schema = stored_schema("flows")
    table = pa.table({name: columns.get(name, pa.nulls(rows, field.type)) for name, field in
                      zip(schema.names, schema)})
    return table.cast(schema)


def synthetic_dns(rows: int, seed: int = 11) -> pa.Table:
    rng = np.random.default_rng(seed)
    names = np.array([f"host{i}.example.com" for i in range(5_000)]
                     + ["pool.supportxmr.com", "gulf.moneroocean.stream", "xmr-eu1.nanopool.org"])
    pick = np.where(rng.random(rows) < 0.002, rng.integers(5_000, 5_003, rows), rng.integers(0, 5_000, rows))
    schema = stored_schema("dns")
    ts = DAY0 + (rng.uniform(0, 3 * 86_400, rows) * 1e6).astype("timedelta64[us]")
    columns = {
        "source_file": pa.array(np.full(rows, "synthetic-dns")),
        "record_ref": pa.array(np.arange(rows, dtype=np.int64)),
        "ts": pa.array(ts, pa.timestamp("us", "UTC")),
        "client_ip": pa.array(_ips("10.0.0.0", rng.integers(0, 20_000, rows))),
        "client_port": pa.array(rng.integers(1024, 65_000, rows).astype(np.int32)),
        "server_ip": pa.array(np.full(rows, "10.0.0.1")),
        "server_port": pa.array(np.full(rows, 53, np.int32)),
        "l4": pa.array(np.full(rows, "UDP")),
        "query": pa.array(names[pick]),
    }
    return pa.table({name: columns.get(name, pa.nulls(rows, field.type)) for name, field in
                     zip(schema.names, schema)}).cast(schema)


def write_workspace(root: Path, rows: int) -> Workspace:
    ws = Workspace(root).create()
    with Catalogue(ws.catalogue_path) as cat:
        for table_name, table in (("flows", synthetic_flows(rows)), ("dns", synthetic_dns(rows // 4))):
            source_file = table.column("source_file")[0].as_py()
            sha = hashlib.sha256(source_file.encode()).hexdigest()
            cat.start_file(sha, source_file, source_file, 0, "synthetic")
            folder = ws.tables_dir / table_name / "source=synthetic" / "day=2026-11-01"
            folder.mkdir(parents=True, exist_ok=True)
            for n, offset in enumerate(range(0, table.num_rows, PART_ROWS)):
                pq.write_table(table.slice(offset, PART_ROWS), folder / f"part-{sha[:16]}-{n:05d}.parquet",
                               compression="zstd")
            cat.finish_file(sha, table.num_rows, 0, {table_name: table.num_rows}, [])
    return ws


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3_000_000, help="synthetic flow records")
    parser.add_argument("--master", default=None, help="Spark master URL (default local[2])")
    parser.add_argument("--keep", default=None, help="write the workspace here and keep it")
    args = parser.parse_args()
    problem = java_problem()
    if problem:
        print(f"Spark cannot start: {problem}", file=sys.stderr)
        return 2
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="minewatch-spark-bench-"))
    try:
        started = time.perf_counter()
        write_workspace(root / "ws", args.rows)
        print(f"workspace: {args.rows:,} flows + {args.rows // 4:,} DNS records "
              f"written in {time.perf_counter() - started:.1f} s ({root / 'ws'})")
        intel_file = root / "pools.txt"
        intel_file.write_text(f"{POOL_NET}\n")
        intel = IntelSet.load([str(intel_file)])

        duck = DuckDBEngine(Workspace(root / "ws"), intel, threads=2).run()
        started = time.perf_counter()
        spark = start_session(args.master)
        jvm_s = time.perf_counter() - started
        engine = SparkEngine(Workspace(root / "ws"), intel, spark=spark)
        sprk = engine.run()
        spark.stop()

        print(f"Spark session start-up (JVM): {jvm_s:.1f} s, not counted below")
        print(f"{'detector':28} {'rows':>9} {'duckdb s':>9} {'spark s':>9} {'ratio':>7}")
        for d, s in zip(duck.results, sprk.results):
            flag = "" if (d.rows == s.rows and not d.error and not s.error) else "  MISMATCH " + str(d.error or s.error or "")
            print(f"{d.id:28} {d.rows:>9,} {d.seconds:>9.2f} {s.seconds:>9.2f} "
                  f"{s.seconds / max(d.seconds, 1e-9):>6.1f}x{flag}")
        total_d, total_s = sum(r.seconds for r in duck.results), sum(r.seconds for r in sprk.results)
        print(f"{'total':28} {'':>9} {total_d:>9.2f} {total_s:>9.2f} {total_s / max(total_d, 1e-9):>6.1f}x")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

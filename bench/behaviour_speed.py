"""Speed and memory of the behaviour detector (and of the whole SQL detector set) on
synthetic flows, against a bare scan of the same columns.

    PYTHONPATH=src .venv/bin/python bench/behaviour_speed.py --rows 30000000 [--engine]

The flows are generated once by DuckDB into /tmp (a day of a network: 50,000 clients,
servers drawn from a skewed popularity law so a client returns to the same popular
servers many times a day; 80% short TCP web flows, 12% UDP DNS, 8% long TCP sessions
of 1 min to 2 h at rates from a few bytes/s to bulk, 0.05% paced low-rate sessions to
pool ports). The table has the FLOWS columns; heads are null (not read here).
Each measurement runs in a fresh child process, so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb

MEMORY_LIMIT = "1536MB"  # the engine's default (src/minewatch/engine/duckdb.py)

FLOWS_SQL = """
WITH base AS (
    SELECT i, random() AS r_kind, random() AS r_client, random() AS r_server, random() AS r_time,
           random() AS r_dur, random() AS r_size, random() AS r_port
    FROM range({rows}) t(i)
),
typed AS (
    SELECT *, CASE WHEN r_kind < 0.80 THEN 'web' WHEN r_kind < 0.92 THEN 'dns'
                   WHEN r_kind < 0.9995 THEN 'long' ELSE 'paced' END AS kind
    FROM base
),
shaped AS (
    SELECT *,
        CASE kind WHEN 'web' THEN 0.05 + 20 * r_dur * r_dur WHEN 'dns' THEN 0.02 * r_dur
                  WHEN 'long' THEN 60 + 7200 * r_dur * r_dur ELSE 300 + 1500 * r_dur END AS dur_s,
        CASE kind WHEN 'web' THEN 4 + CAST(60 * r_size * r_size AS BIGINT) WHEN 'dns' THEN 1
                  WHEN 'long' THEN 20 + CAST(50000 * r_size * r_size AS BIGINT)
                  ELSE 20 + CAST(80 * r_size AS BIGINT) END AS pkts
    FROM typed
)
SELECT
    'synthetic/day-' || CAST(i % 8 AS VARCHAR) || '.pcap' AS source_file,
    i AS flow_ref,
    TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_microseconds(CAST(r_time * 86400e6 AS BIGINT)) AS ts_start,
    TIMESTAMPTZ '2026-11-01 00:00:00+00' + to_microseconds(CAST((r_time * 86400 + dur_s) * 1e6 AS BIGINT)) AS ts_end,
    '10.' || CAST(CAST(r_client * 50000 AS BIGINT) // 65536 AS VARCHAR) || '.'
          || CAST((CAST(r_client * 50000 AS BIGINT) // 256) % 256 AS VARCHAR) || '.'
          || CAST(CAST(r_client * 50000 AS BIGINT) % 256 AS VARCHAR) AS src_ip,
    CAST(32768 + (i * 7919) % 28000 AS INTEGER) AS src_port,
    CASE WHEN kind = 'dns' THEN '10.0.0.53'
         ELSE CAST(CAST(1 + 200000 * r_server * r_server * r_server AS BIGINT) // 65536 + 20 AS VARCHAR) || '.'
              || CAST((CAST(200000 * r_server * r_server * r_server AS BIGINT) // 256) % 256 AS VARCHAR) || '.'
              || CAST(CAST(200000 * r_server * r_server * r_server AS BIGINT) % 256 AS VARCHAR) || '.7' END AS dst_ip,
    CAST(CASE WHEN kind = 'dns' THEN 53 WHEN kind = 'paced' THEN 3333 + CAST(r_port * 3 AS INTEGER)
              WHEN r_port < 0.8 THEN 443 WHEN r_port < 0.95 THEN 80 ELSE 22 END AS INTEGER) AS dst_port,
    CAST(CASE WHEN kind = 'dns' THEN 17 ELSE 6 END AS SMALLINT) AS ip_proto,
    CASE WHEN kind = 'dns' THEN 'UDP' ELSE 'TCP' END AS l4,
    CAST(NULL AS INTEGER) AS vlan_id,
    CAST(pkts AS BIGINT) AS src_packets,
    CAST(pkts + CASE WHEN kind = 'web' THEN pkts ELSE 0 END AS BIGINT) AS dst_packets,
    CAST(pkts * CASE kind WHEN 'web' THEN 90 WHEN 'dns' THEN 70 WHEN 'long' THEN 300 ELSE 150 END AS BIGINT) AS src_bytes,
    CAST(pkts * CASE kind WHEN 'web' THEN 1200 WHEN 'dns' THEN 150 WHEN 'long' THEN 400 ELSE 200 END AS BIGINT) AS dst_bytes,
    CAST(pkts / 2 AS BIGINT) AS src_payload_packets,
    CAST(pkts / 2 + CASE WHEN kind = 'web' THEN pkts ELSE 0 END AS BIGINT) AS dst_payload_packets,
    CAST(pkts * CASE kind WHEN 'web' THEN 30 WHEN 'dns' THEN 40 WHEN 'long' THEN 230 ELSE 60 END AS BIGINT) AS src_payload_bytes,
    CAST(pkts * CASE kind WHEN 'web' THEN 1100 WHEN 'dns' THEN 120 WHEN 'long' THEN 330 ELSE 100 END AS BIGINT) AS dst_payload_bytes,
    CAST(CASE WHEN kind = 'dns' THEN 0 ELSE 27 END AS UTINYINT) AS src_tcp_flags,
    CAST(CASE WHEN kind = 'dns' THEN 0 ELSE 27 END AS UTINYINT) AS dst_tcp_flags,
    CAST(NULL AS BLOB) AS src_payload_head,
    CAST(NULL AS BLOB) AS dst_payload_head,
    CASE WHEN pkts > 2 THEN 1000 * dur_s / pkts END AS src_iat_mean_ms,
    CASE WHEN pkts > 2 THEN 900 * dur_s / pkts END AS src_iat_std_ms,
    CAST(NULL AS VARCHAR) AS app_protocol,
    CAST(pkts / 2 AS BIGINT) AS src_msgs,
    CASE WHEN pkts > 1 THEN 150.0 + 30 * r_size END AS src_msg_size_mean,
    -- message sizes and timing: web and bulk content spreads widely, paced flows do not
    CASE WHEN pkts > 1 THEN (150.0 + 30 * r_size) * CASE WHEN kind = 'paced' THEN 0.2 ELSE 2.5 * r_port END
         END AS src_msg_size_std,
    CASE WHEN pkts > 3 THEN 2000 * dur_s / pkts END AS src_msg_iat_mean_ms,
    CASE WHEN pkts > 3 THEN 2000 * dur_s / pkts * CASE WHEN kind = 'paced' THEN 0.9 ELSE 3 * r_time END
         END AS src_msg_iat_std_ms,
    CAST(pkts / 2 AS BIGINT) AS dst_msgs,
    CASE WHEN pkts > 1 THEN 120.0 + 300 * r_size END AS dst_msg_size_mean,
    CASE WHEN pkts > 1 THEN 80.0 * r_size END AS dst_msg_size_std,
    CASE WHEN pkts > 3 THEN 2000 * dur_s / pkts END AS dst_msg_iat_mean_ms,
    CASE WHEN pkts > 3 THEN 1500 * dur_s / pkts END AS dst_msg_iat_std_ms
FROM shaped
"""
# what NetFlow/IPFIX (nfdump) gives: packets and IP bytes per direction, no payload counts,
# no timing, no messages; the columns stay, NULL, as the readers write them
NETFLOW_NULLS = {
    "BIGINT": ("src_payload_packets", "dst_payload_packets", "src_payload_bytes", "dst_payload_bytes",
               "src_msgs", "dst_msgs"),
    "DOUBLE": ("src_iat_mean_ms", "src_iat_std_ms", "src_msg_size_mean", "src_msg_size_std",
               "src_msg_iat_mean_ms", "src_msg_iat_std_ms", "dst_msg_size_mean", "dst_msg_size_std",
               "dst_msg_iat_mean_ms", "dst_msg_iat_std_ms"),
}
SHAPES = ("pcap", "netflow")


def generate_sql(rows: int, path: Path, shape: str) -> str:
    select = FLOWS_SQL.format(rows=int(rows))
    if shape == "netflow":
        nulls = ", ".join(f"CAST(NULL AS {t}) AS {c}" for t, cols in NETFLOW_NULLS.items() for c in cols)
        select = f"SELECT * REPLACE ({nulls}) FROM ({select})"
    target = str(path).replace("'", "''")
    return f"COPY ({select}) TO '{target}' (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)"


SCAN_PREDICATE = " AND ".join(
    [f"length({c}) <> 3" for c in ("source_file", "src_ip", "dst_ip")]
    + ["ts_end >= ts_start"]
    + [f"coalesce({c}, 0) >= -1" for c in (
        "flow_ref", "src_port", "dst_port", "ip_proto", "src_packets", "dst_packets", "src_bytes", "dst_bytes",
        "src_payload_packets", "dst_payload_packets", "src_payload_bytes", "dst_payload_bytes",
        "src_iat_mean_ms", "src_iat_std_ms", "src_msgs", "src_msg_size_mean", "src_msg_size_std",
        "src_msg_iat_mean_ms", "src_msg_iat_std_ms", "dst_msgs", "dst_msg_size_mean", "dst_msg_size_std",
        "dst_msg_iat_mean_ms", "dst_msg_iat_std_ms")])


def generate(path: Path, rows: int, shape: str = "pcap") -> None:
    if path.exists():
        return
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute("SELECT setseed(0.42)")
    con.execute(generate_sql(rows, path, shape))


def _connect(path: Path, threads: int | None):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {threads}")
    con.execute(f"CREATE VIEW flows AS SELECT * FROM read_parquet('{path}')")
    return con


def measure_in_child(what: str, path: Path, threads: int | None, module: Path | None = None) -> dict:
    """Run one measurement in this script as a child process (which reports its own peak RSS)."""
    args = [sys.executable, __file__, "--child", what, "--parquet", str(path)]
    if threads:
        args += ["--threads", str(threads)]
    if module:
        args += ["--module", str(module)]
    out = subprocess.run(args, capture_output=True, text=True, env=os.environ)
    if out.returncode:
        raise SystemExit(f"{what} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _detector_module(module: Path | None):
    """The behaviour detector, or another version of it kept in a file (for comparison)."""
    if module is None:
        from minewatch.detect import behaviour

        return behaviour
    import importlib.util

    spec = importlib.util.spec_from_file_location("behaviour_other", module)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def child(what: str, path: Path, threads: int | None, module: Path | None) -> dict:
    con = _connect(path, threads)
    rows = con.execute("SELECT count(*) FROM flows").fetchone()[0]
    started = time.perf_counter()
    if what == "scan":
        # every column the detector reads, each consumed by a cheap expression (not
        # min/max, which Parquet statistics answer without reading the data)
        out = con.execute(f"SELECT count(*) FROM flows WHERE {SCAN_PREDICATE}").fetchone()[0]
    elif what == "behaviour":
        sql = _detector_module(module).behaviour_sql()
        out = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
    elif what == "engine":
        return engine_child(path, threads)
    else:
        raise SystemExit(f"unknown measurement {what}")
    seconds = time.perf_counter() - started
    return {"what": what, "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "result_rows": out}


def engine_child(path: Path, threads: int | None) -> dict:
    """Every registered SQL detector through DuckDBEngine over a workspace whose flows
    table is the synthetic file (linked in, not copied)."""
    from minewatch.engine.duckdb import DuckDBEngine
    from minewatch.workspace.store import Workspace

    root = Path(f"/tmp/minewatch_speed_ws_{os.getpid()}")
    ws = Workspace(root).create()
    part = ws.tables_dir / "flows" / "source=pcap" / "day=2026-11-01"
    part.mkdir(parents=True, exist_ok=True)
    os.symlink(path, part / "part-synthetic-0.parquet")
    from minewatch.workspace.catalogue import Catalogue

    with Catalogue(ws.catalogue_path):
        pass
    rows = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet('{path}')").fetchone()[0]
    started = time.perf_counter()
    report = DuckDBEngine(ws, threads=threads).run()
    seconds = time.perf_counter() - started
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    return {"what": "engine", "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds),
            "detectors": {r.id: {"seconds": round(r.seconds, 2), "rows": r.rows, "error": r.error}
                          for r in report.results}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--shape", choices=SHAPES, default="pcap",
                    help="pcap: every column filled (payload counts, timing, messages), as the packet "
                         "reader writes them; netflow: packets and bytes only, as nfdump/IPFIX give them")
    ap.add_argument("--parquet", type=Path)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--engine", action="store_true", help="also run every SQL detector through DuckDBEngine")
    ap.add_argument("--compare", type=Path, help="also time another version of behaviour.py kept in this file "
                    "(e.g. `git show HEAD:src/minewatch/detect/behaviour.py > /tmp/v1.py`)")
    ap.add_argument("--child")
    ap.add_argument("--module", type=Path)
    args = ap.parse_args(argv)
    suffix = "" if args.shape == "pcap" else f"_{args.shape}"
    path = args.parquet or Path(f"/tmp/minewatch_synthetic_flows_{args.rows}{suffix}.parquet")
    if args.child:
        result = child(args.child, path, args.threads, args.module)
        result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(result))
        return 0
    started = time.perf_counter()
    generate(path, args.rows, args.shape)
    print(f"flows: {path} ({path.stat().st_size / 2**20:.0f} MiB, generated in {time.perf_counter() - started:.0f} s)")
    runs = ["scan", "behaviour"] + (["engine"] if args.engine else [])
    for what in runs:
        print(json.dumps(measure_in_child(what, path, args.threads)))
    if args.compare:
        print(json.dumps(dict(measure_in_child("behaviour", path, args.threads, args.compare),
                              what=f"behaviour from {args.compare}")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speed of the record readers and of ingest (issue 3): nfdump CSV, Zeek conn.log TSV,
canonical-column Parquet.

    PYTHONPATH=src .venv/bin/python bench/ingest_bench.py [--nfdump-rows 5000000] [--zeek-rows 2000000]
        [--parquet-rows 5000000] [--only nfdump|zeek|parquet] [--ingest] [--duckdb] [--repeat 3]

Generates (once, cached by row count) in bench/out/ a synthetic nfdump 1.7 CSV export
(48 columns, `Summary` trailer) and a Zeek conn.log TSV with realistic values, using
DuckDB. Each measurement runs in its own process so its peak RSS (wait4) is its own; a
bare pyarrow.csv read of the same file (threaded, all columns as strings, no checks) is
the in-run reference, and the table prints speed / reference speed ("vs ref").

- `--duckdb` adds DuckDB's parallel CSV reader on the nfdump file: the 13 columns the
  FLOWS mapping needs, types sniffed, into an in-memory table, no checks.
- `--ingest` adds `minewatch ingest` of the nfdump file into a fresh workspace (every
  check, rejects file, zstd Parquet day partitions written), against DuckDB copying the
  same 13 columns from the CSV to one zstd Parquet file (no checks) as its reference.
- `--ingest` also times `minewatch ingest` of a canonical-column Parquet file (5 M rows,
  the generator of bench/behaviour_speed.py, generated once) against DuckDB copying the
  same columns Parquet -> zstd Parquet; `--only parquet --ingest` times that alone.
- `--repeat N` runs the whole set N times: the machine is shared, so wall-clock rates
  move with the load; ratios within a repeat are the numbers to compare, and CPU
  seconds (records per CPU-second) are printed too. Compare before/after with
  `--src OTHER_CHECKOUT/src` in the same minute.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
REPO = HERE.parent

NFDUMP_HEADER = ("ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,"
                 "svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,"
                 "cl,sl,al,ra,eng,exid,tr")
ZEEK_FIELDS = ("ts uid id.orig_h id.orig_p id.resp_h id.resp_p proto service duration orig_bytes resp_bytes "
               "conn_state local_orig local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts "
               "resp_ip_bytes tunnel_parents").split()
ZEEK_TYPES = ("time string addr port addr port enum string interval count count string bool bool count string "
              "count count count count set[string]").split()

# a few hundred hosts talking to a few thousand peers; mostly TCP, some UDP/ICMP
_COMMON_SQL = """
    i,
    TIMESTAMP '2024-03-01 00:00:00' + to_microseconds(CAST(i * 7 + (h(i) % 1000) AS BIGINT) * 1000) AS t0,
    (h(i * 3) % 60000) / 1000.0 AS dur,
    '10.' || (h(i) % 4) || '.' || (h(i * 5) % 250) || '.' || (1 + h(i * 7) % 250) AS sa,
    CASE WHEN h(i * 11) % 10 = 0 THEN '2001:db8:' || printf('%x', h(i * 13) % 65535) || '::' || (h(i) % 99 + 1)
         ELSE (h(i * 17) % 223 + 1) || '.' || (h(i * 19) % 256) || '.' || (h(i * 23) % 256) || '.' || (h(i * 29) % 254 + 1) END AS da,
    1024 + h(i * 31) % 64000 AS sp,
    [443, 80, 3333, 4444, 53, 123, 8080, 14444, 22][1 + h(i * 37) % 9] AS dp,
    CASE WHEN h(i * 41) % 20 = 0 THEN 'ICMP' WHEN h(i * 41) % 20 < 5 THEN 'UDP' ELSE 'TCP' END AS pr,
    1 + h(i * 43) % 500 AS pkts,
    h(i * 47) % 400 AS rpkts
"""


def _connect():
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE MACRO h(x) AS CAST(hash(x) % 1000000007 AS BIGINT)")  # a signed pseudo-random draw
    return con


def _frame(path: Path, body: Path, head: str, tail: str) -> None:
    """`path` = head + the rows DuckDB wrote to `body` (removed) + tail, as the tool writes it."""
    with open(path, "wb") as out:
        out.write(head.encode())
        with open(body, "rb") as rows:
            while block := rows.read(16 << 20):
                out.write(block)
        out.write(tail.encode())
    body.unlink()


def generate_nfdump(path: Path, rows: int) -> None:
    tmp = path.with_suffix(".tmp")
    con = _connect()
    con.execute(f"""
        COPY (
          WITH base AS (SELECT {_COMMON_SQL} FROM range({rows}) r(i))
          SELECT strftime(t0, '%Y-%m-%d %H:%M:%S') AS ts,
                 strftime(t0 + to_microseconds(CAST(dur * 1e6 AS BIGINT)), '%Y-%m-%d %H:%M:%S') AS te,
                 printf('%.3f', dur) AS td, sa, da,
                 CASE WHEN pr = 'ICMP' THEN 0 ELSE sp END AS sp,
                 CASE WHEN pr = 'ICMP' THEN '3.3' ELSE CAST(dp AS VARCHAR) END AS dp, pr,
                 CASE WHEN pr = 'TCP' THEN ['...AP.SF', '......S.', '...A.R..', '...AP...', '...A....'][1 + h(i) % 5]
                      ELSE '........' END AS flg,
                 0 AS fwd, 0 AS stos, pkts AS ipkt, pkts * (40 + h(i * 53) % 1400) AS ibyt,
                 0 AS opkt, 0 AS obyt, 0 AS "in", 0 AS "out", 2852 AS sas, 2852 AS das, 0 AS smk, 0 AS dmk,
                 0 AS dtos, 0 AS dir, '0.0.0.0' AS nh, '0.0.0.0' AS nhb, 0 AS svln, 0 AS dvln,
                 '00:00:00:00:00:00' AS ismc, '00:00:00:00:00:00' AS odmc, '00:00:00:00:00:00' AS idmc,
                 '00:00:00:00:00:00' AS osmc,
                 '0-0-0' AS mpls1, '0-0-0' AS mpls2, '0-0-0' AS mpls3, '0-0-0' AS mpls4, '0-0-0' AS mpls5,
                 '0-0-0' AS mpls6, '0-0-0' AS mpls7, '0-0-0' AS mpls8, '0-0-0' AS mpls9, '0-0-0' AS mpls10,
                 '    0.000' AS cl, '    0.000' AS sl, '    0.000' AS al, '147.32.82.62' AS ra, '0/58' AS eng,
                 1 AS exid, '1970-01-01 00:00:00.000' AS tr
          FROM base ORDER BY i
        ) TO '{tmp}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '')
    """)
    _frame(path, tmp, NFDUMP_HEADER + "\n", "Summary\nflows,bytes,packets,avg_bps,avg_pps,avg_bpp\n1,2,3,4,5,6\n")


def generate_zeek(path: Path, rows: int) -> None:
    tmp = path.with_suffix(".tmp")
    con = _connect()
    con.execute(f"""
        COPY (
          WITH base AS (SELECT {_COMMON_SQL} FROM range({rows}) r(i))
          SELECT printf('%.6f', epoch_us(t0) / 1e6) AS ts,
                 'C' || printf('%017x', h(i) * 1000003 + i) AS uid,
                 sa, sp, da, CASE WHEN pr = 'ICMP' THEN 3 ELSE dp END AS dp, lower(pr) AS proto,
                 CASE WHEN dp = 53 THEN 'dns' WHEN dp = 443 THEN 'ssl' WHEN dp = 80 THEN 'http' ELSE '-' END AS service,
                 CASE WHEN h(i * 59) % 10 = 0 THEN '-' ELSE printf('%.6f', dur) END AS duration,
                 CASE WHEN h(i * 59) % 10 = 0 THEN '-' ELSE CAST(pkts * 40 AS VARCHAR) END AS orig_bytes,
                 CASE WHEN h(i * 59) % 10 = 0 THEN '-' ELSE CAST(rpkts * 300 AS VARCHAR) END AS resp_bytes,
                 ['SF', 'S0', 'REJ', 'RSTO', 'OTH'][1 + h(i * 61) % 5] AS conn_state, '-' AS local_orig,
                 '-' AS local_resp, 0 AS missed_bytes,
                 CASE WHEN pr = 'TCP' THEN ['ShADadFf', 'S', 'Sr', 'ShADadR', 'ShAdDaFf'][1 + h(i) % 5]
                      WHEN pr = 'UDP' THEN 'Dd' ELSE '-' END AS history,
                 pkts AS orig_pkts, pkts * 92 AS orig_ip_bytes, rpkts AS resp_pkts, rpkts * 420 AS resp_ip_bytes,
                 '(empty)' AS tunnel_parents
          FROM base ORDER BY i
        ) TO '{tmp}' (FORMAT csv, DELIMITER '\t', HEADER false, QUOTE '', ESCAPE '')
    """)
    header = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tconn",
              "#open\t2024-03-01-00-00-00", "#fields\t" + "\t".join(ZEEK_FIELDS), "#types\t" + "\t".join(ZEEK_TYPES)]
    _frame(path, tmp, "\n".join(header) + "\n", "#close\t2024-03-02-00-00-00\n")


# ---------------------------------------------------------------- one measurement (child process)

def _duckdb_copy(con, select: str) -> int:
    """DuckDB writes `select` to a zstd Parquet file (removed afterwards): records written."""
    target = OUT / f"duckdb-{os.getpid()}.parquet"
    try:
        con.execute(f"COPY ({select}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)")
        return con.sql(f"SELECT count(*) FROM '{target}'").fetchall()[0][0]
    finally:
        target.unlink(missing_ok=True)


def run_one(kind: str, path: str) -> dict:
    started = time.perf_counter()
    records = 0
    if kind in ("nfdump", "zeek"):
        from minewatch.sources._records import SourceStats

        stats = SourceStats(path)
        if kind == "nfdump":
            from minewatch.sources.nfdump import read_nfdump as reader
        else:
            from minewatch.sources.zeek import read_zeek as reader
        for _, batch in reader(path, stats=stats):
            records += batch.num_rows
        rejected = stats.rejected_total
    elif kind in ("duckdb-table", "duckdb-parquet"):  # DuckDB, the FLOWS columns, no checks
        import duckdb

        from minewatch.sources.nfdump import csv_mapping

        with open(path, "rb") as f:
            names = f.readline().decode().strip().split(",")
        wanted = ", ".join(n for n in names if n in set(csv_mapping(names).values()))
        con = duckdb.connect(config={"threads": os.cpu_count() or 2, "memory_limit": "2GB"})
        source = f"read_csv('{path}', header=true, delim=',', quote='', escape='', ignore_errors=true)"
        if kind == "duckdb-table":
            con.execute(f"CREATE TABLE flows AS SELECT {wanted} FROM {source}")
            records = con.sql("SELECT count(*) FROM flows").fetchall()[0][0]
        else:
            records = _duckdb_copy(con, f"SELECT {wanted} FROM {source}")
        rejected = 0
    elif kind == "duckdb-copy":  # DuckDB, Parquet -> zstd Parquet, the mappable columns, no checks
        import duckdb

        con = duckdb.connect(config={"threads": os.cpu_count() or 2, "memory_limit": "2GB"})
        records = _duckdb_copy(con, f"SELECT {', '.join(_canonical_columns(path))} FROM '{path}'")
        rejected = 0
    elif kind == "ingest":  # the CLI, into a fresh workspace
        workspace = OUT / f"ws-{os.getpid()}"
        command = [sys.executable, "-m", "minewatch", "ingest", "-w", str(workspace), "-q", path]
        if path.endswith(".parquet"):  # the canonical names; an explicit mapping, so older trees read it too
            command += ["--map", ",".join(f"{name}={name}" for name in _canonical_columns(path))]
        try:
            subprocess.run(command, check=True)
            seconds = time.perf_counter() - started
            import pyarrow.parquet as pq

            records = sum(pq.ParquetFile(part).metadata.num_rows for part in workspace.glob("tables/flows/*/*/*.parquet"))
            rejects = list(workspace.glob("rejects/*.jsonl"))
            rejected = sum(len(part.read_text().splitlines()) for part in rejects)
        finally:
            shutil.rmtree(workspace, ignore_errors=True)
        return {"records": records, "rejected": rejected, "seconds": seconds}
    else:  # bare pyarrow.csv, threaded, every column as text
        import pyarrow as pa
        import pyarrow.csv as pcsv

        rejected = 0
        zeek = kind == "pyarrow-tsv"
        with open(path, "rb") as f:
            first = f.readline().decode()
            names = ZEEK_FIELDS if zeek else first.strip().split(",")
        read_options = pcsv.ReadOptions(block_size=8 << 20, use_threads=True, column_names=names,
                                        skip_rows=8 if zeek else 1)
        parse_options = pcsv.ParseOptions(delimiter="\t" if zeek else ",", quote_char=False,
                                          invalid_row_handler=lambda row: "skip")
        convert_options = pcsv.ConvertOptions(column_types={n: pa.string() for n in names})
        for batch in pcsv.open_csv(path, read_options=read_options, parse_options=parse_options,
                                   convert_options=convert_options):
            records += batch.num_rows
    return {"records": records, "rejected": rejected, "seconds": time.perf_counter() - started}


def _canonical_columns(path: str) -> list[str]:
    import pyarrow.parquet as pq

    from minewatch.sources.tabular import MAPPABLE

    return [name for name in pq.read_schema(path).names if name in MAPPABLE]


def generate_parquet(path: Path, rows: int) -> None:
    """Canonical FLOWS columns (as a workspace export or another tool writes them): the
    generator of bench/behaviour_speed.py, row groups of 122,880 rows."""
    sys.path.insert(0, str(HERE))
    from behaviour_speed import generate

    generate(path, rows)


def measure(kind: str, path: Path, src: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src))
    process = subprocess.Popen([sys.executable, __file__, "--run", kind, str(path)], stdout=subprocess.PIPE, env=env)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{kind} failed (status {status})")
    result = json.loads(output)
    result["peak_rss_mib"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    result["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return result


def _generate(kind: str, path: Path, rows: int) -> None:
    """In a child process, so that DuckDB's memory does not count in the readers' peak RSS
    (Linux carries a parent's max RSS over fork into its children)."""
    subprocess.run([sys.executable, __file__, "--generate", kind, str(path), str(rows)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nfdump-rows", type=int, default=5_000_000)
    parser.add_argument("--zeek-rows", type=int, default=2_000_000)
    parser.add_argument("--parquet-rows", type=int, default=5_000_000)
    parser.add_argument("--only", choices=("nfdump", "zeek", "parquet"), help="measure one format only")
    parser.add_argument("--duckdb", action="store_true",
                        help="also time DuckDB reading the FLOWS columns of the nfdump file into a table")
    parser.add_argument("--ingest", action="store_true",
                        help="also time `minewatch ingest` of the nfdump file (vs DuckDB CSV -> Parquet)")
    parser.add_argument("--repeat", type=int, default=1, help="run the whole set this many times")
    parser.add_argument("--src", type=Path, default=REPO / "src",
                        help="the source tree whose readers are measured (another checkout, for before/after)")
    parser.add_argument("--run", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--generate", nargs=3, metavar=("KIND", "PATH", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_one(*args.run)))
        return
    if args.generate:
        kind, path, rows = args.generate
        {"nfdump": generate_nfdump, "zeek": generate_zeek, "parquet": generate_parquet}[kind](Path(path), int(rows))
        return
    OUT.mkdir(exist_ok=True)
    jobs = []
    if args.only in (None, "nfdump"):
        path = OUT / f"nfdump17_{args.nfdump_rows}.csv"
        if not path.exists():
            print(f"generating {path} ...", flush=True)
            _generate("nfdump", path, args.nfdump_rows)
        jobs.append(("nfdump", "pyarrow-csv", path))
        if args.duckdb:
            jobs.append(("duckdb-table", "pyarrow-csv", path))
        if args.ingest:
            jobs.append(("ingest", "duckdb-parquet", path))
    if args.only in (None, "parquet") and args.ingest:
        path = OUT / f"canonical_flows_{args.parquet_rows}.parquet"
        if not path.exists():
            print(f"generating {path} ...", flush=True)
            _generate("parquet", path, args.parquet_rows)
        jobs.append(("ingest", "duckdb-copy", path))
    if args.only in (None, "zeek"):
        path = OUT / f"zeek_conn_{args.zeek_rows}.log"
        if not path.exists():
            print(f"generating {path} ...", flush=True)
            _generate("zeek", path, args.zeek_rows)
        jobs.append(("zeek", "pyarrow-tsv", path))
    print(f"{'run':<4}{'reader':<15}{'file':<28}{'MiB':>7}{'records':>11}{'rejected':>9}{'seconds':>9}"
          f"{'records/s':>12}{'CPU s':>8}{'rec/CPU-s':>11}{'peak RSS MiB':>14}{'vs ref':>8}")
    for run in range(1, args.repeat + 1):
        for reader, bare, path in jobs:
            size = path.stat().st_size / (1 << 20)
            reference = measure(bare, path, args.src)
            result = measure(reader, path, args.src)
            for name, r in ((bare, reference), (reader, result)):
                rate = r["records"] / r["seconds"]
                ratio = rate / (reference["records"] / reference["seconds"])
                print(f"{run:<4}{name:<15}{path.name:<28}{size:>7.0f}{r['records']:>11}{r['rejected']:>9}"
                      f"{r['seconds']:>9.2f}{rate:>12,.0f}{r['cpu_seconds']:>8.1f}"
                      f"{r['records'] / r['cpu_seconds']:>11,.0f}{r['peak_rss_mib']:>14.0f}{ratio:>8.2f}", flush=True)


if __name__ == "__main__":
    main()

"""`make bench`: every benchmark and evaluation, one after the other. Speed is printed as
ratios to a reference measured in the same run (ndpiReader, a bare DuckDB scan), never
compared with a constant; evaluations print their recall / false-positive tables."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = [
    ("pcap_bench.py", []),  # minewatch scan vs ndpiReader on 1M and 2M packets
    ("ingest_bench.py", ["--duckdb", "--ingest"]),  # readers and `minewatch ingest` vs pyarrow / DuckDB
    ("behaviour_speed.py", ["--rows", "50000000", "--engine"]),  # SQL detectors vs a bare scan, 50 M flows
    ("spark_bench.py", []),  # the SQL detector set on DuckDB and on Spark local mode (3 M flows)
    ("power_bench.py", ["--meters", "1000000", "--days", "30"]),
    ("power_eval.py", ["--out", str(HERE / "out" / "power_eval.md")]),
    # the flow-behaviour detector on the real corpus, the bundled TLS replay and the Argus exports
    ("behaviour_eval.py", ["--replay-pcap", str(HERE.parent / "tests" / "data" / "behaviour" / "replay_tls_stratum.pcap")]),
]


def main() -> int:
    status = 0
    (HERE / "out").mkdir(exist_ok=True)
    for name, args in BENCHES:
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n=== {name} {' '.join(args)} ===", flush=True)
        status |= subprocess.call([sys.executable, str(script), *args])
    return status


if __name__ == "__main__":
    sys.exit(main())

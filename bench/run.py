"""`make bench`: every benchmark, each printing its numbers as ratios to a reference
measured in the same run (never absolute timings compared with a constant)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ["pcap_bench.py", "power_bench.py"]


def main() -> int:
    status = 0
    for name in BENCHES:
        script = HERE / name
        if not script.exists():
            continue
        print(f"\n=== {name} ===", flush=True)
        status |= subprocess.call([sys.executable, str(script), *sys.argv[1:]])
    return status


if __name__ == "__main__":
    sys.exit(main())

"""Packets per second and peak memory: ndpiReader against minewatch on the same captures.

    python bench/make_capture.py /tmp/bench-1m.pcap --packets 1000000
    python bench/make_capture.py /tmp/bench-2m.pcap --packets 2000000
    python bench/pcap_bench.py /tmp/bench-1m.pcap /tmp/bench-2m.pcap

For each capture it runs, one after the other (never in parallel):
  ndpiReader   `ndpiReader -i CAPTURE -q`            (Debian package libndpi-bin)
  scan         `minewatch scan CAPTURE --output /dev/null --quiet`   (the whole pipeline)
  reader       the compiled flow reader alone, driven from `python -c`
Wall time and peak RSS come from wait4() on the child, like /usr/bin/time -v.
Nothing is installed here; a tool that is missing is reported and skipped.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = REPO / ".venv" / "bin"
READER_LOOP = (
    "import sys\n"
    "from minewatch.sources import ReadStats\n"
    "from minewatch.sources.pcap import read_pcap\n"
    "stats = ReadStats(sys.argv[1])\n"
    "rows = sum(b.num_rows for b in read_pcap(sys.argv[1], stats=stats))\n"
    "print(stats.packets_read, rows)\n"
)


def run_measured(cmd: list[str], env: dict) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS in MB, exit code, stdout) of one child process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout = out.read().decode(errors="replace")
        if code:
            tail = err.read().decode(errors="replace").strip()[-500:]
            sys.stderr.write(f"{' '.join(cmd)} exited {code}: {tail}\n")
    return wall, usage.ru_maxrss / 1024, code, stdout


def minewatch_command() -> list[str] | None:
    if (VENV_BIN / "minewatch").exists():
        return [str(VENV_BIN / "minewatch")]
    if (REPO / "src" / "minewatch" / "cli.py").exists():
        return [str(VENV_BIN / "python"), "-m", "minewatch"]
    return None


def default_captures() -> list[Path]:
    """1M and 2M packets (the 2M one shows whether memory grows with the input)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_capture import build

    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for millions in (1, 2):
        path = out / f"capture-{millions}m.pcap"
        if not path.exists():
            print(f"building {path} from the corpus ...", file=sys.stderr, flush=True)
            build(path, millions * 1_000_000)
        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("captures", nargs="*", type=Path,
                    help="default: bench/out/capture-1m.pcap and capture-2m.pcap, built from the corpus if absent")
    ap.add_argument("--ndpi-reader", default=shutil.which("ndpiReader") or "/usr/bin/ndpiReader")
    ap.add_argument("--skip-scan", action="store_true", help="measure only ndpiReader and the reader")
    args = ap.parse_args()

    if not args.captures:
        args.captures = default_captures()
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    python = str(VENV_BIN / "python")
    results = []
    for capture in args.captures:
        wall, peak, rc, out = run_measured([python, "-c", READER_LOOP, str(capture)], env)
        if rc:
            sys.exit(f"the reader failed on {capture}")
        packets, flows = (int(x) for x in out.split())
        size_mb = capture.stat().st_size / 1e6
        print(f"{capture}: {packets:,} packets, {flows:,} flows, {size_mb:.0f} MB", file=sys.stderr)
        runs = []
        if Path(args.ndpi_reader).exists():
            runs.append(("ndpiReader", [args.ndpi_reader, "-i", str(capture), "-q"]))
        else:
            print(f"ndpiReader not found at {args.ndpi_reader} (apt-get install libndpi-bin)", file=sys.stderr)
        scan = minewatch_command()
        if scan and not args.skip_scan:
            runs.append(("minewatch scan", scan + ["scan", str(capture), "--output", "/dev/null", "--quiet"]))
        measured = {"reader only": (wall, peak, rc)}
        for name, cmd in runs:
            measured[name] = run_measured(cmd, env)[:3]
        for name, (wall, peak, rc) in measured.items():
            results.append((capture.name, name, packets, wall, peak, rc))

    base = {cap: packets / wall for cap, name, packets, wall, _, rc in results if name == "ndpiReader" and not rc}
    header = f"{'capture':<18} {'tool':<15} {'packets':>10} {'wall s':>7} {'packets/s':>11} {'peak MB':>8} {'vs ndpiReader':>13}"
    print(header)
    print("-" * len(header))
    for cap, name, packets, wall, peak, rc in results:
        rate = packets / wall
        ratio = f"{rate / base[cap]:.2f}x" if cap in base else "-"
        flag = "" if not rc else f"  (exit {rc})"
        print(f"{cap:<18} {name:<15} {packets:>10,} {wall:>7.2f} {rate:>11,.0f} {peak:>8.0f} {ratio:>13}{flag}")


if __name__ == "__main__":
    main()

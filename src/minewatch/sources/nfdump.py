"""NetFlow/IPFIX collected by nfcapd -> flows.

Two inputs:
- binary nfcapd files, decoded by the `nfdump` program (Debian package `nfdump`),
  run as `nfdump -r FILE -q -N -6 -o fmt:...` with TZ=UTC and read as it streams.
  A fixed `fmt:` is used rather than `-o csv` because nfdump 1.7.1's CSV cuts times to
  whole seconds and its `%ter` is wrong; `%ts`/`%te` keep milliseconds.
- CSV exports (`nfdump -o csv`, versions 1.6 and 1.7: header ts,te,td,sa,da,sp,dp,pr,
  flg,...,ipkt,ibyt,opkt,obyt,...; the `Summary` trailer is skipped), read directly.
  nfdump writes local time without a zone; it is taken as `naive_tz` (default UTC).

NetFlow records are one direction each: `ipkt/ibyt` are the src side; `opkt/obyt`
(non-zero only for bidirectional NSEL/IPFIX records) the dst side. Bytes are IP bytes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from minewatch.errors import InputError
from minewatch.sources._records import BATCH_ROWS, Batch, SourceStats, looks_binary, open_input, too_broken
from minewatch.sources.tabular import _stream_csv, read_flow_csv

NFCAPD_MAGIC = b"\x0c\xa5"  # 0xA50C, little endian, at the start of every nfcapd file
# canonical column -> names it has in the CSV headers of the nfdump versions seen
CSV_NAMES = {
    "ts_start": ("ts", "firstseen", "first", "tstart"),
    "ts_end": ("te", "lastseen", "last", "tend"),
    "src_ip": ("sa", "srcaddr", "src_addr", "srcip"),
    "dst_ip": ("da", "dstaddr", "dst_addr", "dstip"),
    "src_port": ("sp", "srcport", "src_port"),
    "dst_port": ("dp", "dstport", "dst_port"),
    "ip_proto": ("pr", "proto", "protocol"),
    "src_tcp_flags": ("flg", "flags", "tcpflags", "tcp_flags"),
    "src_packets": ("ipkt", "packets", "in_packets", "pkt"),
    "src_bytes": ("ibyt", "bytes", "in_bytes", "byt"),
    "dst_packets": ("opkt", "out_packets"),
    "dst_bytes": ("obyt", "out_bytes"),
    "vlan_id": ("svln", "src_vlan"),
}
FMT_COLUMNS = ["ts", "te", "pr", "sa", "da", "sp", "dp", "flg", "ipkt", "ibyt", "opkt", "obyt", "svln"]
FMT = "fmt:" + ",".join(f"%{c}" for c in FMT_COLUMNS)


def is_nfcapd_file(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == NFCAPD_MAGIC
    except OSError:
        return False


def read_nfdump(
    path: str | Path,
    *,
    stats: SourceStats,
    batch_rows: int = BATCH_ROWS,
    naive_tz: str = "UTC",
    nfdump_program: str = "nfdump",
) -> Iterator[Batch]:
    """Yield ("flows", batch) for an nfcapd binary file or an nfdump CSV export."""
    with open_input(path) as f:
        head = f.read(65536)
    if head[:2] == NFCAPD_MAGIC:
        stats.reader = "nfdump-binary"
        yield from _read_binary(path, stats, batch_rows, nfdump_program)
    elif looks_binary(head):
        raise InputError(path, "binary data that is neither an nfcapd file nor CSV", "byte 0")
    else:
        stats.reader = "nfdump-csv"
        if not head.strip():
            stats.note("empty file")
            return
        header = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
        mapping = csv_mapping(header.split(","))
        if "ts_start" not in mapping or "src_ip" not in mapping or "dst_ip" not in mapping:
            raise InputError(path, f"not an nfdump CSV export: the header lacks ts/sa/da ({header[:80]!r})", "line 1")
        stats.note(f"nfdump CSV times carry no zone (nfdump prints its local time): read as {naive_tz}")
        yield from read_flow_csv(path, mapping, stats=stats, naive_tz=naive_tz, batch_rows=batch_rows,
                                 trailer_marker="Summary", note_naive=False)
    too_broken(stats, path, "nfdump file")


def csv_mapping(header: list[str]) -> dict[str, str]:
    """Canonical -> source column for an nfdump CSV header (any of the known spellings)."""
    by_lower = {name.strip().lower(): name.strip() for name in header}
    mapping = {}
    for canonical, names in CSV_NAMES.items():
        for name in names:
            if name in by_lower:
                mapping[canonical] = by_lower[name]
                break
    if "ts_end" not in mapping and "td" in by_lower:
        mapping["duration"] = by_lower["td"]
    return mapping


def _read_binary(path, stats: SourceStats, batch_rows: int, program: str) -> Iterator[Batch]:
    executable = shutil.which(program)
    if executable is None:
        raise InputError(path, f"the {program} program is needed for nfcapd files (Debian package nfdump)")
    mapping = csv_mapping(FMT_COLUMNS)
    env = dict(os.environ, TZ="UTC", LC_ALL="C")
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            [executable, "-r", str(path), "-q", "-N", "-6", "-o", FMT],
            stdout=subprocess.PIPE, stderr=errors, stdin=subprocess.DEVNULL, env=env,
        )
        try:
            yield from _stream_csv(process.stdout, path, FMT_COLUMNS, mapping, stats, "auto", "UTC",
                                   ",", batch_rows, "No matching flows", header_lines=0, note_naive=False)
        finally:
            if process.poll() is None:
                process.kill()  # the caller stopped early
            code = process.wait()
            errors.seek(0)
            message = errors.read().decode("utf-8", "replace").strip()
    if code != 0:
        reason = f"nfdump failed (exit {code}): {message.splitlines()[-1] if message else 'no message'}"
        if stats.accepted_total == 0:
            raise InputError(path, reason)
        stats.reject(0, reason, message[:2000])
    elif "error" in message.lower():  # a cut or corrupt file: nfdump reads what it can, exits 0
        stats.reject(0, f"nfdump: {message.splitlines()[-1][:200]}", message[:2000])
    elif message:
        stats.note(f"nfdump said: {message.splitlines()[-1][:200]}")

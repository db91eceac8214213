"""Packet captures (pcap, pcapng) -> FLOWS record batches, through the compiled reader.

The per-packet work (decoding, flow table, payload heads) is done in C by
`_fastpcap`; this module only wraps its column buffers into Arrow arrays, so Python
does per-batch work, never per-packet work. Link types the compiled reader lacks
raise `UnsupportedCapture`, which the caller answers by using nfstream instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa

from minewatch.errors import InputError
from minewatch.schema.flows import FLOWS, TS
from minewatch.sources import ReadStats

try:
    from minewatch.sources import _fastpcap
except ImportError:  # extension not built: every capture goes to nfstream
    _fastpcap = None

CAPTURE_MAGICS = {
    b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4",  # pcap, microseconds
    b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",  # pcap, nanoseconds
    b"\x0a\x0d\x0d\x0a",  # pcapng section header
}
L4_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
PORT_PROTOCOLS = np.array([6, 17, 132, 136], dtype=np.int16)
PROGRESS_STEP = 8 << 20  # bytes of input between progress callbacks


class UnsupportedCapture(InputError):
    """A valid capture whose link type the compiled reader cannot decode."""


def is_capture_file(path: str | Path) -> bool:
    """True when the file starts with a pcap or pcapng magic number."""
    try:
        with open(path, "rb") as f:
            return f.read(4) in CAPTURE_MAGICS
    except OSError:
        return False


def read_pcap(
    path: str | Path,
    *,
    stats: ReadStats,
    batch_rows: int = 65536,
    payload_bytes: int = 2048,
    payload_packets: int = 16,
    idle_timeout: float = 600.0,  # mining connections sit idle for minutes between jobs
    active_timeout: float = 1800.0,
    on_progress: Callable[[int], None] | None = None,
    source_name: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield FLOWS batches for one capture file; fills `stats` as it goes.
    `source_name` (default: the path) is what the flows' source_file says.

    A file cut short ends the read with the flows seen so far and `stats.error` set.
    """
    stats.reader = "fast"
    if _fastpcap is None:
        raise UnsupportedCapture(path, "compiled pcap reader is not built")
    # keep one batch's payload heads well under the 2 GiB of int32 offsets
    batch_rows = max(1, min(batch_rows, (1 << 30) // max(1, 2 * payload_bytes)))
    try:
        reader = _fastpcap.Reader(
            str(path), payload_bytes, payload_packets, float(idle_timeout), float(active_timeout)
        )
    except _fastpcap.UnsupportedLinkType as e:
        raise UnsupportedCapture(path, str(e), "byte 20") from None
    except _fastpcap.FormatError as e:
        raise InputError(path, str(e), "byte 0") from None
    except OSError as e:
        raise InputError(path, e.strerror or str(e)) from None

    stats.bytes_total = reader.bytes_total
    source = source_name or str(path)
    next_progress = PROGRESS_STEP
    while True:
        columns = reader.read(batch_rows, PROGRESS_STEP)
        if columns is None:
            break
        _update_stats(stats, reader)
        if columns["rows"]:
            yield _to_batch(columns, source)
        if on_progress and (reader.bytes_read >= next_progress or reader.done):
            on_progress(reader.bytes_read)
            next_progress = reader.bytes_read + PROGRESS_STEP
        if reader.done:
            break
    _update_stats(stats, reader)
    if reader.error:
        stats.error = reader.error  # the caller names the file
    only_unsupported = stats.packets_skipped.get("unsupported_link_type", 0)
    if stats.flows == 0 and only_unsupported and only_unsupported == stats.packets_read:
        raise UnsupportedCapture(path, "no interface has a link type the fast reader decodes")


def _update_stats(stats: ReadStats, reader) -> None:
    stats.bytes_read = reader.bytes_read
    stats.packets_read = reader.packets_read
    stats.flows = reader.flows
    stats.packets_skipped.clear()
    stats.packets_skipped.update(reader.skipped)


def _buffer(data) -> pa.Buffer:
    return pa.py_buffer(data)


def _fixed(buf, arrow_type: pa.DataType, rows: int, valid: np.ndarray | None = None) -> pa.Array:
    """Wrap packed values without copying; `valid` (bool per row) becomes the null bitmap.

    Only Array.from_buffers is used: pa.array() would import pandas (slow, large).
    """
    bitmap = None if valid is None else _buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(arrow_type, rows, [bitmap, _buffer(buf)])


def _variable(offsets: bytes, data: bytes, arrow_type: pa.DataType, rows: int) -> pa.Array:
    return pa.Array.from_buffers(arrow_type, rows, [None, _buffer(offsets), _buffer(data)])


def _repeat(labels: list[str], indices: np.ndarray) -> pa.Array:
    """labels[indices] as a string array."""
    rows = len(indices)
    index_array = _fixed(indices.astype(np.int32), pa.int32(), rows)
    encoded = [label.encode() for label in labels]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(e) for e in encoded])
    dictionary = _variable(offsets, b"".join(encoded), pa.string(), len(encoded))
    return dictionary.take(index_array)


def _l4_names(protos: np.ndarray) -> pa.Array:
    values, inverse = np.unique(protos, return_inverse=True)
    return _repeat([L4_NAMES.get(int(v), str(int(v))) for v in values], inverse)


def _to_batch(c: dict, source: str) -> pa.RecordBatch:
    n = c["rows"]
    protos = np.frombuffer(c["ip_proto"], dtype=np.int16)
    has_ports = np.isin(protos, PORT_PROTOCOLS)
    has_vlan = np.frombuffer(c["vlan_id"], dtype=np.int32) >= 0
    has_iat = np.frombuffer(c["src_iat_count"], dtype=np.int64) > 0
    i64 = pa.int64()
    columns = {
        "source_file": _repeat([source], np.zeros(n, dtype=np.int32)),
        "flow_ref": _fixed(c["flow_ref"], i64, n),
        "ts_start": _fixed(c["ts_start"], TS, n),
        "ts_end": _fixed(c["ts_end"], TS, n),
        "src_ip": _variable(c["src_ip_offsets"], c["src_ip_data"], pa.string(), n),
        "src_port": _fixed(c["src_port"], pa.int32(), n, has_ports),
        "dst_ip": _variable(c["dst_ip_offsets"], c["dst_ip_data"], pa.string(), n),
        "dst_port": _fixed(c["dst_port"], pa.int32(), n, has_ports),
        "ip_proto": _fixed(c["ip_proto"], pa.int16(), n),
        "l4": _l4_names(protos),
        "vlan_id": _fixed(c["vlan_id"], pa.int32(), n, has_vlan),
        "src_packets": _fixed(c["src_packets"], i64, n),
        "dst_packets": _fixed(c["dst_packets"], i64, n),
        "src_bytes": _fixed(c["src_bytes"], i64, n),
        "dst_bytes": _fixed(c["dst_bytes"], i64, n),
        "src_payload_packets": _fixed(c["src_payload_packets"], i64, n),
        "dst_payload_packets": _fixed(c["dst_payload_packets"], i64, n),
        "src_payload_bytes": _fixed(c["src_payload_bytes"], i64, n),
        "dst_payload_bytes": _fixed(c["dst_payload_bytes"], i64, n),
        "src_tcp_flags": _fixed(c["src_tcp_flags"], pa.uint8(), n),
        "dst_tcp_flags": _fixed(c["dst_tcp_flags"], pa.uint8(), n),
        "src_payload_head": _variable(c["src_head_offsets"], c["src_head_data"], pa.binary(), n),
        "dst_payload_head": _variable(c["dst_head_offsets"], c["dst_head_data"], pa.binary(), n),
        "src_iat_mean_ms": _fixed(c["src_iat_mean_ms"], pa.float64(), n, has_iat),
        "src_iat_std_ms": _fixed(c["src_iat_std_ms"], pa.float64(), n, has_iat),
        "app_protocol": pa.nulls(n, pa.string()),
    }
    for side in ("src", "dst"):
        msgs = np.frombuffer(c[f"{side}_msgs"], dtype=np.int64)
        has_msgs, has_intervals = msgs > 0, msgs > 1
        columns[f"{side}_msgs"] = _fixed(c[f"{side}_msgs"], i64, n)
        for name, valid in (("msg_size_mean", has_msgs), ("msg_size_std", has_msgs),
                            ("msg_iat_mean_ms", has_intervals), ("msg_iat_std_ms", has_intervals)):
            columns[f"{side}_{name}"] = _fixed(c[f"{side}_{name}"], pa.float64(), n, valid)
    return pa.RecordBatch.from_arrays([columns[f.name] for f in FLOWS], schema=FLOWS)

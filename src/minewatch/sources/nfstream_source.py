"""Captures and live interfaces -> FLOWS record batches through nfstream (nDPI).

Slower than the compiled reader (pcap.py) but it labels flows with nDPI's
application name and reads live interfaces and link types the compiled reader lacks.
A small NFPlugin keeps, per direction, the first payload bytes in TCP sequence
order, the TCP flags, payload counters and the inter-arrival times of
payload packets and the application messages of each side (payload packets less than
5 ms apart merged, as in the compiled reader; times in nfstream are whole milliseconds),
so rows match those of the compiled reader.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pyarrow as pa

from minewatch.errors import InputError
from minewatch.schema.flows import FLOWS, MESSAGE_GAP_S
from minewatch.sources import ReadStats

L4_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
PORT_PROTOCOLS = {6, 17, 132, 136}
FLAG_BITS = (("fin", 1), ("syn", 2), ("rst", 4), ("psh", 8), ("ack", 16), ("urg", 32),
             ("ece", 64), ("cwr", 128))


def _payload_heads_plugin(payload_bytes: int, payload_packets: int):
    from nfstream import NFPlugin  # imported lazily: nfstream starts slowly

    class PayloadHeads(NFPlugin):
        """Per-direction payload heads and counters, stored in flow.udps."""

        def on_init(self, packet, flow):
            u = flow.udps
            u.mw_heads = [bytearray(), bytearray()]
            u.mw_head_pkts = [0, 0]
            u.mw_next_seq = [None, None]
            u.mw_pl_packets = [0, 0]
            u.mw_pl_bytes = [0, 0]
            u.mw_flags = [0, 0]
            u.mw_iat = [[0, 0.0, 0.0], [0, 0.0, 0.0]]  # per side: count, mean, M2 (Welford), ms
            u.mw_last_payload = [None, None]
            u.mw_msgs = [_Messages(), _Messages()]
            # a flow first seen at its SYN+ACK was started by the other side
            u.mw_swap = bool(packet.protocol == 6 and packet.syn and packet.ack)
            self.on_update(packet, flow)

        def on_update(self, packet, flow):
            u = flow.udps
            side = packet.direction
            flags = 0
            if packet.protocol == 6:
                for name, bit in FLAG_BITS:
                    if getattr(packet, name):
                        flags |= bit
            u.mw_flags[side] |= flags
            size = packet.payload_size
            if not size:
                if flags & 2:
                    seq = _tcp_seq(packet)
                    if seq is not None:
                        u.mw_next_seq[side] = (seq + 1) & 0xFFFFFFFF
                return
            u.mw_pl_packets[side] += 1
            u.mw_pl_bytes[side] += size
            if u.mw_last_payload[side] is not None:
                _welford(u.mw_iat[side], packet.time - u.mw_last_payload[side])
            u.mw_last_payload[side] = packet.time
            u.mw_msgs[side].add(packet.time, size)
            head = u.mw_heads[side]
            if u.mw_head_pkts[side] >= payload_packets or len(head) >= payload_bytes:
                return
            start = packet.ip_size - size
            data = packet.ip_packet[start:start + size] if start >= 0 else b""
            if packet.protocol == 6:
                seq = _tcp_seq(packet)
                expected = u.mw_next_seq[side]
                if seq is not None:
                    if expected is not None:
                        diff = ((seq - expected + 0x80000000) & 0xFFFFFFFF) - 0x80000000
                        if diff + size <= 0:
                            return  # retransmission of bytes already kept
                        if diff < 0:
                            data = data[-diff:]  # keep only the new bytes
                    u.mw_next_seq[side] = (seq + size) & 0xFFFFFFFF
            u.mw_head_pkts[side] += 1
            head += data[: payload_bytes - len(head)]

    return PayloadHeads()


class _Messages:
    """Application messages of one side: payload packets closer than MESSAGE_GAP_S
    merged; Welford sums of message sizes and of intervals between message starts."""

    __slots__ = ("count", "start_ms", "last_ms", "open_bytes", "size", "interval")
    GAP_MS = MESSAGE_GAP_S * 1000

    def __init__(self) -> None:
        self.count, self.start_ms, self.last_ms, self.open_bytes = 0, 0, 0, 0
        self.size = [0, 0.0, 0.0]  # count, mean, M2 of finished messages (bytes)
        self.interval = [0, 0.0, 0.0]  # of intervals between message starts (ms)

    def add(self, time_ms: int, size: int) -> None:
        if self.count == 0 or time_ms - self.last_ms > self.GAP_MS:
            if self.count:
                _welford(self.size, self.open_bytes)
                _welford(self.interval, max(time_ms - self.start_ms, 0))
            self.count += 1
            self.start_ms, self.open_bytes = time_ms, 0
        self.open_bytes += size
        self.last_ms = max(self.last_ms, time_ms) if self.count > 1 else time_ms

    def columns(self, side: str) -> dict:
        size = list(self.size)
        if self.count:
            _welford(size, self.open_bytes)  # the last message is finished by the flow's end
        n_size, n_iat = size[0], self.interval[0]
        return {
            f"{side}_msgs": self.count,
            f"{side}_msg_size_mean": size[1] if n_size else None,
            f"{side}_msg_size_std": math.sqrt(size[2] / n_size) if n_size else None,
            f"{side}_msg_iat_mean_ms": float(self.interval[1]) if n_iat else None,
            f"{side}_msg_iat_std_ms": math.sqrt(self.interval[2] / n_iat) if n_iat else None,
        }


def _tcp_seq(packet) -> int | None:
    off = packet.ip_size - packet.transport_size
    raw = packet.ip_packet
    if off < 20 or len(raw) < off + 8:
        return None
    return int.from_bytes(raw[off + 4:off + 8], "big")


def _welford(acc: list, x: float) -> None:
    acc[0] += 1
    d = x - acc[1]
    acc[1] += d / acc[0]
    acc[2] += d * (x - acc[1])


def _row(flow, source: str, ref: int) -> dict:
    u = flow.udps
    src, dst = (1, 0) if u.mw_swap else (0, 1)
    dirs = ("src2dst", "dst2src")
    ports = flow.protocol in PORT_PROTOCOLS
    iat_n, iat_mean, iat_m2 = u.mw_iat[src]
    row = {
        "source_file": source,
        "flow_ref": ref,
        "ts_start": flow.bidirectional_first_seen_ms * 1000,
        "ts_end": flow.bidirectional_last_seen_ms * 1000,
        "src_ip": flow.dst_ip if u.mw_swap else flow.src_ip,
        "dst_ip": flow.src_ip if u.mw_swap else flow.dst_ip,
        "src_port": (flow.dst_port if u.mw_swap else flow.src_port) if ports else None,
        "dst_port": (flow.src_port if u.mw_swap else flow.dst_port) if ports else None,
        "ip_proto": flow.protocol,
        "l4": L4_NAMES.get(flow.protocol, str(flow.protocol)),
        "vlan_id": flow.vlan_id or None,
        "src_iat_mean_ms": iat_mean if iat_n else None,
        "src_iat_std_ms": math.sqrt(iat_m2 / iat_n) if iat_n else None,
        "app_protocol": flow.application_name or None,
    }
    for name, side in (("src", src), ("dst", dst)):
        d = dirs[side]
        row[f"{name}_packets"] = getattr(flow, f"{d}_packets")
        row[f"{name}_bytes"] = getattr(flow, f"{d}_bytes")
        row[f"{name}_payload_packets"] = u.mw_pl_packets[side]
        row[f"{name}_payload_bytes"] = u.mw_pl_bytes[side]
        row[f"{name}_tcp_flags"] = u.mw_flags[side]
        row[f"{name}_payload_head"] = bytes(u.mw_heads[side])
        row.update(u.mw_msgs[side].columns(name))
    return row


def _to_batch(rows: list[dict]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=FLOWS)


def _live_flows(streamer, duration: float) -> Iterator:
    """Flows of a live capture until `duration` seconds have passed.

    NFStreamer has no stop call: it runs in a daemon thread, and flows still
    active at the deadline are not reported.
    """
    out: queue.Queue = queue.Queue(maxsize=10000)
    done = object()

    def pump():
        try:
            for flow in streamer:
                out.put(flow)
        except Exception as e:  # reported to the consumer
            out.put(e)
        out.put(done)

    threading.Thread(target=pump, daemon=True, name="nfstream-live").start()
    deadline = time.monotonic() + duration
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = out.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        if item is done:
            return
        if isinstance(item, Exception):
            raise item
        yield item


def read_nfstream(
    source: str | Path,
    *,
    stats: ReadStats,
    live: bool = False,
    duration: float | None = None,
    batch_rows: int = 8192,
    payload_bytes: int = 2048,
    payload_packets: int = 16,
    idle_timeout: float = 600.0,  # mining connections sit idle for minutes between jobs
    active_timeout: float = 1800.0,
    on_progress: Callable[[int], None] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Yield FLOWS batches for a capture file, or a live interface when `live`."""
    stats.reader = "nfstream"
    source_name = str(source)
    if not live:
        try:
            stats.bytes_total = os.path.getsize(source)
        except OSError as e:
            raise InputError(source, e.strerror or str(e)) from None
    try:
        from nfstream import NFStreamer

        streamer = NFStreamer(
            source=source_name,
            decode_tunnels=True,
            snapshot_length=65535,
            idle_timeout=max(1, int(idle_timeout)),
            active_timeout=max(1, int(active_timeout)),
            accounting_mode=1,  # IP bytes, as the schema says
            udps=_payload_heads_plugin(payload_bytes, payload_packets),
            n_dissections=20,
        )
    except ValueError as e:
        raise InputError(source, _one_line(e)) from None

    flows = _live_flows(streamer, duration) if live and duration else iter(streamer)
    rows: list[dict] = []
    try:
        for ref, flow in enumerate(flows):
            rows.append(_row(flow, source_name, ref))
            stats.flows += 1
            stats.packets_read += flow.bidirectional_packets
            if len(rows) >= batch_rows:
                yield _to_batch(rows)
                rows = []
    except ValueError as e:
        stats.error = str(InputError(source, _one_line(e)))
        if not rows and stats.flows == 0:
            raise InputError(source, _one_line(e)) from None
    if rows:
        yield _to_batch(rows)
    stats.bytes_read = stats.bytes_total
    if on_progress and not live:
        on_progress(stats.bytes_total)


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__

"""Live capture from a network interface (Linux, root or CAP_NET_RAW).

Packets are read from an AF_PACKET socket by a small thread and streamed as a pcap
through a pipe into the same compiled reader that reads files, so a live scan and a
file scan produce the same flows, and every flow still open when the capture stops
(duration reached, Ctrl-C) is reported.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Iterator

import pyarrow as pa

from minewatch.errors import InputError
from minewatch.sources import ReadStats

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SNAPLEN = 65535
# ARPHRD (from /sys/class/net/IF/type) -> pcap link type of what AF_PACKET/SOCK_RAW delivers
LINK_TYPES = {1: 1, 772: 1, 65534: 101, 512: 101, 776: 101, 778: 101}
LOOPBACK = 772


def _link_type(interface: str) -> tuple[int, bool]:
    try:
        arphrd = int(Path(f"/sys/class/net/{interface}/type").read_text())
    except (OSError, ValueError):
        raise InputError(f"interface:{interface}", "no such network interface") from None
    if arphrd not in LINK_TYPES:
        raise InputError(f"interface:{interface}", f"unsupported interface hardware type {arphrd}")
    return LINK_TYPES[arphrd], arphrd == LOOPBACK


def _open_socket(interface: str) -> socket.socket:
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    except PermissionError:
        raise InputError(f"interface:{interface}", "live capture needs root (or CAP_NET_RAW)") from None
    except (OSError, AttributeError) as exc:
        raise InputError(f"interface:{interface}", f"cannot open a packet socket: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        sock.bind((interface, 0))
    except OSError as exc:
        sock.close()
        raise InputError(f"interface:{interface}", f"cannot capture: {exc.strerror or exc}") from None
    sock.settimeout(0.2)
    return sock


class _Pump(threading.Thread):
    """Reads packets until stopped or the deadline, writing a pcap stream to `fd`."""

    def __init__(self, sock: socket.socket, fd: int, loopback: bool, deadline: float | None, save=None):
        super().__init__(daemon=True, name="minewatch-capture")
        self.sock, self.fd, self.loopback, self.deadline, self.save = sock, fd, loopback, deadline, save
        self.stop = threading.Event()
        self.kernel_drops = 0
        self.error: str | None = None

    def run(self) -> None:
        out = bytearray()
        last_flush = time.monotonic()
        try:
            while not self.stop.is_set() and (self.deadline is None or time.monotonic() < self.deadline):
                try:
                    data, addr = self.sock.recvfrom(SNAPLEN)
                except socket.timeout:
                    data = None
                if data is not None and not (self.loopback and addr[2] == PACKET_OUTGOING):
                    now = time.time_ns() // 1000
                    out += struct.pack("<IIII", now // 1_000_000, now % 1_000_000, len(data), len(data))
                    out += data
                if out and (len(out) >= 1 << 16 or time.monotonic() - last_flush > 0.2):
                    self._write(out)
                    out.clear()
                    last_flush = time.monotonic()
            if out:
                self._write(out)
            stats = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            self.kernel_drops = struct.unpack("II", stats)[1]
        except OSError as exc:
            self.error = f"capture stopped: {exc.strerror or exc}"
        finally:
            self.sock.close()
            os.close(self.fd)
            if self.save is not None:
                self.save.close()

    def _write(self, data: bytearray) -> None:
        if self.save is not None:
            self.save.write(data)  # the raw packets, kept as evidence
        view = memoryview(data)
        while view:  # blocks when the reader lags: back-pressure, no loss here
            view = view[os.write(self.fd, view):]


def capture_interface(
    interface: str,
    *,
    stats: ReadStats,
    duration: float | None = None,
    save_path: str | None = None,
    **reader_options,
) -> Iterator[pa.RecordBatch]:
    """FLOWS batches from a live interface until `duration` seconds pass or Ctrl-C.
    With `save_path`, the packets are also written there as a pcap, and the flows name
    that file as their source (so evidence can point at the raw packets)."""
    from minewatch.sources.pcap import read_pcap

    link_type, loopback = _link_type(interface)
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, link_type)
    save = None
    if save_path:
        try:
            save = open(save_path, "wb")
            save.write(header)
        except OSError as exc:
            raise InputError(save_path, f"cannot write the capture: {exc.strerror or exc}") from None
    sock = _open_socket(interface)
    read_fd, write_fd = os.pipe()
    # The reader reads the file header while holding the GIL: it must be there first.
    os.write(write_fd, header)
    pump = _Pump(sock, write_fd, loopback, time.monotonic() + duration if duration else None, save)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C ends the capture; the flows seen so far are still read and reported.
        previous = signal.signal(signal.SIGINT, lambda *_: pump.stop.set())
    pump.start()
    try:
        with os.fdopen(read_fd, "rb", buffering=0) as pipe:
            yield from read_pcap(f"/dev/fd/{pipe.fileno()}", stats=stats,
                                 source_name=save_path or f"interface:{interface}", **reader_options)
    finally:
        pump.stop.set()
        pump.join(timeout=5)
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        stats.path = f"interface:{interface}"
        stats.reader = "live"
        if pump.kernel_drops:
            stats.packets_skipped["dropped_by_kernel"] += pump.kernel_drops
        if pump.error:
            stats.error = pump.error

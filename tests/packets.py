"""Byte-level builders for small test captures (Ethernet, IP, TCP/UDP, tunnels, pcap, pcapng)."""

from __future__ import annotations

import struct

FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16


def ip4(addr: str) -> bytes:
    return bytes(int(x) for x in addr.split("."))


def ipv4(src: str, dst: str, proto: int, body: bytes, frag_offset: int = 0, more: bool = False) -> bytes:
    frag = (0x2000 if more else 0) | (frag_offset // 8)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, frag, 64, proto, 0,
                       ip4(src), ip4(dst)) + body


def ipv6(src: bytes, dst: bytes, nh: int, body: bytes, ext: bytes = b"", ext_nh: int | None = None) -> bytes:
    first = ext_nh if ext else nh
    return struct.pack("!IHBB16s16s", 6 << 28, len(ext) + len(body), first, 64, src, dst) + ext + body


def tcp(sport: int, dport: int, seq: int, flags: int, payload: bytes = b"", ack: int = 0) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def eth(l3: bytes, ethertype: int = 0x0800, vlans: tuple[int, ...] = ()) -> bytes:
    head = b"\x00\x11\x22\x33\x44\x55" + b"\x66\x77\x88\x99\xaa\xbb"
    for i, vid in enumerate(vlans):
        head += struct.pack("!HH", 0x88A8 if i == 0 and len(vlans) > 1 else 0x8100, vid)
    return head + struct.pack("!H", ethertype) + l3


def sll(l3: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x00" * 8, proto) + l3


def sll2(l3: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", proto, 0, 2, 1, 0, 6, b"\x00" * 8) + l3


def gre(inner: bytes, proto: int = 0x0800) -> bytes:
    return struct.pack("!HH", 0, proto) + inner


def pcap(packets: list[tuple[float, bytes]], linktype: int = 1, big: bool = False, nano: bool = False) -> bytes:
    o = ">" if big else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(o + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for ts, frame in packets:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        out += struct.pack(o + "IIII", sec, frac, len(frame), len(frame)) + frame
    return out


def ng_block(o: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(o + "II", btype, n) + body + struct.pack(o + "I", n)


def pcapng(ifaces: list[tuple[int, int | None]], packets: list[tuple[int, int, bytes]], big: bool = False,
           extra_blocks: bytes = b"") -> bytes:
    """ifaces: (linktype, if_tsresol byte or None); packets: (iface, ts in iface units, frame)."""
    o = ">" if big else "<"
    out = ng_block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    for linktype, tsresol in ifaces:
        opts = b""
        if tsresol is not None:
            opts = struct.pack(o + "HH", 9, 1) + bytes([tsresol]) + b"\x00" * 3 + struct.pack(o + "HH", 0, 0)
        out += ng_block(o, 1, struct.pack(o + "HHI", linktype, 0, 0) + opts)
    out += extra_blocks
    for iface, ts, frame in packets:
        body = struct.pack(o + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame
        out += ng_block(o, 6, body)
    return out



"""Build a large Ethernet pcap for benchmarks from the corpus captures.

The Ethernet pcap files of /work/shared/corpus/ndpi/pcap are laid one after another
(times rebased so the capture runs forward), and the whole set is repeated until the
wanted packet count is reached; each repetition rewrites the IPv4/IPv6 addresses
(two middle bytes shifted by the repetition number) so its flows are new flows.
Checksums are not recomputed (neither reader checks them).

    python bench/make_capture.py /tmp/bench-1m.pcap --packets 1000000
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORPUS = next(
    (p for p in (Path(os.environ.get("MINEWATCH_CORPUS", "/nonexistent")) / "ndpi" / "pcap",
                 REPO.parent / "shared" / "corpus" / "ndpi" / "pcap",
                 Path("/work/shared/corpus/ndpi/pcap")) if p.is_dir()),
    REPO.parent / "shared" / "corpus" / "ndpi" / "pcap",
)
SKIP_WORDS = ("fuzz", "bad", "malformed", "truncated", "invalid", "broken", "garbage")
MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1000), b"\xa1\xb2\xc3\xd4": (">", 1000),
          b"\x4d\x3c\xb2\xa1": ("<", 1), b"\xa1\xb2\x3c\x4d": (">", 1)}
MAX_GAP_NS = 600 * 1_000_000_000


def ethernet_packets(path: Path) -> list[tuple[int, bytes]] | None:
    """(time in ns relative to the first packet, frame) of a classic Ethernet pcap."""
    data = path.read_bytes()
    if len(data) < 24 or data[:4] not in MAGICS:
        return None
    order, ns_per_unit = MAGICS[data[:4]]
    if struct.unpack(order + "I", data[20:24])[0] & 0xFFFF != 1:
        return None
    out, off, prev, rel = [], 24, None, 0
    while off + 16 <= len(data):
        sec, frac, incl, _ = struct.unpack(order + "IIII", data[off:off + 16])
        if incl > 65535 or off + 16 + incl > len(data):
            break
        t = sec * 1_000_000_000 + frac * ns_per_unit
        if prev is not None:  # keep time moving forward, gaps at most 10 minutes
            rel += min(max(0, t - prev), MAX_GAP_NS)
        prev = t
        out.append((rel, data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return out


def shift_addresses(frame: bytes, rep: int) -> bytes:
    """Shift two bytes of each IP address by `rep` (IPv4/IPv6 after Ethernet, one VLAN)."""
    if rep == 0 or len(frame) < 14:
        return frame
    off, etype = 14, frame[12:14]
    if etype == b"\x81\x00" and len(frame) >= 18:
        off, etype = 18, frame[16:18]
    buf = bytearray(frame)
    if etype == b"\x08\x00" and len(frame) >= off + 20:
        spots = (off + 12 + 1, off + 16 + 1)
    elif etype == b"\x86\xdd" and len(frame) >= off + 40:
        spots = (off + 8 + 4, off + 24 + 4)
    else:
        return frame
    for s in spots:
        v = (int.from_bytes(buf[s:s + 2], "big") + rep * 7919) & 0xFFFF
        buf[s:s + 2] = v.to_bytes(2, "big")
    return bytes(buf)


def build(out_path: Path, packets_wanted: int) -> int:
    files = []
    for p in sorted(CORPUS.glob("*.pcap")):
        if any(w in p.name.lower() for w in SKIP_WORDS):
            continue
        pkts = ethernet_packets(p)
        if pkts:
            files.append(pkts)
    per_rep = sum(len(f) for f in files)
    if not per_rep:
        sys.exit(f"no Ethernet pcap found under {CORPUS}")
    written, rep, now = 0, 0, 1_600_000_000 * 1_000_000_000
    with open(out_path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        while written < packets_wanted:
            for pkts in files:
                for rel, frame in pkts:
                    t = now + rel
                    out.write(struct.pack("<IIII", t // 1_000_000_000, t % 1_000_000_000 // 1000,
                                          len(frame), len(frame)))
                    out.write(shift_addresses(frame, rep))
                    written += 1
                    if written >= packets_wanted:
                        return written
                now += pkts[-1][0] + 1_000_000_000  # next file starts 1 s after this one
            rep += 1
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", type=Path)
    ap.add_argument("--packets", type=int, default=1_000_000)
    args = ap.parse_args()
    n = build(args.output, args.packets)
    print(f"{args.output}: {n} packets, {args.output.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

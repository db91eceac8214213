"""Crypto P2P detectors on real packet bytes (from the nDPI corpus, see tests/data/protocols/README.md),
on hand-built messages, and on garbage."""

from __future__ import annotations

import hashlib
import random
import struct
from pathlib import Path

import pytest

from minewatch.detect import Context, Flow
from minewatch.detect.p2p import (
    detect_bitcoin,
    detect_ethereum,
    detect_monero,
    detect_nano,
    discv4_packet,
    keccak256,
    on_secp256k1,
    parse_bitcoin_messages,
)

DATA = Path(__file__).parent / "data" / "protocols"
CTX = Context()


def read(name: str) -> bytes:
    return (DATA / name).read_bytes()


def flow(src: bytes, dst: bytes = b"", l4: str = "TCP", dst_port: int = 8333, src_packets: int = 1) -> Flow:
    return Flow("t.pcap", 1, None, None, "10.0.0.7", 50000, "198.51.100.4", dst_port, 6 if l4 == "TCP" else 17, l4,
                src_payload_packets=src_packets, dst_payload_packets=1 if dst else 0,
                src_payload_head=src, dst_payload_head=dst)


def btc_message(command: str, payload: bytes, magic: str = "f9beb4d9") -> bytes:
    check = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    return bytes.fromhex(magic) + command.encode().ljust(12, b"\0") + struct.pack("<I", len(payload)) + check + payload


def test_keccak256_known_vectors():
    assert keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak256(b"abc").hex() == "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    assert len(keccak256(b"x" * 500)) == 32  # several blocks


def test_secp256k1_point_check():
    gx = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
    gy = "483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8"
    assert on_secp256k1(bytes.fromhex(gx + gy))
    assert not on_secp256k1(bytes.fromhex(gx + gy[:-2] + "b9"))


def test_bitcoin_real_2011_session_old_version_header():
    hit = list(detect_bitcoin(flow(read("bitcoin_55317.src.bin"), read("bitcoin_55317.dst.bin")), CTX))[0]
    assert hit.confidence >= 0.9 and hit.details["network"] == "Bitcoin mainnet"
    assert {"version", "verack"} <= set(hit.details["commands"])
    assert hit.details["src_version"]["protocol_version"] == 32001


def test_bitcoin_modern_message_checksum_and_forks():
    ping = btc_message("ping", struct.pack("<Q", 0x1122334455667788))
    network, msgs, _ = parse_bitcoin_messages(ping + btc_message("pong", b"\0" * 8))
    assert network == "Bitcoin mainnet" and msgs == [("ping", True), ("pong", True)]
    doge = btc_message("inv", b"\x00", magic="c0c0c0c0")
    hit = list(detect_bitcoin(flow(doge, dst_port=22556), CTX))[0]
    assert hit.details["network"] == "Dogecoin mainnet" and hit.category is None
    bad = bytearray(ping)
    bad[-1] ^= 1  # checksum no longer matches: one unverified header is not enough
    assert list(detect_bitcoin(flow(bytes(bad)), CTX)) == []


def test_ethereum_rlpx_handshake_real():
    hit = list(detect_ethereum(flow(read("ethereum_rlpx_56610.src.bin"), read("ethereum_rlpx_56610.dst.bin"),
                                    dst_port=30303), CTX))[0]
    assert hit.details["handshake"] == "eip8" and hit.details["ack_seen"] and hit.confidence >= 0.9


def test_ethereum_discv4_real_two_datagrams():
    data = read("ethereum_discv4.src.bin")
    assert discv4_packet(data, single_datagram=False) is not None
    hit = list(detect_ethereum(flow(data, l4="UDP", dst_port=30303, src_packets=2), CTX))[0]
    assert hit.details["hash_verified"]
    tampered = data[:40] + bytes([data[40] ^ 1]) + data[41:]
    assert list(detect_ethereum(flow(tampered, l4="UDP", src_packets=2), CTX)) == []


def test_monero_levin_real():
    hit = list(detect_monero(flow(read("monero_48882.src.bin"), read("monero_48882.dst.bin"), dst_port=18080), CTX))[0]
    assert hit.details["network"] == "Monero mainnet" and "handshake" in hit.details["commands"]
    assert hit.confidence >= 0.9


def test_nano_handshake_real():
    hit = list(detect_nano(flow(read("nano.src.bin"), read("nano.dst.bin"), dst_port=7075), CTX))[0]
    assert hit.details["network"] == "Nano live" and hit.details["messages"] == ["node_id_handshake"]


@pytest.mark.parametrize("detector", [detect_bitcoin, detect_ethereum, detect_monero, detect_nano])
def test_garbage_and_other_protocols_give_nothing(detector):
    rng = random.Random(11)
    blobs = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 700))) for _ in range(120)]
    blobs += [b"GET / HTTP/1.1\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\0" * 200,
              b'{"id":1,"method":"mining.subscribe","params":[]}\n']
    for name in ("bitcoin_55317.src.bin", "monero_48882.src.bin", "ethereum_rlpx_56610.src.bin", "nano.src.bin"):
        data = read(name)
        blobs += [data[:i] for i in range(0, len(data), 7)]
    own = {detect_bitcoin: "bitcoin_55317.src.bin", detect_ethereum: "ethereum_rlpx_56610.src.bin",
           detect_monero: "monero_48882.src.bin", detect_nano: "nano.src.bin"}
    real = read(own[detector])
    for blob in blobs:
        for l4 in ("TCP", "UDP"):
            hits = list(detector.__wrapped__(flow(blob, blob[:50], l4=l4), CTX))
            if hits:  # only a prefix of a real message of this very protocol may match
                assert real.startswith(blob), (detector.__name__, blob[:40])

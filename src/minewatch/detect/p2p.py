"""Cryptocurrency peer-to-peer protocols recognised from binary message framing:
Bitcoin-family wire messages (magic, command, length, double-SHA-256 checksum), Ethereum
devp2p (RLPx ECIES handshake, discovery v4 packets with their keccak-256 hash), Monero's
Levin protocol and the Nano realtime protocol. Category crypto_p2p: a node is not a miner,
but running one is a reason to look closer.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Iterable

import numpy as np

from minewatch.detect import Context, Flow, Hit, flow_detector
from minewatch.detect.heads import Heads
from minewatch.detect.mining_rpc import never_raises

# ---------------------------------------------------------------- keccak-256 (Ethereum's hash)


def _keccak_constants() -> tuple[list[int], list[int]]:
    """Round constants and rho rotations, generated as in the Keccak reference (FIPS 202 §3.2)."""
    rotations = [0] * 25
    x, y = 1, 0
    for t in range(24):
        rotations[x + 5 * y] = ((t + 1) * (t + 2) // 2) % 64
        x, y = y, (2 * x + 3 * y) % 5
    lfsr = 1
    constants = []
    for _ in range(24):
        rc = 0
        for j in range(7):
            if lfsr & 1:
                rc |= 1 << ((1 << j) - 1)
            lfsr = ((lfsr << 1) ^ 0x71) & 0xFF if lfsr & 0x80 else lfsr << 1
        constants.append(rc)
    return constants, rotations


_RC, _ROT = _keccak_constants()
_MASK = (1 << 64) - 1


# theta's column index, then rho+pi as (source lane, destination lane, rotation), computed once
_COLUMN = [i % 5 for i in range(25)]
_RHO_PI = [(x + 5 * y, y + 5 * ((2 * x + 3 * y) % 5), _ROT[x + 5 * y]) for x in range(5) for y in range(5)]


def _keccak_f(a: list[int]) -> None:
    """Keccak-f[1600] in place on 25 little-endian 64-bit lanes."""
    mask = _MASK
    b = [0] * 25
    for rc in _RC:
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ (((c[(x + 1) % 5] << 1) | (c[(x + 1) % 5] >> 63)) & mask) for x in range(5)]
        for src, dst, rot in _RHO_PI:
            v = a[src] ^ d[_COLUMN[src]]
            b[dst] = ((v << rot) | (v >> (64 - rot))) & mask if rot else v
        for y in (0, 5, 10, 15, 20):
            b0, b1, b2, b3, b4 = b[y], b[y + 1], b[y + 2], b[y + 3], b[y + 4]
            a[y] = b0 ^ (~b1 & b2)
            a[y + 1] = b1 ^ (~b2 & b3)
            a[y + 2] = b2 ^ (~b3 & b4)
            a[y + 3] = b3 ^ (~b4 & b0)
            a[y + 4] = b4 ^ (~b0 & b1)
        a[0] ^= rc


def keccak256(data: bytes) -> bytes:
    """Original Keccak-256 (padding 0x01, as Ethereum uses; not SHA3-256)."""
    rate = 136
    msg = bytearray(data)
    msg.append(0x01)
    msg.extend(b"\x00" * (-len(msg) % rate))
    msg[-1] |= 0x80
    state = [0] * 25
    for off in range(0, len(msg), rate):
        for i in range(rate // 8):
            state[i] ^= int.from_bytes(msg[off + 8 * i: off + 8 * i + 8], "little")
        _keccak_f(state)
    return b"".join(state[i].to_bytes(8, "little") for i in range(4))


# ---------------------------------------------------------------- Bitcoin-family wire protocol

# network magic (as on the wire) -> network name. Bitcoin values from Bitcoin Core
# chainparams; forks from their chainparams (Litecoin, Dogecoin, Bitcoin ABC, Dash).
BITCOIN_MAGICS: dict[bytes, str] = {
    bytes.fromhex("f9beb4d9"): "Bitcoin mainnet",
    bytes.fromhex("0b110907"): "Bitcoin testnet3",
    bytes.fromhex("1c163f28"): "Bitcoin testnet4",
    bytes.fromhex("0a03cf40"): "Bitcoin signet",
    bytes.fromhex("fabfb5da"): "Bitcoin regtest",
    bytes.fromhex("fbc0b6db"): "Litecoin mainnet",
    bytes.fromhex("c0c0c0c0"): "Dogecoin mainnet",
    bytes.fromhex("e3e1f3e8"): "Bitcoin Cash mainnet",
    bytes.fromhex("bf0c6bbd"): "Dash mainnet",
}
BITCOIN_COMMANDS = {
    "version", "verack", "addr", "addrv2", "sendaddrv2", "inv", "getdata", "notfound", "getblocks",
    "getheaders", "tx", "block", "headers", "getaddr", "mempool", "ping", "pong", "reject", "alert",
    "sendheaders", "feefilter", "sendcmpct", "cmpctblock", "getblocktxn", "blocktxn", "merkleblock",
    "filterload", "filteradd", "filterclear", "wtxidrelay", "getcfilters", "cfilter", "getcfheaders",
    "cfheaders", "getcfcheckpt", "cfcheckpt", "checkorder", "submitorder", "reply", "sendtxrcncl",
}
MAX_BITCOIN_PAYLOAD = 32 * 1024 * 1024


def _bitcoin_command(raw: bytes) -> str | None:
    name, _, pad = raw.partition(b"\x00")
    if not name or pad.strip(b"\x00") or not all(0x21 <= c <= 0x7E for c in name):
        return None
    return name.decode("ascii")


def parse_bitcoin_messages(data: bytes) -> tuple[str | None, list[tuple[str, bool]], bytes | None]:
    """Walk consecutive wire messages from offset 0.
    Returns (network, [(command, checksum_verified)], first version payload or None)."""
    network = BITCOIN_MAGICS.get(data[:4])
    if network is None:
        return None, [], None
    magic = data[:4]
    out: list[tuple[str, bool]] = []
    version_payload = None
    pos = 0
    while pos + 20 <= len(data) and data[pos: pos + 4] == magic and len(out) < 64:
        command = _bitcoin_command(data[pos + 4: pos + 16])
        if command is None:
            break
        (length,) = struct.unpack_from("<I", data, pos + 16)
        if length > MAX_BITCOIN_PAYLOAD:
            break
        # modern header: 24 bytes with checksum
        body_at = pos + 24
        payload = data[body_at: body_at + length]
        if pos + 24 <= len(data) and len(payload) == length:
            digest = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
            if digest == data[pos + 20: pos + 24]:
                out.append((command, True))
                if command == "version" and version_payload is None:
                    version_payload = payload
                pos = body_at + length
                continue
        # pre-2012 nodes sent version/verack without a checksum (20-byte header)
        end = pos + 20 + length
        if command in ("version", "verack") and (end == len(data) or data[end: end + 4] == magic):
            out.append((command, True))
            if command == "version" and version_payload is None:
                version_payload = data[pos + 20: end]
            pos = end
            continue
        if command in BITCOIN_COMMANDS:  # payload runs past the head: header shape only
            out.append((command, False))
        break
    return network, out, version_payload


def _bitcoin_version_info(payload: bytes | None) -> dict:
    """Protocol version, user agent and start height from a version message payload."""
    info: dict = {}
    if not payload or len(payload) < 4:
        return info
    info["protocol_version"] = struct.unpack_from("<i", payload, 0)[0]
    pos = 4 + 8 + 8 + 26 + 26 + 8  # version, services, timestamp, addr_recv, addr_from, nonce
    if len(payload) <= pos:
        return info
    n = payload[pos]
    pos += 1
    if n < 0xFD and len(payload) >= pos + n:
        if n:
            info["user_agent"] = payload[pos: pos + n].decode("ascii", "replace")
        pos += n
        if len(payload) >= pos + 4:
            info["start_height"] = struct.unpack_from("<i", payload, pos)[0]
    return info


def _bitcoin_magic(heads: Heads, ctx: Context):
    return heads.starts_with_any(BITCOIN_MAGICS)


@flow_detector("p2p.bitcoin", 1, "crypto_p2p",
               "Bitcoin-family peer-to-peer wire messages (magic, command, checksum), any port",
               prefilter=_bitcoin_magic)
@never_raises
def detect_bitcoin(flow: Flow, ctx: Context) -> Iterable[Hit]:
    results = {}
    for side in ("src", "dst"):
        head = bytes(getattr(flow, f"{side}_payload_head") or b"")
        if len(head) >= 20 and head[:4] in BITCOIN_MAGICS:
            network, msgs, version = parse_bitcoin_messages(head)
            if msgs:
                results[side] = (network, msgs, version)
    if not results:
        return []
    verified = sum(ok for _, msgs, _ in results.values() for _, ok in msgs)
    if not verified and len(results) < 2:
        return []  # one unverifiable header is too little
    conf = 0.95 if verified and len(results) == 2 else (0.9 if verified else 0.7)
    network = next(iter(results.values()))[0]
    commands = sorted({c for _, msgs, _ in results.values() for c, _ in msgs})
    details: dict = {"protocol": "bitcoin", "network": network, "commands": commands,
                     "checksums_verified": verified}
    for side in ("src", "dst"):
        if side in results:
            info = _bitcoin_version_info(results[side][2])
            if info:
                details[f"{side}_version"] = info
    agent = next((details[k].get("user_agent") for k in ("src_version", "dst_version")
                  if k in details and details[k].get("user_agent")), None)
    summary = f"{network} peer-to-peer session ({', '.join(commands[:6])})"
    summary += f", peer software {agent}" if agent else ""
    return [Hit(conf, summary, details, severity="medium")]


# ---------------------------------------------------------------- Ethereum devp2p

_SECP_P = 2**256 - 2**32 - 977


def on_secp256k1(xy: bytes) -> bool:
    """True when 64 bytes X||Y are a point of secp256k1 (y^2 = x^3 + 7 mod p)."""
    if len(xy) != 64:
        return False
    x, y = int.from_bytes(xy[:32], "big"), int.from_bytes(xy[32:], "big")
    return x < _SECP_P and y < _SECP_P and (y * y - x * x * x - 7) % _SECP_P == 0


def _rlp_list_end(data: bytes, pos: int) -> int | None:
    """End offset of the RLP list starting at `pos`, or None if it is not a list header."""
    if pos >= len(data):
        return None
    b = data[pos]
    if 0xC0 <= b <= 0xF7:
        return pos + 1 + (b - 0xC0)
    if b >= 0xF8:
        n = b - 0xF7
        if pos + 1 + n > len(data):
            return None
        return pos + 1 + n + int.from_bytes(data[pos + 1: pos + 1 + n], "big")
    return None


DISCV4_TYPES = {1: "ping", 2: "pong", 3: "findnode", 4: "neighbors", 5: "enrrequest", 6: "enrresponse"}


def discv4_packet(head: bytes, single_datagram: bool) -> str | None:
    """Packet type name if `head` starts with a discovery v4 packet whose hash verifies."""
    if len(head) < 98 + 1 or head[97] not in DISCV4_TYPES:
        return None
    end = _rlp_list_end(head, 98)  # the packet data is always an RLP list
    if end is None or end > len(head):
        return None
    ends = [end]
    if single_datagram and len(head) not in ends:
        ends.append(len(head))  # EIP-8 lets senders append data after the list
    for end in ends:
        if keccak256(head[32:end]) == head[:32]:
            return DISCV4_TYPES[head[97]]
    return None


def rlpx_handshake(head: bytes) -> str | None:
    """'eip8' / 'legacy' when the head starts with an RLPx ECIES auth/ack message:
    [2-byte size] 0x04 || ephemeral secp256k1 public key || IV || ciphertext || MAC."""
    if len(head) >= 2 + 65 and head[2] == 0x04:
        size = int.from_bytes(head[:2], "big")
        if 65 + 16 + 32 < size <= 4096 and on_secp256k1(head[3:67]):
            return "eip8"
    if len(head) >= 65 and head[0] == 0x04 and on_secp256k1(head[1:65]):
        return "legacy"
    return None


def _ethereum_shape(heads: Heads, ctx: Context):
    """UDP: room for a discv4 packet; TCP: the initiator's head starts like an ECIES auth."""
    src97, dst97 = heads.bytes_at(96, 2)  # signature recovery id (0..3), then the packet type
    types = list(DISCV4_TYPES)

    def discv4_at(b, n):
        return (n >= 99) & (b[:, 0] <= 3) & np.isin(b[:, 1], types)

    discv4 = heads.udp & (discv4_at(src97, heads.src_len) | discv4_at(dst97, heads.dst_len))
    s, n = heads.src, heads.src_len
    eip8 = (n >= 67) & (s[:, 0] <= 0x10) & (s[:, 2] == 0x04)
    legacy = (n >= 65) & (s[:, 0] == 0x04)
    return discv4 | (~heads.udp & (eip8 | legacy))


@flow_detector("p2p.ethereum", 1, "crypto_p2p",
               "Ethereum devp2p: RLPx ECIES handshake shape and discovery v4 packets (keccak-256 verified)",
               prefilter=_ethereum_shape)
@never_raises
def detect_ethereum(flow: Flow, ctx: Context) -> Iterable[Hit]:
    src = bytes(flow.src_payload_head or b"")
    dst = bytes(flow.dst_payload_head or b"")
    if flow.ip_proto == 17 or (flow.l4 or "").upper() == "UDP":
        found = {}
        for side, head, count in (("src", src, flow.src_payload_packets), ("dst", dst, flow.dst_payload_packets)):
            kind = discv4_packet(head, count <= 1)
            if kind:
                found[side] = kind
        if not found:
            return []
        details = {"protocol": "devp2p-discv4", "packets": sorted(set(found.values())), "hash_verified": True}
        summary = f"Ethereum node discovery v4 ({', '.join(details['packets'])}), packet hash verified"
        return [Hit(0.95 if len(found) == 2 else 0.9, summary, details, severity="medium")]
    if not src or src[0] not in (0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B,
                                 0x0C, 0x0D, 0x0E, 0x0F, 0x10):
        return []  # auth size prefix (< 4 KB) or the legacy 0x04 key marker
    auth = rlpx_handshake(src)
    if not auth:
        return []
    ack = rlpx_handshake(dst) if dst else None
    port_hint = any(p is not None and 30300 <= p <= 30399 for p in (flow.src_port, flow.dst_port))
    conf = 0.95 if ack else (0.85 if port_hint else 0.75)
    details = {"protocol": "devp2p-rlpx", "handshake": auth, "ack_seen": bool(ack), "curve_point_verified": True}
    summary = "Ethereum devp2p RLPx handshake (ECIES auth" + (" and ack" if ack else "") + ")"
    summary += f" on port {flow.dst_port}" if flow.dst_port else ""
    return [Hit(conf, summary, details, severity="medium")]


# ---------------------------------------------------------------- Monero Levin

LEVIN_SIGNATURE = struct.pack("<Q", 0x0101010101012101)
PORTABLE_STORAGE_SIGNATURE = bytes.fromhex("011101010101020101")
LEVIN_COMMANDS = {
    1001: "handshake", 1002: "timed_sync", 1003: "ping", 1004: "stat_info", 1005: "network_state",
    1006: "peer_id", 1007: "support_flags", 2001: "new_block", 2002: "new_transactions",
    2003: "request_get_objects", 2004: "response_get_objects", 2006: "request_chain",
    2007: "response_chain_entry", 2008: "new_fluffy_block", 2009: "request_fluffy_missing_tx",
    2010: "get_txpool_complement",
}
MONERO_MAINNET_ID = bytes.fromhex("1230f171610441611731008216a1a110")


def parse_levin(head: bytes) -> list[tuple[str, bool]]:
    """[(command, body_has_storage_signature)] for consecutive Levin messages from offset 0."""
    out: list[tuple[str, bool]] = []
    pos = 0
    while pos + 33 <= len(head) and head[pos: pos + 8] == LEVIN_SIGNATURE and len(out) < 32:
        size, have_to_return, command, _rc, flags, version = struct.unpack_from("<QBIiII", head, pos + 8)
        if have_to_return > 1 or version != 1 or command not in LEVIN_COMMANDS or size > 100_000_000:
            break
        body = head[pos + 33: pos + 33 + len(PORTABLE_STORAGE_SIGNATURE)]
        out.append((LEVIN_COMMANDS[command], body == PORTABLE_STORAGE_SIGNATURE))
        pos += 33 + size
    return out


def _levin_signature(heads: Heads, ctx: Context):
    return heads.starts_with_any([LEVIN_SIGNATURE])


@flow_detector("p2p.monero", 1, "crypto_p2p", "Monero (CryptoNote) Levin peer-to-peer protocol headers",
               prefilter=_levin_signature)
@never_raises
def detect_monero(flow: Flow, ctx: Context) -> Iterable[Hit]:
    found = {}
    for side in ("src", "dst"):
        head = bytes(getattr(flow, f"{side}_payload_head") or b"")
        if head[:8] == LEVIN_SIGNATURE:
            msgs = parse_levin(head)
            if msgs:
                found[side] = msgs
    if not found:
        return []
    storage = any(ok for msgs in found.values() for _, ok in msgs)
    conf = 0.95 if storage and len(found) == 2 else (0.9 if storage else 0.75)
    commands = sorted({c for msgs in found.values() for c, _ in msgs})
    mainnet = any(MONERO_MAINNET_ID in bytes(getattr(flow, f"{s}_payload_head") or b"") for s in found)
    network = "Monero mainnet" if mainnet else "CryptoNote-family (Levin)"
    details = {"protocol": "levin", "network": network, "commands": commands, "storage_signature": storage}
    summary = f"{network} peer-to-peer session ({', '.join(commands[:6])})"
    return [Hit(conf, summary, details, severity="medium")]


# ---------------------------------------------------------------- Nano realtime protocol

NANO_NETWORKS = {ord("A"): "Nano dev", ord("B"): "Nano beta", ord("C"): "Nano live", ord("X"): "Nano test"}
NANO_TYPES = {2: "keepalive", 3: "publish", 4: "confirm_req", 5: "confirm_ack", 6: "bulk_pull", 7: "bulk_push",
              8: "frontier_req", 10: "node_id_handshake", 11: "bulk_pull_account", 12: "telemetry_req",
              13: "telemetry_ack", 14: "asc_pull_req", 15: "asc_pull_ack"}


def nano_header(head: bytes) -> tuple[str, str, int] | None:
    """(network, message type, handshake body size or -1) for a Nano 8-byte message header."""
    if len(head) < 8 or head[0] != ord("R") or head[1] not in NANO_NETWORKS:
        return None
    vmax, vusing, vmin, mtype = head[2], head[3], head[4], head[5]
    if not (1 <= vmin <= vusing <= vmax <= 0x40) or mtype not in NANO_TYPES:
        return None
    ext = int.from_bytes(head[6:8], "little")
    size = -1
    if mtype == 10:  # query: 32-byte cookie; response: account + signature (+ salt and genesis in v2)
        size = (32 if ext & 1 else 0) + ((32 + 64 + (64 if ext & 4 else 0)) if ext & 2 else 0)
    return NANO_NETWORKS[head[1]], NANO_TYPES[mtype], size


def _nano_magic(heads: Heads, ctx: Context):
    networks = list(NANO_NETWORKS)
    return heads.either(lambda b, n: (n >= 8) & (b[:, 0] == ord("R")) & np.isin(b[:, 1], networks))


@flow_detector("p2p.nano", 1, "crypto_p2p", "Nano realtime peer-to-peer protocol (message header, node-id handshake)",
               prefilter=_nano_magic)
@never_raises
def detect_nano(flow: Flow, ctx: Context) -> Iterable[Hit]:
    found = {}
    for side in ("src", "dst"):
        head = bytes(getattr(flow, f"{side}_payload_head") or b"")
        parsed = nano_header(head)
        if parsed:
            network, mtype, size = parsed
            exact = size > 0 and (len(head) == 8 + size or head[8 + size: 9 + size] == b"R")
            found[side] = (network, mtype, exact)
    if not found:
        return []
    networks = {n for n, _, _ in found.values()}
    exact = any(e for _, _, e in found.values())
    if len(networks) != 1 or not (len(found) == 2 or exact):
        return []
    if len(found) == 2 and exact:
        conf = 0.9
    elif len(found) == 2:
        conf = 0.75
    else:
        conf = 0.7
    network = networks.pop()
    types = sorted({t for _, t, _ in found.values()})
    details = {"protocol": "nano", "network": network, "messages": types}
    return [Hit(conf, f"{network} peer-to-peer session ({', '.join(types)})", details, severity="medium")]

"""TLS ClientHello from a payload head: server name (SNI), ALPN, and the JA3 fingerprint.

The ClientHello may span several TLS records; the head may be cut, in which case the
fields are read as far as present (JA3 only when the whole hello is there). SSLv2-style
hellos, DTLS and QUIC are not handled (-> None). Never raises on garbage.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

HANDSHAKE = 0x16
CLIENT_HELLO = 1
EXT_SERVER_NAME, EXT_GROUPS, EXT_POINT_FORMATS, EXT_ALPN = 0, 10, 11, 16


@dataclass(slots=True)
class ClientHello:
    version: int  # legacy_version of the hello (771 = TLS 1.2, also used by TLS 1.3)
    sni: str | None = None
    alpn: list[str] = field(default_factory=list)
    ciphers: list[int] = field(default_factory=list)
    extensions: list[int] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    point_formats: list[int] = field(default_factory=list)
    complete: bool = False  # every extension was present in the head

    @property
    def ja3_string(self) -> str | None:
        if not self.complete:
            return None
        def join(values):
            return "-".join(str(v) for v in values if not is_grease(v))
        return ",".join([str(self.version), join(self.ciphers), join(self.extensions), join(self.groups),
                         "-".join(str(v) for v in self.point_formats)])

    @property
    def ja3_hash(self) -> str | None:
        s = self.ja3_string
        return hashlib.md5(s.encode("ascii")).hexdigest() if s is not None else None


def is_grease(value: int) -> bool:
    """GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa."""
    return value & 0x0F0F == 0x0A0A and value >> 8 == value & 0xFF


def looks_like_tls_handshake(payload: bytes) -> bool:
    return len(payload) >= 6 and payload[0] == HANDSHAKE and payload[1] == 3 and payload[2] <= 4


def _handshake_bytes(payload: bytes) -> bytes:
    """Concatenate the fragments of consecutive handshake records (the last may be cut)."""
    parts: list[bytes] = []
    pos = 0
    while pos + 5 <= len(payload) and payload[pos] == HANDSHAKE and payload[pos + 1] == 3:
        (length,) = struct.unpack_from("!H", payload, pos + 3)
        parts.append(payload[pos + 5 : pos + 5 + length])
        pos += 5 + length
        if len(parts) >= 32:
            break
    return b"".join(parts)


def parse_client_hello(payload: bytes) -> ClientHello | None:
    """The ClientHello at the start of a TLS payload, or None."""
    if not looks_like_tls_handshake(payload):
        return None
    hs = _handshake_bytes(bytes(payload))
    if len(hs) < 4 + 2 + 32 + 1 or hs[0] != CLIENT_HELLO:
        return None
    body_len = int.from_bytes(hs[1:4], "big")
    body = hs[4 : 4 + body_len]
    if len(body) < 2 + 32 + 1:
        return None
    hello = ClientHello(version=struct.unpack_from("!H", body, 0)[0])
    pos = 2 + 32
    try:
        sid_len = body[pos]
        pos += 1 + sid_len
        (cs_len,) = struct.unpack_from("!H", body, pos)
        pos += 2
        cs = body[pos : pos + cs_len]
        hello.ciphers = [v for (v,) in struct.iter_unpack("!H", cs[: len(cs) & ~1])]
        if len(cs) < cs_len:
            return hello
        pos += cs_len
        comp_len = body[pos]
        pos += 1 + comp_len
        if pos == len(body) and len(body) == body_len:  # a hello without extensions
            hello.complete = True
            return hello
        (ext_total,) = struct.unpack_from("!H", body, pos)
        pos += 2
        ext_end = pos + ext_total
        while pos + 4 <= min(ext_end, len(body)):
            ext_type, ext_len = struct.unpack_from("!HH", body, pos)
            data = body[pos + 4 : pos + 4 + ext_len]
            hello.extensions.append(ext_type)
            if len(data) < ext_len:
                break
            _read_extension(hello, ext_type, data)
            pos += 4 + ext_len
        hello.complete = pos == ext_end and ext_end <= len(body) and len(body) == body_len
    except (IndexError, struct.error):
        pass
    return hello


def _read_extension(hello: ClientHello, ext_type: int, data: bytes) -> None:
    if ext_type == EXT_SERVER_NAME and len(data) >= 5:
        pos = 2  # list length
        while pos + 3 <= len(data):
            name_type, name_len = data[pos], struct.unpack_from("!H", data, pos + 1)[0]
            name = data[pos + 3 : pos + 3 + name_len]
            if name_type == 0 and name and name.isascii():
                text = name.decode("ascii").strip().rstrip(".").lower()
                if text and all(0x21 <= ord(c) <= 0x7E for c in text):
                    hello.sni = text
                break
            pos += 3 + name_len
    elif ext_type == EXT_ALPN and len(data) >= 2:
        pos = 2
        while pos < len(data):
            n = data[pos]
            proto = data[pos + 1 : pos + 1 + n]
            if len(proto) < n:
                break
            hello.alpn.append(proto.decode("latin-1"))
            pos += 1 + n
    elif ext_type == EXT_GROUPS and len(data) >= 2:
        hello.groups = [v for (v,) in struct.iter_unpack("!H", data[2 : 2 + (len(data) - 2) // 2 * 2])]
    elif ext_type == EXT_POINT_FORMATS and len(data) >= 1:
        hello.point_formats = list(data[1 : 1 + data[0]])


def client_hello_sni(payload: bytes) -> str | None:
    """The server name a TLS client asked for, or None (no hello, no SNI, or garbage)."""
    hello = parse_client_hello(payload)
    return hello.sni if hello else None

"""DNS messages (RFC 1035) from a payload head: questions, and A/AAAA/CNAME answers.

Works for plain DNS, mDNS and LLMNR over UDP, and DNS over TCP (2-byte length prefix,
several messages in one head, the last one possibly cut). Never raises: garbage gives [].
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

TYPE_A, TYPE_CNAME, TYPE_AAAA = 1, 5, 28
MAX_NAME = 255
MAX_JUMPS = 32
MAX_RECORDS = 64  # more than any real message a name look-up needs; bounds the work on garbage


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    name: str  # lower case, no trailing dot
    qtype: int
    qclass: int


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    name: str
    rtype: int
    ttl: int
    value: str  # IP for A/AAAA, target name for CNAME


@dataclass(slots=True)
class DnsMessage:
    id: int
    is_response: bool
    opcode: int
    rcode: int
    questions: list[DnsQuestion] = field(default_factory=list)
    answers: list[DnsAnswer] = field(default_factory=list)


class _Bad(Exception):
    pass


def _read_name(msg: bytes, pos: int) -> tuple[str, int]:
    """Name at pos -> (name, position after it in the record). Pointers must go backwards."""
    labels: list[str] = []
    total = 0
    end = -1  # where the record continues after the first pointer
    jumps = 0
    while True:
        if pos >= len(msg):
            raise _Bad
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(msg):
                raise _Bad
            target = ((length & 0x3F) << 8) | msg[pos + 1]
            if target >= pos or jumps >= MAX_JUMPS:  # forward pointers and loops
                raise _Bad
            if end < 0:
                end = pos + 2
            jumps += 1
            pos = target
            continue
        if length & 0xC0:  # 0x40 / 0x80 label types are obsolete
            raise _Bad
        pos += 1
        if length == 0:
            break
        label = msg[pos : pos + length]
        if len(label) < length:
            raise _Bad
        total += length + 1
        if total > MAX_NAME:
            raise _Bad
        labels.append(_label_text(label))
        pos += length
    return ".".join(labels), (end if end >= 0 else pos)


def _label_text(label: bytes) -> str:
    if all(0x21 <= b <= 0x7E and b != 0x2E for b in label):
        return label.decode("ascii").lower()
    return "".join(chr(b).lower() if 0x21 <= b <= 0x7E and b != 0x2E else f"\\{b:03d}" for b in label)


def parse_message(msg: bytes) -> DnsMessage | None:
    """One DNS message; records are kept as far as they parse (a cut message keeps its head)."""
    if len(msg) < 12:
        return None
    ident, flags, qd, an, ns, ar = struct.unpack_from("!6H", msg)
    opcode = (flags >> 11) & 0xF
    if opcode > 6 or qd > MAX_RECORDS or an > MAX_RECORDS * 4:
        return None
    out = DnsMessage(ident, bool(flags & 0x8000), opcode, flags & 0xF)
    pos = 12
    try:
        for _ in range(qd):
            name, pos = _read_name(msg, pos)
            if pos + 4 > len(msg):
                raise _Bad
            qtype, qclass = struct.unpack_from("!HH", msg, pos)
            pos += 4
            out.questions.append(DnsQuestion(name, qtype, qclass))
        for _ in range(min(an, MAX_RECORDS)):
            name, pos = _read_name(msg, pos)
            if pos + 10 > len(msg):
                raise _Bad
            rtype, _rclass, ttl, rdlen = struct.unpack_from("!HHIH", msg, pos)
            pos += 10
            rdata_end = pos + rdlen
            if rdata_end > len(msg):
                raise _Bad
            if rtype == TYPE_A and rdlen == 4:
                out.answers.append(DnsAnswer(name, rtype, ttl, str(ipaddress.IPv4Address(msg[pos:rdata_end]))))
            elif rtype == TYPE_AAAA and rdlen == 16:
                out.answers.append(DnsAnswer(name, rtype, ttl, ipaddress.IPv6Address(msg[pos:rdata_end]).compressed))
            elif rtype == TYPE_CNAME:
                target, _ = _read_name(msg, pos)
                out.answers.append(DnsAnswer(name, rtype, ttl, target))
            pos = rdata_end
    except _Bad:
        pass
    if qd and not out.questions and not out.answers:
        return None  # the header promised records and none parsed: not DNS
    return out


def parse_dns(payload: bytes, tcp: bool = False) -> list[DnsMessage]:
    """Every DNS message in a payload head (one for UDP; as many as present for TCP)."""
    if not payload:
        return []
    if not tcp:
        msg = parse_message(bytes(payload))
        return [msg] if msg else []
    out: list[DnsMessage] = []
    pos = 0
    data = bytes(payload)
    while pos + 2 + 12 <= len(data) and len(out) < MAX_RECORDS:
        (length,) = struct.unpack_from("!H", data, pos)
        if length < 12:
            break
        msg = parse_message(data[pos + 2 : pos + 2 + length])
        if msg is None:
            break
        out.append(msg)
        pos += 2 + length
    return out


def dns_queries(payload: bytes, tcp: bool = False) -> list[DnsQuestion]:
    """The questions of every message in the payload (queries and the echo in responses)."""
    return [q for m in parse_dns(payload, tcp) for q in m.questions]


def dns_answers(payload: bytes, tcp: bool = False) -> list[DnsAnswer]:
    """A, AAAA and CNAME answers of every response in the payload."""
    return [a for m in parse_dns(payload, tcp) if m.is_response for a in m.answers]


def plausible_dns_header(payload: bytes, tcp: bool = False) -> bool:
    """A cheap first-bytes test for DNS off the usual ports: one question, sane counts."""
    head = payload[2:14] if tcp else payload[:12]
    if len(head) < 12:
        return False
    _ident, flags, qd, an, ns, ar = struct.unpack("!6H", head)
    return qd == 1 and (flags >> 11) & 0xF in (0, 2, 4, 5) and an <= 64 and ns <= 64 and ar <= 16 and not flags & 0x0040

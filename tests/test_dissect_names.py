"""DNS and TLS ClientHello parsing on real message bytes (tests/data/intel, see its README)."""

import random
import struct
from pathlib import Path

import pytest

from minewatch.dissect.dns import dns_answers, dns_queries, parse_dns, plausible_dns_header
from minewatch.dissect.tls import client_hello_sni, is_grease, parse_client_hello

DATA = Path(__file__).parent / "data" / "intel"


def fixture(name: str) -> bytes:
    return bytes.fromhex((DATA / name).read_text().strip())


# ---- DNS ---------------------------------------------------------------------------------


def test_udp_query_gives_lowercase_name_and_type():
    qs = dns_queries(fixture("dns_udp_query_mullvad.hex"))
    assert [(q.name, q.qtype, q.qclass) for q in qs] == [("www.mullvad.net", 1, 1)]
    assert parse_dns(fixture("dns_udp_query_mullvad.hex"))[0].is_response is False


def test_udp_response_gives_cname_and_a_through_compression_pointers():
    payload = fixture("dns_udp_response_mullvad.hex")
    msg = parse_dns(payload)[0]
    assert msg.is_response and msg.rcode == 0
    assert [(a.name, a.rtype, a.value) for a in dns_answers(payload)] == [
        ("www.mullvad.net", 5, "mullvad.net"),
        ("mullvad.net", 1, "45.83.223.209"),
    ]


def test_aaaa_answers():
    answers = dns_answers(fixture("dns_udp_response_aaaa_erfpop.hex"))
    assert [a.value for a in answers] == ["2606:4700:30::6818:6291", "2606:4700:30::6818:6391"]
    assert all(a.rtype == 28 and a.name == "erfpop.de" for a in answers)


def test_tcp_messages_with_length_prefix_several_in_one_head():
    query = fixture("dns_tcp_query_weberlab.hex")
    response = fixture("dns_tcp_response_weberlab.hex")
    assert struct.unpack("!H", query[:2])[0] == len(query) - 2
    assert [q.name for q in dns_queries(query, tcp=True)] == ["weberlab.de"]
    both = parse_dns(query + response, tcp=True)
    assert [m.is_response for m in both] == [False, True]
    assert [q.qtype for q in both[1].questions] == [48]  # DNSKEY
    # the same bytes read as UDP are not DNS (the length prefix shifts the header)
    assert dns_queries(query, tcp=False) != dns_queries(query, tcp=True)


def test_tcp_head_cut_inside_second_message_keeps_its_question():
    query = fixture("dns_tcp_query_weberlab.hex")
    response = fixture("dns_tcp_response_weberlab.hex")
    msgs = parse_dns(query + response[:60], tcp=True)
    assert len(msgs) == 2 and msgs[1].questions[0].name == "weberlab.de"


def test_every_truncation_of_a_response_is_safe():
    payload = fixture("dns_udp_response_mullvad.hex")
    for cut in range(len(payload)):
        msgs = parse_dns(payload[:cut])
        if cut < 12:
            assert msgs == []
    # cut inside the A record: the CNAME before it survives
    inside_a = payload.find(bytes([45, 83, 223, 209])) + 2
    assert [a.rtype for a in dns_answers(payload[:inside_a])] == [5]


def _header(qd=1, an=0, flags=0x0100):
    return struct.pack("!6H", 0x1234, flags, qd, an, 0, 0)


def test_pointer_to_itself_and_forward_pointers_are_rejected():
    self_loop = _header() + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    assert parse_dns(self_loop) == []
    forward = _header() + b"\xc0\x0e" + b"\x03abc\x00" + b"\x00\x01\x00\x01"
    assert parse_dns(forward) == []


def test_answer_pointer_loop_keeps_the_question_and_stops():
    question = b"\x04pool\x07example\x03com\x00" + b"\x00\x01\x00\x01"
    # answer name at offset 0x22 points to 0x24, which points back to 0x22
    looping = b"\xc0\x24\xc0\x22"
    assert len(_header() + question) == 0x22
    msg = _header(an=1, flags=0x8180) + question + looping + b"\x00\x01\x00\x01" + b"\x00" * 6
    parsed = parse_dns(msg)
    assert [q.name for q in parsed[0].questions] == ["pool.example.com"]
    assert parsed[0].answers == []


def test_name_longer_than_255_is_rejected():
    labels = b"".join(b"\x3f" + b"a" * 63 for _ in range(5)) + b"\x00"
    assert parse_dns(_header() + labels + b"\x00\x01\x00\x01") == []


def test_odd_bytes_in_labels_are_escaped_not_fatal():
    msg = _header() + b"\x04po\x00l\x03com\x00" + b"\x00\x01\x00\x01"
    assert dns_queries(msg)[0].name == "po\\000l.com"


def test_garbage_never_raises():
    rng = random.Random(7)
    for _ in range(3000):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80)))
        parse_dns(blob)
        parse_dns(blob, tcp=True)
        plausible_dns_header(blob)


def test_plausible_header_accepts_real_query_and_rejects_text():
    assert plausible_dns_header(fixture("dns_udp_query_mullvad.hex"))
    assert plausible_dns_header(fixture("dns_tcp_query_weberlab.hex"), tcp=True)
    assert not plausible_dns_header(b'{"id":1,"method":"mining.subscribe","params":[]}\n')


# ---- TLS ---------------------------------------------------------------------------------

JA3 = {
    "tls_clienthello_simplednscrypt.hex": (
        "771,49195-49199-49196-49200-52393-52392-52244-52243-49171-49172-156-157-47-53-10,"
        "65281-0-23-35-13-5-18-16-11-10,29-23-24,0",
        "b8f81673c0e1d29908346f3bab892b9b",
    ),
    "tls_clienthello_google_tls13.hex": (
        "771,4865-4866-4867-49195-49196-52393-49199-49200-52392-49161-49162-49171-49172-156-157-47-53,"
        "0-23-65281-10-11-35-16-5-13-51-45-43-41,29-23-24,0",
        "c67e9dc27d283f1f89b4ebb4b4670c21",
    ),
    "tls_clienthello_android_dnsgoogle.hex": (
        "771,49195-49199-49196-49200-52393-52392-49161-49171-49162-49172-156-157-47-53-10,"
        "0-23-65281-10-11-35-13,29-23-24,0",
        "2c776785ee603cc85d37df996bb90cc8",
    ),
}


@pytest.mark.parametrize(
    "name, sni, alpn",
    [
        ("tls_clienthello_simplednscrypt.hex", "simplednscrypt.org", ["h2", "http/1.1"]),
        ("tls_clienthello_google_tls13.hex", "www.google.com", ["http/1.1"]),
        ("tls_clienthello_android_dnsgoogle.hex", "dns.google", []),
    ],
)
def test_client_hello_sni_alpn_ja3(name, sni, alpn):
    payload = fixture(name)
    assert client_hello_sni(payload) == sni
    hello = parse_client_hello(payload)
    assert hello.alpn == alpn and hello.complete
    assert (hello.ja3_string, hello.ja3_hash) == JA3[name]


def test_grease_values_are_left_out_of_ja3():
    hello = parse_client_hello(fixture("tls_clienthello_simplednscrypt.hex"))
    assert any(is_grease(c) for c in hello.ciphers)
    assert "2570" not in hello.ja3_string.split(",")[1].split("-")  # 0x0a0a


def _split_records(record: bytes, at: int) -> bytes:
    """The same handshake bytes carried in two TLS records."""
    version, body = record[1:3], record[5:]
    first, second = body[:at], body[at:]
    return (b"\x16" + version + struct.pack("!H", len(first)) + first
            + b"\x16" + version + struct.pack("!H", len(second)) + second)


@pytest.mark.parametrize("at", [3, 40, 100])
def test_client_hello_split_over_two_records(at):
    record = fixture("tls_clienthello_google_tls13.hex")
    hello = parse_client_hello(_split_records(record, at))
    assert hello.sni == "www.google.com"
    assert hello.ja3_hash == JA3["tls_clienthello_google_tls13.hex"][1]


def test_cut_hello_keeps_sni_but_gives_no_ja3():
    record = fixture("tls_clienthello_simplednscrypt.hex")
    sni_at = record.find(b"simplednscrypt.org") + len("simplednscrypt.org")
    hello = parse_client_hello(record[: sni_at + 5])
    assert hello.sni == "simplednscrypt.org"
    assert hello.ja3_hash is None and not hello.complete
    for cut in range(len(record)):  # never raises
        parse_client_hello(record[:cut])


def test_not_a_client_hello():
    assert client_hello_sni(b"") is None
    assert client_hello_sni(b"GET / HTTP/1.1\r\n\r\n") is None
    # SSLv2-compatible hello (2-byte length with the high bit, msg type 1)
    assert client_hello_sni(bytes.fromhex("802e0100020015000000100000050000040100800300800700c0") + b"\x00" * 16) is None
    server_hello = bytearray(fixture("tls_clienthello_google_tls13.hex"))
    server_hello[5] = 2
    assert parse_client_hello(bytes(server_hello)) is None


def test_tls_garbage_never_raises():
    rng = random.Random(11)
    for _ in range(3000):
        blob = b"\x16\x03\x01" + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
        parse_client_hello(blob)

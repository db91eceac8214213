"""The compiled capture reader (sources/pcap.py + _fastpcap) and the nfstream source.

Small captures are built byte by byte here; the real nDPI corpus is used when present.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pyarrow as pa
import pytest

from minewatch.errors import InputError
from minewatch.schema.flows import FLOWS
from minewatch.sources import ReadStats
from minewatch.sources.pcap import UnsupportedCapture, is_capture_file, read_pcap

DATA = Path(__file__).parent / "data" / "pcap"
from conftest import CORPUS as _CORPUS  # noqa: E402

CORPUS = (_CORPUS / "ndpi" / "pcap") if _CORPUS else Path("/nonexistent")
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="corpus not present")

from packets import ACK, FIN, PSH, SYN, ipv4, ipv6, tcp, udp, eth, sll, sll2, gre, pcap, ng_block, pcapng  # noqa: E402


def read(path: Path, **kw) -> tuple[list[dict], ReadStats]:
    stats = ReadStats(str(path))
    batches = list(read_pcap(path, stats=stats, **kw))
    for b in batches:
        assert b.schema == FLOWS
    rows = pa.Table.from_batches(batches, schema=FLOWS).to_pylist() if batches else []
    return rows, stats


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


CLIENT, SERVER = "10.0.0.1", "192.0.2.9"


def conversation() -> list[tuple[float, bytes]]:
    """A TCP conversation with a retransmitted segment, on VLAN 42 inside QinQ outer 42."""
    def c2s(seq, flags, data=b""):
        return eth(ipv4(CLIENT, SERVER, 6, tcp(40000, 3333, seq, flags, data)), vlans=(42, 7))

    def s2c(seq, flags, data=b""):
        return eth(ipv4(SERVER, CLIENT, 6, tcp(3333, 40000, seq, flags, data)), vlans=(42, 7))

    return [
        (100.0, c2s(1000, SYN)),
        (100.1, s2c(5000, SYN | ACK)),
        (100.2, c2s(1001, ACK)),
        (100.3, c2s(1001, PSH | ACK, b"hello ")),
        (100.5, c2s(1001, PSH | ACK, b"hello ")),  # retransmission
        (100.6, c2s(1007, PSH | ACK, b"world")),
        (100.7, s2c(5001, PSH | ACK, b"OK")),
        (100.8, c2s(1012, FIN | ACK)),
    ]


# ---------------------------------------------------------------- synthetic captures


def test_tcp_conversation_counts_heads_and_vlan(tmp_path):
    rows, stats = read(write(tmp_path, "conv.pcap", pcap(conversation())))
    assert stats.reader == "fast" and stats.error is None
    assert stats.packets_read == 8 and stats.flows == 1
    (f,) = rows
    assert (f["src_ip"], f["src_port"], f["dst_ip"], f["dst_port"]) == (CLIENT, 40000, SERVER, 3333)
    assert f["l4"] == "TCP" and f["ip_proto"] == 6 and f["vlan_id"] == 42
    assert (f["src_packets"], f["dst_packets"]) == (6, 2)
    assert f["src_payload_packets"] == 3 and f["src_payload_bytes"] == 17
    assert f["src_payload_head"] == b"hello world"  # retransmission dropped
    assert f["dst_payload_head"] == b"OK"
    assert f["src_bytes"] == 3 * 40 + 2 * 46 + 45  # IP bytes, retransmission included
    assert f["src_tcp_flags"] == SYN | ACK | PSH | FIN and f["dst_tcp_flags"] == SYN | ACK | PSH
    assert f["ts_start"].timestamp() == pytest.approx(100.0) and f["ts_end"].timestamp() == pytest.approx(100.8)
    assert str(f["ts_start"].tzinfo) == "UTC"
    # src payload packets at 100.3, 100.5, 100.6 -> gaps 200 ms and 100 ms
    assert f["src_iat_mean_ms"] == pytest.approx(150.0, abs=0.01)
    assert f["src_iat_std_ms"] == pytest.approx(50.0, abs=0.01)
    assert f["source_file"].endswith("conv.pcap") and f["app_protocol"] is None


def test_flow_first_seen_at_syn_ack_is_started_by_the_other_side(tmp_path):
    rows, _ = read(write(tmp_path, "late.pcap", pcap(conversation()[1:])))
    (f,) = rows
    assert f["src_ip"] == CLIENT and f["src_port"] == 40000


def test_big_endian_and_nanosecond_pcap_give_the_same_flows(tmp_path):
    pkts = conversation()
    little, _ = read(write(tmp_path, "le.pcap", pcap(pkts)))
    for name, data in (("be.pcap", pcap(pkts, big=True)), ("ns.pcap", pcap(pkts, nano=True)),
                       ("bens.pcap", pcap(pkts, big=True, nano=True))):
        other, stats = read(write(tmp_path, name, data))
        assert stats.error is None
        def strip(rows):
            return [{k: v for k, v in r.items() if k != "source_file"} for r in rows]

        assert strip(other) == strip(little)


def test_raw_ip_sll_sll2_null_hdlc_and_ipv6(tmp_path):
    v6a, v6b = bytes.fromhex("20010db8" + "00" * 11 + "01"), bytes.fromhex("20010db8" + "00" * 11 + "02")
    dns = udp(5353, 53, b"\x12\x34query")
    cases = {
        101: ipv6(v6a, v6b, 17, dns),
        113: sll(ipv4("10.1.1.1", "10.1.1.2", 17, dns)),
        276: sll2(ipv6(v6a, v6b, 17, dns), proto=0x86DD),
        0: struct.pack("<I", 2) + ipv4("10.1.1.1", "10.1.1.2", 17, dns),
        228: ipv4("10.1.1.1", "10.1.1.2", 17, dns),
        104: b"\x0f\x00\x08\x00" + ipv4("10.1.1.1", "10.1.1.2", 17, dns),  # Cisco HDLC
    }
    for linktype, frame in cases.items():
        rows, stats = read(write(tmp_path, f"lt{linktype}.pcap", pcap([(1.0, frame)], linktype=linktype)))
        assert stats.packets_skipped == {}, linktype
        (f,) = rows
        assert (f["src_port"], f["dst_port"], f["l4"]) == (5353, 53, "UDP")
        assert f["src_payload_head"] == b"\x12\x34query"
        if linktype in (101, 276):
            assert (f["src_ip"], f["dst_ip"]) == ("2001:db8::1", "2001:db8::2")
        else:
            assert f["src_ip"] == "10.1.1.1"


def test_ipv6_extension_headers_are_walked(tmp_path):
    a, b = bytes(15) + b"\x01", bytes(15) + b"\x02"
    hop_by_hop = bytes([17, 0]) + b"\x00" * 6  # next header UDP, 8 bytes
    frame = eth(ipv6(a, b, 17, udp(1, 2, b"x"), ext=hop_by_hop, ext_nh=0), ethertype=0x86DD)
    rows, _ = read(write(tmp_path, "ext.pcap", pcap([(1.0, frame)])))
    assert rows[0]["ip_proto"] == 17 and rows[0]["src_ip"] == "::1" and rows[0]["dst_port"] == 2


def test_tunnels_record_the_inner_flow(tmp_path):
    inner = ipv4("172.16.0.1", "172.16.0.2", 17, udp(1111, 2222, b"inner"))
    vxlan = b"\x08\x00\x00\x00\x00\x00\x01\x00" + eth(inner)
    gtp = struct.pack("!BBHI", 0x30, 0xFF, len(inner), 1) + inner
    frames = {
        "gre": eth(ipv4("1.1.1.1", "2.2.2.2", 47, gre(inner))),
        "gre_teb": eth(ipv4("1.1.1.1", "2.2.2.2", 47, gre(eth(inner), proto=0x6558))),
        "ipip": eth(ipv4("1.1.1.1", "2.2.2.2", 4, inner)),
        "vxlan": eth(ipv4("1.1.1.1", "2.2.2.2", 17, udp(50000, 4789, vxlan))),
        "gtp": eth(ipv4("1.1.1.1", "2.2.2.2", 17, udp(2152, 2152, gtp))),
        "mpls": eth(b"\x00\x01\x01\x40" + inner, ethertype=0x8847),
        "pppoe": eth(struct.pack("!BBHHH", 0x11, 0, 1, len(inner) + 2, 0x0021) + inner, ethertype=0x8864),
    }
    for name, frame in frames.items():
        rows, stats = read(write(tmp_path, f"{name}.pcap", pcap([(1.0, frame)])))
        assert len(rows) == 1, name
        f = rows[0]
        assert (f["src_ip"], f["dst_ip"], f["src_port"], f["dst_port"]) == (
            "172.16.0.1", "172.16.0.2", 1111, 2222), name
        assert f["src_payload_head"] == b"inner", name


def test_unknown_gre_payload_keeps_the_outer_flow(tmp_path):
    frame = eth(ipv4("1.1.1.1", "2.2.2.2", 47, gre(b"\x00" * 20, proto=0x1234)))
    rows, _ = read(write(tmp_path, "gre_other.pcap", pcap([(1.0, frame)])))
    assert rows[0]["ip_proto"] == 47 and rows[0]["src_port"] is None and rows[0]["l4"] == "47"


def test_fragments_first_counted_others_skipped(tmp_path):
    first = ipv4(CLIENT, SERVER, 17, udp(7000, 53, b"A" * 16), more=True)
    later = ipv4(CLIENT, SERVER, 17, b"B" * 16, frag_offset=24)
    rows, stats = read(write(tmp_path, "frag.pcap", pcap([(1.0, eth(first)), (1.0, eth(later))])))
    assert len(rows) == 1 and rows[0]["dst_port"] == 53
    assert stats.packets_skipped["non_first_fragment"] == 1 and stats.packets_read == 2


def test_skip_reasons_are_counted(tmp_path):
    arp = eth(b"\x00" * 28, ethertype=0x0806)
    short_tcp = eth(ipv4(CLIENT, SERVER, 6, b"\x00" * 8))
    rows, stats = read(write(tmp_path, "skip.pcap", pcap([(1.0, arp), (2.0, short_tcp)])))
    assert rows == []
    assert stats.packets_skipped == {"not_ip": 1, "truncated_header": 1}


def test_icmp_has_no_ports(tmp_path):
    frame = eth(ipv4(CLIENT, SERVER, 1, b"\x08\x00\x00\x00\x00\x01\x00\x01ping"))
    rows, _ = read(write(tmp_path, "icmp.pcap", pcap([(1.0, frame)])))
    assert rows[0]["l4"] == "ICMP" and rows[0]["src_port"] is None and rows[0]["dst_port"] is None


def test_idle_and_active_timeouts_split_flows(tmp_path):
    pkt = eth(ipv4(CLIENT, SERVER, 17, udp(1, 2, b"x")))
    idle = [(0.0, pkt), (1.0, pkt), (500.0, pkt), (1200.0, pkt)]
    rows, _ = read(write(tmp_path, "idle.pcap", pcap(idle)))  # default idle timeout: 600 s
    assert [r["src_packets"] for r in rows] == [3, 1]
    rows, _ = read(write(tmp_path, "idle.pcap", pcap(idle)), idle_timeout=120.0)
    assert [r["src_packets"] for r in rows] == [2, 1, 1]
    steady = [(float(t), pkt) for t in range(0, 40, 5)]  # every 5 s for 35 s
    rows, _ = read(write(tmp_path, "active.pcap", pcap(steady)), active_timeout=10.0)
    assert sum(r["src_packets"] for r in rows) == 8 and len(rows) >= 3
    assert len({r["flow_ref"] for r in rows}) == len(rows)


def test_payload_head_limits(tmp_path):
    pkts = [(float(i), eth(ipv4(CLIENT, SERVER, 17, udp(1, 2, b"%d-abcdef" % i)))) for i in range(5)]
    rows, _ = read(write(tmp_path, "lim.pcap", pcap(pkts)), payload_bytes=12)
    assert rows[0]["src_payload_head"] == b"0-abcdef1-ab"
    rows, _ = read(write(tmp_path, "lim2.pcap", pcap(pkts)), payload_packets=2)
    assert rows[0]["src_payload_head"] == b"0-abcdef1-abcdef"
    assert rows[0]["src_payload_packets"] == 5


def test_pcapng_interfaces_resolutions_byte_orders_and_unknown_blocks(tmp_path):
    frame_a = eth(ipv4(CLIENT, SERVER, 17, udp(1, 2, b"a")))
    frame_b = ipv4("10.9.9.9", "10.8.8.8", 17, udp(3, 4, b"b"))
    unknown = ng_block("<", 0x0BAD, b"skip me!")
    for big in (False, True):
        o = ">" if big else "<"
        data = pcapng(
            [(1, None), (101, 9)],
            [(0, 1_500_000_250, frame_a), (1, 2_000_000_000_123, frame_b)],  # us and ns units
            big=big,
            extra_blocks=ng_block(o, 0x0BAD, b"skip me!") if big else unknown,
        )
        rows, stats = read(write(tmp_path, f"two{big}.pcapng", data))
        assert stats.error is None and len(rows) == 2
        by_port = {r["src_port"]: r for r in rows}
        assert by_port[1]["ts_start"].timestamp() == pytest.approx(1500.000250)
        assert by_port[3]["ts_start"].timestamp() == pytest.approx(2000.000000123, abs=1e-6)
        assert by_port[3]["src_ip"] == "10.9.9.9"


def test_pcapng_simple_packet_block(tmp_path):
    frame = eth(ipv4(CLIENT, SERVER, 17, udp(1, 2, b"spb")))
    spb = ng_block("<", 3, struct.pack("<I", len(frame)) + frame)
    data = pcapng([(1, None)], [], extra_blocks=spb)
    rows, _ = read(write(tmp_path, "spb.pcapng", data))
    assert rows[0]["src_payload_head"] == b"spb"


def test_bad_headers_raise_input_error(tmp_path):
    cases = {
        "empty.pcap": b"",
        "text.pcap": b"this is not a capture file at all, just text\n",
        "short.pcap": b"\xd4\xc3\xb2\xa1\x02\x00",
        "version.pcap": struct.pack("<IHHiIII", 0xA1B2C3D4, 3, 0, 0, 0, 65535, 1),
        "ngversion.pcapng": ng_block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 2, 0, -1)),
    }
    for name, data in cases.items():
        with pytest.raises(InputError) as e:
            read(write(tmp_path, name, data))
        assert name in str(e.value) and not isinstance(e.value, UnsupportedCapture)
    with pytest.raises(InputError, match="No such file"):
        read(tmp_path / "missing.pcap")


def test_unsupported_link_type_is_a_distinct_error(tmp_path):
    with pytest.raises(UnsupportedCapture, match="link type 105"):
        read(write(tmp_path, "wifi.pcap", pcap([(1.0, b"\x00" * 40)], linktype=105)))
    ng = pcapng([(105, None)], [(0, 1, b"\x00" * 40)])
    with pytest.raises(UnsupportedCapture):
        read(write(tmp_path, "wifi.pcapng", ng))


def test_is_capture_file(tmp_path):
    assert is_capture_file(write(tmp_path, "a.pcap", pcap([])))
    assert is_capture_file(write(tmp_path, "b.pcapng", pcapng([(1, None)], [])))
    assert not is_capture_file(write(tmp_path, "c.txt", b"hello world"))
    assert not is_capture_file(tmp_path / "nothing")


def test_cut_file_keeps_flows_read_so_far(tmp_path):
    whole = pcap(conversation())
    cut = whole[: len(whole) - 20]
    rows, stats = read(write(tmp_path, "cut.pcap", cut))
    assert len(rows) == 1 and rows[0]["src_packets"] + rows[0]["dst_packets"] == 7
    assert "cut at byte" in stats.error and "packet 8" in stats.error
    assert "cut.pcap" not in stats.error and str(stats.path).endswith("cut.pcap")  # the caller names the file once


def test_progress_is_reported(tmp_path):
    seen = []
    path = write(tmp_path, "p.pcap", pcap(conversation()))
    read(path, on_progress=seen.append)
    assert seen and seen[-1] == path.stat().st_size


def test_random_cuts_and_garbage_never_crash(tmp_path):
    rng = random.Random(7)
    sources = [pcap(conversation()), pcapng([(1, None)], [(0, i, f) for i, (_, f) in enumerate(conversation())])]
    sources.append((DATA / "mining.pcapng").read_bytes())
    for n, whole in enumerate(sources):
        for i in range(25):
            data = bytearray(whole[: rng.randrange(0, len(whole))])
            if i % 2 and len(data) > 40:  # also flip some bytes past the file header
                for _ in range(8):
                    data[rng.randrange(32, len(data))] = rng.randrange(256)
            try:
                read(write(tmp_path, f"fuzz{n}_{i}.pcap", bytes(data)))
            except InputError:
                pass
    with pytest.raises(InputError):
        read(write(tmp_path, "noise.bin", bytes(rng.randrange(256) for _ in range(5000))))


# ---------------------------------------------------------------- real captures


def five_tuples(rows: list[dict]) -> dict:
    """Undirected (proto, endpoints) -> [packets, bytes], summed over flows."""
    out: dict = {}
    for r in rows:
        if r["ip_proto"] not in (6, 17):
            continue
        ends = tuple(sorted([(r["src_ip"], r["src_port"]), (r["dst_ip"], r["dst_port"])]))
        tot = out.setdefault((r["ip_proto"], ends), [0, 0])
        tot[0] += r["src_packets"] + r["dst_packets"]
        tot[1] += r["src_bytes"] + r["dst_bytes"]
    return out


def read_with_nfstream(path: Path) -> list[dict]:
    from minewatch.sources.nfstream_source import read_nfstream

    batches = list(read_nfstream(path, stats=ReadStats(str(path))))
    for b in batches:
        assert b.schema == FLOWS
    return pa.Table.from_batches(batches, schema=FLOWS).to_pylist()


def test_fixture_mining_capture_matches_nfstream_flow_by_flow():
    path = DATA / "mining.pcapng"
    fast, stats = read(path)
    slow = read_with_nfstream(path)
    assert five_tuples(fast) == five_tuples(slow)
    assert len(fast) == len(slow) == stats.flows == 4  # 600 s idle timeout: one record per session

    def key(r):  # same direction and start (nfstream times are in ms)
        return r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"], r["ts_start"].replace(microsecond=r["ts_start"].microsecond // 1000 * 1000)

    by_key = {key(r): r for r in slow}
    assert len(by_key) == len(slow)
    for r in fast:
        other = by_key[key(r)]
        for col in ("src_payload_head", "dst_payload_head", "src_payload_packets", "dst_payload_bytes",
                    "src_tcp_flags", "dst_tcp_flags"):
            assert r[col] == other[col], col
        assert r["src_iat_mean_ms"] == pytest.approx(other["src_iat_mean_ms"], abs=1.0)
        for side in ("src", "dst"):  # messages: same merging, times to the millisecond
            assert r[f"{side}_msgs"] == other[f"{side}_msgs"]
            assert r[f"{side}_msg_size_mean"] == pytest.approx(other[f"{side}_msg_size_mean"])
            assert r[f"{side}_msg_iat_mean_ms"] == pytest.approx(other[f"{side}_msg_iat_mean_ms"], abs=1.0)
    assert any(b'"method": "eth_submitLogin"' in r["src_payload_head"] or b"mining." in r["src_payload_head"]
               for r in fast)
    assert {r["app_protocol"] for r in slow} & {"Mining"}


@needs_corpus
@pytest.mark.parametrize("name", ["mining.pcapng", "bitcoin.pcap", "dns.pcap", "dns_doh.pcap",
                                  "dns-tunnel-iodine.pcap", "4in4tunnel.pcap", "6in4tunnel.pcap",
                                  "http_ipv6.pcap", "ipv6_in_gtp.pcap", "dns_fragmented.pcap"])
def test_corpus_agrees_with_nfstream(name):
    fast, stats = read(CORPUS / name)
    assert stats.error is None
    assert five_tuples(fast) == five_tuples(read_with_nfstream(CORPUS / name))


@needs_corpus
def test_every_corpus_capture_reads_without_crashing():
    outcomes = {"ok": 0, "unsupported": 0, "input_error": 0}
    for path in sorted(CORPUS.iterdir()):
        try:
            rows, stats = read(path)
            outcomes["ok"] += 1
            assert stats.flows == len(rows) and stats.bytes_read <= stats.bytes_total
            assert len({r["flow_ref"] for r in rows}) == len(rows)
        except UnsupportedCapture:
            outcomes["unsupported"] += 1
        except InputError:
            outcomes["input_error"] += 1
    assert outcomes["ok"] > 500, outcomes


@needs_corpus
def test_truncated_corpus_copies(tmp_path):
    rng = random.Random(11)
    names = sorted(p.name for p in CORPUS.iterdir())
    for name in rng.sample(names, 40):
        data = (CORPUS / name).read_bytes()
        cut = write(tmp_path, name, data[: rng.randrange(0, max(1, len(data)))])
        try:
            _, stats = read(cut)
        except InputError:
            continue


def test_nfstream_source_turns_bad_files_into_input_error(tmp_path):
    from minewatch.sources.nfstream_source import read_nfstream

    bad = write(tmp_path, "junk.pcap", b"definitely not a capture" * 10)
    with pytest.raises(InputError) as e:
        list(read_nfstream(bad, stats=ReadStats(str(bad))))
    assert "\n" not in str(e.value) and "junk.pcap" in str(e.value)
    with pytest.raises(InputError):
        list(read_nfstream(tmp_path / "missing.pcap", stats=ReadStats("missing")))


# --- application messages (payload segments of one side < 5 ms apart merged) ----------


def paced_conversation() -> list[tuple[float, bytes]]:
    """A client sending a 3000-byte message as two back-to-back segments (1 ms apart) at
    t = 10, 20 and 40 s, and a 100-byte message at t = 45 s; the server answers each
    0.2 s later with 50 bytes and pushes one 400-byte message at t = 30 s."""
    seq = {"c": 1001, "s": 5001}

    def c2s(data: bytes = b"", flags: int = PSH | ACK) -> bytes:
        pkt = eth(ipv4(CLIENT, SERVER, 6, tcp(40000, 3333, seq["c"], flags, data)))
        seq["c"] += len(data)
        return pkt

    def s2c(data: bytes = b"", flags: int = PSH | ACK) -> bytes:
        pkt = eth(ipv4(SERVER, CLIENT, 6, tcp(3333, 40000, seq["s"], flags, data)))
        seq["s"] += len(data)
        return pkt

    pkts = [(9.0, eth(ipv4(CLIENT, SERVER, 6, tcp(40000, 3333, 1000, SYN)))),
            (9.1, eth(ipv4(SERVER, CLIENT, 6, tcp(3333, 40000, 5000, SYN | ACK)))),
            (9.2, c2s(flags=ACK))]
    for t in (10.0, 20.0, 40.0):
        pkts += [(t, c2s(b"a" * 1448)), (t + 0.001, c2s(b"b" * 1552)), (t + 0.2, s2c(b"r" * 50))]
    pkts += [(30.0, s2c(b"j" * 400)), (30.1, c2s(flags=ACK)), (45.0, c2s(b"s" * 100)), (45.2, s2c(b"r" * 50))]
    return sorted(pkts, key=lambda p: p[0])


def expected_messages() -> dict:
    client_sizes, client_starts = [3000, 3000, 3000, 100], [10.0, 20.0, 40.0, 45.0]
    server_sizes, server_starts = [50, 50, 400, 50, 50], [10.2, 20.2, 30.0, 40.2, 45.2]

    def stats(values):
        mean = sum(values) / len(values)
        return mean, (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5

    out = {}
    for side, sizes, starts in (("src", client_sizes, client_starts), ("dst", server_sizes, server_starts)):
        gaps = [1000 * (b - a) for a, b in zip(starts, starts[1:])]
        out[f"{side}_msgs"] = len(sizes)
        out[f"{side}_msg_size_mean"], out[f"{side}_msg_size_std"] = stats(sizes)
        out[f"{side}_msg_iat_mean_ms"], out[f"{side}_msg_iat_std_ms"] = stats(gaps)
    return out


def test_messages_merge_segments_and_time_message_starts(tmp_path):
    rows, _ = read(write(tmp_path, "paced.pcap", pcap(paced_conversation())))
    assert len(rows) == 1
    row = rows[0]
    assert row["src_payload_packets"] == 7 and row["src_msgs"] == 4  # split messages count once
    for name, value in expected_messages().items():
        assert row[name] == pytest.approx(value, rel=1e-6, abs=1e-3), name


def test_message_columns_null_without_payload(tmp_path):
    pkts = [(1.0, eth(ipv4(CLIENT, SERVER, 6, tcp(40000, 3333, 1000, SYN)))),
            (1.1, eth(ipv4(SERVER, CLIENT, 6, tcp(3333, 40000, 5000, SYN | ACK)))),
            (1.2, eth(ipv4(CLIENT, SERVER, 6, tcp(40000, 3333, 1001, ACK, b"one"))))]
    rows, _ = read(write(tmp_path, "one.pcap", pcap(pkts)))
    row = rows[0]
    assert row["src_msgs"] == 1 and row["src_msg_size_mean"] == 3 and row["src_msg_size_std"] == 0
    assert row["src_msg_iat_mean_ms"] is None and row["src_msg_iat_std_ms"] is None  # one message: no interval
    assert row["dst_msgs"] == 0
    assert all(row[f"dst_{n}"] is None for n in ("msg_size_mean", "msg_size_std", "msg_iat_mean_ms",
                                                   "msg_iat_std_ms"))


def test_messages_gap_boundary(tmp_path):
    """Segments 4 ms apart are one message, 6 ms apart two (the 5 ms rule)."""
    pkt = eth(ipv4(CLIENT, SERVER, 17, udp(1, 2, b"x" * 10)))
    rows, _ = read(write(tmp_path, "gap.pcap", pcap([(1.0, pkt), (1.004, pkt), (1.010, pkt), (2.0, pkt)])))
    row = rows[0]
    assert row["src_msgs"] == 3
    assert row["src_msg_size_mean"] == pytest.approx(40 / 3)
    assert row["src_msg_iat_mean_ms"] == pytest.approx((10 + 990) / 2, abs=1e-3)  # starts 1.0, 1.010, 2.0 s


def test_nfstream_messages_match_compiled_reader(tmp_path):
    pytest.importorskip("nfstream")
    from minewatch.schema.flows import MESSAGE_FIELDS
    from minewatch.sources.nfstream_source import read_nfstream

    path = write(tmp_path, "paced.pcap", pcap(paced_conversation()))
    batches = list(read_nfstream(path, stats=ReadStats(str(path))))
    rows = pa.Table.from_batches(batches, schema=FLOWS).to_pylist()
    assert len(rows) == 1
    expected = expected_messages()
    for name in MESSAGE_FIELDS:
        assert rows[0][name] == pytest.approx(expected[name], rel=1e-6, abs=1.0), name

"""Indicator lists (bundled and user formats), look-ups, and the intel.* detectors."""

import csv
import struct
from pathlib import Path

import pytest

from minewatch.detect import Context, Flow
from minewatch.detect.intel import pool_domain, pool_ip
from minewatch.errors import InputError
from minewatch.intel import BUNDLED_DOMAINS, BUNDLED_PORTS, IntelSet

DATA = Path(__file__).parent / "data" / "intel"


def fixture(name: str) -> bytes:
    return bytes.fromhex((DATA / name).read_text().strip())


def user_list(tmp_path, text: str, name: str = "list.txt") -> IntelSet:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return IntelSet.load([str(path)], include_bundled=False)


@pytest.fixture(scope="module")
def bundled() -> IntelSet:
    return IntelSet.load()


# ---- bundled data --------------------------------------------------------------------------


def test_every_bundled_row_has_provenance_and_valid_fields():
    with open(BUNDLED_DOMAINS, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 400
    for row in rows:
        assert row["match"] in ("exact", "suffix"), row
        assert row["category"] in ("mining_pool_contact", "browser_mining"), row
        assert row["source"] and row["source_date"] and row["licence"], row
        assert row["domain"] == row["domain"].lower().strip(".")
    with open(BUNDLED_PORTS, encoding="utf-8") as f:
        ports = list(csv.DictReader(f))
    assert all(p["source"] and p["licence"] for p in ports)


def test_bundled_set_loads_cleanly(bundled):
    assert bundled.problems == []
    assert not bundled.has_ips  # no pool IP list is bundled
    assert bundled.miner_port(3333) and bundled.miner_port(45700) and bundled.miner_port(443) is None


@pytest.mark.parametrize(
    "name, value, category",
    [
        ("pool.supportxmr.com", "pool.supportxmr.com", "mining_pool_contact"),  # Falco exact entry
        ("gulf.moneroocean.stream", "moneroocean.stream", "mining_pool_contact"),
        ("btc.f2pool.com", "f2pool.com", "mining_pool_contact"),
        ("stratum-na.antpool.com", "antpool.com", "mining_pool_contact"),
        ("cn.ss.btc.com", "ss.btc.com", "mining_pool_contact"),
        ("xmr.2miners.com", "xmr.2miners.com", "mining_pool_contact"),  # in NoCoin but a stratum pool
        ("authedmine.com", "authedmine.com", "browser_mining"),
    ],
)
def test_bundled_lookups(bundled, name, value, category):
    ind = bundled.match_domain(name)
    assert ind is not None and ind.value == value and ind.category == category


@pytest.mark.parametrize("name", ["btc.com", "www.binance.com", "braiins.com", "xmrig.com", "example.com"])
def test_shared_domains_are_not_listed_whole(bundled, name):
    assert bundled.match_domain(name) is None


# ---- suffix matching -------------------------------------------------------------------------


def test_suffix_matching_respects_label_boundaries(tmp_path):
    intel = user_list(tmp_path, "supportxmr.com\n0.0.0.0 exact.example.org\n")
    assert intel.match_domain("pool.supportxmr.com").value == "supportxmr.com"
    assert intel.match_domain("SupportXMR.COM.").value == "supportxmr.com"
    assert intel.match_domain("a.b.c.supportxmr.com").value == "supportxmr.com"
    for miss in ("notsupportxmr.com", "supportxmr.com.evil.net", "supportxmr.co", "com", "", "supportxmr"):
        assert intel.match_domain(miss) is None, miss
    assert intel.match_domain("exact.example.org").match == "exact"
    assert intel.match_domain("sub.exact.example.org") is None  # hosts entries are exact
    assert intel.match_domain(None) is None


def test_most_specific_entry_wins(tmp_path):
    intel = user_list(tmp_path, "example.com\nbrowser.example.com\n")
    assert intel.match_domain("x.browser.example.com").value == "browser.example.com"
    assert intel.match_domain("y.example.com").value == "example.com"


def test_lookups_are_cached_and_stable(bundled):
    first = bundled.match_domain("rx.unmineable.com")
    assert bundled.match_domain("rx.unmineable.com") is first
    assert "rx.unmineable.com" in bundled._domain_cache


# ---- user list formats ------------------------------------------------------------------------

MIXED = """\
# a comment line
! adblock comment
[Adblock Plus 2.0]

127.0.0.1 localhost
0.0.0.0 hosts-one.example.net hosts-two.example.net
::1 ip6-localhost
plain.example.org
*.wild.example.org
||adblock.example.org^
192.0.2.7
198.51.100.0/24
2001:db8:100::/40
2001:db8::5
203.0.113.9:3333
[2001:db8::9]:443
portpool.example.com:14444
stratum+tcp://worker:x@url.example.com:3333
maltrail.example.net  # reference: https://example.org/report
198.18.0.1:5555 # (static) maltrail-style ip:port
xn--fiqs8s.example.cn
矿池.example.cn
this is not an indicator
bad_port.example.com:99999
999.1.1.1/8
-dash.example.com
0.0.0.0/0
"""


def test_mixed_formats_line_by_line(tmp_path):
    intel = user_list(tmp_path, MIXED)
    for name in ("hosts-one.example.net", "hosts-two.example.net", "plain.example.org", "a.plain.example.org",
                 "wild.example.org", "x.wild.example.org", "sub.adblock.example.org", "portpool.example.com",
                 "url.example.com", "maltrail.example.net", "xn--fiqs8s.example.cn"):
        assert intel.match_domain(name) is not None, name
    assert intel.match_domain("localhost") is None and intel.match_domain("ip6-localhost") is None
    assert intel.match_domain("xn--btwv1w.example.cn").origin.endswith(":22")  # IDN written in Unicode
    assert intel.match_domain("portpool.example.com").port == 14444
    assert intel.match_domain("maltrail.example.net").note == "reference: https://example.org/report"
    assert intel.match_ip("192.0.2.7").value == "192.0.2.7"
    assert intel.match_ip("198.51.100.200").value == "198.51.100.0/24"
    assert intel.match_ip("2001:db8:1ff:ffff::1").value == "2001:db8:100::/40"
    assert intel.match_ip("2001:db8:200::1") is None
    assert intel.match_ip("2001:0db8:0000::5").value == "2001:db8::5"
    assert intel.match_ip("203.0.113.9", 3333).port == 3333
    assert intel.match_ip("203.0.113.9", 80) is None  # listed with another port
    assert intel.match_ip("2001:db8::9", 443) is not None
    assert intel.match_ip("198.18.0.1", 5555) is not None
    assert intel.match_ip("not-an-ip") is None


def test_bad_lines_are_reported_with_file_and_line(tmp_path):
    intel = user_list(tmp_path, MIXED, name="mine.txt")
    bad_lines = [p.split(":")[1] for p in intel.problems]
    assert bad_lines == ["23", "24", "25", "26", "27"]
    assert all(p.startswith(str(tmp_path / "mine.txt")) for p in intel.problems)
    assert intel.files[str(tmp_path / "mine.txt")]["bad_lines"] == 5


def test_coinblockerlists_style_files(tmp_path):
    hosts = user_list(tmp_path, "# CoinBlockerLists hosts\n0.0.0.0 miner.example.com\n0.0.0.0 pool.example.net\n")
    assert hosts.match_domain("pool.example.net") is not None and hosts.problems == []
    ips = user_list(tmp_path, "# CoinBlockerLists IP list\n192.0.2.1\n192.0.2.2\n", name="ips.txt")
    assert ips.match_ip("192.0.2.2") is not None


def test_user_csv_in_bundled_format(tmp_path):
    intel = user_list(tmp_path, "domain,match,category,coins,source,source_date,licence,note\n"
                                "mypool.example.com,exact,mining_pool_contact,XMR;ETC,inspection 2026-11,2026-11-01,,\n"
                                "bad domain,exact,mining_pool_contact,,x,,,\n", name="mine.csv")
    ind = intel.match_domain("mypool.example.com")
    assert ind.coins == ("XMR", "ETC") and ind.source == "inspection 2026-11"
    assert intel.match_domain("a.mypool.example.com") is None
    assert len(intel.problems) == 1 and ":3:" in intel.problems[0]


def test_bundled_entries_win_over_user_entries_for_the_same_name(tmp_path):
    path = tmp_path / "u.txt"
    path.write_text("supportxmr.com\nmy-own-pool.example\n")
    intel = IntelSet.load([str(path)])
    assert intel.match_domain("x.supportxmr.com").source.startswith("minewatch")
    assert intel.match_domain("x.my-own-pool.example").source == "user list u.txt"


def test_missing_or_unreadable_file_raises_input_error(tmp_path):
    with pytest.raises(InputError) as err:
        IntelSet.load([str(tmp_path / "nope.txt")])
    assert "nope.txt" in str(err.value)
    with pytest.raises(InputError):
        IntelSet.load([str(tmp_path)])


def test_binary_junk_file_gives_problems_not_exceptions(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(bytes(range(256)) * 4)
    intel = IntelSet.load([str(path)], include_bundled=False)
    assert len(intel) == 0 and intel.problems


# ---- detectors ------------------------------------------------------------------------------


def make_flow(src_head=b"", dst_head=b"", sport=40000, dport=53, proto=17, src="10.0.0.5", dst="192.0.2.53"):
    return Flow("test.pcap", 1, None, None, src, sport, dst, dport, proto, "UDP" if proto == 17 else "TCP",
                src_payload_head=src_head, dst_payload_head=dst_head)


def dns_query(name: str, qtype: int = 1) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    return struct.pack("!6H", 0xBEEF, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", qtype, 1)


def client_hello(sni: str) -> bytes:
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(sni_ext)) + sni_ext
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_dns_query_for_pool_is_a_hit():
    ctx = Context(intel=IntelSet.load())
    hits = list(pool_domain(make_flow(dns_query("pool.supportxmr.com")), ctx))
    assert len(hits) == 1
    hit = hits[0]
    assert hit.summary.startswith("DNS query for pool.supportxmr.com (SupportXMR, Monero pool, source: falco")
    assert hit.confidence == 0.7 and hit.category == "mining_pool_contact" and not hit.miner_is_dst
    assert hit.details["seen_as"] == "dns" and hit.details["coins"] == ["XMR"]
    assert hit.details["licence"] == "Apache-2.0"


def test_real_dns_response_matches_cname_and_marks_the_querier(tmp_path):
    intel = user_list(tmp_path, "mullvad.net\n")
    # the flow as seen from the resolver side: src = the server, dst = the querier
    flow = make_flow(src_head=fixture("dns_udp_response_mullvad.hex"), sport=53, dport=51000,
                     src="192.0.2.53", dst="10.0.0.5")
    hits = list(pool_domain(flow, Context(intel=intel)))
    assert len(hits) == 1 and hits[0].miner_is_dst
    assert hits[0].details["names"] == ["mullvad.net", "www.mullvad.net"]


def test_real_dns_query_off_port_is_still_read():
    intel_hit = IntelSet.load()
    flow = make_flow(src_head=dns_query("xmr-eu1.nanopool.org"), dport=5300)
    assert [h.details["pool_host"] for h in pool_domain(flow, Context(intel=intel_hit))] == ["xmr-eu1.nanopool.org"]


def test_tls_sni_on_any_port_is_a_stronger_hit():
    flow = make_flow(src_head=client_hello("gulf.moneroocean.stream"), dport=10128, proto=6)
    hits = list(pool_domain(flow, Context(intel=IntelSet.load())))
    assert len(hits) == 1 and hits[0].confidence == 0.8 and hits[0].details["seen_as"] == "tls_sni"
    assert hits[0].details["miner_port"] == 10128
    assert hits[0].summary.startswith("TLS connection to gulf.moneroocean.stream (MoneroOcean")


def test_real_client_hello_with_user_list(tmp_path):
    intel = user_list(tmp_path, "0.0.0.0 dns.google\n")
    flow = make_flow(dst_head=fixture("tls_clienthello_android_dnsgoogle.hex"), sport=853, dport=40000, proto=6)
    hits = list(pool_domain(flow, Context(intel=intel)))
    assert len(hits) == 1 and hits[0].miner_is_dst  # the ClientHello came from the dst side


def test_http_host_and_connect():
    intel = IntelSet.load()
    http = make_flow(src_head=b"GET /api HTTP/1.1\r\nHost: xmr.2miners.com:8080\r\n\r\n", dport=8080, proto=6)
    (hit,) = pool_domain(http, Context(intel=intel))
    assert hit.details["seen_as"] == "http_host" and hit.details["pool_host"] == "xmr.2miners.com"
    connect = make_flow(src_head=b"CONNECT pool.hashvault.pro:443 HTTP/1.1\r\n\r\n", dport=3128, proto=6)
    (hit,) = pool_domain(connect, Context(intel=intel))
    assert hit.details["seen_as"] == "http_connect"


def test_browser_mining_gets_its_own_category():
    flow = make_flow(src_head=b"GET /lib.js HTTP/1.1\r\nHost: authedmine.com\r\n\r\n", dport=80, proto=6)
    (hit,) = pool_domain(flow, Context(intel=IntelSet.load()))
    assert hit.category == "browser_mining" and "browser-mining service" in hit.summary


def test_ordinary_flows_give_nothing():
    ctx = Context()  # no intel loaded: the detector falls back to the bundled lists
    flows = [
        make_flow(fixture("dns_udp_query_mullvad.hex"), fixture("dns_udp_response_mullvad.hex")),
        make_flow(fixture("tls_clienthello_google_tls13.hex"), dport=443, proto=6),
        make_flow(b"GET / HTTP/1.1\r\nHost: notsupportxmr.com\r\n\r\n", dport=80, proto=6),
        make_flow(b'{"id":1,"method":"mining.subscribe","params":[]}\n', dport=3333, proto=6),
        make_flow(),
    ]
    for flow in flows:
        assert list(pool_domain(flow, ctx)) == []
        assert list(pool_ip(flow, ctx)) == []


def test_pool_ip_from_user_list(tmp_path):
    (tmp_path / "ips.txt").write_text("94.23.199.191:3333\n2001:db8:77::/48\n")
    ctx = Context(intel=IntelSet.load([str(tmp_path / "ips.txt")]))
    out = make_flow(src="192.168.2.148", dst="94.23.199.191", sport=46838, dport=3333, proto=6)
    (hit,) = pool_ip(out, ctx)
    assert hit.confidence == 0.6 and not hit.miner_is_dst and hit.details["seen_as"] == "ip"
    assert hit.details["miner_port"] == 3333
    back = make_flow(src="2001:db8:77::10", dst="2001:db8:1::2", sport=443, dport=50000, proto=6)
    (hit,) = pool_ip(back, ctx)
    assert hit.miner_is_dst and hit.details["pool_ip"] == "2001:db8:77::10"
    other_port = make_flow(src="192.168.2.148", dst="94.23.199.191", sport=46838, dport=80, proto=6)
    assert list(pool_ip(other_port, ctx)) == []

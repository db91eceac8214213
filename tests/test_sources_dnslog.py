"""Resolver logs (BIND query log, dnsmasq, DNS CSV) -> dns."""

import os
from datetime import datetime, timezone

import pytest

from minewatch.errors import InputError
from minewatch.schema.dns import DNS
from minewatch.sources._records import SourceStats, collect_tables
from minewatch.sources.dnslog import read_dnslog

from conftest import DATA

HERE = DATA / "sources"
UTC = timezone.utc


def read(path, **options):
    stats = SourceStats(str(path))
    return collect_tables(read_dnslog(path, stats=stats, **options)).get("dns"), stats


def test_bind_with_and_without_timestamp():
    dns, stats = read(HERE / "bind_query.log")
    assert dns.schema == DNS and stats.reader == "dnslog-bind"
    rows = dns.to_pylist()
    assert [r["query"] for r in rows] == ["pool.example.com", "xmr.example.net", "www.example.org"]
    assert rows[0]["ts"] == datetime(2025, 1, 6, 10, 0, 1, 123000, tzinfo=UTC)
    assert (rows[0]["client_ip"], rows[0]["client_port"], rows[0]["server_ip"]) == ("10.0.0.5", 53211, "10.0.0.1")
    assert rows[1]["qtype"] == "AAAA" and rows[1]["l4"] == "TCP" and rows[1]["client_ip"] == "2001:db8::5"
    mtime = datetime.fromtimestamp(os.stat(HERE / "bind_query.log").st_mtime, UTC)
    assert abs((rows[2]["ts"] - mtime).total_seconds()) < 1  # no timestamp: the file's time, and said so
    assert any("modification time" in n for n in stats.notes)
    assert [(r.line, r.reason) for r in stats.rejects] == [(5, "unrecognised BIND query line")]
    assert stats.ignored["other BIND log lines"] == 1


def test_bind_local_time_zone():
    dns, _ = read(HERE / "bind_query.log", naive_tz="Asia/Shanghai")
    assert dns.to_pylist()[0]["ts"] == datetime(2025, 1, 6, 2, 0, 1, 123000, tzinfo=UTC)


def test_dnsmasq_queries_get_their_replies_and_a_year():
    dns, stats = read(HERE / "dnsmasq.log", year=2025)
    rows = dns.to_pylist()
    assert [r["query"] for r in rows] == ["pool.example.com", "nothere.example", "cached.example.org"]
    assert rows[0]["ts"] == datetime(2025, 1, 6, 10, 0, 1, tzinfo=UTC) and rows[0]["record_ref"] == 1
    assert rows[0]["answers"] == ["eu.pool.example.com", "192.0.2.7", "192.0.2.8"] and rows[0]["rcode"] == "NOERROR"
    assert rows[1]["rcode"] == "NXDOMAIN" and rows[1]["answers"] == [] and rows[1]["qtype"] == "AAAA"
    assert rows[2]["answers"] == ["198.51.100.4"]
    assert "took 2025 as given" in stats.notes[0]
    assert {r.line: r.reason for r in stats.rejects} == {10: "bad syslog timestamp", 11: "not a dnsmasq log line"}


def test_dnsmasq_year_from_mtime(tmp_path):
    path = tmp_path / "dnsmasq.log"
    path.write_text("Dec 31 23:59:59 dnsmasq[1]: query[A] a.example from 10.0.0.5\n"
                    "Jan  2 00:00:01 dnsmasq[1]: query[A] b.example from 10.0.0.5\n")
    moment = datetime(2025, 1, 3, 12, 0, tzinfo=UTC).timestamp()
    os.utime(path, (moment, moment))
    dns, stats = read(path)
    assert [r["ts"].year for r in dns.to_pylist()] == [2024, 2025]  # December is last year's
    assert "took 2025 from the file's modification time" in stats.notes[0]


def test_generic_csv():
    dns, stats = read(HERE / "dns.csv")
    rows = dns.to_pylist()
    assert [r["ts"] for r in rows] == [datetime(2024, 3, 1, 2, 0, s, us, tzinfo=UTC) for s, us in ((0, 500000), (1, 0), (2, 0))]
    assert rows[0]["query"] == "pool.example.com" and rows[0]["answers"] == ["192.0.2.7", "192.0.2.8"]
    assert rows[1]["qtype"] == "AAAA" and rows[1]["answers"] == []
    assert {r.line: r.reason for r in stats.rejects} == {5: "bad time in ts", 6: "wrong number of fields (2, expected 5)"}


def test_wrong_and_empty_files(tmp_path):
    path = tmp_path / "resolver.log"
    path.write_text("")
    assert read(path)[0] is None
    path.write_text("nothing here looks like DNS\nat all\n")
    with pytest.raises(InputError, match="not a BIND query log"):
        read(path)
    path.write_bytes(b"\x00\x01" * 300)
    with pytest.raises(InputError, match="binary"):
        read(path)
    path.write_text("ts,client_ip,query\n1,2,3\n")
    with pytest.raises(InputError, match="lacks column"):
        read(path, kind="csv")


def test_bind_time_parses_each_second_once_and_keeps_fractions_and_zones():
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    from minewatch.sources.dnslog import bind_time

    berlin, seen = ZoneInfo("Europe/Berlin"), {}
    expected = int(datetime(2025, 1, 6, 10, 0, 1, tzinfo=berlin).timestamp()) * 1_000_000
    assert bind_time("06-Jan-2025 10:00:01", berlin, seen) == expected
    assert bind_time("06-jan-2025 10:00:01.5", berlin, seen) == expected + 500_000
    assert bind_time("06-Jan-2025 10:00:01.000007", berlin, seen) == expected + 7
    assert len(seen) == 2  # month names are case-insensitive, but the cache keys are the text
    summer = int(datetime(2025, 7, 6, 10, 0, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000 - 2 * 3600 * 10**6
    assert bind_time("06-Jul-2025 10:00:01", berlin, seen) == summer  # UTC+2 in summer
    for bad in ("06-Jan-2025 10:00:01.1234567", "31-Feb-2025 10:00:01", "06-Foo-2025 10:00:01", "06-Jan-2025 10:00:01.x"):
        assert bind_time(bad, berlin, seen) is None, bad


def test_bad_client_addresses_are_rejected_in_every_kind(tmp_path):
    cases = {
        "bind.log": ("06-Jan-2025 10:00:01.123 queries: info: client @0x7f 10.0.0.5#53211 (a.example): query: a.example IN A + (10.0.0.1)\n"
                     "06-Jan-2025 10:00:02.123 queries: info: client @0x7f 10.0.0.500#53211 (a.example): query: a.example IN A + (10.0.0.1)\n"
                     "06-Jan-2025 10:00:03.123 queries: info: client @0x7f 10.0.0.6#53211 (a.example): query: a.example IN A + (10.0..1)\n",
                     [(2, "bad address in client: '10.0.0.500'"), (3, "bad address in server: '10.0..1'")]),
        "dnsmasq.log": ("Jan  6 10:00:01 dnsmasq[812]: query[A] pool.example.com from 10.0.0.5\n"
                        "Jan  6 10:00:02 dnsmasq[812]: query[A] pool.example.com from 1.2.3\n",
                        [(2, "bad address in client: '1.2.3'")]),
        "dns.csv": ("ts,client_ip,query,qtype\n1709258400,10.0.0.5,a.example,A\n1709258401,abc,a.example,A\n",
                    [(3, "bad address in client_ip: 'abc'")]),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        stats = SourceStats(str(path))
        rows = collect_tables(read_dnslog(path, stats=stats))["dns"]
        assert [(r.line, r.reason) for r in stats.rejects] == expected, name
        assert rows.num_rows == text.count("\n") - len(expected) - (name == "dns.csv"), name

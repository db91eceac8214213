"""Sniffing an input's format from its first bytes."""

import gzip

import pytest

from minewatch.errors import InputError
from minewatch.sources.detect_format import detect_format

from conftest import DATA

HERE = DATA / "sources"


@pytest.mark.parametrize("name,expected", [
    ("zeek_conn.log", "zeek"), ("conn.json.log", "zeek"), ("dns.json.log", "zeek"),
    ("suricata_eve.json", "suricata"), ("nfdump17.csv", "nfdump-csv"), ("nfdump16.csv", "nfdump-csv"),
    ("bind_query.log", "dnslog"), ("dnsmasq.log", "dnslog"), ("dns.csv", "dnslog"),
])
def test_fixtures(name, expected):
    assert detect_format(HERE / name) == expected


def test_binary_and_tables(tmp_path, corpus):
    assert detect_format(corpus / "slips/test1-malicious.nfdump") == "nfcapd"
    assert detect_format(corpus / "slips/test7-malicious.pcap") == "pcap"
    assert detect_format(corpus / "slips/test2-malicious.binetflow") == "csv"
    assert detect_format(corpus / "slips/test10-mixed-zeek-dir/conn.log") == "zeek"  # starts with a tab
    packed = tmp_path / "conn.log.gz"
    packed.write_bytes(gzip.compress((HERE / "zeek_conn.log").read_bytes()))
    assert detect_format(packed) == "zeek"


@pytest.mark.parametrize("content,message", [
    (b"", "empty"), (b"\x00\x13\x37" * 100, "binary"), (b"just some words\n", "no known format"),
    (b'{"a": 1}\n', "neither Suricata"), (b"\n\n", "blank"),
])
def test_unknown(tmp_path, content, message):
    path = tmp_path / "input"
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        detect_format(path)
    with pytest.raises(InputError, match="directory"):
        detect_format(tmp_path)


def test_zeek_json_logs_of_unused_kinds_are_zeek_by_their_name(tmp_path):
    line = '{"ts":1665150785.99,"operation":"request","src_mac":"50:5b:c2:db:c3:17","orig_h":"192.168.1.15"}\n'
    for name in ("arp.log", "software.log", "files.log"):
        (tmp_path / name).write_text(line * 3)
        assert detect_format(tmp_path / name) == "zeek"
    (tmp_path / "mystery.json").write_text(line * 3)
    with pytest.raises(InputError, match="neither Suricata EVE nor Zeek"):
        detect_format(tmp_path / "mystery.json")

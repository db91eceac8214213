"""Suricata EVE JSON -> flows, dns, tls, http, alerts."""

from datetime import datetime, timezone

import pytest

from minewatch.errors import InputError
from minewatch.schema.alerts import ALERTS
from minewatch.schema.dns import DNS
from minewatch.schema.flows import FLOWS
from minewatch.schema.http import HTTP
from minewatch.schema.tls import TLS
from minewatch.sources._records import SourceStats, collect_tables
from minewatch.sources.suricata import read_suricata

from conftest import DATA

HERE = DATA / "sources"


def read(path):
    stats = SourceStats(str(path))
    return collect_tables(read_suricata(path, stats=stats)), stats


def test_each_event_type_goes_to_its_table():
    tables, stats = read(HERE / "suricata_eve.json")
    assert {t: d.num_rows for t, d in tables.items()} == {"flows": 2, "alerts": 1, "dns": 2, "tls": 1, "http": 1}
    assert stats.ignored["anomaly events"] == 1 and stats.rejected_total == 0
    schemas = {"flows": FLOWS, "dns": DNS, "tls": TLS, "http": HTTP, "alerts": ALERTS}
    assert all(tables[t].schema == schemas[t] for t in tables)
    alert = tables["alerts"].to_pylist()[0]
    assert alert["signature_id"] == 2403388 and alert["severity"] == 2 and alert["l4"] == "TCP"
    # +0200 in the file -> UTC
    assert alert["ts"] == datetime(2021, 6, 6, 13, 59, 46, 457984, tzinfo=timezone.utc)
    tls = tables["tls"].to_pylist()[0]
    assert tls["server_name"] == "www.myedimax.com" and tls["ja3"] == "b7202231ff2db28363c109cedc6d1642"
    assert tls["ja3s"] == "ad90cab724fafab2660fbf61673c91a9" and tls["version"] == "TLS 1.1"
    flow = tables["flows"].to_pylist()[0]
    assert flow["src_ip"] == "192.168.1.132" and flow["src_packets"] == 12 and flow["dst_packets"] == 0
    assert (flow["ts_end"] - flow["ts_start"]).total_seconds() == pytest.approx(1.107183)
    assert flow["flow_ref"] == 1


def test_dns_v2_query_and_answer_rows():
    tables, _ = read(HERE / "suricata_eve.json")
    query, answer = tables["dns"].to_pylist()
    assert query["response"] is False and query["client_ip"] == "192.168.1.129" and query["server_port"] == 53
    assert answer["response"] is True and answer["answers"] == ["172.217.23.196"] and answer["rcode"] == "NOERROR"
    assert answer["client_ip"] == "192.168.1.129"  # the answer goes server -> client
    assert answer["query"] == "www.google.com" and answer["qtype"] == "A"


def test_dns_v1_v3_netflow_and_flow_flags():
    tables, stats = read(HERE / "suricata_versions.json")
    v1, v3_query, v3_answer = tables["dns"].to_pylist()
    assert v1["query"] == "pool.example.com" and v1["answers"] == ["192.0.2.7"] and v1["client_ip"] == "10.0.0.5"
    assert v3_query["query"] == "xmr.example.net" and v3_query["qtype"] == "AAAA" and not v3_query["response"]
    assert v3_answer["rcode"] == "NXDOMAIN" and v3_answer["answers"] == []
    netflow, flow = tables["flows"].to_pylist()
    assert netflow["src_packets"] == 12 and netflow["dst_packets"] is None and netflow["src_tcp_flags"] == 0x1B
    assert flow["src_tcp_flags"] == 0x1B and flow["dst_tcp_flags"] == 0x1A
    assert flow["ts_start"] == datetime(2024, 3, 1, 2, 0, 2, 500000, tzinfo=timezone.utc)  # Z and +0800 agree
    assert stats.ignored["stats events"] == 1


def test_bad_events_counted_rest_read(tmp_path):
    good = (HERE / "suricata_eve.json").read_text().splitlines()
    bad = [
        '{"timestamp":"nonsense","event_type":"alert","src_ip":"1.2.3.4","dest_ip":"5.6.7.8","proto":"TCP","alert":{}}',
        '{"timestamp":"2021-06-06T15:59:46+0200","event_type":"flow","proto":"UDP","flow":{}}',
        '{"timestamp":"2021-06-06T15:59:46+0200","event_type":"http","src_ip":"1.2.3.4","src_port":"x","dest_ip":"5.6.7.8","dest_port":80,"proto":"TCP","http":{}}',
        '[1, 2]',
        good[0][:70],
    ]
    path = tmp_path / "eve.json"
    path.write_text("\n".join(good[:3] + bad) + "\n")
    tables, stats = read(path)
    assert sum(t.num_rows for t in tables.values()) == 3
    by_line = {r.line: r.reason for r in stats.rejects}
    assert by_line[4].startswith("bad time in timestamp")
    assert by_line[5] == "missing src_ip or dest_ip"
    assert by_line[6].startswith("bad http event")
    assert by_line[7] == "JSON line is not an object"
    assert by_line[8].startswith("malformed JSON")


def test_wrong_and_empty_files(tmp_path):
    path = tmp_path / "eve.json"
    path.write_text("")
    assert read(path)[0] == {}
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" * 50)
    with pytest.raises(InputError, match="binary"):
        read(path)
    path.write_text("timestamp,event\n1,2\n")
    with pytest.raises(InputError, match="not Suricata"):
        read(path)


def test_slips_eve_file(corpus):
    tables, stats = read(corpus / "slips/test6-malicious.suricata.json")
    counts = {t: d.num_rows for t, d in tables.items()}
    assert counts == {"alerts": 745, "dns": 680, "flows": 3512, "http": 56, "tls": 1}
    assert stats.rejected_total == 0
    assert tables["dns"].filter(tables["dns"]["response"]).num_rows == 340

"""Zeek logs -> flows, dns, tls, http: real slips logs and every kind of bad input."""

import gzip
from datetime import datetime, timezone

import pytest

from minewatch.errors import InputError
from minewatch.schema.dns import DNS
from minewatch.schema.flows import FLOWS
from minewatch.schema.http import HTTP
from minewatch.schema.tls import TLS
from minewatch.sources._records import SourceStats, collect_tables
from minewatch.sources.zeek import read_zeek

from conftest import DATA

HERE = DATA / "sources"


def read(path, **options):
    stats = SourceStats(str(path))
    return collect_tables(read_zeek(path, stats=stats, **options)), stats


def test_conn_tsv_maps_orig_to_src_and_duration_to_end():
    tables, stats = read(HERE / "zeek_conn.log")
    flows = tables["flows"]
    assert flows.schema == FLOWS
    assert stats.reader == "zeek-tsv" and stats.rejected_total == 0 and stats.notes == []
    first = flows.slice(0, 1).to_pylist()[0]
    # 1601998366.785668 ... 2001:718:2:1663:dc58:6d9:ef13:51a5 54170 -> ...:90 53 udp dns 0.007707 37 77 SF ... Dd 1 85 1 125
    assert first["ts_start"] == datetime(2020, 10, 6, 15, 32, 46, 785668, tzinfo=timezone.utc)
    assert (first["ts_end"] - first["ts_start"]).total_seconds() == pytest.approx(0.007707)
    assert first["src_ip"] == "2001:718:2:1663:dc58:6d9:ef13:51a5" and first["src_port"] == 54170
    assert first["dst_port"] == 53 and first["ip_proto"] == 17 and first["l4"] == "UDP"
    assert (first["src_packets"], first["src_bytes"], first["dst_packets"], first["dst_bytes"]) == (1, 85, 1, 125)
    assert (first["src_payload_bytes"], first["dst_payload_bytes"]) == (37, 77)
    assert first["src_payload_head"] is None and first["src_iat_mean_ms"] is None
    assert first["flow_ref"] == 9  # its line in the file
    assert first["source_file"] == str(HERE / "zeek_conn.log")
    # unset durations and byte counts stay null, not zero
    unset = flows.slice(4, 1).to_pylist()[0]
    assert unset["ts_end"] == unset["ts_start"] and unset["src_payload_bytes"] is None


def test_history_letters_become_tcp_flags():
    tables, _ = read(HERE / "conn.log.labeled")
    row = tables["flows"].slice(0, 1).to_pylist()[0]
    # history Sr: originator SYN, responder RST
    assert row["l4"] == "TCP" and row["src_tcp_flags"] == 0x02 and row["dst_tcp_flags"] == 0x04


def test_labeled_files_with_extra_columns_are_accepted():
    tables, stats = read(HERE / "conn.log.labeled")
    assert stats.rejected_total == 0 and tables["flows"].num_rows == 3
    assert "no #close line" in stats.notes[0]  # the fixture stops before #close


def test_dns_tsv_splits_vectors_and_lowercases():
    tables, stats = read(HERE / "zeek_dns.log")
    dns = tables["dns"]
    assert dns.schema == DNS and stats.rejected_total == 0
    first = dns.slice(0, 1).to_pylist()[0]
    assert first["query"] == "clients6.google.com" and first["qtype"] == "AAAA" and first["rcode"] == "NOERROR"
    assert first["answers"] == ["clients.l.google.com", "2a00:1450:4014:80c::200e"]
    assert first["response"] is True and first["trans_id"] == 3478 and first["l4"] == "UDP"
    last = dns.slice(dns.num_rows - 1, 1).to_pylist()[0]  # mDNS line with everything unset
    assert last["query"] is None and last["answers"] == [] and last["response"] is False


def test_ssl_tsv_to_tls():
    tables, _ = read(HERE / "zeek_ssl.log")
    tls = tables["tls"]
    assert tls.schema == TLS
    row = tls.slice(1, 1).to_pylist()[0]
    assert row["server_name"] == "virtual.secai.com" and row["version"] == "TLSv12"
    assert row["subject"] == "CN=virtual.secai.com" and row["established"] is True
    assert row["issuer"].startswith("CN=Let's Encrypt")


def test_json_logs():
    tables, stats = read(HERE / "http.json.log")
    assert stats.reader == "zeek-json"
    http = tables["http"]
    assert http.schema == HTTP
    row = http.slice(1, 1).to_pylist()[0]
    assert (row["method"], row["host"], row["uri"], row["status"]) == ("GET", "103.41.26.58", "/Mozi.m", 200)
    assert row["user_agent"] == "Microsoft NCSI" and row["content_type"] == "text/plain"
    assert row["response_body_len"] == 14
    dns, _ = read(HERE / "dns.json.log")
    assert dns["dns"].num_rows == 7 and dns["dns"].column("rcode").to_pylist()[0] == "NXDOMAIN"
    flows, _ = read(HERE / "conn.json.log")
    row = flows["flows"].slice(1, 1).to_pylist()[0]
    assert row["app_protocol"] == "http" and row["src_tcp_flags"] == 0x02 | 0x10 | 0x18 | 0x01


def test_other_logs_are_ignored_not_rejected():
    tables, stats = read(HERE / "x509.log")
    assert tables == {} and stats.rejected_total == 0 and stats.ignored["x509 log records"] == 2


def test_gzip_log(tmp_path):
    path = tmp_path / "conn.log.gz"
    path.write_bytes(gzip.compress((HERE / "zeek_conn.log").read_bytes()))
    tables, _ = read(path)
    assert tables["flows"].num_rows == 10


def test_batches_are_bounded():
    batches = list(read_zeek(HERE / "zeek_conn.log", stats=SourceStats("x"), batch_rows=3))
    assert [b.num_rows for _, b in batches] == [3, 3, 3, 1]


# ---------------------------------------------------------------- bad input


def test_bad_lines_are_counted_with_line_and_the_rest_read(tmp_path):
    lines = (HERE / "zeek_conn.log").read_text().splitlines()
    lines[8] = lines[8].replace("54170", "99999")  # port out of range
    lines[9] = "\t".join(lines[9].split("\t")[:5])  # cut short
    lines[10] = lines[10].replace("1601998368.896819", "yesterday")
    lines[11] = lines[11].replace("147.32.83.174", "-")  # missing originator
    path = tmp_path / "conn.log"
    path.write_text("\n".join(lines[:-1]) + "\n")  # and no #close
    tables, stats = read(path)
    assert tables["flows"].num_rows == 6
    assert stats.rejected_total == 4
    reasons = {r.line: r.reason for r in stats.rejects}
    assert reasons[9].startswith("bad port in id.orig_p")
    assert reasons[10] == "wrong number of fields (5, expected 21)"
    assert reasons[11].startswith("bad time in ts")
    assert reasons[12] == "missing id.orig_h"
    assert all(r.raw for r in stats.rejects)
    assert any("no #close" in n for n in stats.notes)


def test_cut_json_line(tmp_path):
    text = (HERE / "http.json.log").read_text()
    path = tmp_path / "http.log"
    path.write_text(text + text[:80])  # a last line cut in the middle
    tables, stats = read(path)
    assert tables["http"].num_rows == 3
    assert stats.rejects[0].line == 4 and stats.rejects[0].reason.startswith("malformed JSON")


def test_empty_file(tmp_path):
    path = tmp_path / "conn.log"
    path.write_text("")
    tables, stats = read(path)
    assert tables == {} and "empty file" in stats.notes


@pytest.mark.parametrize("content", [b"\x00\x01\x02garbage\xff" * 100, b"hello world\nthis is not zeek\n"])
def test_wrong_file_raises(tmp_path, content):
    path = tmp_path / "conn.log"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        read(path)
    assert str(path) in str(info.value)


def test_all_lines_bad_raises(tmp_path):
    path = tmp_path / "conn.log"
    path.write_text("#separator \\x09\n#fields\tts\tid.orig_h\n#types\ttime\taddr\nnot\ta\tflow\n")
    with pytest.raises(InputError, match="no record could be read"):
        read(path)


# ---------------------------------------------------------------- real corpus


def test_every_slips_zeek_log(corpus):
    totals = {}
    for path in sorted((corpus / "slips").rglob("*.log*")):
        tables, stats = read(path)
        for table, data in tables.items():
            assert data.schema.names == {"flows": FLOWS, "dns": DNS, "tls": TLS, "http": HTTP}[table].names
            totals[table] = totals.get(table, 0) + data.num_rows
        # the corpus has a few cut lines; nothing else is rejected
        assert stats.rejected_total <= 2, (path, stats.rejected)
    assert totals["flows"] > 1500 and totals["dns"] > 300 and totals["tls"] > 400 and totals["http"] > 1000


def test_labeled_dir_and_cut_file(corpus):
    tables, stats = read(corpus / "slips/test18-malicious-ctu-sme-11-win/zeek-labeled/conn.log.labeled")
    assert tables["flows"].num_rows == 766 and stats.rejected_total == 0
    tables, stats = read(corpus / "slips/port-scans/horizontal/conn.log")
    assert tables["flows"].num_rows == 41 and any("no #close" in n for n in stats.notes)

"""nfdump: nfcapd binaries through the nfdump program, CSV exports of 1.6 and 1.7, and a
real exporter (softflowd -> nfcapd on 127.0.0.1) when those programs are installed."""

import gzip
import io
import shutil
import signal
import socket
import subprocess
import time
from datetime import datetime, timezone

import pyarrow.compute as pc
import pytest

from minewatch.errors import InputError
from minewatch.schema.flows import FLOWS
from minewatch.sources import _records, tabular
from minewatch.sources._records import SourceStats, collect_tables
from minewatch.sources.nfdump import read_nfdump

from conftest import DATA

HERE = DATA / "sources"
needs_nfdump = pytest.mark.skipif(shutil.which("nfdump") is None, reason="nfdump is not installed")
needs_splitter = pytest.mark.skipif(tabular._fastcsv is None, reason="the compiled CSV splitter is not built")


def read(path, **options):
    stats = SourceStats(str(path))
    return collect_tables(read_nfdump(path, stats=stats, **options)).get("flows"), stats


def test_csv_17_header_and_summary_trailer():
    flows, stats = read(HERE / "nfdump17.csv")
    assert flows.schema == FLOWS and flows.num_rows == 5 and stats.rejected_total == 0
    assert stats.reader == "nfdump-csv" and any("read as UTC" in n for n in stats.notes)
    first = flows.to_pylist()[0]
    assert first["ts_start"] == datetime(2018, 1, 12, 15, 37, 30, tzinfo=timezone.utc)
    assert (first["src_ip"], first["src_port"], first["dst_ip"], first["dst_port"]) == ("147.32.80.119", 52324, "147.32.82.62", 902)
    assert (first["ip_proto"], first["l4"], first["src_tcp_flags"]) == (6, "TCP", 0x02)
    assert (first["src_packets"], first["src_bytes"], first["dst_packets"]) == (1, 60, 0)
    assert first["flow_ref"] == 2  # line 2: the header is line 1


def test_csv_16_flags_icmp6_and_blank_line():
    flows, stats = read(HERE / "nfdump16.csv")
    rows = flows.to_pylist()
    assert len(rows) == 3 and stats.rejected_total == 0
    assert rows[0]["src_tcp_flags"] == 0x10 | 0x08 | 0x02 | 0x01  # .AP.SF
    assert (rows[0]["ts_end"] - rows[0]["ts_start"]).total_seconds() == 6
    assert rows[2]["l4"] == "ICMPv6" and rows[2]["src_port"] is None and rows[2]["src_ip"] == "2001:db8::5"


def test_csv_times_in_another_zone():
    flows, stats = read(HERE / "nfdump16.csv", naive_tz="Asia/Shanghai")
    assert flows.to_pylist()[0]["ts_start"] == datetime(2016, 3, 8, 5, 41, 46, tzinfo=timezone.utc)
    assert any("Asia/Shanghai" in n for n in stats.notes)


def test_csv_bad_rows_counted_with_lines(tmp_path):
    lines = (HERE / "nfdump16.csv").read_text().splitlines()
    header, row = lines[0], lines[1]
    bad = [
        row.replace("10.0.0.5", "not-an-ip", 1),
        row.replace("2016-03-08 13:41:46", "13/99/2016", 1),
        row.replace(",14,2310,", ",many,2310,", 1),
        row.replace(",TCP,", ",XYZ,", 1),
        "2016-03-08 13:41:46,2016-03-08 13:41:52,6.012,10.0.0.5",
    ]
    path = tmp_path / "flows.csv"
    path.write_text("\n".join([header, row, *bad, "", row]) + "\n")
    flows, stats = read(path)
    assert flows.column("flow_ref").to_pylist() == [2, 9]  # the blank line 8 is not a record
    reasons = {r.line: r.reason for r in stats.rejects}
    assert reasons == {
        3: "bad address in sa: 'not-an-ip'",
        4: "bad time in ts",
        5: "bad number in ipkt",
        6: "bad protocol in pr",
        7: "wrong number of fields (4, expected 45)",
    }
    bad_address = next(r for r in stats.rejects if r.line == 3)
    assert bad_address.raw.startswith("2016-03-08 13:41:46,2016-03-08 13:41:52,not-an-ip,192.0.2.7,")  # the columns read, in file order


def test_wrong_files(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(InputError, match="lacks ts/sa/da"):
        read(path)
    path.write_bytes(b"\x00\xff" * 1000)
    with pytest.raises(InputError, match="binary"):
        read(path)
    path.write_text("")
    assert read(path)[0] is None


@needs_nfdump
def test_binary_file_keeps_milliseconds(corpus):
    flows, stats = read(corpus / "slips/test1-malicious.nfdump")
    assert stats.reader == "nfdump-binary" and stats.rejected_total == 0
    assert flows.num_rows == 4593  # the count nfdump's own summary gives
    first = flows.to_pylist()[0]
    assert first["ts_start"] == datetime(2018, 1, 12, 15, 37, 30, 942000, tzinfo=timezone.utc)
    assert first["flow_ref"] == 1 and first["src_tcp_flags"] == 0x02
    assert flows.column("src_bytes").to_pylist()[:2] == [60, 40]


@needs_nfdump
def test_cut_binary_file(corpus, tmp_path):
    path = tmp_path / "nfcapd.cut"
    path.write_bytes((corpus / "slips/test1-malicious.nfdump").read_bytes()[:200_000])
    # this file is one compressed block: nothing of it can be read, and nfdump says why
    with pytest.raises(InputError, match="nfdump: read.. error: Short read"):
        read(path)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (shutil.which("nfcapd") and shutil.which("softflowd") and shutil.which("nfdump")),
                    reason="nfcapd, softflowd and nfdump are needed (Debian packages nfdump softflowd)")
@pytest.mark.parametrize("version", ["9", "10"])
def test_softflowd_export_collected_by_nfcapd(corpus, tmp_path, version):
    """Replay a capture as NetFlow v9 / IPFIX to an nfcapd on loopback, then read its file."""
    port = _free_udp_port()
    collector = subprocess.Popen(["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(tmp_path)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        subprocess.run(["softflowd", "-d", "-r", str(corpus / "slips/test7-malicious.pcap"),
                        "-n", f"127.0.0.1:{port}", "-v", version],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=True)
        time.sleep(0.5)
    finally:
        collector.send_signal(signal.SIGTERM)  # nfcapd writes its file out on TERM
        try:
            collector.wait(timeout=20)
        except subprocess.TimeoutExpired:
            collector.kill()
            collector.wait()
    files = sorted(tmp_path.glob("nfcapd.*"))
    assert files, "nfcapd wrote no file"
    flows, stats = read(files[-1])
    assert stats.rejected_total == 0
    assert flows.num_rows > 300
    l4 = set(flows.column("l4").to_pylist())
    assert {"TCP", "UDP"} <= l4
    tcp = flows.filter(pc.equal(flows["l4"], "TCP"))
    assert tcp.column("src_port").null_count == 0 and tcp.column("src_tcp_flags").null_count == 0


# ---------------------------------------------------------------- the compiled splitter (issue 3)


def both_ways(path, monkeypatch, **options):
    """The file read with the compiled splitter, then with pyarrow.csv alone (the
    reference), in pieces small enough that there are many; returns both results."""
    monkeypatch.setattr(_records, "CHUNK_BYTES", 16 << 10)
    monkeypatch.setattr(_records, "WORKERS", 2)

    def outcome():
        stats = SourceStats(str(path))
        try:
            flows = collect_tables(read_nfdump(path, stats=stats, **options)).get("flows")
        except InputError as e:
            return None, stats, str(e)
        return flows, stats, None

    fast = outcome()
    with monkeypatch.context() as m:
        m.setattr(tabular, "_fastcsv", None)
        reference = outcome()
    return fast, reference


def assert_same_both_ways(path, monkeypatch, **options):
    (flows, stats, error), (flows_ref, stats_ref, error_ref) = both_ways(path, monkeypatch, **options)
    assert error == error_ref
    assert (flows is None) == (flows_ref is None)
    if flows is not None:
        assert flows.schema == flows_ref.schema and flows.equals(flows_ref)
    rejects = [sorted((r.line, r.reason, r.raw) for r in s.rejects) for s in (stats, stats_ref)]
    assert rejects[0] == rejects[1]
    assert stats.rejected == stats_ref.rejected and stats.accepted == stats_ref.accepted
    assert stats.ignored == stats_ref.ignored and stats.notes == stats_ref.notes
    return flows, stats


def nfdump17_rows():
    lines = (HERE / "nfdump17.csv").read_text().splitlines()
    return lines[0], [l for l in lines[1:] if l.count(",") > 40]


def with_field(header: str, row: str, name: str, value: str) -> str:
    fields = row.split(",")
    fields[header.split(",").index(name)] = value
    return ",".join(fields)


def same_length_breakages(header: str, row: str) -> list[tuple[str, str]]:
    """(reason, row) for ways to break a row without changing its length (so the ends
    of the pieces do not move)."""
    fields = dict(zip(header.split(","), row.split(",")))
    broken = [
        (f"bad address in sa: {'x' * len(fields['sa'])!r}", with_field(header, row, "sa", "x" * len(fields["sa"]))),
        ("bad time in ts", with_field(header, row, "ts", fields["ts"].replace("-01-", "-13-", 1))),
        ("bad protocol in pr", with_field(header, row, "pr", "X" * len(fields["pr"]))),
        ("bad number in ipkt", with_field(header, row, "ipkt", "x" * len(fields["ipkt"]))),
        ("wrong number of fields (47, expected 48)", row.replace(",", ";", 1)),
    ]
    assert all(len(b) == len(row) and b != row for _, b in broken)
    return broken


def test_splitter_bad_rows_at_piece_ends_and_inside(tmp_path, monkeypatch):
    """Bad rows of every kind as the first and last line of pieces and inside them: the
    splitter rejects what pyarrow.csv rejects, with the same line and reason."""
    header, rows = nfdump17_rows()
    body = [rows[i % len(rows)] for i in range(3000)]
    text = (header + "\n" + "\n".join(body) + "\n").encode()
    # the pieces the reader will cut (16 KiB x PIECE_SCALE): break the rows at their ends
    pieces = list(_records.line_pieces(io.BytesIO(text[len(header) + 1:]), (16 << 10) * tabular.PIECE_SCALE))
    assert len(pieces) > 5
    ends, first = [], 0
    for piece in pieces:
        count = bytes(piece).count(b"\n")
        ends += [first, first + count - 1]
        first += count
    expected = {}
    for n, index in enumerate(sorted(set(ends + [17, 1234, 2999]))):
        breakages = same_length_breakages(header, body[index])
        reason, body[index] = breakages[n % len(breakages)]
        expected[index + 2] = reason
    path = tmp_path / "flows.csv"
    path.write_text("\n".join([header, *body, "Summary", "flows,bytes", "1,2"]) + "\n")
    assert path.stat().st_size == len(text) + len("Summary\nflows,bytes\n1,2\n")
    flows, stats = assert_same_both_ways(path, monkeypatch)
    assert {r.line: r.reason for r in stats.rejects} == expected
    assert flows.num_rows == len(body) - len(expected)
    assert set(flows.column("flow_ref").to_pylist()).isdisjoint(expected)


def test_splitter_odd_lines(tmp_path, monkeypatch):
    """Blank and blank-looking lines, CRLF ends, a row of empty fields, a number too big
    for 64 bits, text outside ASCII in a column not read, ICMP type.code in the port
    column and a last line cut short: the same outcome both ways."""
    header, rows = nfdump17_rows()
    odd = [
        "", "   ", rows[0] + "\r", "," * 47,
        with_field(header, rows[1], "ipkt", "99999999999999999999"),
        with_field(header, rows[2], "eng", "caf\u00e9"),
        with_field(header, with_field(header, rows[0], "pr", "ICMP"), "dp", "3.3"),
        with_field(header, rows[0], "sp", "-1"),
        with_field(header, rows[0], "sp", "70000"),
        with_field(header, rows[0], "ts", "2018-01-12 15:37:30.25"),
    ]
    body = [rows[i % len(rows)] for i in range(2000)]
    for i, line in enumerate(odd):
        body[100 + 97 * i] = line
    path = tmp_path / "flows.csv"
    path.write_text("\n".join([header, *body, rows[0][:60]]))  # cut mid-row, no newline
    flows, stats = assert_same_both_ways(path, monkeypatch)
    reasons = {r.line: r.reason for r in stats.rejects}
    assert reasons[len(body) + 2].startswith("wrong number of fields (5, ")  # the cut last line
    assert reasons[100 + 97 * 4 + 2] == "bad number in ipkt"
    assert reasons[100 + 97 * 8 + 2] == "bad number in sp"  # 70000 (-1 passes, as it always did)
    assert stats.ignored["empty rows"] == 2  # the empty line and the row of empty fields
    icmp = flows.filter(pc.equal(flows["flow_ref"], 100 + 97 * 6 + 2)).to_pylist()[0]
    assert icmp["l4"] == "ICMP" and icmp["dst_port"] is None
    crlf = flows.filter(pc.equal(flows["flow_ref"], 100 + 97 * 2 + 2)).to_pylist()[0]
    assert crlf["dst_ip"] == "147.32.82.62"


def test_splitter_file_whose_every_row_is_bad(tmp_path, monkeypatch):
    header, rows = nfdump17_rows()
    path = tmp_path / "flows.csv"
    path.write_text("\n".join([header] + ["x," + rows[i % len(rows)] for i in range(3000)]) + "\n")
    (_, stats, error), _ = both_ways(path, monkeypatch)
    assert "no record could be read (3000 rejected, mostly: wrong number of fields (49, expected 48))" in error
    assert error.startswith(f"{path}:line 2:") and stats.rejected_total == 3000
    path.write_text("\n".join([header] + [rows[i % len(rows)].replace(",TCP,", ",QQQ,") for i in range(3000)]) + "\n")
    assert_same_both_ways(path, monkeypatch)


def test_splitter_pieces_with_quotes_or_a_lone_carriage_return(tmp_path, monkeypatch):
    """Such pieces go to pyarrow.csv; the others of the same file to the splitter."""
    header, rows = nfdump17_rows()
    body = [rows[i % len(rows)] for i in range(3000)]
    body[500] = body[500].replace(",0/58,", ',"0/58",', 1)
    body[2500] = body[2500].replace(",0/58,", ",0/\r58,", 1)
    path = tmp_path / "flows.csv"
    path.write_text("\n".join([header, *body]) + "\n", newline="")
    flows, _ = assert_same_both_ways(path, monkeypatch)
    assert flows.num_rows >= 2999 and 502 in flows.column("flow_ref").to_pylist()


@needs_splitter
def test_splitter_rejects_a_field_that_is_not_utf8_and_reads_on(tmp_path, monkeypatch):
    header, rows = nfdump17_rows()
    body = [rows[i % len(rows)].encode() for i in range(3000)]
    body[700] = body[700].replace(b",TCP,", b",T\xffP,", 1)
    body[900] = body[900].replace(b",0/58,", b",0/\xff8,", 1)  # in a column not read: no matter
    path = tmp_path / "flows.csv"
    path.write_bytes(b"\n".join([header.encode(), *body]) + b"\n")
    (flows, stats, _), _ = both_ways(path, monkeypatch)
    assert [(r.line, r.reason) for r in stats.rejects] == [(702, "not UTF-8 text in pr")]
    assert "T\ufffdP" in stats.rejects[0].raw
    assert flows.num_rows == 2999 and 902 in flows.column("flow_ref").to_pylist()


def test_splitter_local_times_a_zone_skips(tmp_path, monkeypatch):
    """02:30 on the day Berlin moves its clocks on does not exist there: the plain-time
    shortcut steps aside and the text path decides, as it does without the splitter."""
    header, rows = nfdump17_rows()
    body = [rows[i % len(rows)] for i in range(200)]
    body[50] = body[50].replace("2018-01-12 15:37:30", "2018-03-25 02:30:00")
    path = tmp_path / "flows.csv"
    path.write_text("\n".join([header, *body]) + "\n")
    assert_same_both_ways(path, monkeypatch, naive_tz="Europe/Berlin")
    flows, _ = assert_same_both_ways(path, monkeypatch, naive_tz="Asia/Shanghai")
    assert flows.column("ts_start")[0].as_py() == datetime(2018, 1, 12, 7, 37, 30, tzinfo=timezone.utc)


def test_splitter_fixtures_and_gzip(tmp_path, monkeypatch):
    for name in ("nfdump16.csv", "nfdump17.csv"):
        assert_same_both_ways(HERE / name, monkeypatch)
    header, rows = nfdump17_rows()
    path = tmp_path / "flows.csv.gz"
    path.write_bytes(gzip.compress(("\n".join([header] + rows * 700) + "\nSummary\n1,2\n").encode()))
    flows, _ = assert_same_both_ways(path, monkeypatch)
    assert flows.num_rows == len(rows) * 700


@needs_nfdump
def test_splitter_on_nfdump_program_output(corpus, monkeypatch):
    """The binary path feeds nfdump's padded `fmt:` text through the same loop."""
    flows, stats = assert_same_both_ways(corpus / "slips/test1-malicious.nfdump", monkeypatch)
    assert flows.num_rows == 4593 and stats.rejected_total == 0


@needs_splitter
def test_clean_pieces_take_the_splitter(tmp_path, monkeypatch):
    header, rows = nfdump17_rows()
    path = tmp_path / "flows.csv"
    path.write_text("\n".join([header] + rows * 300) + "\n")

    def refuse(*args):
        raise AssertionError("a clean piece went to pyarrow.csv")

    monkeypatch.setattr(tabular, "_parse_with_pyarrow", refuse)
    flows, stats = read(path)
    assert flows.num_rows == len(rows) * 300 and stats.rejected_total == 0


BAD_ADDRESSES = ["999.1.1.1", "1.2", "1.2.3.4.5", "::::", "abc", "010.1.1.1", "10.0.0", "fe80::1%eth0",
                 "1:2:3:4:5:6:7:8:9", "12345::1", "1.2.3.4.", "::1:"]


def test_csv_addresses_that_only_look_like_addresses_are_rejected(tmp_path, monkeypatch):
    """Address characters are not an address: each bad one (in sa or da) is rejected with
    its line and value, both ways (splitter and pyarrow.csv), and the rest is read."""
    header, rows = nfdump17_rows()
    body = [rows[i % len(rows)] for i in range(3000)]
    expected = {}
    for n, address in enumerate(BAD_ADDRESSES):
        index, column = 37 + 211 * n, ("sa", "da")[n % 2]
        body[index] = with_field(header, body[index], column, address)
        expected[index + 2] = f"bad address in {column}: {address!r}"
    body[2999] = with_field(header, body[2999], "da", "2001:0db8:0000:0000:0000:ff00:0042:8329")  # full form: good
    path = tmp_path / "flows.csv"
    path.write_text("\n".join([header, *body]) + "\n")
    flows, stats = assert_same_both_ways(path, monkeypatch)
    assert {r.line: r.reason for r in stats.rejects} == expected
    assert stats.rejected == {"bad address in sa": 6, "bad address in da": 6}  # counted by kind, not by value
    assert flows.num_rows == 3000 - len(BAD_ADDRESSES)
    assert set(flows.column("flow_ref").to_pylist()).isdisjoint(expected)
    assert flows.column("dst_ip").to_pylist()[-1] == "2001:0db8:0000:0000:0000:ff00:0042:8329"
    assert "rejected 6 bad address in sa, 6 bad address in da" in stats.summary()
    raw = next(r.raw for r in stats.rejects if r.line == 37 + 2)
    assert "999.1.1.1" in raw

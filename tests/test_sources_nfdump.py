"""nfdump: nfcapd binaries through the nfdump program, CSV exports of 1.6 and 1.7, and a
real exporter (softflowd -> nfcapd on 127.0.0.1) when those programs are installed."""

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
from minewatch.sources._records import SourceStats, collect_tables
from minewatch.sources.nfdump import read_nfdump

from conftest import DATA

HERE = DATA / "sources"
needs_nfdump = pytest.mark.skipif(shutil.which("nfdump") is None, reason="nfdump is not installed")


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
        3: "bad address in sa",
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

"""Generic CSV / Parquet flow tables through a column mapping."""

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.csv  # noqa: F401 (pa.csv)
import pyarrow.parquet as pq
import pytest

from minewatch.errors import InputError, UsageError
from minewatch.schema.flows import FLOWS
from minewatch.sources import _records, tabular
from minewatch.sources._records import SourceStats, collect_tables
from minewatch.sources.tabular import parse_mapping, read_tabular

ARGUS = {"ts_start": "StartTime", "duration": "Dur", "ip_proto": "Proto", "src_ip": "SrcAddr",
         "src_port": "Sport", "dst_ip": "DstAddr", "dst_port": "Dport", "src_packets": "TotPkts",
         "src_bytes": "TotBytes"}
UTC = timezone.utc


def read(path, mapping=ARGUS, **options):
    stats = SourceStats(str(path))
    return collect_tables(read_tabular(path, mapping, stats=stats, **options)).get("flows"), stats


def write(tmp_path, text, name="flows.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_mapping_text():
    assert parse_mapping("src_ip=SrcAddr, dst_ip=DstAddr") == {"src_ip": "SrcAddr", "dst_ip": "DstAddr"}
    with pytest.raises(UsageError):
        parse_mapping("src_ip")


def test_iso_times_with_mixed_zones(tmp_path):
    path = write(tmp_path, "StartTime,Dur,Proto,SrcAddr,Sport,DstAddr,Dport,TotPkts,TotBytes\n"
                           "2024-03-01T10:00:00+08:00,1.5,tcp,10.0.0.5,40000,192.0.2.7,3333,10,900\n"
                           "2024-03-01T02:00:01Z,0,udp,10.0.0.5,53211,10.0.0.1,53,1,64\n"
                           "2024-03-01 02:00:02,0,icmp,10.0.0.5,0,10.0.0.1,0,1,84\n")
    flows, stats = read(path)
    assert flows.schema == FLOWS
    rows = flows.to_pylist()
    assert [r["ts_start"] for r in rows] == [datetime(2024, 3, 1, 2, 0, s, tzinfo=UTC) for s in (0, 1, 2)]
    assert (rows[0]["ts_end"] - rows[0]["ts_start"]).total_seconds() == 1.5
    assert [r["l4"] for r in rows] == ["TCP", "UDP", "ICMP"] and rows[2]["src_port"] is None
    assert any("without a zone" in n for n in stats.notes)


@pytest.mark.parametrize("unit,values", [("s", ["1709258400", "1709258400.25"]),
                                         ("ms", ["1709258400000", "1709258400250"]),
                                         ("us", ["1709258400000000", "1709258400250000"])])
def test_epoch_units(tmp_path, unit, values):
    path = write(tmp_path, "t,a,b\n" + "".join(f"{v},10.0.0.1,10.0.0.2\n" for v in values))
    mapping = {"ts_start": "t", "src_ip": "a", "dst_ip": "b"}
    for time_unit in (unit, "auto"):
        flows, _ = read(path, mapping, time_unit=time_unit)
        assert flows.column("ts_start").to_pylist() == [datetime(2024, 3, 1, 2, 0, 0, us, tzinfo=UTC) for us in (0, 250000)]


def test_parquet_with_typed_columns(tmp_path):
    table = pa.table({"first": pa.array([1709258400_000, 1709258401_000], pa.int64()),
                      "last": pa.array([1709258402_000, 1709258403_000], pa.int64()),
                      "s": ["10.0.0.5", "10.0.0.6"], "d": ["192.0.2.7", ""], "pkts": [3, -1]})
    path = tmp_path / "flows.parquet"
    pq.write_table(table, path)
    flows, stats = read(path, {"ts_start": "first", "ts_end": "last", "src_ip": "s", "dst_ip": "d", "src_packets": "pkts"},
                        time_unit="ms")
    assert stats.reader == "parquet" and flows.num_rows == 1
    assert flows.to_pylist()[0]["ts_end"] == datetime(2024, 3, 1, 2, 0, 2, tzinfo=UTC)
    assert [(r.line, r.reason) for r in stats.rejects] == [(2, "missing d")]


def test_bad_rows_and_missing_columns(tmp_path):
    path = write(tmp_path, "StartTime,Dur,Proto,SrcAddr,Sport,DstAddr,Dport,TotPkts,TotBytes\n"
                           "2024-03-01T10:00:00+08:00,1.5,tcp,10.0.0.5,40000,192.0.2.7,3333,10,900\n"
                           "2024-03-01T10:00:00+08:00,-3,tcp,10.0.0.5,40000,192.0.2.7,3333,10,900\n"
                           "2024-03-01T10:00:00+08:00,1,tcp,10.0.0.5,70000,192.0.2.7,3333,10,900\n"
                           "2024-03-01T10:00:00+08:00,1,tcp,10.0.0.5,4000\n")
    flows, stats = read(path)
    assert flows.num_rows == 1
    assert {r.line: r.reason for r in stats.rejects} == {
        3: "bad duration in Dur", 4: "bad number in Sport", 5: "wrong number of fields (5, expected 9)"}
    with pytest.raises(InputError, match="not in the file: Nope"):
        read(path, {**ARGUS, "src_ip": "Nope"})
    with pytest.raises(UsageError, match="unknown canonical"):
        read(path, {**ARGUS, "colour": "x"})
    with pytest.raises(UsageError, match="lacks required"):
        read(path, {"src_ip": "SrcAddr"})


def test_wrong_and_empty_files(tmp_path):
    path = write(tmp_path, "")
    assert read(path)[0] is None
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(InputError):
        read(path)
    path.write_text("StartTime,Dur,Proto,SrcAddr,Sport,DstAddr,Dport,TotPkts,TotBytes\n" + "x,y,z,a,b,c,d,e,f\n" * 3)
    with pytest.raises(InputError, match="no record could be read"):
        read(path)


def test_slips_argus_binetflow(corpus):
    """Argus bidirectional flows (slips test2) through a mapping: real third-party CSV."""
    flows, stats = read(corpus / "slips/test2-malicious.binetflow", time_unit="s", naive_tz="UTC")
    assert flows.num_rows > 3000
    assert stats.rejected_total < flows.num_rows / 100
    assert set(flows.column("l4").unique().to_pylist()) >= {"TCP", "UDP"}


def test_argus_binetflow_is_recognised_without_a_mapping(corpus):
    path = corpus / "slips/test2-malicious.binetflow"
    flows, stats = read(path, mapping=None)
    mapped, _ = read(path, time_unit="s", naive_tz="UTC")
    assert flows.num_rows == mapped.num_rows > 3000
    assert flows.column("src_ip").equals(mapped.column("src_ip")) and flows.column("ts_start").equals(mapped.column("ts_start"))
    assert flows.column("src_packets").null_count == 0 and flows.column("dst_packets").null_count == 0
    raw = pa.csv.read_csv(path).to_pylist()[:50]
    rows = flows.slice(0, 50).to_pylist()
    assert [(r["src_packets"], r["dst_packets"], r["src_bytes"], r["dst_bytes"]) for r in rows] == [
        (x["SrcPkts"], x["TotPkts"] - x["SrcPkts"], x["SrcBytes"], x["TotBytes"] - x["SrcBytes"]) for x in raw]
    assert any(note.startswith("read as Argus binetflow") for note in stats.notes)


# ---------------------------------------------------------------- the compiled splitter, generic tables


def both_ways(path, mapping, monkeypatch, **options):
    """Read with the compiled splitter and with pyarrow.csv alone: the same rows and rejects."""
    monkeypatch.setattr(_records, "CHUNK_BYTES", 16 << 10)
    monkeypatch.setattr(_records, "WORKERS", 2)
    flows, stats = read(path, mapping, **options)
    with monkeypatch.context() as m:
        m.setattr(tabular, "_fastcsv", None)
        flows_ref, stats_ref = read(path, mapping, **options)
    assert flows.equals(flows_ref)
    assert sorted((r.line, r.reason, r.raw) for r in stats.rejects) == sorted((r.line, r.reason, r.raw) for r in stats_ref.rejects)
    assert (stats.accepted, stats.rejected, stats.ignored, stats.adjusted, stats.notes) == (
        stats_ref.accepted, stats_ref.rejected, stats_ref.ignored, stats_ref.adjusted, stats_ref.notes)
    return flows, stats


def argus_rows(n):
    rows = []
    for i in range(n):
        proto = ("tcp", "udp", "icmp", "TCP")[i % 4]
        rows.append(f"2024-03-01T10:{i // 60 % 60:02d}:{i % 60:02d}+08:00,{i % 7}.5,{proto},10.0.{i % 250}.5,"
                    f"{40000 + i % 1000},192.0.2.{i % 200},{3333 if i % 3 else 443},{i % 50},{i * 7}")
    return rows


def test_generic_tsv_and_csv_with_bad_rows_both_ways(tmp_path, monkeypatch):
    header = "StartTime,Dur,Proto,SrcAddr,Sport,DstAddr,Dport,TotPkts,TotBytes"
    rows = argus_rows(3000)
    rows[10] = rows[10].replace("10.0.10.5", "ten.0.0.5")
    rows[500] = rows[500].rsplit(",", 2)[0]
    rows[901] = rows[901].replace(",3333,", ",99999,")
    rows[1500] = ""
    path = write(tmp_path, "\n".join([header, *rows]) + "\n")
    flows, stats = both_ways(path, ARGUS, monkeypatch)
    assert {r.line: r.reason for r in stats.rejects} == {
        12: "bad address in SrcAddr: 'ten.0.0.5'", 502: "wrong number of fields (7, expected 9)", 903: "bad number in Dport"}
    tsv = write(tmp_path, "\n".join(line.replace(",", "\t") for line in [header, *rows]) + "\n", "flows.tsv")
    tsv_flows, _ = both_ways(tsv, ARGUS, monkeypatch, delimiter="\t")
    assert tsv_flows.drop(["source_file"]).equals(flows.drop(["source_file"]))


def test_generic_quoted_csv_still_read(tmp_path, monkeypatch):
    header = '"StartTime","Dur","Proto","SrcAddr","Sport","DstAddr","Dport","TotPkts","TotBytes"'
    rows = [",".join(f'"{v}"' for v in row.split(",")) for row in argus_rows(500)]
    path = write(tmp_path, "\n".join([header.replace('"', ""), *rows]) + "\n")
    flows, stats = both_ways(path, ARGUS, monkeypatch)
    assert flows.num_rows == 500 and stats.rejected_total == 0


def test_one_column_for_two_canonical_ones_and_a_name_twice(tmp_path, monkeypatch):
    header = "StartTime,Dur,Proto,SrcAddr,Sport,DstAddr,Dport,TotPkts,TotBytes"
    path = write(tmp_path, "\n".join([header, *argus_rows(800)]) + "\n")
    mapping = {**ARGUS, "ts_end": "StartTime", "dst_ip": "SrcAddr", "dst_port": "TotPkts", "src_bytes": "Sport"}
    flows, _ = both_ways(path, mapping, monkeypatch)
    assert flows.column("ts_end").equals(flows.column("ts_start"))
    twice = write(tmp_path, "\n".join([header + ",SrcAddr", *(r + ",10.9.9.9" for r in argus_rows(800))]) + "\n", "twice.csv")
    both_ways(twice, ARGUS, monkeypatch)


def test_typed_protocol_and_flags_read_as_their_text_would(tmp_path):
    """Integer ip_proto and tcp flags (Parquet) take a typed path: same values, same rejects."""
    protos, flags = [6, 17, 1, 300, -1, None, 58], [27, 0, 300, 2, -5, None, 16]
    columns = {"t": ["2024-03-01T02:00:00Z"] * 7, "a": ["10.0.0.1"] * 7, "b": ["10.0.0.2"] * 7}
    mapping = {"ts_start": "t", "src_ip": "a", "dst_ip": "b", "ip_proto": "p", "src_tcp_flags": "f"}
    typed = tmp_path / "typed.parquet"
    pq.write_table(pa.table({**columns, "p": pa.array(protos, pa.int32()), "f": pa.array(flags, pa.int64())}), typed)
    text = tmp_path / "text.parquet"
    pq.write_table(pa.table({**columns, "p": [None if v is None else str(v) for v in protos],
                             "f": [None if v is None else str(v) for v in flags]}), text)
    (a, stats_a), (b, stats_b) = read(typed, mapping), read(text, mapping)
    assert a.drop_columns(["source_file"]).equals(b.drop_columns(["source_file"]))
    assert [(r.line, r.reason) for r in stats_a.rejects] == [(r.line, r.reason) for r in stats_b.rejects]
    assert [(r.line, r.reason) for r in stats_a.rejects] == [(4, "bad protocol in p"), (5, "bad protocol in p")]
    rows = a.to_pylist()
    assert [(r["ip_proto"], r["l4"], r["src_tcp_flags"]) for r in rows] == [
        (6, "TCP", 27), (17, "UDP", 0), (1, "ICMP", 300 & 0xFF), (None, None, None), (58, "ICMPv6", 16)]


def test_canonical_names_need_no_mapping(tmp_path):
    path = write(tmp_path, "ts_start,src_ip,dst_ip,src_msgs,dst_msg_size_mean,other\n"
                           "2024-03-01T02:00:00Z,10.0.0.1,10.0.0.2,4,120.5,x\n")
    flows, stats = read(path, None)
    row = flows.to_pylist()[0]
    assert (row["src_msgs"], row["dst_msg_size_mean"], row["src_port"]) == (4, 120.5, None)
    assert any("canonical names: ts_start, src_ip, dst_ip, src_msgs, dst_msg_size_mean" in n for n in stats.notes)
    partial = write(tmp_path, "ts_start,src_ip,dport\n2024-03-01T02:00:00Z,10.0.0.1,80\n", "partial.csv")
    with pytest.raises(InputError, match="dst_ip not found"):
        read(partial, None)


def test_generic_csv_and_parquet_reject_bad_addresses_with_line_and_value(tmp_path, monkeypatch):
    """Address characters that make no address (a part over 255, too few or too many
    parts, hex letters alone, a last line cut inside an address) are rejected; the rest
    is read, from CSV both ways and from Parquet."""
    header = "StartTime,Dur,Proto,SrcAddr,Sport,DstAddr,Dport,TotPkts,TotBytes"
    rows = argus_rows(2000)
    bad = {5: ("SrcAddr", "999.1.1.1"), 300: ("DstAddr", "1.2"), 301: ("SrcAddr", "::::"),
           1200: ("DstAddr", "abc"), 1500: ("SrcAddr", "1.2.3.4.5"), 1700: ("SrcAddr", " 256.0.0.1 ")}
    names = header.split(",")
    for index, (column, value) in bad.items():
        fields = rows[index].split(",")
        fields[names.index(column)] = value
        rows[index] = ",".join(fields)
    expected = {index + 2: f"bad address in {column}: {value!r}" for index, (column, value) in bad.items()}
    # the last column is an address: a file cut inside it still has every field
    reordered = [",".join(r.split(",")[:5] + r.split(",")[6:] + [r.split(",")[5]]) for r in rows]
    cut_header = ",".join(names[:5] + names[6:] + ["DstAddr"])
    last = reordered[-1]
    reordered[-1] = last[:last.rindex(".")]  # 192.0.2.x -> 192.0.2, no newline
    expected[len(rows) + 1] = f"bad address in DstAddr: {reordered[-1].rsplit(',', 1)[1]!r}"
    path = write(tmp_path, "\n".join([cut_header, *reordered]))
    flows, stats = both_ways(path, ARGUS, monkeypatch)
    assert {r.line: r.reason for r in stats.rejects} == expected
    assert flows.num_rows == len(rows) - len(expected)
    assert stats.rejected["bad address in SrcAddr"] == 4 and stats.rejected["bad address in DstAddr"] == 3

    table = pa.table({"t": [f"2024-03-01T02:00:0{i}Z" for i in range(6)],
                      "a": ["10.0.0.1", "999.1.1.1", None, "2001:db8::7", "1.2", "::ffff:10.0.0.300"],
                      "b": ["10.0.0.2"] * 6})
    parquet = tmp_path / "flows.parquet"
    pq.write_table(table, parquet)
    flows, stats = read(parquet, {"ts_start": "t", "src_ip": "a", "dst_ip": "b"})
    assert sorted((r.line, r.reason) for r in stats.rejects) == [
        (2, "bad address in a: '999.1.1.1'"), (3, "missing a"), (5, "bad address in a: '1.2'"),
        (6, "bad address in a: '::ffff:10.0.0.300'")]
    assert flows.column("src_ip").to_pylist() == ["10.0.0.1", "2001:db8::7"]


def test_a_flow_ending_before_it_starts_is_kept_ending_at_its_start_and_counted(tmp_path, monkeypatch):
    mapping = {"ts_start": "first", "ts_end": "last", "src_ip": "sa", "dst_ip": "da"}
    rows = ["first,last,sa,da"] + [f"2024-01-01 00:{i % 60:02d}:00,2024-01-01 01:{i % 60:02d}:00,10.0.0.{i % 250},1.1.1.1"
                                   for i in range(2000)]
    rows[700] = "2024-01-01 02:00:00,2024-01-01 01:59:59,10.0.0.9,1.1.1.1"
    flows, stats = both_ways(write(tmp_path, "\n".join(rows) + "\n"), mapping, monkeypatch)
    assert stats.rejects == [] and flows.num_rows == 2000
    assert stats.adjusted == {"with last before first (end set to the start)": 1}
    row = flows.slice(699, 1).to_pylist()[0]
    assert row["ts_end"] == row["ts_start"] == datetime(2024, 1, 1, 2, 0, tzinfo=UTC)


def test_the_delimiter_is_taken_from_the_header_line(tmp_path):
    for delimiter in (",", "\t", ";", "|"):
        text = delimiter.join(["ts_start", "src_ip", "dst_ip", "dst_port"]) + "\n" + "".join(
            delimiter.join([f"2024-01-01T00:00:{i:02d}Z", "10.0.0.1", "192.0.2.7", "3333"]) + "\n" for i in range(20))
        path = write(tmp_path, text, name=f"flows{ord(delimiter)}.csv")
        flows, stats = read(path, mapping=None)
        assert flows.num_rows == 20 and stats.rejects == [], repr(delimiter)
        assert set(flows.column("dst_port").to_pylist()) == {3333}


def test_date_columns_are_midnights_and_other_kinds_are_one_line(tmp_path):
    import datetime as dt

    day = tmp_path / "day.parquet"
    pq.write_table(pa.table({"ts_start": pa.array([dt.date(2024, 1, 1)] * 2, pa.date32()),
                             "src_ip": ["10.0.0.1"] * 2, "dst_ip": ["1.1.1.1"] * 2}), day)
    flows, _ = read(day, mapping=None)
    assert flows.column("ts_start").to_pylist() == [datetime(2024, 1, 1, tzinfo=UTC)] * 2
    flag = tmp_path / "flag.parquet"
    pq.write_table(pa.table({"ts_start": [True, False], "src_ip": ["10.0.0.1"] * 2, "dst_ip": ["1.1.1.1"] * 2}), flag)
    with pytest.raises(InputError, match="ts_start: a column of bool values cannot hold times"):
        read(flag, mapping=None)

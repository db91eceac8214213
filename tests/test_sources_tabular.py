"""Generic CSV / Parquet flow tables through a column mapping."""

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minewatch.errors import InputError, UsageError
from minewatch.schema.flows import FLOWS
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

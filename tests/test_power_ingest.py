"""Readers and bad-input checks: every problem is counted per meter, none is silent."""

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minewatch.errors import InputError, UsageError
from minewatch.power.ingest import ingest_file, load_metadata, open_catalog, read_meter_file

DATA = Path(__file__).parent / "data" / "power" / "cambridge_2018_b4_b40_b64.csv"


def long_csv(tmp_path: Path, lines: list[str], header: str = "meter_id,timestamp,kwh") -> Path:
    p = tmp_path / "readings.csv"
    p.write_text(header + "\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return p


def hourly(meter: str, n: int, value=lambda i: 10.0, start_hour: int = 0, day: str = "2024-01-01") -> list[str]:
    out = []
    for i in range(n):
        h = start_hour + i
        out.append(f"{meter},{day} {h % 24:02d}:00:00+00:00,{value(i)}".replace(f"{day} ", f"{day} ", 1))
    return out


def q(res, meter: str):
    return next(r for r in res.quality if r.meter_id == meter)


def test_wide_cambridge_file(tmp_path):
    res = read_meter_file(DATA)
    assert res.layout == "wide" and res.unit == "kwh"
    assert sorted(set(res.table["meter_id"].to_pylist())) == ["b4", "b40", "b64"]
    assert res.table.num_rows == 3 * 24 * 70
    b40 = q(res, "b40")
    assert b40.interval_s == 3600 and b40.rows == 24 * 70
    assert res.table.schema.field("ts").type == pa.timestamp("us", tz="UTC")


def test_long_csv_kwh_15_min_becomes_kw(tmp_path):
    lines = [f"M1,2024-01-01 00:{m:02d}:00+00:00,2.5" for m in (0, 15, 30, 45)]
    res = read_meter_file(long_csv(tmp_path, lines))
    assert res.table["kw"].to_pylist() == [10.0] * 4  # 2.5 kWh per 15 min = 10 kW
    assert q(res, "M1").interval_s == 900


def test_long_parquet_kw(tmp_path):
    t = pa.table({"meter_id": ["A", "A", "A"],
                  "timestamp": pa.array([0, 3600, 7200], pa.timestamp("s", tz="UTC")),
                  "kw": [1.0, 2.0, 3.0]})
    p = tmp_path / "r.parquet"
    pq.write_table(t, p)
    res = read_meter_file(p)
    assert res.layout == "long" and res.unit == "kw"
    assert res.table["kw"].to_pylist() == [1.0, 2.0, 3.0]


def test_time_zone_offsets_and_local_time(tmp_path):
    lines = ["M1,2024-01-01 08:00:00+08:00,1", "M1,2024-01-01 01:00:00Z,1", "M1,2024-01-01 10:00:00,1"]
    res = read_meter_file(long_csv(tmp_path, lines), tz="Asia/Shanghai")
    hours = sorted(t.hour for t in res.table["ts"].to_pylist())
    assert hours == [0, 1, 2]  # all three in UTC


def test_duplicates_identical_and_conflicting(tmp_path):
    lines = hourly("M1", 5) + ["M1,2024-01-01 02:00:00+00:00,10.0", "M1,2024-01-01 03:00:00+00:00,99"]
    res = read_meter_file(long_csv(tmp_path, lines))
    c = q(res, "M1").counts
    assert c["duplicate_identical"] == 1 and c["duplicate_conflicting"] == 1
    assert res.table.num_rows == 5
    assert 99.0 not in res.table["kw"].to_pylist()  # the first reading is kept


def test_gaps_are_counted(tmp_path):
    lines = [ln for i, ln in enumerate(hourly("M1", 24)) if i not in (5, 6, 7, 20)]
    res = read_meter_file(long_csv(tmp_path, lines))
    assert q(res, "M1").counts["missing_intervals"] == 4


def test_dst_fall_back_repeated_hour(tmp_path):
    # Europe/London 2024-10-27: 01:00-02:00 local happens twice; naive timestamps
    lines = [f"M1,2024-10-27 {h:02d}:00:00,5" for h in (0, 1, 1, 2, 3)] + \
            [f"M1,2024-10-26 {h:02d}:00:00,5" for h in range(20, 24)]
    res = read_meter_file(long_csv(tmp_path, lines), tz="Europe/London")
    c = q(res, "M1").counts
    assert c["dst_clock_change"] >= 1
    assert c["duplicate_identical"] == 0 and c["duplicate_conflicting"] == 0


def test_dst_spring_forward_missing_hour(tmp_path):
    # Europe/London 2024-03-31: 01:00 local does not exist; the meter skipped it
    lines = [f"M1,2024-03-31 {h:02d}:00:00,5" for h in (0, 2, 3, 4, 5)] + \
            [f"M1,2024-03-30 {h:02d}:00:00,5" for h in range(18, 24)]
    res = read_meter_file(long_csv(tmp_path, lines), tz="Europe/London")
    c = q(res, "M1").counts
    assert c["missing_intervals"] == 0  # 00:00 GMT -> 02:00 BST is one hour: no gap


def test_negative_zero_absurd_and_unparseable(tmp_path):
    vals = ["10"] * 30
    vals[3], vals[4], vals[5], vals[6], vals[7] = "-4", "0", "0", "9000", "abc"
    lines = [f"M1,2024-01-02 {i % 24:02d}:00:00+00:00,{v}" if i < 24 else
             f"M1,2024-01-03 {i % 24:02d}:00:00+00:00,{v}" for i, v in enumerate(vals)]
    lines.append("M1,not a time,10")
    res = read_meter_file(long_csv(tmp_path, lines))
    c = q(res, "M1").counts
    assert (c["negative"], c["zero_as_missing"], c["absurd"], c["bad_value"], c["bad_timestamp"]) == (1, 2, 1, 1, 1)
    kw = res.table["kw"].to_pylist()
    assert kw.count(None) == 5 and max(k for k in kw if k is not None) == 10.0


def test_cumulative_register_is_differenced_and_said(tmp_path):
    lines = hourly("REG", 24, value=lambda i: 1000 + 7 * i) + hourly("OK", 24, value=lambda i: 5 + i % 3)
    res = read_meter_file(long_csv(tmp_path, lines))
    reg = q(res, "REG")
    assert reg.cumulative_register and "differencing" in reg.summary()
    kws = [r["kw"] for r in res.table.to_pylist() if r["meter_id"] == "REG"]
    assert kws[0] is None and set(kws[1:]) == {7.0}
    assert not q(res, "OK").cumulative_register


def test_wh_labelled_kwh_is_flagged_not_changed(tmp_path):
    lines = []
    for m, v in (("A", 12.0), ("B", 8.0), ("C", 15.0), ("WH", 11000.0)):
        lines += hourly(m, 6, value=lambda i, v=v: v + i * 0.1)
    res = read_meter_file(long_csv(tmp_path, lines))
    wh = q(res, "WH")
    assert wh.suspect_unit and "Wh" in wh.summary()
    assert max(r["kw"] for r in res.table.to_pylist() if r["meter_id"] == "WH") > 10_000
    assert not q(res, "A").suspect_unit


def test_bad_files_raise_input_error(tmp_path):
    with pytest.raises(InputError):
        read_meter_file(tmp_path / "absent.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("meter_id,timestamp,kwh\n")
    with pytest.raises(InputError):
        read_meter_file(empty)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet at all")
    with pytest.raises(InputError):
        read_meter_file(junk)
    with pytest.raises(UsageError):
        read_meter_file(DATA, tz="Mars/Olympus")


def test_ingest_is_idempotent_and_catalogued(tmp_path):
    ws = tmp_path / "ws"
    first = ingest_file(ws, DATA)
    second = ingest_file(ws, DATA)
    assert not first.skipped and second.skipped
    assert len(list((ws / "meters").glob("*.parquet"))) == 1
    con = open_catalog(ws)
    assert con.execute("SELECT count(*) FROM files").fetchall()[0][0] == 1
    assert con.execute("SELECT count(*) FROM meters").fetchall()[0][0] == 3
    assert con.execute("SELECT count(*) FROM quality").fetchall()[0][0] == 3
    con.close()
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{ws}/meters/*.parquet')").fetchall()[0][0]
    assert n == 3 * 24 * 70


def test_metadata(tmp_path):
    ws = tmp_path / "ws"
    meta = tmp_path / "meta.csv"
    meta.write_text("meter_id,declared_business,contracted_kw,tariff_class\nb40,laboratory,400,commercial\n")
    assert load_metadata(ws, meta) == (1, [])
    bad = tmp_path / "bad.csv"
    bad.write_text("id,x\n1,2\n")
    with pytest.raises(InputError):
        load_metadata(ws, bad)
    capture = Path(__file__).parents[1] / "src" / "minewatch" / "demo" / "captures" / "mining.pcapng"
    with pytest.raises(InputError, match="a pcap file, not meter metadata"):
        load_metadata(ws, capture)


def test_load_far_beyond_contracted_capacity_is_a_unit_error(tmp_path):
    """One meter alone has no peers to compare with; its contracted capacity tells that
    50,000 'kWh' an hour behind an 80 kW supply are Wh labelled kWh."""
    ws = tmp_path / "ws"
    f = long_csv(tmp_path, hourly("solo", 24, lambda i: 50_000.0) + hourly("ok", 24, lambda i: 40.0))
    ingest_file(ws, f)
    meta = tmp_path / "meta.csv"
    meta.write_text("meter_id,contracted_kw\nsolo,80\nok,80\n")
    n, problems = load_metadata(ws, meta)
    assert n == 2
    assert [p[1] for p in problems] == [
        "meter solo: median load 50,000 kW is 625x its contracted 80 kW: values in Wh labelled kWh, "
        "or contracted_kw in MW? (nothing changed)"]
    con = open_catalog(ws)
    marked = con.execute("SELECT meter_id, suspect_unit FROM quality ORDER BY meter_id").fetchall()
    con.close()
    assert marked == [("ok", ""), ("solo", "beyond contracted capacity")]

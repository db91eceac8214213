"""Meter CSV lines that cannot be split into the header's fields: the rest of the file is
read, and each such line is reported with its number and reason, never silently lost."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from minewatch.cli import app
from minewatch.errors import InputError
from minewatch.power.ingest import ingest_file, load_metadata, read_meter_file

GOOD = [f"M1,2024-01-01T{h:02d}:00,{10 + h % 3}" for h in range(24)]


def write(tmp_path: Path, lines: list[str], name: str = "readings.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(("\n".join(["meter_id,timestamp,kwh", *lines]) + "\n").encode("utf-8", "surrogateescape"))
    return p


def test_short_long_and_undecodable_lines_are_rejected_with_their_numbers(tmp_path):
    lines = GOOD[:5] + ["M1,2024-01-01T05:00"] + GOOD[6:10] + ["M1,2024-01-01T10:00,1,7"] \
        + ["M1,2024-01-01T11:00,\udcff1"] + GOOD[12:]
    res = read_meter_file(write(tmp_path, lines))
    assert [(line, reason) for line, reason, _ in res.malformed] == [
        (7, "wrong number of fields (2, expected 3)"),
        (12, "wrong number of fields (4, expected 3)"),
        (13, "not UTF-8 text"),
    ]
    assert res.table.num_rows == 21  # every other line is read


def test_ingest_writes_the_lines_not_read_to_the_rejects_file(tmp_path):
    src = write(tmp_path, GOOD[:3] + ["M1,2024-01-01T03:00"] + GOOD[4:])
    res = ingest_file(tmp_path / "ws", src)
    assert res.readings == 23 and res.rejects_file is not None
    records = [json.loads(x) for x in res.rejects_file.read_text().splitlines()]
    assert records == [{"file": str(src), "line": 5, "reason": "wrong number of fields (2, expected 3)",
                        "raw": "M1,2024-01-01T03:00"}]


def test_a_file_of_only_broken_lines_names_the_first(tmp_path):
    with pytest.raises(InputError, match="line 2"):
        read_meter_file(write(tmp_path, ["M1,2024-01-01T00:00", "M1"]))


def test_metadata_lines_not_read_are_returned(tmp_path):
    meta = tmp_path / "meta.csv"
    meta.write_text("meter_id,declared_business,contracted_kw,tariff_class\n"
                    "M1,school,100,commercial\nM2,office\nM3,data centre,900,industrial\n")
    n, malformed = load_metadata(tmp_path / "ws", meta)
    assert n == 2 and [(line, reason) for line, reason, _ in malformed] == [
        (3, "wrong number of fields (2, expected 4)")]
    meta.write_text("meter_id,contracted_kw\nM1,100\nM2,about 50\nM3,\n")
    n, problems = load_metadata(tmp_path / "ws2", meta)
    assert n == 3 and [(line, reason) for line, reason, _ in problems] == [
        (None, "meter M2: contracted_kw 'about 50' is not a number (left empty)")]


def test_cli_warns_in_one_line_and_goes_on(tmp_path):
    src = write(tmp_path, GOOD[:3] + ["M1,2024-01-01T03:00"] + GOOD[4:], name="day[1].csv")
    result = CliRunner().invoke(app, ["meters", "ingest", str(src), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    warning = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "day[1].csv: 1 lines not read" in warning[0] and "line 5" in warning[0]
    assert "23 readings of 1 meters" in result.output


def test_readings_already_in_the_workspace_from_another_file_are_counted(tmp_path):
    first = write(tmp_path, GOOD[:12], name="jan-a.csv")
    overlap = [line.rsplit(",", 1)[0] + ("," + line.rsplit(",", 1)[1] if i < 3 else ",99") for i, line in enumerate(GOOD[8:16])]
    second = write(tmp_path, overlap, name="jan-b.csv")  # hours 8-15: 8-11 again, 8-10 same value, 11 another
    ws = tmp_path / "ws"
    assert ingest_file(ws, first).quality[0].counts["in_other_file"] == 0
    res = ingest_file(ws, second)
    counts = res.quality[0].counts
    assert (counts["in_other_file"], counts["conflicts_other_file"]) == (3, 1)
    assert any("4 readings were already in the workspace" in note and "1 of them with another value" in note
               for note in res.notes)


def test_epoch_times_are_read_and_unreadable_times_are_one_line(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = 1704067200  # 2024-01-01T00:00:00Z
    seconds = write(tmp_path, [f"M1,{start + 3600 * h},2.0" for h in range(30)], name="s.csv")
    millis = write(tmp_path, [f"M1,{(start + 3600 * h) * 1000},2.0" for h in range(30)], name="ms.csv")
    iso = write(tmp_path, [f"M1,2024-01-01T{h:02d}:00:00Z,2.0" for h in range(24)]
                + [f"M1,2024-01-02T{h:02d}:00:00Z,2.0" for h in range(6)], name="iso.csv")
    tables = [read_meter_file(p, tz="Asia/Shanghai").table for p in (seconds, millis, iso)]
    assert tables[0].column("ts").equals(tables[2].column("ts")) and tables[1].column("ts").equals(tables[2].column("ts"))
    parquet = tmp_path / "epoch.parquet"
    pq.write_table(pa.table({"meter_id": ["M1"] * 30, "timestamp": [start + 3600 * h for h in range(30)],
                             "kwh": [2.0] * 30}), parquet)
    assert read_meter_file(parquet).table.column("ts").equals(tables[2].column("ts"))
    odd = tmp_path / "odd.parquet"
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), odd)
    with pytest.raises(InputError, match=r"no reading has a time that can be read \(the first is '1'\)"):
        read_meter_file(odd)


def test_a_header_naming_a_meter_twice_or_a_long_table_without_values_is_one_line(tmp_path):
    twice = tmp_path / "twice.csv"
    twice.write_text("timestamp,b1,b1,b2\n" + "".join(f"2024-01-01 {h:02d}:00,1,2,3\n" for h in range(24)))
    with pytest.raises(InputError, match="named twice in the header: b1"):
        read_meter_file(twice)
    novalue = tmp_path / "novalue.csv"
    novalue.write_text("meter_id,timestamp\nM1,2024-01-01 00:00\n")
    with pytest.raises(InputError, match="needs a value column"):
        read_meter_file(novalue)


def test_a_network_log_given_as_meter_readings_is_refused_in_one_line(tmp_path):
    zeek = tmp_path / "readings.csv"  # the name says table, the content is a Zeek log of epoch times
    zeek.write_bytes((Path(__file__).parent / "data" / "sources" / "zeek_dns.log").read_bytes())
    with pytest.raises(InputError, match="a zeek file, not meter readings"):
        read_meter_file(zeek)

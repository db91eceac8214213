"""The typer commands on a temporary workspace (typer.testing.CliRunner)."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import typer
from typer.testing import CliRunner

from minewatch.power.cli import equipment_app, meters_app

DATA = Path(__file__).parent / "data" / "power" / "cambridge_2018_b4_b40_b64.csv"
app = typer.Typer()
app.add_typer(meters_app, name="meters")
app.add_typer(equipment_app, name="equipment")
runner = CliRunner()


@pytest.fixture
def mined_csv(tmp_path) -> Path:
    """The fixture with 60 kW of flat miner load added to b64 from 2018-02-05."""
    t = pacsv.read_csv(DATA)
    b64 = t["b64"].to_numpy().astype(float)
    b64[35 * 24 :] += 60.0
    t = t.set_column(t.column_names.index("b64"), "b64", pa.array(np.round(b64, 1)))
    p = tmp_path / "mined.csv"
    pacsv.write_csv(t, p)
    return p


def test_ingest_score_show(tmp_path, mined_csv):
    ws = tmp_path / "ws"
    r = runner.invoke(app, ["meters", "ingest", str(mined_csv), "--workspace", str(ws)])
    assert r.exit_code == 0, r.output
    assert "5,040 readings of 3 meters" in r.output
    r = runner.invoke(app, ["meters", "ingest", str(mined_csv), "--workspace", str(ws)])
    assert "already ingested" in r.output
    out = tmp_path / "verdicts.jsonl"
    r = runner.invoke(app, ["meters", "score", "--workspace", str(ws), "--output", str(out)])
    assert r.exit_code == 0, r.output
    recs = {json.loads(line)["meter_id"]: json.loads(line) for line in out.read_text().splitlines()}
    assert recs["b64"]["flagged"] and not recs["b4"]["flagged"] and not recs["b40"]["flagged"]
    assert abs(recs["b64"]["estimated_kw"] - 60) < 10  # the building itself drifts too
    assert recs["b64"]["onset"] in ("2018-02-04", "2018-02-05", "2018-02-06")
    assert recs["b64"]["estimated_units"]["antminer_s9"] in range(41, 57)
    r = runner.invoke(app, ["meters", "show", "b64", "--workspace", str(ws), "--width", "60"])
    assert r.exit_code == 0, r.output
    assert "FLAGGED" in r.output and "█" in r.output and "S9-class" in r.output
    r = runner.invoke(app, ["meters", "show", "nope", "--workspace", str(ws)])
    assert r.exit_code == 1


def test_ingest_bad_file_reports_and_continues(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"garbage")
    ws = tmp_path / "ws"
    r = runner.invoke(app, ["meters", "ingest", str(bad), str(DATA), "--workspace", str(ws)])
    assert r.exit_code == 1
    assert "bad.parquet" in r.output and "3 meters" in r.output
    assert "Traceback" not in r.output


def test_score_empty_workspace(tmp_path):
    r = runner.invoke(app, ["meters", "score", "--workspace", str(tmp_path / "empty")])
    assert r.exit_code == 1


def test_equipment_estimate():
    r = runner.invoke(app, ["equipment", "estimate", "--model", "antminer_s9", "--count", "60580",
                            "--model", "gpu_rig_8", "--count", "57500", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert round(data["lines"][0]["power_mw"], 1) == 80.1
    assert round(data["lines"][0]["energy_gwh_year"]) == 702
    assert data["assumptions"]
    r = runner.invoke(app, ["equipment", "estimate", "--model", "antminer_s9", "--count", "60580"])
    assert "80.1" in r.output and "Assumptions" in r.output
    r = runner.invoke(app, ["equipment", "estimate", "--model", "nope", "--count", "1"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["equipment", "list"])
    assert r.exit_code == 0 and "antminer_s21" in r.output


def test_reading_commands_do_not_create_a_workspace(tmp_path):
    from typer.testing import CliRunner

    from minewatch.cli import app

    missing = tmp_path / "no-such-workspace"
    for args in (["meters", "score", "-w", str(missing)], ["meters", "show", "M1", "-w", str(missing)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code != 0
        assert not missing.exists(), args


def test_score_options_and_bad_readings_files_give_one_line(tmp_path):
    import pyarrow.parquet as pq

    ws = tmp_path / "ws"
    assert runner.invoke(app, ["meters", "ingest", str(DATA), "--workspace", str(ws)]).exit_code == 0
    cases = [(["--engine", "sparkle"], 2, "--engine must be duckdb or spark"),
             (["--spark-master", "local[2]"], 2, "--spark-master needs --engine spark")]
    for args, code, words in cases:
        r = runner.invoke(app, ["meters", "score", "-w", str(ws), *args])
        assert r.exit_code == code and r.output.startswith("error:") and words in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1
    (ws / "meters" / "0000foreign.parquet").write_bytes(b"not parquet")
    r = runner.invoke(app, ["meters", "score", "-w", str(ws)])
    assert r.exit_code == 1 and "0000foreign.parquet: not a readable Parquet file" in r.output, r.output
    pq.write_table(pa.table({"x": [1]}), ws / "meters" / "0000foreign.parquet")
    r = runner.invoke(app, ["meters", "score", "-w", str(ws)])
    assert r.exit_code == 1 and "0000foreign.parquet: not a readings file: no column meter_key" in r.output
    assert "Traceback" not in r.output


def test_options_are_checked_before_any_file_even_one_already_ingested(tmp_path):
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["meters", "ingest", str(DATA), "--workspace", str(ws)]).exit_code == 0
    for option, message in ((["--tz", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
                            (["--unit", "furlongs"], "unit must be one of")):
        result = runner.invoke(app, ["meters", "ingest", str(DATA), "--workspace", str(ws), *option])
        assert result.exit_code == 2 and message in result.output and "already ingested" not in result.output
    for command in (["score"], ["show", "b4"]):
        result = runner.invoke(app, ["meters", *command, "--workspace", str(ws), "--utc-offset", "30"])
        assert result.exit_code != 0 and "--utc-offset must be between -12 and 14" in (result.output + str(result.exception))

"""`minewatch ingest` into a workspace: partitions, catalogue, idempotence, rejects, resume."""

import json
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import typer
from typer.testing import CliRunner

from minewatch.workspace import Workspace
from minewatch.workspace import cli as ws_cli
from minewatch.workspace.catalogue import Catalogue
from minewatch.workspace.ingest import IngestOptions, ingest

DATA = Path(__file__).parent / "data" / "workspace"
LOGS = DATA / "logs"
MINING_PCAP = Path(__file__).parents[1] / "src" / "minewatch" / "demo" / "captures" / "mining.pcapng"


def make_app() -> typer.Typer:
    app = typer.Typer()
    for command in (ws_cli.ingest, ws_cli.detect, ws_cli.findings, ws_cli.evidence):
        app.command()(command)
    return app


def run(*args):
    return CliRunner().invoke(make_app(), [str(a) for a in args])


def parquet_files(ws: Path) -> list[Path]:
    return sorted((ws / "tables").rglob("*.parquet"))


def row_counts(ws: Path) -> dict[str, int]:
    counts = {}
    for table_dir in (ws / "tables").iterdir():
        files = list(table_dir.rglob("*.parquet"))
        counts[table_dir.name] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return counts


def test_ingest_writes_day_partitions_and_catalogue(tmp_path):
    ws = tmp_path / "ws"
    result = run("ingest", LOGS, "--workspace", ws)
    assert result.exit_code == 0, result.output
    assert "accepted" in result.output
    # partitioned by table, source format and day
    assert (ws / "tables" / "dns" / "source=zeek" / "day=2026-11-01").is_dir()
    assert (ws / "tables" / "alerts" / "source=suricata" / "day=2026-11-01").is_dir()
    assert (ws / "tables" / "flows" / "source=nfdump-csv" / "day=2026-11-02").is_dir()
    assert row_counts(ws) == {"dns": 4, "tls": 3, "alerts": 3, "http": 1, "flows": 3}
    with Catalogue(ws / "catalog.duckdb", read_only=True) as cat:
        files = {Path(f.path).name: f for f in cat.files()}
    assert set(files) == {"dns.log", "ssl.log", "eve.json", "nfdump.csv"}
    assert all(f.status == "done" and len(f.sha256) == 64 for f in files.values())
    assert (files["eve.json"].accepted, files["eve.json"].rejected) == (4, 2)
    assert (files["nfdump.csv"].accepted, files["nfdump.csv"].rejected) == (3, 1)
    assert files["eve.json"].tables == {"alerts": 3, "http": 1}


def test_ingest_twice_adds_nothing(tmp_path):
    ws = tmp_path / "ws"
    assert run("ingest", LOGS, "--workspace", ws).exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in parquet_files(ws)}
    second = run("ingest", LOGS, "--workspace", ws)
    assert second.exit_code == 0
    assert second.output.count("already ingested, nothing added") == 4
    assert {p: p.stat().st_mtime_ns for p in parquet_files(ws)} == before
    # a copy under another name is the same content: still nothing added
    copy = tmp_path / "renamed-eve.json"
    shutil.copy(LOGS / "eve.json", copy)
    third = run("ingest", copy, "--workspace", ws)
    assert "already ingested" in third.output
    assert parquet_files(ws) == sorted(before)


def test_rejects_file_names_file_line_and_reason(tmp_path):
    ws = tmp_path / "ws"
    run("ingest", LOGS / "eve.json", LOGS / "nfdump.csv", "--workspace", ws)
    lines = [json.loads(x) for f in sorted((ws / "rejects").glob("*.jsonl")) for x in f.read_text().splitlines()]
    by_file = {}
    for rec in lines:
        assert set(rec) == {"file", "line", "reason", "raw"}
        by_file.setdefault(Path(rec["file"]).name, []).append(rec)
    assert [r["line"] for r in by_file["eve.json"]] == [5, 6]
    assert all("malformed JSON" in r["reason"] for r in by_file["eve.json"])
    assert by_file["eve.json"][1]["raw"] == "not json at all"
    assert [(r["line"], r["reason"]) for r in by_file["nfdump.csv"]] == [(5, "bad time in te")]
    assert "not-an-ip" in by_file["nfdump.csv"][0]["raw"]


def test_bad_file_is_reported_and_the_rest_ingested(tmp_path):
    ws = tmp_path / "ws"
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02garbage" * 50)
    result = run("ingest", junk, LOGS / "dns.log", "--workspace", ws)
    assert result.exit_code == 1
    assert "junk.bin" in result.output and "binary data" in result.output
    assert row_counts(ws) == {"dns": 4}
    with Catalogue(ws / "catalog.duckdb", read_only=True) as cat:
        statuses = {Path(f.path).name: (f.status, f.error) for f in cat.files()}
    assert statuses["junk.bin"][0] == "failed" and "binary data" in statuses["junk.bin"][1]


def test_interrupted_ingest_is_undone_and_redone(tmp_path):
    ws_dir = tmp_path / "ws"
    ws = Workspace(ws_dir)
    eve = LOGS / "eve.json"

    def stop_after_first_part(path):
        raise KeyboardInterrupt  # as if the process were stopped between two partitions

    with pytest.raises(KeyboardInterrupt):
        ingest(ws, [str(eve)], IngestOptions(on_part=stop_after_first_part))
    assert len(parquet_files(ws_dir)) == 1  # one partition written before the stop
    with Catalogue(ws.catalogue_path, read_only=True) as cat:
        assert [f.status for f in cat.files()] == ["started"]

    report = ingest(ws, [str(eve)])
    assert [f.status for f in report.files] == ["redone"]
    assert row_counts(ws_dir) == {"alerts": 3, "http": 1}  # not 4 alerts: the partial part was removed
    with Catalogue(ws.catalogue_path, read_only=True) as cat:
        assert [(f.status, f.accepted) for f in cat.files()] == [("done", 4)]


def test_started_row_left_by_a_killed_process_is_cleaned(tmp_path):
    ws_dir = tmp_path / "ws"
    ws = Workspace(ws_dir)
    ingest(ws, [str(LOGS / "dns.log")])
    con = duckdb.connect(str(ws.catalogue_path))
    con.execute("UPDATE files SET status = 'started'")
    con.close()
    stray = next((ws_dir / "tables" / "dns").rglob("part-*.parquet"))
    shutil.copy(stray, stray.with_name(stray.name.replace("-00000", "-00007")))  # a leftover extra part
    report = ingest(ws, [str(LOGS / "dns.log")])
    assert [f.status for f in report.files] == ["redone"]
    assert row_counts(ws_dir) == {"dns": 4}


def test_capture_flows_stored_without_payload_heads_and_packet_evidence_kept(tmp_path):
    ws_dir = tmp_path / "ws"
    report = ingest(Workspace(ws_dir), [str(MINING_PCAP)])
    assert report.files[0].status == "ingested", report.files[0].error
    flow_files = list((ws_dir / "tables" / "flows" / "source=pcap").rglob("*.parquet"))
    names = pq.read_schema(flow_files[0]).names
    assert "src_payload_head" not in names and "dst_payload_head" not in names
    evidence = pq.read_table(ws_dir / "tables" / "evidence").to_pylist()
    assert {"proto.stratum_v1", "proto.cryptonote"} <= {e["detector"] for e in evidence}
    assert all(len(e["source_sha256"]) == 64 and e["source_file"] == str(MINING_PCAP.resolve()) for e in evidence)


def test_same_path_with_new_content_gets_a_distinct_source_name(tmp_path):
    ws = Workspace(tmp_path / "ws")
    log = tmp_path / "dns.log"
    shutil.copy(LOGS / "dns.log", log)
    ingest(ws, [str(log)])
    log.write_text(log.read_text().replace("4711", "4799"))  # rotated: same name, other content
    report = ingest(ws, [str(log)])
    assert report.files[0].status == "ingested"
    with Catalogue(ws.catalogue_path, read_only=True) as cat:
        names = sorted(f.source_file for f in cat.files())
    assert names[0] == str(log.resolve()) and names[1].startswith(str(log.resolve()) + "#sha256:")


def test_slips_corpus_logs_ingest(tmp_path, corpus):
    ws = tmp_path / "ws"
    slips = corpus / "slips"
    inputs = [slips / "test9-mixed-zeek-dir" / n for n in ("conn.log", "dns.log", "ssl.log", "http.log")]
    inputs.append(slips / "test6-malicious.suricata.json")
    result = run("ingest", *inputs, "--workspace", ws)
    assert result.exit_code == 0, result.output
    counts = row_counts(ws)
    assert counts["flows"] > 500 and counts["dns"] >= 239 and counts["tls"] >= 205 and counts["alerts"] > 0


def test_a_second_process_on_the_same_workspace_is_told_clearly(tmp_path):
    ws = tmp_path / "ws"
    assert run("ingest", LOGS / "dns.log", "--workspace", ws).exit_code == 0
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c",
                               "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); "
                               "time.sleep(30)", str(ws / "catalog.duckdb")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run("ingest", LOGS / "ssl.log", "--workspace", ws)
        assert "in use by another process" in str(result.exception)
    finally:
        holder.kill()
        holder.wait()

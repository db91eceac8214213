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


# ---- canonical flow tables without --map, the writing thread, day partitions ---------------

from datetime import datetime, timedelta, timezone  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

from minewatch.schema.flows import FLOWS  # noqa: E402
from minewatch.workspace import store  # noqa: E402

UTC = timezone.utc


def canonical_table(times: list[datetime]) -> pa.Table:
    """FLOWS rows as another workspace would export them (payload heads left out)."""
    n = len(times)
    columns = {f.name: pa.nulls(n, f.type) for f in FLOWS if f.name not in ("src_payload_head", "dst_payload_head")}
    columns.update(
        source_file=pa.array(["elsewhere.pcap"] * n), flow_ref=pa.array(range(100, 100 + n), pa.int64()),
        ts_start=pa.array(times, FLOWS.field("ts_start").type),
        ts_end=pa.array([t + timedelta(seconds=30) for t in times], FLOWS.field("ts_end").type),
        src_ip=pa.array([f"10.0.0.{i % 250 + 1}" for i in range(n)]),
        dst_ip=pa.array(["192.0.2.7"] * n), dst_port=pa.array([3333] * n, pa.int32()),
        ip_proto=pa.array([6] * n, pa.int16()), l4=pa.array(["TCP"] * n),
        src_tcp_flags=pa.array([27] * n, pa.uint8()), src_msgs=pa.array(range(n), pa.int64()),
        src_msg_size_mean=pa.array([150.5] * n), dst_msg_iat_std_ms=pa.array([2.25] * n))
    return pa.table(columns)


def stored_flows(ws: Path) -> pa.Table:
    return pq.read_table(ws / "tables" / "flows", partitioning=None).sort_by("flow_ref")


def test_canonical_parquet_ingests_without_a_mapping(tmp_path):
    path = tmp_path / "export.parquet"
    times = [datetime(2026, 11, 1, 9, 0, i, tzinfo=UTC) for i in range(5)]
    pq.write_table(canonical_table(times), path)
    result = run("ingest", path, "--workspace", tmp_path / "ws")
    assert result.exit_code == 0, result.output
    flows = stored_flows(tmp_path / "ws")
    assert flows.num_rows == 5 and flows.schema.names == store.stored_schema("flows").names
    row = flows.to_pylist()[2]
    assert row["ts_start"] == times[2] and row["ts_end"] == times[2] + timedelta(seconds=30)
    assert (row["src_ip"], row["dst_port"], row["l4"], row["src_tcp_flags"]) == ("10.0.0.3", 3333, "TCP", 27)
    assert (row["src_msgs"], row["src_msg_size_mean"], row["dst_msg_iat_std_ms"]) == (2, 150.5, 2.25)
    assert row["src_bytes"] is None
    # the stored source_file and flow_ref name this input and its row, as for any input
    assert row["source_file"] == str(path.resolve()) and row["flow_ref"] == 3
    assert (tmp_path / "ws" / "tables" / "flows" / "source=parquet" / "day=2026-11-01").is_dir()


def test_partial_canonical_names_in_csv_leave_the_rest_null(tmp_path):
    path = tmp_path / "few.csv"
    path.write_text("ts_start,src_ip,dst_ip,dst_port\n"
                    "2026-11-01T10:00:00Z,10.0.0.5,192.0.2.7,3333\n"
                    "2026-11-01T10:00:05Z,10.0.0.5,not-an-ip,3333\n")
    result = run("ingest", path, "--workspace", tmp_path / "ws")
    assert result.exit_code == 0, result.output
    assert "accepted 1" in result.output and "rejected 1" in result.output
    rows = stored_flows(tmp_path / "ws").to_pylist()
    assert len(rows) == 1 and rows[0]["dst_port"] == 3333
    assert rows[0]["ts_end"] == rows[0]["ts_start"]  # no end: the start
    assert rows[0]["src_port"] is None and rows[0]["ip_proto"] is None and rows[0]["src_msgs"] is None
    rejects = [json.loads(x) for x in next((tmp_path / "ws" / "rejects").glob("*.jsonl")).read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "bad address in dst_ip: 'not-an-ip'")]


def test_table_without_canonical_names_or_mapping_fails_in_one_line(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("when,from,to\n2026-11-01T10:00:00Z,10.0.0.5,192.0.2.7\n")
    result = run("ingest", path, "--workspace", tmp_path / "ws")
    assert result.exit_code == 1
    assert "other.csv" in result.output and "--map" in result.output and "ts_start, src_ip, dst_ip" in result.output
    assert "Traceback" not in result.output
    assert parquet_files(tmp_path / "ws") == []


def test_write_error_gives_one_line_and_no_partition(tmp_path):
    ws = tmp_path / "ws"
    path = tmp_path / "export.parquet"
    pq.write_table(canonical_table([datetime(2026, 11, 1, 9, 0, i, tzinfo=UTC) for i in range(5)]), path)
    blocker = ws / "tables" / "flows" / "source=parquet"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the partition folder goes")  # mkdir fails: a real OSError
    result = run("ingest", path, LOGS / "dns.log", "--workspace", ws)
    assert result.exit_code == 1
    message = " ".join(result.output.split())  # the console wraps long lines
    assert message.count("error:") == 1 and "Traceback" not in message
    assert "export.parquet: cannot write to the workspace:" in message
    assert "source=parquet" in result.output.replace("\n", "")
    assert "4 records accepted" in message  # those of dns.log: the failed file keeps none
    assert row_counts(ws) == {"dns": 4, "flows": 0}  # the other file went in
    with Catalogue(ws / "catalog.duckdb", read_only=True) as cat:
        statuses = {Path(f.path).name: f.status for f in cat.files()}
    assert statuses == {"export.parquet": "failed", "dns.log": "done"}
    blocker.unlink()  # fixed: the next run ingests it
    again = run("ingest", path, "--workspace", ws)
    assert again.exit_code == 0, again.output
    assert row_counts(ws)["flows"] == 5


def test_error_in_the_writing_thread_stops_the_ingest_and_is_undone(tmp_path):
    ws_dir = tmp_path / "ws"
    path = tmp_path / "export.parquet"
    pq.write_table(canonical_table([datetime(2026, 11, 1, 9, 0, i, tzinfo=UTC) for i in range(5)]), path)

    def disk_full(part):
        raise OSError(28, "No space left on device", str(part))

    report = ingest(Workspace(ws_dir), [str(path)], IngestOptions(on_part=disk_full))
    assert report.files[0].status == "failed"
    assert "cannot write to the workspace" in report.files[0].error and "No space left" in report.files[0].error
    assert parquet_files(ws_dir) == []  # the part written before the error was removed


@pytest.mark.parametrize("micros", [0, -1, 1, 86_400_000_000 - 1, 86_400_000_000, -86_400_000_000,
                                    -86_400_000_001, 1_772_323_200_000_000, -62_135_596_800_000_000,
                                    253_402_300_799_999_999])
def test_day_of_a_time_is_what_strftime_gives(micros):
    stamps = pa.array([micros], pa.int64()).cast(FLOWS.field("ts_start").type)
    expected = pc.strftime(stamps, format="%Y-%m-%d")[0].as_py()
    assert store.day_name(store.day_numbers(stamps)[0]) == expected


def test_day_numbers_on_random_times_and_nulls():
    rng = np.random.default_rng(7)
    micros = rng.integers(-3_000_000_000_000_000, 3_000_000_000_000_000, 2000)
    stamps = pa.array(list(micros) + [None], pa.int64()).cast(FLOWS.field("ts_start").type)
    names = [store.day_name(d) for d in store.day_numbers(stamps)]
    assert names == pc.fill_null(pc.strftime(stamps, format="%Y-%m-%d"), store.NO_DAY).to_pylist()


def test_midnight_and_pre_1970_records_land_in_their_days(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "PART_ROWS", 2)  # several parts per day, buffers written mid-file
    times = [datetime(2026, 11, 1, 23, 59, 59, 999999, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC),
             datetime(2026, 11, 2, 0, 0, 0, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
             datetime(1970, 1, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, 1, tzinfo=UTC)]
    path = tmp_path / "edges.parquet"
    pq.write_table(canonical_table(times), path)
    report = ingest(Workspace(tmp_path / "ws"), [str(path)])
    assert report.files[0].status == "ingested", report.files[0].error
    base = tmp_path / "ws" / "tables" / "flows" / "source=parquet"
    days = {d.name: sum(pq.ParquetFile(f).metadata.num_rows for f in d.glob("*.parquet")) for d in base.iterdir()}
    assert days == {"day=2026-11-01": 2, "day=2026-11-02": 3, "day=1969-12-31": 1, "day=1970-01-01": 1}
    assert len(list(base.rglob("*.parquet"))) == 4  # one batch: one part per day
    stored = stored_flows(tmp_path / "ws")
    assert stored.column("ts_start").to_pylist() == times  # flow_ref order is the file's order
    assert not list(base.rglob(".*"))  # no temporary file left


def test_writer_output_is_the_same_whatever_the_part_size(tmp_path, monkeypatch):
    start = datetime(2026, 11, 1, 22, tzinfo=UTC)
    table = canonical_table([start + timedelta(minutes=50 * i) for i in range(60)])  # over three days
    tables, parts = [], []
    for part_rows in (1_000_000, 7):
        monkeypatch.setattr(store, "PART_ROWS", part_rows)
        ws = Workspace(tmp_path / f"ws{part_rows}").create()
        writer = store.InputWriter(ws, "ab" * 32, "parquet", source_file="export.parquet")
        for batch in table.to_batches(max_chunksize=5):
            writer.write("flows", batch)
        writer.close()
        assert writer.rows == {"flows": 60}
        tables.append(stored_flows(ws.root))
        parts.append(len(parquet_files(ws.root)))
    assert tables[0].num_rows == 60 and tables[0].equals(tables[1])
    assert set(tables[0].column("source_file").to_pylist()) == {"export.parquet"}
    assert parts[0] == 3 and parts[1] > 3


def test_each_file_is_reported_on_one_line_however_long_its_path(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "second-level-with-a-long-name"
    deep.mkdir(parents=True)
    log = deep / "eve-from-the-sensor-in-the-north-machine-room.json"
    log.write_bytes((LOGS / "eve.json").read_bytes())
    result = run("ingest", log, "--workspace", tmp_path / "ws")
    lines = [line for line in result.output.splitlines() if log.name in line]
    assert len(lines) == 1, result.output
    assert "accepted" in lines[0] and "rejects" in lines[0]


def test_notes_and_every_reject_reason_are_reported(tmp_path):
    flows = tmp_path / "flows.csv"
    flows.write_text("ts_start,ts_end,src_ip,dst_ip,src_port\n"
                     "2024-01-01 02:00:00,2024-01-01 01:00:00,10.0.0.1,1.2.3.4,5000\n"  # ends before it starts
                     "2024-01-01 02:00:00,2024-01-01 02:05:00,10.0.0.2,1.2.3.4,5001\n"
                     "bad,2024-01-01 02:05:00,10.0.0.3,1.2.3.4,5002\n"
                     "2024-01-01 02:00:00,2024-01-01 02:05:00,10.0.0.999,1.2.3.4,5003\n"
                     "2024-01-01 02:00:00,2024-01-01 02:05:00,10.0.0.5,1.2.3.4,99999\n"
                     "2024-01-01 02:00:00,2024-01-01 02:05:00,10.0.0.6,1.2.3,5005\n")
    result = run("ingest", flows, "--workspace", tmp_path / "ws")
    lines = result.output.splitlines()
    assert "accepted 2 (flows 2), rejected 4" in lines[0] and "1 more for 1 other reason" in lines[0]
    assert "  adjusted 1 with ts_end before ts_start (end set to the start)" in lines
    assert "  times without a zone were read as UTC" in lines


def test_a_workspace_inside_the_folder_ingested_is_not_read_back(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "eve.json").write_bytes((LOGS / "eve.json").read_bytes())
    ws = folder / "ws"  # the workspace lives in the folder being ingested
    run("ingest", folder, "--workspace", ws)
    first = row_counts(ws)
    result = run("ingest", folder, "--workspace", ws)
    assert row_counts(ws) == first  # its own Parquet parts were not taken as new flows
    assert "ws: ignored (a minewatch workspace, not an input" in result.output
    named = run("ingest", ws, "--workspace", tmp_path / "other")
    assert named.exit_code == 1 and "a minewatch workspace, not an input" in named.output


def test_a_utf8_byte_order_mark_is_skipped_in_every_text_format(tmp_path):
    sources = DATA.parent / "sources"
    plain, marked = tmp_path / "plain", tmp_path / "marked"
    plain.mkdir(), marked.mkdir()
    for name in ("zeek_conn.log", "suricata_eve.json", "nfdump17.csv", "bind_query.log", "dns.csv", "dnsmasq.log"):
        data = (sources / name).read_bytes()
        (plain / name).write_bytes(data)
        (marked / name).write_bytes(b"\xef\xbb\xbf" + data)
    run("ingest", plain, "--workspace", tmp_path / "ws-plain")
    result = run("ingest", marked, "--workspace", tmp_path / "ws-marked")
    assert result.exit_code == 0, result.output
    assert row_counts(tmp_path / "ws-marked") == row_counts(tmp_path / "ws-plain")
    utf16 = tmp_path / "flows.csv"
    utf16.write_bytes("ts_start,src_ip,dst_ip\n2024-01-01T00:00:00Z,10.0.0.1,1.2.3.4\n".encode("utf-16"))
    failed = run("ingest", utf16, "--workspace", tmp_path / "ws-16")
    assert failed.exit_code == 1 and "UTF-16 text: convert it to UTF-8" in failed.output


def test_a_wrong_mapping_or_zone_is_the_users_and_stops_before_any_file(tmp_path):
    for options, message in ((["--map", "ts_start=first,src_ip=sa"], "the mapping lacks required column(s): dst_ip"),
                             (["--map", "ts_start=a,src_ip=b,dst_ip=c,colour=d"], "unknown canonical column(s) in the mapping: colour"),
                             (["--tz", "Mars/Olympus"], "--tz 'Mars/Olympus' is not a time zone")):
        result = run("ingest", LOGS / "eve.json", "--workspace", tmp_path / "ws", *options)
        assert result.exit_code != 0 and message in str(result.exception), options
        assert not (tmp_path / "ws" / "tables").exists()  # nothing was read

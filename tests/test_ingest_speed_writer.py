"""The workspace writer's speed-minded behaviour (issue 3): parts encoded while the
input's hash is still being computed, the identity asked for only when the writer
cannot go on, the allocator chosen for an ingest, and parts that still read back
with the stored schema."""

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from minewatch.schema.flows import FLOWS
from minewatch.workspace import Workspace, store
from minewatch.workspace.ingest import IngestOptions, ingest

NFDUMP_CSV = Path(__file__).parent / "data" / "workspace" / "logs" / "nfdump.csv"
SHA = "cd" * 32


def flows_table(n: int) -> pa.Table:
    start = datetime(2026, 11, 1, 23, 0, tzinfo=UTC)
    times = [start + timedelta(minutes=7 * i) for i in range(n)]  # over two days
    columns = {f.name: pa.nulls(n, f.type) for f in store.stored_schema("flows")}
    columns.update(
        source_file=pa.array(["as read"] * n), flow_ref=pa.array(range(1, n + 1), pa.int64()),
        ts_start=pa.array(times, FLOWS.field("ts_start").type), ts_end=pa.array(times, FLOWS.field("ts_end").type),
        src_ip=pa.array([f"10.0.0.{i % 9 + 1}" for i in range(n)]), dst_ip=pa.array(["192.0.2.7"] * n))
    return pa.table(columns, schema=store.stored_schema("flows"))


def write_in_thread(writer: store.InputWriter, table: pa.Table, **kwargs) -> threading.Thread:
    def run():
        for batch in table.to_batches(max_chunksize=3):
            writer.write("flows", batch, **kwargs)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=20)
    return thread


def read_parts(ws: Workspace) -> pa.Table:
    parts = sorted(ws.tables_dir.rglob("*.parquet"))
    return pa.concat_tables(pq.read_table(p) for p in parts).sort_by("flow_ref")


def test_parts_are_encoded_while_the_hash_is_unknown_and_named_after_it(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "PART_ROWS", 4)
    monkeypatch.setattr(store, "QUEUE_BATCHES", 1)
    ws = Workspace(tmp_path / "ws").create()
    table = flows_table(40)
    writer = store.InputWriter(ws, None, "nfdump-csv", source_file="/data/in.csv")  # no hash yet
    thread = write_in_thread(writer, table)
    assert not thread.is_alive(), "the writer stopped taking batches before the hash was known"
    assert not list(ws.tables_dir.rglob("*.parquet*"))  # nothing on disk without the hash's name
    writer.identify(SHA, "/data/in.csv")
    writer.close()
    parts = sorted(ws.tables_dir.rglob("*.parquet"))
    assert len(parts) > 2 and all(p.name.startswith(f"part-{SHA[:16]}-") for p in parts)
    stored = read_parts(ws)
    assert stored.schema.equals(store.stored_schema("flows"))
    assert stored.column("source_file").to_pylist() == ["/data/in.csv"] * 40
    assert stored.drop_columns(["source_file"]).equals(table.drop_columns(["source_file"]))


def test_a_writer_that_needs_the_identity_asks_for_it_instead_of_waiting_forever(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "PART_ROWS", 4)
    monkeypatch.setattr(store, "QUEUE_BATCHES", 1)
    ws = Workspace(tmp_path / "ws").create()
    writer = store.InputWriter(ws, None, "nfdump-csv")  # the rows' source_file comes with the hash
    asked = []

    def identify():
        asked.append(True)
        writer.identify(SHA, "/data/in.csv#sha256:" + SHA[:16])

    thread = write_in_thread(writer, flows_table(40), identify=identify)
    assert not thread.is_alive()
    writer.close()
    assert asked == [True]
    assert set(read_parts(ws).column("source_file").to_pylist()) == {"/data/in.csv#sha256:" + SHA[:16]}


def test_a_changed_source_name_after_encoding_is_an_error_not_wrong_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "PART_ROWS", 4)
    ws = Workspace(tmp_path / "ws").create()
    writer = store.InputWriter(ws, None, "nfdump-csv", source_file="/data/in.csv")
    for batch in flows_table(12).to_batches(max_chunksize=4):
        writer.write("flows", batch)
    deadline = datetime.now() + timedelta(seconds=20)
    while not writer._named_rows and datetime.now() < deadline:  # a part made with the early name
        threading.Event().wait(0.01)
    writer.identify(SHA, "/data/in.csv#sha256:" + SHA[:16])
    with pytest.raises(RuntimeError, match="source_file changed"):
        writer.close()


def test_ingest_runs_on_a_reusing_allocator_and_gives_the_default_back(tmp_path):
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        pytest.skip("pyarrow built without jemalloc")
    before = pa.default_memory_pool().backend_name
    seen = []
    options = IngestOptions(on_part=lambda path: seen.append(pa.default_memory_pool().backend_name))
    report = ingest(Workspace(tmp_path / "ws"), [str(NFDUMP_CSV)], options)
    assert report.files[0].status == "ingested", report.files[0].error
    assert seen and set(seen) == {"jemalloc"}
    assert pa.default_memory_pool().backend_name == before


def test_an_allocator_named_in_the_environment_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    before = pa.default_memory_pool().backend_name
    seen = []
    options = IngestOptions(on_part=lambda path: seen.append(pa.default_memory_pool().backend_name))
    ingest(Workspace(tmp_path / "ws"), [str(NFDUMP_CSV)], options)
    assert seen and set(seen) == {before}


def test_stored_parts_read_back_with_the_stored_schema_and_plain_text(tmp_path):
    ws = Workspace(tmp_path / "ws")
    report = ingest(ws, [str(NFDUMP_CSV)])
    assert report.files[0].status == "ingested", report.files[0].error
    for part in ws.tables_dir.rglob("*.parquet"):
        table = pq.read_table(part)
        assert table.schema.equals(store.stored_schema("flows")), part
        assert set(table.column("source_file").to_pylist()) == {str(NFDUMP_CSV.resolve())}

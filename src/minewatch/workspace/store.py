"""Where a workspace keeps its data, and how one input file's rows get there.

    <ws>/catalog.duckdb                                        see catalogue.py
    <ws>/tables/<table>/source=<format>/day=YYYY-MM-DD/part-<sha12>-<n>.parquet
    <ws>/tables/evidence/detector_id=<id>/day=YYYY-MM-DD/part-<key>-<n>.parquet
    (the key is not `detector`: a partition column may not repeat a column of the files)
    <ws>/rejects/<sha12>.jsonl                                 one rejected record per line

Every file written for an input carries the input's hash prefix in its name, so an
interrupted ingest can be undone by name alone. A part file is written under a hidden
temporary name and renamed when complete: readers never see half a file.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from minewatch.schema import EVIDENCE, TABLES

SHA_PREFIX = 16
TIME_COLUMN = {"flows": "ts_start", "evidence": "ts_start"}  # others: "ts"
NO_DAY = "unknown"
# Payload heads are parsed at ingest (packet detectors) and not kept: they would dominate
# the size of the flow table and no SQL detector reads them.
STORED_DROPS = {"flows": ("src_payload_head", "dst_payload_head")}
RECORD_TABLES = tuple(t for t in TABLES if t != "evidence")


def stored_schema(table: str) -> pa.Schema:
    schema = TABLES[table]
    for name in STORED_DROPS.get(table, ()):
        schema = schema.remove(schema.get_field_index(name))
    return schema


def partition_value(text: str) -> str:
    """A value safe as one path component (detector ids and formats are already tame)."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


class Workspace:
    """A folder of Parquet partitions plus the catalogue; creates its folders on demand."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.tables_dir = self.root / "tables"
        self.rejects_dir = self.root / "rejects"
        self.tmp_dir = self.root / "tmp"
        self.catalogue_path = self.root / "catalog.duckdb"

    def create(self) -> "Workspace":
        for d in (self.tables_dir, self.rejects_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def exists(self) -> bool:
        return self.catalogue_path.exists()

    def table_glob(self, table: str) -> str:
        return str(self.tables_dir / table / "*" / "*" / "*.parquet")

    def has_files(self, table: str) -> bool:
        return any((self.tables_dir / table).glob("*/*/*.parquet"))

    def rejects_path(self, sha256: str) -> Path:
        return self.rejects_dir / f"{sha256[:SHA_PREFIX]}.jsonl"

    def detector_dir(self, detector: str) -> Path:
        return self.tables_dir / "evidence" / f"detector_id={partition_value(detector)}"

    def remove_input(self, sha256: str) -> int:
        """Delete every part file and the rejects file written for one input; returns how many."""
        prefix = sha256[:SHA_PREFIX]
        removed = 0
        if self.tables_dir.exists():
            for pattern in (f"*/*/*/part-{prefix}-*.parquet", f"*/*/*/.part-{prefix}-*"):
                for path in self.tables_dir.glob(pattern):
                    path.unlink()
                    removed += 1
        rejects = self.rejects_path(sha256)
        for path in (rejects, rejects.with_suffix(".jsonl.tmp")):
            if path.exists():
                path.unlink()
                removed += 1
        return removed

    def replace_detector_evidence(self, detector: str, new_dir: Path) -> None:
        """Swap a detector's evidence folder for a freshly written one."""
        target = self.detector_dir(detector)
        old = self.tmp_dir / f"old-{target.name}"
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            target.rename(old)
        target.parent.mkdir(parents=True, exist_ok=True)
        if new_dir.exists():
            new_dir.rename(target)
        if old.exists():
            shutil.rmtree(old)


def _days(table: pa.Table, column: str) -> pa.Array:
    return pc.fill_null(pc.strftime(table.column(column), format="%Y-%m-%d"), NO_DAY)


class InputWriter:
    """Writes the batches of one input file into day partitions, named after its hash."""

    def __init__(self, ws: Workspace, sha256: str, source: str,
                 on_part: Callable[[Path], None] | None = None):
        self.ws, self.sha256, self.source = ws, sha256, partition_value(source)
        self.prefix = sha256[:SHA_PREFIX]
        self.parts = 0
        self.rows: dict[str, int] = {}
        self.on_part = on_part  # called after each part file (progress, tests)

    def write(self, table_name: str, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows == 0:
            return
        table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
        schema = stored_schema(table_name)
        table = table.select(schema.names).cast(schema)
        if table_name == "evidence":
            for detector in pc.unique(table.column("detector")).to_pylist():
                subset = table.filter(pc.equal(table.column("detector"), detector))
                self._write_days(subset, self.ws.detector_dir(detector), "evidence")
        else:
            self._write_days(table, self.ws.tables_dir / table_name / f"source={self.source}", table_name)
        self.rows[table_name] = self.rows.get(table_name, 0) + table.num_rows

    def _write_days(self, table: pa.Table, base: Path, table_name: str) -> None:
        days = _days(table, TIME_COLUMN.get(table_name, "ts"))
        for day in pc.unique(days).to_pylist():
            part = table if len(pc.unique(days)) == 1 else table.filter(pc.equal(days, day))
            folder = base / f"day={day}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"part-{self.prefix}-{self.parts:05d}.parquet"
            tmp = folder / f".{name}.tmp"
            pq.write_table(part, tmp, compression="zstd")
            os.replace(tmp, folder / name)
            self.parts += 1
            if self.on_part:
                self.on_part(folder / name)


def write_rejects(ws: Workspace, sha256: str, rejects: Iterable, not_kept: int, source_file: str) -> int:
    """One JSON line per rejected record (file, line, reason, raw); a last line counts those
    whose text was not kept. Returns lines written; writes nothing when there is nothing."""
    target = ws.rejects_path(sha256)
    tmp = target.with_suffix(".jsonl.tmp")
    lines = 0
    with open(tmp, "w", encoding="utf-8") as out:
        for r in rejects:
            out.write(json.dumps({"file": r.source_file, "line": r.line, "reason": r.reason, "raw": r.raw},
                                 ensure_ascii=False) + "\n")
            lines += 1
        if not_kept:
            out.write(json.dumps({"file": source_file, "line": None,
                                  "reason": f"{not_kept} more rejected records (counted; text not kept)",
                                  "raw": ""}) + "\n")
            lines += 1
    if lines:
        os.replace(tmp, target)
    else:
        tmp.unlink()
    return lines


def empty_table(table: str) -> pa.Table:
    return (EVIDENCE if table == "evidence" else stored_schema(table)).empty_table()

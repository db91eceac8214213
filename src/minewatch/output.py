"""Write evidence tables as JSON Lines, CSV or Parquet (file or standard output)."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from minewatch.errors import UsageError
from minewatch.schema import EVIDENCE

FORMATS = ("jsonl", "csv", "parquet")
_BY_SUFFIX = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


def choose_format(output: str, explicit: str | None) -> str:
    if explicit:
        if explicit not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {explicit!r}")
        return explicit
    suffix = Path(output).suffix.lower()
    if suffix in _BY_SUFFIX or suffix in _PLAIN_SUFFIXES or output == "-":
        return _BY_SUFFIX.get(suffix, "jsonl")
    raise UsageError(f"cannot tell the output format from {suffix!r} in {output}: "
                     f"name the file .jsonl, .csv or .parquet, or give --format ({', '.join(FORMATS)})")


_PLAIN_SUFFIXES = ("", ".txt", ".log", ".out")  # JSON lines, the default


def _json_default(value):
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


class EvidenceWriter:
    """Streams evidence record batches to one destination in one format."""

    def __init__(self, output: str, fmt: str):
        self.output, self.fmt, self.rows = output, fmt, 0
        self._parquet: pq.ParquetWriter | None = None
        self._csv = None
        if output == "-":
            if fmt == "parquet":
                raise UsageError("Parquet cannot be written to standard output; give a file name")
            self._text = sys.stdout
        elif fmt == "parquet":
            self._text = None
        else:
            try:
                self._text = open(output, "w", encoding="utf-8", newline="")
            except OSError as exc:
                raise UsageError(f"cannot write {output}: {exc.strerror}") from None

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows == 0:
            return
        self.rows += batch.num_rows
        if self.fmt == "parquet":
            if self._parquet is None:
                try:
                    self._parquet = pq.ParquetWriter(self.output, EVIDENCE)
                except OSError as exc:
                    raise UsageError(f"cannot write {self.output}: {exc}") from None
            table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            self._parquet.write_table(table.cast(EVIDENCE))
            return
        rows = batch.to_pylist()
        if self.fmt == "jsonl":
            out = io.StringIO()
            for row in rows:
                row["details"] = json.loads(row["details"]) if row.get("details") else {}
                out.write(json.dumps(row, ensure_ascii=False, default=_json_default))
                out.write("\n")
            self._text.write(out.getvalue())
        else:
            if self._csv is None:
                self._csv = csv.DictWriter(self._text, fieldnames=EVIDENCE.names)
                self._csv.writeheader()
            for row in rows:
                self._csv.writerow({k: _json_default(v) if hasattr(v, "isoformat") else v for k, v in row.items()})

    def close(self) -> None:
        if self.fmt == "parquet":
            if self._parquet is None:  # no evidence: still leave a valid, empty file
                pq.write_table(EVIDENCE.empty_table(), self.output)
            else:
                self._parquet.close()
        elif self.fmt == "csv" and self._csv is None:
            csv.DictWriter(self._text, fieldnames=EVIDENCE.names).writeheader()
        if self._text is not None and self._text is not sys.stdout:
            self._text.close()
        elif self._text is sys.stdout:
            sys.stdout.flush()

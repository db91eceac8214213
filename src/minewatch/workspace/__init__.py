"""A workspace: the canonical tables as Parquet partitioned by source and day, plus a
DuckDB catalogue of what was ingested and which detectors ran (issue 3)."""

from minewatch.workspace.store import Workspace

__all__ = ["Workspace"]

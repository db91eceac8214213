"""Where SQL detectors run: duckdb.py (embedded, the default), later spark.py (cluster);
dialect.py renders the DuckDB-dialect SQL for other engines with sqlglot."""

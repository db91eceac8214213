"""Where SQL detectors run: duckdb.py (embedded, the default) and spark.py (PySpark, local
mode or a cluster); dialect.py renders the DuckDB-dialect SQL for Spark with sqlglot."""

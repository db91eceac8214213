"""The cluster engine: the same SQL detectors as engine/duckdb.py, run by Spark.

    SparkEngine(ws, intel, master="spark://host:7077", tables_url="hdfs://nn/ws/tables").run(ids)

Each detector's DuckDB-dialect SELECT is wrapped exactly as the DuckDB engine wraps it
(EVIDENCE_SELECT: engine columns, casts, day) and rendered for Spark by dialect.py. The
canonical tables are temporary views over their Parquet folders, read through Hadoop's
file systems, so the tables root may be a local folder or a file://, hdfs:// or s3a://
URL; `source` and `day` come from the partition folders as strings, as in DuckDB. The
catalogue (source hashes, run log) stays in the local workspace folder. Evidence is
written to a temporary folder beside the tables and then swapped in for the detector's
folder, in the same layout and Parquet types as the DuckDB engine writes.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pyarrow as pa

from minewatch.detect import SqlDetector
from minewatch.engine.dialect import DialectError, to_dialect
from minewatch.engine.duckdb import (DetectorResult, DetectReport, check_day, evidence_sql, redone_day,
                                     select_detectors, since_filter, version_warning)
from minewatch.errors import MinewatchError, UsageError
from minewatch.intel import IntelSet
from minewatch.workspace.catalogue import Catalogue
from minewatch.workspace.store import NO_DAY, RECORD_TABLES, Workspace, empty_table, partition_value

ENGINE_NAME = "spark"
LOCAL_MASTER = "local[2]"
APP_NAME = "minewatch-detect"

# Settings that make Spark compute what DuckDB computes, and write what DuckDB writes.
SEMANTIC_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "false",  # x / 0 is NULL, as in DuckDB
    "spark.sql.jsonGenerator.ignoreNullFields": "false",  # to_json keeps null members, as DuckDB
    "spark.sql.sources.partitionColumnTypeInference.enabled": "false",  # day=... stays a string
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",  # not INT96
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.sql.caseSensitive": "false",
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",  # no _SUCCESS files
}
# A 2-core, 24 GiB machine shared with other work: the driver holds the local executor.
LOCAL_CONF = {
    "spark.driver.memory": "3g",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
}
# For workspaces of a few thousand rows (tests, demos): Spark spends more time compiling
# generated code and planning shuffles than computing; interpret and use one partition.
SMALL_DATA_CONF = {
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
    "spark.sql.shuffle.partitions": "1",
}
# Spark's own log lines (start-up notes, a query's full plan on every analysis error) are
# noise next to the engine's report, which names each failing detector: errors only.
LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark %p %c{1}: %m%n
logger.query.name = SQLQueryContextLogger
logger.query.level = off
logger.hadoop.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop.level = off
"""


def _log_config() -> str:
    path = Path(tempfile.gettempdir()) / "minewatch-spark-log4j2.properties"
    if not path.exists() or path.read_text() != LOG4J2:
        path.write_text(LOG4J2)
    return str(path)


def start_session(master: str | None = None, conf: dict[str, str] | None = None):
    """A SparkSession for detection: local[2] unless a master URL is given. An active
    session (spark-submit, a test fixture) is reused and given the semantic settings."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        hadoop = active.sparkContext._jsc.hadoopConfiguration()
        for key, value in SEMANTIC_CONF.items():
            if key.startswith("spark.hadoop."):
                hadoop.set(key[len("spark.hadoop."):], value)
            else:
                active.conf.set(key, value)
        return active
    master = master or os.environ.get("MINEWATCH_SPARK_MASTER")
    builder = SparkSession.builder.appName(APP_NAME)
    settings = dict(SEMANTIC_CONF)
    if master is None and "PYSPARK_GATEWAY_PORT" in os.environ:
        # started by spark-submit: its --master and --conf stand, and its JVM is running
        return _quiet(_create(builder, settings, conf))
    master = master or LOCAL_MASTER
    check_master(master)
    builder = builder.master(master)
    settings["spark.driver.extraJavaOptions"] = f"-Duser.timezone=UTC -Dlog4j2.configurationFile={_log_config()}"
    if master.startswith("local"):
        settings.update(LOCAL_CONF)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no warning about the host name
    return _quiet(_create(builder, settings, conf))


def _create(builder, settings: dict[str, str], conf: dict[str, str] | None):
    for key, value in {**settings, **(conf or {})}.items():
        builder = builder.config(key, value)
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    with warnings.catch_warnings():  # PySpark warns about pandas 3 on start; no pandas is used
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return builder.getOrCreate()
        except (PySparkException, Py4JError) as exc:  # the JVM did not come up: say so in one line
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MinewatchError(f"Spark could not start: {reason[:300]}") from None


def _quiet(spark):
    spark.sparkContext.setLogLevel("ERROR")
    return spark


MASTER_FORMS = re.compile(r"^(local(\[(\*|\d+)(,\d+)?\])?|yarn|spark://.+|k8s://.+|mesos://.+)$")


def check_master(master: str, timeout_s: float = 5.0) -> None:
    """A master URL Spark knows (local[N], spark://, yarn, k8s://, mesos://), else a
    one-line error (Spark's own is a JVM that dies with a stack trace). A standalone
    master must answer before Spark is started: otherwise Spark retries for a minute."""
    if not MASTER_FORMS.match(master.strip()):
        raise UsageError(f"{master!r} is not a Spark master URL (local[2], spark://host:7077, yarn, k8s://..., "
                         "mesos://...)")
    if not master.startswith("spark://"):
        return
    for address in master[len("spark://"):].split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
                return
        except (OSError, ValueError):
            continue
    raise UsageError(f"cannot reach the Spark master {master} (nothing answers there within {timeout_s:.0f} s)")


def as_url(path_or_url: str | Path) -> str:
    """A Hadoop path: URLs (hdfs://, s3a://, file://) as given, local paths as file: URLs."""
    text = str(path_or_url)
    if "://" in text:
        return text.rstrip("/")
    return Path(text).resolve().as_uri()


class HadoopFiles:
    """The few file operations the engine needs, through Hadoop's FileSystem so that the
    same code serves local folders, HDFS and S3."""

    def __init__(self, spark):
        self.jvm = spark.sparkContext._jvm
        self.conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _fs(self, url: str):
        path = self.jvm.org.apache.hadoop.fs.Path(url)
        fs = path.getFileSystem(self.conf)
        fs.setWriteChecksum(False)  # no .crc files beside the local Parquet
        return fs, path

    def exists(self, url: str) -> bool:
        fs, path = self._fs(url)
        return bool(fs.exists(path))

    def delete(self, url: str) -> None:
        fs, path = self._fs(url)
        if fs.exists(path):
            fs.delete(path, True)

    def folders(self, url: str) -> list[str]:
        """Names of the folders directly under url (none when it does not exist)."""
        fs, path = self._fs(url)
        if not fs.exists(path):
            return []
        return sorted(str(st.getPath().getName()) for st in fs.listStatus(path) if st.isDirectory())

    def rename(self, url: str, new_url: str) -> None:
        fs, path = self._fs(url)
        _, new = self._fs(new_url)
        fs.mkdirs(new.getParent())
        if not fs.rename(path, new):
            raise OSError(f"could not move {url} to {new_url}")

    def replace_days(self, new_url: str, target_url: str, since: str) -> None:
        """Replace target_url's day=... folders from `since` on (not the unknown day) by
        new_url's; earlier days stay (as engine.duckdb.replace_days, on Hadoop paths)."""
        old_url = f"{new_url}-old"
        self.delete(old_url)
        for name in self.folders(target_url):
            if redone_day(name, since):
                self.rename(f"{target_url}/{name}", f"{old_url}/{name}")
        for name in self.folders(new_url):
            if name.startswith("day="):
                self.rename(f"{new_url}/{name}", f"{target_url}/{name}")
        self.delete(new_url)
        self.delete(old_url)

    def replace(self, new_url: str, target_url: str) -> None:
        """Put the folder new_url in place of target_url (removed first if present)."""
        self.delete(target_url)
        fs, target = self._fs(target_url)
        fs.mkdirs(target.getParent())
        _, new = self._fs(new_url)
        if fs.exists(new) and not fs.rename(new, target):
            raise OSError(f"could not move {new_url} to {target_url}")


class SparkEngine:
    """Same contract as DuckDBEngine: run(ids) -> DetectReport, evidence in the workspace."""

    def __init__(self, ws: Workspace, intel: IntelSet | None = None, master: str | None = None,
                 tables_url: str | None = None, params: dict | None = None, spark: Any = None,
                 conf: dict[str, str] | None = None):
        ws.must_exist()
        self.ws, self.master, self.conf = ws, master, conf
        self.intel = intel if intel is not None else IntelSet.load()
        self.params = params or {}
        self.tables_url = as_url(tables_url or ws.tables_dir)
        # a tables root elsewhere (HDFS, S3) keeps its temporary output beside it
        self.tmp_url = as_url(ws.tmp_dir) if tables_url is None else f"{self.tables_url}/_minewatch_tmp"
        self._spark = spark
        self._owns_session = False
        self.since: str | None = None

    def detectors(self, ids: list[str] | None = None) -> list[SqlDetector]:
        return select_detectors(ids)  # same registry look-up, same errors

    def session(self):
        if self._spark is None:
            from pyspark.sql import SparkSession

            self._owns_session = SparkSession.getActiveSession() is None
            self._spark = start_session(self.master, self.conf)
        return self._spark

    def run(self, ids: list[str] | None = None, since: str | None = None) -> DetectReport:
        """As DuckDBEngine.run: every day, or the days from `since` (YYYY-MM-DD, UTC) on."""
        from minewatch.engine.reference import build

        detectors = self.detectors(ids)
        report = DetectReport()
        self.since = check_day(since)
        spark = self.session()
        files = HadoopFiles(spark)
        with Catalogue(self.ws.catalogue_path) as cat:
            report.problems.extend(clean_interrupted(self.ws, cat))
            report.run_id = cat.next_run_id()
            for table in RECORD_TABLES:
                self._table_view(spark, table)
            reference = build(self.intel)
            report.problems.extend(reference.problems)
            for name, table in reference.tables.items():
                _frame(spark, table).createOrReplaceTempView(name)
            done = cat.files("done")
            _frame(spark, pa.table({
                "source_file": pa.array([f.source_file for f in done], pa.string()),
                "sha256": pa.array([f.sha256 for f in done], pa.string()),
            })).createOrReplaceTempView("source_files")
            for det in detectors:
                result = self._run_one(spark, files, det)
                report.results.append(result)
                if self.since and not result.error:
                    report.problems.extend(self._older_versions(spark, files, det))
                cat.record_run(report.run_id, det.id, det.version, ENGINE_NAME,
                               "failed" if result.error else "done", result.rows, result.seconds, result.error)
        return report

    def _table_view(self, spark, table: str) -> None:
        """A view over <tables>/<table>/source=*/day=*/*.parquet, or an empty one of the same
        shape. Columns added to the schema after some files were written read as NULL."""
        from pyspark.errors import AnalysisException

        url = f"{self.tables_url}/{table}"
        empty = empty_table(table).append_column("source", pa.array([], pa.string()))
        empty = _frame(spark, empty.append_column("day", pa.array([], pa.string())))
        try:
            df = spark.read.option("mergeSchema", "true").option("basePath", url).parquet(url)
            if self.since:
                df = df.where(since_filter(self.since))
            df = df.unionByName(empty, allowMissingColumns=True)
        except AnalysisException:  # no folder or no files yet
            df = empty
        df.createOrReplaceTempView(table)

    def sql_for(self, det: SqlDetector) -> str:
        """The detector's evidence SELECT in Spark SQL."""
        return to_dialect(evidence_sql(det, self.params, self.since), "spark")

    def _older_versions(self, spark, files: HadoopFiles, det: SqlDetector) -> list[str]:
        """As engine.duckdb.older_versions, read through Spark."""
        url = f"{self.tables_url}/evidence/detector_id={partition_value(det.id)}"
        if not any(name.startswith("day=") for name in files.folders(url)):
            return []
        rows = (spark.read.option("mergeSchema", "true").parquet(url)
                .where(f"day < '{self.since}' OR day = '{NO_DAY}'").select("detector_version").distinct().collect())
        return version_warning(det, self.since, [r[0] for r in rows])

    def _run_one(self, spark, files: HadoopFiles, det: SqlDetector) -> DetectorResult:
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        result = DetectorResult(det.id, det.version)
        started = time.perf_counter()
        out_url = f"{self.tmp_url}/evidence-{partition_value(det.id)}"
        target_url = f"{self.tables_url}/evidence/detector_id={partition_value(det.id)}"
        try:
            files.delete(out_url)
            frame = spark.sql(self.sql_for(det))
            frame.write.mode("overwrite").partitionBy("day").parquet(out_url)
            result.rows = _count_written(spark, files, out_url)
            if self.since:
                files.replace_days(out_url, target_url, self.since)
            else:
                files.replace(out_url, target_url)
        except (DialectError, PySparkException, Py4JError, OSError, ValueError, KeyError) as exc:
            result.error = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
            try:
                files.delete(out_url)
            except Py4JError:
                pass
        result.seconds = time.perf_counter() - started
        return result

    def close(self) -> None:
        """Stop the session if this engine started it (not one it was handed or found)."""
        if self._spark is not None and self._owns_session:
            self._spark.stop()
        self._spark, self._owns_session = None, False


# Spark has no unsigned integers; it reads Parquet's as the next wider signed type.
_SIGNED = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64()}


def _frame(spark, table: pa.Table):
    """A DataFrame from an Arrow table (PySpark warns about pandas 3 here; no pandas is used)."""
    schema = pa.schema([f.with_type(_SIGNED.get(f.type, f.type)) for f in table.schema])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return spark.createDataFrame(table.cast(schema))


def _count_written(spark, files: HadoopFiles, url: str) -> int:
    if not files.exists(url):
        return 0
    try:
        return int(spark.read.parquet(url).count())  # from the Parquet footers
    except Exception as exc:  # an empty result leaves a folder without Parquet files
        if "UNABLE_TO_INFER_SCHEMA" in str(exc) or "PATH_NOT_FOUND" in str(exc):
            return 0
        raise


def clean_interrupted(ws: Workspace, cat: Catalogue) -> list[str]:
    """Inputs left `started` by an ingest that died: their partial rows are removed first."""
    notes = []
    for f in cat.files("started"):
        ws.remove_input(f.sha256)
        cat.fail_file(f.sha256, "ingest was interrupted; run ingest again")
        notes.append(f"{f.path}: its ingest was interrupted; partial data removed (ingest it again)")
    return notes


def java_problem() -> str | None:
    """Why Spark cannot start here (no Java, no PySpark), or None."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "PySpark is not installed (pip install 'minewatch[spark]' or pip install pyspark)"
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and Path(java_home, "bin", "java").exists()) and shutil.which("java") is None:
        return "Java is not installed (Spark needs a JDK 17 or 21: apt-get install openjdk-17-jre-headless)"
    return None


__all__ = ["SparkEngine", "start_session", "as_url", "java_problem", "ENGINE_NAME", "SMALL_DATA_CONF"]


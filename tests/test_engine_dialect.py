"""The SQL detectors are written in the DuckDB subset that sqlglot renders for Spark."""

import pytest

from minewatch.detect import SQL_REGISTRY, load_all
from minewatch.engine.dialect import DialectError, portability_problems, to_dialect

load_all()
MINE = ("intel.pool_domain_log", "intel.pool_ip_log", "ids.coin_miner_alert")


@pytest.mark.parametrize("detector_id", sorted(SQL_REGISTRY))
def test_every_sql_detector_renders_for_spark(detector_id):
    sql = SQL_REGISTRY[detector_id].sql({})
    assert portability_problems(sql) == []
    spark = to_dialect(sql, "spark")
    assert "SELECT" in spark


def test_spark_rendering_of_duckdb_only_constructs():
    spark = to_dialect("SELECT regexp_matches(h, '^[a-z]+$') AS ok, unnest(answers) AS a, "
                       "CAST(n AS VARCHAR) AS s FROM dns", "spark")
    assert "RLIKE" in spark and "EXPLODE" in spark and "AS STRING" in spark


@pytest.mark.parametrize("sql, words", [
    ("SELECT answers[-1] FROM dns", "negative array index"),
    ("SELECT time_bucket(INTERVAL 1 HOUR, ts) FROM dns", "time_bucket"),
    ("SELECT epoch_ms(ts) FROM dns", "sub-second epoch"),
    ("SELECT regexp_matches(q, '\\.') FROM dns", "backslash"),
    ("SELECT * FROM dns QUALIFY row_number() OVER () = 1", "QUALIFY"),
])
def test_pitfalls_are_refused(sql, words):
    with pytest.raises(DialectError, match=words):
        to_dialect(sql, "spark")


def test_duckdb_target_is_unchanged():
    assert to_dialect("SELECT 1", "duckdb") == "SELECT 1"


def test_my_detectors_exist():
    assert set(MINE) <= set(SQL_REGISTRY)

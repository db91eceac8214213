"""Readings -> hourly blocks: placement, sub-hourly averaging, missing values, blocks
of meters with bounded size, local day boundaries, and the daily aggregates."""

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from minewatch.power.features import hourly_blocks, hourly_matrix

T0 = 1_704_067_200_000_000  # 2024-01-01 00:00 UTC in epoch microseconds
HOUR = 3_600_000_000


def readings(rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    """rows: (meter, microseconds after T0, kw or None) -> a connection with `readings`."""
    con = duckdb.connect()
    con.register("readings", pa.table({
        "meter_key": pa.array([r[0] for r in rows], pa.int32()),
        "ts": pa.array([T0 + r[1] for r in rows], pa.timestamp("us", tz="UTC")),
        "kw": pa.array([r[2] for r in rows], pa.float32()),
    }))
    return con


def test_hourly_values_land_in_their_hour():
    rows = [(0, h * HOUR, 10.0 + h) for h in range(48)] + [(1, h * HOUR, 5.0) for h in range(24, 48)]
    block = hourly_matrix(readings(rows), "readings")
    assert list(block.meters) == [0, 1] and block.kw.shape == (2, 48)
    assert block.day0 == T0 // (24 * HOUR)
    assert block.kw[0, 7] == 17.0 and np.isnan(block.kw[1, :24]).all() and (block.kw[1, 24:] == 5).all()


def test_sub_hourly_readings_are_averaged_and_zeros_are_missing():
    rows = [(0, h * HOUR + q * 900_000_000, float(q + 1)) for h in range(24) for q in range(4)]
    rows += [(0, 24 * HOUR, 0.0), (0, 25 * HOUR, None), (0, 26 * HOUR, -3.0), (0, 47 * HOUR, 8.0)]
    block = hourly_matrix(readings(rows), "readings")
    assert block.kw[0, :24] == pytest.approx(2.5)  # (1 + 2 + 3 + 4) / 4
    assert np.isnan(block.kw[0, 24:47]).all() and block.kw[0, 47] == 8.0


def test_blocks_are_bounded_and_agree_with_one_block():
    rng = np.random.default_rng(0)
    rows = [(m, h * HOUR, float(rng.uniform(1, 9))) for m in range(10) for h in range(72)]
    con = readings(rows)
    whole = hourly_matrix(con, "readings")
    parts = list(hourly_blocks(con, "readings", max_cells=3 * 72))
    assert [len(p.meters) for p in parts] == [3, 3, 3, 1]
    assert np.array_equal(np.vstack([p.kw for p in parts]), whole.kw)


def test_local_day_boundaries_and_daily_features():
    """At UTC+8 local midnight is 16:00 UTC: a load on 00-04 local is the night."""
    rows = []
    for h in range(16, 16 + 24 * 3):
        local = (h + 8) % 24
        rows.append((0, h * HOUR, 50.0 if local <= 4 else 10.0))
    block = hourly_matrix(readings(rows), "readings", utc_offset_h=8.0)
    dm = block.daily()
    full = dm.n == 24
    assert full.sum() == 3
    assert (dm.night[full] == 50).all() and (dm.work[full] == 10).all() and (dm.base[full] == 10).all()
    assert dm.mean[full] == pytest.approx((5 * 50 + 19 * 10) / 24)


def test_string_meter_ids():
    con = duckdb.connect()
    con.register("readings", pa.table({
        "meter_id": ["b", "a", "b"], "ts": pa.array([T0, T0, T0 + HOUR], pa.timestamp("us", tz="UTC")),
        "kw": [1.0, 2.0, 3.0]}))
    block = hourly_matrix(con, "readings", meter="meter_id")
    assert list(block.meters) == ["a", "b"]
    assert block.kw[1, 1] == 3.0 and block.kw[0, 0] == 2.0

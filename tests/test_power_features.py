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


def test_mean_of_an_hour_does_not_depend_on_the_order_of_its_readings():
    """Readings of one hour are summed in ascending order: 2^53 + 1 + 1 in float64 gives
    2^53 or 2^53 + 2 depending on the order of the additions, never here."""
    from itertools import permutations

    from minewatch.power.features import HourGrid, mean_hours

    grid = HourGrid(T0 // (24 * HOUR), 24, 0)
    values = [2.0 ** 53, 1.0, 1.0]
    got, naive = set(), set()
    for order in permutations(range(3)):
        kw = np.array([values[i] for i in order], np.float32)
        key, us = np.zeros(3, np.int64), np.full(3, T0 + 5 * HOUR + np.arange(3) * 60_000_000)
        block = mean_hours([(key[:1], us[:1], kw[:1]), (key[1:], us[1:], kw[1:])], grid, 0, 1)
        got.add(block[0, 5].tobytes())
        naive.add(np.bincount(np.zeros(3, np.int64), weights=kw.astype(np.float64))[0])
    assert len(naive) == 2  # summing in arrival order would differ
    assert got == {np.float32((2.0 ** 53 + 2) / 3).tobytes()}


def test_placer_notices_shared_hours_sorted_or_not():
    from minewatch.power.features import HourGrid, HourPlacer

    grid = HourGrid(T0 // (24 * HOUR), 48, 0)
    key = np.zeros(4, np.int32)
    sub_hourly = np.array([T0, T0 + 1_800_000_000, T0 + HOUR, T0 + HOUR + 1_800_000_000])
    kw = np.ones(4, np.float32)
    assert not HourPlacer(grid, 0, 1).add(key, sub_hourly, kw)  # sorted: seen at once
    placer = HourPlacer(grid, 0, 1)
    assert placer.add(key[:2], sub_hourly[[2, 0]], kw[:2]) and placer.add(key[:2], sub_hourly[[1, 3]], kw[:2])
    assert placer.result() is None  # unsorted: seen when the block is complete
    placer = HourPlacer(grid, 0, 1)
    hourly = T0 + np.array([5, 2, 9, 0]) * HOUR
    assert placer.add(key, hourly, np.array([5, 2, 9, 1], np.float32))
    block = placer.result()
    assert block[0, [0, 2, 5, 9]].tolist() == [1, 2, 5, 9] and np.isnan(block).sum() == 44


def _parquet_files(tmp_path, tables, **options):
    import pyarrow.parquet as pq

    paths = []
    for i, t in enumerate(tables):
        paths.append(tmp_path / f"part{i}.parquet")
        pq.write_table(t, paths[-1], row_group_size=50, **options)
    return paths


def _readings_table(rows):
    return pa.table({"meter_key": pa.array([r[0] for r in rows], pa.int32()),
                     "ts": pa.array([T0 + r[1] for r in rows], pa.timestamp("us", tz="UTC")),
                     "kw": pa.array([r[2] for r in rows], pa.float32())})


@pytest.mark.parametrize("offset_h", [0.0, 8.0, -5.5])
def test_span_from_parquet_footers_gives_the_same_blocks(tmp_path, offset_h):
    """Two files with the same meters in different months, rows shuffled, a meter with no
    valid reading, zeros on the first and last day: the footers' span plus the edge
    checks give the blocks of the full pass, whether the edges hold valid readings or not."""
    from minewatch.power.features import footer_span

    rng = np.random.default_rng(1)
    rows = [(m, h * HOUR, float(rng.uniform(1, 9))) for m in (2, 3, 5) for h in range(24 * 50)]
    rows += [(7, h * HOUR, 0.0) for h in range(0, 24 * 50, 5)]  # meter 7: nothing valid
    day0 = {}
    for zeros_at_edges in (False, True):
        if zeros_at_edges:  # the first and last 30 hours hold zeros only: the grid shrinks
            rows = [(m, t, 0.0 if t < 30 * HOUR or t >= (24 * 50 - 30) * HOUR else v) for m, t, v in rows]
        order = rng.permutation(len(rows))
        early = [rows[i] for i in order if rows[i][1] < 24 * 25 * HOUR]
        late = [rows[i] for i in order if rows[i][1] >= 24 * 25 * HOUR]
        folder = tmp_path / str(zeros_at_edges)
        folder.mkdir()
        files = _parquet_files(folder, [_readings_table(early), _readings_table(late)])
        assert footer_span(files)[:2] == (2, 7)
        src = f"read_parquet('{folder}/*.parquet')"
        con = duckdb.connect()
        plain = list(hourly_blocks(con, src, utc_offset_h=offset_h, max_cells=2 * 24 * 51))
        fast = list(hourly_blocks(con, src, utc_offset_h=offset_h, max_cells=2 * 24 * 51, files=files))
        assert [b.meters.tolist() for b in fast] == [b.meters.tolist() for b in plain] == [[2, 3], [5]]
        assert all(f.day0 == p.day0 and np.array_equal(f.kw, p.kw, equal_nan=True) for f, p in zip(fast, plain))
        day0[zeros_at_edges] = fast[0].day0
    assert day0[True] > day0[False]  # the grid starts on the first day with a valid reading


def test_footers_without_statistics_are_not_trusted(tmp_path):
    from minewatch.power.features import footer_span

    table = _readings_table([(0, h * HOUR, 1.0) for h in range(48)])
    for name in ("with", "without"):
        (tmp_path / name).mkdir()
    assert footer_span(_parquet_files(tmp_path / "with", [table])) == (0, 0, T0, T0 + 47 * HOUR, True)
    assert footer_span(_parquet_files(tmp_path / "without", [table], write_statistics=False)) is None

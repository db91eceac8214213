"""Readings -> dense hourly matrices (meters x hours), in blocks of meters, and the
per meter-day aggregates derived from them.

DuckDB does one pass per block of meters: it filters readings (`kw > 0`: zeros and
negatives are missing), turns timestamps into integer hour numbers (epoch arithmetic,
no time-zone aware casts) and streams Arrow batches; numpy places them into the block
with one `bincount` (so sub-hourly readings are averaged into their hour and duplicates
cannot overwrite each other). Memory stays bounded: a block holds at most `max_cells`
meter-hours. `epoch_us` is DuckDB's name; sqlglot maps it to Spark's `unix_micros`.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import duckdb
import numpy as np

US_PER_HOUR = 3_600_000_000
US_PER_DAY = 86_400_000_000
NIGHT_HOURS = (0, 4)  # local hours whose mean is the "night" level
DAY_HOURS = (9, 16)  # local hours whose mean is the "working day" level
MIN_DAY_HOURS = 12  # a day with fewer valid hours has no daily values (min/mean biased)
MAX_CELLS = 8_000_000  # meter-hours per block (float32: 32 MB; small blocks overlap better)
BATCH_ROWS = 131_072  # rows per Arrow batch: numpy temporaries stay in cache


@dataclass
class DailyMatrix:
    """Daily features as meters x days matrices (NaN where a day has too few readings)."""

    meters: np.ndarray  # meter keys (or ids), one per row
    day0: int  # epoch day (local) of column 0
    base: np.ndarray  # daily minimum kW: the base load
    mean: np.ndarray
    peak: np.ndarray
    night: np.ndarray
    work: np.ndarray
    n: np.ndarray  # readings (hours) per day

    @property
    def weekend(self) -> np.ndarray:
        """True for Saturday/Sunday columns (epoch day 0 was a Thursday)."""
        dow = (np.arange(self.base.shape[1]) + self.day0 + 3) % 7  # Monday = 0
        return dow >= 5


@dataclass
class HourlyBlock:
    """Hourly mean kW of a block of meters; column 0 is local midnight of `day0`."""

    meters: np.ndarray
    day0: int
    kw: np.ndarray  # float32 (meters, 24 * days), NaN = missing

    def daily_base(self) -> np.ndarray:
        """Daily minimum only (meters x days; NaN for days with too few hours): all the
        first, vectorised stage of the model needs, cheaper than `daily()`."""
        m, nh = self.kw.shape
        d = self.kw.reshape(m, nh // 24, 24)
        n = (~np.isnan(d)).reshape(-1, 24).view(np.uint8).astype(np.float32) @ np.ones(24, np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            base = np.fmin.reduce(d, axis=2).astype(np.float64)
        base[n.reshape(m, nh // 24) < MIN_DAY_HOURS] = np.nan
        return base

    def rows(self, idx: np.ndarray) -> "HourlyBlock":
        return HourlyBlock(self.meters[idx], self.day0, self.kw[idx])

    def daily(self) -> DailyMatrix:
        m, nh = self.kw.shape
        d = self.kw.reshape(m, nh // 24, 24)
        ok = ~np.isnan(d)
        # sums and counts of the whole day, the night and the working hours in one
        # matrix product each (much faster than NaN-aware reductions over 24 values)
        pick = np.zeros((24, 3), dtype=np.float32)
        pick[:, 0] = 1
        pick[NIGHT_HOURS[0] : NIGHT_HOURS[1] + 1, 1] = 1
        pick[DAY_HOURS[0] : DAY_HOURS[1] + 1, 2] = 1
        flat = np.where(ok, d, np.float32(0)).reshape(-1, 24)
        sums = (flat @ pick).reshape(m, nh // 24, 3)
        counts = (ok.reshape(-1, 24).astype(np.float32) @ pick).reshape(m, nh // 24, 3)
        n = counts[:, :, 0]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (sums / counts).astype(np.float64)
        mean, night, work = means[:, :, 0], means[:, :, 1], means[:, :, 2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            base = np.fmin.reduce(d, axis=2).astype(np.float64)
            peak = np.fmax.reduce(d, axis=2).astype(np.float64)
        short = n < MIN_DAY_HOURS
        for a in (base, peak, mean, night, work):
            a[short] = np.nan
        return DailyMatrix(self.meters, self.day0, base, mean, peak, night, work, n.astype(np.float64))


def _hour_expr(offset_us: int) -> str:
    return f"(epoch_us(ts) + {offset_us}) // {US_PER_HOUR}"


def _fetch_block(con: duckdb.DuckDBPyConnection, keyed: str, a: int, b: int, whole: bool,
                 offset_us: int, h0: int, nh: int) -> np.ndarray:
    """Meters a..b as a (b - a + 1, nh) float32 matrix of hourly means (NaN = missing).

    DuckDB only scans and converts (meter, epoch microseconds, kW) to Arrow batches,
    no per-row arithmetic: that and the placement measured cheaper in numpy, on small
    batches that stay in cache. With one reading per hour each lands in its own cell and one
    scatter does; if fewer cells than readings got filled, several readings share an
    hour (sub-hourly data) and they are averaged with bincount."""
    rows = b - a + 1
    where = " WHERE ts IS NOT NULL AND " + ("meter_key IS NOT NULL" if whole else f"meter_key BETWEEN {a} AND {b}")
    rel = con.sql(f"SELECT meter_key, epoch_us(ts) AS us, CAST(kw AS FLOAT) AS kw FROM {keyed}{where}")
    out = np.full(rows * nh, np.nan, dtype=np.float32)
    cell_type = np.int32 if rows * nh < 2**31 else np.int64
    base_us = h0 * US_PER_HOUR - offset_us
    kept: list[tuple[np.ndarray, np.ndarray]] = []
    n_valid = 0
    for batch in rel.to_arrow_reader(BATCH_ROWS):
        key = batch.column(0).to_numpy(zero_copy_only=False)
        us = batch.column(1).to_numpy(zero_copy_only=False)
        kw = batch.column(2).to_numpy(zero_copy_only=False)
        ok = kw > 0  # zeros, negatives, NaN and NULL (NaN after conversion) are missing
        if not ok.all():
            key, us, kw = key[ok], us[ok], kw[ok]
        # hour number by float multiply (exact: +0.5 us keeps whole hours off the edge)
        hour = ((us - base_us).astype(np.float64) + 0.5) * (1.0 / US_PER_HOUR)
        cell = (key.astype(cell_type) - cell_type(a)) * cell_type(nh) + hour.astype(cell_type)
        kw = kw.astype(np.float32, copy=False)
        out[cell] = kw
        kept.append((cell, kw))
        n_valid += len(cell)
    if np.count_nonzero(~np.isnan(out)) == n_valid:
        return out.reshape(rows, nh)
    sums = np.zeros(rows * nh)
    counts = np.zeros(rows * nh)
    for cell, kw in kept:
        sums += np.bincount(cell, weights=kw, minlength=rows * nh)
        counts += np.bincount(cell, minlength=rows * nh)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).astype(np.float32).reshape(rows, nh)


def hourly_blocks(con: duckdb.DuckDBPyConnection, source: str, meter: str = "meter_key",
                  utc_offset_h: float = 0.0, max_cells: int = MAX_CELLS,
                  prefetch: bool = True) -> Iterator[HourlyBlock]:
    """Yield the readings of `source` (columns meter, ts, kw) as hourly blocks.

    With an integer `meter_key` blocks are key ranges (Parquet sorted by key lets each
    range skip the other row groups); any other meter column is first numbered. With
    `prefetch`, the next block is read (DuckDB and numpy, both without the GIL) on a
    second thread while the caller scores the current one: both cores stay busy (do not
    use `con` elsewhere until the iteration has ended)."""
    offset_us = int(utc_offset_h * US_PER_HOUR)
    hour = _hour_expr(offset_us)
    if meter == "meter_key":
        keyed = source
        lo, hi, h_lo, h_hi = con.sql(
            f"SELECT min(meter_key), max(meter_key), min({hour}), max({hour}) FROM {source} "
            "WHERE kw > 0").fetchall()[0]
        names = None
    else:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _meter_codes AS
                        SELECT meter, CAST(row_number() OVER (ORDER BY meter) - 1 AS INTEGER) AS code
                        FROM (SELECT DISTINCT {meter} AS meter FROM {source} WHERE {meter} IS NOT NULL)""")
        names = con.sql("SELECT meter FROM _meter_codes ORDER BY code").fetchnumpy()["meter"]
        names = np.asarray(names, dtype=object)
        keyed = (f"(SELECT c.code AS meter_key, s.ts, s.kw FROM {source} s "
                 f"JOIN _meter_codes c ON s.{meter} = c.meter)")
        lo, hi = 0, len(names) - 1
        h_lo, h_hi = con.sql(f"SELECT min({hour}), max({hour}) FROM {source} WHERE kw > 0").fetchall()[0]
    if lo is None or h_lo is None or hi < lo:
        return
    day0 = int(h_lo) // 24
    nh = (int(h_hi) // 24 - day0 + 1) * 24
    per_block = max(1, max_cells // nh)
    ranges = [(a, min(int(hi), a + per_block - 1)) for a in range(int(lo), int(hi) + 1, per_block)]
    whole = len(ranges) == 1 and names is None

    def fetch(cur: duckdb.DuckDBPyConnection, a: int, b: int) -> np.ndarray:
        return _fetch_block(cur, keyed, a, b, whole, offset_us, day0 * 24, nh)

    def as_block(a: int, b: int, kw_block: np.ndarray) -> HourlyBlock | None:
        present = ~np.isnan(kw_block).all(axis=1)
        meters = np.arange(a, b + 1) if names is None else names[a : b + 1]
        if present.all():
            return HourlyBlock(meters, day0, kw_block)
        if present.any():
            return HourlyBlock(meters[present], day0, kw_block[present])
        return None

    if not prefetch or len(ranges) == 1:
        for a, b in ranges:
            block = as_block(a, b, fetch(con, a, b))
            if block is not None:
                yield block
        return
    # the worker thread uses `con` (it sees the caller's registered tables and temp
    # tables); the caller must not use `con` itself until the iteration has ended
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(fetch, con, *ranges[0])
        for i, (a, b) in enumerate(ranges):
            kw_block = pending.result()
            if i + 1 < len(ranges):
                pending = pool.submit(fetch, con, *ranges[i + 1])
            block = as_block(a, b, kw_block)
            if block is not None:
                yield block


def hourly_matrix(con: duckdb.DuckDBPyConnection, source: str, meter: str = "meter_key",
                  utc_offset_h: float = 0.0) -> HourlyBlock:
    """All meters of `source` in one block (for small inputs: tests, one meter, the benchmark)."""
    blocks = list(hourly_blocks(con, source, meter, utc_offset_h, max_cells=1 << 62))
    if not blocks:
        return HourlyBlock(np.array([]), 0, np.zeros((0, 24), dtype=np.float32))
    return blocks[0]


def daily_matrix(con: duckdb.DuckDBPyConnection, source: str, meter: str = "meter_key",
                 utc_offset_h: float = 0.0) -> DailyMatrix:
    """Daily features of every meter (see HourlyBlock.daily)."""
    return hourly_matrix(con, source, meter, utc_offset_h).daily()

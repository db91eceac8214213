"""Readings -> dense hourly matrices (meters x hours), in blocks of meters, and the
per meter-day aggregates derived from them.

First the meter keys and the span of the valid readings (a positive kW: zeros,
negatives, NaN and NULL are missing) set the hour grid every block shares: from the
Parquet footers when the files are known, else one pass. Then DuckDB scans each block
of meters (keys a..b) and streams (meter, epoch microseconds, kW) as Arrow batches;
numpy places them into the block (HourPlacer: integer hour arithmetic, one scatter per
batch). Sub-hourly readings are averaged into their hour in an order-independent way
(mean_hours), so another engine that hands the same readings to the same functions
(power/spark.py) gets the same block, bit for bit. Memory stays bounded: a block holds
at most `max_cells` meter-hours, and at most PREFETCH + 1 blocks are held at once.
"""

from __future__ import annotations

import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Iterable, Iterator

import duckdb
import numpy as np
import pyarrow.parquet as pq

US_PER_HOUR = 3_600_000_000
US_PER_DAY = 86_400_000_000
NIGHT_HOURS = (0, 4)  # local hours whose mean is the "night" level
DAY_HOURS = (9, 16)  # local hours whose mean is the "working day" level
MIN_DAY_HOURS = 12  # a day with fewer valid hours has no daily values (min/mean biased)
MAX_CELLS = 8_000_000  # meter-hours per block (float32: 32 MB; small blocks overlap better)
BATCH_ROWS = 131_072  # rows per Arrow batch: numpy temporaries stay in cache
PREFETCH = 2  # blocks read ahead on the worker thread while the caller scores


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


# A reading counts when its kW is a positive number: zeros, negatives, NaN and NULL are
# missing. Written once for DuckDB and Spark (both read `NaN > 0` as true).
VALID_SQL = "ts IS NOT NULL AND kw > 0 AND NOT isnan(kw)"


def offset_us(utc_offset_h: float) -> int:
    """Microseconds of a local-time offset in hours; the zones of the world span -12..+14."""
    if not -12 <= utc_offset_h <= 14:  # NaN too
        from minewatch.errors import UsageError

        raise UsageError(f"--utc-offset must be between -12 and 14 hours, not {utc_offset_h:g}")
    return int(utc_offset_h * US_PER_HOUR)


@dataclass(frozen=True)
class HourGrid:
    """The hour columns every block shares: column 0 is local midnight of `day0`."""

    day0: int
    hours: int
    offset_us: int  # local time = UTC + this

    @classmethod
    def spanning(cls, first_us: int, last_us: int, offset: int) -> "HourGrid":
        """Whole local days from the first to the last valid reading (UTC microseconds)."""
        d0, d1 = (first_us + offset) // US_PER_DAY, (last_us + offset) // US_PER_DAY
        return cls(int(d0), int(d1 - d0 + 1) * 24, int(offset))

    @property
    def origin_us(self) -> int:
        """UTC microseconds of column 0."""
        return self.day0 * US_PER_DAY - self.offset_us

    def block_size(self, max_cells: int) -> int:
        """Meters per block: at most max_cells meter-hours."""
        return max(1, max_cells // self.hours)

    def key_ranges(self, lo: int, hi: int, max_cells: int) -> list[tuple[int, int]]:
        """Meter keys lo..hi (>= 0) in blocks that start at multiples of the block size:
        block n holds keys n * size ... (n + 1) * size - 1, whoever computes it."""
        size = self.block_size(max_cells)
        return [(max(a, lo), min(hi, a + size - 1)) for a in range(lo // size * size, hi + 1, size)]


def _cells(grid: HourGrid, first: int, key: np.ndarray, us: np.ndarray,
           out: np.ndarray | None = None, tmp: np.ndarray | None = None) -> np.ndarray:
    """Flat cell (row * hours + hour) of each reading; exact integer arithmetic."""
    hour = np.subtract(us, grid.origin_us, out=tmp, dtype=np.int64)
    np.floor_divide(hour, US_PER_HOUR, out=hour)
    cell = np.subtract(key, first, out=out, dtype=np.int64)
    np.multiply(cell, grid.hours, out=cell)
    return np.add(cell, hour, out=cell)


class HourPlacer:
    """Readings of meters first..first+rows-1, batch by batch -> (rows, hours) float32.

    The usual case, at most one reading per meter-hour, is one scatter per batch through
    buffers reused across batches (every fresh temporary costs page faults, and on this
    kind of virtual machine those cost more than the arithmetic). When two readings
    fall in one hour, `add` or `result` says so and the caller hands all readings to
    `mean_hours` instead."""

    def __init__(self, grid: HourGrid, first: int, rows: int, batch_rows: int = BATCH_ROWS):
        self.grid, self.first, self.rows = grid, first, rows
        self.out = np.full(rows * grid.hours, np.nan, dtype=np.float32)
        self._scratch(batch_rows)
        self.placed, self.last, self.ordered = 0, -1, True

    def _scratch(self, n: int) -> None:
        self._cell = np.empty(n, np.int64)
        self._hour = np.empty(n, np.int64)
        self._flag = np.empty(n, bool)

    def add(self, key: np.ndarray, us: np.ndarray, kw: np.ndarray) -> bool:
        """Place one batch; False when two of its readings share an hour."""
        n = len(kw)
        if n > len(self._cell):
            self._scratch(n)
        ok = np.greater(kw, 0, out=self._flag[:n])  # NaN is missing too
        if not ok.all():
            key, us, kw = key[ok], us[ok], kw[ok]
            n = len(kw)
        if n == 0:
            return True
        cell = _cells(self.grid, self.first, key, us, self._cell[:n], self._hour[:n])
        # strictly increasing cells (sorted input) cannot collide; equal neighbours do
        rising = np.greater(cell[1:], cell[:-1], out=self._flag[: n - 1])
        if not (rising.all() and cell[0] > self.last):
            if np.equal(cell[1:], cell[:-1], out=self._flag[: n - 1]).any():
                return False
            self.ordered = False
        self.last = int(cell[-1])
        self.out[cell] = kw
        self.placed += n
        return True

    def result(self) -> np.ndarray | None:
        """The block, or None when two readings fell in one hour (then `mean_hours`)."""
        if not self.ordered:  # unsorted input: every placed reading must own its cell
            flag = self._flag if len(self._flag) >= BATCH_ROWS else np.empty(BATCH_ROWS, bool)
            filled = 0
            for i in range(0, len(self.out), len(flag)):
                part = self.out[i : i + len(flag)]
                filled += len(part) - np.count_nonzero(np.isnan(part, out=flag[: len(part)]))
            if filled != self.placed:
                return None
        return self.out.reshape(self.rows, self.grid.hours)


def mean_hours(parts: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], grid: HourGrid,
               first: int, rows: int) -> np.ndarray:
    """Hourly means of (key, us, kw) readings when several share an hour (sub-hourly
    data, duplicates). Each hour's readings are summed in float64 in ascending order of
    value, so the result does not depend on the order they arrive in (engine, threads,
    files); a lone reading keeps its float32 value, as in HourPlacer."""
    cells, values = [np.zeros(0, np.int64)], [np.zeros(0)]
    for key, us, kw in parts:
        ok = kw > 0
        cells.append(_cells(grid, first, key[ok], us[ok]))
        values.append(kw[ok].astype(np.float64))
    cell, kw = np.concatenate(cells), np.concatenate(values)
    order = np.lexsort((kw, cell))
    size = rows * grid.hours
    sums = np.bincount(cell[order], weights=kw[order], minlength=size)
    counts = np.bincount(cell, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / counts).astype(np.float32).reshape(rows, grid.hours)


def place_hours(parts: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]], grid: HourGrid,
                first: int, rows: int) -> np.ndarray:
    """Readings already in memory (a list of (key, us, kw) arrays) -> the block."""
    parts = list(parts)
    placer = HourPlacer(grid, first, rows, max((len(p[2]) for p in parts), default=1))
    block = placer.result() if all(placer.add(*p) for p in parts) else None
    return block if block is not None else mean_hours(parts, grid, first, rows)


def _arrays(batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(batch.column(i).to_numpy(zero_copy_only=False) for i in range(3))


def _read_block(con: duckdb.DuckDBPyConnection, keyed: str, where: str, grid: HourGrid,
                first: int, rows: int) -> np.ndarray:
    """One block from DuckDB. DuckDB only scans and converts (meter, epoch microseconds,
    kW) to Arrow; the kW test (a NULL arrives as NaN) and the hour arithmetic measured
    cheaper in numpy, on batches that stay in cache. A block whose readings share hours
    is read again and averaged (sub-hourly data: seen in its first batch when sorted)."""
    sql = (f"SELECT meter_key, epoch_us(ts) AS us, CAST(kw AS FLOAT) AS kw FROM {keyed} "
           f"WHERE ts IS NOT NULL AND {where}")
    placer = HourPlacer(grid, first, rows)
    reader = con.sql(sql).to_arrow_reader(BATCH_ROWS)
    try:
        one_per_hour = all(placer.add(*_arrays(batch)) for batch in reader)
    finally:
        reader.close()
    block = placer.result() if one_per_hour else None
    if block is None:
        block = mean_hours([_arrays(b) for b in con.sql(sql).to_arrow_reader(BATCH_ROWS)], grid, first, rows)
    return block


_US_PER_UNIT = {"s": 1_000_000, "ms": 1000, "us": 1}


def footer_span(files: Iterable[str | Path]) -> tuple[int, int, int, int, bool] | None:
    """(min meter_key, max meter_key, first us, last us, times have a zone) over every
    row of these Parquet files, from their footers' statistics (no data read); None when
    a row group has no statistics, NULL keys or times, or times in nanoseconds."""
    lo = hi = first = last = None
    zoned = set()
    for f in files:
        md = pq.read_metadata(f)
        schema = md.schema.to_arrow_schema()
        if "meter_key" not in schema.names or "ts" not in schema.names:
            return None
        names, ts_type = schema.names, schema.field("ts").type
        per_unit = _US_PER_UNIT.get(getattr(ts_type, "unit", None))
        if per_unit is None:
            return None
        zoned.add(ts_type.tz is not None)
        for g in range(md.num_row_groups):
            ks = md.row_group(g).column(names.index("meter_key")).statistics
            ts = md.row_group(g).column(names.index("ts")).statistics
            if not (ks and ts and ks.has_min_max and ts.has_min_max and ks.null_count == 0 and ts.null_count == 0):
                return None
            k0, k1, t0, t1 = int(ks.min_raw), int(ks.max_raw), int(ts.min_raw) * per_unit, int(ts.max_raw) * per_unit
            lo, hi = (k0, k1) if lo is None else (min(lo, k0), max(hi, k1))
            first, last = (t0, t1) if first is None else (min(first, t0), max(last, t1))
    return None if lo is None or len(zoned) != 1 else (lo, hi, first, last, zoned.pop())


def _time_literal(us: int, zoned: bool) -> str:
    text = (datetime(1970, 1, 1) + timedelta(microseconds=us)).isoformat(sep=" ", timespec="microseconds")
    return f"TIMESTAMPTZ '{text}+00:00'" if zoned else f"TIMESTAMP '{text}'"


def _span(con: duckdb.DuckDBPyConnection, source: str, offset: int,
          files: Iterable[str | Path] | None) -> tuple:
    """(lo, hi, first us, last us): meter keys and the span of the valid readings, which
    sets the grid (whole local days). With the Parquet files behind `source`, their
    footers give the span of all rows, and two queries that stop at their first match
    confirm that valid readings fall on its first and last local day (else a full pass
    decides). The keys may then include meters without valid readings: their rows stay
    empty and are dropped, so the blocks hold the same meters and values either way."""
    full = (f"SELECT min(meter_key), max(meter_key), epoch_us(min(ts)), epoch_us(max(ts)) FROM {source} "
            f"WHERE {VALID_SQL} AND meter_key IS NOT NULL")
    stats = footer_span(files) if files is not None else None
    if stats is None:
        return con.sql(full).fetchall()[0]
    lo, hi, first, last, zoned = stats
    day_end = ((first + offset) // US_PER_DAY + 1) * US_PER_DAY - offset  # end of the first local day
    day_start = ((last + offset) // US_PER_DAY) * US_PER_DAY - offset  # start of the last local day
    for edge in (f"ts < {_time_literal(day_end, zoned)}", f"ts >= {_time_literal(day_start, zoned)}"):
        if not con.sql(f"SELECT 1 FROM {source} WHERE {edge} AND {VALID_SQL} AND meter_key IS NOT NULL "
                       "LIMIT 1").fetchall():
            return con.sql(full).fetchall()[0]
    return lo, hi, first, last


def hourly_blocks(con: duckdb.DuckDBPyConnection, source: str, meter: str = "meter_key",
                  utc_offset_h: float = 0.0, max_cells: int = MAX_CELLS,
                  prefetch: bool = True, files: Iterable[str | Path] | None = None) -> Iterator[HourlyBlock]:
    """Yield the readings of `source` (columns meter, ts, kw) as hourly blocks.

    With an integer `meter_key` blocks are key ranges (Parquet sorted by key lets each
    range skip the other row groups); any other meter column is first numbered. With
    `prefetch`, the next PREFETCH blocks are read (DuckDB and numpy, both without the
    GIL) on a second thread while the caller scores the current one: both cores stay
    busy (do not use `con` elsewhere until the iteration has ended). `files`: the Parquet files
    `source` reads, if it reads files (their footers save most of a first pass)."""
    offset = offset_us(utc_offset_h)
    span = "epoch_us(min(ts)), epoch_us(max(ts))"
    if meter == "meter_key":
        keyed, names = source, None
        lo, hi, t0, t1 = _span(con, source, offset, files)
    else:
        con.execute(f"""CREATE OR REPLACE TEMP TABLE _meter_codes AS
                        SELECT meter, CAST(row_number() OVER (ORDER BY meter) - 1 AS INTEGER) AS code
                        FROM (SELECT DISTINCT {meter} AS meter FROM {source}
                              WHERE {VALID_SQL} AND {meter} IS NOT NULL)""")
        names = np.asarray(con.sql("SELECT meter FROM _meter_codes ORDER BY code").fetchnumpy()["meter"],
                           dtype=object)
        keyed = (f"(SELECT c.code AS meter_key, s.ts, s.kw FROM {source} s "
                 f"JOIN _meter_codes c ON s.{meter} = c.meter)")
        lo, hi = 0, len(names) - 1
        t0, t1 = con.sql(f"SELECT {span} FROM {keyed} WHERE {VALID_SQL}").fetchall()[0]
    if lo is None or t0 is None or hi < lo:
        return
    grid = HourGrid.spanning(int(t0), int(t1), offset)
    ranges = grid.key_ranges(int(lo), int(hi), max_cells)
    whole = len(ranges) == 1 and names is None

    def fetch(a: int, b: int) -> np.ndarray:
        where = "meter_key IS NOT NULL" if whole else f"meter_key BETWEEN {a} AND {b}"
        return _read_block(con, keyed, where, grid, a, b - a + 1)

    def as_block(a: int, b: int, kw_block: np.ndarray) -> HourlyBlock | None:
        meters = np.arange(a, b + 1) if names is None else names[a : b + 1]
        return present_rows(meters, grid.day0, kw_block)

    # readings may come in any order (placement does not depend on it): DuckDB streams
    # more cheaply without keeping the scan's order
    order = con.sql("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute("SET preserve_insertion_order = false")
    try:
        if not prefetch or len(ranges) == 1:
            for a, b in ranges:
                block = as_block(a, b, fetch(a, b))
                if block is not None:
                    yield block
            return
        # the worker thread uses `con` (it sees the caller's registered tables and temp
        # tables) and reads PREFETCH blocks ahead, so that a block slow to score does not
        # leave it idle; the caller must not use `con` until the iteration has ended
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = deque(pool.submit(fetch, *r) for r in ranges[:PREFETCH])
            try:
                for i, (a, b) in enumerate(ranges):
                    kw_block = pending.popleft().result()
                    if i + PREFETCH < len(ranges):
                        pending.append(pool.submit(fetch, *ranges[i + PREFETCH]))
                    block = as_block(a, b, kw_block)
                    if block is not None:
                        yield block
            finally:  # the caller stopped early: do not read blocks nobody will take
                for future in pending:
                    future.cancel()
    finally:
        con.execute(f"SET preserve_insertion_order = {'true' if order else 'false'}")


def present_rows(meters: np.ndarray, day0: int, kw_block: np.ndarray) -> HourlyBlock | None:
    """The block without its meters that have no reading at all (None if none has)."""
    present = ~np.isnan(kw_block).all(axis=1)
    if present.all():
        return HourlyBlock(meters, day0, kw_block)
    if present.any():
        return HourlyBlock(meters[present], day0, kw_block[present])
    return None


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

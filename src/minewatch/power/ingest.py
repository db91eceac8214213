"""Readers for meter data -> the canonical meter-readings table, and the workspace.

Layouts (detected from the header):
  long : meter_id, timestamp, and one value column named kwh | kw | wh | w | value
  wide : a timestamp column first, then one column per meter (values in kWh per interval
         unless told otherwise), like the Cambridge estate files
CSV or Parquet. Timestamps with an offset (+08:00, Z) are exact; naive ones are read in
`tz` (default UTC), and readings doubled or lost at a daylight-saving change are counted.

Workspace (a folder):
  <ws>/meters/<sha256 prefix>.parquet   readings (meter_key, ts, kw), one file per input
  <ws>/catalog.duckdb                   files, meters, quality, meter_metadata, verdicts
  <ws>/rejects/<sha256 prefix>.jsonl     CSV lines that could not be read (file, line, reason, raw)
Ingest is idempotent: a file whose sha256 is already in `files` adds nothing.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from minewatch.errors import InputError, UsageError
from minewatch.power import quality as q
from minewatch.schema.meter_readings import METER_READINGS, WORKSPACE_READINGS
from minewatch.sources import sha256_file
from minewatch.sources._records import Reject, header_delimiter, is_time_zone, open_input

TS_NAMES = ("timestamp", "timestamp_utc", "ts", "time", "datetime", "date_time", "interval_start")
VALUE_UNITS = {"kwh": "kwh", "kw": "kw", "wh": "wh", "w": "w", "value": None}
UNITS = ("kwh", "kw", "wh", "w")
OFFSET_RE = r"([+-][0-9]{2}(:?[0-9]{2})?|Z)$"


@dataclass
class ReadResult:
    table: pa.Table  # METER_READINGS
    quality: list[q.MeterQuality]
    layout: str  # "long" or "wide"
    unit: str
    rows_in: int
    notes: list[str]
    malformed: list = field(default_factory=list)  # (line, reason, raw) not read at all


def check_options(tz: str, unit: str | None) -> None:
    """The ingest options, before any file is read (a file already ingested reads nothing
    and would not tell)."""
    _check_tz(tz)
    if unit is not None and unit not in UNITS:
        raise UsageError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")


def _check_tz(tz: str) -> None:
    if not is_time_zone(tz):
        raise UsageError(f"unknown time zone {tz!r} (use an IANA name such as Asia/Shanghai)")


def _refuse_network_logs(path: Path, what: str = "meter readings") -> None:
    """A capture, flow export or sensor log is not meter readings (or metadata), whatever
    its name (a Zeek log read as a table gives meters named after its first record's values)."""
    from minewatch.sources.detect_format import detect_format

    try:
        kind = detect_format(path)
    except InputError:  # no known kind: the table reader says what is wrong with it
        return
    if kind not in ("csv", "parquet"):
        raise InputError(path, f"a {kind} file, not {what} (read it with `minewatch ingest`)")


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _source_sql(path: Path) -> str:
    """The file as a DuckDB relation: Parquet, or CSV read as text with its malformed lines
    kept aside (`_malformed_lines`)."""
    p = str(path).replace("'", "''")
    if _is_parquet(path):
        return f"read_parquet('{p}')"
    return f"read_csv('{p}', all_varchar = true, header = true, store_rejects = true)"


def _reason(error_type: str, message: str, raw: str) -> str:
    """DuckDB's reject record -> the short reason the rest of minewatch gives. The field
    count is taken from the line itself: DuckDB's "Found" is where it stopped, not a count."""
    expected = re.search(r"Expected Number of Columns: (\d+)", message or "")
    if expected and error_type in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
        fields = len(next(csv.reader([raw]), [])) if raw else 0
        return f"wrong number of fields ({fields}, expected {expected.group(1)})"
    if error_type == "INVALID ENCODING":
        return "not UTF-8 text"
    return f"{error_type.lower()}: {(message or '').splitlines()[0][:120]}"


def _malformed_lines(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str, str]]:
    """(line, reason, raw text) of every CSV line DuckDB could not split into the header's
    fields; each scan of the file records them again, hence DISTINCT."""
    rows = con.sql("""SELECT DISTINCT line, error_type, error_message, csv_line
                      FROM reject_errors ORDER BY line""").fetchall()
    seen, out = set(), []
    for line, kind, message, raw in rows:
        if line not in seen:
            seen.add(line)
            out.append((int(line), _reason(kind, message, raw), raw or ""))
    return out


def _check_header(path: Path) -> None:
    """A CSV header naming a column twice: DuckDB would read the second as `name_1`, a
    meter that does not exist; which column is the meter is not ours to guess."""
    if _is_parquet(path):
        return
    with open_input(path) as f:  # gzip too; a byte-order mark skipped
        first = f.readline(1 << 20).decode("utf-8", "replace").strip("\r\n")
    names = [n.strip().strip('"') for n in first.split(header_delimiter(first))]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InputError(path, f"column(s) named twice in the header: {', '.join(twice)}", "line 1")


def _raw_relation(con: duckdb.DuckDBPyConnection, path: Path, unit: str | None):
    """Create temp table raw(meter_id, ts_text, val_text, row_no); return (layout, unit)."""
    src = _source_sql(path)
    try:
        cols = [c for c, *_ in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()]
    except duckdb.Error as e:
        raise InputError(path, f"cannot read as CSV or Parquet: {str(e).splitlines()[0]}")
    _check_header(path)
    lower = {c.lower().strip(): c for c in cols}
    ts_col = next((lower[n] for n in TS_NAMES if n in lower), None)
    val_col = next((lower[n] for n in VALUE_UNITS if n in lower), None)
    if "meter_id" in lower and ts_col and not val_col:
        raise InputError(path, "a long table (meter_id, timestamp) needs a value column: "
                               f"one of {', '.join(VALUE_UNITS)}", "line 1")
    if "meter_id" in lower and ts_col and val_col:
        layout = "long"
        found = VALUE_UNITS[val_col.lower().strip()]
        unit = unit or found or "kwh"
        sql = f"""SELECT CAST("{lower['meter_id']}" AS VARCHAR) AS meter_id,
                         CAST("{ts_col}" AS VARCHAR) AS ts_text,
                         CAST("{val_col}" AS VARCHAR) AS val_text,
                         row_number() OVER () AS row_no FROM {src}"""
    else:
        ts_col = ts_col or cols[0]
        meters = [c for c in cols if c != ts_col]
        if not meters:
            raise InputError(path, "no meter columns: expected long (meter_id,timestamp,kwh|kw) "
                                   "or wide (timestamp, one column per meter)", "line 1")
        layout, unit = "wide", unit or "kwh"
        cast = ", ".join(f'CAST("{m}" AS VARCHAR) AS "{m}"' for m in meters)
        sql = f"""SELECT meter_id, ts_text, val_text, row_no FROM (
                    UNPIVOT (SELECT row_number() OVER () AS row_no,
                                    CAST("{ts_col}" AS VARCHAR) AS ts_text, {cast} FROM {src})
                    ON COLUMNS(* EXCLUDE (row_no, ts_text))
                    INTO NAME meter_id VALUE val_text)"""
    if unit not in UNITS:
        raise UsageError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    try:
        con.execute(f"CREATE TEMP TABLE raw AS {sql}")
    except duckdb.Error as e:
        raise InputError(path, f"cannot parse: {str(e).splitlines()[0]}")
    return layout, unit


def read_meter_file(path: str | Path, tz: str = "UTC", unit: str | None = None) -> ReadResult:
    """Read one file of readings; check it; return canonical rows and per-meter quality."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    _check_tz(tz)
    _refuse_network_logs(path)
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET TimeZone = '{tz}'")
    layout, unit = _raw_relation(con, path, unit)
    malformed = [] if _is_parquet(path) else _malformed_lines(con)
    cols = con.sql(f"""
        SELECT meter_id,
               dense_rank() OVER (ORDER BY meter_id) - 1 AS code,
               coalesce(epoch_us(TRY_CAST(ts_text AS TIMESTAMPTZ)), {EPOCH_TEXT_US}) AS ts_us,
               TRY_CAST(val_text AS DOUBLE) AS val,
               ts_text IS NOT NULL AND trim(ts_text) <> '' AS has_ts,
               val_text IS NOT NULL AND trim(val_text) <> '' AS has_val,
               coalesce(regexp_matches(trim(ts_text), '{OFFSET_RE}')  -- epoch numbers are UTC too
                        OR regexp_full_match(trim(ts_text), '[0-9]{{9,13}}(\\.[0-9]+)?'), false) AS has_offset,
               row_no
        FROM raw WHERE meter_id IS NOT NULL
        ORDER BY code, ts_us NULLS LAST, row_no""").fetchnumpy()
    rows_in = len(cols["row_no"])
    if rows_in == 0:
        where = f"; {len(malformed)} malformed lines, the first at line {malformed[0][0]}: {malformed[0][1]}" \
            if malformed else ""
        raise InputError(path, f"no readings{where}")
    if np.all(np.ma.getmaskarray(np.ma.asarray(cols["ts_us"]))):
        sample = con.sql("SELECT ts_text FROM raw WHERE ts_text IS NOT NULL LIMIT 1").fetchall()
        shown = repr(sample[0][0]) if sample else "none"
        raise InputError(path, f"no reading has a time that can be read (the first is {shown}): expected "
                               "ISO 8601 (2024-01-31 13:00[:00][+08:00]) or epoch seconds/milliseconds")
    result = _check_and_convert(path, cols, tz, unit, layout)
    result.malformed = malformed
    return result


# epoch numbers as text: 9-10 digits are seconds (1973-2286), 12-13 milliseconds
EPOCH_TEXT_US = """CASE
    WHEN regexp_full_match(trim(ts_text), '[0-9]{9,10}(\\.[0-9]+)?') THEN CAST(round(CAST(trim(ts_text) AS DOUBLE) * 1e6) AS BIGINT)
    WHEN regexp_full_match(trim(ts_text), '[0-9]{12,13}') THEN CAST(trim(ts_text) AS BIGINT) * 1000
END"""


def _masked(a) -> np.ndarray:
    return np.ma.filled(np.ma.asarray(a).astype(np.float64), np.nan)


def _check_and_convert(path: Path, cols: dict, tz: str, unit: str, layout: str) -> ReadResult:
    ids = np.asarray(cols["meter_id"], dtype=object)
    code = np.asarray(cols["code"]).astype(np.int64)
    ts = _masked(cols["ts_us"])
    val = _masked(cols["val"])
    has_ts = np.asarray(cols["has_ts"], dtype=bool)
    has_val = np.asarray(cols["has_val"], dtype=bool)
    naive = ~np.asarray(cols["has_offset"], dtype=bool)
    n_groups = int(code.max()) + 1
    starts = q.group_starts(code)
    names = ids[starts]
    report = [q.MeterQuality(str(m)) for m in names]
    idx = {int(code[s]): i for i, s in enumerate(starts)}

    def add(issue: str, mask: np.ndarray) -> None:
        if mask.any():
            for c, n in zip(*np.unique(code[mask], return_counts=True)):
                report[idx[int(c)]].counts[issue] += int(n)

    rows = np.bincount(code, minlength=n_groups)
    for c, r in zip(code[starts], rows[code[starts]]):
        report[idx[int(c)]].rows = int(r)
    add("bad_timestamp", np.isnan(ts) & has_ts)
    add("bad_timestamp", ~has_ts)
    add("bad_value", np.isnan(val) & has_val)
    keep = ~np.isnan(ts)
    code, ts, val, naive = code[keep], ts[keep].astype(np.int64), val[keep], naive[keep]

    # duplicates: same meter and instant as the previous row (sorted); keep the first
    same = np.r_[False, (code[1:] == code[:-1]) & (ts[1:] == ts[:-1])]
    first_val = val.copy()
    for i in np.flatnonzero(same):  # few in practice; carries the kept value forward
        first_val[i] = first_val[i - 1]
    identical = same & ((val == first_val) | (np.isnan(val) & np.isnan(first_val)))
    conflicting = same & ~identical
    transitions = np.zeros(0, dtype=np.int64)
    near_dst = np.zeros(len(ts), dtype=bool)
    if tz != "UTC" and naive.any() and len(ts):
        transitions = q.dst_transitions(tz, int(ts.min()), int(ts.max()))
        if len(transitions):
            pos = np.searchsorted(transitions, ts)
            d_prev = np.abs(ts - transitions[np.clip(pos - 1, 0, len(transitions) - 1)])
            d_next = np.abs(transitions[np.clip(pos, 0, len(transitions) - 1)] - ts)
            near_dst = naive & (np.minimum(d_prev, d_next) <= 3 * 3_600_000_000)
    add("dst_clock_change", same & near_dst)
    add("duplicate_identical", identical & ~near_dst)
    add("duplicate_conflicting", conflicting & ~near_dst)
    code, ts, val, near_dst = code[~same], ts[~same], val[~same], near_dst[~same]

    # interval per meter: median spacing; gaps in units of it
    step = np.r_[0, np.diff(ts)].astype(np.float64)
    step[np.r_[True, code[1:] != code[:-1]]] = np.nan
    interval = q.group_median(code, step, n_groups)
    interval = np.where(np.isnan(interval), 3600.0e6, interval)
    iv = interval[code]
    missing = np.where(np.isnan(step), 0, np.maximum(np.round(step / iv) - 1, 0))
    dst_gap = missing.astype(bool) & near_dst
    for c in np.unique(code):
        m = code == c
        r = report[idx[int(c)]]
        r.interval_s = int(round(interval[c] / 1e6))
        r.counts["missing_intervals"] += int(missing[m & ~dst_gap].sum())
        r.counts["dst_clock_change"] += int(missing[m & dst_gap].sum())
        if not 300 <= r.interval_s <= 3600:
            r.notes.append(f"interval {r.interval_s} s is outside 5 min..1 h")

    # cumulative register: nearly every step rises -> difference it, and say so
    dv = np.r_[np.nan, np.diff(val)]
    dv[np.r_[True, code[1:] != code[:-1]]] = np.nan
    rising = np.bincount(code, weights=np.nan_to_num(dv) > 0, minlength=n_groups)
    falling = np.bincount(code, weights=np.nan_to_num(dv) < 0, minlength=n_groups)
    counted = np.bincount(code, weights=~np.isnan(dv), minlength=n_groups)
    register = (counted >= 10) & (rising >= q.CUMULATIVE_RISING * counted) & (falling <= 0.01 * counted)
    if register.any():
        reg_row = register[code]
        resets = reg_row & (dv < 0)
        add("register_reset", resets)
        val = np.where(reg_row, np.where(dv >= 0, dv, np.nan), val)
        for c in np.flatnonzero(register):
            r = report[idx[int(c)]]
            r.cumulative_register = True
            r.notes.append("values rise steadily like a cumulative register: converted to "
                           "per-interval energy by differencing (first reading dropped)")

    # units -> mean kW over the interval
    hours = iv / 3.6e9
    kw = {"kwh": val / hours, "kw": val, "wh": val / 1000 / hours, "w": val / 1000}[unit]

    add("negative", kw < 0)
    add("zero_as_missing", kw == 0)
    med = q.group_median(code, np.where(kw > 0, kw, np.nan), n_groups)
    absurd = (kw > q.ABSURD_KW) | (kw > q.SPIKE_FACTOR * med[code])
    add("absurd", absurd)
    kw = np.where((kw > 0) & ~absurd, kw, np.nan)

    # unit confusion: a meter far above its peers (Wh sent as kWh); flagged, not changed
    if n_groups >= 3:
        typical = np.nanmedian(med)
        for c in np.flatnonzero(med > q.UNIT_FACTOR * typical):
            r = report[idx[int(c)]]
            r.suspect_unit = "Wh as kWh?"
            r.notes.append(f"median {med[c]:.0f} kW is {med[c] / typical:.0f}x the other meters': "
                           "values may be Wh labelled kWh (not changed)")
    kept = np.bincount(code, weights=~np.isnan(kw), minlength=n_groups)
    for c in np.unique(code):
        report[idx[int(c)]].kept = int(kept[c])

    table = pa.table({
        "meter_id": pa.array(ids[keep][~same].astype(str) if len(ids) else [], pa.string()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "kw": pa.array(kw, pa.float64(), from_pandas=True),
        "interval_s": pa.array(np.round(iv / 1e6).astype(np.int32), pa.int32()),
        "source_file": pa.array([str(path)] * len(ts), pa.string()),
    }, schema=METER_READINGS)
    notes = [f"{layout} layout, values in {unit}"]
    return ReadResult(table, report, layout, unit, int(len(cols["row_no"])), notes)

# ---------------------------------------------------------------- workspace

CATALOG_DDL = """
CREATE TABLE IF NOT EXISTS files (sha256 VARCHAR PRIMARY KEY, path VARCHAR, ingested_at TIMESTAMP,
    layout VARCHAR, unit VARCHAR, rows_in BIGINT, readings BIGINT, meters INTEGER, parquet VARCHAR);
CREATE TABLE IF NOT EXISTS meters (meter_key INTEGER PRIMARY KEY, meter_id VARCHAR UNIQUE);
CREATE TABLE IF NOT EXISTS quality (sha256 VARCHAR, meter_id VARCHAR, rows BIGINT, kept BIGINT,
    interval_s INTEGER, issues VARCHAR, cumulative_register BOOLEAN, suspect_unit VARCHAR, summary VARCHAR);
CREATE TABLE IF NOT EXISTS meter_metadata (meter_id VARCHAR PRIMARY KEY, declared_business VARCHAR,
    contracted_kw DOUBLE, tariff_class VARCHAR);
"""


def open_catalog(ws: str | Path) -> duckdb.DuckDBPyConnection:
    ws = Path(ws)
    (ws / "meters").mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(ws / "catalog.duckdb"))
    con.execute("SET enable_progress_bar = false")
    con.execute(CATALOG_DDL)
    return con


@dataclass
class IngestResult:
    path: str
    sha256: str
    skipped: bool  # already ingested
    readings: int = 0
    meters: int = 0
    quality: list | None = None
    notes: list | None = None
    malformed: list = field(default_factory=list)  # (line, reason, raw), also in rejects_file
    rejects_file: Path | None = None

    def malformed_reasons(self) -> Counter:
        return Counter(reason for _, reason, _ in self.malformed)


def ingest_file(ws: str | Path, path: str | Path, tz: str = "UTC", unit: str | None = None) -> IngestResult:
    """Add one file of readings to the workspace (nothing if its sha256 is known)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    digest = sha256_file(path)
    con = open_catalog(ws)
    try:
        if con.execute("SELECT 1 FROM files WHERE sha256 = ?", [digest]).fetchall():
            return IngestResult(str(path), digest, True)
        res = read_meter_file(path, tz, unit)
        ids = pc.unique(res.table["meter_id"]).to_pylist()
        con.execute("CREATE TEMP TABLE new_ids AS SELECT unnest(?::VARCHAR[]) AS meter_id", [ids])
        con.execute("""INSERT INTO meters SELECT
                         coalesce((SELECT max(meter_key) FROM meters), -1)
                           + row_number() OVER (ORDER BY meter_id), meter_id
                       FROM new_ids WHERE meter_id NOT IN (SELECT meter_id FROM meters)""")
        con.register("incoming", res.table)
        out = Path(ws) / "meters" / f"{digest[:16]}.parquet"
        keyed = con.sql("""SELECT m.meter_key, i.ts, CAST(i.kw AS FLOAT) AS kw
                           FROM incoming i JOIN meters m USING (meter_id)
                           ORDER BY m.meter_key, i.ts""").to_arrow_table()
        _count_overlaps(con, Path(ws), keyed, res.quality)
        pq.write_table(keyed.cast(WORKSPACE_READINGS), out, compression="zstd")
        for r in res.quality:
            con.execute("INSERT INTO quality VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
                digest, r.meter_id, r.rows, r.kept, r.interval_s,
                ",".join(f"{k}={v}" for k, v in r.counts.items() if v),
                r.cumulative_register, r.suspect_unit, r.summary()])
        con.execute("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            digest, str(path), datetime.now(timezone.utc).replace(tzinfo=None), res.layout, res.unit,
            res.rows_in, keyed.num_rows, len(ids), out.name])
        again = sum(q.counts["in_other_file"] + q.counts["conflicts_other_file"] for q in res.quality)
        if again:
            differ = sum(q.counts["conflicts_other_file"] for q in res.quality)
            res.notes.append(f"{again:,} readings were already in the workspace from other files, {differ:,} "
                             "of them with another value (readings of one meter and hour are averaged)")
        rejects = _write_malformed(Path(ws), digest, path, res.malformed)
        return IngestResult(str(path), digest, False, keyed.num_rows, len(ids), res.quality, res.notes,
                            res.malformed, rejects)
    finally:
        con.close()


def _count_overlaps(con: duckdb.DuckDBPyConnection, ws: Path, keyed: pa.Table, quality: list) -> None:
    """Readings of this file whose meter and time are already in the workspace (monthly
    extracts that overlap, a corrected file sent again): counted per meter, same value or
    not. The scorer averages readings that share an hour, so nothing is lost, but a
    conflicting pair is an average of two claims, and the user is told."""
    files = sorted((ws / "meters").glob("*.parquet"))
    if not files or keyed.num_rows == 0:
        return
    con.register("keyed_new", keyed)
    low, high = con.execute("SELECT min(ts), max(ts) FROM keyed_new").fetchall()[0]
    rows = con.execute("""
        SELECT m.meter_id, count(*) AS same_time,
               count(*) FILTER (WHERE NOT (o.kw IS NOT DISTINCT FROM n.kw)
                                  AND (o.kw IS NULL OR n.kw IS NULL OR abs(o.kw - n.kw) > 1e-3 * greatest(abs(o.kw), abs(n.kw))))
        FROM keyed_new n
        JOIN (SELECT meter_key, ts, kw FROM read_parquet(?) WHERE ts BETWEEN ? AND ?) o USING (meter_key, ts)
        JOIN meters m ON m.meter_key = n.meter_key
        GROUP BY m.meter_id""", [[str(f) for f in files], low, high]).fetchall()
    con.unregister("keyed_new")
    by_meter = {q.meter_id: q for q in quality}
    for meter_id, same_time, conflicting in rows:
        q = by_meter.get(meter_id)
        if q is not None:
            q.counts["in_other_file"] += int(same_time - conflicting)
            q.counts["conflicts_other_file"] += int(conflicting)


def _write_malformed(ws: Path, digest: str, path: Path, malformed: list) -> Path | None:
    """Lines not read at all go to the rejects file the flow workspace writes too
    (<ws>/rejects/<sha256 prefix>.jsonl: file, line, reason, raw)."""
    if not malformed:
        return None
    from minewatch.workspace.store import Workspace, write_rejects

    store = Workspace(ws)
    store.rejects_dir.mkdir(parents=True, exist_ok=True)
    write_rejects(store, digest, [Reject(str(path), line, reason, raw) for line, reason, raw in malformed], 0, str(path))
    return store.rejects_path(digest)


def load_metadata(ws: str | Path, path: str | Path) -> tuple[int, list]:
    """Per-meter metadata CSV: meter_id[, declared_business][, contracted_kw][, tariff_class].
    Returns the number of meters described and the problems: (line, reason, raw) of lines
    not read, (None, reason, "") of values not read."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    _refuse_network_logs(path, "meter metadata")
    con = open_catalog(ws)
    try:
        src = _source_sql(path)
        cols = {c.lower(): c for c, *_ in con.sql(f"DESCRIBE SELECT * FROM {src}").fetchall()}
        if "meter_id" not in cols:
            raise InputError(path, "metadata needs a meter_id column", "line 1")

        def col(name: str, cast: str = "VARCHAR") -> str:
            return f'TRY_CAST("{cols[name]}" AS {cast})' if name in cols else f"CAST(NULL AS {cast})"

        con.execute(f"""INSERT OR REPLACE INTO meter_metadata
            SELECT {col('meter_id')}, {col('declared_business')}, {col('contracted_kw', 'DOUBLE')},
                   {col('tariff_class')} FROM {src} WHERE "{cols['meter_id']}" IS NOT NULL""")
        malformed = [] if _is_parquet(path) else _malformed_lines(con)
        if "contracted_kw" in cols:  # kept as empty, and said
            kw = f'CAST("{cols["contracted_kw"]}" AS VARCHAR)'
            for meter, value in con.execute(f"""
                    SELECT CAST("{cols['meter_id']}" AS VARCHAR), {kw} FROM {src}
                    WHERE "{cols['meter_id']}" IS NOT NULL AND trim(coalesce({kw}, '')) <> ''
                      AND TRY_CAST({kw} AS DOUBLE) IS NULL""").fetchall():
                malformed.append((None, f"meter {meter}: contracted_kw {value!r} is not a number (left empty)", ""))
        malformed += _beyond_capacity(con, ws)
        return con.execute("SELECT count(*) FROM meter_metadata").fetchall()[0][0], malformed
    except duckdb.Error as e:
        raise InputError(path, f"cannot read metadata: {str(e).splitlines()[0]}")
    finally:
        con.close()


CAPACITY_FACTOR = 10.0  # a median load this many times the contracted capacity is a unit error


def _beyond_capacity(con: duckdb.DuckDBPyConnection, ws: str | Path) -> list:
    """Meters whose median load is far above their contracted capacity: no supply carries
    that, so a unit is wrong (Wh labelled kWh, or contracted_kw given in MW). Said per
    meter and marked in `quality.suspect_unit`; nothing is changed."""
    if not any((Path(ws) / "meters").glob("*.parquet")):
        return []
    rows = con.execute(f"""
        SELECT m.meter_id, md.contracted_kw, median(r.kw) AS typical
        FROM read_parquet(?) AS r JOIN meters AS m USING (meter_key) JOIN meter_metadata AS md USING (meter_id)
        WHERE md.contracted_kw > 0 AND r.kw > 0
        GROUP BY m.meter_id, md.contracted_kw
        HAVING median(r.kw) > {CAPACITY_FACTOR} * md.contracted_kw
        ORDER BY m.meter_id""", [readings_glob(ws)]).fetchall()
    out = []
    for meter, cap, typical in rows:
        con.execute("UPDATE quality SET suspect_unit = 'beyond contracted capacity' WHERE meter_id = ?", [meter])
        out.append((None, f"meter {meter}: median load {typical:,.0f} kW is {typical / cap:,.0f}x its contracted "
                          f"{cap:g} kW: values in Wh labelled kWh, or contracted_kw in MW? (nothing changed)", ""))
    return out


def readings_glob(ws: str | Path) -> str:
    return str(Path(ws) / "meters" / "*.parquet")


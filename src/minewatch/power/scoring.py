"""Workspace scoring: hourly blocks (DuckDB, or Spark: power/spark.py) -> model -> one
verdict record per meter, with onset, added kW, miner counts by model and a one-sentence
explanation."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from minewatch.errors import InputError, UsageError
from minewatch.power import model
from minewatch.power.common import SAMPLE, CommonMode, common_mode
from minewatch.power.equipment import load_catalogue, units_for_kw
from minewatch.power.features import DailyMatrix, HourlyBlock, hourly_blocks, hourly_matrix
from minewatch.power.ingest import open_catalog, readings_glob

DETECTOR = "pwr.flat_step"
DETECTOR_VERSION = 2
EPOCH = date(1970, 1, 1)

FAILED_WORDS = {
    "flat_day": "the day rose clearly more than the base (a daytime load)",
    "flat_night": "the night did not carry the step",
    "abrupt": "the rise was gradual (weather or season)",
    "new_level": "the base had stood as high shortly before (a return from a dip)",
    "not_ended": "the added load later went away",
    "enough_days": "too few days before the change",
    "seen_long": f"it has not yet lasted {model.MIN_POST_DAYS} days",
    "reboots": "a block that large would show short restart dips, and none came",
    "own_step": "the other buildings rose as much at the same time (weather, season, term)",
    "seasonal": "the base rose as much in the same weeks a year earlier (the building's own season)",
    "step": "no step",
}


def day_str(epoch_day: int | None) -> str | None:
    return None if epoch_day is None else (EPOCH + timedelta(days=int(epoch_day))).isoformat()


def _units_phrase(units: dict[str, int]) -> str:
    cat = load_catalogue()
    parts = [f"{n} {cat[m].name.replace('Antminer ', '')}-class" for m, n in units.items()]
    if not parts:
        return "less than one miner of any catalogued model"
    if len(parts) == 1:
        return f"about {parts[0]} miners"
    return f"about {parts[0]} miners (or {', '.join(parts[1:])})"


def explain(v: model.Verdict) -> str:
    if v.reason:
        return f"not scored: {v.reason}"
    onset = day_str(v.onset_day)
    if v.flagged:
        dips = (f"; {int(v.tests['dips_post'])} short dips of about that size since (restarts)"
                if model.reboots(v.tests) == "seen" else "")
        return (f"base load rose by {v.estimated_kw:.3g} kW on {onset} and stayed flat day and night, "
                f"weekday and weekend{dips}: {_units_phrase(units_for_kw(v.estimated_kw))}")
    if v.onset_day is None or not v.tests.get("step", 0) > 0:
        return "no persistent step up in the base load"
    why = "; ".join(FAILED_WORDS.get(f, f) for f in v.failed[:2]) or "step too weak for its noise"
    return f"base load rose by {v.tests['step']:.3g} kW around {onset}, but {why}"


def verdict_record(v: model.Verdict, meter_id: str, meta: dict | None = None) -> dict:
    units = units_for_kw(v.estimated_kw) if v.flagged else {}
    rec = {
        "meter_id": meter_id,
        "flagged": bool(v.flagged),
        "score": round(float(v.score), 4),
        "onset": day_str(v.onset_day) if v.onset_day is not None and v.tests.get("step", 0) > 0 else None,
        "estimated_kw": round(float(v.estimated_kw), 3) if v.flagged else 0.0,
        "estimated_units": units,
        "explanation": explain(v),
        "detector": DETECTOR,
        "detector_version": DETECTOR_VERSION,
        "step_z": round(float(v.z), 2),
        "failed_tests": list(v.failed),
        "tests": {k: (round(float(x), 4) if np.isfinite(x) else None) for k, x in v.tests.items()},
    }
    if meta:
        rec["metadata"] = meta
        cap = meta.get("contracted_kw")
        if v.flagged and cap and v.tests.get("pre_base", 0) + v.estimated_kw > cap:
            rec["explanation"] += f"; the new base exceeds the contracted {cap:g} kW"
    return rec


ENGINES = ("duckdb", "spark")


def _unreadable(ws: str | Path, exc: duckdb.Error) -> InputError:
    """A damaged or foreign Parquet file among the readings, in one line."""
    return InputError(Path(ws) / "meters", f"cannot read the readings: {str(exc).splitlines()[0]}")


SAMPLE_RUN = 100  # meters of consecutive keys read together for the common mode


def sample_common(con, source: str, keys: list[int], utc_offset_h: float = 0.0) -> CommonMode | None:
    """The city's common mode (power/common.py) from the readings `source` (a DuckDB
    relation) of at most common.SAMPLE of `keys`. Beyond that many meters the sample is
    runs of SAMPLE_RUN consecutive keys, the runs drawn by a fixed hash of their number:
    readings are stored sorted by key, so each run is read from one or two row groups
    (a hash of single keys touched every row group: the common mode cost a third of the
    scoring); a run holds every residue of any short numbering period (every 100th meter
    a kind of site), which a stride of single keys would pick out. None with too few
    meters: each is then scored on its own base."""
    if len(keys) < 2:
        return None
    arr = np.sort(np.asarray(keys, dtype=np.int64))
    runs = [arr] if len(arr) <= SAMPLE else _hashed_runs(arr)
    parts = []
    for run in runs:
        a, b = int(run[0]), int(run[-1])
        where = f"meter_key BETWEEN {a} AND {b}"  # lets the scan skip the other row groups
        if len(run) < b - a + 1:  # keys with gaps: only these
            where += f" AND meter_key IN ({', '.join(str(int(k)) for k in run)})"
        sampled = f"(SELECT r.* FROM {source} r WHERE {where})"
        parts += [(block.day0, block.daily_base()) for block in hourly_blocks(con, sampled, "meter_key", utc_offset_h)]
    if not parts:
        return None
    day0 = min(d for d, _ in parts)
    days = max(d + base.shape[1] for d, base in parts) - day0
    aligned = np.full((sum(base.shape[0] for _, base in parts), days), np.nan)
    row = 0
    for d, base in parts:  # blocks of different runs may span different days
        aligned[row : row + base.shape[0], d - day0 : d - day0 + base.shape[1]] = base
        row += base.shape[0]
    values = common_mode(aligned)
    return None if values is None else CommonMode(day0, values)


def _hashed_runs(keys: np.ndarray) -> list[np.ndarray]:
    """SAMPLE // SAMPLE_RUN runs of SAMPLE_RUN consecutive keys (of the sorted `keys`),
    chosen by Knuth's multiplicative hash of the run number: the same runs every time."""
    n_runs = -(-len(keys) // SAMPLE_RUN)
    numbers = np.arange(n_runs, dtype=np.int64)
    mixed = (numbers * 2654435761) & 0xFFFFFFFF
    chosen = np.sort(numbers[np.lexsort((numbers, mixed))[: SAMPLE // SAMPLE_RUN]])
    return [keys[c * SAMPLE_RUN : (c + 1) * SAMPLE_RUN] for c in chosen]


def workspace_common(con, ws: str | Path, utc_offset_h: float = 0.0) -> CommonMode | None:
    """The common mode over the whole workspace, computed once before the scoring, so a
    meter's verdict does not depend on which meters share its block (nor on the engine)."""
    keys = [r[0] for r in con.execute("SELECT meter_key FROM meters").fetchall()]
    try:
        return sample_common(con, f"read_parquet('{readings_glob(ws)}')", keys, utc_offset_h)
    except duckdb.Error as exc:
        raise _unreadable(ws, exc) from None


def since_day(since: str | date | None) -> int | None:
    """`--since` as an epoch day (local), None for the whole history; a bad date is a
    one-line error."""
    if since is None or isinstance(since, int):
        return since
    if isinstance(since, str):
        try:
            since = date.fromisoformat(since.strip())
        except ValueError:
            raise UsageError(f"--since must be a date like 2024-01-31, not {since!r}") from None
    return (since - EPOCH).days


def duckdb_verdicts(con, ws: str | Path, utc_offset_h: float = 0.0,
                    common: CommonMode | None = None, since: int | None = None) -> list[model.Verdict]:
    """Every meter of the workspace scored block by block (DuckDB reads, numpy scores)."""
    verdicts: list[model.Verdict] = []
    try:
        files = sorted((Path(ws) / "meters").glob("*.parquet"))  # what the glob reads
        for block in hourly_blocks(con, f"read_parquet('{readings_glob(ws)}')", "meter_key", utc_offset_h,
                                   files=files):
            verdicts += model.score_meters(block, common, since=since)
    except duckdb.Error as exc:
        raise _unreadable(ws, exc) from None
    return verdicts


def check_readings(ws: str | Path) -> None:
    """Every readings file must be Parquet with the readings' columns: checked from the
    footers, so that a damaged or foreign file is named in one line on either engine."""
    for path in sorted((Path(ws) / "meters").glob("*.parquet")):
        try:
            names = set(pq.read_schema(path).names)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(path, f"not a readable Parquet file ({str(exc).splitlines()[0]})") from None
        missing = [c for c in ("meter_key", "ts", "kw") if c not in names]
        if missing:
            raise InputError(path, f"not a readings file: no column {', '.join(missing)}")


def score_workspace(ws: str | Path, utc_offset_h: float = 0.0, engine: str = "duckdb",
                    spark_master: str | None = None, spark=None, since: str | date | None = None) -> list[dict]:
    """Score every meter in the workspace; store the verdicts in the catalog too.
    `since` (a date): score only onsets from that local day on; the readings before it
    are history (see model.score_meters). Default: every day.
    engine "spark" scores on Spark (`spark_master`, default local mode; or the session
    `spark`) with the same results. A folder with no meter readings gives [] and is left
    as it was."""
    since = since_day(since)
    if engine not in ENGINES:
        raise UsageError(f"--engine must be duckdb or spark, not {engine!r}")
    if engine == "duckdb" and spark_master:
        raise UsageError("--spark-master needs --engine spark")
    if not list((Path(ws) / "meters").glob("*.parquet")) or not (Path(ws) / "catalog.duckdb").exists():
        return []
    check_readings(ws)
    con = open_catalog(ws)
    try:
        common = workspace_common(con, ws, utc_offset_h)
        if engine == "spark":
            from minewatch.power.spark import score_with_spark

            verdicts = score_with_spark(ws, utc_offset_h, spark_master, spark, common=common, since=since)
        else:
            verdicts = duckdb_verdicts(con, ws, utc_offset_h, common, since)
        names = dict(con.execute("SELECT meter_key, meter_id FROM meters").fetchall())
        meta = {r[0]: {k: x for k, x in zip(("declared_business", "contracted_kw", "tariff_class"), r[1:])
                       if x is not None}
                for r in con.execute("SELECT * FROM meter_metadata").fetchall()}
        records = [verdict_record(v, names[int(v.meter)], meta.get(names[int(v.meter)])) for v in verdicts]
        records.sort(key=lambda r: (-r["flagged"], -r["score"], r["meter_id"]))
        con.execute("CREATE OR REPLACE TABLE verdicts (meter_id VARCHAR, flagged BOOLEAN, score DOUBLE, "
                    "onset DATE, estimated_kw DOUBLE, record VARCHAR)")
        con.executemany("INSERT INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                        [[r["meter_id"], r["flagged"], r["score"], r["onset"], r["estimated_kw"],
                          json.dumps(r)] for r in records])
        return records
    finally:
        con.close()


def meter_daily(ws: str | Path, meter_id: str, utc_offset_h: float = 0.0) -> tuple[DailyMatrix, dict | None]:
    """Daily series of one meter and its stored verdict (re-scored if none is stored)."""
    if not (Path(ws) / "catalog.duckdb").exists():
        raise InputError(ws, "not a meter workspace (no catalog.duckdb): run `minewatch meters ingest` first")
    con = open_catalog(ws)
    try:
        row = con.execute("SELECT meter_key FROM meters WHERE meter_id = ?", [meter_id]).fetchall()
        row = row[0] if row else None
        block = HourlyBlock(np.array([]), 0, np.zeros((0, 24), dtype=np.float32))
        if row is not None:
            src = f"(SELECT * FROM read_parquet('{readings_glob(ws)}') WHERE meter_key = {int(row[0])})"
            block = hourly_matrix(con, src, "meter_key", utc_offset_h)
        dm = block.daily()
        if row is None:
            return dm, None
        stored = None
        if con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'verdicts'").fetchall()[0][0]:
            got = con.execute("SELECT record FROM verdicts WHERE meter_id = ?", [meter_id]).fetchall()
            stored = json.loads(got[0][0]) if got else None
        if stored is None and len(dm.meters):
            stored = verdict_record(model.score_meters(block, workspace_common(con, ws, utc_offset_h))[0], meter_id)
        return dm, stored
    finally:
        con.close()

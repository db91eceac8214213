"""Round-3 model changes on real slices (tests/data/power): a miner block that keeps
running while the building drops its own base later, restart dips counted in the hours
quiet enough to show them, the dip count skipped only when it cannot change a verdict,
and the threaded block reader. Round 4: the city's common mode, on the real 2018
buildings of the shared corpus (skipped without it)."""

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from minewatch.power import common, features, model
from minewatch.power.features import hourly_blocks, hourly_matrix
from minewatch.power.ingest import read_meter_file
from minewatch.power.model import (_dip_events, dip_counts, ended_share, hour_of_day_noise, quiet_hours,
                                   reboots, score_meters)

DATA = Path(__file__).parent / "data" / "power"
MARCH = 59  # 2018-03-01, day index in the b52 slice
DROP = 163  # around 2018-06-13 the building's own base falls by ~45 kW


@pytest.fixture(scope="module")
def b52() -> tuple[np.ndarray, np.ndarray]:
    t = read_meter_file(DATA / "cambridge_2018_b52_jan_aug.csv").table
    t = t.filter(pc.equal(t["meter_id"], "b52"))
    return t["ts"].cast(pa.int64()).to_numpy(), t["kw"].to_numpy(zero_copy_only=False).astype(float)


def miners(n: int, onset_h: int, kw: float, end_h: int | None = None, seed: int = 5) -> np.ndarray:
    """A block of `kw` from `onset_h` (to `end_h`), +/- 2 % jitter, and two or three
    1-3 hour restarts a month at a fraction of its load (the issue's injection model)."""
    rng = np.random.default_rng(seed)
    end_h = n if end_h is None else end_h
    load = np.zeros(n)
    load[onset_h:end_h] = kw * rng.uniform(0.98, 1.02, end_h - onset_h)
    for start in rng.integers(onset_h, end_h, int((end_h - onset_h) / 720 * 2.5) + 1):
        load[start : start + int(rng.integers(1, 4))] *= rng.uniform(0.0, 0.3)
    return load


def verdict(ts: np.ndarray, kw: np.ndarray) -> model.Verdict:
    con = duckdb.connect()
    con.register("readings", pa.table({"meter_key": pa.array(np.zeros(len(ts), np.int32)),
                                       "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
                                       "kw": pa.array(kw, pa.float64(), from_pandas=True)}))
    return score_meters(hourly_matrix(con, "readings"))[0]


def test_the_slice_has_its_own_base_drop(b52):
    ts, kw = b52
    base = np.nanmin(kw.reshape(-1, 24), axis=1)
    assert np.median(base[DROP - 28 : DROP - 2]) - np.median(base[DROP + 2 : DROP + 28]) > 35


@pytest.mark.parametrize("kw", [25.0, 30.0])
def test_block_from_march_survives_the_buildings_june_drop(b52, kw):
    """The building's base falls by ~45 kW in June, more than the block itself could
    remove: the block stood until then, so the fall is not the block ending."""
    ts, load = b52
    v = verdict(ts, load + miners(len(ts), MARCH * 24 + 9, kw))
    assert v.flagged, (v.failed, v.tests.get("ended"))
    day0 = int(ts[0] // 86_400_000_000)
    assert abs(v.onset_day - (day0 + MARCH)) <= 2
    assert v.estimated_kw == pytest.approx(kw, rel=0.35)  # the building drifts in spring


def test_block_switched_off_before_the_drop_still_ended(b52):
    """The same block switched off in May, weeks before the building's own drop."""
    ts, load = b52
    v = verdict(ts, load + miners(len(ts), MARCH * 24 + 9, 25.0, end_h=130 * 24))
    assert not v.flagged and "not_ended" in v.failed


def test_ended_share_ignores_falls_larger_than_the_block():
    rng = np.random.default_rng(0)
    after = 100 + rng.normal(0, 0.5, 200)
    assert ended_share(after, 100.0, 20.0) < 0.2  # nothing fell
    fell = after.copy()
    fell[120:] -= 20  # the block (20 kW) went away
    assert ended_share(fell, 100.0, 20.0) > 0.8
    building = after.copy()
    building[120:] -= 45  # far more than the block: the building changed
    assert ended_share(building, 100.0, 20.0) < 0.2
    both = building.copy()
    both[60:] -= 20  # the block went away first, then the building changed
    assert ended_share(both, 100.0, 20.0) > 0.8


def busy_days(days: int, seed: int = 1) -> np.ndarray:
    """Quiet nights (hour-to-hour noise 0.3 kW), busy days (8 kW) from 08 to 19 h."""
    rng = np.random.default_rng(seed)
    h = np.arange(days * 24) % 24
    busy = (h >= 8) & (h < 20)
    return 50 + np.where(busy, 30 + rng.normal(0, 8, days * 24), rng.normal(0, 0.3, days * 24))


def test_dips_count_only_in_hours_quiet_enough_to_show_them():
    y = busy_days(120)
    noise = hour_of_day_noise(y)
    quiet = quiet_hours(noise, 10.0)
    assert quiet[1:5].all() and not quiet[10:16].any()
    for day in (70, 80, 90, 100):
        y[day * 24 + 2] -= 9.0  # 02:00 restarts of a 10 kW block: seen
    for day in (75, 85):
        y[day * 24 + 13] -= 9.0  # 13:00: inside the day's noise, not counted
    t = dip_counts(y, 60, 10.0, quiet)
    assert t["dips_post"] == 4 and t["dips_pre"] == 0
    assert t["dip_rate_post"] == pytest.approx(4 / t["dip_days_post"] * 30)
    assert all(e % 24 == 2 for e in _dip_events(y, 10.0) if quiet[e % 24])


def test_dips_as_frequent_before_the_onset_are_not_restarts():
    """Poisson test: 4 dips after the onset are no sign when the pre-onset rate was the same."""
    y = busy_days(120)
    for day in (10, 20, 30, 40, 50, 70, 80, 90, 100):
        y[day * 24 + 3] -= 9.0
    quiet = quiet_hours(hour_of_day_noise(y), 10.0)
    t = dict(dip_counts(y, 60, 10.0, quiet), quiet_hours=float(quiet.sum()), post_days=60.0)
    assert t["dips_pre"] >= 4 and reboots(t) != "seen"
    y2 = busy_days(120)
    for day in (70, 80, 90, 100):
        y2[day * 24 + 3] -= 9.0
    t2 = dict(dip_counts(y2, 60, 10.0, quiet), quiet_hours=float(quiet.sum()), post_days=60.0)
    assert reboots(t2) == "seen"


def test_skipping_the_dip_count_never_changes_a_verdict(b52, monkeypatch):
    """The dips are skipped only when even restarts could not lift a split to the flag
    (or, flagged, could not take it away): counting them always gives the same verdicts."""
    ts, load = b52
    cases = {"clean": load, "block25": load + miners(len(ts), MARCH * 24, 25.0),
             "flat_no_restarts": load + np.where(np.arange(len(ts)) >= 40 * 24, 60.0, 0.0),
             "small": load + miners(len(ts), 100 * 24, 6.0)}
    fast = {name: verdict(ts, kw) for name, kw in cases.items()}
    monkeypatch.setattr(model, "_dips_can_matter", lambda z, tests, score: True)
    full = {name: verdict(ts, kw) for name, kw in cases.items()}
    assert {n: v.flagged for n, v in fast.items()} == {n: v.flagged for n, v in full.items()}
    assert fast["block25"].flagged and not fast["clean"].flagged


def test_threaded_blocks_match_one_block_and_average_across_batches(monkeypatch):
    """Several blocks read on the worker thread, Arrow batches of 7 rows: the same matrix
    as one block, and two readings of one hour in different batches are averaged."""
    monkeypatch.setattr(features, "BATCH_ROWS", 7)
    t0, hour = 1_704_067_200_000_000, 3_600_000_000
    rng = np.random.default_rng(2)
    rows = [(m, h * hour, float(rng.uniform(1, 9))) for m in range(9) for h in range(48)]
    rows.append((4, 5 * hour + 60_000_000, 100.0))  # a second reading in meter 4's hour 5
    con = duckdb.connect()
    con.register("readings", pa.table({"meter_key": pa.array([r[0] for r in rows], pa.int32()),
                                       "ts": pa.array([t0 + r[1] for r in rows], pa.timestamp("us", tz="UTC")),
                                       "kw": pa.array([r[2] for r in rows], pa.float64())}))
    whole = hourly_matrix(con, "readings")
    parts = list(hourly_blocks(con, "readings", max_cells=2 * 48, prefetch=True))
    assert [len(p.meters) for p in parts] == [2, 2, 2, 2, 1]
    assert np.array_equal(np.vstack([p.kw for p in parts]), whole.kw)
    first = [r[2] for r in rows if r[0] == 4 and r[1] == 5 * hour][0]
    assert whole.kw[4, 5] == pytest.approx((first + 100.0) / 2)


def test_null_keys_timestamps_and_readings_are_skipped():
    t0, hour = 1_704_067_200_000_000, 3_600_000_000
    con = duckdb.connect()
    con.register("readings", pa.table({
        "meter_key": pa.array([0, None, 0, 1, 0], pa.int32()),
        "ts": pa.array([t0, t0 + hour, None, t0 + 2 * hour, t0 + 3 * hour], pa.timestamp("us", tz="UTC")),
        "kw": pa.array([1.0, 2.0, 3.0, None, 4.0])}))
    block = hourly_matrix(con, "readings")
    assert list(block.meters) == [0]  # meter 1 has no valid reading
    assert block.kw[0, 0] == 1.0 and block.kw[0, 3] == 4.0
    assert np.isnan(block.kw[0, [1, 2]]).all() and np.count_nonzero(~np.isnan(block.kw)) == 2


# --- round 4: the city's common mode (power/common.py) --------------------------------

def test_common_mode_is_the_median_departure_of_every_meter_from_its_own_level():
    rng = np.random.default_rng(4)
    days = 120
    levels = rng.uniform(1, 500, 30)
    city = np.where(np.arange(days) >= 60, 1.2, 1.0)  # every building 20 % up from day 60
    base = levels[:, None] * city[None, :] * rng.uniform(0.98, 1.02, (30, days))
    base[3, 90:] += 0.5 * levels[3]  # one building's own block
    base[5, :40] = np.nan  # a meter that starts late
    c = common.common_mode(base)
    assert np.allclose(c[:60] / np.median(c[:60]), 1.0, atol=0.03)
    assert np.median(c[60:]) / np.median(c[:60]) == pytest.approx(1.2, rel=0.03)
    res = common.residual_base(base, c)
    own = res[3, 95:].mean() - res[3, 65:85].mean()
    assert own == pytest.approx(0.5 * levels[3], rel=0.1)  # the block stays
    assert abs(res[7, 65:].mean() - res[7, :55].mean()) < 0.05 * levels[7]  # the city's rise goes
    assert common.common_mode(base[:common.MIN_METERS - 1]) is None  # too few meters: none
    shifted = common.CommonMode(100, c)
    assert np.array_equal(shifted.on(110, 5), c[10:15])
    assert np.isnan(shifted.on(90, 20)[:10]).all() and shifted.on(90, 20)[10] == c[0]


def load_year(corpus, year: int):
    """(hourly timestamps, {building: kW}) of the even Cambridge buildings of `year` with
    readings most of the year (exact zeros as missing)."""
    t = pacsv.read_csv(corpus / "power" / "cambridge" / f"electricity_kwh_hourly_{year}.csv")
    ts = pc.cast(t.column(0), pa.timestamp("us")).to_numpy().astype("int64")
    out = {}
    for name in t.column_names[1:]:
        if int(name[1:]) % 2:
            continue  # odd buildings are reserved
        x = t.column(name).to_numpy(zero_copy_only=False).astype(float)
        x[x == 0] = np.nan
        if np.sum(~np.isnan(x)) > 24 * 300:
            out[name] = x
    return ts, out


@pytest.fixture(scope="module")
def city_2018(corpus):
    """The even Cambridge buildings of 2018 with readings most of the year."""
    return load_year(corpus, 2018)


def city_block(ts, blds) -> features.HourlyBlock:
    n = len(ts)
    con = duckdb.connect()
    con.register("readings", pa.table({
        "meter_id": pa.array([b for b in blds for _ in range(n)]),
        "ts": pa.array(np.tile(ts, len(blds)), pa.timestamp("us", tz="UTC")),
        "kw": pa.array(np.concatenate(list(blds.values())), pa.float64(), from_pandas=True)}))
    return hourly_matrix(con, "readings", meter="meter_id")


SHARED_DAY, MINER_DAY = 150, 200


def test_a_step_every_building_takes_is_not_a_block(city_2018, monkeypatch):
    """Every building's load 25 % up from day 150 (a city-wide change) and a miner block
    in one building from day 200: against the common mode only the block is its own
    step; without it, flat buildings are flagged at the city's step."""
    ts, blds = city_2018
    h = np.arange(len(ts))
    city = {b: x * np.where(h >= SHARED_DAY * 24, 1.25, 1.0) for b, x in blds.items()}
    city["b26"] = city["b26"] + miners(len(ts), MINER_DAY * 24, 0.5 * np.nanmean(blds["b26"]))
    block = city_block(ts, city)
    onsets = {v.meter: v.onset_day - block.day0 for v in score_meters(block) if v.flagged}
    assert abs(onsets.pop("b26") - MINER_DAY) <= 2
    assert not [b for b, d in onsets.items() if abs(d - SHARED_DAY) <= 7], onsets
    monkeypatch.setattr(model, "USE_COMMON", False)
    alone = {v.meter: v.onset_day - block.day0 for v in score_meters(block) if v.flagged}
    assert [b for b, d in alone.items() if abs(d - SHARED_DAY) <= 7]


def test_common_mode_from_a_first_pass_serves_blocks_of_meters(city_2018):
    """A workspace scored block by block with the common mode of all its meters (one
    first pass) gets the verdicts of one big block; a lone meter gets none (its own base)."""
    ts, blds = city_2018
    block = city_block(ts, blds)
    whole = {v.meter: (v.flagged, round(v.score, 6), v.onset_day) for v in score_meters(block)}
    first_pass = common.CommonMode(block.day0, common.common_mode(block.daily_base()))
    parts = {}
    for rows in np.array_split(np.arange(len(block.meters)), 3):
        parts.update({v.meter: (v.flagged, round(v.score, 6), v.onset_day)
                      for v in score_meters(block.rows(rows), first_pass)})
    assert parts == whole
    b48 = int(np.flatnonzero(block.meters == "b48")[0])  # follows the city: its step is measured against it
    assert score_meters(block)[b48].tests["common_mode"] == 1.0
    assert score_meters(block.rows(np.array([b48])))[0].tests["common_mode"] == 0.0
    split = {}  # blocks too small for a common mode of their own differ
    for rows in np.array_split(np.arange(len(block.meters)), 3):
        split.update({v.meter: (v.flagged, round(v.score, 6), v.onset_day) for v in score_meters(block.rows(rows))})
    assert split != whole

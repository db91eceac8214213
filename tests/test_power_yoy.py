"""Round 5: a year of a meter's history. A step the building made in the same weeks a
year earlier is its season, not a miner block (the `seasonal` test); onsets are scored
from `since` on; without a year of history the model behaves as before. Real even
buildings of the shared corpus, 2017 and 2018 (skipped without it)."""

import json
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import typer
from typer.testing import CliRunner

from minewatch.power import model
from minewatch.power.cli import meters_app
from minewatch.power.model import recurrence, score_meters
from test_power_recall import city_block as block, load_year, miners

JAN_2018 = int(np.datetime64("2018-01-01", "D").astype(int))
MINER_DAY = 200  # 2018-07-20: the injected blocks start here (days into 2018)


@pytest.fixture(scope="module")
def years(corpus):
    """(timestamps, buildings) of 2017 and 2018, the buildings present in both."""
    t7, b7 = load_year(corpus, 2017)
    t8, b8 = load_year(corpus, 2018)
    both = sorted(set(b7) & set(b8))
    return (t7, {b: b7[b] for b in both}), (t8, {b: b8[b] for b in both})


def with_history(years, blds2018):
    (t7, b7), (t8, _) = years
    return block(np.concatenate([t7, t8]), {b: np.concatenate([b7[b], x]) for b, x in blds2018.items()})


def flagged(verdicts) -> dict:
    return {v.meter: v.onset_day for v in verdicts if v.flagged}


def test_the_corpus_holds_the_recurring_steps(years):
    """b18's base doubles every late winter (2017-03-07, 2018-02-17), b48 steps up every
    late November: the clean steps that set the flag before round 5."""
    (t7, b7), (t8, b8) = years
    for b, day7, day8 in (("b18", 65, 47), ("b48", 331, 334)):
        for x, day in ((b7[b], day7), (b8[b], day8)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # empty days
                base = np.nanmin(x[: len(x) // 24 * 24].reshape(-1, 24), axis=1)
            assert np.nanmedian(base[day + 2 : day + 16]) - np.nanmedian(base[day - 16 : day - 2]) > 0.3, (b, day)


def test_a_step_the_building_made_a_year_earlier_is_not_flagged(years):
    """Scored alone, 2018 flags b18 (its own late-winter step, as in rounds 3-4); with
    2017 as history the same step fails `seasonal`, as does b48's December step, and no
    clean building is flagged. Onsets in the history (2017) are never reported."""
    (_, _), (t8, b8) = years
    alone = score_meters(block(t8, b8))
    assert "b18" in flagged(alone)
    hist = {v.meter: v for v in score_meters(with_history(years, b8), since=JAN_2018)}
    assert flagged(hist.values()) == {}
    for b in ("b18", "b48"):
        assert "seasonal" in hist[b].failed and hist[b].tests["recurs"] >= model.RECUR_MAX, (b, hist[b].tests)
    assert all(v.onset_day is None or v.onset_day >= JAN_2018 for v in hist.values())


def test_injected_blocks_are_still_found_in_buildings_with_seasonal_steps(years):
    """A block of the building's mean load from July 2018 in b18 and in b48 (the two
    seasonal buildings): with history both are flagged at their own onset, and the
    building's seasonal step is not what is reported."""
    (_, _), (t8, b8) = years
    mined = dict(b8)
    for b in ("b18", "b48"):
        mined[b] = b8[b] + miners(len(t8), MINER_DAY * 24 + 9, float(np.nanmean(b8[b])))
    onsets = flagged(score_meters(with_history(years, mined), since=JAN_2018))
    assert sorted(onsets) == ["b18", "b48"]
    for b, day in onsets.items():
        assert abs(day - (JAN_2018 + MINER_DAY)) <= 2, (b, day - JAN_2018)


def test_without_a_year_of_history_nothing_changes(years, monkeypatch):
    """A single year: `since` at its first day changes nothing, no verdict carries the
    year-over-year measurement, and its flag (FLAG_SCORE_YOY) plays no part."""
    (_, _), (t8, b8) = years
    mined = dict(b8, b26=b8["b26"] + miners(len(t8), MINER_DAY * 24, 0.5 * float(np.nanmean(b8["b26"]))))
    one_year = block(t8, mined)

    def summary(**kw):
        return {v.meter: (v.flagged, round(v.score, 6), v.onset_day, tuple(v.failed))
                for v in score_meters(one_year, **kw)}

    plain = summary()
    assert summary(since=JAN_2018) == plain
    assert not any("recurs" in v.tests for v in score_meters(one_year))
    monkeypatch.setattr(model, "FLAG_SCORE_YOY", 0.01)
    assert summary() == plain
    assert {b for b, (f, *_rest) in plain.items() if f} == {"b18", "b26"}


def test_recurrence_measures_last_years_step_near_the_same_date():
    rng = np.random.default_rng(3)
    b = 10 + rng.normal(0, 0.1, 800)
    b[300:400] += 5  # last year: up by 5 from day 300 for 100 days
    b[300 + 364 :] += 5  # this year: the same
    assert recurrence(b, 664, 5.0) == pytest.approx(1.0, abs=0.1)
    assert recurrence(b, 664, 10.0) == pytest.approx(0.5, abs=0.1)  # a step twice as large
    assert recurrence(b, 664 + 60, 5.0) < 0.2  # two months away from last year's step
    assert np.isnan(recurrence(b[300:], 364, 5.0))  # not a year of history before the step
    assert np.isnan(recurrence(b, 300, 5.0))


def test_cli_since_scores_from_that_date_and_rejects_a_bad_one(years, tmp_path):
    (t7, b7), (t8, b8) = years
    n = len(t7) + len(t8)
    rows = pa.table({"meter_id": pa.array([b for b in ("b18", "b48") for _ in range(n)]),
                     "timestamp": pa.array(np.tile(np.concatenate([t7, t8]), 2), pa.timestamp("us", tz="UTC")),
                     "kw": pa.array(np.concatenate([np.concatenate([b7[b], b8[b]]) for b in ("b18", "b48")]),
                                    pa.float64(), from_pandas=True)})
    csv = tmp_path / "two.csv"
    pacsv.write_csv(rows, csv)
    app = typer.Typer()
    app.add_typer(meters_app, name="meters")
    runner = CliRunner()
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["meters", "ingest", str(csv), "--workspace", str(ws)]).exit_code == 0
    out = tmp_path / "v.jsonl"
    r = runner.invoke(app, ["meters", "score", "-w", str(ws), "--since", "2018-01-01", "-o", str(out)])
    assert r.exit_code == 0, r.output
    records = {json.loads(x)["meter_id"]: json.loads(x) for x in out.read_text().splitlines()}
    assert all(rec["onset"] is None or rec["onset"] >= "2018-01-01" for rec in records.values())
    assert not records["b18"]["flagged"] and "same weeks a year earlier" in records["b18"]["explanation"]
    r = runner.invoke(app, ["meters", "score", "-w", str(ws), "--since", "2018-13-01"])
    assert r.exit_code == 2 and r.output.startswith("error:") and "--since must be a date" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1

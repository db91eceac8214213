"""Miner catalogue and the seized-equipment calculator."""

import csv

import pytest

from minewatch.errors import UsageError
from minewatch.power.equipment import CATALOGUE, estimate_fleet, load_catalogue, units_for_kw


def test_every_catalogue_row_has_a_source_and_sane_power():
    with open(CATALOGUE, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {"antminer_s9", "antminer_s19", "antminer_s21", "gpu_rig_8"} <= {r["model_id"] for r in rows}
    for r in rows:
        assert r["source"].strip(), r["model_id"]
        assert float(r["power_w_min"]) <= float(r["power_w"]) <= float(r["power_w_max"])


def test_s9_ranges_from_the_issue():
    cat = load_catalogue()
    assert 1320 <= cat["antminer_s9"].power_w <= 1400 and cat["antminer_s9"].hashrate == 13.5
    assert 2800 <= cat["antminer_s19"].power_w <= 3250
    assert cat["antminer_s21"].power_w == pytest.approx(3500)
    assert 1000 <= cat["gpu_rig_8"].power_w <= 2000
    assert cat["antminer_s9"].watts_per_hash_unit == pytest.approx(98, abs=1)  # J/TH


def test_seized_s9_fleet_is_80_mw_and_700_gwh():
    est = estimate_fleet([("antminer_s9", 60580)])
    assert est.power_mw == pytest.approx(80.1, abs=0.1)
    assert est.energy_gwh_year == pytest.approx(702, abs=1)
    assert est.lines[0].hashrate == pytest.approx(60580 * 13.5)
    assert any("8760" in a for a in est.assumptions())


def test_mixed_fleet_uptime_and_pue():
    est = estimate_fleet([("antminer_s9", 60580), ("gpu_rig_8", 57500)], uptime=0.5, pue=1.1)
    assert est.power_mw == pytest.approx((60580 * 1323 + 57500 * 1500) * 1.1 / 1e6)
    assert est.energy_gwh_year == pytest.approx(est.power_mw * 8760 * 0.5 / 1000)


def test_bad_calculator_input():
    with pytest.raises(UsageError):
        estimate_fleet([("antminer_s99", 1)])
    with pytest.raises(UsageError):
        estimate_fleet([("antminer_s9", 1)], uptime=0)
    with pytest.raises(UsageError):
        estimate_fleet([("antminer_s9", -3)])


def test_units_for_kw():
    assert units_for_kw(41) == {"antminer_s9": 31, "antminer_s19": 13, "antminer_s21": 12, "gpu_rig_8": 27}
    assert units_for_kw(0.3) == {}

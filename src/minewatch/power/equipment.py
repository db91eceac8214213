"""Miner hardware catalogue (intel/data/miner_hardware.csv) and the seized-equipment
calculator: power, energy a year and hashrate of N units, with the assumptions stated."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from minewatch.errors import UsageError

CATALOGUE = Path(__file__).resolve().parent.parent / "intel" / "data" / "miner_hardware.csv"
HOURS_PER_YEAR = 8760  # 365 days; a leap year adds 0.27 %

# models named in verdicts ("about 30 S9-class miners"), most common kinds first
VERDICT_MODELS = ("antminer_s9", "antminer_s19", "antminer_s21", "gpu_rig_8")


@dataclass(frozen=True)
class MinerModel:
    model_id: str
    name: str
    maker: str
    algorithm: str
    coin: str
    hashrate: float
    hashrate_unit: str
    power_w: float
    power_w_min: float
    power_w_max: float
    release_year: int
    source: str
    notes: str

    @property
    def power_kw(self) -> float:
        return self.power_w / 1000.0

    @property
    def watts_per_hash_unit(self) -> float:
        """Power-to-hash, e.g. J/TH for SHA-256 machines (W per TH/s)."""
        return self.power_w / self.hashrate


@lru_cache(maxsize=4)
def load_catalogue(path: str | Path = CATALOGUE) -> dict[str, MinerModel]:
    out: dict[str, MinerModel] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out[row["model_id"]] = MinerModel(
                model_id=row["model_id"], name=row["name"], maker=row["maker"],
                algorithm=row["algorithm"], coin=row["coin"], hashrate=float(row["hashrate"]),
                hashrate_unit=row["hashrate_unit"], power_w=float(row["power_w"]),
                power_w_min=float(row["power_w_min"]), power_w_max=float(row["power_w_max"]),
                release_year=int(row["release_year"]), source=row["source"], notes=row["notes"] or "",
            )
    return out


def get_model(model_id: str) -> MinerModel:
    cat = load_catalogue()
    if model_id not in cat:
        raise UsageError(f"unknown miner model {model_id!r}; known: {', '.join(sorted(cat))}")
    return cat[model_id]


@dataclass
class FleetLine:
    model: MinerModel
    count: int
    power_mw: float
    power_mw_low: float
    power_mw_high: float
    energy_gwh_year: float
    hashrate: float  # in the model's hashrate unit


@dataclass
class FleetEstimate:
    lines: list[FleetLine]
    uptime: float
    pue: float

    @property
    def power_mw(self) -> float:
        return sum(line.power_mw for line in self.lines)

    @property
    def energy_gwh_year(self) -> float:
        return sum(line.energy_gwh_year for line in self.lines)

    def assumptions(self) -> list[str]:
        return [
            "power per unit = the maker's nameplate wall power (catalogue power_w); "
            "low/high from the catalogue range",
            f"running {self.uptime:.0%} of the {HOURS_PER_YEAR} hours of a 365-day year",
            f"facility overhead (cooling, transformers) factor PUE = {self.pue:g}"
            + (" (none counted)" if self.pue == 1 else ""),
            "no overclocking or underclocking; hashrate at the maker's nominal figure",
        ]


def estimate_fleet(counts: list[tuple[str, int]], uptime: float = 1.0, pue: float = 1.0) -> FleetEstimate:
    """Power (MW), energy (GWh/yr) and hashrate of seized or suspected equipment."""
    if not 0 < uptime <= 1:
        raise UsageError(f"uptime must be in (0, 1], got {uptime}")
    if pue < 1:
        raise UsageError(f"PUE must be >= 1, got {pue}")
    lines = []
    for model_id, count in counts:
        if count < 0:
            raise UsageError(f"count for {model_id} must be >= 0, got {count}")
        m = get_model(model_id)
        mw = count * m.power_w * pue / 1e6
        lines.append(FleetLine(
            model=m, count=count, power_mw=mw,
            power_mw_low=count * m.power_w_min * pue / 1e6,
            power_mw_high=count * m.power_w_max * pue / 1e6,
            energy_gwh_year=mw * HOURS_PER_YEAR * uptime / 1000.0,
            hashrate=count * m.hashrate,
        ))
    return FleetEstimate(lines, uptime, pue)


def units_for_kw(kw: float, model_ids: tuple[str, ...] = VERDICT_MODELS) -> dict[str, int]:
    """How many units of each model draw about `kw` (only models of which >= 1 fits)."""
    cat = load_catalogue()
    out = {}
    for mid in model_ids:
        n = int(round(kw / cat[mid].power_kw))
        if n >= 1:
            out[mid] = n
    return out

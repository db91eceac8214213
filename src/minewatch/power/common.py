"""The common mode of a city's buildings: what weather, season and term time do to
every building's base load at once, so that a step the other buildings do not share
stands out (a miner block is one building's own step).

common_mode(base) is the per-day median, over the meters, of each meter's daily base
divided by its own typical base (its median): 1.0 on an ordinary day, 1.1 when the
typical building runs 10 % above its usual base. It is computed from one block of
meters (enough for a median) or once over a workspace in a first pass and passed in.
residual_base(base, common) removes it from each meter's base, scaled to the meter's
own level. A meter that does not follow the city (a server room, a lab) would only
get the city's wander added: the model keeps, per meter, whichever of the raw and the
residual base wanders less (see model.best_steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from minewatch.power.robust import nanmedian_rows, nanmedian_windows

MIN_METERS = 12  # fewer meters with a base on a day: no common mode that day (NaN)
SAMPLE = 4000  # meters a block's common mode is taken from, at most


@dataclass(frozen=True)
class CommonMode:
    """A common-mode series; values[0] is epoch day `day0`."""

    day0: int
    values: np.ndarray

    def on(self, day0: int, days: int) -> np.ndarray:
        """The series on days day0 .. day0 + days - 1 (NaN outside it)."""
        out = np.full(days, np.nan)
        a, b = max(day0, self.day0), min(day0 + days, self.day0 + len(self.values))
        if b > a:
            out[a - day0 : b - day0] = self.values[a - self.day0 : b - self.day0]
        return out


def meter_levels(base: np.ndarray) -> np.ndarray:
    """Each meter's typical base (median over its days with readings)."""
    return nanmedian_rows(base)


def common_mode(base: np.ndarray, min_meters: int = MIN_METERS) -> np.ndarray | None:
    """(days,) median of base / level over the meters with a positive level (at most
    SAMPLE of them, evenly spread: the median of a few thousand is as good); NaN on
    days with fewer than `min_meters` of them; None when no day has enough."""
    if base.shape[0] < min_meters:
        return None
    if base.shape[0] > SAMPLE:
        base = base[:: -(-base.shape[0] // SAMPLE)]
    level = meter_levels(base)
    ok = np.isfinite(level) & (level > 0)
    if ok.sum() < min_meters:
        return None
    norm = (base[ok] / level[ok, None]).T  # days x meters
    c = nanmedian_rows(norm)
    c[np.sum(~np.isnan(norm), axis=1) < min_meters] = np.nan
    return None if np.all(np.isnan(c)) else c


def residual_base(base: np.ndarray, common: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
    """base minus each meter's level times the common mode's departure from 1 (days
    without a common mode are left as they are)."""
    dev = np.nan_to_num(common - 1.0, nan=0.0)
    levels = meter_levels(base) if levels is None else levels
    return base - levels[:, None] * dev[None, :]


def common_reach(common: np.ndarray, w: int) -> float:
    """The largest change of the common mode between adjacent w-day medians (a share of
    the level): how far it can move any meter's step, per kW of that meter's level."""
    if w < 1 or len(common) < 2 * w:
        return 0.0
    med = nanmedian_windows(np.asarray(common, dtype=np.float64)[None, :], w)[0]
    d = np.abs(med[w:] - med[:-w])
    return float(np.nanmax(d)) if np.any(np.isfinite(d)) else 0.0

"""Mining = a persistent, abrupt, flat step up in a meter's base load.

On the daily series (features.DailyMatrix):
1. candidate step: for every split day k, median base over the W days after minus the
   W days before (two full weeks, so the weekly rhythm cancels); the best split per
   meter, scaled by the meter's own day-to-day noise, is `z`.
2. tests at that split, on up to `SEG` days either side:
   - flat: the daily mean, the night mean, the working-hours mean, weekdays and
     weekends all rose by about the base step (miners add the same kW every hour);
     occupancy, new office equipment and cooling raise the day more than the night;
   - abrupt: most of the step happens within a few days (heating/cooling ramps);
   - persistent: base stays up until the end of the data (seasonal loads return);
   - new: the base never stood that high before the split (end of a holiday,
     renovation or lockdown returns to an earlier level);
   - flat-by-nature buildings (labs, server rooms) pass none of this unless they step.
3. score = noise-scaled step damped by each failed test; flagged above a threshold.
Everything is vectorised over meters except the tests, which run on candidates only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from minewatch.power.features import DailyMatrix

WINDOW = 14  # days either side of a candidate split
SEG = 28  # days either side used by the tests
LOOKBACK = 56  # days before the pre window searched for an earlier, equal level
MIN_DAYS = 21  # fewer valid days than this: not scored
CANDIDATE_Z = 4.0  # meters below this step strength skip the tests
FLAG_SCORE = 0.5
# below this z even a step passing every test scores under FLAG_SCORE: skip the tests
TESTED_Z = CANDIDATE_Z - 3.0 * float(np.log(1.0 - FLAG_SCORE))
CHUNK = 20_000  # meters per vectorised block (bounds memory)
MIN_STEP_KW = 0.25
STEP_ESTIMATE = "step"  # which measured step is reported as the added kW  # below this a step is within meter rounding


@dataclass
class Verdict:
    meter: object
    flagged: bool
    score: float
    onset_day: int | None  # epoch day
    estimated_kw: float
    z: float = 0.0
    tests: dict = field(default_factory=dict)  # test name -> measured value
    failed: list = field(default_factory=list)  # names of failed tests
    reason: str = ""  # why not scored, if so


def _nanmedian_windows(x: np.ndarray, w: int) -> np.ndarray:
    """Median of every run of w consecutive days (rows independent), NaNs skipped.
    Sorting puts NaNs last, so the median sits at the middle of the valid count."""
    s = np.sort(sliding_window_view(x, w, axis=-1), axis=-1)
    n = np.sum(~np.isnan(s), axis=-1)
    lo = np.take_along_axis(s, np.maximum((n - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(s, np.maximum(n // 2, 0)[..., None], axis=-1)[..., 0]
    return np.where(n > 0, (lo + hi) / 2, np.nan)


def noise_scale(base: np.ndarray) -> np.ndarray:
    """Robust day-to-day noise of the base load per meter (kW); one step barely moves it."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = np.abs(np.diff(base, axis=1))
        mad = np.nanmedian(d, axis=1) * 1.4826 / np.sqrt(2)
        level = np.nanmedian(base, axis=1)
    return np.fmax(mad, np.fmax(0.01 * level, 0.05))


def best_steps(base: np.ndarray, window: int = WINDOW) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, step_kw, z) of the strongest upward step per meter; k=-1 if none."""
    m, d = base.shape
    k_out = np.full(m, -1, dtype=np.int64)
    step_out = np.zeros(m)
    z_out = np.zeros(m)
    w = min(window, d // 3)
    if w < 5:
        return k_out, step_out, z_out
    sigma = noise_scale(base)
    for lo in range(0, m, CHUNK):
        hi = min(m, lo + CHUNK)
        med = _nanmedian_windows(base[lo:hi], w)  # med[:, j] = median(base[j:j+w])
        valid = sliding_window_view(~np.isnan(base[lo:hi]), w, axis=1).sum(axis=2)
        med[valid < (w + 1) // 2] = np.nan  # a window needs half its days
        steps = med[:, w:] - med[:, : med.shape[1] - w]  # split k = j + w
        # a median of w noisy days has sd ~ 1.25 sigma / sqrt(w)
        z = steps / (sigma[lo:hi, None] * 1.25 * np.sqrt(2.0 / w))
        z = np.where(np.isnan(z), -np.inf, z)
        j = np.argmax(z, axis=1)
        rows = np.arange(hi - lo)
        k_out[lo:hi] = j + w
        step_out[lo:hi] = steps[rows, j]
        z_out[lo:hi] = z[rows, j]
    bad = ~np.isfinite(z_out)
    k_out[bad], step_out[bad], z_out[bad] = -1, 0.0, 0.0
    return k_out, step_out, z_out


def _med(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(np.median(x)) if len(x) else float("nan")


def refine_onset(base: np.ndarray, k: int, pre: float, step: float, window: int) -> int:
    """First day near k from which the base stays above the halfway level for 3 of 4 days."""
    half = pre + step / 2
    above = np.where(np.isnan(base), False, base > half)
    for j in range(max(1, k - window), min(len(base) - 1, k + window)):
        if above[j] and above[j : j + 4].sum() >= min(3, len(base) - j):
            return j
    return k


def _noise1(x: np.ndarray) -> float:
    """Robust day-to-day noise of one series, NaNs skipped."""
    x = x[~np.isnan(x)]
    if len(x) < 3:
        return float("inf")
    return float(np.median(np.abs(np.diff(x))) * 1.4826 / np.sqrt(2)) + 1e-9


def _max_fortnight(x: np.ndarray, level: float, step: float, up: bool, w: int = 14) -> float:
    """Largest rise (up) or fall (not up) of a 14-day median step within x, relative to
    `level` (up) or as a step (down), in units of `step`; 0 when x is too short."""
    if np.sum(~np.isnan(x)) < 2 * w:
        return 0.0
    med = _nanmedian_windows(x[None, :], w)[0]
    if up:
        return float((np.nanmax(med) - level) / step) if np.any(~np.isnan(med)) else 0.0
    falls = med[:-w] - med[w:]
    return float(np.nanmax(falls) / step) if np.any(~np.isnan(falls)) else 0.0


def step_tests(row: dict, k: int) -> dict:
    """Measurements at split k of one meter's daily series `row` (see module doc).

    Each `flat_*` value is the rise of that statistic minus the base step, in units
    of its own uncertainty (0 = exactly flat; > 0 = rose more than the base, as with
    occupancy); `abrupt` the same for the rise over the 4 days around the split;
    ratios are kept beside them for the explanation."""
    b = row["base"]
    weekend = row["weekend"]
    d = len(b)
    lo, hi = max(0, k - SEG), min(d, k + SEG)
    pre_b, post_b = _med(b[lo:k]), _med(b[k:hi])
    step = post_b - pre_b
    # the size: closest fortnights either side (less drift than the full segments)
    near = _med(b[k : k + WINDOW]) - _med(b[max(0, k - WINDOW) : k])
    t: dict = {"pre_base": pre_b, "step": step, "step_near": near}
    if not step > 0:
        return t
    n_pre = max(1, int(np.sum(~np.isnan(b[lo:k]))))
    n_post = max(1, int(np.sum(~np.isnan(b[k:hi]))))
    sd_base = 1.25 * _noise1(b[lo:hi]) * np.sqrt(1 / n_pre + 1 / n_post)

    def deviation(name: str, series: np.ndarray, mask: np.ndarray | None = None) -> None:
        s = series if mask is None else np.where(mask, series, np.nan)
        rise = _med(s[k:hi]) - _med(s[lo:k])
        scale = 1.25 * _noise1(s[lo:hi]) * np.sqrt(1 / max(1, n_pre // 3) + 1 / max(1, n_post // 3))
        t[f"ratio_{name}"] = rise / step
        t[f"flat_{name}"] = (rise - step) / np.hypot(scale, sd_base)

    t["pre_mean"] = _med(row["mean"][lo:k])
    deviation("mean", row["mean"])
    deviation("night", row["night"])
    deviation("work", row["work"], ~weekend)
    deviation("weekend", row["mean"], weekend)
    # abrupt: the step seen with 4-day medians right at the split, vs the full step
    jump = _med(b[k : k + 4]) - _med(b[max(0, k - 4) : k])
    t["ratio_abrupt"] = jump / step
    t["abrupt"] = (jump - step) / (1.25 * _noise1(b[lo:hi]) * np.sqrt(0.5))
    # persistent: share of later days above the halfway level
    later = b[k:]
    later = later[~np.isnan(later)]
    t["persist"] = float(np.mean(later > pre_b + step / 2)) if len(later) else 0.0
    # a dip, not a rise: some fortnight in the LOOKBACK days before the pre window
    # already stood at the new level (end of a holiday, a closure, a lockdown)
    early = b[max(0, k - WINDOW - LOOKBACK) : max(0, k - WINDOW)]
    t["earlier"] = _max_fortnight(early, pre_b, step, up=True)
    # came and went: a later abrupt fall of most of the step (temporary equipment,
    # a load that switches seasonally); from just after the post window onwards
    t["ended"] = _max_fortnight(b[k:], post_b, step, up=False, w=28)
    t["pre_days"] = float(n_pre)
    t["ratio_peak"] = (_med(row["peak"][k:hi]) - _med(row["peak"][lo:k])) / step
    return t


# The tests. Each returns True when the measurement looks like mining. Ratios are the
# rise of a statistic over the base step; deviations the same in noise units, so a
# noisy building is not failed on a ratio its noise cannot resolve. Day-time, mean,
# weekend and peak may rise LESS than the base (the building's own use fell at the
# same time, e.g. end of term) but not clearly MORE (occupancy, new office equipment,
# cooling): one-sided. The night must carry the whole step: two-sided.
RATIO_HIGH = 1.35
RATIO_NIGHT = (0.7, 1.35)
DEV_OK = 2.0


def _not_more(t: dict, name: str) -> bool:
    return t.get(f"ratio_{name}", np.nan) <= RATIO_HIGH or t.get(f"flat_{name}", np.nan) <= DEV_OK


TESTS = {
    "flat_mean": lambda t: _not_more(t, "mean"),
    "flat_work": lambda t: _not_more(t, "work"),
    "flat_weekend": lambda t: _not_more(t, "weekend"),
    "flat_peak": lambda t: t.get("ratio_peak", np.nan) <= 2.0 or t.get("flat_mean", np.nan) <= DEV_OK,
    "flat_night": lambda t: (RATIO_NIGHT[0] <= t.get("ratio_night", np.nan) <= RATIO_NIGHT[1]
                             or abs(t.get("flat_night", np.nan)) <= DEV_OK),
    "abrupt": lambda t: t.get("ratio_abrupt", 0.0) >= 0.5 or t.get("abrupt", -np.inf) >= -4.0,
    "persist": lambda t: t.get("persist", 0.0) >= 0.75,
    "new_level": lambda t: t.get("earlier", np.inf) <= 0.75,
    "not_ended": lambda t: t.get("ended", np.inf) <= 0.6,
    "enough_days": lambda t: t.get("pre_days", 0.0) >= 10,
}


def score_from(z: float, tests: dict) -> tuple[float, list]:
    """Score in 0..1: step strength, damped by 0.3 for every failed test."""
    if not tests.get("step", 0.0) >= MIN_STEP_KW:
        return 0.0, ["step"]
    failed = [name for name, ok in TESTS.items() if not ok(tests)]
    strength = 1.0 - np.exp(-max(z - CANDIDATE_Z, 0.0) / 3.0)  # 0 at the gate, -> 1
    return float(strength * (0.3 ** len(failed))), failed


def score_meters(dm: DailyMatrix) -> list[Verdict]:
    """One verdict per meter row of the daily matrix."""
    m = len(dm.meters)
    if m == 0:
        return []
    valid = np.sum(~np.isnan(dm.base), axis=1)
    k, step, z = best_steps(dm.base)
    weekend = dm.weekend
    out = []
    for i in range(m):
        v = Verdict(dm.meters[i], False, 0.0, None, 0.0, float(z[i]))
        if valid[i] < MIN_DAYS:
            v.reason = f"only {int(valid[i])} days with readings (need {MIN_DAYS})"
        elif z[i] >= TESTED_Z and step[i] >= MIN_STEP_KW:
            ok = np.flatnonzero(~np.isnan(dm.base[i]))
            first, last = int(ok[0]), int(ok[-1]) + 1  # tests see the meter's own span
            row = {name: getattr(dm, name)[i, first:last]
                   for name in ("base", "mean", "peak", "night", "work")}
            row["weekend"] = weekend[first:last]
            k0 = int(k[i]) - first
            tests = step_tests(row, k0)
            kk = refine_onset(row["base"], k0, tests["pre_base"], tests["step"], WINDOW)
            if kk != k0:
                tests = step_tests(row, kk)
            v.tests = tests
            v.score, v.failed = score_from(float(z[i]), tests)
            v.onset_day = dm.day0 + first + kk
            v.estimated_kw = max(0.0, float(tests.get(STEP_ESTIMATE, 0.0)))
            v.flagged = v.score >= FLAG_SCORE and v.estimated_kw >= MIN_STEP_KW
        out.append(v)
    return out


def utility_rule(dm: DailyMatrix, load_factor: float = 0.7, night_day: float = 0.8,
                 weekend_weekday: float = 0.8) -> np.ndarray:
    """The grid companies' simple rule over the whole period, for comparison:
    high load factor (mean over the 95th percentile of daily peaks, so one spike does
    not decide), night close to day, weekend close to weekday."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lf = np.nanmean(dm.mean, axis=1) / np.nanpercentile(dm.peak, 95, axis=1)
        nd = np.nanmean(dm.night, axis=1) / np.nanmean(dm.work, axis=1)
        wk = dm.weekend
        ww = np.nanmean(dm.mean[:, wk], axis=1) / np.nanmean(dm.mean[:, ~wk], axis=1)
    return (lf >= load_factor) & (nd >= night_day) & (ww >= weekend_weekday)

"""Mining = a persistent, abrupt, flat step up in a meter's load, with restart dips.

Stage 1, vectorised over all meters (features.HourlyBlock.daily_base):
  for every split day k, median daily minimum over the 14 days after minus the 14
  days before; in units of the larger of the day-to-day scatter and the building's
  own wander (the spread of the same statistic over the year's other splits), that is
  `z`. The same is measured on the base less the city's common mode (what weather,
  season and term time do to every building: power/common.py) and, per meter, the one
  that wanders less is kept. The three strongest splits, two windows apart, are kept.
Stage 2, per candidate meter (z high enough that a pass could flag), at each split:
  - onset to the hour: where the week-over-week change of the hourly load peaks;
  - abrupt: the neighbouring weeks changed little (a switch-on, not a weather ramp);
  - flat: the night carried the step and the day (mean, working hours, weekend,
    peak) did not rise clearly more, beyond noise and the building's own wander
    (occupancy, daytime equipment, cooling); one hypothesis, one test;
  - new level: the base had not stood that high just before (return from a dip);
  - not ended: the base did not fall back by most of the step later (a fall far
    larger than the step is the building's own change: the block stood until then);
  - seen long enough: >= 10 days before and >= 14 days after;
  - not seasonal (with a year of the meter's history before the onset): the base did
    not rise by as much (RECUR_MAX of the step) within YOY_WINDOW days of the same date
    a year earlier (heating, a term, a plant started every autumn);
  - reboots: short (1-3 h) dips of about the step's own size after the onset, counted
    at the hours of the day quiet enough to show them, rare (1-8 a month) and far more
    frequent than before the onset (Poisson), are miners restarting: they outweigh one
    failed shape test and add to the strength; a block that in 45 days' worth of
    quiet hours shows no such dip counts as a failed test (real server rooms and HVAC
    seldom drop by exactly their own size). The count is skipped when it cannot
    change the verdict.
Score = strength(z) damped by 0.3 per failed test; flagged at FLAG_SCORE, or at
FLAG_SCORE_YOY where the seasonal test could run (the clean steps that pass every other
test are mostly seasonal ones: with them damped, the flag can be lower); both were
calibrated on the 2017-2018 buildings only (bench/power_eval.py; 2019-2020 held out).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from minewatch.power.common import CommonMode, common_mode, common_reach, meter_levels, residual_base
from minewatch.power.features import DailyMatrix, HourlyBlock
from minewatch.power.robust import nanmedian_rows, nanmedian_windows

WINDOW = 14  # days either side of a candidate split
SEG = 28  # days either side used by the tests
LOOKBACK = 56  # days before the pre window searched for an earlier, equal level
MIN_DAYS = 21  # fewer valid days than this: not scored
CANDIDATE_Z = 3.0  # step strength is 0 at this z and rises towards 1 above it
FLAG_SCORE = 0.79  # calibrated on 2017-2018 only: the lowest score flagging <= 2 % of the clean building-years (0.69), plus a 0.1 margin
REBOOT_BONUS = 3.0  # reboot dips seen with the step count as this much extra z


def _tested_z(flag: float) -> float:
    """Below this z even a step passing every test (with restarts) scores under `flag`."""
    return CANDIDATE_Z - 3.0 * float(np.log(1.0 - flag)) - REBOOT_BONUS


TESTED_Z = _tested_z(FLAG_SCORE)
CHUNK = 20_000  # meters per vectorised block (bounds memory)
TOP_SPLITS = 3  # candidate splits per meter, tested in turn
WANDER_WEIGHT = 1.0  # share of the wander in the step noise
MIN_STEP_KW = 0.25  # below this a step is within meter rounding
MIN_POST_DAYS = 14  # a step must be seen to last two weeks before it is called
MIN_PRE_DAYS = 10  # and to have ten days of readings before it
STEP_ESTIMATE = "step"  # which measured step is reported as the added kW
USE_COMMON = True  # measure steps against the city's common mode too (power/common.py)
COMMON_GAIN = 1.0  # the residual base is used where its step noise is below this share of the raw one's
SHARED_MAX = 0.5  # a step is the meter's own when at most this share of it is the city's (same days)
COMMON_REACH = 0.25  # ... and is computed only where the common mode moves steps by this share of that noise
CONTEXT_DAYS = WINDOW + LOOKBACK  # days before `since` the tests and the noise see (older ones: last year only)
YEAR = 364  # days back to the same week (and weekday) a year earlier
YOY_WINDOW = 28  # days either side of that date searched for last year's step (b6's autumn step moves by up to 4 weeks)
RECUR_MAX = 0.6  # a step up last year, near the same date, of this share of the step: the building's season
FLAG_SCORE_YOY = 0.40  # the flag where last year could be compared: calibrated on the 2018 clean years (2017 as history) as FLAG_SCORE: highest clean score 0.30, plus 0.1


@dataclass(slots=True)
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


def noise_scale(base: np.ndarray) -> np.ndarray:
    """Robust day-to-day noise of the base load per meter (kW); one step barely moves it."""
    mad = nanmedian_rows(np.abs(np.diff(base, axis=1))) * 1.4826 / np.sqrt(2)
    level = nanmedian_rows(base)
    return np.fmax(mad, np.fmax(0.01 * level, 0.05))


def step_profile(base: np.ndarray, window: int = WINDOW) -> tuple[int, np.ndarray, np.ndarray]:
    """(w, steps, z): for every split k = j + w, the median base over the w days after
    minus the w days before, and that step in units of the meter's noise. The noise is
    the larger of the day-to-day scatter and the building's own wander (the robust
    spread of the same statistic over all splits: most splits have no change)."""
    w, steps, scale, _ = _steps_and_scale(base, window)
    return w, steps, steps / scale[:, None]


def _steps_and_scale(base: np.ndarray, window: int, scatter: np.ndarray | None = None
                     ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(w, steps, scale, scatter) of `step_profile`: the steps in kW, each meter's step
    noise and the day-to-day part of it (pass it in to reuse it for a series with the
    same days and scatter)."""
    m, d = base.shape
    w = min(window, d // 3)
    if w < 5:
        return w, np.zeros((m, 0)), np.ones(m), np.ones(m)
    med = nanmedian_windows(base, w, (w + 1) // 2)  # med[:, j] = median(base[j:j+w]), of half its days at least
    steps = med[:, w:] - med[:, : med.shape[1] - w]
    # the splits around the largest step see that step itself: leave them out
    cols = np.arange(steps.shape[1])
    top = np.argmax(np.nan_to_num(steps, nan=-np.inf), axis=1)
    rest = np.where(np.abs(cols[None, :] - top[:, None]) < w, np.nan, steps)
    enough = np.sum(~np.isnan(rest), axis=1) >= 5
    centre = nanmedian_rows(rest)
    wander = 1.4826 * nanmedian_rows(np.abs(rest - centre[:, None]))
    wander = np.where(enough, wander, 0.0)
    if scatter is None:  # a median of w noisy days has sd ~ 1.25 sigma / sqrt(w)
        scatter = noise_scale(base) * 1.25 * np.sqrt(2.0 / w)
    return w, steps, np.fmax(scatter, WANDER_WEIGHT * np.nan_to_num(wander)), scatter


def best_steps(base: np.ndarray, window: int = WINDOW, top: int = TOP_SPLITS,
               common: np.ndarray | None = None, first_split: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(k, step_kw, z), each (meters, top): the strongest upward steps per meter at
    splits at least two windows apart, strongest first; k=-1 where there is none.
    With the city's `common` mode (one value per day), each meter's steps are taken
    from whichever of its base and its base less the common mode has the smaller
    step noise (the 4th value: True where that is the residual); the residual is
    skipped where the common mode moves that meter's steps by little against its own
    step noise (it could not change the verdict). Splits before day `first_split` are
    history: they set the noise but are not candidates."""
    m = base.shape[0]
    k_out = np.full((m, top), -1, dtype=np.int64)
    step_out = np.zeros((m, top))
    z_out = np.zeros((m, top))
    followed = np.zeros(m, dtype=bool)
    if common is not None:
        levels = meter_levels(base)
        reach = levels * common_reach(common, min(window, base.shape[1] // 3))
    for lo in range(0, m, CHUNK):
        hi = min(m, lo + CHUNK)
        w, steps, scale, scatter = _steps_and_scale(base[lo:hi], window)
        if steps.shape[1] == 0:
            continue
        if common is not None:
            rows = np.flatnonzero(reach[lo:hi] >= COMMON_REACH * scale)
            if len(rows):  # (the common mode's day-to-day wiggle is far below a meter's)
                alt = residual_base(base[lo:hi][rows], common, levels[lo:hi][rows])
                _, steps2, scale2, _ = _steps_and_scale(alt, window, scatter[rows])
                use = scale2 < COMMON_GAIN * scale[rows]
                steps[rows[use]], scale[rows[use]] = steps2[use], scale2[use]
                followed[lo + rows[use]] = True
        with np.errstate(invalid="ignore"):
            z = steps / scale[:, None]
        z = np.where(np.isnan(z), -np.inf, z)
        if first_split > w:
            z[:, : min(first_split - w, z.shape[1])] = -np.inf
        rows = np.arange(hi - lo)
        cols = np.arange(z.shape[1])
        for t in range(top):
            j = np.argmax(z, axis=1)
            zj = z[rows, j]
            ok = np.isfinite(zj)
            k_out[lo:hi, t] = np.where(ok, j + w, -1)
            step_out[lo:hi, t] = np.where(ok, steps[rows, j], 0.0)
            z_out[lo:hi, t] = np.where(ok, zj, 0.0)
            z[np.abs(cols[None, :] - j[:, None]) < 2 * w] = -np.inf
    return k_out, step_out, z_out, followed


def _median(x: np.ndarray) -> float:
    """Median of a NaN-free 1-d array (sort-based: np.median's overhead dominates here)."""
    n = len(x)
    if n == 0:
        return float("nan")
    s = np.sort(x)
    return float(s[(n - 1) // 2] + s[n // 2]) / 2


def _med(x: np.ndarray) -> float:
    return _median(x[~np.isnan(x)])


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
    return _median(np.abs(np.diff(x))) * 1.4826 / np.sqrt(2) + 1e-9


def _max_fortnight(x: np.ndarray, level: float, step: float, up: bool, w: int = 14) -> float:
    """Largest rise (up) or fall (not up) of a 14-day median step within x, relative to
    `level` (up) or as a step (down), in units of `step`; 0 when x is too short."""
    if np.sum(~np.isnan(x)) < 2 * w:
        return 0.0
    med = nanmedian_windows(x[None, :], w)[0]
    if up:
        return float((np.nanmax(med) - level) / step) if np.any(~np.isnan(med)) else 0.0
    falls = med[:-w] - med[w:]
    return float(np.nanmax(falls) / step) if np.any(~np.isnan(falls)) else 0.0


ENDED_MAX = 1.5  # a fall this many steps larger (beyond noise) is the building, not the block


def ended_share(after: np.ndarray, level: float, step: float, w: int = 28) -> float:
    """How much of the step (as a share of it) later fell away, from the onset on.

    A block switched off removes its own kW and no more: a fall larger than ENDED_MAX
    steps (room for the block's own drift and throttling) and than the step by DEV_OK
    times the noise of the two medians is the building's own change (a wing closed, a
    season's plant stopped). The
    block stood until then and what follows cannot be told apart, so only the falls
    before that change count. (A fall of about the step's size stays ambiguous: the
    block ending and the building dropping its own base by as much look the same.)"""
    if np.sum(~np.isnan(after)) < 2 * w:
        return 0.0
    med = nanmedian_windows(after[None, :], w)[0]
    falls = med[:-w] - med[w:]  # falls[j]: the w days from j + w on minus the w before
    sd = 1.25 * _noise1(after) * np.sqrt(2.0 / w)
    big = np.flatnonzero((falls > ENDED_MAX * step) & (falls > step + DEV_OK * sd))
    if len(big):
        falls = falls[: max(0, big[0] - w + 1)]  # splits whose windows miss that change
    if not np.any(~np.isnan(falls)):
        return 0.0
    return float(np.nanmax(falls) / step)


def recurrence(b: np.ndarray, k: int, step: float, w: int = WINDOW) -> float:
    """The largest step up of the base `b` (w-day medians either side) at the splits
    within YOY_WINDOW days of day k - YEAR, as a share of `step`: about 1 when the
    building rose as much at the same time last year (a heating season, a term, a plant
    started every autumn). NaN without a year of history before k, or when fewer than
    half of those splits have readings."""
    lo, hi = k - YEAR - YOY_WINDOW, k - YEAR + YOY_WINDOW + 1  # the splits
    a, z = max(0, lo - w), min(len(b), hi + w - 1)  # the days they need
    if k < YEAR or not step > 0 or z - a < 2 * w + 1:
        return float("nan")
    med = nanmedian_windows(b[None, a:z], w, (w + 1) // 2)[0]  # med[i]: days a+i .. a+i+w-1
    steps = med[w:] - med[:-w]  # steps[i]: the split at day a + w + i
    splits = a + w + np.arange(len(steps))
    steps = steps[(splits >= lo) & (splits < hi)]
    if np.sum(~np.isnan(steps)) < YOY_WINDOW:
        return float("nan")
    return float(np.nanmax(steps) / step)


def _wander(x: np.ndarray, w: int) -> float:
    """The series' own month-to-month wander: robust spread of the change between
    adjacent w-day medians over all splits (NaN when the series is too short)."""
    if np.sum(~np.isnan(x)) < 3 * w:
        return float("nan")
    med = nanmedian_windows(x[None, :], w)[0]
    d = med[w:] - med[:-w]
    d = d[~np.isnan(d)]
    if len(d) < 3:
        return float("nan")
    return 1.4826 * _median(np.abs(d - _median(d)))


def wander_rows(x: np.ndarray, w: int) -> np.ndarray:
    """`_wander` of every row of x at once (for all candidate meters together)."""
    out = np.full(x.shape[0], np.nan)
    if x.shape[1] < 2 * w + 1 or x.shape[0] == 0:
        return out
    med = nanmedian_windows(x, w)
    d = med[:, w:] - med[:, :-w]
    centre = nanmedian_rows(d)
    spread = 1.4826 * nanmedian_rows(np.abs(d - centre[:, None]))
    enough = (np.sum(~np.isnan(x), axis=1) >= 3 * w) & (np.sum(~np.isnan(d), axis=1) >= 3)
    out[enough] = spread[enough]
    return out


def _dip_events(y: np.ndarray, step: float) -> np.ndarray:
    """Start hours of short dips (1-3 h) whose depth is about the step: the load falls
    by 0.4-1.3 x step below BOTH the hour before and the hour after (miners rebooting).
    NaN (missing) hours never make a dip."""
    n = len(y)
    hit = np.zeros(n, dtype=bool)
    top = None  # running max of hours t .. t+dur-1 (NaN propagates: missing never dips)
    for dur in (1, 2, 3):
        if n < dur + 2:
            break
        m = n - dur - 1  # starts t = 1 .. n-dur-1
        top = y[1 : 1 + m] if top is None else np.maximum(top[:m], y[dur : dur + m])
        edge = np.minimum(y[:m], y[dur + 1 : dur + 1 + m])  # NaN if either edge is missing
        depth = edge - top
        with np.errstate(invalid="ignore"):
            ok = (depth >= DIP_DEPTH[0] * step) & (depth <= DIP_DEPTH[1] * step)
        hit[1 : 1 + m] |= ok
    return np.flatnonzero(hit & ~np.r_[False, hit[:-1]])  # one event per run


def _hour_noise(y: np.ndarray) -> float:
    """Robust sd of hour-to-hour changes (NaN when too few)."""
    d = np.diff(y)
    d = d[~np.isnan(d)]
    if len(d) < 48:
        return float("nan")
    nonzero = np.abs(d[d != 0])
    resolution = float(nonzero.min()) if len(nonzero) else 0.0  # rounded meters: MAD can be 0
    return max(1.4826 * _median(np.abs(d - _median(d))), resolution)


def hour_of_day_noise(y: np.ndarray) -> np.ndarray:
    """Robust sd of the hour-to-hour change into each hour of the day (24 values; y
    starts at local midnight). Buildings are quiet at night and busy by day: a restart
    dip that would drown at 10:00 stands out at 03:00."""
    return hour_of_day_noise_rows(y[None, :])[0]


def hour_of_day_noise_rows(y: np.ndarray) -> np.ndarray:
    """`hour_of_day_noise` of every row of y (meters x hours) at once: (meters, 24)."""
    m, n = y.shape[0], y.shape[1] // 24 * 24
    d = np.full((m, n), np.nan)
    d[:, 1:] = np.diff(y[:, :n], axis=1)
    by_hour = d.reshape(m, -1, 24).transpose(0, 2, 1).reshape(m * 24, -1)  # (meter-hour, days)
    centre = nanmedian_rows(by_hour)
    sd = 1.4826 * nanmedian_rows(np.abs(by_hour - centre[:, None]))
    with np.errstate(invalid="ignore"):
        changes = np.where(np.isfinite(d) & (d != 0), np.abs(d), np.inf)
    resolution = np.min(changes, axis=1, initial=np.inf)  # rounded meters: MAD can be 0
    resolution = np.where(np.isfinite(resolution), resolution, 0.0)
    sd = sd.reshape(m, 24)
    return np.where(np.isnan(sd), np.inf, np.fmax(sd, resolution[:, None]))


def dip_noise(noise: np.ndarray) -> np.ndarray:
    """Per hour of the day, the largest hour-to-hour noise a dip starting then (lasting
    up to 3 hours) touches."""
    wrapped = np.concatenate([noise, noise[:3]])
    return np.maximum.reduce([wrapped[j : j + 24] for j in range(4)])


def quiet_hours(noise: np.ndarray, step: float) -> np.ndarray:
    """Hours of the day at which a dip of `step` kW, lasting up to 3 hours, stands
    DIP_SNR times above the hour-to-hour noise of every hour it touches."""
    return step >= DIP_SNR * dip_noise(noise)


def dip_counts(y: np.ndarray, k: int, step: float, quiet: np.ndarray) -> dict:
    """Restart dips of about `step` kW in the hourly series y, before and after day k,
    counted where the day is quiet enough for them to show; rates per 30 days of
    such quiet hours (the restarts fall at any hour, so the rate is the true one)."""
    kh = 24 * k
    ev = _dip_events(y, step)
    ev = ev[quiet[ev % 24]]
    valid_quiet = ~np.isnan(y) & np.tile(quiet, len(y) // 24 + 1)[: len(y)]
    pre_days = max(1.0, np.sum(valid_quiet[:kh]) / 24)
    post_days = max(1.0, np.sum(valid_quiet[kh:]) / 24)
    post, pre = float(np.sum(ev >= kh)), float(np.sum(ev < kh))
    return {"dips_post": post, "dips_pre": pre, "dip_days_post": post_days, "dip_days_pre": pre_days,
            "dip_rate_post": post / post_days * 30, "dip_rate_pre": pre / pre_days * 30}


def _poisson_tail(n: float, mean: float) -> float:
    """P(X >= n) for X ~ Poisson(mean)."""
    term, below = np.exp(-mean), 0.0
    for i in range(int(n)):
        below += term
        term *= mean / (i + 1)
    return max(0.0, 1.0 - below)


def step_tests(row: dict, k: int, dips: bool = True) -> dict:
    """Measurements at split k of one meter's daily series `row` (see module doc), and of
    its hourly series `row["hourly"]` when given (reboot dips, added hourly noise;
    with `dips=False` the dip count, the costliest measurement, is left out).

    Each `flat_*` value is the rise of that statistic minus the base step, in units
    of its own uncertainty (0 = exactly flat; > 0 = rose more than the base, as with
    occupancy); `wander_*` the statistic's own month-to-month wander (kW), which a
    building's use can explain; ratios are kept beside them for the explanation."""
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
    w_seg = min(SEG, max(5, d // 3))

    def deviation(name: str, series: np.ndarray, mask: np.ndarray | None = None) -> None:
        s = series if mask is None else np.where(mask, series, np.nan)
        rise = _med(s[k:hi]) - _med(s[lo:k])
        scale = 1.25 * _noise1(s[lo:hi]) * np.sqrt(1 / max(1, n_pre // 3) + 1 / max(1, n_post // 3))
        t[f"ratio_{name}"] = rise / step
        t[f"flat_{name}"] = (rise - step) / np.hypot(scale, sd_base)
        cache = row.setdefault("_wander", {})
        if name not in cache:  # a property of the series, not of the split
            cache[name] = _wander(s, w_seg)
        t[f"wander_{name}"] = cache[name] / step

    t["pre_mean"] = _med(row["mean"][lo:k])
    deviation("mean", row["mean"])
    deviation("night", row["night"])
    deviation("work", row["work"], ~weekend)
    deviation("weekend", row["mean"], weekend)
    deviation("peak", row["peak"])
    # abrupt: the step seen with 4-day medians right at the split, vs the full step
    before, after = b[:k][~np.isnan(b[:k])], b[k:][~np.isnan(b[k:])]
    jump = _med(after[:4]) - _med(before[-4:])  # 4 days with readings either side
    t["ratio_abrupt"] = jump / step
    t["abrupt"] = (jump - step) / (1.25 * _noise1(b[lo:hi]) * np.sqrt(0.5))
    # persistent: share of later days above the halfway level
    later = b[k:]
    later = later[~np.isnan(later)]
    t["persist"] = float(np.mean(later > pre_b + step / 2)) if len(later) else 0.0
    deviation("base", b)  # wander_base: the step against the base's own wander
    # a dip, not a rise: some fortnight in the LOOKBACK days before the pre window
    # already stood at the new level (end of a holiday, a closure, a lockdown)
    early = b[max(0, k - WINDOW - LOOKBACK) : max(0, k - WINDOW)]
    t["earlier"] = _max_fortnight(early, pre_b, step, up=True)
    # came and went: a later abrupt fall of most of the step (temporary equipment,
    # a load that switches seasonally); from just after the post window onwards
    t["ended"] = ended_share(b[k:], post_b, step)
    t["pre_days"] = float(n_pre)
    past = row.get("_past")
    recurs = recurrence(b, k, step) if past is None else recurrence(np.concatenate([past, b]), k + len(past), step)
    if np.isfinite(recurs):  # only with a year of history: else as without it
        t["recurs"] = recurs
    c = row.get("common")
    if c is not None:  # the share of the step every building took at the same time
        t["shared"] = (_med(c[k:hi]) - _med(c[lo:k])) * row["level"] / step
    # a miner block adds a constant: the day-to-day scatter of the base stays the same;
    # weather-driven loads (heating, cooling) add their own day-to-day scatter
    sd_pre, sd_post = _noise1(b[lo:k]), _noise1(b[k:hi])
    t["added_scatter"] = float(np.sqrt(max(sd_post ** 2 - sd_pre ** 2, 0.0)) / step) if np.isfinite(sd_pre + sd_post) else float("nan")
    t["post_span"] = float(np.sum(~np.isnan(b[k:])))  # days with readings from the onset on
    y = row.get("hourly")
    if y is not None:
        kh = 24 * k
        post_days = max(1.0, np.sum(~np.isnan(y[kh:])) / 24)
        if "_noise_by_hour" not in row:  # a property of the meter, not of the split
            row["_noise_by_hour"] = hour_of_day_noise(y)
        quiet = quiet_hours(row["_noise_by_hour"], step)
        if dips:
            t.update(dip_counts(y, k, step, quiet))
        a, z = 24 * max(0, k - SEG), 24 * min(d, k + SEG)
        n_pre_h, n_post_h = _hour_noise(y[a:kh]), _hour_noise(y[kh:z])
        t["added_noise"] = float(np.sqrt(max(n_post_h ** 2 - n_pre_h ** 2, 0.0)) / step)
        t["dip_snr"] = step / n_pre_h if n_pre_h > 0 else float("inf")
        t["quiet_hours"] = float(np.sum(quiet))
        t["post_days"] = float(post_days)
    return t


# The tests. Each returns True when the measurement looks like mining. Day-time, mean,
# weekend and peak may rise LESS than the base (the building's own use fell at the
# same time, e.g. end of term) but not clearly MORE (occupancy, new office equipment,
# cooling): one-sided. The night must carry the whole step: two-sided. "Clearly" means
# beyond the statistic's noise AND beyond the building's own month-to-month wander.
RATIO_HIGH = 1.35
RATIO_NIGHT = (0.7, 1.35)
DEV_OK = 2.0
WANDER_OK = 3.0  # an excess within this many wanders is the building, not the step
TOL_MAX = 0.65  # at most this much (in steps) is forgiven to noise and wander
DIP_DEPTH = (0.4, 1.3)  # reboot dips: depth as a share of the step
DIPS_MIN, DIP_RATE = 3, (1.0, 8.0)  # reboots seen: >= 3 dips, 1-8 a month (rare events), well above the pre rate
DIP_SNR = 4.0  # step / hour-to-hour noise (at that hour of day) above which reboot dips stand out (5 before round 4: tune 50 % +3 pp, no clean score moved)
QUIET_HOURS_MIN = 4  # hours a day at which dips must be able to show for the reboot test
DIP_RATE_FLOOR, DIP_P = 0.3, 0.01  # pre-onset dip rate assumed at least; significance
MISSING_EXPECTED = 1.5  # dips expected (at the lowest rate: 45 quiet days) before "none came" counts


def _tolerance(t: dict, name: str) -> float:
    """How far (in units of the step) the ratio may stray because of the statistic's
    noise or the building's own wander; capped, so a step too small to show its shape
    cannot pass every shape test by default."""
    r, f = t.get(f"ratio_{name}", np.nan), t.get(f"flat_{name}", np.nan)
    noise = abs((r - 1.0) / f) if f and np.isfinite(f) and f != 0 else 0.0  # 1 sd, in steps
    wander = t.get(f"wander_{name}", np.nan)
    tol = max(DEV_OK * noise, WANDER_OK * (wander if np.isfinite(wander) else 0.0))
    return min(tol, TOL_MAX)


def _not_more(t: dict, name: str, high: float = RATIO_HIGH) -> bool:
    """Rose not clearly more than the base (it may rise less or even fall: the
    building's own use can drop at the same time, as in a lockdown)."""
    return t.get(f"ratio_{name}", np.nan) <= high + _tolerance(t, name)


def _night_ok(t: dict) -> bool:
    r = t.get("ratio_night", np.nan)
    tol = _tolerance(t, "night")
    return RATIO_NIGHT[0] - tol <= r <= RATIO_NIGHT[1] + tol


def _day_ok(t: dict) -> bool:
    """One hypothesis, one test: the day (mean, working hours, weekend, peak) rose clearly
    more than the base, i.e. a daytime load came with or instead of a flat block."""
    return (_not_more(t, "mean") and _not_more(t, "work") and _not_more(t, "weekend")
            and _not_more(t, "peak", 2.0))


def _abrupt_ok(t: dict) -> bool:
    """Switched on, not ramped: with hourly data, the neighbouring weeks changed little
    (less than half the onset week, or within their usual spread); otherwise most of the
    step shows in the 4 days either side."""
    if "ramp" in t and np.isfinite(t["ramp"]):
        return t["ramp"] <= 0.5 or t["ramp_z"] <= 3.0
    return t.get("ratio_abrupt", 0.0) >= 0.5 or t.get("abrupt", -np.inf) >= -4.0


TESTS = {
    "flat_day": _day_ok,
    "flat_night": _night_ok,
    "abrupt": _abrupt_ok,
    "new_level": lambda t: t.get("earlier", np.inf) <= 0.75,
    "not_ended": lambda t: t.get("ended", np.inf) <= 0.6,
    "own_step": lambda t: not t.get("shared", 0.0) > SHARED_MAX,
    "seasonal": lambda t: not t.get("recurs", 0.0) >= RECUR_MAX,
    "enough_days": lambda t: t.get("pre_days", 0.0) >= MIN_PRE_DAYS,
    "seen_long": lambda t: t.get("post_span", 0.0) >= MIN_POST_DAYS,
}


UNFORGIVEN = ("not_ended", "enough_days", "seen_long", "seasonal")  # reboot dips never outweigh these


def reboots(t: dict) -> str:
    """'seen': short dips of about the step's size came with it (miners restarting);
    'missing': the step stands far above the hourly noise, so such dips would show,
    yet in months none did; '' when the hourly data cannot tell."""
    if "dips_post" not in t:
        return ""
    # as many dips after the onset would be rare at the rate seen before it (at least
    # DIP_RATE_FLOOR a month: a few pre-onset days prove little)
    expected = max(t["dip_rate_pre"], DIP_RATE_FLOOR) * t.get("dip_days_post", 0.0) / 30
    if (t["dips_post"] >= DIPS_MIN and DIP_RATE[0] <= t["dip_rate_post"] <= DIP_RATE[1]
            and t.get("quiet_hours", 0.0) >= QUIET_HOURS_MIN
            and _poisson_tail(t["dips_post"], expected) < DIP_P):
        return "seen"
    if _reboots_may_be_missing(t) and t["dip_rate_post"] < 0.5:
        return "missing"
    return ""


def flag_score(tests: dict) -> float:
    """The score that flags a split: FLAG_SCORE_YOY where the step could be compared
    with the same weeks a year earlier (the `seasonal` test ran), else FLAG_SCORE. Each
    is calibrated on the clean tune building-years scored that way."""
    return FLAG_SCORE_YOY if "recurs" in tests else FLAG_SCORE


def score_from(z: float, tests: dict) -> tuple[float, list]:
    """Score in 0..1: step strength, damped by 0.3 for every failed test. Reboot dips
    seen with the step outweigh one failed shape test (not `not_ended`: dips of a
    size are a building's habit too, and a block that went away is not forgiven by
    them); dips missing where they would show count as a failed test."""
    if not tests.get("step", 0.0) >= MIN_STEP_KW:
        return 0.0, ["step"]
    failed = [name for name, ok in TESTS.items() if not ok(tests)]
    rb = reboots(tests)
    if rb == "missing":
        failed.append("reboots")
    forgivable = [f for f in failed if f not in UNFORGIVEN]
    n_failed = len(failed) - (1 if rb == "seen" and forgivable else 0)
    if rb == "seen":
        z += REBOOT_BONUS
    strength = 1.0 - np.exp(-max(z - CANDIDATE_Z, 0.0) / 3.0)  # 0 at the gate, -> 1
    return float(strength * (0.3 ** n_failed)), failed


def week_change(y: np.ndarray, w: int = 168) -> np.ndarray:
    """D[t] = mean of the w hours from t minus mean of the w hours before t (NaN where
    either week is mostly missing). Whole weeks, so the daily and weekly rhythm cancel;
    a block switched on at t0 makes a triangle peaking at D[t0] = its kW."""
    n = len(y)
    ok = ~np.isnan(y)
    cs = np.r_[0.0, np.cumsum(np.where(ok, y, 0.0))]
    cn = np.r_[0, np.cumsum(ok)]
    out = np.full(n, np.nan)
    if n < 2 * w + 1:
        return out
    t = np.arange(w, n - w + 1)
    n_after, n_before = cn[t + w] - cn[t], cn[t] - cn[t - w]
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (cs[t + w] - cs[t]) / n_after - (cs[t] - cs[t - w]) / n_before
    d[(n_after < w // 2) | (n_before < w // 2)] = np.nan
    out[t[t < n]] = d[t < n]
    return out


def onset_hour(dw: np.ndarray, k: int, window: int = WINDOW) -> int | None:
    """Hour near day k where the week-over-week change `dw` peaks (None if no data)."""
    lo, hi = max(0, 24 * (k - window)), min(len(dw), 24 * (k + window))
    seg = dw[lo:hi]
    if hi <= lo or np.all(np.isnan(seg)):
        return None
    return lo + int(np.nanargmax(seg))


def sharpness(dw: np.ndarray, h: int, w: int = 168) -> tuple[float, float]:
    """(ratio, z): the larger week-over-week change one week before or after the onset,
    as a share of the change at the onset, and in units of the series' own spread of
    weekly changes. A switch-on: ~0; a ramp over weeks (weather, season): ~1."""
    at = dw[h]
    sides = [dw[h - w] if h - w >= 0 else np.nan, dw[h + w] if h + w < len(dw) else np.nan]
    side = max((x for x in sides if np.isfinite(x)), default=np.nan)
    v = dw[~np.isnan(dw)]
    spread = 1.4826 * np.median(np.abs(v - np.median(v))) if len(v) > 24 else np.nan
    if not np.isfinite(side) or not at > 0:
        return float("nan"), float("nan")
    return float(side / at), float(side / spread) if spread > 0 else float("inf")


def _test_split(row: dict, k0: int, z: float) -> tuple[dict, int, float, list]:
    dw = row.get("week_change")
    h = onset_hour(dw, k0) if dw is not None else None
    if h is not None:
        kk = h // 24 + (1 if h % 24 >= 12 else 0)  # the day most of the step falls in
    else:
        b = row["base"]
        pre = _med(b[max(0, k0 - SEG) : k0])
        kk = refine_onset(b, k0, pre, _med(b[k0 : k0 + SEG]) - pre, WINDOW)
    hourly = row.get("hourly") is not None
    tests = step_tests(row, kk, dips=False)
    if h is not None:
        tests["onset_hour"] = float(h % 24)
        tests["ramp"], tests["ramp_z"] = sharpness(dw, h)
    score, failed = score_from(z, tests)
    if hourly and _dips_can_matter(z, tests, score):
        quiet = quiet_hours(row["_noise_by_hour"], tests["step"])
        tests.update(dip_counts(row["hourly"], kk, tests["step"], quiet))
        score, failed = score_from(z, tests)
    return tests, kk, score, failed


def _dips_can_matter(z: float, tests: dict, score: float) -> bool:
    """Whether counting restart dips (the costliest test) can change this verdict: a
    flag can be lost only to 'missing', a non-flag won only with 'seen'."""
    if score >= flag_score(tests):
        return _reboots_may_be_missing(tests)
    return _best_with_reboots(z, tests) >= flag_score(tests)


def _reboots_may_be_missing(tests: dict) -> bool:
    """Whether `reboots` could say 'missing': at the lowest plausible restart rate
    (DIP_RATE[0] a month) the quiet hours since the onset should hold MISSING_EXPECTED
    dips (45 days of quiet hours, as the 45 days of the original rule)."""
    quiet_days = tests.get("post_days", 0.0) * tests.get("quiet_hours", 0.0) / 24
    return quiet_days * DIP_RATE[0] / 30 >= MISSING_EXPECTED


def _best_with_reboots(z: float, tests: dict) -> float:
    """The score this split would get if restart dips were seen with it: when even that
    is under FLAG_SCORE, counting them cannot change the verdict and is skipped."""
    seen = dict(tests, dips_post=float(DIPS_MIN), dips_pre=0.0, dip_rate_post=DIP_RATE[0],
                dip_rate_pre=0.0, quiet_hours=24.0)
    return score_from(z, seen)[0]


def score_meters(data: HourlyBlock | DailyMatrix, common: CommonMode | None = None,
                 since: int | None = None) -> list[Verdict]:
    """One verdict per meter of an HourlyBlock (hourly tests included) or a DailyMatrix.
    With `since` (an epoch day), only onsets from that day on are scored, and the
    steps, their noise and the tests see the days from CONTEXT_DAYS before it; older
    readings serve only to compare a step with the same weeks a year earlier (the
    `seasonal` test). Without it, every day is scored and seen (the year-over-year test
    runs wherever a meter has a year of readings before a step).

    Stage 1, vectorised over all meters: the daily base and its strongest steps, each
    meter's base also taken less the city's common mode (`common`, computed once over
    the workspace; else from this block when it holds at least common.MIN_METERS
    meters; else none: a lone meter is scored on its own base).
    Stage 2, per candidate meter only: daily features and the tests."""
    full = data.base if isinstance(data, DailyMatrix) else data.daily_base()
    m = len(data.meters)
    if m == 0:
        return []
    start = 0 if since is None else min(full.shape[1], max(0, int(since) - data.day0 - CONTEXT_DAYS))
    data, base = (_from_day(data, start), full[:, start:]) if start else (data, full)
    first_full = np.argmax(~np.isnan(full), axis=1)  # each meter's first day with readings
    valid = np.sum(~np.isnan(base), axis=1)
    city = None
    if USE_COMMON:
        city = common.on(data.day0, base.shape[1]) if common is not None else common_mode(base)
    first_split = 0 if since is None else max(0, int(since) - data.day0)
    k, step, z, followed = best_steps(base, common=city, first_split=first_split)
    levels = meter_levels(base) if city is not None else None
    # splits with a year of the meter's history before them may flag at FLAG_SCORE_YOY
    gate = np.where(k + start - first_full[:, None] >= YEAR, _tested_z(min(FLAG_SCORE, FLAG_SCORE_YOY)), _tested_z(FLAG_SCORE))
    tested = (k >= 0) & (z >= gate) & (step >= MIN_STEP_KW) & (valid >= MIN_DAYS)[:, None]
    cand = np.flatnonzero(tested.any(axis=1))
    out = [Verdict(meter, False, 0.0, None, 0.0, zi) for meter, zi in zip(data.meters.tolist(), z[:, 0].tolist())]
    for i in np.flatnonzero(valid < MIN_DAYS):
        out[i].reason = f"only {int(valid[i])} days with readings (need {MIN_DAYS})"
    if len(cand) == 0:
        return out
    if isinstance(data, DailyMatrix):
        dm, hourly, rows = data, None, cand
    else:  # full daily features for the candidates only
        sub = data.rows(cand)
        dm, hourly, rows = sub.daily(), sub.kw, np.arange(len(cand))
    weekend = dm.weekend
    wanders: dict[int, dict] = {int(i): {} for i in cand}
    # the series' own wander, for all candidates in one go
    w_seg = min(SEG, max(5, dm.base.shape[1] // 3))
    series = {"base": dm.base, "mean": dm.mean, "night": dm.night, "peak": dm.peak,
              "work": np.where(~weekend, dm.work, np.nan), "weekend": np.where(weekend, dm.mean, np.nan)}
    for name, x in series.items():
        for i, r, val in zip(cand, rows, wander_rows(x[rows], w_seg)):
            wanders[int(i)][name] = float(val)
    if hourly is not None:  # hour-of-day noise (for the restart dips), all candidates at once
        noise_by_hour = hour_of_day_noise_rows(hourly[rows].astype(np.float64))
    for i, r in zip(cand, rows):
        v = out[i]
        todo = np.flatnonzero(tested[i])
        if len(todo):
            ok = np.flatnonzero(~np.isnan(dm.base[r]))
            first, last = int(ok[0]), int(ok[-1]) + 1  # tests see the meter's own span
            row = {name: getattr(dm, name)[r, first:last]
                   for name in ("base", "mean", "peak", "night", "work")}
            row["weekend"] = weekend[first:last]
            if city is not None:
                row["common"], row["level"] = city[first:last], float(levels[i])
            row["_wander"] = wanders[int(i)]
            if start + first > first_full[i]:  # older readings: for the year-over-year test only
                row["_past"] = full[i, first_full[i] : start + first]
            if hourly is not None:
                row["_noise_by_hour"] = noise_by_hour[r]
                row["hourly"] = hourly[r, 24 * first : 24 * last].astype(np.float64)
                row["week_change"] = week_change(row["hourly"])
            best = None
            for j in todo:  # strongest split first; stop at the first that flags
                tests, kk, score, failed = _test_split(row, int(k[i, j]) - first, float(z[i, j]))
                if first + kk < first_split:  # the onset fell in the history: not scored
                    continue
                flags = score >= flag_score(tests)
                if best is None or (flags, score) > (best[5], best[2]):
                    best = (tests, kk, score, failed, float(z[i, j]), flags)
                if flags:
                    break
            if best is None:
                continue
            tests, kk, v.score, v.failed, v.z, _ = best
            tests["common_mode"] = float(followed[i])  # z measured against the city's common mode
            v.tests = tests
            v.onset_day = dm.day0 + first + kk
            v.estimated_kw = max(0.0, float(tests.get(STEP_ESTIMATE, 0.0)))
            v.flagged = v.score >= flag_score(tests) and v.estimated_kw >= MIN_STEP_KW
    return out


def _from_day(data: HourlyBlock | DailyMatrix, start: int) -> HourlyBlock | DailyMatrix:
    """The block from its day `start` on."""
    if isinstance(data, DailyMatrix):
        cut = {f: getattr(data, f)[:, start:] for f in ("base", "mean", "peak", "night", "work", "n")}
        return DailyMatrix(data.meters, data.day0 + start, **cut)
    return HourlyBlock(data.meters, data.day0 + start, data.kw[:, 24 * start :])


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

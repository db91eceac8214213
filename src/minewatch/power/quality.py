"""Bad-input checks on meter readings, counted per meter. Nothing is fixed silently:
every reading that is dropped, nulled or converted is counted under a named issue,
and `notes` says in words what was done."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np

ABSURD_KW = 1_000_000.0  # 1 GW behind one meter is not a reading
SPIKE_FACTOR = 50.0  # a reading 50x the meter's median is a glitch
UNIT_FACTOR = 500.0  # a meter whose median is 500x its peers' is likely in Wh, not kWh
CUMULATIVE_RISING = 0.9  # share of rising steps above which a series is a register

ISSUES = (
    "bad_timestamp",  # timestamp text that does not parse
    "bad_value",  # value text that does not parse as a number
    "duplicate_identical",  # same meter and time again, same value: dropped
    "duplicate_conflicting",  # same meter and time again, other value: dropped, first kept
    "dst_clock_change",  # duplicates/gaps within 3 h of a daylight-saving change
    "missing_intervals",  # gaps in the series, in intervals
    "zero_as_missing",  # exact zeros: treated as missing (meters report 0 for no data)
    "negative",  # negative power: nulled
    "absurd",  # above 1 GW or 50x the meter's median: nulled
    "register_reset",  # a cumulative register that went backwards: nulled
    "in_other_file",  # same meter and time already ingested from another file, same value: averaged
    "conflicts_other_file",  # same meter and time from another file, another value: averaged, said
)


@dataclass
class MeterQuality:
    meter_id: str
    rows: int = 0
    kept: int = 0  # readings with a usable value after the checks
    interval_s: int = 0
    counts: dict = field(default_factory=lambda: dict.fromkeys(ISSUES, 0))
    cumulative_register: bool = False  # converted by differencing (said in notes)
    suspect_unit: str = ""  # e.g. "Wh?": flagged, not changed
    notes: list = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in self.counts.items() if v]
        parts += self.notes
        return "; ".join(parts) if parts else "clean"


def dst_transitions(tz: str, t0_us: int, t1_us: int) -> np.ndarray:
    """UTC instants (epoch us) where the zone's offset changes between t0 and t1."""
    zone = ZoneInfo(tz)
    start = datetime.fromtimestamp(t0_us / 1e6, timezone.utc).replace(minute=0, second=0, microsecond=0)
    end = datetime.fromtimestamp(t1_us / 1e6, timezone.utc)
    out, t = [], start
    prev = t.astimezone(zone).utcoffset()
    while t <= end + timedelta(days=1):
        t6 = t + timedelta(hours=6)
        off = t6.astimezone(zone).utcoffset()
        if off != prev:  # find the hour inside these 6
            for h in range(1, 7):
                th = t + timedelta(hours=h)
                if th.astimezone(zone).utcoffset() != prev:
                    out.append(int(th.timestamp() * 1e6))
                    break
            prev = off
        t = t6
    return np.array(out, dtype=np.int64)


def group_starts(codes: np.ndarray) -> np.ndarray:
    """Start index of each run of equal codes (codes sorted)."""
    if len(codes) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])


def group_median(codes: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of `values` per group code (NaN where a group has none)."""
    ok = ~np.isnan(values)
    c, v = codes[ok], values[ok]
    order = np.lexsort((v, c))
    c, v = c[order], v[order]
    out = np.full(n_groups, np.nan)
    if len(c) == 0:
        return out
    starts = group_starts(c)
    ends = np.r_[starts[1:], len(c)]
    lo = v[starts + (ends - starts - 1) // 2]
    hi = v[starts + (ends - starts) // 2]
    out[c[starts]] = (lo + hi) / 2
    return out

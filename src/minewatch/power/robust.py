"""Robust statistics over many short rows at once (sort-based: several times faster
than np.nanmedian on the shapes the power model uses)."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def nanmedian_rows(x: np.ndarray) -> np.ndarray:
    """Median of every row, NaNs skipped (NaN for an all-NaN row). Sort-based: several
    times faster than np.nanmedian on many short rows."""
    s = np.sort(x, axis=1)
    n = np.sum(~np.isnan(x), axis=1)
    return np.where(n > 0, _middle(s, n), np.nan)


def nanmedian_windows(x: np.ndarray, w: int, min_count: int = 1) -> np.ndarray:
    """Median of every run of w consecutive days (rows independent), NaNs skipped; NaN
    where fewer than `min_count` of the w are valid. Sorting puts NaNs last, so the
    median sits at the middle of the valid count."""
    s = np.sort(sliding_window_view(x, w, axis=-1), axis=-1)
    n = np.sum(~np.isnan(s), axis=-1)
    return np.where(n >= max(1, min_count), _middle(s, n), np.nan)


def _middle(s: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The median along the last axis of `s`, sorted with its NaNs last, of the first `n`
    values of each row."""
    lo = np.take_along_axis(s, np.maximum((n - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(s, np.maximum(n // 2, 0)[..., None], axis=-1)[..., 0]
    return (lo + hi) / 2

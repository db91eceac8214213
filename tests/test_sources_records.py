"""Shared helpers of the record readers: time parsing, flags, line bookkeeping."""

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from minewatch.schema.flows import TS
from minewatch.sources._records import (
    SourceStats, any_time_to_us, lines_of_rows, tcp_flags_value, to_int_column, to_time_column,
)


def test_scalar_times():
    assert any_time_to_us("1601998366.785668") == 1601998366785668
    assert any_time_to_us(22.335172) == 22335172
    assert any_time_to_us("2021-06-06T15:59:46.457984+0200") == any_time_to_us("2021-06-06T13:59:46.457984Z")
    with pytest.raises(ValueError):
        any_time_to_us("nan")


def test_time_column_mixed_zones_and_garbage():
    column = pa.array(["2024-03-01T10:00:00+08:00", "2024-03-01 02:00:01", "2024/03/01 02:00:02.5", "soon", None])
    values, bad = to_time_column(column)
    assert values.type == TS and bad.to_pylist() == [False, False, False, True, False]
    utc = timezone.utc
    assert values.to_pylist()[:3] == [datetime(2024, 3, 1, 2, 0, 0, tzinfo=utc), datetime(2024, 3, 1, 2, 0, 1, tzinfo=utc),
                                      datetime(2024, 3, 1, 2, 0, 2, 500000, tzinfo=utc)]


def test_int_column():
    values, bad = to_int_column(pa.array(["1", " 2 ", "", "x", "99999999999"]), pa.int32())
    assert values.to_pylist() == [1, 2, None, None, None] and bad.to_pylist() == [False, False, False, True, True]


def test_flags():
    assert tcp_flags_value("...A.R..") == 0x14 and tcp_flags_value(".AP.SF") == 0x1B and tcp_flags_value("0x12") == 0x12
    with pytest.raises(ValueError):
        tcp_flags_value("XYZ")


def test_lines_skip_the_rows_the_parser_dropped():
    # header line 1; lines 3 and 4 were dropped: parsed rows 0..2 are lines 2, 5, 6
    assert lines_of_rows(0, 3, 1, [3, 4]).tolist() == [2, 5, 6]
    assert lines_of_rows(2, 1, 1, [3, 4]).tolist() == [6]
    assert lines_of_rows(0, 2, 0, []).tolist() == [1, 2]


def test_rejects_are_bounded_but_counted(monkeypatch):
    from minewatch.sources import _records
    monkeypatch.setattr(_records, "MAX_KEPT_REJECTS", 2)
    stats = SourceStats("f")
    for line in range(5):
        stats.reject(line, "bad", "x" * 5000)
    assert stats.rejected_total == 5 and len(stats.rejects) == 2 and stats.rejects_not_kept == 3
    assert len(stats.rejects[0].raw) == _records.MAX_RAW_CHARS

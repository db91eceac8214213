"""Shared helpers of the record readers: time parsing, flags, line bookkeeping."""

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from minewatch.schema.flows import TS
from minewatch.sources._records import (
    SourceStats, any_time_to_us, ip_text_bad, lines_of_rows, looks_binary, tcp_flags_value, to_int_column,
    to_time_column,
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


def test_int_column_beyond_64_bits_is_a_bad_row_not_a_crash():
    values, bad = to_int_column(pa.array(["7", "99999999999999999999", "9223372036854775807", "-9223372036854775809",
                                          "0000000000000000000000012", "x"]), pa.int64())
    assert values.to_pylist() == [7, None, 9223372036854775807, None, 12, None]
    assert bad.to_pylist() == [False, True, False, True, False, True]


def test_looks_binary():
    assert not looks_binary(b"a,b\n" * 50) and not looks_binary(b"")
    assert looks_binary(b"text\x00") and looks_binary(b"\x01\x02" * 10 + b"a" * 100)
    assert not looks_binary(b"\x01" * 5 + b"a" * 95)  # one control byte in 20 is still text


# ---------------------------------------------------------------- the compiled CSV splitter

try:
    from minewatch.sources import _fastcsv as fastcsv
except ImportError:  # not built
    fastcsv = None
needs_splitter = pytest.mark.skipif(fastcsv is None, reason="the compiled CSV splitter is not built")


def split(text: bytes, n_columns: int, wanted, kinds=None, delimiter=","):
    kinds = kinds if kinds is not None else [fastcsv.TEXT] * len(wanted)
    return fastcsv.split(memoryview(text), n_columns, wanted, kinds, delimiter)


def texts(result, k):
    rows, _, columns, _, _ = result
    offsets, text, _ = columns[k]
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets), pa.py_buffer(text)).to_pylist()


@needs_splitter
def test_splitter_rows_lines_and_bad_spans():
    text = b"a,b,c\n\n1,2\r\nx,y,z\r\n   \n4,5,6,7\nlast,no,newline"
    result = split(text, 3, [2, 0])
    rows, lines, _, bad, high = result
    assert (rows, lines, high) == (4, 7, False)
    assert texts(result, 0) == ["c", "", "z", "newline"] and texts(result, 1) == ["a", "", "x", "last"]
    assert [(line, fields, text[start:end]) for line, fields, start, end in bad] == [
        (3, 2, b"1,2"), (5, 1, b"   "), (6, 4, b"4,5,6,7")]


@needs_splitter
def test_splitter_matches_pyarrow_csv_without_quotes():
    import pyarrow.csv as pcsv

    lines = [b"%d,%s,%s" % (i, b"x" * (i % 40), b"\xc3\xa9" * (i % 3)) for i in range(3000)]
    lines[100], lines[2000] = b"", b"1,2"
    text = b"\n".join(lines) + b"\n"
    dropped = []
    table = pcsv.read_csv(pa.py_buffer(text), read_options=pcsv.ReadOptions(column_names=["a", "b", "c"], use_threads=False),
                          parse_options=pcsv.ParseOptions(quote_char=False, ignore_empty_lines=False,
                                                          invalid_row_handler=lambda row: dropped.append(row.number) or "skip"),
                          convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in "abc"},
                                                              strings_can_be_null=False))
    result = split(text, 3, [0, 1, 2])
    assert result[4] is True  # bytes beyond ASCII: the caller checks they are UTF-8
    for k, name in enumerate("abc"):
        assert texts(result, k) == table.column(name).to_pylist()
    assert [b[0] for b in result[3]] == dropped == [2001]


@needs_splitter
def test_splitter_leaves_quotes_and_lone_carriage_returns_to_pyarrow():
    assert split(b"a,b\rc,d\n", 2, [0]) is None
    assert split(b'a,b\nc,"d"\n', 2, [0]) is None
    assert split(b"a,b\r\nc,d\r", 2, [0])[0] == 2


@needs_splitter
def test_splitter_plain_ints_times_addresses_and_codes():
    values = ["0", "17", "000123", "999999999999999999", "1000000000000000000", "-5", "+5", " 5", "5 ", "", "1.0"]
    times = ["2024-03-01 10:00:00", "2024-02-29T23:59:59.5", "2023-02-29 00:00:00", "1900-01-01 00:00:00.000001",
             "2024-03-01 24:00:00", "2024-03-01 00:00", "2024-03-01 00:00:00.", "2024-03-01 00:00:00.1234567",
             "2024-03-01 00:00:00Z", "1899-12-31 23:59:59", "9999-12-31 23:59:59.999999", "2024-3-01 00:00:00"]
    addresses = ["10.0.0.1", "2001:db8::1", "::", "1", "", " 10.0.0.1", "10.0.0.1x", "a" * 46, "999.1.1.1",
                 "1.2.3.4.5", "::::", "abc", "::ffff:1.2.3.4"]
    protocols = ["TCP", "UDP", "TCP", "IPv6-ICMP", "ICMP", "", "IPv6-ICMP"] + ["TCP"] * 4 + ["UDP"]  # last: the piece end
    n = max(len(values), len(times), len(addresses), len(protocols))
    column = lambda items, i: items[i] if i < len(items) else items[0]
    text = "".join(f"{column(values, i)},{column(times, i)},{column(addresses, i)},{column(protocols, i)}\n"
                   for i in range(n)).encode()
    result = split(text, 4, [0, 1, 2, 3], [fastcsv.INT, fastcsv.TIME, fastcsv.IP, fastcsv.CODE])
    columns = result[2]
    ints, plain = columns[0][2]
    ints, plain = np.frombuffer(ints, np.int64), np.frombuffer(plain, np.uint8).astype(bool)
    for i, value in enumerate(values):  # a plain value is one pyarrow reads, and reads alike
        if plain[i]:
            assert pa.array([value]).cast(pa.int64())[0].as_py() == ints[i]
    assert plain[:len(values)].tolist() == [True] * 4 + [False] * 7
    micros, plain = columns[1][2]
    micros, plain = np.frombuffer(micros, np.int64), np.frombuffer(plain, np.uint8).astype(bool)
    for i, value in enumerate(times):
        if plain[i]:
            assert pa.array([value]).cast(pa.timestamp("us")).cast(pa.int64())[0].as_py() == micros[i]
    assert plain[:len(times)].tolist() == [True, True, False, True, False, False, False, False, False, False, True, False]
    bad = np.frombuffer(columns[2][2], np.uint8).astype(bool)
    assert bad[:len(addresses)].tolist() == ip_text_bad(pa.array(addresses)).to_pylist() == [
        False, False, False, True, True, True, True, True, True, True, True, True, False]
    codes, distinct = columns[3][2]
    assert [distinct[c].decode() for c in np.frombuffer(codes, np.int32)][:len(protocols)] == protocols
    assert len(distinct) == 5


@needs_splitter
def test_splitter_codes_give_up_beyond_64_distinct_values():
    text = b"".join(b"v%d\n" % i for i in range(65))
    assert split(text, 1, [0], [fastcsv.CODE])[2][0][2] is None
    assert split(text[:-4], 1, [0], [fastcsv.CODE])[2][0][2] is not None

"""The address check of the flow readers (`address_ok` in _fastcsv.c, `ip_text_ok` and
`ip_text_bad` in _records) against Python's `ipaddress` on generated valid and invalid
text. The one rule of ours that `ipaddress` does not share: no zone id (`fe80::1%eth0`)."""

import ipaddress
import random

import numpy as np
import pyarrow as pa
import pytest

from minewatch.sources import _records
from minewatch.sources._records import ip_text_bad, ip_text_ok

try:
    from minewatch.sources import _fastcsv
except ImportError:  # not built
    _fastcsv = None
needs_extension = pytest.mark.skipif(_fastcsv is None, reason="the compiled CSV splitter is not built")


def reference_ok(text: str) -> bool:
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def edge_cases() -> list[str]:
    cases = ["", " ", "1", "1.2", "1.2.3", "1.2.3.4.5", "999.1.1.1", "abc", "::::", ":::", ":", "::", "::1",
             "1::", "1:", ":1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
             "1::3:4:5:6:7:8", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "1::2::3", "12345::", "::12345",
             "fffff::1", "FFFF::ABCD", "fe80::1%eth0", "fe80::1%1", "::ffff:1.2.3.4", "::1.2.3.4",
             "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "1:2:3:4:5::1.2.3.4", "1:2:3:4:5:6::1.2.3.4",
             "::1.2.3", "::1.2.3.4.5", "::256.1.1.1", "::01.2.3.4", "1.2.3.4::", "::1.2.3.4:1", "1.2.3.4:80",
             "[::1]", "1.2.3.4.", ".1.2.3.4", "1..2.3", "1.2.3.4 ", " 1.2.3.4", "1.2.3.4\n", "1.2.3.4\x00",
             "1.2.3.4\t", ":: ", "::1 ", "\u0661.2.3.4", "１.2.3.4", "1.2.3.é", "ä::1", "::g", "0x1.2.3.4",
             "+1.2.3.4", "-1.2.3.4", "1.2.3.-4", "1 .2.3.4", "0.0.0.0", "255.255.255.255", "256.255.255.255",
             "255.255.255.256", "00.1.1.1", "010.1.1.1", "1.01.1.1", "1.1.1.00", "0000.1.1.1", "1.2.3.0004",
             "0:0:0:0:0:0:0:0", "0000:0000:0000:0000:0000:0000:0000:0000", "00000::", "::ffff:255.255.255.255",
             "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2555",
             "2001:db8::1", "2001:0db8:0000:0000:0000:ff00:0042:8329", "2001:db8:::1", "2001:db8::1::",
             "1:2:3:4:5:6:7:8:", ":1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:", "::1:", "1::2:", ":1::2"]
    for octet in ("0", "1", "9", "10", "99", "100", "199", "200", "249", "250", "255", "256", "260", "300",
                  "999", "1000", "01", "001", "00", "000"):  # every boundary, in every position
        for position in range(4):
            parts = ["1", "2", "3", "4"]
            parts[position] = octet
            cases.append(".".join(parts))
            cases.append("::ffff:" + ".".join(parts))
    return cases


def random_cases(count: int, seed: int = 20240301) -> list[str]:
    """Address-like text: valid addresses (with leading zeros, `::` anywhere, IPv4 tails),
    and the same with one character added, removed or changed."""
    rng = random.Random(seed)
    alphabet = "0123456789abcdefABCDEF:.%g -"
    cases = []
    for _ in range(count):
        if rng.random() < 0.4:
            parts = [str(rng.choice([rng.randrange(256), rng.randrange(1000)])) for _ in range(rng.choice([3, 4, 4, 4, 5]))]
            if rng.random() < 0.1:
                parts[rng.randrange(len(parts))] = "0" + parts[0]
            text = ".".join(parts)
        else:
            groups = [format(rng.randrange(1 << rng.choice([4, 8, 16, 20])), "x") for _ in range(rng.randrange(1, 10))]
            groups = [g.zfill(rng.randrange(len(g), 6)) if rng.random() < 0.2 else g for g in groups]
            if rng.random() < 0.3:
                groups[-1] = str(ipaddress.IPv4Address(rng.randrange(1 << 32)))
            text = ":".join(groups)
            if rng.random() < 0.6:
                at = rng.randrange(len(text) + 1)
                text = text[:at] + rng.choice(["::", ":", ":::"]) + text[at:]
            if rng.random() < 0.5:
                text = text.upper()
        if rng.random() < 0.3:  # one slip
            at = rng.randrange(len(text) + 1)
            slip = rng.choice(["add", "drop", "change"])
            if slip == "add":
                text = text[:at] + rng.choice(alphabet) + text[at:]
            elif slip == "drop":
                text = text[:at] + text[at + 1:]
            else:
                text = text[:at] + rng.choice(alphabet) + text[at + 1:]
        cases.append(text)
    return cases


def valid_addresses(count: int, seed: int = 7) -> list[str]:
    """Addresses as the tools print them: IPv4, compressed IPv6, full IPv6 (Suricata)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        kind = rng.randrange(3)
        if kind == 0:
            out.append(str(ipaddress.IPv4Address(rng.randrange(1 << 32))))
        else:
            address = ipaddress.IPv6Address(rng.randrange(1 << 128) >> rng.choice([0, 64, 100, 120]))
            out.append(address.compressed if kind == 1 else address.exploded)
    return out


CASES = edge_cases() + random_cases(30_000) + valid_addresses(3_000)


def test_the_generated_set_has_both_kinds():
    valid = sum(map(reference_ok, CASES))
    assert 5_000 < valid < len(CASES) - 5_000


@needs_extension
def test_c_check_agrees_with_ipaddress():
    wrong = [text for text in CASES if _fastcsv.address_ok(text.encode("utf-8")) != reference_ok(text)]
    assert wrong == []


def test_python_fallback_agrees_with_ipaddress():
    wrong = [text for text in CASES if _records._address_ok_python(text.encode("utf-8")) != reference_ok(text)]
    assert wrong == []


def test_scalar_check():
    assert ip_text_ok("10.0.0.1") and ip_text_ok("2001:db8::1") and ip_text_ok(b"::ffff:1.2.3.4")
    for text in ("999.1.1.1", "1.2", "1.2.3.4.5", "::::", "abc", "010.1.1.1", "fe80::1%eth0", "", None, "１.2.3.4"):
        assert not ip_text_ok(text), text


def test_the_rule_is_documented_where_it_is_decided():
    assert "leading zero" in ip_text_ok.__doc__ and "zone id" in ip_text_ok.__doc__


@pytest.mark.parametrize("type_", [pa.string(), pa.large_string()])
def test_column_mask_matches_per_value_check(type_):
    values = [None if i % 97 == 0 else text for i, text in enumerate(CASES)]
    column = pa.array(values, type_)
    expected = [text is not None and not reference_ok(text) for text in values]
    assert ip_text_bad(column).to_pylist() == expected
    sliced = column.slice(1234, 5000)  # an array offset into shared buffers
    assert ip_text_bad(sliced).to_pylist() == expected[1234:6234]
    chunked = pa.chunked_array([column.slice(0, 10), column.slice(10, 100)])
    assert ip_text_bad(chunked).to_pylist() == expected[:110]


def test_column_mask_edge_shapes(monkeypatch):
    assert ip_text_bad(pa.array([], pa.string())).to_pylist() == []
    assert ip_text_bad(pa.array(["", "", ""])).to_pylist() == [True] * 3  # no data buffer to speak of
    assert ip_text_bad(pa.array([None, None], pa.string())).to_pylist() == [False, False]
    assert ip_text_bad(pa.array(["1.2.3.4", "x"]).dictionary_encode()).to_pylist() == [False, True]
    monkeypatch.setattr(_records, "_fastcsv", None)  # the fallback gives the same masks
    values = CASES[:3000]
    assert ip_text_bad(pa.array(values)).to_pylist() == [not reference_ok(t) for t in values]


@needs_extension
def test_buffer_function_refuses_buffers_that_do_not_fit():
    column = pa.array(["1.2.3.4", "::1"])
    validity, offsets, data = column.buffers()
    out = np.zeros(2, bool)
    _fastcsv.bad_addresses(offsets, data, None, 0, False, out)
    assert out.tolist() == [False, False]
    with pytest.raises(ValueError):
        _fastcsv.bad_addresses(offsets, data, None, 1, False, out)  # one row past the offsets
    with pytest.raises(ValueError):
        _fastcsv.bad_addresses(offsets, data, None, 0, True, out)  # int32 offsets read as int64
    broken = np.array([0, 7, 99], np.int32)
    with pytest.raises(ValueError):
        _fastcsv.bad_addresses(broken, data, None, 0, False, out)


@needs_extension
def test_splitter_flags_use_the_same_check():
    text = "".join(f"{t}\n" for t in CASES if "\n" not in t and "\r" not in t and '"' not in t and "," not in t)
    values = text.split("\n")[:-1]
    rows, _, columns, _, _ = _fastcsv.split(memoryview(text.encode()), 1, [0], [_fastcsv.IP], ",")
    flags = np.frombuffer(columns[0][2], np.uint8).astype(bool)
    assert rows == len(values)
    assert flags.tolist() == [not reference_ok(t) for t in values]

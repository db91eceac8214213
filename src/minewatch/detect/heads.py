"""Vectorised first looks at a whole flow batch, so that Python detectors only see the
flows that could possibly match (a prefilter is a necessary condition, never a verdict).

A detector declares `prefilter=fn(heads: Heads, ctx) -> numpy bool array`; the pipeline
runs the detector only on rows where it is True.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PEEK = 16  # first bytes of each head kept as a (rows x PEEK) uint8 matrix

HTTP_START = rb"^(?:GET |POST |PUT |HEAD |OPTIONS |DELETE |PATCH |CONNECT |HTTP/1\.)"
JSON_RPC_KEY = rb'"(?:method|result|error)"\s*:'


def _peek(arr: pa.Array, start: int = 0, width: int = PEEK) -> tuple[np.ndarray, np.ndarray]:
    """(bytes start..start+width zero-padded, lengths) of a binary column; nulls count as empty."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.fill_null(arr, b"")
    n = len(arr)
    if n == 0:
        return np.zeros((0, width), np.uint8), np.zeros(0, np.int64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data_buf = arr.buffers()[2]
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    lens = np.diff(offsets)
    cols = np.arange(start, start + width)
    valid = cols[None, :] < lens[:, None]
    idx = offsets[:-1, None] + cols[None, :]
    out = np.zeros((n, width), np.uint8)
    out[valid] = data[idx[valid]]
    return out, lens


def _ints(arr, fill: int = -1) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, fill).to_numpy(zero_copy_only=False), dtype=np.int64)


class Heads:
    """First bytes, lengths, ports and protocol of every flow in a batch, as numpy arrays."""

    def __init__(self, batch: pa.RecordBatch):
        self.batch = batch
        self.n = batch.num_rows
        self.src, self.src_len = _peek(batch.column("src_payload_head"))
        self.dst, self.dst_len = _peek(batch.column("dst_payload_head"))
        self.src_port = _ints(batch.column("src_port"))
        self.dst_port = _ints(batch.column("dst_port"))
        self.proto = _ints(batch.column("ip_proto"))
        self._regex_cache: dict[bytes, np.ndarray] = {}

    @property
    def has_payload(self) -> np.ndarray:
        return (self.src_len > 0) | (self.dst_len > 0)

    def either(self, test) -> np.ndarray:
        """test(first_bytes, lengths) evaluated on both sides, OR-ed."""
        return test(self.src, self.src_len) | test(self.dst, self.dst_len)

    def bytes_at(self, start: int, width: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(src, dst) matrices of the bytes start..start+width of each head (0 past the end)."""
        return (_peek(self.batch.column("src_payload_head"), start, width)[0],
                _peek(self.batch.column("dst_payload_head"), start, width)[0])

    def starts_with_any(self, prefixes) -> np.ndarray:
        """Either side's head begins with one of `prefixes` (each at most PEEK bytes)."""
        mask = np.zeros(self.n, bool)
        for p in prefixes:
            want = np.frombuffer(p, np.uint8)
            k = len(want)
            for heads, lens in ((self.src, self.src_len), (self.dst, self.dst_len)):
                mask |= (lens >= k) & np.all(heads[:, :k] == want, axis=1)
        return mask

    def regex(self, pattern: bytes, within: np.ndarray | None = None) -> np.ndarray:
        """Either side's whole head matches `pattern` (RE2 syntax, searched anywhere);
        with `within`, only those rows are searched (the others are False)."""
        key = (pattern, None if within is None else within.tobytes())
        if key not in self._regex_cache:
            rows = np.flatnonzero(self.has_payload if within is None else within & self.has_payload)
            mask = np.zeros(self.n, bool)
            if len(rows):
                subset = self.batch.select(["src_payload_head", "dst_payload_head"]).take(pa.array(rows))
                for col in ("src_payload_head", "dst_payload_head"):
                    hit = pc.match_substring_regex(subset.column(col), pattern.decode("latin-1"))
                    mask[rows] |= np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), bool)
            self._regex_cache[key] = mask
        return self._regex_cache[key]

    def on_ports(self, ports) -> np.ndarray:
        ports = np.asarray(sorted(ports))
        return np.isin(self.src_port, ports) | np.isin(self.dst_port, ports)

    @property
    def udp(self) -> np.ndarray:
        return self.proto == 17

    @property
    def tcp(self) -> np.ndarray:
        return self.proto == 6

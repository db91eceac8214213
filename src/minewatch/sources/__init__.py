"""Input formats. Each module turns one kind of input into record batches of a
canonical schema (minewatch.schema) and counts what it read and rejected."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ReadStats:
    """What one source read from one input, and what it could not use and why."""

    path: str
    bytes_total: int = 0
    bytes_read: int = 0
    packets_read: int = 0
    packets_skipped: Counter = field(default_factory=Counter)  # reason -> count (not IP, ...)
    flows: int = 0
    error: str | None = None  # set when the input failed (wholly or from some point on)
    reader: str = ""  # which reader handled it (fast, nfstream)

    @property
    def failed(self) -> bool:
        return self.error is not None


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

"""Domain names in Arrow columns, cleaned as `_records.clean_domain` cleans one."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from minewatch.sources._records import byte_class, clean_domain, map_distinct, text_within

_PLAIN_NAME = byte_class(bytes(range(0x21, 0x7F)))  # printable ASCII without space


def clean_domains(column: pa.Array | None) -> pa.Array | None:
    """`clean_domain` of each value: vectorised where the text is printable ASCII (then
    strip() has nothing to strip and lower() is ASCII), per distinct value otherwise."""
    if column is None:
        return None
    if column.null_count == len(column) or text_within(column, _PLAIN_NAME):
        trimmed = pc.ascii_lower(pc.utf8_rtrim(column, characters="."))
        return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)
    return map_distinct(column, clean_domain, pa.string())[0]

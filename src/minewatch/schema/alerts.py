"""The canonical IDS alert table (Suricata `alert` events): kept so that a case can show
what another sensor said about the same hosts."""

import pyarrow as pa

from minewatch.schema.flows import TS

ALERTS = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("record_ref", pa.int64(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("src_ip", pa.string()),
        pa.field("src_port", pa.int32()),
        pa.field("dst_ip", pa.string()),
        pa.field("dst_port", pa.int32()),
        pa.field("l4", pa.string()),
        pa.field("signature_id", pa.int64()),
        pa.field("signature", pa.string()),
        pa.field("category", pa.string()),
        pa.field("severity", pa.int32()),  # 1 = highest, as Suricata counts
    ]
)

"""The canonical IDS alert table (Suricata `alert` events): kept so that a case can show
what another sensor said about the same hosts."""

import pyarrow as pa

from minewatch.schema.flows import RECORD_FIELDS

ALERTS = pa.schema(
    [
        *RECORD_FIELDS,
        pa.field("l4", pa.string()),
        pa.field("signature_id", pa.int64()),
        pa.field("signature", pa.string()),
        pa.field("category", pa.string()),
        pa.field("severity", pa.int32()),  # 1 = highest, as Suricata counts
    ]
)

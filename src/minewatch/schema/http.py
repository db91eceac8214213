"""The canonical HTTP table: one row per request/response pair (Zeek http.log,
Suricata http events)."""

import pyarrow as pa

from minewatch.schema.flows import RECORD_FIELDS

HTTP = pa.schema(
    [
        *RECORD_FIELDS,
        pa.field("method", pa.string()),
        pa.field("host", pa.string()),
        pa.field("uri", pa.string()),
        pa.field("user_agent", pa.string()),
        pa.field("status", pa.int32()),
        pa.field("request_body_len", pa.int64()),
        pa.field("response_body_len", pa.int64()),
        pa.field("content_type", pa.string()),  # of the response
    ]
)

"""The canonical DNS table: one row per DNS transaction (Zeek) or per logged query or
answer (Suricata, resolver logs). `response` tells whether the row carries the answer."""

import pyarrow as pa

from minewatch.schema.flows import TS

DNS = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("record_ref", pa.int64(), nullable=False),  # line (or record) number in the source
        pa.field("ts", TS, nullable=False),
        pa.field("client_ip", pa.string()),
        pa.field("client_port", pa.int32()),
        pa.field("server_ip", pa.string()),
        pa.field("server_port", pa.int32()),
        pa.field("l4", pa.string()),  # UDP / TCP when known
        pa.field("trans_id", pa.int32()),
        pa.field("query", pa.string()),  # lowercase, no trailing dot
        pa.field("qtype", pa.string()),  # A, AAAA, TXT, ... or the number as text
        pa.field("rcode", pa.string()),  # NOERROR, NXDOMAIN, ...; null when no answer was logged
        pa.field("answers", pa.list_(pa.string())),  # addresses and names in answer order
        pa.field("response", pa.bool_()),  # the row describes a reply (answers/rcode known)
    ]
)

"""The canonical TLS table: one row per TLS session seen by a sensor (Zeek ssl.log,
Suricata tls events)."""

import pyarrow as pa

from minewatch.schema.flows import RECORD_FIELDS

TLS = pa.schema(
    [
        *RECORD_FIELDS,
        pa.field("server_name", pa.string()),  # SNI, lowercase
        pa.field("version", pa.string()),  # as the sensor wrote it (TLSv12, TLS 1.2)
        pa.field("ja3", pa.string()),
        pa.field("ja3s", pa.string()),
        pa.field("subject", pa.string()),  # server certificate
        pa.field("issuer", pa.string()),
        pa.field("established", pa.bool_()),
    ]
)

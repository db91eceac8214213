"""The canonical TLS table: one row per TLS session seen by a sensor (Zeek ssl.log,
Suricata tls events)."""

import pyarrow as pa

from minewatch.schema.flows import TS

TLS = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("record_ref", pa.int64(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("src_ip", pa.string()),  # client
        pa.field("src_port", pa.int32()),
        pa.field("dst_ip", pa.string()),  # server
        pa.field("dst_port", pa.int32()),
        pa.field("server_name", pa.string()),  # SNI, lowercase
        pa.field("version", pa.string()),  # as the sensor wrote it (TLSv12, TLS 1.2)
        pa.field("ja3", pa.string()),
        pa.field("ja3s", pa.string()),
        pa.field("subject", pa.string()),  # server certificate
        pa.field("issuer", pa.string()),
        pa.field("established", pa.bool_()),
    ]
)

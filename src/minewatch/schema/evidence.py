"""One evidence schema for every detector: who, what, when, how sure, why, where from."""

import pyarrow as pa

from minewatch.schema.flows import TS

CATEGORIES = ("mining", "mining_pool_contact", "crypto_p2p", "browser_mining")
SEVERITIES = ("low", "medium", "high")

EVIDENCE = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("source_sha256", pa.string()),
        pa.field("source_ref", pa.string()),  # e.g. "flow 17": where in the source to look
        pa.field("ts_start", TS),
        pa.field("ts_end", TS),
        pa.field("src_ip", pa.string()),  # the internal side (miner) where it can be told
        pa.field("src_port", pa.int32()),
        pa.field("dst_ip", pa.string()),
        pa.field("dst_port", pa.int32()),
        pa.field("l4", pa.string()),
        pa.field("detector", pa.string(), nullable=False),
        pa.field("detector_version", pa.int32(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("confidence", pa.float64(), nullable=False),
        pa.field("severity", pa.string()),
        pa.field("summary", pa.string(), nullable=False),
        pa.field("details", pa.string()),  # JSON object (dialect, methods, coin, agent, worker...)
    ]
)

"""The canonical flow table: one row per bidirectional conversation (5-tuple).

`src_*` is the side that started the flow (sender of the first packet seen, or of the
SYN when the handshake was captured); `dst_*` the other side. Packet sources also fill
the payload heads: the first bytes each side sent, in TCP sequence order, which the
protocol detectors parse. Flow-only sources (NetFlow, Zeek conn) leave them null.
"""

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

FLOWS = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("flow_ref", pa.int64(), nullable=False),  # position of the flow in its source
        pa.field("ts_start", TS, nullable=False),
        pa.field("ts_end", TS, nullable=False),
        pa.field("src_ip", pa.string(), nullable=False),
        pa.field("src_port", pa.int32()),
        pa.field("dst_ip", pa.string(), nullable=False),
        pa.field("dst_port", pa.int32()),
        pa.field("ip_proto", pa.int16()),
        pa.field("l4", pa.string()),  # TCP, UDP, ICMP, ICMPv6, or the protocol number
        pa.field("vlan_id", pa.int32()),
        pa.field("src_packets", pa.int64()),
        pa.field("dst_packets", pa.int64()),
        pa.field("src_bytes", pa.int64()),  # IP bytes
        pa.field("dst_bytes", pa.int64()),
        pa.field("src_payload_packets", pa.int64()),  # packets carrying L4 payload
        pa.field("dst_payload_packets", pa.int64()),
        pa.field("src_payload_bytes", pa.int64()),
        pa.field("dst_payload_bytes", pa.int64()),
        pa.field("src_tcp_flags", pa.uint8()),  # OR of all flags that side sent
        pa.field("dst_tcp_flags", pa.uint8()),
        pa.field("src_payload_head", pa.binary()),
        pa.field("dst_payload_head", pa.binary()),
        pa.field("src_iat_mean_ms", pa.float64()),  # between payload packets of src
        pa.field("src_iat_std_ms", pa.float64()),
        pa.field("app_protocol", pa.string()),  # nDPI label where nfstream produced the flow
        # Application messages per side: payload segments of one side less than 5 ms
        # apart merged into one (a request, reply or TLS record split by the MSS).
        # Sizes are payload bytes; intervals are between message starts. Packet
        # sources only; null where the source does not see packets (NetFlow, Zeek).
        pa.field("src_msgs", pa.int64()),
        pa.field("src_msg_size_mean", pa.float64()),
        pa.field("src_msg_size_std", pa.float64()),
        pa.field("src_msg_iat_mean_ms", pa.float64()),
        pa.field("src_msg_iat_std_ms", pa.float64()),
        pa.field("dst_msgs", pa.int64()),
        pa.field("dst_msg_size_mean", pa.float64()),
        pa.field("dst_msg_size_std", pa.float64()),
        pa.field("dst_msg_iat_mean_ms", pa.float64()),
        pa.field("dst_msg_iat_std_ms", pa.float64()),
    ]
)

MESSAGE_FIELDS = tuple(f"{side}_{name}" for side in ("src", "dst")
                       for name in ("msgs", "msg_size_mean", "msg_size_std", "msg_iat_mean_ms", "msg_iat_std_ms"))
MESSAGE_GAP_S = 0.005  # segments of one side closer than this belong to one message


# Leading columns of the per-record sensor tables that name a connection (tls, http, alerts):
# where the record came from, when, and its endpoints (src = client).
RECORD_FIELDS = [
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("record_ref", pa.int64(), nullable=False),  # line or record number in the source
    pa.field("ts", TS, nullable=False),
    pa.field("src_ip", pa.string()),
    pa.field("src_port", pa.int32()),
    pa.field("dst_ip", pa.string()),
    pa.field("dst_port", pa.int32()),
]

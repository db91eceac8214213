"""Mining by the shape of its flows, for traffic whose payload cannot be read (stratum
over TLS, Stratum V2, proxies, VPN exits), from flow columns only: no payload heads.

Pool mining is one persistent TCP session from a worker to one pool endpoint. The
worker submits a share every few seconds to a couple of minutes (the pool's vardiff
aims at a steady share rate, so arrivals are near-Poisson); the pool pushes a new job
at about the same pace. Every message is a small JSON line or binary frame (tens of
bytes to ~3 KB for an Equihash solution), so the session carries few bytes per second
in both directions for as long as the miner runs, reconnecting to the same endpoint
when it drops. Each rule below is one of those facts; all must hold for a session:

  persistent  the session (flows of one client, server and server port, TCP, joined
              across idle-timeout splits and reconnects while gaps stay <= max_gap_s)
              lasts >= min_span_s;
  two-way     >= min_msgs messages each way (shares up, jobs down);
  paced       mean interval between client messages within [min_interval_s,
              max_interval_s], and between server messages within [min_interval_s,
              max_server_interval_s]: not interactive bursts, not idle keep-alives;
  low rate    payload bytes of both sides together <= max_bytes_per_s over the span;
  small msgs  mean client message within [min_client_msg_bytes, max_client_msg_bytes],
              mean server message within [min_server_msg_bytes, max_server_msg_bytes];
  one conn    at most max_reconnects_per_10min reconnects per 10 minutes (browsers and
              chat clients open connection after connection; a miner keeps one);
  steady      where the source gives inter-arrival statistics of the client's payload
              packets, their coefficient of variation is <= max_iat_cv (Poisson is 1).

"Messages" are payload packets where the source counts them, half the packets
otherwise (NetFlow, Zeek: each message draws an ACK in a paced exchange). The server
is the side with the lower port (pool ports 3333, 443, 14444 are below any ephemeral
port), so a flow split by an idle timeout, whose later records start with a server
packet, still joins the right session.

The result is one evidence row per session, category `mining` at moderate
confidence (shape alone, no protocol proof): it ranks a host for review and adds to
payload or intel evidence in the per-host finding; it does not convict on its own.
"""

from __future__ import annotations

from minewatch.detect import sql_detector

DETECTOR_ID = "beh.periodic_low_rate"
VERSION = 1

# Thresholds, each from the physics above; measured in bench/behaviour_eval.py (.md).
DEFAULTS: dict[str, float] = {
    "max_gap_s": 900,  # a reconnect or idle-timeout split within 15 min is the same session
    "min_span_s": 180,  # three minutes: several share and job periods
    "min_msgs": 10,  # each way
    "min_interval_s": 2.0,  # faster than a share every 2 s is interactive or bulk
    "max_interval_s": 120.0,  # client: pools aim at a share every 5-60 s
    "max_server_interval_s": 300.0,  # server: a job at least every block or two (2-5 min)
    "max_bytes_per_s": 512,  # both sides; worst case 3 KB shares every 10 s plus 1 KB jobs every 5 s
    "min_client_msg_bytes": 64,  # stratum requests (submit, getwork, keepalived) are >= 80 B
    "min_server_msg_bytes": 40,  # the shortest pool reply {"id":2,"result":true,...} is ~40 B
    "max_reconnects_per_10min": 1,  # a miner holds one connection for hours
    "max_client_msg_bytes": 3000,  # an Equihash share (ZEC, ZEN, BTG) is ~2.9 KB
    "max_server_msg_bytes": 1200,  # jobs: 250-400 B (CryptoNote, Ethash), up to 1.2 KB (Bitcoin)
    "max_iat_cv": 1.8,  # Poisson is 1.0; shares split in two segments give sqrt(3) = 1.73
}


def _params(params: dict | None) -> dict[str, float]:
    merged = dict(DEFAULTS)
    for key, value in (params or {}).items():
        if key in DEFAULTS:
            merged[key] = float(value)
    return merged


def behaviour_sql(params: dict | None = None) -> str:
    """The detector's SELECT (DuckDB dialect) over a `flows` table or view."""
    p = _params(params)
    return f"""
WITH tcp AS (
    SELECT *, src_port < dst_port AS server_is_src
    FROM flows
    WHERE ip_proto = 6 AND src_port IS NOT NULL AND dst_port IS NOT NULL AND src_port <> dst_port
),
oriented AS (
    SELECT
        source_file, flow_ref, ts_start, ts_end,
        CASE WHEN server_is_src THEN dst_ip ELSE src_ip END AS client_ip,
        CASE WHEN server_is_src THEN dst_port ELSE src_port END AS client_port,
        CASE WHEN server_is_src THEN src_ip ELSE dst_ip END AS server_ip,
        CASE WHEN server_is_src THEN src_port ELSE dst_port END AS server_port,
        -- flow-only sources (NetFlow, Zeek) lack payload counts: about half the packets
        -- of a paced two-way exchange carry data (each message draws the peer's ACK),
        -- and IP + TCP headers take at least 40 bytes a packet
        CASE WHEN server_is_src THEN coalesce(dst_payload_packets, dst_packets / 2.0, 0)
             ELSE coalesce(src_payload_packets, src_packets / 2.0, 0) END AS client_msgs,
        CASE WHEN server_is_src THEN coalesce(src_payload_packets, src_packets / 2.0, 0)
             ELSE coalesce(dst_payload_packets, dst_packets / 2.0, 0) END AS server_msgs,
        CASE WHEN server_is_src THEN coalesce(dst_payload_bytes, greatest(dst_bytes - 40 * dst_packets, 0), 0)
             ELSE coalesce(src_payload_bytes, greatest(src_bytes - 40 * src_packets, 0), 0) END AS client_bytes,
        CASE WHEN server_is_src THEN coalesce(src_payload_bytes, greatest(src_bytes - 40 * src_packets, 0), 0)
             ELSE coalesce(dst_payload_bytes, greatest(dst_bytes - 40 * dst_packets, 0), 0) END AS server_bytes,
        -- inter-arrival statistics exist for the flow's src side only: keep them when
        -- src is the client and the flow has enough client messages to mean something
        CASE WHEN NOT server_is_src AND src_iat_mean_ms > 0 AND src_payload_packets >= 5
             THEN src_iat_std_ms / src_iat_mean_ms END AS client_iat_cv
    FROM tcp
),
gaps AS (
    SELECT *,
        CASE WHEN date_diff('second',
                      max(ts_end) OVER (PARTITION BY client_ip, server_ip, server_port ORDER BY ts_start, flow_ref
                                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING),
                      ts_start) <= {p['max_gap_s']}
             THEN 0 ELSE 1 END AS new_session
    FROM oriented
),
numbered AS (
    SELECT *,
        sum(new_session) OVER (PARTITION BY client_ip, server_ip, server_port ORDER BY ts_start, flow_ref
                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_no
    FROM gaps
),
sessions AS (
    SELECT
        client_ip, server_ip, server_port, session_no,
        -- the session's first flow (the one that opened it) names the source
        max(CASE WHEN new_session = 1 THEN source_file END) AS source_file,
        max(CASE WHEN new_session = 1 THEN flow_ref END) AS first_flow_ref,
        count(*) AS n_flows,
        count(DISTINCT client_port) AS n_connections,
        min(ts_start) AS ts_start,
        max(ts_end) AS ts_end,
        greatest(date_diff('second', min(ts_start), max(ts_end)), 1) AS span_s,
        sum(client_msgs) AS client_msgs,
        sum(server_msgs) AS server_msgs,
        sum(client_bytes) AS client_bytes,
        sum(server_bytes) AS server_bytes,
        sum(client_iat_cv * client_msgs) / sum(CASE WHEN client_iat_cv IS NOT NULL THEN client_msgs END)
            AS client_iat_cv
    FROM numbered
    GROUP BY client_ip, server_ip, server_port, session_no
),
shaped AS (
    SELECT *,
        span_s / client_msgs AS client_interval_s,
        span_s / server_msgs AS server_interval_s,
        (client_bytes + server_bytes) / span_s AS bytes_per_s,
        client_bytes / client_msgs AS client_msg_bytes,
        server_bytes / server_msgs AS server_msg_bytes
    FROM sessions
    WHERE client_msgs >= {p['min_msgs']} AND server_msgs >= {p['min_msgs']}
),
hits AS (
    SELECT * FROM shaped
    WHERE span_s >= {p['min_span_s']}
      AND client_interval_s BETWEEN {p['min_interval_s']} AND {p['max_interval_s']}
      AND server_interval_s BETWEEN {p['min_interval_s']} AND {p['max_server_interval_s']}
      AND bytes_per_s <= {p['max_bytes_per_s']}
      AND client_msg_bytes BETWEEN {p['min_client_msg_bytes']} AND {p['max_client_msg_bytes']}
      AND server_msg_bytes BETWEEN {p['min_server_msg_bytes']} AND {p['max_server_msg_bytes']}
      AND (n_connections - 1) * 600 <= {p['max_reconnects_per_10min']} * span_s
      AND (client_iat_cv IS NULL OR client_iat_cv <= {p['max_iat_cv']})
)
SELECT
    source_file,
    CASE WHEN n_flows = 1 THEN 'flow ' || CAST(first_flow_ref AS VARCHAR)
         ELSE 'flows from ' || CAST(first_flow_ref AS VARCHAR) || ' (' || CAST(n_flows AS VARCHAR)
              || ' flows of ' || client_ip || ' to ' || server_ip || ':' || CAST(server_port AS VARCHAR) || ')'
    END AS source_ref,
    ts_start,
    ts_end,
    client_ip AS src_ip,
    CAST(NULL AS INTEGER) AS src_port,
    server_ip AS dst_ip,
    server_port AS dst_port,
    'TCP' AS l4,
    'mining' AS category,
    -- shape alone: 0.5, more for a longer session and for known steady timing
    CAST(0.5 + CASE WHEN span_s >= 3600 THEN 0.1 WHEN span_s >= 900 THEN 0.05 ELSE 0 END
             + CASE WHEN client_iat_cv IS NOT NULL THEN 0.05 ELSE 0 END AS DOUBLE) AS confidence,
    'medium' AS severity,
    'TCP session to ' || server_ip || ':' || CAST(server_port AS VARCHAR) || ' for '
        || CASE WHEN span_s >= 3600
                THEN CAST(span_s // 3600 AS VARCHAR) || ' h ' || CAST((span_s % 3600) // 60 AS VARCHAR) || ' min'
                ELSE CAST(span_s // 60 AS VARCHAR) || ' min ' || CAST(span_s % 60 AS VARCHAR) || ' s' END
        || ': small client messages (' || CAST(CAST(round(client_msg_bytes) AS BIGINT) AS VARCHAR)
        || ' B) every ' || CAST(CAST(round(client_interval_s) AS BIGINT) AS VARCHAR) || ' s'
        || CASE WHEN client_iat_cv IS NULL THEN ''
                ELSE ' (jitter ' || CAST(CAST(round(100 * client_iat_cv) AS BIGINT) AS VARCHAR) || '%)' END
        || ', server pushes every ' || CAST(CAST(round(server_interval_s) AS BIGINT) AS VARCHAR) || ' s, '
        || CAST(CAST(round(bytes_per_s) AS BIGINT) AS VARCHAR) || ' B/s'
        || CASE WHEN n_connections > 1 THEN ', ' || CAST(n_connections - 1 AS VARCHAR) || ' reconnects' ELSE '' END
        || ': shape of pool mining' AS summary,
    to_json(struct_pack(
        basis := 'flow shape',
        span_s := span_s,
        flows := n_flows,
        connections := n_connections,
        client_messages := CAST(round(client_msgs) AS BIGINT),
        server_messages := CAST(round(server_msgs) AS BIGINT),
        client_msg_bytes := round(client_msg_bytes),
        server_msg_bytes := round(server_msg_bytes),
        client_interval_s := round(client_interval_s, 1),
        server_interval_s := round(server_interval_s, 1),
        bytes_per_s := round(bytes_per_s, 1),
        client_iat_cv := round(client_iat_cv, 2)
    )) AS details
FROM hits
ORDER BY ts_start, src_ip, dst_ip, dst_port
"""


@sql_detector(
    DETECTOR_ID,
    VERSION,
    "mining",
    "Persistent, paced, low-rate two-way TCP session of small messages to one peer: "
    "the flow shape of pool mining, payload unseen (TLS, proxies, VPN)",
    reads=("flows",),
)
def periodic_low_rate(params: dict) -> str:
    return behaviour_sql(params)


def run(con, params: dict | None = None):
    """Evidence rows (Arrow table, without the columns the engine adds) for the `flows`
    table or view of a DuckDB connection."""
    return con.sql(behaviour_sql(params)).to_arrow_table()


def flagged_flows(con, params: dict | None = None):
    """(source_file, flow_ref) of every flow that belongs to a flagged session: the raw
    records behind each evidence row."""
    return con.sql(f"""
        WITH hits AS ({behaviour_sql(params)}),
        f AS (
            SELECT source_file, flow_ref, ts_start, ts_end,
                   CASE WHEN src_port < dst_port THEN dst_ip ELSE src_ip END AS client_ip,
                   CASE WHEN src_port < dst_port THEN src_ip ELSE dst_ip END AS server_ip,
                   CASE WHEN src_port < dst_port THEN src_port ELSE dst_port END AS server_port
            FROM flows WHERE ip_proto = 6 AND src_port <> dst_port
        )
        SELECT DISTINCT f.source_file, f.flow_ref
        FROM f JOIN hits h
          ON f.client_ip = h.src_ip AND f.server_ip = h.dst_ip AND f.server_port = h.dst_port
         AND f.ts_start >= h.ts_start AND f.ts_end <= h.ts_end
        ORDER BY 1, 2
    """).to_arrow_table()

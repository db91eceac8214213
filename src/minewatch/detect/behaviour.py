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
              across idle-timeout splits and reconnects while gaps stay <= max_gap_s,
              within one UTC day) lasts >= min_span_s;
  two-way     >= min_msgs messages each way (shares up, jobs down);
  paced       mean interval between client messages within [min_interval_s,
              max_interval_s], and between server messages within [min_interval_s,
              max_server_interval_s]: not interactive bursts, not idle keep-alives;
  low rate    payload bytes of both sides together <= max_bytes_per_s over the span;
  small msgs  mean client message within [min_client_msg_bytes, max_client_msg_bytes],
              mean server message within [min_server_msg_bytes, max_server_msg_bytes];
  one conn    at most max_reconnects_per_10min reconnects per 10 minutes (browsers and
              chat clients open connection after connection; a miner keeps one);
  held        at least one flow record of the session lasts >= min_flow_s (a held
              connection shows up as long records whatever the exporter's active
              timeout; a string of sub-second connections is a poller, not a miner);
  listening   the server's port is below the dynamic range (IANA 49152-65535): a pool is
              a configured service on a chosen port (3333, 4444, 14444, 443, 10128...);
              a listener on a dynamic port is a P2P peer's or a callback's;
  steady      where the source measures application messages (pcap, nfstream: payload
              segments < 5 ms apart merged, columns src_msgs, src_msg_size_*,
              src_msg_iat_* and dst_ equivalents), three more facts must hold:
                - client message sizes vary little (CV <= max_client_size_cv): shares are
                  fixed-format lines; chat, web and P2P content is heavy-tailed (CV >= 1);
                - client message intervals are Poisson-like (CV <= max_msg_iat_cv): shares
                  arrive as a Poisson process (CV 1), a vardiff retarget mixes two rates;
                - server message intervals too: replies to shares plus job pushes on new
                  blocks are superposed Poisson processes, not relay bursts;
              where only the src side's payload-packet timing is known (older data), its
              CV <= max_iat_cv (v1: a share split in two segments gives sqrt(3)); flow
              exporters (NetFlow, Zeek) give neither and only the other rules apply.

A miner configured with a backup pool may hold that connection too: it logs in and then
only listens to jobs. Alone, that shape is any push channel; so a session that meets every
rule on the server side, the rate and the connection, but carries fewer than min_msgs
client messages (at least one: the login), is reported only while the same client holds a
full-shape session to another endpoint at the same time ("backup pool", details.beside).

"Messages" are application messages where the source counts them, payload packets
where it counts only those, half the packets otherwise (NetFlow, Zeek: each message
draws an ACK in a paced exchange). The server is the side with the lower port (pool
ports 3333, 443, 14444 are below any ephemeral port), so a flow split by an idle
timeout, whose later records start with a server packet, still joins the right session.

Speed: the session-building window functions are the expensive part, so they run only
on candidate flows: those of a (client, server, server port) that has a held flow record
(necessary for any session inside). On realistic traffic that is a few percent of the
flows (7% of the corpus's TCP flows are held); the rest costs two scans, a filter and a
hash join (bench/behaviour_speed.py). A further filter on the group's span and message
counts before the windows was measured and dropped: it kept as many rows, and sharing
the joined flows between it and the windows made DuckDB materialise them.

Sessions end at UTC midnight (by the day each flow record starts): a miner running for a
week is one evidence row a day. A day's evidence then depends on that day's flows only, so
`minewatch detect --since DAY` can redo the days from DAY on, reading only their
partitions, and get what a run over everything would give for them.

Crypto P2P (Bitcoin peers on 8333) has this shape too. The detector does not read the
evidence table to drop flows that a payload detector already called crypto_p2p: its
result must depend on flows and its own version only (the same on every engine and on
a re-run); a host with both kinds of evidence is resolved in the findings.

The result is one evidence row per session, category `mining` at moderate
confidence (shape alone, no protocol proof): it ranks a host for review and adds to
payload or intel evidence in the per-host finding; it does not convict on its own.
"""

from __future__ import annotations

from minewatch.detect import sql_detector

DETECTOR_ID = "beh.periodic_low_rate"
VERSION = 5  # v5: sessions end at UTC midnight; v4: no server in the dynamic port range; v3: backup pools; v2: message rules, held connections

# Thresholds, each from the physics above; measured in bench/behaviour_eval.py (.md).
DEFAULTS: dict[str, float] = {
    "max_gap_s": 900,  # a reconnect or idle-timeout split within 15 min is the same session
    "min_span_s": 180,  # three minutes: several share and job periods
    "min_flow_s": 20,  # a held connection: exporters cut records at >= 60 s (active timeout)
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
    "max_iat_cv": 1.8,  # per payload packet (no message view): Poisson 1.0, split shares sqrt(3)
    "max_client_size_cv": 1.0,  # fixed-format shares << 1; exponential sizes give 1, content > 1
    "max_msg_iat_cv": 1.5,  # per message: Poisson 1.0; a 4x vardiff retarget mid-session gives 1.3
    "max_server_port": 49151,  # pools listen on configured ports; 49152-65535 is IANA's dynamic range
}


def _params(params: dict | None) -> dict[str, float]:
    merged = dict(DEFAULTS)
    for key, value in (params or {}).items():
        if key in DEFAULTS:
            merged[key] = float(value)
    return merged


def _side(server: bool, column: str) -> str:
    """`column` of the server side (`server`) or the client side of a flow, as SQL."""
    when_src_serves, otherwise = ("src", "dst") if server else ("dst", "src")
    return f"CASE WHEN server_is_src THEN {when_src_serves}_{column} ELSE {otherwise}_{column} END"


def _message_sums(role: str, server: bool) -> str:
    """Per flow, the sums a session needs to pool one side's message statistics:
    n, n*mean and n*(std^2 + mean^2) of sizes, and the same of intervals (n - 1 of them)."""
    n, size_mean, size_std = _side(server, "msgs"), _side(server, "msg_size_mean"), _side(server, "msg_size_std")
    iat_mean, iat_std = _side(server, "msg_iat_mean_ms"), _side(server, "msg_iat_std_ms")
    return f"""
        CASE WHEN {size_mean} IS NOT NULL THEN {n} END AS {role}_sz_n,
        {n} * {size_mean} AS {role}_sz_sum,
        {n} * ({size_std} * {size_std} + {size_mean} * {size_mean}) AS {role}_sz_sq,
        CASE WHEN {iat_mean} IS NOT NULL THEN {n} - 1 END AS {role}_it_n,
        ({n} - 1) * {iat_mean} AS {role}_it_sum,
        ({n} - 1) * ({iat_std} * {iat_std} + {iat_mean} * {iat_mean}) AS {role}_it_sq"""


def _pooled_cv(role: str, kind: str) -> str:
    """Coefficient of variation of one side's message sizes or intervals over a session."""
    n, total, sq = f"sum({role}_{kind}_n)", f"sum({role}_{kind}_sum)", f"sum({role}_{kind}_sq)"
    return (f"CASE WHEN {n} > 0 AND {total} > 0 THEN sqrt(greatest({sq} / {n} - ({total} / {n}) * ({total} / {n}), 0))"
            f" / ({total} / {n}) END")


def _key_join(left: str, right: str) -> str:
    return (f"{left}.client_ip = {right}.client_ip AND {left}.server_ip = {right}.server_ip"
            f" AND {left}.server_port = {right}.server_port")


def behaviour_sql(params: dict | None = None) -> str:
    """The detector's SELECT (DuckDB dialect) over a `flows` table or view."""
    p = _params(params)
    held = f"ts_end >= ts_start + INTERVAL '{int(p['min_flow_s'])}' SECOND"
    # messages of a side: application messages, else payload packets, else half the packets
    client_msgs = ("CASE WHEN server_is_src THEN coalesce(dst_msgs, dst_payload_packets, dst_packets / 2.0, 0) "
                   "ELSE coalesce(src_msgs, src_payload_packets, src_packets / 2.0, 0) END")
    server_msgs = ("CASE WHEN server_is_src THEN coalesce(src_msgs, src_payload_packets, src_packets / 2.0, 0) "
                   "ELSE coalesce(dst_msgs, dst_payload_packets, dst_packets / 2.0, 0) END")
    # TCP flows with their (client, server, server port) key, written out twice below
    # rather than shared as a CTE: engines materialise a CTE used twice, and this one is
    # every TCP flow; the per-flow arithmetic is done only after the join
    keyed = f"""
    SELECT source_file, flow_ref, ts_start, ts_end, server_is_src,
        src_packets, dst_packets, src_bytes, dst_bytes, src_payload_packets, dst_payload_packets,
        src_payload_bytes, dst_payload_bytes, src_iat_mean_ms, src_iat_std_ms,
        src_msgs, src_msg_size_mean, src_msg_size_std, src_msg_iat_mean_ms, src_msg_iat_std_ms,
        dst_msgs, dst_msg_size_mean, dst_msg_size_std, dst_msg_iat_mean_ms, dst_msg_iat_std_ms,
        CASE WHEN server_is_src THEN dst_ip ELSE src_ip END AS client_ip,
        CASE WHEN server_is_src THEN dst_port ELSE src_port END AS client_port,
        CASE WHEN server_is_src THEN src_ip ELSE dst_ip END AS server_ip,
        CASE WHEN server_is_src THEN src_port ELSE dst_port END AS server_port,
        CASE WHEN {held} THEN 1 ELSE 0 END AS held
    FROM (SELECT *, src_port < dst_port AS server_is_src FROM flows
          WHERE ip_proto = 6 AND src_port IS NOT NULL AND dst_port IS NOT NULL AND src_port <> dst_port) AS tcp"""
    return f"""
WITH held_keys AS (  -- (client, server, port) with a held connection: a small set
    SELECT DISTINCT client_ip, server_ip, server_port FROM ({keyed}) AS k
    WHERE held = 1 AND server_port <= {int(p['max_server_port'])}
),
candidates AS (  -- every flow of those (client, server, port), oriented client -> server
    SELECT
        k.source_file, k.flow_ref, k.ts_start, k.ts_end, k.client_ip, k.client_port, k.server_ip,
        k.server_port, k.held, CAST(k.ts_start AS DATE) AS session_day,
        {client_msgs} AS client_msgs,
        {server_msgs} AS server_msgs,
        -- flow-only sources lack payload bytes: IP + TCP headers take >= 40 bytes a packet
        CASE WHEN server_is_src THEN coalesce(dst_payload_bytes, greatest(dst_bytes - 40 * dst_packets, 0), 0)
             ELSE coalesce(src_payload_bytes, greatest(src_bytes - 40 * src_packets, 0), 0) END AS client_bytes,
        CASE WHEN server_is_src THEN coalesce(src_payload_bytes, greatest(src_bytes - 40 * src_packets, 0), 0)
             ELSE coalesce(dst_payload_bytes, greatest(dst_bytes - 40 * dst_packets, 0), 0) END AS server_bytes,
        -- no message view: payload-packet inter-arrival statistics exist for the src side
        -- only; keep them when src is the client and sent enough packets to mean something
        CASE WHEN src_msgs IS NULL AND NOT server_is_src AND src_iat_mean_ms > 0 AND src_payload_packets >= 5
             THEN src_iat_std_ms / src_iat_mean_ms END AS client_pkt_iat_cv,{_message_sums("client", False)},{_message_sums("server", True)}
    FROM ({keyed}) AS k JOIN held_keys h ON {_key_join("k", "h")}
),
gaps AS (
    SELECT *,
        CASE WHEN ts_start <= max(ts_end) OVER (PARTITION BY client_ip, server_ip, server_port, session_day
                                                ORDER BY ts_start, flow_ref
                                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
                              + INTERVAL '{int(p['max_gap_s'])}' SECOND
             THEN 0 ELSE 1 END AS new_session
    FROM candidates
),
numbered AS (
    SELECT *,
        sum(new_session) OVER (PARTITION BY client_ip, server_ip, server_port, session_day ORDER BY ts_start, flow_ref
                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_no
    FROM gaps
),
sessions AS (
    SELECT
        client_ip, server_ip, server_port, session_day, session_no,
        -- the session's first flow (the one that opened it) names the source
        max(CASE WHEN new_session = 1 THEN source_file END) AS source_file,
        max(CASE WHEN new_session = 1 THEN flow_ref END) AS first_flow_ref,
        count(*) AS n_flows,
        count(DISTINCT client_port) AS n_connections,
        max(held) AS held,
        min(ts_start) AS ts_start,
        max(ts_end) AS ts_end,
        greatest(date_diff('second', min(ts_start), max(ts_end)), 1) AS span_s,
        sum(client_msgs) AS client_msgs,
        sum(server_msgs) AS server_msgs,
        sum(client_bytes) AS client_bytes,
        sum(server_bytes) AS server_bytes,
        sum(client_pkt_iat_cv * client_msgs) / sum(CASE WHEN client_pkt_iat_cv IS NOT NULL THEN client_msgs END)
            AS client_pkt_iat_cv,
        sum(client_sz_n) AS client_sized_msgs,
        {_pooled_cv("client", "sz")} AS client_size_cv,
        {_pooled_cv("client", "it")} AS client_msg_iat_cv,
        {_pooled_cv("server", "it")} AS server_msg_iat_cv
    FROM numbered
    GROUP BY client_ip, server_ip, server_port, session_day, session_no
),
shaped AS (
    SELECT *,
        span_s / nullif(client_msgs, 0) AS client_interval_s,
        span_s / nullif(server_msgs, 0) AS server_interval_s,
        (client_bytes + server_bytes) / span_s AS bytes_per_s,
        client_bytes / nullif(client_msgs, 0) AS client_msg_bytes,
        server_bytes / nullif(server_msgs, 0) AS server_msg_bytes,
        -- the message view counts when it covers most of the session's client messages
        coalesce(client_sized_msgs, 0) >= 0.5 * client_msgs AS has_messages
    FROM sessions
    WHERE server_msgs >= {p['min_msgs']} AND client_msgs >= 1 AND held = 1 AND span_s >= {p['min_span_s']}
),
paced_feed AS (  -- the rules on the server side, the connection and the rate: shared by both kinds
    SELECT * FROM shaped
    WHERE server_interval_s BETWEEN {p['min_interval_s']} AND {p['max_server_interval_s']}
      AND bytes_per_s <= {p['max_bytes_per_s']}
      AND server_msg_bytes BETWEEN {p['min_server_msg_bytes']} AND {p['max_server_msg_bytes']}
      AND (n_connections - 1) * 600 <= {p['max_reconnects_per_10min']} * span_s
      AND (NOT has_messages OR coalesce(server_msg_iat_cv, 0) <= {p['max_msg_iat_cv']})
),
hits AS (  -- shares up and jobs down: the whole shape
    SELECT * FROM paced_feed
    WHERE client_msgs >= {p['min_msgs']}
      AND client_interval_s BETWEEN {p['min_interval_s']} AND {p['max_interval_s']}
      AND client_msg_bytes BETWEEN {p['min_client_msg_bytes']} AND {p['max_client_msg_bytes']}
      AND (has_messages OR client_pkt_iat_cv IS NULL OR client_pkt_iat_cv <= {p['max_iat_cv']})
      AND (NOT has_messages OR (
              coalesce(client_size_cv, 0) <= {p['max_client_size_cv']}
          AND coalesce(client_msg_iat_cv, 0) <= {p['max_msg_iat_cv']}))
),
backups AS (  -- a backup pool: logged in, then only listening to jobs, while the same
              -- client mines on another endpoint at the same time
    SELECT b.client_ip, b.server_ip, b.server_port, b.session_day, b.session_no,
           min(h.server_ip || ':' || CAST(h.server_port AS VARCHAR)) AS beside
    FROM paced_feed b JOIN hits h
      ON b.client_ip = h.client_ip AND b.ts_start < h.ts_end AND h.ts_start < b.ts_end
     AND NOT (b.server_ip = h.server_ip AND b.server_port = h.server_port)
    WHERE b.client_msgs < {p['min_msgs']}
    GROUP BY b.client_ip, b.server_ip, b.server_port, b.session_day, b.session_no
),
found AS (
    SELECT *, CAST(NULL AS VARCHAR) AS beside FROM hits
    UNION ALL
    SELECT f.*, b.beside FROM paced_feed f JOIN backups b
      ON f.client_ip = b.client_ip AND f.server_ip = b.server_ip AND f.server_port = b.server_port
     AND f.session_day = b.session_day AND f.session_no = b.session_no
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
    -- shape alone: 0.5, more for a longer session and for a measured message view
    CAST(0.5 + CASE WHEN span_s >= 3600 THEN 0.1 WHEN span_s >= 900 THEN 0.05 ELSE 0 END
             + CASE WHEN has_messages THEN 0.1 WHEN client_pkt_iat_cv IS NOT NULL THEN 0.05 ELSE 0 END
         AS DOUBLE) AS confidence,
    'medium' AS severity,
    'TCP session to ' || server_ip || ':' || CAST(server_port AS VARCHAR) || ' for '
        || CASE WHEN span_s >= 3600
                THEN CAST(span_s // 3600 AS VARCHAR) || ' h ' || CAST((span_s % 3600) // 60 AS VARCHAR) || ' min'
                ELSE CAST(span_s // 60 AS VARCHAR) || ' min ' || CAST(span_s % 60 AS VARCHAR) || ' s' END
        || CASE WHEN beside IS NOT NULL
                THEN ': logged in (' || CAST(CAST(round(client_msgs) AS BIGINT) AS VARCHAR)
                     || ' client messages), then only received jobs'
                ELSE ': small client messages (' || CAST(CAST(round(client_msg_bytes) AS BIGINT) AS VARCHAR)
        || CASE WHEN has_messages
                THEN ' B, size spread ' || CAST(CAST(round(100 * client_size_cv) AS BIGINT) AS VARCHAR) || '%'
                ELSE ' B' END
        || ') every ' || CAST(CAST(round(client_interval_s) AS BIGINT) AS VARCHAR) || ' s'
        || CASE WHEN has_messages AND client_msg_iat_cv IS NOT NULL
                THEN ' (jitter ' || CAST(CAST(round(100 * client_msg_iat_cv) AS BIGINT) AS VARCHAR) || '%)'
                WHEN NOT has_messages AND client_pkt_iat_cv IS NOT NULL
                THEN ' (jitter ' || CAST(CAST(round(100 * client_pkt_iat_cv) AS BIGINT) AS VARCHAR) || '%)'
                ELSE '' END END
        || CASE WHEN beside IS NOT NULL THEN ' every ' ELSE ', server pushes every ' END || CAST(CAST(round(server_interval_s) AS BIGINT) AS VARCHAR) || ' s'
        || CASE WHEN has_messages AND server_msg_iat_cv IS NOT NULL
                THEN ' (jitter ' || CAST(CAST(round(100 * server_msg_iat_cv) AS BIGINT) AS VARCHAR) || '%)'
                ELSE '' END
        || ', ' || CAST(CAST(round(bytes_per_s) AS BIGINT) AS VARCHAR) || ' B/s'
        || CASE WHEN n_connections > 1 THEN ', ' || CAST(n_connections - 1 AS VARCHAR) || ' reconnects' ELSE '' END
        || CASE WHEN beside IS NOT NULL
                THEN ', while the same host mined on ' || beside || ': a backup pool connection'
                ELSE ': shape of pool mining' END AS summary,
    to_json(struct_pack(
        basis := CASE WHEN has_messages THEN 'flow shape, messages' ELSE 'flow shape' END,
        kind := CASE WHEN beside IS NOT NULL THEN 'backup pool' ELSE 'mining session' END,
        beside := beside,
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
        client_size_cv := CASE WHEN has_messages THEN round(client_size_cv, 2) END,
        client_iat_cv := round(CASE WHEN has_messages THEN client_msg_iat_cv ELSE client_pkt_iat_cv END, 2),
        server_iat_cv := CASE WHEN has_messages THEN round(server_msg_iat_cv, 2) END
    )) AS details
FROM found
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

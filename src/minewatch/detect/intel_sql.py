"""Pool intelligence over sensor logs, as SQL: names in DNS, TLS and HTTP records, and
flows to listed pool addresses. The log counterparts of intel.pool_domain / intel.pool_ip
(detect/intel.py), with the same confidences and summaries.

Written in the DuckDB subset that sqlglot renders for Spark (see engine/dialect.py):
no negative indexes, regexes without backslashes, JSON built by concatenation of
values restricted to safe characters plus precomputed provenance (details_tail).
"""

from __future__ import annotations

from minewatch.detect import sql_detector
from minewatch.detect.intel import CONFIDENCE, IP_CONFIDENCE, SEEN_AS_TEXT

# Host names we match: lowercase DNS characters only, so they go into JSON as they are.
NAME_SHAPE = "^[a-z0-9_-]+([.][a-z0-9_-]+)+$"


def _case(column: str, mapping: dict, default: str) -> str:
    arms = " ".join(f"WHEN '{key}' THEN {value}" for key, value in mapping.items())
    return f"CASE {column} {arms} ELSE {default} END"


@sql_detector("intel.pool_domain_log", 1, "mining_pool_contact",
              "DNS query/answer, TLS server name or HTTP Host in sensor logs naming a listed mining pool",
              reads=("dns", "tls", "http"))
def pool_domain_log(params: dict) -> str:
    seen = ("dns", "dns_cname", "tls_sni", "http_host")
    confidence = _case("r.seen_as", {k: CONFIDENCE.get(k, 0.7) for k in seen}, "0.7")
    text = _case("r.seen_as", {k: f"'{SEEN_AS_TEXT[k]}'" for k in seen}, "'seen'")
    return f"""
WITH names AS (
    -- query and server_name are lowercase without a trailing dot (schema contract);
    -- answers and HTTP Host are normalised here
    SELECT source_file, record_ref, ts, client_ip AS src_ip, client_port AS src_port,
           server_ip AS dst_ip, server_port AS dst_port, l4, query AS host_name, 'dns' AS seen_as
    FROM dns WHERE query IS NOT NULL
    UNION ALL
    SELECT source_file, record_ref, ts, src_ip, src_port, dst_ip, dst_port, l4,
           regexp_replace(lower(answer), '[.]$', '') AS host_name, 'dns_cname' AS seen_as
    FROM (SELECT source_file, record_ref, ts, client_ip AS src_ip, client_port AS src_port,
                 server_ip AS dst_ip, server_port AS dst_port, l4, unnest(answers) AS answer
          FROM dns WHERE answers IS NOT NULL) AS a
    WHERE answer NOT LIKE '%:%' AND NOT (right(answer, 1) BETWEEN '0' AND '9')  -- not an address
    UNION ALL
    SELECT source_file, record_ref, ts, src_ip, src_port, dst_ip, dst_port, 'TCP' AS l4,
           server_name AS host_name, 'tls_sni' AS seen_as
    FROM tls WHERE server_name IS NOT NULL
    UNION ALL
    SELECT source_file, record_ref, ts, src_ip, src_port, dst_ip, dst_port, 'TCP' AS l4,
           regexp_replace(regexp_replace(lower(host), ':[0-9]+$', ''), '[.]$', '') AS host_name,
           'http_host' AS seen_as
    FROM http WHERE host IS NOT NULL
), hits AS (
    SELECT k.*, d.category, d.description, d.details_tail,
           row_number() OVER (PARTITION BY k.source_file, k.record_ref, k.seen_as, k.host_name
                              ORDER BY CASE WHEN d.match = 'exact' THEN 0 ELSE 1 END, length(d.domain) DESC) AS pick
    -- the join key is the name's last two labels: an equi-join with the (small) list,
    -- so each record costs one regex and one hash probe whatever the list's size
    FROM names AS k
    JOIN intel_domains AS d ON d.tail2 = regexp_extract(k.host_name, '[^.]+[.][^.]+$', 0)
    WHERE (k.host_name = d.domain OR (d.match = 'suffix' AND right(k.host_name, length(d.domain) + 1) = '.' || d.domain))
      AND regexp_matches(k.host_name, '{NAME_SHAPE}')
)
SELECT
    r.source_file,
    'line ' || CAST(r.record_ref AS VARCHAR) AS source_ref,
    r.ts AS ts_start,
    r.ts AS ts_end,
    r.src_ip, r.src_port, r.dst_ip, r.dst_port, r.l4,
    r.category,
    {confidence} AS confidence,
    CASE WHEN r.seen_as LIKE 'dns%' OR r.category = 'browser_mining' THEN 'medium' ELSE 'high' END AS severity,
    {text} || ' ' || r.host_name || ' (' || r.description || ')' AS summary,
    '{{"seen_as":"' || r.seen_as || '","pool_host":"' || r.host_name || '",'
        || CASE WHEN p.port IS NULL THEN '' ELSE '"miner_port":' || CAST(p.port AS VARCHAR) || ',' END
        || r.details_tail || '}}' AS details
FROM hits AS r
LEFT JOIN miner_ports AS p ON p.port = r.dst_port AND r.seen_as NOT LIKE 'dns%'
WHERE r.pick = 1
"""


@sql_detector("intel.pool_ip_log", 1, "mining_pool_contact",
              "flow record to (or from) an IP, network or IP:port on a pool address list",
              reads=("flows",))
def pool_ip_log(params: dict) -> str:
    # Both directions are looked up (unidirectional NetFlow has pool -> client records);
    # per flow the dst side wins, then an ip:port entry over a bare IP, then the longest prefix.
    return f"""
WITH hits AS (
    SELECT f.source_file, f.flow_ref, f.ts_start, f.ts_end, f.l4,
           f.src_ip AS miner_ip, f.src_port AS miner_port, f.dst_ip AS pool_ip, f.dst_port AS pool_port,
           i.port AS listed_port, i.prefix_len, i.indicator, i.category, i.description, i.details_tail, 0 AS side
    FROM flows AS f JOIN intel_ips AS i ON f.dst_ip = i.ip AND (i.port IS NULL OR i.port = f.dst_port)
    UNION ALL
    SELECT f.source_file, f.flow_ref, f.ts_start, f.ts_end, f.l4,
           f.dst_ip AS miner_ip, f.dst_port AS miner_port, f.src_ip AS pool_ip, f.src_port AS pool_port,
           i.port AS listed_port, i.prefix_len, i.indicator, i.category, i.description, i.details_tail, 1 AS side
    FROM flows AS f JOIN intel_ips AS i ON f.src_ip = i.ip AND (i.port IS NULL OR i.port = f.src_port)
), ranked AS (
    SELECT h.*, row_number() OVER (
        PARTITION BY h.source_file, h.flow_ref
        ORDER BY h.side, CASE WHEN h.listed_port IS NULL THEN 1 ELSE 0 END, h.prefix_len DESC) AS pick
    FROM hits AS h
)
SELECT
    r.source_file,
    'flow ' || CAST(r.flow_ref AS VARCHAR) AS source_ref,
    r.ts_start, r.ts_end,
    r.miner_ip AS src_ip, r.miner_port AS src_port, r.pool_ip AS dst_ip, r.pool_port AS dst_port, r.l4,
    r.category,
    {IP_CONFIDENCE} AS confidence,
    'medium' AS severity,
    'connection to ' || r.pool_ip || ':' || coalesce(CAST(r.pool_port AS VARCHAR), '-')
        || ' listed as ' || r.indicator || ' (' || r.description || ')' AS summary,
    '{{"seen_as":"ip","pool_ip":"' || r.pool_ip || '","pool_port":'
        || coalesce(CAST(r.pool_port AS VARCHAR), 'null') || ','
        || CASE WHEN p.port IS NULL THEN '' ELSE '"miner_port":' || CAST(p.port AS VARCHAR) || ',' END
        || r.details_tail || '}}' AS details
FROM ranked AS r
LEFT JOIN miner_ports AS p ON p.port = r.pool_port
WHERE r.pick = 1
"""

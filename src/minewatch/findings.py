"""Evidence -> one finding per host: everything seen about it, with a combined confidence.

The aggregation is SQL (DuckDB over Arrow) so that the same statement serves a scan's
in-memory evidence and, later, a workspace's evidence tables.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import duckdb
import pyarrow as pa

DEFAULT_HOME_NETS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")

# Combined confidence: noisy-OR over the strongest hit of each detector for the host.
HOST_FINDINGS_SQL = """
WITH per_detector AS (
    SELECT host, internal, detector, max(confidence) AS confidence
    FROM evidence GROUP BY host, internal, detector
), combined AS (
    SELECT host, internal, 1 - product(1 - confidence) AS confidence
    FROM per_detector GROUP BY host, internal
)
SELECT
    e.host,
    e.internal,
    c.confidence,
    list(DISTINCT e.category ORDER BY e.category) AS categories,
    list(DISTINCT e.detector ORDER BY e.detector) AS detectors,
    list(DISTINCT json_extract_string(e.details, '$.dialect') ORDER BY 1)
        FILTER (WHERE json_extract_string(e.details, '$.dialect') IS NOT NULL) AS dialects,
    list(DISTINCT json_extract_string(e.details, '$.coin') ORDER BY 1)
        FILTER (WHERE json_extract_string(e.details, '$.coin') IS NOT NULL) AS coins,
    list(DISTINCT coalesce(json_extract_string(e.details, '$.pool_host'), e.dst_ip)
                  || CASE WHEN e.dst_port IS NULL THEN '' ELSE ':' || e.dst_port END ORDER BY 1)
        FILTER (WHERE e.category IN ('mining', 'mining_pool_contact')) AS pools,
    list(DISTINCT json_extract_string(e.details, '$.agent') ORDER BY 1)
        FILTER (WHERE json_extract_string(e.details, '$.agent') IS NOT NULL) AS agents,
    list(DISTINCT json_extract_string(e.details, '$.worker') ORDER BY 1)
        FILTER (WHERE json_extract_string(e.details, '$.worker') IS NOT NULL) AS workers,
    count(DISTINCT e.source_file || '#' || e.source_ref) AS flows,
    min(e.ts_start) AS first_seen,
    max(e.ts_end) AS last_seen
FROM evidence e JOIN combined c USING (host, internal)
GROUP BY e.host, e.internal, c.confidence
-- Outside HOME_NET, only clients of mining or pools are of interest (not every P2P peer).
HAVING e.internal OR bool_or(e.category IN ('mining', 'mining_pool_contact', 'browser_mining'))
ORDER BY e.internal DESC, list_contains(list(DISTINCT e.category), 'mining') DESC, c.confidence DESC, e.host
"""


@dataclass
class HomeNet:
    networks: list

    @classmethod
    def parse(cls, cidrs) -> "HomeNet":
        from minewatch.errors import UsageError

        nets = []
        for text in cidrs or DEFAULT_HOME_NETS:
            try:
                nets.append(ipaddress.ip_network(text.strip(), strict=False))
            except ValueError:
                raise UsageError(f"--home-net {text!r} is not a CIDR (e.g. 10.0.0.0/8)") from None
        return cls(nets)

    def contains(self, ip: str | None) -> bool:
        if not ip:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr.version == n.version and addr in n for n in self.networks)


def host_findings(evidence: pa.Table, home: HomeNet) -> list[dict]:
    """One row per host: the miner side of each evidence row, internal hosts first."""
    if evidence.num_rows == 0:
        return []
    src = evidence.column("src_ip").to_pylist()
    dst = evidence.column("dst_ip").to_pylist()
    hosts, internal = [], []
    for s, d in zip(src, dst):
        # The detector put the miner/client on the src side; if only dst is ours, it is ours to report.
        if not home.contains(s) and home.contains(d):
            hosts.append(d)
            internal.append(True)
        else:
            hosts.append(s)
            internal.append(home.contains(s))
    table = evidence.append_column("host", pa.array(hosts, pa.string())).append_column(
        "internal", pa.array(internal, pa.bool_())
    )
    con = duckdb.connect()
    try:
        con.register("evidence", table)
        return con.sql(HOST_FINDINGS_SQL).to_arrow_table().to_pylist()
    finally:
        con.close()

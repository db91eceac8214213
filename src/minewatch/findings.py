"""Evidence -> one finding per host (or per address prefix, `Prefixes`): everything seen
about it, with a combined confidence.

The aggregation is SQL (DuckDB over Arrow) so that the same statement serves a scan's
in-memory evidence and, later, a workspace's evidence tables.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import duckdb
import pyarrow as pa

DEFAULT_HOME_NETS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")

# Detectors that judge by flow shape alone (no payload, no indicator): a host with no other
# evidence is a lead to look at, `shape_only` in its finding, listed after the proven ones.
SHAPE_DETECTOR_PREFIX = "beh."

# Combined confidence: noisy-OR over the strongest hit of each detector for the host.
HOST_FINDINGS_SQL = """
WITH e AS (
    SELECT host, address, internal, detector, category, confidence, source_file, source_ref, ts_start, ts_end,
           summary,
           json_extract_string(details, '$.dialect') AS dialect,
           json_extract_string(details, '$.coin') AS coin,
           json_extract_string(details, '$.agent') AS agent,
           json_extract_string(details, '$.worker') AS worker,
           CASE WHEN category NOT IN ('mining', 'mining_pool_contact') THEN NULL
                -- a DNS sighting names the pool, but its address is the resolver's
                WHEN dst_port IN (53, 5353, 5355) OR json_extract_string(details, '$.seen_as') LIKE 'dns%'
                THEN json_extract_string(details, '$.pool_host')
                ELSE coalesce(json_extract_string(details, '$.pool_host'), dst_ip)
                     || CASE WHEN dst_port IS NULL THEN '' ELSE ':' || CAST(dst_port AS VARCHAR) END
           END AS pool
    FROM evidence
), per_detector AS (
    SELECT host, internal, detector, max(confidence) AS confidence, count(*) AS n,
           first(summary ORDER BY confidence DESC, ts_start, source_file, source_ref) AS strongest
    FROM e GROUP BY host, internal, detector
), combined AS (
    -- the explanation: each detector's strongest evidence, strongest detector first
    SELECT host, internal, 1 - product(1 - confidence) AS confidence,
           string_agg(detector || CASE WHEN n > 1 THEN ' (' || CAST(n AS VARCHAR) || ' records)' ELSE '' END
                      || ': ' || coalesce(strongest, ''), '; ' ORDER BY confidence DESC, detector) AS explanation
    FROM per_detector GROUP BY host, internal
)
SELECT
    e.host,
    e.internal,
    c.confidence,
    c.explanation,
    list(DISTINCT e.address ORDER BY e.address) AS hosts,
    list(DISTINCT e.category ORDER BY e.category) AS categories,
    list(DISTINCT e.detector ORDER BY e.detector) AS detectors,
    list(DISTINCT e.dialect ORDER BY e.dialect) FILTER (WHERE e.dialect IS NOT NULL) AS dialects,
    list(DISTINCT e.coin ORDER BY e.coin) FILTER (WHERE e.coin IS NOT NULL) AS coins,
    list(DISTINCT e.pool ORDER BY e.pool) FILTER (WHERE e.pool IS NOT NULL) AS pools,
    list(DISTINCT e.agent ORDER BY e.agent) FILTER (WHERE e.agent IS NOT NULL) AS agents,
    list(DISTINCT e.worker ORDER BY e.worker) FILTER (WHERE e.worker IS NOT NULL) AS workers,
    count(DISTINCT e.source_file || '#' || e.source_ref) AS flows,
    min(e.ts_start) AS first_seen,
    max(e.ts_end) AS last_seen,
    bool_and(starts_with(e.detector, '{shape}')) AS shape_only
FROM e JOIN combined c USING (host, internal)
GROUP BY e.host, e.internal, c.confidence, c.explanation
-- Outside HOME_NET, only clients of mining or pools are of interest (not every P2P peer).
HAVING e.internal OR bool_or(e.category IN ('mining', 'mining_pool_contact', 'browser_mining'))
ORDER BY e.internal DESC, list_contains(list(DISTINCT e.category), 'mining') DESC, shape_only, c.confidence DESC,
         e.host
""".replace("{shape}", SHAPE_DETECTOR_PREFIX)


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


@dataclass(frozen=True)
class Prefixes:
    """Group findings by network instead of by address: behind DHCP or a carrier-grade NAT
    a miner's address changes, its subscriber prefix does not. None keeps single hosts."""

    v4: int | None = None
    v6: int | None = None

    @classmethod
    def parse(cls, v4: int | None, v6: int | None) -> "Prefixes":
        from minewatch.errors import UsageError

        if v4 is not None and not 8 <= v4 <= 32:
            raise UsageError(f"--prefix must be 8..32 (IPv4 prefix length), not {v4}")
        if v6 is not None and not 16 <= v6 <= 128:
            raise UsageError(f"--prefix6 must be 16..128 (IPv6 prefix length), not {v6}")
        return cls(v4, v6 if v6 is not None else (64 if v4 is not None else None))

    def group(self, ip: str) -> str:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return ip
        length = self.v4 if addr.version == 4 else self.v6
        if length is None:
            return ip
        return str(ipaddress.ip_network(f"{addr}/{length}", strict=False))


def host_findings(evidence: pa.Table, home: HomeNet, prefixes: Prefixes = Prefixes()) -> list[dict]:
    """One row per host (or prefix) of an in-memory evidence table (a scan's)."""
    if evidence.num_rows == 0:
        return []
    con = duckdb.connect()
    try:
        con.register("scan_evidence", evidence)
        return host_findings_in(con, "scan_evidence", home, prefixes)
    finally:
        con.close()


def host_findings_in(con: duckdb.DuckDBPyConnection, relation: str, home: HomeNet,
                     prefixes: Prefixes = Prefixes()) -> list[dict]:
    """HOST_FINDINGS_SQL over an evidence relation (view or table) already known to `con`,
    e.g. a workspace's Parquet. Rows stay in DuckDB: only the distinct addresses come to
    Python, to be placed inside or outside HOME_NET (and in their prefix), and go back as
    a small join table."""
    addresses = con.sql(
        f"SELECT DISTINCT ip FROM (SELECT src_ip AS ip FROM {relation} UNION SELECT dst_ip FROM {relation}) "
        "WHERE ip IS NOT NULL").fetchall()
    ips = [row[0] for row in addresses]
    con.register("_home_ips", pa.table({"ip": pa.array(ips, pa.string()),
                                        "home": pa.array([home.contains(ip) for ip in ips], pa.bool_()),
                                        "grp": pa.array([prefixes.group(ip) for ip in ips], pa.string())}))
    # Same rule as host_findings: the src side is the miner unless only the dst side is ours.
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW evidence AS
        SELECT e.*,
               CASE WHEN NOT coalesce(s.home, false) AND coalesce(d.home, false) THEN d.grp ELSE coalesce(s.grp, e.src_ip) END AS host,
               CASE WHEN NOT coalesce(s.home, false) AND coalesce(d.home, false) THEN e.dst_ip ELSE e.src_ip END AS address,
               coalesce(s.home, false) OR coalesce(d.home, false) AS internal
        FROM {relation} AS e
        LEFT JOIN _home_ips AS s ON s.ip = e.src_ip
        LEFT JOIN _home_ips AS d ON d.ip = e.dst_ip""")
    try:
        return con.sql(HOST_FINDINGS_SQL).to_arrow_table().to_pylist()
    finally:
        con.execute("DROP VIEW IF EXISTS evidence")
        con.unregister("_home_ips")

"""IDS alerts about coin mining (Suricata with the ET / ET Open rule sets) as evidence.

ET names these rules "ET COINMINER ...", "ET POLICY Cryptocurrency Miner Checkin",
"... Stratum ...", "... XMRig ...", and files them under the classtype whose text is
"Crypto Currency Mining Activity Detected". A rule saying the miner checked in or
logged in is mining itself; the rest (pool DNS look-ups, pool contact) is contact.
Browser-mining services (Coinhive and its kin) are their own category.
"""

from __future__ import annotations

from minewatch.detect import sql_detector

MINING_TERMS = (
    "coinminer", "coin miner", "coin-miner", "cryptominer", "crypto miner", "cryptocurrency miner",
    "crypto currency miner", "crypto currency mining", "cryptocurrency mining", "coin mining",
    "stratum", "xmrig", "xmr-stak", "monero mining", "mining pool", "minerd", "cpuminer", "nicehash",
)
BROWSER_TERMS = ("coinhive", "cryptoloot", "crypto-loot", "coin-hive", "jsecoin", "webminepool")
CHECKIN_TERMS = ("checkin", "check-in", "check in", "login", "logged in", "log in", "authline", "authorize")


def _any(column: str, terms: tuple[str, ...]) -> str:
    return "(" + " OR ".join(f"{column} LIKE '%{t}%'" for t in terms) + ")"


@sql_detector("ids.coin_miner_alert", 1, "mining_pool_contact",
              "Suricata/ET alert whose signature or category names coin mining (CoinMiner, Stratum, XMRig...)",
              reads=("alerts",))
def coin_miner_alert(params: dict) -> str:
    text = "lower(coalesce(a.signature, '') || ' ' || coalesce(a.category, ''))"
    sig = "lower(coalesce(a.signature, ''))"
    return f"""
WITH matched AS (
    SELECT a.*,
           CASE WHEN {_any(text, BROWSER_TERMS)} THEN 'browser_mining'
                WHEN {_any(sig, CHECKIN_TERMS)} THEN 'mining'
                ELSE 'mining_pool_contact' END AS evidence_category
    FROM alerts AS a
    WHERE {_any(text, MINING_TERMS + BROWSER_TERMS)}
)
SELECT
    m.source_file,
    'line ' || CAST(m.record_ref AS VARCHAR) AS source_ref,
    m.ts AS ts_start,
    m.ts AS ts_end,
    m.src_ip, m.src_port, m.dst_ip, m.dst_port, m.l4,
    m.evidence_category AS category,
    CASE m.evidence_category WHEN 'mining' THEN 0.85 ELSE 0.7 END AS confidence,
    CASE m.evidence_category WHEN 'mining' THEN 'high' ELSE 'medium' END AS severity,
    'IDS alert: ' || coalesce(m.signature, '(no signature)')
        || ' (sid ' || coalesce(CAST(m.signature_id AS VARCHAR), '-') || ')' AS summary,
    CAST(to_json(struct_pack(
        seen_as := 'ids_alert',
        signature_id := m.signature_id,
        signature := m.signature,
        alert_category := m.category,
        alert_severity := m.severity
    )) AS VARCHAR) AS details
FROM matched AS m
"""

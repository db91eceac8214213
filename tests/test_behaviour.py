"""beh.periodic_low_rate: mining told by flow shape alone, payload withheld.

Positives: the real mining sessions of nDPI's mining.pcapng (bundled as a demo capture)
and a loopback TLS replay of real stratum sessions (tests/data/behaviour). Negatives:
the near-miss shapes of the corpus (chat, Tor, web, SSH, remote desktop, C&C beacons),
every Slips flow, and every non-mining nDPI flow within the target false-positive rate.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from minewatch.detect import SQL_REGISTRY
from minewatch.detect.behaviour import DETECTOR_ID, VERSION, behaviour_sql, flagged_flows, run
from minewatch.schema.evidence import EVIDENCE
from minewatch.schema.flows import FLOWS, MESSAGE_FIELDS
from minewatch.sources import ReadStats
from minewatch.sources.pcap import UnsupportedCapture, read_pcap

REPO = Path(__file__).resolve().parents[1]
MINING_CAPTURE = REPO / "src/minewatch/demo/captures/mining.pcapng"
REPLAY_CAPTURE = REPO / "tests/data/behaviour/replay_tls_stratum.pcap"
HEADS = ("src_payload_head", "dst_payload_head")
ENGINE_COLUMNS = ("detector", "detector_version", "source_sha256")

# the three sessions of mining.pcapng that mine actively: (client, server, server port)
ACTIVE_MINING = {
    ("147.229.13.222", "185.71.66.39", 9999),  # Ethereum getWork stratum
    ("192.168.2.92", "178.32.196.217", 9050),  # CryptoNote / xmrig login
    ("192.168.2.148", "94.23.199.191", 3333),  # Zcash (Equihash) stratum
}
# its fourth, 192.168.2.148 -> 116.211.167.195:3333, is a backup pool: the miner logs in
# and then only listens to jobs (4 client messages in 18 min) while it mines on
# 94.23.199.191:3333. Alone, that shape is a push channel; beside a mining session of the
# same host at the same time, it is the miner's failover pool.
FAILOVER = ("192.168.2.148", "116.211.167.195", 3333)


def capture_flows(path: Path, keep_heads: bool = False) -> pa.Table:
    """Flows of a capture through the project's reader, payload heads withheld by default."""
    try:
        batches = list(read_pcap(path, stats=ReadStats(str(path))))
    except UnsupportedCapture:
        from minewatch.sources.nfstream_source import read_nfstream

        batches = list(read_nfstream(path, stats=ReadStats(str(path))))
    table = pa.Table.from_batches(batches, schema=FLOWS)
    if not keep_heads:
        for name in HEADS:
            table = table.set_column(table.schema.get_field_index(name), name, pa.nulls(table.num_rows, pa.binary()))
    return table


def detect(flows: pa.Table, params: dict | None = None) -> list[dict]:
    con = duckdb.connect()
    con.register("flows", flows)
    return run(con, params).to_pylist()


def sessions(rows: list[dict]) -> set[tuple]:
    return {(r["src_ip"], r["dst_ip"], r["dst_port"]) for r in rows}


@pytest.fixture(scope="module")
def mining_flows() -> pa.Table:
    return capture_flows(MINING_CAPTURE)


def null_columns(table: pa.Table, names) -> pa.Table:
    for name in names:
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i), pa.nulls(table.num_rows, table.schema.field(i).type))
    return table


def test_registered_as_a_flows_sql_detector():
    det = SQL_REGISTRY[DETECTOR_ID]
    assert det.reads == ("flows",)  # not the evidence table: a function of flows and its version
    assert det.version == VERSION == 5
    assert det.category == "mining"
    assert "payload_head" not in det.sql({})  # encrypted traffic: the heads are never read


def test_columns_are_the_evidence_columns_the_detector_owns(mining_flows):
    con = duckdb.connect()
    con.register("flows", mining_flows)
    table = run(con)
    assert table.column_names == [f.name for f in EVIDENCE if f.name not in ENGINE_COLUMNS]
    assert set(table.column("category").to_pylist()) == {"mining"}
    assert all(0.5 <= c < 0.8 for c in table.column("confidence").to_pylist())  # shape alone: moderate


def test_sql_has_no_known_spark_pitfalls_and_translates():
    from minewatch.engine.dialect import portability_problems, to_dialect

    sql = behaviour_sql()
    assert portability_problems(sql) == []
    pytest.importorskip("sqlglot")
    spark = to_dialect(sql, "spark")
    upper = spark.upper()
    assert "EPOCH" not in upper and "STRUCT_PACK" not in upper and "QUALIFY" not in upper
    assert "INTERVAL '900' SECOND" in spark  # the session gap, as Spark writes an interval


def test_real_mining_sessions_found_with_payload_withheld(mining_flows):
    rows = detect(mining_flows)
    assert sessions(rows) == ACTIVE_MINING | {FAILOVER}
    kinds = {(r["src_ip"], r["dst_ip"], r["dst_port"]): json.loads(r["details"])["kind"] for r in rows}
    assert kinds.pop(FAILOVER) == "backup pool"
    assert set(kinds.values()) == {"mining session"}


def test_same_evidence_whether_or_not_payload_is_present(mining_flows):
    with_heads = capture_flows(MINING_CAPTURE, keep_heads=True)
    assert detect(with_heads) == detect(mining_flows)


def test_summary_states_the_shape():
    rows = {r["dst_port"]: r for r in detect(capture_flows(MINING_CAPTURE))}
    summary = rows[9050]["summary"]
    assert summary.startswith("TCP session to 178.32.196.217:9050 for 19 min 14 s: ")
    assert "every 34 s (jitter 105%)" in summary and summary.endswith("shape of pool mining")
    assert '"client_messages":34' in rows[9050]["details"]


def test_flagged_flows_are_the_records_behind_the_evidence(mining_flows):
    con = duckdb.connect()
    con.register("flows", mining_flows)
    refs = set(flagged_flows(con).column("flow_ref").to_pylist())
    by_ref = {r["flow_ref"]: r for r in mining_flows.to_pylist()}
    assert {(by_ref[i]["src_ip"], by_ref[i]["dst_ip"], by_ref[i]["dst_port"]) for i in refs} == ACTIVE_MINING | {FAILOVER}


def test_flow_export_without_payload_counts_still_finds_the_sessions(mining_flows):
    """NetFlow/IPFIX give packets and IP bytes only: no payload counts, no inter-arrival times."""
    table = null_columns(mining_flows, ("src_payload_packets", "dst_payload_packets", "src_payload_bytes",
                                        "dst_payload_bytes", "src_iat_mean_ms", "src_iat_std_ms") + MESSAGE_FIELDS)
    rows = detect(table)
    assert ACTIVE_MINING <= sessions(rows)
    assert all(r["confidence"] <= 0.6 for r in rows)  # no timing evidence: lower confidence


def test_without_message_columns_the_v1_rules_apply(mining_flows):
    """Flows ingested before the reader measured messages: payload-packet counts and the
    src side's packet timing decide, as in version 1."""
    older = null_columns(mining_flows, MESSAGE_FIELDS)
    rows = detect(older)
    assert sessions(rows) == ACTIVE_MINING | {FAILOVER}
    assert all(0.55 <= r["confidence"] <= 0.65 and '"basis":"flow shape"' in r["details"] for r in rows)
    assert detect(older, {"max_iat_cv": 0.5}) == []  # the packet-timing rule decides here
    assert sessions(detect(older, {"max_client_size_cv": 0.01, "max_msg_iat_cv": 0.01})) == ACTIVE_MINING | {FAILOVER}


def test_each_threshold_can_veto(mining_flows):
    assert detect(mining_flows, {"min_span_s": 24 * 3600}) == []
    assert detect(mining_flows, {"max_bytes_per_s": 5}) == []
    assert detect(mining_flows, {"max_msg_iat_cv": 0.5}) == []  # message timing is Poisson-like, CV ~ 1
    assert detect(mining_flows, {"min_flow_s": 24 * 3600}) == []
    assert sessions(detect(mining_flows, {"max_client_size_cv": 0.2})) == {
        ("192.168.2.92", "178.32.196.217", 9050)}  # xmrig's submits vary least (CV 0.07)
    assert sessions(detect(mining_flows, {"max_iat_cv": 0.01})) == ACTIVE_MINING | {FAILOVER}  # not with messages
    # the Equihash shares are 2.9 KB; without that session its host's backup pool goes too
    assert sessions(detect(mining_flows, {"max_client_msg_bytes": 1000})) == ACTIVE_MINING - {
        ("192.168.2.148", "94.23.199.191", 3333)}


def test_empty_and_odd_flows_give_no_error():
    assert detect(FLOWS.empty_table()) == []
    row = {f.name: None for f in FLOWS}
    row.update(source_file="x", flow_ref=0, ts_start=0, ts_end=0, src_ip="10.0.0.1", dst_ip="10.0.0.2",
               ip_proto=6, src_port=40000, dst_port=3333, src_packets=0, dst_packets=0)
    udp = dict(row, flow_ref=1, ip_proto=17, l4="UDP")
    no_ports = dict(row, flow_ref=2, src_port=None, dst_port=None)
    assert detect(pa.Table.from_pylist([row, udp, no_ports], schema=FLOWS)) == []


def test_replayed_tls_stratum_sessions_found():
    """Real stratum message sizes and timing replayed through TLS on loopback (see the
    README beside the capture): only record sizes and times are visible. Port 13301 is
    the Ethereum session over TLS 1.3, 13308 the xmrig session over TLS 1.2, 13305 the
    Zcash session over TLS 1.3 and 13303 the same host's failover connection."""
    flows = capture_flows(REPLAY_CAPTURE)
    replayed = {r["dst_port"] for r in flows.to_pylist() if r["dst_ip"] == "127.0.0.1"}
    assert replayed == {13301, 13303, 13305, 13308}
    rows = detect(flows)
    assert {(r["dst_ip"], r["dst_port"]) for r in rows} == {("127.0.0.1", p) for p in replayed}
    assert all(r["confidence"] >= 0.55 for r in rows)  # inter-arrival statistics were available
    kinds = {r["dst_port"]: json.loads(r["details"]) for r in rows}
    assert kinds[13303]["kind"] == "backup pool" and kinds[13303]["beside"] == "127.0.0.1:13305"
    assert {kinds[p]["kind"] for p in (13301, 13305, 13308)} == {"mining session"}


# --- negatives from the shared corpus --------------------------------------------------

NEAR_MISSES = ("jabber.pcap", "threema.pcap", "tor.pcap", "android.pcap", "ssh.pcap", "teamviewer.pcap",
               "wechat.pcap", "hpvirtgrp.pcap", "kafka.pcapng", "whatsapp_login_call.pcap", "reddit.pcap")


@pytest.mark.parametrize("name", NEAR_MISSES)
def test_near_miss_shapes_are_not_mining(corpus, name):
    """Long, low-rate two-way sessions that are not mining: chat, Tor, web, SSH, push."""
    assert detect(capture_flows(corpus / "ndpi" / "pcap" / name)) == []


def test_no_evidence_on_slips(corpus):
    from minewatch.sources._records import SourceStats
    from minewatch.sources.zeek import read_zeek

    slips = corpus / "slips"
    tables = [capture_flows(p) for p in sorted(slips.rglob("*.pcap"))]
    for log in sorted(slips.rglob("conn.log*")):
        batches = [b for kind, b in read_zeek(log, stats=SourceStats(str(log))) if kind == "flows"]
        tables += [pa.Table.from_batches(batches, schema=FLOWS)] if batches else []
    flows = pa.concat_tables(tables)
    assert flows.num_rows > 1000
    assert detect(flows) == []


def test_false_positive_rate_on_every_other_corpus_flow(corpus):
    tables = []
    for path in sorted((corpus / "ndpi" / "pcap").iterdir()):
        if path.name == "mining.pcapng":
            continue
        try:
            tables.append(capture_flows(path))
        except Exception as exc:  # noqa: BLE001 - a capture the readers reject is not a negative
            if type(exc).__name__ not in ("InputError", "UnsupportedCapture"):
                raise
    flows = pa.concat_tables(tables)
    con = duckdb.connect()
    con.register("flows", flows)
    flagged = flagged_flows(con).num_rows
    assert flows.num_rows > 5000
    assert flagged <= 0.001 * flows.num_rows, f"{flagged} of {flows.num_rows} negative flows flagged"


# --- hand-built sessions: the message rules and the held-connection rule ---------------

T0 = 1_700_000_000_000_000  # microseconds


def flow_row(ref: int, start_s: float, dur_s: float, client_port: int = 40000, **columns) -> dict:
    """A client -> pool TCP flow with stratum-like counts; `columns` override any field."""
    row = {f.name: None for f in FLOWS}
    msgs = max(2, int(dur_s / 20))  # a share up and a job down every 20 s
    row.update(source_file="hand.pcap", flow_ref=ref, ts_start=T0 + int(start_s * 1e6),
               ts_end=T0 + int((start_s + dur_s) * 1e6), src_ip="10.0.0.5", dst_ip="198.51.100.7",
               src_port=client_port, dst_port=3333, ip_proto=6, l4="TCP",
               src_packets=2 * msgs, dst_packets=2 * msgs, src_bytes=msgs * 260, dst_bytes=msgs * 380,
               src_payload_packets=msgs, dst_payload_packets=msgs, src_payload_bytes=msgs * 180,
               dst_payload_bytes=msgs * 300, src_iat_mean_ms=20000.0, src_iat_std_ms=20000.0,
               src_msgs=msgs, src_msg_size_mean=180.0, src_msg_size_std=15.0, src_msg_iat_mean_ms=20000.0,
               src_msg_iat_std_ms=20000.0, dst_msgs=msgs, dst_msg_size_mean=300.0, dst_msg_size_std=120.0,
               dst_msg_iat_mean_ms=20000.0, dst_msg_iat_std_ms=22000.0)
    row.update(columns)
    return row


def hand_detect(rows: list[dict], params: dict | None = None) -> list[dict]:
    return detect(pa.Table.from_pylist(rows, schema=FLOWS), params)


def test_message_rules_tell_fixed_format_paced_messages_from_content():
    assert len(hand_detect([flow_row(0, 0, 1800)])) == 1  # 30 min of 180-byte shares every 20 s
    # the same counts, but client messages of widely varying size (chat, web, P2P content)
    assert hand_detect([flow_row(0, 0, 1800, src_msg_size_std=400.0)]) == []
    # ... or server messages in bursts (relayed announcements), not Poisson-like
    assert hand_detect([flow_row(0, 0, 1800, dst_msg_iat_std_ms=60000.0)]) == []
    # ... or client messages in bursts
    assert hand_detect([flow_row(0, 0, 1800, src_msg_iat_std_ms=60000.0)]) == []
    # the packet-timing rule of v1 does not apply when messages are measured
    assert len(hand_detect([flow_row(0, 0, 1800, src_iat_std_ms=90000.0)])) == 1


def test_session_joins_a_held_flow_with_its_short_continuations():
    """An idle-timeout split: a held 10-minute record, then two short records of the same
    connection (same client port), one of them started by the server."""
    rows = [flow_row(0, 0, 600),
            flow_row(1, 700, 10, src_msgs=3, dst_msgs=3),
            flow_row(2, 900, 15, src_ip="198.51.100.7", dst_ip="10.0.0.5", src_port=3333, dst_port=40000,
                     src_msgs=2, dst_msgs=2)]
    found = hand_detect(rows)
    assert len(found) == 1
    assert found[0]["source_ref"].startswith("flows from 0 (3 flows of 10.0.0.5 to 198.51.100.7:3333)")


def test_a_listener_on_a_dynamic_port_is_a_peer_not_a_pool():
    """The same 10-minute paced session, once to a pool port and once to a port in the
    dynamic range (a P2P listener: the Gnutella peer of the corpus listens on 50284)."""
    assert len(hand_detect([flow_row(0, 0, 600)])) == 1
    assert hand_detect([flow_row(0, 0, 600, src_port=60001, dst_port=50284)]) == []
    assert len(hand_detect([flow_row(0, 0, 600, src_port=60001, dst_port=49151)])) == 1  # the last registered port
    assert len(hand_detect([flow_row(0, 0, 600, src_port=60001, dst_port=50284)], {"max_server_port": 65535})) == 1


def test_a_poller_of_short_connections_is_not_a_held_session():
    """One 2-second connection every 10 minutes for 3 hours: paced, small, low rate, but no
    connection is held; v1 called this a session, v2 asks for a held record."""
    rows = [flow_row(i, 600 * i, 2, client_port=40000 + i, src_msgs=12, dst_msgs=12, src_payload_packets=12,
                     dst_payload_packets=12, src_payload_bytes=12 * 180, dst_payload_bytes=12 * 300,
                     src_msg_iat_mean_ms=150.0, src_msg_iat_std_ms=100.0, dst_msg_iat_mean_ms=150.0,
                     dst_msg_iat_std_ms=100.0)
            for i in range(18)]
    assert hand_detect(rows) == []
    # without the held rule it is paced mining shape: one session each side of midnight (T0
    # is 22:13 UTC; sessions end at midnight)
    found = hand_detect(rows, {"min_flow_s": 0})
    assert [r["ts_start"].hour for r in found] == [22, 0]


def test_message_statistics_pool_across_the_flows_of_a_session():
    """Two records, each steady on its own, whose message sizes differ (200 vs 2000 bytes):
    pooled, the client's sizes vary widely (CV ~0.8) and the details say so."""
    rows = [flow_row(0, 0, 900, src_msg_size_mean=200.0, src_msg_size_std=10.0, src_payload_bytes=45 * 200),
            flow_row(1, 950, 900, src_msg_size_mean=2000.0, src_msg_size_std=10.0, src_payload_bytes=45 * 2000)]
    found = hand_detect(rows)
    assert len(found) == 1 and '"client_size_cv":0.82' in found[0]["details"]
    assert hand_detect(rows, {"max_client_size_cv": 0.5}) == []


def listener(ref: int, start_s: float, dur_s: float, **columns) -> dict:
    """A logged-in connection that then only receives jobs: 3 client messages, a job
    pushed every 60 s, to another pool endpoint than flow_row's."""
    jobs = int(dur_s / 60)
    shape = dict(src_msgs=3, src_payload_packets=3, src_payload_bytes=3 * 300, src_msg_size_mean=300.0,
                    src_msg_size_std=100.0, src_msg_iat_mean_ms=400000.0, src_msg_iat_std_ms=300000.0,
                    dst_msgs=jobs, dst_payload_packets=jobs, dst_payload_bytes=jobs * 350,
                    dst_msg_size_mean=350.0, dst_msg_size_std=40.0, dst_msg_iat_mean_ms=60000.0,
                    dst_msg_iat_std_ms=57000.0)
    shape.update(columns)
    return flow_row(ref, start_s, dur_s, client_port=41000, dst_ip="203.0.113.9", dst_port=14444, **shape)


def test_a_listening_connection_is_a_backup_pool_only_beside_a_mining_session():
    alone = [listener(1, 0, 1800)]
    assert hand_detect(alone) == []  # a push channel: server messages only
    found = hand_detect([flow_row(0, 100, 1800)] + alone)
    by_port = {r["dst_port"]: r for r in found}
    assert set(by_port) == {3333, 14444}
    backup = by_port[14444]
    assert json.loads(backup["details"])["kind"] == "backup pool"
    assert json.loads(backup["details"])["beside"] == "198.51.100.7:3333"
    assert "then only received jobs every 60 s" in backup["summary"]
    assert backup["summary"].endswith("while the same host mined on 198.51.100.7:3333: a backup pool connection")
    # not at the same time, or another host mining: no backup
    assert len(hand_detect([flow_row(0, 7200, 1800)] + alone)) == 1
    assert len(hand_detect([flow_row(0, 100, 1800, src_ip="10.0.0.6")] + alone)) == 1
    # the listener's own shape still has to hold: bursty pushes are not jobs
    bursty = [listener(1, 0, 1800, dst_msg_iat_std_ms=200000.0)]
    assert len(hand_detect([flow_row(0, 100, 1800)] + bursty)) == 1

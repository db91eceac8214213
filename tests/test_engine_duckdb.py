"""SQL detectors on the embedded engine, host findings and evidence export, end to end."""

import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from minewatch.detect import SQL_REGISTRY, load_all, sql_detector
from minewatch.engine.duckdb import DuckDBEngine, connect
from minewatch.engine.reference import build
from minewatch.intel import IntelSet
from minewatch.schema import EVIDENCE
from minewatch.workspace import Workspace

from test_workspace_ingest import LOGS, DATA, run

POOLS = DATA / "intel" / "pools.txt"
# Other SQL detectors (other teams') may be registered too; these tests check these three.
MINE = ("intel.pool_domain_log", "intel.pool_ip_log", "ids.coin_miner_alert")
ONLY_MINE = [arg for d in MINE for arg in ("--detector", d)]


@pytest.fixture()
def workspace(tmp_path):
    ws = tmp_path / "ws"
    assert run("ingest", LOGS, "--workspace", ws).exit_code == 0
    result = run("detect", "--workspace", ws, "--intel", POOLS, *ONLY_MINE)
    assert result.exit_code == 0, result.output
    return ws


def evidence_rows(ws: Path, detector: str) -> list[dict]:
    folder = ws / "tables" / "evidence" / f"detector_id={detector}"
    files = sorted(folder.rglob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def test_pool_domains_in_dns_tls_http(workspace):
    rows = evidence_rows(workspace, "intel.pool_domain_log")
    seen = sorted((r["src_ip"], json.loads(r["details"])["seen_as"], json.loads(r["details"])["pool_host"]) for r in rows)
    assert seen == [
        ("10.20.0.13", "http_host", "mine.c3pool.com"),
        ("10.20.0.7", "dns", "pool.supportxmr.com"),
        ("10.20.0.7", "tls_sni", "pool.supportxmr.com"),
        ("10.20.0.8", "dns_cname", "gulf.moneroocean.stream"),
        ("10.20.0.8", "tls_sni", "gulf.moneroocean.stream"),  # SNI written in mixed case in the log
    ]
    # label boundary: notsupportxmr.com and www.example.com give nothing
    assert not any("example" in r["summary"] or "notsupportxmr" in r["summary"] for r in rows)
    tls = next(r for r in rows if r["src_ip"] == "10.20.0.7" and r["dst_port"] == 443)
    assert tls["confidence"] == 0.8 and tls["severity"] == "high"
    assert tls["summary"].startswith("TLS connection to pool.supportxmr.com (SupportXMR, Monero pool")
    details = json.loads(tls["details"])
    assert details["indicator"] == "pool.supportxmr.com" and details["indicator_match"] == "exact"
    dns = next(r for r in rows if r["src_ip"] == "10.20.0.7" and r["dst_port"] == 53)
    assert (dns["confidence"], dns["severity"], dns["source_ref"]) == (0.7, "medium", "line 9")
    assert all(r["source_sha256"] and len(r["source_sha256"]) == 64 for r in rows)


def test_pool_ip_from_user_list_both_directions(workspace):
    rows = evidence_rows(workspace, "intel.pool_ip_log")
    assert sorted(r["source_ref"] for r in rows) == ["flow 2", "flow 3"]
    for r in rows:  # the reverse NetFlow record is turned round: the miner is src
        assert (r["src_ip"], r["dst_ip"], r["dst_port"]) == ("10.20.0.20", "203.0.113.50", 3333)
        details = json.loads(r["details"])
        assert details["origin"].endswith("pools.txt:2") and details["miner_port"] == 3333


def test_coin_miner_alerts(workspace):
    rows = sorted(evidence_rows(workspace, "ids.coin_miner_alert"), key=lambda r: r["source_ref"])
    assert [(r["src_ip"], r["category"], r["confidence"]) for r in rows] == [
        ("10.20.0.10", "mining", 0.85),  # "Miner Checkin": the miner logged in
        ("10.20.0.11", "mining_pool_contact", 0.7),  # pool DNS lookup
    ]
    assert json.loads(rows[0]["details"])["signature_id"] == 2024792  # the curl alert is not evidence


def test_findings_one_row_per_host(workspace):
    result = run("findings", "--workspace", workspace, "--since", "2026-11-01", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    hosts = {h["host"]: h for h in map(json.loads, result.output.splitlines())}
    assert set(hosts) == {"10.20.0.7", "10.20.0.8", "10.20.0.10", "10.20.0.11", "10.20.0.13", "10.20.0.20"}
    assert hosts["10.20.0.7"]["flows"] == 2
    # the DNS sighting names the pool without the resolver's port; the TLS one has the pool's port
    assert sorted(hosts["10.20.0.7"]["pools"]) == ["pool.supportxmr.com", "pool.supportxmr.com:443"]
    assert hosts["10.20.0.10"]["categories"] == ["mining"]
    # the explanation: each detector's strongest record (TLS 0.8 beats DNS 0.7), and how many
    assert hosts["10.20.0.7"]["explanation"].startswith(
        "intel.pool_domain_log (2 records): TLS connection to pool.supportxmr.com")
    assert hosts["10.20.0.10"]["explanation"] == "ids.coin_miner_alert: IDS alert: ET POLICY Cryptocurrency Miner Checkin (sid 2024792)"
    assert run("findings", "--workspace", workspace, "--since", "2026-11-02", "--format", "jsonl").output == ""
    assert run("findings", "--workspace", workspace, "--until", "2026-10-31", "--format", "jsonl").output == ""
    table = run("findings", "--workspace", workspace)
    assert "10.20.0.7" in table.output and "pool.supportxmr.com" in table.output


def test_findings_grouped_by_prefix_combine_their_hosts(workspace):
    single = {h["host"]: h for h in map(json.loads, run("findings", "--workspace", workspace, "--format", "jsonl")
                                           .output.splitlines())}
    assert all(h["hosts"] == [name] for name, h in single.items())
    result = run("findings", "--workspace", workspace, "--prefix", "28", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    grouped = {h["host"]: h for h in map(json.loads, result.output.splitlines())}
    assert set(grouped) == {"10.20.0.0/28", "10.20.0.16/28"}  # .7 .8 .10 .11 .13 | .20
    low = grouped["10.20.0.0/28"]
    assert low["hosts"] == ["10.20.0.10", "10.20.0.11", "10.20.0.13", "10.20.0.7", "10.20.0.8"]
    assert low["flows"] == sum(single[h]["flows"] for h in low["hosts"])
    assert low["confidence"] >= max(single[h]["confidence"] for h in low["hosts"])
    assert "10.20.0.0/28 (5 hosts)" in run("findings", "--workspace", workspace, "--prefix", "28").output
    bad = run("findings", "--workspace", workspace, "--prefix", "40")
    assert bad.exit_code != 0 and "--prefix must be 8..32" in str(bad.exception)  # main() prints it in one line


def test_evidence_export_same_format_as_scan(workspace, tmp_path):
    out = tmp_path / "evidence.jsonl"
    result = run("evidence", "--workspace", workspace, "--output", out, "--category", "mining")
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert records and {r["category"] for r in records} == {"mining"}
    run("evidence", "--workspace", workspace, "--output", out, "--category", "mining",
        "--detector", "ids.coin_miner_alert")
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(records) == 1 and records[0]["detector"] == "ids.coin_miner_alert"
    assert list(records[0]) == EVIDENCE.names and isinstance(records[0]["details"], dict)
    pq_out = tmp_path / "evidence.parquet"
    run("evidence", "--workspace", workspace, "--output", pq_out, "--detector", "intel.pool_domain_log",
        "--since", "2026-11-01T08:01:00Z")
    table = pq.read_table(pq_out)
    assert table.schema.equals(EVIDENCE) and table.num_rows == 3


def test_detect_twice_replaces_evidence(workspace):
    first = evidence_rows(workspace, "intel.pool_domain_log")
    assert run("detect", "--workspace", workspace, "--intel", POOLS, *ONLY_MINE).exit_code == 0
    assert len(evidence_rows(workspace, "intel.pool_domain_log")) == len(first)
    # without the user list, its IP evidence goes away on the next run
    assert run("detect", "--workspace", workspace, *ONLY_MINE).exit_code == 0
    assert evidence_rows(workspace, "intel.pool_ip_log") == []


def test_a_failing_detector_is_reported_and_the_others_run(workspace):
    @sql_detector("test.broken_sql", 1, "mining", "deliberately wrong SQL", reads=("flows",))
    def broken(params):
        return "SELECT no_such_column FROM flows"

    try:
        result = run("detect", "--workspace", workspace, *ONLY_MINE, "--detector", "test.broken_sql")
        assert result.exit_code == 1
        assert "detector test.broken_sql failed" in result.output
        assert evidence_rows(workspace, "ids.coin_miner_alert")  # still written
    finally:
        SQL_REGISTRY.pop("test.broken_sql")


def test_unreachable_spark_master_is_refused_clearly(workspace):
    result = run("detect", "--workspace", workspace, "--engine", "spark", "--spark-master", "spark://x:7077")
    assert "cannot reach the Spark master" in str(result.exception)


def test_not_a_workspace(tmp_path):
    result = run("findings", "--workspace", tmp_path / "nothing")
    assert "not a workspace" in str(result.exception)


def test_slips_corpus_gives_no_mining_evidence(tmp_path, corpus):
    slips = corpus / "slips"
    ws = tmp_path / "ws"
    inputs = [slips / d / n for d in ("test9-mixed-zeek-dir", "test10-mixed-zeek-dir")
              for n in ("conn.log", "dns.log", "ssl.log")]
    inputs += [slips / "test9-mixed-zeek-dir" / "http.log", slips / "test15-malicious-zeek-dir" / "ssl.log",
               slips / "test6-malicious.suricata.json"]
    assert run("ingest", *inputs, "--workspace", ws).exit_code == 0
    report = DuckDBEngine(Workspace(ws), IntelSet.load()).run(list(MINE))
    assert not report.failed
    assert [r.rows for r in report.results] == [0, 0, 0]
    con = connect(Workspace(ws))
    try:  # the logs were really read, so the zero above means something
        assert con.sql("SELECT count(*) FROM dns").fetchall()[0][0] > 300
        assert con.sql("SELECT count(*) FROM tls").fetchall()[0][0] > 400
        assert con.sql("SELECT count(*) FROM alerts").fetchall()[0][0] > 0
    finally:
        con.close()


def test_reference_tables_expand_small_networks_and_report_large(tmp_path):
    lst = tmp_path / "nets.txt"
    lst.write_text("198.51.100.0/30\n10.0.0.0/8\npool.example.org:4444\n")
    ref = build(IntelSet.load([str(lst)], include_bundled=False))
    ips = ref.tables["intel_ips"].column("ip").to_pylist()
    assert ips == ["198.51.100.0", "198.51.100.1", "198.51.100.2", "198.51.100.3"]
    assert any("10.0.0.0/8" in p for p in ref.problems)
    assert ref.tables["intel_domains"].to_pylist()[0]["tail2"] == "example.org"


def test_every_sql_detector_is_registered_by_load_all():
    load_all()
    assert {"intel.pool_domain_log", "intel.pool_ip_log", "ids.coin_miner_alert"} <= set(SQL_REGISTRY)
    assert "intel.miner_port_pattern" not in SQL_REGISTRY


def test_findings_combine_packet_and_log_evidence(workspace):
    from test_workspace_ingest import MINING_PCAP

    assert run("ingest", MINING_PCAP, "--workspace", workspace).exit_code == 0
    result = run("findings", "--workspace", workspace, "--format", "jsonl")
    hosts = [json.loads(x) for x in result.output.splitlines()]
    from_packets = [h for h in hosts if h["dialects"]]
    assert from_packets and all("proto.stratum_v1" in h["detectors"] or "proto.cryptonote" in h["detectors"]
                                or "proto.eth_stratum" in h["detectors"] for h in from_packets)
    assert {"10.20.0.7", "10.20.0.20"} <= {h["host"] for h in hosts}  # the log findings are still there


def test_flows_written_before_new_columns_still_run_every_detector(tmp_path):
    """A workspace whose flows Parquet predates the message columns reads them as NULL."""
    import pyarrow.parquet as pq

    from minewatch.demo import CAPTURES

    ws = tmp_path / "ws"
    assert run("ingest", str(CAPTURES / "mining.pcapng"), "--workspace", ws, "-q").exit_code == 0
    for part in (ws / "tables" / "flows").rglob("*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.select([c for c in table.column_names if "_msg" not in c]), part)
    result = run("detect", "--workspace", ws)
    assert result.exit_code == 0, result.output
    assert "failed" not in result.output


def test_evidence_format_from_the_file_name_or_a_clear_error(workspace, tmp_path):
    from minewatch.errors import UsageError
    from minewatch.output import choose_format

    assert [choose_format(name, None) for name in ("e.jsonl", "e.json", "e.CSV", "e.parquet", "e", "e.txt", "-")] == [
        "jsonl", "jsonl", "csv", "parquet", "jsonl", "jsonl", "jsonl"]
    with pytest.raises(UsageError, match=r"cannot tell the output format from '\.xlsx'"):
        choose_format("evidence.xlsx", None)
    assert choose_format("evidence.xlsx", "csv") == "csv"
    result = run("evidence", "--workspace", workspace, "--output", tmp_path / "e.xlsx")
    assert result.exit_code != 0 and not (tmp_path / "e.xlsx").exists()


def test_findings_new_since_leave_out_hosts_seen_before(tmp_path):
    header = ["#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-", "#path\tdns",
              "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\ttrans_id\tquery\tqtype_name",
              "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\tstring\tstring"]
    day = lambda d: int(datetime(2026, 10, d, 12, tzinfo=timezone.utc).timestamp())  # noqa: E731
    rows = [f"{day(30)}.0\tC1\t10.1.0.5\t5000\t10.1.0.1\t53\tudp\t1\tpool.supportxmr.com\tA",  # seen before
            f"{day(31) + 86400 * 2}.0\tC2\t10.1.0.5\t5001\t10.1.0.1\t53\tudp\t2\tpool.supportxmr.com\tA",
            f"{day(31) + 86400 * 2}.0\tC3\t10.1.0.6\t5002\t10.1.0.1\t53\tudp\t3\tpool.supportxmr.com\tA"]  # new
    log = tmp_path / "dns.log"
    log.write_text("\n".join(header + rows) + "\n")
    ws = tmp_path / "ws"
    assert run("ingest", log, "--workspace", ws).exit_code == 0
    assert run("detect", "--workspace", ws, "--intel", POOLS, *ONLY_MINE).exit_code == 0
    def hosts(*options):
        result = run("findings", "--workspace", ws, "--format", "jsonl", *options)
        assert result.exit_code == 0, result.output
        return sorted(json.loads(x)["host"] for x in result.output.splitlines())
    assert hosts("--since", "2026-11-01") == ["10.1.0.5", "10.1.0.6"]  # both active since
    assert hosts("--since", "2026-11-01", "--new") == ["10.1.0.6"]  # only the newcomer
    assert hosts("--since", "2026-10-01", "--new") == ["10.1.0.5", "10.1.0.6"]

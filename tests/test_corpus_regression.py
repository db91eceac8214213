"""Regression over the whole nDPI capture corpus: every flow nDPI labels Mining is found,
and nothing else is called mining unless a person checked it (listed below with why)."""

import csv

import pyarrow as pa
import pytest

from minewatch.detect import Context
from minewatch.intel import IntelSet
from minewatch.scan import Scanner

# Flows outside nDPI's Mining label that minewatch calls mining, each checked by hand:
# (pcap, sorted endpoint pair) -> reason.
CHECKED_MINING = {}


def _key(a: str, b: str) -> tuple:
    return tuple(sorted((a, b)))


def _endpoint(ip, port) -> str:
    return f"[{ip}]:{port}" if ip and ":" in ip else f"{ip}:{port}"


@pytest.fixture(scope="module")
def corpus_scan(corpus):
    pcaps = sorted((corpus / "ndpi" / "pcap").iterdir())
    scanner = Scanner(Context(intel=IntelSet.load()))
    tables = [t for p in pcaps for t in scanner.scan_file(str(p))]
    evidence = pa.concat_tables(tables)
    labels = list(csv.DictReader(open(corpus / "ndpi" / "ndpi_flows.csv", newline="")))
    return scanner.report, evidence, labels


def _mining_rows(evidence):
    rows = evidence.filter(pa.compute.equal(evidence["category"], "mining")).to_pylist()
    for r in rows:
        r["pcap"] = r["source_file"].rsplit("/", 1)[-1]
        r["pair"] = _key(_endpoint(r["src_ip"], r["src_port"]), _endpoint(r["dst_ip"], r["dst_port"]))
    return rows


def test_every_ndpi_mining_flow_is_found(corpus_scan):
    _, evidence, labels = corpus_scan
    found = {(r["pcap"], r["pair"]) for r in _mining_rows(evidence)}
    expected = {(l["pcap"], _key(l["endpoint_a"], l["endpoint_b"])) for l in labels if l["ndpi_category"] == "Mining"}
    assert len(expected) == 4
    assert expected <= found, f"missed: {expected - found}"


def test_no_mining_evidence_on_other_flows(corpus_scan):
    _, evidence, labels = corpus_scan
    ndpi_mining = {(l["pcap"], _key(l["endpoint_a"], l["endpoint_b"])) for l in labels if l["ndpi_category"] == "Mining"}
    unexpected = [
        (r["pcap"], r["pair"], r["detector"], r["summary"])
        for r in _mining_rows(evidence)
        if (r["pcap"], r["pair"]) not in ndpi_mining and (r["pcap"], r["pair"]) not in CHECKED_MINING
    ]
    assert unexpected == []


def test_whole_corpus_is_read_without_crash(corpus_scan):
    report, _, _ = corpus_scan
    assert len(report.files) >= 500
    assert report.detector_errors == []
    # Files that fail must be the deliberately broken ones, each with a reason.
    for stats in report.failed:
        assert stats.error, stats.path
    assert len(report.failed) <= 10, [(s.path, s.error) for s in report.failed]
    assert sum(s.packets_read for s in report.files) > 100_000

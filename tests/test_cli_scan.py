"""`minewatch scan` end to end through the real command line (subprocess), on bundled captures."""

import csv
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from minewatch.demo import CAPTURES

MINING = CAPTURES / "mining.pcapng"


def run(*args, cwd=None):
    proc = subprocess.run(
        [sys.executable, "-m", "minewatch", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env={**os.environ, "COLUMNS": "200"},
    )
    return proc


def test_scan_writes_jsonl_evidence_with_required_fields(tmp_path):
    out = tmp_path / "findings.jsonl"
    proc = run("scan", MINING, "--output", out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records
    required = {"source_file", "source_sha256", "ts_start", "ts_end", "src_ip", "src_port", "dst_ip", "dst_port",
                "l4", "detector", "detector_version", "category", "confidence", "summary", "details"}
    for r in records:
        assert required <= r.keys()
        assert 0 <= r["confidence"] <= 1
        assert isinstance(r["details"], dict)
        assert len(r["source_sha256"]) == 64
    mining = [r for r in records if r["category"] == "mining"]
    assert {r["dst_port"] for r in mining} >= {3333, 9999}


def test_scan_summary_table_names_hosts_and_inputs(tmp_path):
    proc = run("scan", CAPTURES, "--home-net", "0.0.0.0/0")
    assert proc.returncode == 0, proc.stderr
    assert "192.168.2.148" in proc.stdout
    assert "packets read" in proc.stdout
    assert "evidence records" in proc.stdout


@pytest.mark.parametrize("ext,reader", [(".csv", "csv"), (".parquet", "parquet")])
def test_scan_output_formats(tmp_path, ext, reader):
    out = tmp_path / f"e{ext}"
    assert run("scan", MINING, "-o", out, "-q").returncode == 0
    if reader == "csv":
        rows = list(csv.DictReader(out.open()))
    else:
        rows = pq.read_table(out).to_pylist()
    assert any(r["category"] == "mining" for r in rows)


def test_scan_to_stdout_is_pure_jsonl():
    proc = run("scan", MINING, "--output", "-")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines and all(json.loads(line)["detector"] for line in lines)


def test_bad_inputs_each_get_one_line_and_the_rest_is_scanned(tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    text = tmp_path / "notes.pcap"
    text.write_text("this is not a capture\n" * 10)
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(MINING.read_bytes()[:50_000])
    missing = tmp_path / "missing.pcap"
    out = tmp_path / "e.jsonl"
    proc = run("scan", empty, text, cut, missing, MINING, "-o", out)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4, proc.stderr
    for name in ("empty.pcap", "notes.pcap", "cut.pcapng", "missing.pcap"):
        assert sum(name in line for line in errors) == 1
    # the good file and the readable part of the cut one still gave evidence
    sources = {json.loads(l)["source_file"] for l in out.read_text().splitlines()}
    assert str(MINING) in sources
    assert "inputs failed" in proc.stdout


def test_usage_errors_exit_2_without_traceback(tmp_path):
    for args in (["scan"], ["scan", MINING, "--home-net", "not-a-cidr"], ["scan", MINING, "-o", tmp_path / "x", "--format", "xml"]):
        proc = run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip()


def test_detectors_command_lists_stable_ids():
    proc = run("detectors")
    assert proc.returncode == 0
    for det_id in ("proto.stratum_v1", "proto.cryptonote", "intel.pool_domain", "p2p.bitcoin"):
        assert det_id in proc.stdout


def test_folder_scan_skips_non_captures_and_counts_them(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.pcapng").write_bytes(MINING.read_bytes())
    (tmp_path / "readme.txt").write_text("hello")
    proc = run("scan", tmp_path, "-o", tmp_path / "e.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert "files skipped in folders" in proc.stdout


def test_intel_lists_missing_file_and_bad_lines(tmp_path):
    proc = run("scan", MINING, "--intel", tmp_path / "nope.txt", "-q")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "nope.txt" in proc.stderr
    good = tmp_path / "pools.txt"
    good.write_text("# my pools\n94.23.199.191:3333\nthis is not an indicator line at all\n")
    proc = run("scan", MINING, "--intel", good, "-o", tmp_path / "e.jsonl", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "pools.txt:3" in proc.stderr  # the bad line, by file and line number
    records = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert any(r["detector"] == "intel.pool_ip" and r["dst_ip"] == "94.23.199.191" for r in records)


def test_wallets_are_short_unless_asked(tmp_path):
    short = run("scan", MINING, "-o", "-").stdout
    full = run("scan", MINING, "-o", "-", "--show-wallets").stdout
    assert "…" in short
    long_logins = [json.loads(l)["details"].get("worker", "") for l in full.splitlines()]
    assert any(len(w) > 90 for w in long_logins)


def test_names_with_brackets_are_printed_as_given(tmp_path):
    """File names and messages are the user's text, not console markup."""
    bad = tmp_path / "day[1] [bold]capture.pcap"
    bad.write_bytes(b"not a capture at all, just text" * 4)
    r = run("scan", str(bad), str(tmp_path / "missing[red].pcap"), "--output", str(tmp_path / "e.jsonl"))
    assert r.returncode == 1
    assert "day[1] [bold]capture.pcap" in r.stderr and "missing[red].pcap" in r.stderr
    ws = tmp_path / "ws[x]"
    r = run("ingest", str(tmp_path / "gone[1].csv"), "--workspace", str(ws))
    assert r.returncode == 1 and "gone[1].csv: " in r.stderr

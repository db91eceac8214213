"""Live capture on the loopback interface: a local pool and miner talk XMRig-style stratum
while `minewatch scan --interface lo` runs. Needs root (packet sockets); skipped otherwise."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or not os.path.exists("/sys/class/net/lo"),
    reason="live capture needs root and a loopback interface",
)

WALLET = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"


def _miner_session(port: int) -> None:
    """A pool that answers login with a job and accepts three submits; a miner that sends them."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", port))
    srv.listen(1)

    def pool():
        conn, _ = srv.accept()
        f = conn.makefile("rb")
        f.readline()
        job = {"blob": "0707" + "ab" * 74, "job_id": "q1", "target": "b88d0600", "algo": "rx/0",
               "height": 3000000, "seed_hash": "cd" * 32}
        conn.sendall((json.dumps({"id": 1, "jsonrpc": "2.0", "error": None,
                                  "result": {"id": "w1", "job": job, "status": "OK"}}) + "\n").encode())
        for _ in range(3):
            f.readline()
            conn.sendall(b'{"id":2,"jsonrpc":"2.0","error":null,"result":{"status":"OK"}}\n')
        conn.close()

    t = threading.Thread(target=pool, daemon=True)
    t.start()
    miner = socket.create_connection(("127.0.0.1", port))
    login = {"login": WALLET + ".lab-07", "pass": "x", "agent": "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0",
             "algo": ["rx/0"]}
    miner.sendall((json.dumps({"id": 1, "jsonrpc": "2.0", "method": "login", "params": login}) + "\n").encode())
    miner.recv(4096)
    for i in range(3):
        time.sleep(0.2)
        submit = {"id": "w1", "job_id": "q1", "nonce": f"{i:08x}", "result": "ef" * 32}
        miner.sendall((json.dumps({"id": 2, "jsonrpc": "2.0", "method": "submit", "params": submit}) + "\n").encode())
        miner.recv(4096)
    miner.close()
    t.join(5)
    srv.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_live_capture_reports_the_session_and_keeps_hashed_packets(tmp_path):
    port = _free_port()
    out, saved = tmp_path / "live.jsonl", tmp_path / "live.pcap"
    proc = subprocess.Popen(
        [sys.executable, "-m", "minewatch", "scan", "--interface", "lo", "--duration", "4",
         "-o", str(out), "--save-capture", str(saved), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(1.5)  # let the capture start
    _miner_session(port)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    mine = [r for r in records if r["dst_port"] == port]
    assert len(mine) == 1
    r = mine[0]
    assert r["detector"] == "proto.cryptonote" and r["category"] == "mining"
    assert r["details"]["shares_submitted"] == 3
    assert r["details"]["worker"].endswith(".lab-07") and WALLET not in r["details"]["worker"]
    import hashlib

    assert r["source_file"] == str(saved)
    assert r["source_sha256"] == hashlib.sha256(saved.read_bytes()).hexdigest()


def test_live_capture_on_missing_interface_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minewatch", "scan", "--interface", "nosuch0", "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "nosuch0" in proc.stderr and "no such network interface" in proc.stderr

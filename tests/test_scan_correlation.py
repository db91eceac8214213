"""Within one scan, a DNS answer for a listed pool names the addresses it returned: later
connections to them are pool contacts even when encrypted, and mining evidence to them
carries the pool's name."""

import json
import struct

import pyarrow as pa

from minewatch.detect import Context
from minewatch.intel import IntelSet
from minewatch.scan import Scanner
from packets import ACK, PSH, SYN, eth, ipv4, pcap, tcp, udp

MINER, RESOLVER, POOL, OTHER = "10.0.0.7", "10.0.0.1", "203.0.113.5", "198.51.100.9"


def _dns_response(name: str, address: str) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"
    question = qname + struct.pack("!HH", 1, 1)
    answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes(int(x) for x in address.split("."))
    return struct.pack("!6H", 0x4242, 0x8180, 1, 1, 0, 0) + question + answer


def _tcp_session(t: float, sport: int, dst: str, dport: int, client: list[bytes], server: list[bytes]):
    packets = [(t, eth(ipv4(MINER, dst, 6, tcp(sport, dport, 1000, SYN))))]
    cseq, sseq = 1001, 5001
    for i in range(max(len(client), len(server))):
        if i < len(client):
            packets.append((t + 0.1 + i, eth(ipv4(MINER, dst, 6, tcp(sport, dport, cseq, PSH | ACK, client[i])))))
            cseq += len(client[i])
        if i < len(server):
            packets.append((t + 0.2 + i, eth(ipv4(dst, MINER, 6, tcp(dport, sport, sseq, PSH | ACK, server[i])))))
            sseq += len(server[i])
    return packets


def test_dns_answer_names_the_pool_of_later_connections(tmp_path):
    login = {"login": "lab-07", "pass": "x", "agent": "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0"}
    job = {"blob": "0707" + "ab" * 74, "job_id": "q1", "target": "b88d0600", "algo": "rx/0"}
    stratum_client = [(json.dumps({"id": 1, "jsonrpc": "2.0", "method": "login", "params": login}) + "\n").encode()]
    stratum_server = [(json.dumps({"id": 1, "jsonrpc": "2.0", "error": None,
                                   "result": {"id": "w1", "job": job, "status": "OK"}}) + "\n").encode()]
    tls_like = [b"\x17\x03\x03\x00\x40" + bytes(64)]
    packets = [
        (100.0, eth(ipv4(RESOLVER, MINER, 17, udp(53, 40001, _dns_response("pool.supportxmr.com", POOL))))),
        *_tcp_session(101.0, 40002, POOL, 443, tls_like, tls_like),
        *_tcp_session(102.0, 40003, POOL, 3333, stratum_client, stratum_server),
        *_tcp_session(103.0, 40004, OTHER, 443, tls_like, tls_like),
    ]
    path = tmp_path / "session.pcap"
    path.write_bytes(pcap(packets))

    scanner = Scanner(Context(intel=IntelSet.load()))
    evidence = pa.concat_tables(list(scanner.scan_file(str(path)))).to_pylist()
    by = {(r["detector"], r["dst_port"]): r for r in evidence}

    dns = by[("intel.pool_domain", 53)]
    assert dns["src_ip"] == MINER and dns["category"] == "mining_pool_contact"
    tls = by[("intel.pool_resolved_ip", 443)]
    assert tls["src_ip"] == MINER and tls["dst_ip"] == POOL
    assert json.loads(tls["details"])["pool_host"] == "pool.supportxmr.com"
    mining = by[("proto.cryptonote", 3333)]
    details = json.loads(mining["details"])
    assert details["pool_host"] == "pool.supportxmr.com" and details["pool_host_from"] == "dns_answer"
    assert not any(r["dst_ip"] == OTHER for r in evidence)

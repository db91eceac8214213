"""Mining protocol dialect detectors: positives per dialect, mid-conversation and cut heads,
garbage, and generic JSON-RPC negatives (nDPI issue 2216's false positive)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from minewatch.detect import REGISTRY, Context, Flow, load_all
from minewatch.detect.cryptonote import cryptonote_algo, detect_cryptonote
from minewatch.detect.eth_mining import detect_eth_stratum
from minewatch.detect.getwork import detect_getwork
from minewatch.detect.mining_rpc import miner_software
from minewatch.detect.stratum import detect_stratum_v1
from minewatch.detect.wallets import find_wallet, guess_coin, shorten
from minewatch.dissect.jsonrpc import parse_side

DATA = Path(__file__).parent / "data" / "protocols"
MINING = ("proto.stratum_v1", "proto.cryptonote", "proto.eth_stratum", "proto.getwork")
XMR = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"


def read(name: str) -> bytes:
    path = DATA / name
    return path.read_bytes() if path.exists() else b""


def flow(src: bytes, dst: bytes = b"", dst_port: int = 3333, src_port: int = 50123) -> Flow:
    return Flow("test.pcap", 1, None, None, "10.0.0.7", src_port, "203.0.113.9", dst_port, 6, "TCP",
                src_payload_packets=src.count(b"\n") + 1, dst_payload_packets=dst.count(b"\n") + 1,
                src_payload_head=src[:2048], dst_payload_head=dst[:2048])


def case(name: str, reverse: bool = False, **kw) -> Flow:
    """Flow from fixture pair <name>.miner/.pool (or .client/.server); `reverse` puts the pool in src."""
    miner = read(f"{name}.miner.txt") or read(f"{name}.client.txt")
    pool = read(f"{name}.pool.txt") or read(f"{name}.server.txt")
    if reverse:
        return flow(pool, miner, dst_port=50123, src_port=kw.get("dst_port", 3333))
    return flow(miner, pool, **kw)


def run_all(f: Flow, ctx: Context | None = None) -> dict[str, list]:
    load_all()
    ctx = ctx or Context()
    return {d.id: list(d.fn(f, ctx)) for d in REGISTRY.values() if list(d.fn(f, ctx))}


def only(f: Flow, detector_id: str, ctx: Context | None = None):
    hits = run_all(f, ctx)
    mining = {k for k in hits if REGISTRY[k].category == "mining"}
    assert mining == {detector_id}, hits
    assert len(hits[detector_id]) == 1
    return hits[detector_id][0]


# ------------------------------------------------------------------ JSON-RPC dissector


def test_parse_side_splits_lines_and_keeps_cut_members():
    side = parse_side(b'{"id":1,"method":"a"}\n{"id":2,"method":"b"}{"id":3,"method":"mining.submit","params":["w",')
    assert [m.method for m in side.messages] == ["a", "b", "mining.submit"]
    assert side.truncated and side.messages[-1].partial and "params" not in side.messages[-1].raw


def test_parse_side_skips_a_bad_line_and_rejects_non_json_fast():
    side = parse_side(b'{"id":1,"method":"a"}\nnot json at all\n{"id":2,"result":true}\n')
    assert [m.method for m in side.messages] == ["a", None] and side.messages[1].is_response
    assert parse_side(b"SSH-2.0-OpenSSH_9.6\r\n").transport is None
    assert parse_side(b"\x16\x03\x01\x02\x00{").transport is None


def test_parse_side_reads_http_bodies_incl_read_to_close():
    head = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"id\":0,\"result\":null,\"error\":null}"
    side = parse_side(head)
    assert side.transport == "http" and side.messages[0].is_response


# ------------------------------------------------------------------ Stratum v1


def test_stratum_v1_bitcoin_session_with_version_rolling():
    hit = only(case("stratum_btc"), "proto.stratum_v1")
    d = hit.details
    assert hit.confidence >= 0.9 and not hit.miner_is_dst
    assert d["dialect"] == "stratum_v1" and d["agent"] == "bmminer/2.0.0"
    assert d["miner_software"].startswith("Bitmain Antminer")
    assert d["worker"] == "lab07.s19" and d["shares_submitted"] == 3
    assert d["algorithm"] == "SHA-256d" and d["version_rolling"] is True
    assert d["methods"] == sorted(d["methods"]) and "mining.notify" in d["methods"]
    assert "pool port 3333" in hit.summary and "3 share submissions" in hit.summary


def test_stratum_v1_pool_in_src_sets_miner_is_dst():
    hit = only(case("stratum_btc", reverse=True), "proto.stratum_v1")
    assert hit.miner_is_dst and hit.details["pool_side"] == "src" and hit.details["shares_submitted"] == 3


def test_stratum_v1_mid_conversation_notify_and_submit():
    hit = only(case("stratum_midconv"), "proto.stratum_v1")
    assert hit.confidence >= 0.9
    assert hit.details["methods"] == ["mining.notify", "mining.submit"]
    assert hit.details["shares_submitted"] == 2
    assert hit.details["worker"] == "bc1qar…5mdq.rack3" and hit.details["wallet_coin"] == "Bitcoin"


def test_stratum_v1_one_side_only_is_lower_confidence():
    miner = read("stratum_btc.miner.txt")
    one_line = miner.split(b"\n")[1] + b"\n"
    hit_full = only(flow(miner), "proto.stratum_v1")
    hit_one = only(flow(one_line), "proto.stratum_v1")
    assert 0.9 > hit_full.confidence > hit_one.confidence


def test_stratum_v1_cut_last_line_still_counts_and_agent_kept():
    miner = read("stratum_btc.miner.txt")
    cut = miner[: miner.rfind(b'"9f8e7d6c"')]  # the third submit loses its end
    hit = only(flow(cut, read("stratum_btc.pool.txt")), "proto.stratum_v1")
    assert hit.details["shares_submitted"] == 3


def test_stratum_v1_zcash_variant_shape():
    miner = (b'{"id":1,"method":"mining.subscribe","params":["EWBF 0.3.4b",null,"eu1-zcash.example.org","3333"]}\n'
             b'{"id":2,"method":"mining.authorize","params":["t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd.rig4","x"]}\n')
    pool = (b'{"id":1,"result":["04d567b212","04d567b212"],"error":null}\n{"id":2,"result":true,"error":null}\n'
            b'{"id":null,"method":"mining.set_target","params":["0004189374bc6a7ef9db22d0e5604189374bc6a7ef9db22d0e5604189374bc6a"]}\n'
            b'{"id":null,"method":"mining.notify","params":["8c6f","04000000","' + b"a" * 64 + b'","' + b"b" * 64
            + b'","' + b"0" * 64 + b'","5a8b1c2d","1d00ffff",true]}\n')
    hit = only(flow(miner, pool), "proto.stratum_v1")
    assert hit.details["dialect"] == "stratum_v1/zcash" and hit.details["algorithm"] == "Equihash"
    assert hit.details["coin"] == "Zcash" and hit.details["pool_host"] == "eu1-zcash.example.org"
    assert "Zcash variant" in hit.summary and "EWBF 0.3.4b" in hit.summary


def test_show_wallets_keeps_full_login():
    hit = only(case("stratum_midconv"), "proto.stratum_v1", Context(show_wallets=True))
    assert hit.details["worker"] == "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rack3"


# ------------------------------------------------------------------ CryptoNote / XMRig


def test_cryptonote_xmrig_login_job_submit():
    hit = only(case("xmrig"), "proto.cryptonote")
    d = hit.details
    assert hit.confidence >= 0.9 and not hit.miner_is_dst
    assert d["coin"] == "Monero" and d["algorithm"] == "RandomX" and d["algorithm_name"] == "rx/0"
    assert d["agent"].startswith("XMRig/6.21.0") and d["miner_software"] == "XMRig"
    assert d["rig_id"] == "lab-07" and d["shares_submitted"] == 2 and d["block_height"] == 3091235
    assert d["worker"] == "44AFFq…EP3A.lab-07" and d["wallet_coin"] == "Monero"
    assert set(d["methods"]) == {"job", "keepalived", "login", "submit"}
    assert "CryptoNote" in hit.summary and "2 share submissions" in hit.summary


def test_cryptonote_pool_side_only_job_stream_mid_conversation():
    pool = read("xmrig.pool.txt").split(b"\n")[2] + b"\n"  # one server job push
    hit = only(flow(pool, dst_port=50123, src_port=3333), "proto.cryptonote")
    assert hit.miner_is_dst and hit.details["algorithm"] == "RandomX" and 0.8 <= hit.confidence < 0.95


@pytest.mark.parametrize("algo,coin,name", [("rx/wow", "Wownero", "RandomWOW"), ("cn/r", "Monero", "CryptoNight-R"),
                                            ("kawpow", "Ravencoin", "KawPow"), ("argon2/chukwa", "TurtleCoin", None),
                                            ("cn-heavy/xhv", "Haven", None), ("ghostrider", "Raptoreum", "GhostRider")])
def test_cryptonote_algorithm_table(algo, coin, name):
    got_coin, got_algo = cryptonote_algo(algo)
    assert got_coin.startswith(coin) and (name is None or got_algo == name)
    assert cryptonote_algo("cn-heavy/new")[1].startswith("CryptoNight-Heavy")


# ------------------------------------------------------------------ Ethereum


def test_eth_proxy_login_getwork_submit():
    hit = only(case("ethproxy", dst_port=9999), "proto.eth_stratum")
    d = hit.details
    assert hit.confidence >= 0.9 and d["dialect"] == "eth_proxy" and d["shares_submitted"] == 1
    assert d["worker"] == "0xb794…9268.farm2" and d["rig"] == "farm2"
    assert {"eth_submitLogin", "eth_getWork", "eth_submitWork", "work"} <= set(d["methods"])


def test_eth_work_results_only_from_pool_side():
    pool = read("ethproxy.pool.txt")
    pushes = pool.replace(b'"id":2,', b'"id":0,') + pool.split(b"\n")[1].replace(b'"id":2,', b'"id":0,') + b"\n"
    hit = only(flow(pushes, dst_port=50123, src_port=8008), "proto.eth_stratum")
    assert hit.miner_is_dst and hit.details["methods"] == ["work"]


def test_eth_getwork_over_http_post():
    body = b'{"jsonrpc":"2.0","method":"eth_getWork","params":[],"id":73}'
    req = b"POST / HTTP/1.1\r\nHost: 10.0.0.2:8545\r\nUser-Agent: ethminer/0.19.0\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    res_body = read("ethproxy.pool.txt").split(b"\n")[1]
    res = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(res_body), res_body)
    hit = only(flow(req, res, dst_port=8545), "proto.eth_stratum")
    assert hit.details["dialect"] == "eth_getwork_http" and hit.details["miner_software"] == "ethminer"
    assert hit.confidence >= 0.9


def test_ethereumstratum_nicehash_dialect():
    hit = only(case("es1"), "proto.eth_stratum")
    assert hit.details["dialect"] == "ethereumstratum" and hit.confidence >= 0.9
    assert hit.details["miner_software"] == "PhoenixMiner" and hit.details["shares_submitted"] == 1
    # only the job stream (mid-conversation): still EthereumStratum, not plain stratum v1
    pool = read("es1.pool.txt").split(b"\n")[3] + b"\n"
    assert only(flow(b"", pool), "proto.eth_stratum").details["dialect"] == "ethereumstratum"


# ------------------------------------------------------------------ getwork / GBT


def test_getwork_http_with_cgminer_and_mining_headers():
    hit = only(case("getwork", dst_port=8332), "proto.getwork")
    d = hit.details
    assert hit.confidence >= 0.9 and d["dialect"] == "getwork" and d["miner_software"] == "cgminer"
    assert {"x-mining-extensions", "x-long-polling", "x-roll-ntime", "x-stratum"} <= set(d["mining_headers"])
    assert d["worker"] == "lab07.fpga" and d["shares_submitted"] == 1 and d["pool_host"] == "pool.example.net"


def test_getwork_capture_with_server_as_src():
    hit = only(case("getwork", reverse=True, dst_port=8332), "proto.getwork")
    assert hit.miner_is_dst and hit.details["pool_side"] == "src" and hit.details["miner_software"] == "cgminer"


def test_stratum_v1_kawpow_job_shape():
    notify = {"id": None, "method": "mining.notify",
              "params": ["6a1", "0x" + "1f" * 32, "0x" + "2e" * 32, "0x" + "00000000ff" + "00" * 27, True, 3412345,
                         "1b00f3c2"]}
    submit = {"id": 9, "method": "mining.submit",
              "params": ["RVNaddrless.rig", "6a1", "0x1a2b3c4d5e6f7081", "0x" + "1f" * 32, "0x" + "3c" * 32]}
    hit = only(flow(json.dumps(submit).encode() + b"\n", json.dumps(notify).encode() + b"\n"), "proto.stratum_v1")
    assert hit.details["algorithm"] == "KawPow" and hit.confidence >= 0.9


def test_getblocktemplate_from_miner_vs_lone_gbt():
    miner = only(case("gbt_miner", dst_port=8332), "proto.getwork")
    lone = only(case("gbt_lone", dst_port=8332), "proto.getwork")
    assert miner.details["dialect"] == lone.details["dialect"] == "getblocktemplate"
    assert miner.confidence >= 0.85 and lone.confidence <= 0.5 and "note" in lone.details


# ------------------------------------------------------------------ negatives and garbage


@pytest.mark.parametrize("name", ["neg_eth_node", "neg_wallet", "neg_lsp", "neg_lsp_bare", "neg_weblogin", "neg_echo"])
def test_generic_json_rpc_gives_no_evidence(name):
    assert run_all(case(name, dst_port=8545)) == {}
    assert run_all(case(name, reverse=True, dst_port=8545)) == {}


def test_mining_words_in_other_json_are_not_evidence():
    doc = json.dumps({"id": 1, "method": "search", "params": {"q": "mining.subscribe eth_submitLogin getwork",
                                                               "note": "login job submit"}}).encode()
    chat = json.dumps({"method": "mining.subscribe"}).encode()  # no params: not a stratum call
    assert run_all(flow(doc + b"\n" + chat + b"\n", b'{"id":1,"result":{"hits":[]}}\n')) == {}


def test_garbage_never_raises():
    rng = random.Random(7)
    blobs = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600))) for _ in range(150)]
    blobs += [b"{" * 3000, b"[" * 3000, b'{"method":' * 200, b"{\"id\":1,\"method\":\"mining.notify\",\"params\":7}",
              b'{"method":"login","params":["x"]}', b'{"method":"job","params":{"blob":5}}',
              b"POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n{", b"HTTP/1.1 200\r\n\r\n[1,2,{\"result\":[1]}]",
              b'{"id":1,"method":"mining.configure","params":[7,8]}']
    # also mutate real fixtures: cut at every 97th byte and flip bytes
    for name in ("stratum_btc.miner.txt", "xmrig.pool.txt", "getwork.miner.txt", "es1.pool.txt"):
        data = read(name)
        blobs += [data[:i] for i in range(0, len(data), 97)]
        blobs += [bytes(b ^ 0x20 if i % 13 == 0 else b for i, b in enumerate(data))]
    raw = [detect_stratum_v1.__wrapped__, detect_cryptonote.__wrapped__, detect_eth_stratum.__wrapped__,
           detect_getwork.__wrapped__]
    for blob in blobs:
        for fn in raw:  # without the safety net: the parsing itself must cope
            list(fn(flow(blob, blob[::-1]), Context()))
            list(fn(flow(b"", blob), Context()))


# ------------------------------------------------------------------ helpers


def test_shorten_keeps_worker_parts_readable():
    assert shorten(f"{XMR}.lab-07", False) == "44AFFq…EP3A.lab-07"
    assert shorten(f"{XMR}.lab-07", True) == f"{XMR}.lab-07"
    eth = "0x9c99d212f7e5daa18ab50810e0fd255d1f04303b/tester.worker1/vvesely@mailinator"
    assert shorten(eth, False) == "0x9c99…303b/tester.worker1/vvesely@mailinator"
    assert shorten("1BoatSLRHtKNngkdXEeobR76b53LETtpyT.s9-01", False) == "1BoatS…tpyT.s9-01"
    assert shorten("lab07.s19", False) == "lab07.s19"
    assert guess_coin(f"{XMR}+50000") == "Monero"
    assert guess_coin("t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd.rig4") == "Zcash"
    assert find_wallet("worker-only") is None


def test_miner_software_names():
    assert miner_software("cgminer/4.10.0")[0] == "cgminer"
    assert miner_software("NiceHash/1.0.0")[0] == "NiceHash"
    assert miner_software("XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0")[0] == "XMRig"
    assert miner_software("Mozilla/5.0 (X11; Linux x86_64)") is None

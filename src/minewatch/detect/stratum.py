"""proto.stratum_v1: Stratum v1 (Bitcoin and SHA-256d coins, the Zcash/Equihash and KawPow
variants, EthereumStratum/1.0.0 handshakes) recognised by parsing its JSON-RPC."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from minewatch.detect import Context, Flow, Hit, flow_detector
from minewatch.detect.mining_rpc import (
    add_wallet_hint,
    cut_call,
    json_rpc_prefilter,
    make_hit,
    miner_software,
    never_raises,
    parse_sides,
    sentence,
)
from minewatch.dissect.jsonrpc import RpcMessage, RpcSide, is_hex

STRATUM_CLIENT = {
    "mining.subscribe", "mining.authorize", "mining.configure", "mining.extranonce.subscribe",
    "mining.submit", "mining.suggest_difficulty", "mining.suggest_target", "mining.get_transactions",
    "mining.multi_version", "mining.capabilities",
}
STRATUM_SERVER = {
    "mining.notify", "mining.set_difficulty", "mining.set_target", "mining.set_extranonce",
    "mining.set_version_mask", "client.reconnect", "client.show_message", "client.get_version",
}
ES1 = "EthereumStratum/1.0.0"


def _valid_stratum_call(m: RpcMessage) -> bool:
    """Shape check of one stratum call's params (a JSON object with only the name is not enough)."""
    p, name = m.params, m.method
    if not isinstance(p, list):
        return name in ("mining.extranonce.subscribe", "client.get_version") and p is None
    if name == "mining.subscribe":
        return all(v is None or isinstance(v, (str, int)) for v in p)
    if name == "mining.authorize":
        return len(p) >= 1 and isinstance(p[0], str) and bool(p[0])
    if name == "mining.submit":
        return len(p) >= 3 and all(isinstance(v, str) for v in p[:3])
    if name == "mining.notify":
        return len(p) >= 4 and isinstance(p[0], (str, int))
    if name in ("mining.set_difficulty", "mining.suggest_difficulty"):
        return len(p) >= 1 and isinstance(p[0], (int, float)) and not isinstance(p[0], bool)
    if name in ("mining.set_target", "mining.suggest_target"):
        return len(p) >= 1 and is_hex(p[0])
    if name == "mining.configure":
        return len(p) >= 1 and isinstance(p[0], list)
    return True


@dataclass
class _Stratum:
    miner: str | None = None  # "src" | "dst"
    client: list[RpcMessage] = field(default_factory=list)
    server: list[RpcMessage] = field(default_factory=list)
    confirmed: bool = False  # the other side answered a stratum call or pushed jobs
    methods: set[str] = field(default_factory=set)
    es1: bool = False  # EthereumStratum/1.0.0


def _stratum_side(side: RpcSide) -> tuple[list[RpcMessage], list[RpcMessage]]:
    client = [m for m in side.messages if m.method in STRATUM_CLIENT and _valid_stratum_call(m)]
    server = [m for m in side.messages if m.method in STRATUM_SERVER and _valid_stratum_call(m)]
    client += [m for m in side.messages if m.method in STRATUM_CLIENT and cut_call(m, client)]
    server += [m for m in side.messages if m.method in STRATUM_SERVER and cut_call(m, server)]
    return client, server


def _answers(requests: list[RpcMessage], replies: RpcSide) -> bool:
    ids = {m.id for m in requests if m.id is not None and not isinstance(m.id, (dict, list))}
    return any(r.id in ids for r in replies.responses() if not isinstance(r.id, (dict, list)))


def analyse_stratum(src: RpcSide, dst: RpcSide) -> _Stratum | None:
    sc, ss = _stratum_side(src)
    dc, ds = _stratum_side(dst)
    if not (sc or ss or dc or ds):
        return None
    st = _Stratum()
    # the miner is the side sending client calls; else the side receiving server pushes
    if sc or (not dc and ds):
        st.miner, st.client, st.server = "src", sc, ds
        replies, requests = dst, sc
    else:
        st.miner, st.client, st.server = "dst", dc, ss
        replies, requests = src, dc
    st.methods = {m.method for m in st.client + st.server}
    st.confirmed = bool(st.client and (st.server or _answers(requests, replies)))
    for m in st.client:
        if m.method == "mining.subscribe" and isinstance(m.params, list) and ES1 in m.params[1:2]:
            st.es1 = True
    for r in replies.responses():  # subscribe result [["mining.notify", id, "EthereumStratum/1.0.0"], xn]
        res = r.result
        if isinstance(res, list) and res and isinstance(res[0], list) and ES1 in res[0]:
            st.es1 = True
    for m in st.server:  # ES1 notify: [job_id, seedhash, headerhash, clean]
        p = m.params
        if (m.method == "mining.notify" and isinstance(p, list) and len(p) == 4 and is_hex(p[1], 32, False)
                and is_hex(p[2], 32, False)):
            st.es1 = True
    return st


def _first_param(msgs: list[RpcMessage], method: str, index: int = 0) -> Any:
    for m in msgs:
        if m.method == method and isinstance(m.params, list) and len(m.params) > index:
            return m.params[index]
    return None


def _stratum_coin(st: _Stratum, agent: str | None, details: dict) -> None:
    """Coin/algorithm hints from the job shape, version rolling and the agent."""
    variant = None
    for m in st.server:
        p = m.params
        if m.method == "mining.notify" and isinstance(p, list):
            if len(p) == 8 and isinstance(p[1], str) and p[1] == "04000000":
                variant = "zcash"  # ZIP 301: job, version, prevhash, merkleroot, reserved, time, bits, clean
            elif len(p) >= 9 and isinstance(p[4], list) and is_hex(p[1], 32, False):
                variant = variant or "bitcoin"  # job, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean
            elif len(p) == 7 and all(is_hex(v, 32) for v in p[1:4]) and isinstance(p[5], int):
                variant = "kawpow"  # job, header hash, seed hash, target, clean, height, bits (Ravencoin)
    if "mining.set_target" in st.methods and variant is None:
        variant = "zcash"
    if variant == "kawpow":
        details["algorithm"] = "KawPow"
        details["coin"] = "Ravencoin-family (KawPow)"
    if variant == "zcash":
        details["dialect"] = "stratum_v1/zcash"
        details["algorithm"] = "Equihash"
        details["coin"] = "Zcash-family (Equihash)"
    version_rolling = any(
        m.method == "mining.configure" and isinstance(m.params, list) and m.params
        and isinstance(m.params[0], list) and "version-rolling" in m.params[0]
        for m in st.client
    ) or "mining.set_version_mask" in st.methods
    if version_rolling:
        details["version_rolling"] = True
        details.setdefault("algorithm", "SHA-256d")
        details.setdefault("coin", "Bitcoin-family (SHA-256d, ASIC)")
    sw = miner_software(agent)
    if sw:
        details["miner_software"] = sw[0]
        if sw[1]:
            details.setdefault("algorithm", sw[1])
    wallet_coin = details.get("wallet_coin")
    if wallet_coin and wallet_coin != "CryptoNote-family":
        # the wallet names the coin; keep a shape-derived coin unless the wallet refines it
        if "coin" not in details or details["coin"].startswith(wallet_coin.split("-")[0]):
            details["coin"] = wallet_coin


def stratum_common(flow: Flow, ctx: Context, st: _Stratum) -> tuple[dict, str | None, str | None, int]:
    agent = _first_param(st.client, "mining.subscribe", 0)
    agent = agent if isinstance(agent, str) and agent else None
    login = _first_param(st.client, "mining.authorize", 0)
    if not isinstance(login, str):  # mid-conversation: the worker is the first submit param
        login = _first_param(st.client, "mining.submit", 0)
    submits = sum(1 for m in st.client if m.method == "mining.submit")
    details: dict = {"methods": sorted(st.methods), "pool_side": "src" if st.miner == "dst" else "dst",
                     "shares_submitted": submits}
    if agent:
        details["agent"] = agent
    host = _first_param(st.client, "mining.subscribe", 2)
    if isinstance(host, str) and re.fullmatch(r"[A-Za-z0-9.-]{3,253}", host) and "." in host:
        details["pool_host"] = host.lower()
    add_wallet_hint(details, login if isinstance(login, str) else None, ctx)
    return details, agent, details.get("worker"), submits


def _stratum_confidence(st: _Stratum) -> float:
    client = {m.method for m in st.client}
    if st.confirmed:
        return 0.95
    if len(client) >= 2 or ("mining.authorize" in client and len(st.client) >= 2):
        return 0.85
    if st.server and ({m.method for m in st.server} >= {"mining.notify"}) and len(st.server) >= 2:
        return 0.8
    return 0.6


@flow_detector("proto.stratum_v1", 1, "mining",
               "Stratum v1 mining protocol (mining.subscribe/authorize/notify/submit) in clear text",
               prefilter=json_rpc_prefilter)
@never_raises
def detect_stratum_v1(flow: Flow, ctx: Context) -> Iterable[Hit]:
    src, dst = parse_sides(flow)
    if src.transport is None and dst.transport is None:
        return []
    st = analyse_stratum(src, dst)
    if st is None or st.es1:
        return []  # EthereumStratum/1.0.0 is reported by proto.eth_stratum
    details, agent, worker, submits = stratum_common(flow, ctx, st)
    details.setdefault("dialect", "stratum_v1")
    _stratum_coin(st, agent, details)
    miner_is_dst = st.miner == "dst"
    action = "login" if "mining.authorize" in details["methods"] else "session"
    if not st.client:
        action = "job stream"
    name = "Stratum v1 (Zcash variant)" if details["dialect"] == "stratum_v1/zcash" else "Stratum v1"
    summary = sentence(name, action, flow, miner_is_dst, agent, worker, submits)
    return [make_hit(_stratum_confidence(st), summary, details, miner_is_dst)]

"""proto.eth_stratum: Ethereum mining dialects: the eth_* proxy protocol (eth_submitLogin,
eth_getWork, eth_submitWork, eth_submitHashrate) over TCP and HTTP, and
EthereumStratum/1.0.0 (NiceHash)."""

from __future__ import annotations

from typing import Any, Iterable

from minewatch.detect import Context, Flow, Hit, flow_detector
from minewatch.detect.mining_rpc import (
    add_wallet_hint,
    is_str_list,
    json_rpc_prefilter,
    make_hit,
    miner_software,
    never_raises,
    parse_sides,
    sentence,
)
from minewatch.detect.stratum import analyse_stratum, stratum_common
from minewatch.dissect.jsonrpc import RpcMessage, is_hex

ETH_CLIENT = {"eth_submitLogin", "eth_login", "eth_getWork", "eth_submitWork", "eth_submitHashrate"}


def _valid_work(result: Any) -> bool:
    """eth_getWork result: [header pow-hash, seed hash, boundary(, block number)] as 0x hex."""
    return (isinstance(result, list) and 3 <= len(result) <= 4
            and all(is_hex(v, 32, True) for v in result[:3]))


def _valid_eth_call(m: RpcMessage) -> bool:
    p = m.params
    if m.method in ("eth_submitLogin", "eth_login"):
        return is_str_list(p, 1) and bool(p[0])
    if m.method == "eth_getWork":
        return p is None or p == [] or (isinstance(p, list) and len(p) <= 2)
    if m.method == "eth_submitWork":
        return (isinstance(p, list) and len(p) == 3 and is_hex(p[0], 8, True) and is_hex(p[1], 32, True)
                and is_hex(p[2], 32, True))
    if m.method == "eth_submitHashrate":
        return isinstance(p, list) and len(p) == 2 and is_hex(p[0], None, True) and is_hex(p[1], 32, True)
    return False


@flow_detector("proto.eth_stratum", 1, "mining",
               "Ethereum-family mining: eth_submitLogin/eth_getWork/eth_submitWork (TCP or HTTP) "
               "and EthereumStratum/1.0.0",
               prefilter=json_rpc_prefilter)
@never_raises
def detect_eth_stratum(flow: Flow, ctx: Context) -> Iterable[Hit]:
    src, dst = parse_sides(flow)
    if src.transport is None and dst.transport is None:
        return []
    st = analyse_stratum(src, dst)
    if st is not None and st.es1:
        details, agent, worker, submits = stratum_common(flow, ctx, st)
        details.update(dialect="ethereumstratum", algorithm="Ethash-family")
        sw = miner_software(agent)
        if sw:
            details["miner_software"] = sw[0]
        conf = 0.95 if st.confirmed else 0.8
        summary = sentence("EthereumStratum/1.0.0", "login" if st.client else "job stream", flow,
                            st.miner == "dst", agent, worker, submits)
        return [make_hit(conf, summary, details, st.miner == "dst")]

    sides = {}
    for name, side in (("src", src), ("dst", dst)):
        calls = [m for m in side.messages if m.method in ETH_CLIENT and _valid_eth_call(m)]
        work = [m for m in side.responses() if _valid_work(m.result)]
        sides[name] = (side, calls, work)
    if sides["src"][1] or (not sides["dst"][1] and sides["dst"][2]):
        miner, (mside, calls, _), (pside, _, work) = "src", sides["src"], sides["dst"]
    else:
        miner, (mside, calls, _), (pside, _, work) = "dst", sides["dst"], sides["src"]
    if not calls and not work:
        return []
    methods = {m.method for m in calls}
    submits = sum(1 for m in calls if m.method == "eth_submitWork")
    if calls and work:
        conf = 0.95 if methods & {"eth_submitLogin", "eth_login", "eth_submitWork"} else 0.9
    elif methods & {"eth_submitLogin", "eth_login"} and len(calls) >= 2:
        conf = 0.85
    elif submits or len(work) >= 2:
        conf = 0.8
    elif methods == {"eth_submitHashrate"}:
        conf = 0.6
    else:
        conf = 0.7
    http = mside.transport == "http" or pside.transport == "http"
    details: dict = {"dialect": "eth_getwork_http" if http else "eth_proxy",
                     "methods": sorted(methods | ({"work"} if work else set())),
                     "pool_side": "src" if miner == "dst" else "dst", "shares_submitted": submits,
                     "algorithm": "Ethash-family"}
    login = next((m.params[0] for m in calls if m.method in ("eth_submitLogin", "eth_login")), None)
    rig = next((m.raw.get("worker") for m in calls if isinstance(m.raw.get("worker"), str) and m.raw["worker"]), None)
    add_wallet_hint(details, login, ctx)
    if rig:
        details["rig"] = rig
    agent = mside.header("user-agent") if http else None
    if agent:
        details["agent"] = agent
        sw = miner_software(agent)
        if sw:
            details["miner_software"] = sw[0]
    name = "Ethereum getwork over HTTP" if http else "Ethereum stratum (eth_submitLogin/eth_getWork)"
    action = "login" if methods & {"eth_submitLogin", "eth_login"} else ("work requests" if calls else "job stream")
    summary = sentence(name, action, flow, miner == "dst", agent, details.get("worker") or rig, submits)
    return [make_hit(conf, summary, details, miner == "dst")]

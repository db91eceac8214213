"""proto.getwork: Bitcoin-era HTTP mining: getwork, getblocktemplate (BIP 22/23) and
submitblock, with X-Mining-Extensions/X-Stratum headers and miner user agents."""

from __future__ import annotations

import base64
from typing import Any, Iterable

from minewatch.detect import Context, Flow, Hit, flow_detector
from minewatch.detect.heads import HTTP_START, JSON_RPC_KEY, Heads
from minewatch.detect.mining_rpc import (
    add_wallet_hint,
    is_str_list,
    make_hit,
    miner_software,
    never_raises,
    parse_sides,
    sentence,
)
from minewatch.dissect.jsonrpc import is_hex

MINING_HEADERS = ("x-mining-extensions", "x-stratum", "x-long-polling", "x-roll-ntime", "x-mining-hashrate")


def _gbt_mining_params(params: Any) -> bool:
    """GBT request params that only miners/pools send: longpoll, or mining capabilities."""
    if not isinstance(params, list) or not params or not isinstance(params[0], dict):
        return False
    req = params[0]
    caps = req.get("capabilities") if isinstance(req.get("capabilities"), list) else []
    return "longpollid" in req or "longpoll" in caps or "coinbasetxn" in caps or "workid" in caps


def _valid_getwork_result(res: Any) -> bool:
    return isinstance(res, dict) and is_hex(res.get("data"), 128, False) and is_hex(res.get("target"), 32, False)


def _valid_gbt_result(res: Any) -> bool:
    return (isinstance(res, dict) and isinstance(res.get("height"), int) and is_hex(res.get("previousblockhash"), 32)
            and isinstance(res.get("transactions"), list))


def _http_mining(heads: Heads, ctx: Context):
    http = heads.regex(HTTP_START)
    return heads.regex(JSON_RPC_KEY) & http | heads.regex(_MINING_HEADER_RE, within=http)


_MINING_HEADER_RE = ("(?i)(?:" + "|".join(MINING_HEADERS) + "):").encode()


@flow_detector("proto.getwork", 1, "mining",
               "Bitcoin-era HTTP mining: getwork, getblocktemplate (BIP 22/23), submitblock, X-Mining headers",
               prefilter=_http_mining)
@never_raises
def detect_getwork(flow: Flow, ctx: Context) -> Iterable[Hit]:
    src, dst = parse_sides(flow)
    if src.transport != "http" and dst.transport != "http":
        return []
    # the miner sends requests; the pool/node sends responses (either side may be src)
    req_side, resp_side, miner = src, dst, "src"
    if not any(m.method for m in src.messages) and (any(m.method for m in dst.messages) or any(
            h.method for h in dst.http)):
        req_side, resp_side, miner = dst, src, "dst"
    calls = {"getwork": [], "getblocktemplate": [], "submitblock": []}
    for m in req_side.messages:
        if m.method == "getwork" and (m.params in (None, []) or (
                is_str_list(m.params, 1) and is_hex(m.params[0], 128, False))):
            calls["getwork"].append(m)
        elif m.method == "getblocktemplate" and (m.params in (None, []) or (
                isinstance(m.params, list) and isinstance(m.params[0], dict))):
            calls["getblocktemplate"].append(m)
        elif m.method == "submitblock" and is_str_list(m.params, 1) and is_hex(m.params[0]) and len(m.params[0]) >= 160:
            calls["submitblock"].append(m)
    work_results = [m for m in resp_side.responses() if _valid_getwork_result(m.result)]
    gbt_results = [m for m in resp_side.responses() if _valid_gbt_result(m.result)]
    headers = sorted({h for side in (req_side, resp_side) for msg in side.http for h in MINING_HEADERS
                      if h in msg.headers})
    agent = req_side.header("user-agent")
    sw = miner_software(agent)
    if not (calls["getwork"] or calls["getblocktemplate"] or calls["submitblock"] or work_results or headers):
        return []
    mining_context = bool(sw or headers or any(_gbt_mining_params(m.params) for m in calls["getblocktemplate"]))
    if calls["getwork"] or work_results:
        conf = 0.95 if (calls["getwork"] and (work_results or mining_context)) else 0.85
        dialect = "getwork"
    elif calls["getblocktemplate"] or gbt_results and mining_context:
        dialect = "getblocktemplate"
        conf = (0.9 if gbt_results else 0.85) if mining_context else 0.5
    elif calls["submitblock"]:
        dialect = "submitblock"
        conf = 0.9 if mining_context else 0.7
    else:
        dialect = "http_mining_headers"
        conf = 0.7
    methods = sorted(k for k, v in calls.items() if v)
    details: dict = {"dialect": dialect, "methods": methods, "mining_headers": headers,
                     "pool_side": "src" if miner == "dst" else "dst",
                     "shares_submitted": sum(1 for m in calls["getwork"] if m.params) + len(calls["submitblock"])}
    if agent:
        details["agent"] = agent
    if sw:
        details["miner_software"] = sw[0]
    host = next((h.host for h in req_side.http if h.host), None)
    if host:
        details["pool_host"] = host
    auth = req_side.header("authorization")
    if auth and auth.lower().startswith("basic "):
        try:
            user = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8", "replace").split(":", 1)[0]
        except (ValueError, UnicodeDecodeError):
            user = ""
        if user:
            add_wallet_hint(details, user, ctx)
    if dialect == "getblocktemplate" and not mining_context:
        details["note"] = "lone getblocktemplate: may be node administration rather than mining"
    names = {"getwork": "getwork mining over HTTP", "getblocktemplate": "getblocktemplate (BIP 22) mining",
             "submitblock": "block submission (submitblock)", "http_mining_headers": "HTTP mining-pool headers"}
    extra = f" ({', '.join(headers)})" if headers and dialect == "http_mining_headers" else ""
    summary = sentence(names[dialect], "request" if calls else "exchange", flow, miner == "dst", agent,
                        details.get("worker"), details["shares_submitted"], extra)
    return [make_hit(conf, summary, details, miner == "dst")]

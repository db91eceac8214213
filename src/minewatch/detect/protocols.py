"""Mining protocol dialects recognised by PARSING the clear-text JSON-RPC of a flow's
payload heads: Stratum v1 (incl. the Zcash variant), CryptoNote/XMRig stratum, Ethereum
mining (eth_* proxy/getwork and EthereumStratum/1.0.0) and Bitcoin-era HTTP getwork/GBT.

Every detector works on both directions: the capture may start mid-conversation and the
flow's src may be the pool. The side that sends client calls (subscribe/login/submit) is
the miner; the side that sends jobs is the pool. Generic JSON-RPC (eth_blockNumber, wallet
RPCs, LSP, web APIs) matches none of the shapes below and yields nothing.
"""

from __future__ import annotations

import base64
import functools
import re
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable

from minewatch.detect import Context, Flow, Hit, flow_detector
from minewatch.detect.heads import HTTP_START, JSON_RPC_KEY, Heads
from minewatch.detect.wallets import guess_coin, shorten
from minewatch.dissect.jsonrpc import RpcMessage, RpcSide, is_hex, parse_side

# ---------------------------------------------------------------- shared helpers


def _json_rpc(heads: Heads, ctx: Context):
    """Every dialect here is JSON-RPC: some message on one side has a method/result/error key."""
    return heads.regex(JSON_RPC_KEY)


def never_raises(fn):
    """A payload is attacker-controlled: a shape we did not foresee yields no hit, never a traceback."""

    @functools.wraps(fn)
    def guarded(flow: Flow, ctx: Context) -> list[Hit]:
        try:
            return list(fn(flow, ctx))
        except (TypeError, ValueError, KeyError, IndexError, AttributeError, RecursionError, struct.error):
            return []

    return guarded


def _sides(flow: Flow) -> tuple[RpcSide, RpcSide]:
    return parse_side(bytes(flow.src_payload_head or b"")), parse_side(bytes(flow.dst_payload_head or b""))


def _is_str_list(value: Any, min_len: int = 0) -> bool:
    return isinstance(value, list) and len(value) >= min_len and all(isinstance(v, str) for v in value)


def _hit(confidence: float, summary: str, details: dict, miner_is_dst: bool) -> Hit:
    severity = "high" if confidence >= 0.8 else ("medium" if confidence >= 0.6 else "low")
    return Hit(confidence, summary, details, severity=severity, miner_is_dst=miner_is_dst)


def _pool_port(flow: Flow, miner_is_dst: bool) -> int | None:
    return flow.src_port if miner_is_dst else flow.dst_port


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _sentence(dialect_name: str, action: str, flow: Flow, miner_is_dst: bool, agent: str | None,
              worker: str | None, submits: int, extra: str = "") -> str:
    """'Clear-text <dialect> <action> to pool port N by AGENT, worker 'W', K share submissions seen'."""
    port = _pool_port(flow, miner_is_dst)
    text = f"Clear-text {dialect_name} {action}"
    text += f" to pool port {port}" if port else ""
    text += f" by {agent}" if agent else ""
    text += f", worker '{worker}'" if worker else ""
    text += extra
    if submits:
        text += f", {_plural(submits, 'share submission')} seen"
    return text


# Miner software named by a subscribe/login agent or HTTP User-Agent (lower-case prefix)
# -> (software, algorithm hint or None). Hints only where the software mines one family.
_AGENTS: list[tuple[str, str, str | None]] = [
    ("bmminer", "Bitmain Antminer (bmminer)", "SHA-256d"),
    ("bosminer", "Braiins OS (bosminer)", "SHA-256d"),
    ("braiins", "Braiins OS", "SHA-256d"),
    ("btminer", "MicroBT Whatsminer (btminer)", "SHA-256d"),
    ("whatsminer", "MicroBT Whatsminer", "SHA-256d"),
    ("cgminer", "cgminer", None),
    ("bfgminer", "BFGMiner", None),
    ("cpuminer", "cpuminer", None),
    ("minerd", "cpuminer (minerd)", None),
    ("sgminer", "sgminer", None),
    ("ccminer", "ccminer", None),
    ("ewbf", "EWBF miner", "Equihash"),
    ("bminer", "Bminer", None),
    ("gminer", "GMiner", None),
    ("lolminer", "lolMiner", None),
    ("nbminer", "NBMiner", None),
    ("t-rex", "T-Rex", None),
    ("teamredminer", "TeamRedMiner", None),
    ("phoenixminer", "PhoenixMiner", "Ethash"),
    ("ethminer", "ethminer", "Ethash"),
    ("claymore", "Claymore miner", None),
    ("srbminer", "SRBMiner", None),
    ("xmrig", "XMRig", None),
    ("xmr-stak", "xmr-stak", "CryptoNight"),
    ("nanominer", "nanominer", None),
    ("nicehash", "NiceHash", None),
    ("poclbm", "poclbm", "SHA-256d"),
    ("diablominer", "DiabloMiner", "SHA-256d"),
    ("phoenix", "Phoenix miner", "SHA-256d"),
    ("ufasoft", "Ufasoft miner", None),
    ("cudaminer", "CudaMiner", None),
    ("xmr-node-proxy", "xmr-node-proxy", None),
]


_AGENT_WORD = {
    prefix: re.compile(r"(?:^|[\s/(;])" + re.escape(prefix) + r"\b") for prefix, _, _ in _AGENTS
}


@functools.lru_cache(maxsize=4096)
def miner_software(agent: str | None) -> tuple[str, str | None] | None:
    """Known mining software named by an agent string, with an algorithm hint."""
    if not isinstance(agent, str) or not agent:
        return None
    low = agent.strip().lower()
    for prefix, name, algo in _AGENTS:
        if low.startswith(prefix) or (prefix in low and _AGENT_WORD[prefix].search(low)):
            return name, algo
    return None


def _add_wallet_hint(details: dict, login: str | None, ctx: Context) -> None:
    if isinstance(login, str) and login:
        details["worker"] = shorten(login, ctx.show_wallets)
        coin = guess_coin(login)
        if coin:
            details["wallet_coin"] = coin


# ---------------------------------------------------------------- Stratum v1 (+ EthereumStratum)

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


def _cut_call(m: RpcMessage, whole: list[RpcMessage]) -> bool:
    """A call cut inside its params counts (e.g. for share totals) once the same side sent a
    complete, valid message of the same protocol; alone it proves nothing."""
    return m.partial and "params" not in m.raw and bool(whole)


def _stratum_side(side: RpcSide) -> tuple[list[RpcMessage], list[RpcMessage]]:
    client = [m for m in side.messages if m.method in STRATUM_CLIENT and _valid_stratum_call(m)]
    server = [m for m in side.messages if m.method in STRATUM_SERVER and _valid_stratum_call(m)]
    client += [m for m in side.messages if m.method in STRATUM_CLIENT and _cut_call(m, client)]
    server += [m for m in side.messages if m.method in STRATUM_SERVER and _cut_call(m, server)]
    return client, server


def _answers(requests: list[RpcMessage], replies: RpcSide) -> bool:
    ids = {m.id for m in requests if m.id is not None and not isinstance(m.id, (dict, list))}
    return any(r.id in ids for r in replies.responses() if not isinstance(r.id, (dict, list)))


def _analyse_stratum(src: RpcSide, dst: RpcSide) -> _Stratum | None:
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


def _stratum_common(flow: Flow, ctx: Context, st: _Stratum) -> tuple[dict, str | None, str | None, int]:
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
    _add_wallet_hint(details, login if isinstance(login, str) else None, ctx)
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
               prefilter=_json_rpc)
@never_raises
def detect_stratum_v1(flow: Flow, ctx: Context) -> Iterable[Hit]:
    src, dst = _sides(flow)
    if src.transport is None and dst.transport is None:
        return []
    st = _analyse_stratum(src, dst)
    if st is None or st.es1:
        return []  # EthereumStratum/1.0.0 is reported by proto.eth_stratum
    details, agent, worker, submits = _stratum_common(flow, ctx, st)
    details.setdefault("dialect", "stratum_v1")
    _stratum_coin(st, agent, details)
    miner_is_dst = st.miner == "dst"
    action = "login" if "mining.authorize" in details["methods"] else "session"
    if not st.client:
        action = "job stream"
    name = "Stratum v1 (Zcash variant)" if details["dialect"] == "stratum_v1/zcash" else "Stratum v1"
    summary = _sentence(name, action, flow, miner_is_dst, agent, worker, submits)
    return [_hit(_stratum_confidence(st), summary, details, miner_is_dst)]


# ---------------------------------------------------------------- CryptoNote / XMRig stratum

# XMRig algorithm names -> (coin, algorithm). Coin None where several coins share it.
CN_ALGOS: dict[str, tuple[str | None, str]] = {
    "rx/0": ("Monero", "RandomX"),
    "randomx": ("Monero", "RandomX"),
    "rx/wow": ("Wownero", "RandomWOW"),
    "rx/arq": ("ArQmA", "RandomARQ"),
    "rx/sfx": ("Safex", "RandomSFX"),
    "rx/keva": ("Kevacoin", "RandomKEVA"),
    "rx/graft": ("Graft", "RandomGRAFT"),
    "rx/yada": ("YadaCoin", "RandomYADA"),
    "cn/r": ("Monero (2019 fork era)", "CryptoNight-R"),
    "cn/0": (None, "CryptoNight"),
    "cryptonight": (None, "CryptoNight"),
    "cn/1": ("Monero (2018 fork era)", "CryptoNight v7"),
    "cn/2": ("Monero (2018-2019 fork era)", "CryptoNight v8"),
    "cn/half": ("Masari", "CryptoNight-Half"),
    "cn/fast": ("Masari", "CryptoNight-Fast"),
    "cn/ccx": ("Conceal", "CryptoNight-CCX"),
    "cn/gpu": ("Ryo", "CryptoNight-GPU"),
    "cn-lite/1": ("Aeon", "CryptoNight-Lite v7"),
    "cryptonight-lite": ("Aeon", "CryptoNight-Lite"),
    "cn-heavy/0": (None, "CryptoNight-Heavy"),
    "cn-heavy/xhv": ("Haven", "CryptoNight-Heavy (XHV)"),
    "cn-heavy/tube": ("BitTube", "CryptoNight-Heavy (Tube)"),
    "cn-pico": ("TurtleCoin", "CryptoNight-Pico"),
    "cn-pico/0": ("TurtleCoin", "CryptoNight-Pico"),
    "cn-pico/tlo": ("Talleo", "CryptoNight-Pico (TLO)"),
    "argon2/chukwa": ("TurtleCoin", "Argon2id Chukwa"),
    "argon2/chukwav2": ("TurtleCoin", "Argon2id Chukwa v2"),
    "argon2/wrkz": ("WrkzCoin", "Argon2id WRKZ"),
    "kawpow": ("Ravencoin", "KawPow"),
    "ghostrider": ("Raptoreum", "GhostRider"),
    "astrobwt": ("Dero", "AstroBWT"),
}
_CN_FAMILIES = {"rx": "RandomX variant", "cn": "CryptoNight variant", "cn-heavy": "CryptoNight-Heavy variant",
                "cn-lite": "CryptoNight-Lite variant", "cn-pico": "CryptoNight-Pico variant",
                "argon2": "Argon2 variant"}


def cryptonote_algo(name: str | None) -> tuple[str | None, str] | None:
    """(coin, algorithm) for an XMRig algorithm name like 'rx/0' or 'cn-heavy/xhv'."""
    if not isinstance(name, str) or not name:
        return None
    low = name.strip().lower()
    if low in CN_ALGOS:
        return CN_ALGOS[low]
    family = low.split("/", 1)[0]
    if family in _CN_FAMILIES:
        return None, f"{_CN_FAMILIES[family]} ({name})"
    return None, name


def _valid_job(job: Any) -> bool:
    """A CryptoNote job: hashing blob (hex, >= 40 bytes), job_id, target (4 or 8 bytes hex)."""
    return (isinstance(job, dict) and is_hex(job.get("blob"), None, False) and len(job["blob"]) >= 80
            and isinstance(job.get("job_id"), (str, int))
            and (is_hex(job.get("target"), 4, False) or is_hex(job.get("target"), 8, False)))


def _valid_cn_call(m: RpcMessage) -> bool:
    p = m.params
    if not isinstance(p, dict):
        return False
    if m.method == "login":
        return isinstance(p.get("login"), str) and bool(p["login"]) and any(
            k in p for k in ("pass", "agent", "algo", "rigid"))
    if m.method == "submit":
        return (isinstance(p.get("job_id"), (str, int)) and is_hex(p.get("nonce"), 4, False)
                and is_hex(p.get("result"), 32, False))
    if m.method in ("getjob", "keepalived"):
        return isinstance(p.get("id"), (str, int))
    if m.method == "job":
        return _valid_job(p)
    return False


def _login_is_minerish(m: RpcMessage) -> bool:
    """A bare login/pass pair is any web API: require a miner agent, algo list, rig id or a wallet."""
    p = m.params
    return bool(miner_software(p.get("agent")) or "algo" in p or "rigid" in p or guess_coin(p.get("login")))


@flow_detector("proto.cryptonote", 1, "mining",
               "CryptoNote/XMRig stratum (login/job/submit/keepalived) in clear text",
               prefilter=_json_rpc)
@never_raises
def detect_cryptonote(flow: Flow, ctx: Context) -> Iterable[Hit]:
    src, dst = _sides(flow)
    if src.transport is None and dst.transport is None:
        return []
    per_side = {}
    for name, side in (("src", src), ("dst", dst)):
        calls = [m for m in side.messages if m.method in ("login", "submit", "getjob", "keepalived")
                 and _valid_cn_call(m)]
        calls += [m for m in side.messages if m.method == "submit" and _cut_call(m, calls)]
        jobs = [m.params for m in side.messages if m.method == "job" and _valid_cn_call(m)]
        jobs += [m.result["job"] for m in side.responses()
                 if isinstance(m.result, dict) and _valid_job(m.result.get("job"))]
        per_side[name] = (calls, jobs)
    (sc, sj), (dc, dj) = per_side["src"], per_side["dst"]
    if sc or (not dc and dj):
        miner, calls, jobs = "src", sc, dj
    else:
        miner, calls, jobs = "dst", dc, sj
    logins = [m for m in calls if m.method == "login"]
    submits = [m for m in calls if m.method == "submit"]
    strong_login = any(_login_is_minerish(m) for m in logins)
    if not (jobs or submits or strong_login):
        return []  # lone getjob/keepalived or a bare web login: not enough
    if jobs and (logins or submits):
        conf = 0.95
    elif submits or jobs:
        conf = 0.85 if (len(submits) + len(jobs)) >= 2 or jobs else 0.75
    else:
        conf = 0.8
    login_p = logins[0].params if logins else {}
    agent = login_p.get("agent") if isinstance(login_p.get("agent"), str) else None
    details: dict = {"dialect": "cryptonote", "methods": sorted({m.method for m in calls} | ({"job"} if jobs else set())),
                     "pool_side": "src" if miner == "dst" else "dst", "shares_submitted": len(submits)}
    if agent:
        details["agent"] = agent
        sw = miner_software(agent)
        if sw:
            details["miner_software"] = sw[0]
    if isinstance(login_p.get("rigid"), str) and login_p["rigid"]:
        details["rig_id"] = login_p["rigid"]
    _add_wallet_hint(details, login_p.get("login"), ctx)
    algo_name = next((j.get("algo") for j in jobs if isinstance(j.get("algo"), str)), None)
    if algo_name is None:
        offered = login_p.get("algo")
        algo_name = offered if isinstance(offered, str) else (offered[0] if _is_str_list(offered, 1) else None)
    coin_algo = cryptonote_algo(algo_name)
    if coin_algo:
        details["algorithm_name"] = algo_name
        coin, details["algorithm"] = coin_algo
        if coin:
            details["coin"] = coin
    elif agent and miner_software(agent) and miner_software(agent)[1]:
        details["algorithm"] = miner_software(agent)[1]
    if "coin" not in details and details.get("wallet_coin") in ("Monero", "CryptoNote-family"):
        details["coin"] = details["wallet_coin"]
    heights = [j.get("height") for j in jobs if isinstance(j.get("height"), int)]
    if heights:
        details["block_height"] = max(heights)
    miner_is_dst = miner == "dst"
    action = "login" if logins else ("job stream" if not submits else "share submission")
    extra = f" ({details['coin']}, {details['algorithm']})" if "coin" in details and "algorithm" in details else ""
    summary = _sentence("CryptoNote stratum", action, flow, miner_is_dst, agent, details.get("worker"),
                        len(submits), extra)
    return [_hit(conf, summary, details, miner_is_dst)]


# ---------------------------------------------------------------- Ethereum mining (eth_* and ES/1.0.0)

ETH_CLIENT = {"eth_submitLogin", "eth_login", "eth_getWork", "eth_submitWork", "eth_submitHashrate"}


def _valid_work(result: Any) -> bool:
    """eth_getWork result: [header pow-hash, seed hash, boundary(, block number)] as 0x hex."""
    return (isinstance(result, list) and 3 <= len(result) <= 4
            and all(is_hex(v, 32, True) for v in result[:3]))


def _valid_eth_call(m: RpcMessage) -> bool:
    p = m.params
    if m.method in ("eth_submitLogin", "eth_login"):
        return _is_str_list(p, 1) and bool(p[0])
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
               prefilter=_json_rpc)
@never_raises
def detect_eth_stratum(flow: Flow, ctx: Context) -> Iterable[Hit]:
    src, dst = _sides(flow)
    if src.transport is None and dst.transport is None:
        return []
    st = _analyse_stratum(src, dst)
    if st is not None and st.es1:
        details, agent, worker, submits = _stratum_common(flow, ctx, st)
        details.update(dialect="ethereumstratum", algorithm="Ethash-family")
        sw = miner_software(agent)
        if sw:
            details["miner_software"] = sw[0]
        conf = 0.95 if st.confirmed else 0.8
        summary = _sentence("EthereumStratum/1.0.0", "login" if st.client else "job stream", flow,
                            st.miner == "dst", agent, worker, submits)
        return [_hit(conf, summary, details, st.miner == "dst")]

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
    _add_wallet_hint(details, login, ctx)
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
    summary = _sentence(name, action, flow, miner == "dst", agent, details.get("worker") or rig, submits)
    return [_hit(conf, summary, details, miner == "dst")]


# ---------------------------------------------------------------- Bitcoin-era HTTP getwork / GBT

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
    src, dst = _sides(flow)
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
                _is_str_list(m.params, 1) and is_hex(m.params[0], 128, False))):
            calls["getwork"].append(m)
        elif m.method == "getblocktemplate" and (m.params in (None, []) or (
                isinstance(m.params, list) and isinstance(m.params[0], dict))):
            calls["getblocktemplate"].append(m)
        elif m.method == "submitblock" and _is_str_list(m.params, 1) and is_hex(m.params[0]) and len(m.params[0]) >= 160:
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
            _add_wallet_hint(details, user, ctx)
    if dialect == "getblocktemplate" and not mining_context:
        details["note"] = "lone getblocktemplate: may be node administration rather than mining"
    names = {"getwork": "getwork mining over HTTP", "getblocktemplate": "getblocktemplate (BIP 22) mining",
             "submitblock": "block submission (submitblock)", "http_mining_headers": "HTTP mining-pool headers"}
    extra = f" ({', '.join(headers)})" if headers and dialect == "http_mining_headers" else ""
    summary = _sentence(names[dialect], "request" if calls else "exchange", flow, miner == "dst", agent,
                        details.get("worker"), details["shares_submitted"], extra)
    return [_hit(conf, summary, details, miner == "dst")]

"""proto.cryptonote: the CryptoNote/XMRig stratum (Monero and friends): login, jobs with
blob/job_id/target, getjob, submit, keepalived and server job pushes."""

from __future__ import annotations

from typing import Any, Iterable

from minewatch.detect import Context, Flow, Hit, flow_detector
from minewatch.detect.mining_rpc import (
    add_wallet_hint,
    cut_call,
    is_str_list,
    json_rpc_prefilter,
    make_hit,
    miner_software,
    never_raises,
    parse_sides,
    sentence,
)
from minewatch.detect.wallets import guess_coin
from minewatch.dissect.jsonrpc import RpcMessage, is_hex

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
               prefilter=json_rpc_prefilter)
@never_raises
def detect_cryptonote(flow: Flow, ctx: Context) -> Iterable[Hit]:
    src, dst = parse_sides(flow)
    if src.transport is None and dst.transport is None:
        return []
    per_side = {}
    for name, side in (("src", src), ("dst", dst)):
        calls = [m for m in side.messages if m.method in ("login", "submit", "getjob", "keepalived")
                 and _valid_cn_call(m)]
        calls += [m for m in side.messages if m.method == "submit" and cut_call(m, calls)]
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
    add_wallet_hint(details, login_p.get("login"), ctx)
    algo_name = next((j.get("algo") for j in jobs if isinstance(j.get("algo"), str)), None)
    if algo_name is None:
        offered = login_p.get("algo")
        algo_name = offered if isinstance(offered, str) else (offered[0] if is_str_list(offered, 1) else None)
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
    summary = sentence("CryptoNote stratum", action, flow, miner_is_dst, agent, details.get("worker"),
                        len(submits), extra)
    return [make_hit(conf, summary, details, miner_is_dst)]

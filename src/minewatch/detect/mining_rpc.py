"""What the JSON-RPC mining dialects share: parsing both sides of a flow, the rule that a
payload shape we did not foresee gives no hit (never a traceback), the one-sentence
summaries, miner software named by agents, and the JSON-RPC prefilter.

Every dialect works on both directions: the capture may start mid-conversation and the
flow's src may be the pool. The side that sends client calls (subscribe/login/submit) is
the miner; the side that sends jobs is the pool. Generic JSON-RPC (eth_blockNumber, wallet
RPCs, LSP, web APIs) matches none of the dialects and yields nothing.
Not a detector module: it registers nothing.
"""

from __future__ import annotations

import functools
import re
import struct
from typing import Any

from minewatch.detect import Context, Flow, Hit
from minewatch.detect.heads import JSON_RPC_KEY, Heads
from minewatch.detect.wallets import guess_coin, shorten
from minewatch.dissect.jsonrpc import RpcMessage, RpcSide, parse_side


def json_rpc_prefilter(heads: Heads, ctx: Context):
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


def parse_sides(flow: Flow) -> tuple[RpcSide, RpcSide]:
    return parse_side(bytes(flow.src_payload_head or b"")), parse_side(bytes(flow.dst_payload_head or b""))


def is_str_list(value: Any, min_len: int = 0) -> bool:
    return isinstance(value, list) and len(value) >= min_len and all(isinstance(v, str) for v in value)


def make_hit(confidence: float, summary: str, details: dict, miner_is_dst: bool) -> Hit:
    severity = "high" if confidence >= 0.8 else ("medium" if confidence >= 0.6 else "low")
    return Hit(confidence, summary, details, severity=severity, miner_is_dst=miner_is_dst)


def _pool_port(flow: Flow, miner_is_dst: bool) -> int | None:
    return flow.src_port if miner_is_dst else flow.dst_port


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def sentence(dialect_name: str, action: str, flow: Flow, miner_is_dst: bool, agent: str | None,
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


def add_wallet_hint(details: dict, login: str | None, ctx: Context) -> None:
    if isinstance(login, str) and login:
        details["worker"] = shorten(login, ctx.show_wallets)
        coin = guess_coin(login)
        if coin:
            details["wallet_coin"] = coin


def cut_call(m: RpcMessage, whole: list[RpcMessage]) -> bool:
    """A call cut inside its params counts (e.g. for share totals) once the same side sent a
    complete, valid message of the same protocol; alone it proves nothing."""
    return m.partial and "params" not in m.raw and bool(whole)

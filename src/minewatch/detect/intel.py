"""Pool-contact detectors: a flow names a listed pool (DNS, TLS SNI, HTTP Host) or
reaches a listed pool address. Contact is not yet mining, hence the moderate confidences.

The miner is the client: the DNS querier, the TLS client, the HTTP requester. Flows whose
dst side played that role get Hit.miner_is_dst=True.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from minewatch.detect import Context, Flow, Hit, flow_detector
from minewatch.detect.heads import HTTP_START, Heads
from minewatch.dissect.dns import parse_dns, plausible_dns_header
from minewatch.dissect.http import looks_like_http, parse_messages
from minewatch.dissect.tls import looks_like_tls_handshake, parse_client_hello
from minewatch.intel import Indicator, IntelSet, default_intel

DNS_PORTS = {53, 5353, 5355}
CONFIDENCE = {"dns": 0.7, "tls_sni": 0.8, "http_host": 0.8, "http_connect": 0.8}
IP_CONFIDENCE = 0.6
COIN_NAMES = {"XMR": "Monero", "BTC": "Bitcoin", "LTC": "Litecoin", "ETC": "Ethereum Classic", "ETH": "Ethereum",
              "ZEC": "Zcash", "RVN": "Ravencoin", "KAS": "Kaspa", "ERG": "Ergo", "BCH": "Bitcoin Cash",
              "DASH": "Dash", "CFX": "Conflux"}
SEEN_AS_TEXT = {"dns": "DNS query for", "dns_cname": "DNS answer naming", "tls_sni": "TLS connection to",
                "http_host": "HTTP request to", "http_connect": "HTTP proxy CONNECT to", "ip": "connection to"}


def _intel(ctx: Context) -> IntelSet:
    return ctx.intel if ctx.intel is not None else default_intel()


def _describe(ind: Indicator) -> str:
    if ind.category == "browser_mining":
        kind = "browser-mining service"
    elif ind.coins:
        kind = f"{COIN_NAMES.get(ind.coins[0], ind.coins[0])} pool" if len(ind.coins) == 1 else "multi-coin pool"
    else:
        kind = "mining pool"
    bundled = ind.origin.startswith("bundled:") and ind.note
    label = ind.note.split(" (")[0].split(",")[0] if bundled else ind.value
    source = ind.source.split(" (")[0].split(", ")[0]
    return f"{label}, {kind}, source: {source}"


def _dns_names(flow: Flow) -> Iterator[tuple[str, str, bool]]:
    """(name, seen_as, miner_is_dst) for DNS questions and CNAME answers in the flow."""
    tcp = flow.ip_proto == 6 or flow.l4 == "TCP"
    on_port = flow.src_port in DNS_PORTS or flow.dst_port in DNS_PORTS
    for head, head_is_src in ((flow.src_payload_head, True), (flow.dst_payload_head, False)):
        if not head or not (on_port or (not tcp and plausible_dns_header(head))):
            continue
        for msg in parse_dns(head, tcp=tcp):
            # the querier sent the query (QR=0); the other side sent the response
            querier_is_src = head_is_src != msg.is_response
            for q in msg.questions:
                yield q.name, "dns", not querier_is_src
            for a in msg.answers:
                if a.rtype == 5:
                    yield a.value, "dns_cname", not querier_is_src


def _client_names(flow: Flow) -> Iterator[tuple[str, str, bool]]:
    """(name, seen_as, miner_is_dst) for TLS SNI and HTTP Host / CONNECT from the client side."""
    for head, miner_is_dst in ((flow.src_payload_head, False), (flow.dst_payload_head, True)):
        if not head:
            continue
        if looks_like_tls_handshake(head):
            hello = parse_client_hello(head)
            if hello and hello.sni:
                yield hello.sni, "tls_sni", miner_is_dst
        elif looks_like_http(head):
            for msg in parse_messages(head, limit=4):
                if msg.method is None:
                    continue
                if msg.method == "CONNECT" and msg.target:
                    yield msg.target.rsplit(":", 1)[0].strip("[]").lower(), "http_connect", miner_is_dst
                if msg.host:
                    yield msg.host, "http_host", miner_is_dst


def _names_possible(heads: Heads, ctx: Context):
    """DNS on its ports or with a plausible header on UDP, a TLS ClientHello, or HTTP."""
    def dns_header(b, n):  # one question; answer/authority/additional counts below 256
        return (n >= 12) & (b[:, 4] == 0) & (b[:, 5] == 1) & (b[:, 6] == 0) & (b[:, 8] == 0) & (b[:, 10] == 0)

    def client_hello(b, n):
        return (n >= 6) & (b[:, 0] == 0x16) & (b[:, 1] == 3) & (b[:, 5] == 1)

    dns = (heads.on_ports(DNS_PORTS) & heads.has_payload) | (heads.udp & heads.either(dns_header))
    carrier = dns | heads.either(client_hello) | heads.regex(HTTP_START)
    labels = _intel(ctx).domain_label_pattern()
    if labels is None or not carrier.any():
        return carrier & False
    return heads.regex(labels, within=carrier)


@flow_detector("intel.pool_domain", 1, "mining_pool_contact",
               "DNS query/CNAME, TLS SNI or HTTP Host naming a listed mining pool or browser-mining service",
               prefilter=_names_possible, stage=0)  # stage 0: its DNS answers feed ctx.resolved
def pool_domain(flow: Flow, ctx: Context) -> Iterable[Hit]:
    intel = _intel(ctx)
    by_category: dict[str, list[tuple[str, str, bool, Indicator]]] = {}
    seen: set[tuple[str, str]] = set()
    for name, seen_as, miner_is_dst in (*_client_names(flow), *_dns_names(flow)):
        if (name, seen_as) in seen:
            continue
        seen.add((name, seen_as))
        ind = intel.match_domain(name)
        if ind is not None:
            by_category.setdefault(ind.category, []).append((name, seen_as, miner_is_dst, ind))
    if any(seen_as.startswith("dns") for m in by_category.values() for _, seen_as, _, _ in m):
        _remember_addresses(flow, ctx)
    for category, matches in by_category.items():
        # the strongest sighting speaks for the flow; the others go into details
        name, seen_as, miner_is_dst, ind = max(matches, key=lambda m: CONFIDENCE.get(m[1], 0.7))
        confidence = CONFIDENCE.get(seen_as, 0.7)
        details = {"seen_as": seen_as, "pool_host": name, **ind.as_details(),
                   "names": sorted({m[0] for m in matches})}
        port = flow.src_port if miner_is_dst else flow.dst_port
        if seen_as not in ("dns", "dns_cname") and intel.miner_port(port):
            details["miner_port"] = port  # weak context only
        yield Hit(confidence=confidence,
                  summary=f"{SEEN_AS_TEXT[seen_as]} {name} ({_describe(ind)})",
                  details=details, category=category,
                  severity="medium" if seen_as.startswith("dns") or category == "browser_mining" else "high",
                  miner_is_dst=miner_is_dst)


def _remember_addresses(flow: Flow, ctx: Context) -> None:
    """A/AAAA answers of DNS responses that name a listed pool (in a question or CNAME)
    go into ctx.resolved, so connections to those addresses can be recognised later."""
    intel = _intel(ctx)
    tcp = flow.ip_proto == 6 or flow.l4 == "TCP"
    for head in (flow.src_payload_head, flow.dst_payload_head):
        for msg in parse_dns(head or b"", tcp=tcp) if head else ():
            if not msg.is_response:
                continue
            names = [q.name for q in msg.questions] + [a.value for a in msg.answers if a.rtype == 5]
            listed = next(((n, ind) for n in names if (ind := intel.match_domain(n)) is not None), None)
            if listed is None:
                continue
            for answer in msg.answers:
                if answer.rtype in (1, 28):
                    ctx.resolved[answer.value] = (listed[0], listed[1], flow.ts_start)


def _to_resolved_address(heads: Heads, ctx: Context):
    if not ctx.resolved:
        return np.zeros(heads.n, bool)
    known = pa.array(list(ctx.resolved), pa.string())
    hit = pc.or_(pc.is_in(heads.batch.column("dst_ip"), known), pc.is_in(heads.batch.column("src_ip"), known))
    return np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), bool) & ~heads.on_ports(DNS_PORTS)


@flow_detector("intel.pool_resolved_ip", 1, "mining_pool_contact",
               "connection to an address that a listed pool name resolved to earlier in the same traffic",
               prefilter=_to_resolved_address)
def pool_resolved_ip(flow: Flow, ctx: Context) -> Iterable[Hit]:
    miner_is_dst = flow.dst_ip not in ctx.resolved
    pool_ip_, pool_port = (flow.src_ip, flow.src_port) if miner_is_dst else (flow.dst_ip, flow.dst_port)
    if pool_ip_ not in ctx.resolved:
        return
    name, ind, _when = ctx.resolved[pool_ip_]
    if ind.category == "browser_mining":
        return  # a browser-mining script host, not a pool connection: its DNS sighting says enough
    details = {"seen_as": "resolved_ip", "pool_host": name, "pool_ip": pool_ip_, "pool_port": pool_port,
               **ind.as_details()}
    if _intel(ctx).miner_port(pool_port):
        details["miner_port"] = pool_port
    # Shared hosting or a CDN in front of a pool can put other sites on the same address.
    yield Hit(confidence=0.65,
              summary=f"connection to {pool_ip_}:{pool_port}, an address {name} resolved to ({_describe(ind)})",
              details=details, category=ind.category, severity="medium", miner_is_dst=miner_is_dst)


def _ip_lists_loaded(heads: Heads, ctx: Context):
    return np.full(heads.n, _intel(ctx).has_ips, bool)


@flow_detector("intel.pool_ip", 1, "mining_pool_contact",
               "flow to (or from) an IP, network or IP:port on a user-supplied pool address list",
               prefilter=_ip_lists_loaded)
def pool_ip(flow: Flow, ctx: Context) -> Iterable[Hit]:
    intel = _intel(ctx)
    if not intel.has_ips:
        return
    ind = intel.match_ip(flow.dst_ip, flow.dst_port)
    miner_is_dst = False
    if ind is None:
        ind = intel.match_ip(flow.src_ip, flow.src_port)
        miner_is_dst = ind is not None
    if ind is None:
        return
    pool_ip_, pool_port = (flow.src_ip, flow.src_port) if miner_is_dst else (flow.dst_ip, flow.dst_port)
    details = {"seen_as": "ip", "pool_ip": pool_ip_, "pool_port": pool_port, **ind.as_details()}
    if intel.miner_port(pool_port):
        details["miner_port"] = pool_port
    yield Hit(confidence=IP_CONFIDENCE,
              summary=f"connection to {pool_ip_}:{pool_port} listed as {ind.value} ({_describe(ind)})",
              details=details, category=ind.category, severity="medium", miner_is_dst=miner_is_dst)

"""One line of a user-supplied indicator list -> indicator values, whatever the list format.

The format is told per line, so a file may mix them:
  hosts            `0.0.0.0 pool.example.com` / `127.0.0.1 a.example b.example`  -> exact domains
  plain domain     `supportxmr.com`, `*.supportxmr.com`, `.supportxmr.com`          -> suffix domains
  adblock          `||supportxmr.com^`                                              -> suffix domain
  IP / CIDR        `192.0.2.7`, `2001:db8::/32`                                     -> ip / cidr
  with a port      `192.0.2.7:3333`, `[2001:db8::1]:443`, `pool.example.com:3333`
  pool URL         `stratum+tcp://pool.example.com:3333`                            -> domain (or ip) + port
  maltrail trail   `pool.example.com  # reference`                                 (a comment after the value)
Comments (`#`, `!`, `;`) and blank lines yield nothing; an unrecognised line raises BadLine.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

HOSTS_SINKS = {"0.0.0.0", "127.0.0.1", "::", "::1", "::0", "0", "0:0:0:0:0:0:0:0"}
HOSTS_BOILERPLATE = {"localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost",
                     "ip6-loopback", "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters",
                     "ip6-allhosts", "0.0.0.0"}
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class BadLine(ValueError):
    """The line holds something, but no indicator this module understands."""


@dataclass(frozen=True, slots=True)
class ParsedValue:
    kind: str  # domain | ip | cidr
    value: str  # normalised: lower-case domain, compressed IP, network with prefix
    match: str  # exact | suffix (domains); exact for ip and cidr
    port: int | None = None


def normalise_domain(text: str) -> str | None:
    """Lower-case ASCII (IDNA for Unicode) name without trailing dot, or None if it is no domain."""
    name = text.strip().rstrip(".").lower()
    if not name:
        return None
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if len(name) > 253:
        return None
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():  # an IP-like string, never a domain
        return None
    return name


def _ip(text: str) -> str | None:
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise BadLine(f"bad port {text!r}")
    return int(text)


def _strip_comment(line: str) -> str:
    for mark in ("#", " ;", "\t;"):
        cut = line.find(mark)
        if cut >= 0:
            line = line[:cut]
    return line.strip()


def _host_and_port(token: str) -> tuple[str, int | None]:
    if "://" in token:  # stratum+tcp://host:port/path
        token = token.split("://", 1)[1].split("/", 1)[0]
        if "@" in token:  # user:pass@host
            token = token.rsplit("@", 1)[1]
    if token.startswith("["):  # [v6]:port
        end = token.find("]")
        if end < 0:
            raise BadLine("unclosed '['")
        rest = token[end + 1 :]
        if rest and not rest.startswith(":"):
            raise BadLine("junk after ']'")
        return token[1:end], (_port(rest[1:]) if rest else None)
    if token.count(":") == 1:
        host, port = token.split(":")
        return host, _port(port)
    return token, None


def _single(token: str) -> ParsedValue:
    if token.startswith("||"):  # adblock ||domain^
        token = token[2:].split("^", 1)[0]
        name = normalise_domain(token)
        if name is None:
            raise BadLine("adblock rule without a plain domain")
        return ParsedValue("domain", name, "suffix")
    if "/" in token and "://" not in token:
        try:
            net = ipaddress.ip_network(token, strict=False)
        except ValueError:
            raise BadLine("bad network") from None
        if net.num_addresses == 1:
            return ParsedValue("ip", net.network_address.compressed, "exact")
        if net.prefixlen < (8 if net.version == 4 else 16):  # 0.0.0.0/0 would flag every flow
            raise BadLine("network too wide")
        return ParsedValue("cidr", net.compressed, "exact")
    ip = _ip(token)  # bare IPv6 holds colons: try it before host:port
    if ip:
        return ParsedValue("ip", ip, "exact")
    host, port = _host_and_port(token)
    ip = _ip(host)
    if ip:
        return ParsedValue("ip", ip, "exact", port)
    match = "suffix"
    if host.startswith("*."):
        host = host[2:]
    elif host.startswith("."):
        host = host[1:]
    name = normalise_domain(host)
    if name is None:
        raise BadLine("neither a domain nor an IP")
    return ParsedValue("domain", name, match, port)


def parse_line(line: str) -> list[ParsedValue]:
    """Indicator values on one line ([] for comments and blanks); raises BadLine."""
    text = line.strip().lstrip("\ufeff")
    if not text or text[0] in "#!;":
        return []
    if text.startswith("[") and " " in text.split("]", 1)[0]:  # adblock header [Adblock Plus 2.0]
        return []
    text = _strip_comment(text)
    if not text:
        return []
    tokens = text.split()
    if len(tokens) == 1:
        return [_single(tokens[0])]
    if tokens[0] in HOSTS_SINKS:  # hosts file
        out = []
        for token in tokens[1:]:
            if token.lower() in HOSTS_BOILERPLATE:
                continue
            name = normalise_domain(token)
            if name is None:
                raise BadLine(f"hosts line with a bad name {token!r}")
            out.append(ParsedValue("domain", name, "exact"))
        return out
    raise BadLine("more than one value on the line")

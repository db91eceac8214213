"""Pool-contact intelligence: domain, IP and port indicators, each with its provenance.

    intel = IntelSet.load(["my_pools.txt"])        # bundled lists + user lists
    intel.match_domain("Pool.SupportXMR.com.")      # -> Indicator(value="supportxmr.com", ...)
    intel.match_ip("192.0.2.7", 3333)               # -> Indicator | None
    intel.problems                                  # ["my_pools.txt:12: neither a domain nor an IP: 'x y'"]

Bundled lists live in intel/data (see its README for every source). User files may be
hosts files, plain domain lists, IP/CIDR lists, ip:port / domain:port lists, maltrail
trails, CoinBlockerLists, or a CSV with the bundled header; the format is told per line.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from minewatch.errors import InputError
from minewatch.intel.lines import BadLine, ParsedValue, normalise_domain, parse_line

DATA_DIR = Path(__file__).with_name("data")
BUNDLED_DOMAINS = DATA_DIR / "pool_domains.csv"
BUNDLED_PORTS = DATA_DIR / "miner_ports.csv"
CSV_HEADER = "domain,match,category,coins"
USER_CATEGORY = "mining_pool_contact"
MAX_PROBLEMS_PER_FILE = 200
CACHE_LIMIT = 1 << 18


@dataclass(frozen=True, slots=True)
class Indicator:
    value: str  # the listed domain, IP or network
    kind: str  # domain | ip | cidr
    match: str  # exact | suffix
    category: str  # mining_pool_contact | browser_mining
    coins: tuple[str, ...] = ()
    source: str = ""
    source_date: str = ""
    licence: str = ""
    note: str = ""
    port: int | None = None  # from ip:port / domain:port lines
    origin: str = ""  # file:line the entry came from

    def as_details(self) -> dict:
        """The indicator as it goes into evidence details."""
        return {"indicator": self.value, "indicator_kind": self.kind, "indicator_match": self.match,
                "list_category": self.category, "coins": list(self.coins), "source": self.source,
                "source_date": self.source_date, "licence": self.licence, "note": self.note,
                "indicator_port": self.port, "origin": self.origin}


@dataclass(frozen=True, slots=True)
class MinerPort:
    port: int
    source: str
    note: str


class IntelSet:
    """All indicators of one scan; look-ups are cached, so call them per flow freely."""

    def __init__(self) -> None:
        self.exact_domains: dict[str, Indicator] = {}
        self.suffix_domains: dict[str, Indicator] = {}
        self.ips: dict[str, list[Indicator]] = {}  # compressed IP -> entries (with or without port)
        self.networks: dict[tuple[int, int], dict[int, Indicator]] = {}  # (version, prefix) -> {net int: ind}
        self.miner_ports: dict[int, MinerPort] = {}
        self.problems: list[str] = []
        self.files: dict[str, dict[str, int]] = {}  # path -> {"entries": n, "bad_lines": n}
        self._domain_cache: dict[str, Indicator | None] = {}
        self._ip_cache: dict[tuple[str, int | None], Indicator | None] = {}

    # ---- loading -------------------------------------------------------------------------

    @classmethod
    def load(cls, extra_files: Iterable[str] = (), include_bundled: bool = True) -> "IntelSet":
        """Bundled lists (unless include_bundled=False) plus each user file; a missing or
        unreadable file raises InputError, a bad line is counted in `problems` and skipped."""
        intel = cls()
        if include_bundled:
            intel.add_file(BUNDLED_DOMAINS, display="bundled:pool_domains.csv")
            intel._load_ports(BUNDLED_PORTS)
        for path in extra_files:
            intel.add_file(path)
        return intel

    @property
    def has_ips(self) -> bool:
        return bool(self.ips or self.networks)

    def add_file(self, path, category: str = USER_CATEGORY, display: str | None = None) -> int:
        """Add one list file of any supported format; returns the number of entries taken."""
        text = _read_text(path)
        name = display or str(path)
        lines = text.splitlines()
        first = next((ln.strip().lstrip("\ufeff") for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), "")
        if first.lower().startswith(CSV_HEADER):
            taken, bad = self._add_csv(name, text)
        else:
            taken, bad = self._add_lines(name, lines, category)
        self.files[name] = {"entries": taken, "bad_lines": bad}
        if bad > MAX_PROBLEMS_PER_FILE:
            self.problems.append(f"{name}: {bad - MAX_PROBLEMS_PER_FILE} more bad lines not listed")
        self._domain_cache.clear()
        self._ip_cache.clear()
        return taken

    def _problem(self, name: str, lineno: int, reason: str, line: str, bad_so_far: int) -> None:
        if bad_so_far <= MAX_PROBLEMS_PER_FILE:
            self.problems.append(f"{name}:{lineno}: {reason}: {line.strip()[:80]!r}")

    def _add_lines(self, name: str, lines: list[str], category: str) -> tuple[int, int]:
        taken = bad = 0
        source = f"user list {Path(name).name}"
        for lineno, line in enumerate(lines, 1):
            try:
                values = parse_line(line)
            except BadLine as exc:
                bad += 1
                self._problem(name, lineno, str(exc), line, bad)
                continue
            for v in values:
                self._add(v, Indicator(v.value, v.kind, v.match, category, source=source, port=v.port,
                                       note=_trail_reference(line), origin=f"{name}:{lineno}"))
                taken += 1
        return taken, bad

    def _add_csv(self, name: str, text: str) -> tuple[int, int]:
        taken = bad = 0
        rows = (ln for ln in io.StringIO(text.lstrip("\ufeff")) if not ln.lstrip().startswith("#"))
        for lineno, row in enumerate(csv.DictReader(rows), 2):
            try:
                values = parse_line(row.get("domain") or "")
                match = (row.get("match") or "suffix").strip().lower()
                if len(values) != 1 or match not in ("exact", "suffix"):
                    raise BadLine("bad domain or match column")
            except BadLine as exc:
                bad += 1
                self._problem(name, lineno, str(exc), ",".join(str(v) for v in row.values()), bad)
                continue
            v = values[0]
            coins = tuple(c.strip().upper() for c in (row.get("coins") or "").split(";") if c.strip())
            ind = Indicator(v.value, v.kind, match if v.kind == "domain" else "exact",
                            (row.get("category") or USER_CATEGORY).strip(), coins,
                            (row.get("source") or f"list {Path(name).name}").strip(),
                            (row.get("source_date") or "").strip(), (row.get("licence") or "").strip(),
                            (row.get("note") or "").strip(), v.port, f"{name}:{lineno}")
            self._add(v, ind)
            taken += 1
        return taken, bad

    def _add(self, v: ParsedValue, ind: Indicator) -> None:
        """First entry for a value wins: bundled lists load first, user lists add to them."""
        if v.kind == "domain":
            table = self.suffix_domains if ind.match == "suffix" else self.exact_domains
            table.setdefault(v.value, ind)
        elif v.kind == "ip":
            self.ips.setdefault(v.value, []).append(ind)
        else:
            net = ipaddress.ip_network(v.value)
            self.networks.setdefault((net.version, net.prefixlen), {}).setdefault(int(net.network_address), ind)

    def _load_ports(self, path) -> None:
        for row in csv.DictReader(io.StringIO(_read_text(path))):
            if (row.get("port") or "").isdigit():
                self.miner_ports[int(row["port"])] = MinerPort(int(row["port"]), row.get("source", ""),
                                                               row.get("note", ""))

    # ---- look-ups ------------------------------------------------------------------------

    def match_domain(self, name: str) -> Indicator | None:
        """The most specific indicator for a host name: an exact entry for the name itself,
        else the longest listed suffix ending on a label boundary. Case and a trailing dot
        are ignored; a name that is no domain (an IP, garbage) gives None."""
        cache = self._domain_cache
        if name in cache:
            return cache[name]
        found = self._lookup_domain(name)
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[name] = found
        return found

    def _lookup_domain(self, name: str) -> Indicator | None:
        if not isinstance(name, str):
            return None
        name = name.strip().rstrip(".").lower()
        if not name.isascii():
            name = normalise_domain(name) or ""
        if not name or "." not in name:
            return None
        hit = self.exact_domains.get(name)
        if hit is not None:
            return hit
        suffixes = self.suffix_domains
        candidate = name
        while True:
            hit = suffixes.get(candidate)
            if hit is not None:
                return hit
            dot = candidate.find(".")
            if dot < 0:
                return None
            candidate = candidate[dot + 1 :]

    def match_ip(self, ip: str, port: int | None = None) -> Indicator | None:
        """An entry for the address: ip:port (when the port agrees) before a bare IP, before
        the longest matching network. IPv4 and IPv6; a bad address gives None."""
        if not self.ips and not self.networks:
            return None
        key = (ip, port)
        cache = self._ip_cache
        if key in cache:
            return cache[key]
        found = self._lookup_ip(ip, port)
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[key] = found
        return found

    def _lookup_ip(self, ip: str, port: int | None) -> Indicator | None:
        try:
            addr = ipaddress.ip_address(ip)
        except (ValueError, TypeError):
            return None
        if addr.version == 6 and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        entries = self.ips.get(addr.compressed)
        if entries:
            with_port = [e for e in entries if e.port is not None and e.port == port]
            bare = [e for e in entries if e.port is None]
            if with_port or bare:
                return (with_port or bare)[0]
        best: Indicator | None = None
        best_prefix = -1
        value = int(addr)
        bits = addr.max_prefixlen
        for (version, prefix), table in self.networks.items():
            if version != addr.version or prefix <= best_prefix:
                continue
            mask = ((1 << prefix) - 1) << (bits - prefix) if prefix else 0
            hit = table.get(value & mask)
            if hit is not None:
                best, best_prefix = hit, prefix
        return best

    def domain_label_pattern(self) -> bytes | None:
        """A regex that any payload naming a listed domain must match: each entry's longest
        label, which appears literally (any case) in a TLS SNI, an HTTP Host or a DNS
        message, compressed or not. Used to skip flows cheaply, never to decide."""
        key = (len(self.exact_domains), len(self.suffix_domains))
        if getattr(self, "_label_key", None) != key:
            labels = {max(d.split("."), key=len) for d in (*self.exact_domains, *self.suffix_domains)}
            escaped = sorted(re.escape(label) for label in labels if label)
            self._label_pattern = ("(?i)(?:" + "|".join(escaped) + ")").encode() if escaped else None
            self._label_key = key
        return self._label_pattern

    def miner_port(self, port: int | None) -> MinerPort | None:
        """Weak context only: a port pools often use. Never evidence on its own."""
        return self.miner_ports.get(port) if port is not None else None

    def __len__(self) -> int:
        return (len(self.exact_domains) + len(self.suffix_domains) + sum(len(v) for v in self.ips.values())
                + sum(len(t) for t in self.networks.values()))


def _trail_reference(line: str) -> str:
    """maltrail and similar lists put a reference after '#': keep it as the entry's note."""
    cut = line.find("#")
    return line[cut + 1 :].strip()[:200] if cut > 0 else ""


def _read_text(path) -> str:
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise InputError(path, "is a directory, not an indicator list") from None
    except OSError as exc:
        raise InputError(path, f"cannot read indicator list ({exc.strerror or exc})") from None
    return data.decode("utf-8", errors="replace")


_DEFAULT: IntelSet | None = None


def default_intel() -> IntelSet:
    """The bundled lists, loaded once per process (for detectors run without ctx.intel)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = IntelSet.load()
    return _DEFAULT


__all__ = ["Indicator", "IntelSet", "MinerPort", "default_intel", "BUNDLED_DOMAINS", "BUNDLED_PORTS"]

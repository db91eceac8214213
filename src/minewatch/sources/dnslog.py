"""DNS resolver logs -> dns.

Three kinds, told apart from the first lines (or forced with `kind=`):

- BIND query log (`querylog yes;`), with or without the leading timestamp and category:
    06-Jan-2025 10:00:01.123 queries: info: client @0x7f.. 10.0.0.5#53211 (pool.example.com): query: pool.example.com IN A +E(0)K (10.0.0.1)
  Timestamps are local time of the resolver; read in `naive_tz` (default UTC). Lines
  without a timestamp get the file's modification time (noted in the stats).
- dnsmasq (`log-queries`), syslog style: `Jan  6 10:00:01 dnsmasq[123]: query[A] name from 10.0.0.5`
  then `reply name is 1.2.3.4`. Syslog lines carry no year: it is `year=` when given,
  else the year of the file's modification time (a line dated after that moment is
  taken from the year before); the stats note which. Each query makes one row; the
  reply/cached/forwarded lines that follow fill its answers (`NXDOMAIN` -> rcode).
- Generic CSV with a header: `ts,client_ip,query,qtype[,answers]`; ts is epoch
  seconds or ISO 8601; answers are separated by `|` or `;`.
"""

from __future__ import annotations

import csv
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator
from zoneinfo import ZoneInfo

from minewatch.errors import InputError
from minewatch.schema.dns import DNS
from minewatch.sources._records import (
    BATCH_ROWS,
    Batch,
    RecordError,
    address_field,
    RowBatcher,
    SourceStats,
    any_time_to_us,
    clean_domain,
    iso_to_us,
    text_lines,
    too_broken,
)

KINDS = ("bind", "dnsmasq", "csv")
CSV_COLUMNS = ("ts", "client_ip", "query", "qtype")

_BIND = re.compile(
    r"^(?:(?P<date>\d{2}-[A-Za-z]{3}-\d{4} \d{2}:\d{2}:\d{2}(?:\.\d+)?)\s+)?"
    r"(?:[\w-]+:\s+)*"  # category and severity ("queries: info:")
    r"client (?:@0x[0-9a-fA-F]+ )?(?P<ip>[0-9A-Fa-f:.]+)#(?P<port>\d+)"
    r"(?: \([^)]*\))?: (?:view [^:]+: )?query: (?P<name>\S+) (?P<cls>\S+) (?P<type>\S+) (?P<flags>\S*)"
    r"(?: \((?P<server>[0-9A-Fa-f:.]+)\))?"
)
_SYSLOG_PREFIX = re.compile(
    r"^(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d{2}:\d{2}:\d{2})(?:\.\d+)? (?:\S+ )?dnsmasq(?:\[\d+\])?: (?P<msg>.*)$"
)
_DNSMASQ_QUERY = re.compile(r"^(?:\d+ [0-9A-Fa-f:.]+/\d+ )?query\[(?P<type>[^\]]+)\] (?P<name>\S+) from (?P<ip>[0-9A-Fa-f:.]+)")
_DNSMASQ_ANSWER = re.compile(
    r"^(?:\d+ [0-9A-Fa-f:.]+/\d+ )?(?P<what>reply|cached|config|/\S+) (?P<name>\S+) is (?P<value>.+)$"
)
_DNSMASQ_OTHER = re.compile(r"^(?:\d+ [0-9A-Fa-f:.]+/\d+ )?(forwarded|validation|dnssec-query|query-tcp|reducing|started|compile|using|read|exiting|cache|time|queries|server)\b")
_MONTHS = {m: i for i, m in enumerate(("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec").split(), start=1)}
_BIND_MONTHS = {m.lower(): i for m, i in _MONTHS.items()}
_NEGATIVE = {"NXDOMAIN": "NXDOMAIN", "NODATA": "NOERROR", "NODATA-IPv4": "NOERROR", "NODATA-IPv6": "NOERROR",
             "SERVFAIL": "SERVFAIL", "REFUSED": "REFUSED"}


def sniff_dnslog(lines: list[str]) -> str | None:
    """bind, dnsmasq or csv from a few first lines; None when none fits."""
    for line in lines:
        if not line.strip():
            continue
        if _BIND.search(line):
            return "bind"
        if _SYSLOG_PREFIX.match(line) or _DNSMASQ_QUERY.match(line):
            return "dnsmasq"
    first = next((line for line in lines if line.strip()), "")
    header = [c.strip().lower() for c in first.split(",")]
    if all(c in header for c in CSV_COLUMNS):
        return "csv"
    return None


def read_dnslog(
    path: str | Path,
    *,
    stats: SourceStats,
    kind: str | None = None,
    year: int | None = None,
    naive_tz: str = "UTC",
    batch_rows: int = BATCH_ROWS,
) -> Iterator[Batch]:
    """Yield ("dns", batch) for a BIND query log, a dnsmasq log or a DNS CSV."""
    if kind is None:
        head = []
        for _, text in text_lines(path, stats):
            head.append(text)
            if len(head) >= 20:
                break
        if not any(h.strip() for h in head):
            stats.note("empty file")
            return
        kind = sniff_dnslog(head)
        if kind is None:
            raise InputError(path, "not a BIND query log, dnsmasq log or DNS CSV (ts,client_ip,query,qtype)", "line 1")
    if kind not in KINDS:
        raise InputError(path, f"unknown DNS log kind {kind!r}; known: {', '.join(KINDS)}")
    stats.reader = f"dnslog-{kind}"
    tz = timezone.utc if naive_tz == "UTC" else ZoneInfo(naive_tz)
    batcher = RowBatcher("dns", DNS, stats, batch_rows)
    rows = {"bind": _bind_rows, "dnsmasq": _dnsmasq_rows, "csv": _csv_rows}[kind](path, stats, tz, year)
    for number, row in rows:
        row["source_file"] = str(path)
        row["record_ref"] = number
        if (out := batcher.add(row)) is not None:
            yield out
    if (out := batcher.flush()) is not None:
        yield out
    too_broken(stats, path, f"{kind} DNS log")


def _file_moment(path) -> datetime:
    return datetime.fromtimestamp(Path(path).stat().st_mtime, tz=timezone.utc)


def _micros(moment: datetime) -> int:
    return round(moment.timestamp() * 1_000_000)


def bind_time(text: str, tz, seconds_seen: dict) -> int | None:
    """Epoch microseconds of `06-Jan-2025 10:00:01.123` read in `tz`; None when it is not
    a time. A log writes many lines per second: each second is parsed once (`seconds_seen`)."""
    whole, _, fraction = text.partition(".")
    if len(fraction) > 6 or (fraction and not fraction.isdigit()):
        return None
    base = seconds_seen.get(whole)
    if base is None:
        try:
            day, month, rest = whole.split("-", 2)
            moment = datetime.strptime(f"{day}-{_BIND_MONTHS[month.lower()]:02d}-{rest}", "%d-%m-%Y %H:%M:%S")
        except (KeyError, ValueError):
            return None
        if len(seconds_seen) > 100_000:
            seconds_seen.clear()
        base = seconds_seen[whole] = int(moment.replace(tzinfo=tz).timestamp()) * 1_000_000
    return base + (int(fraction.ljust(6, "0")) if fraction else 0)


def _bind_rows(path, stats: SourceStats, tz, year) -> Iterator[tuple[int, dict]]:
    fallback = None
    seconds_seen: dict[str, int] = {}
    for number, text in text_lines(path, stats):
        if not text.strip():
            continue
        match = _BIND.search(text)
        if match is None:
            if " query: " in text or "client " in text:
                stats.reject(number, "unrecognised BIND query line", text)
            else:
                stats.ignore("other BIND log lines")
            continue
        if not _addresses_ok(stats, number, text, client=match["ip"], server=match["server"]):
            continue
        if match["date"]:
            ts = bind_time(match["date"], tz, seconds_seen)
            if ts is None:
                stats.reject(number, "bad BIND timestamp", text)
                continue
        else:
            if fallback is None:
                fallback = _micros(_file_moment(path))
                stats.note("BIND lines without a timestamp were given the file's modification time")
            ts = fallback
        yield number, {
            "ts": ts,
            "client_ip": match["ip"],
            "client_port": int(match["port"]) if int(match["port"]) <= 65535 else None,
            "server_ip": match["server"],
            "server_port": None,
            "l4": "TCP" if "T" in (match["flags"] or "") else "UDP",
            "query": clean_domain(match["name"]),
            "qtype": match["type"].upper(),
            "rcode": None,
            "answers": [],
            "response": False,
        }


def _dnsmasq_rows(path, stats: SourceStats, tz, year) -> Iterator[tuple[int, dict]]:
    """Queries, each completed by the answer lines that follow it for the same name."""
    moment = _file_moment(path)
    if year is None:
        stats.note(f"dnsmasq lines have no year: took {moment.year} from the file's modification time "
                   "(lines dated later than that moment are taken from the year before)")
    else:
        stats.note(f"dnsmasq lines have no year: took {year} as given")
    pending: dict[str, tuple[int, dict]] = {}  # query name -> its row, until the next query of that name
    chain_owner: str | None = None  # the query whose last reply was a CNAME: next replies are its chain
    for number, text in text_lines(path, stats):
        if not text.strip():
            continue
        prefix = _SYSLOG_PREFIX.match(text)
        message = prefix["msg"] if prefix else text
        ts = None
        if prefix:
            try:
                ts = _syslog_time(prefix, year, moment, tz)
            except (KeyError, ValueError):
                stats.reject(number, "bad syslog timestamp", text)
                continue
        if (query := _DNSMASQ_QUERY.match(message)) is not None:
            if ts is None:
                stats.reject(number, "dnsmasq line without a timestamp", text)
                continue
            if not _addresses_ok(stats, number, text, client=query["ip"]):
                continue
            name = clean_domain(query["name"]) or "."
            if (done := pending.pop(name, None)) is not None:
                yield done
            pending[name] = (number, {
                "ts": ts, "client_ip": query["ip"], "client_port": None, "server_ip": None, "server_port": None,
                "l4": None, "query": name, "qtype": query["type"].upper(), "rcode": None, "answers": [],
                "response": False,
            })
            if len(pending) > 10000:  # bound memory on logs that never answer
                oldest = next(iter(pending))
                yield pending.pop(oldest)
        elif (answer := _DNSMASQ_ANSWER.match(message)) is not None:
            name = clean_domain(answer["name"]) or "."
            item = pending.get(name)
            value = answer["value"].strip()
            if item is None and chain_owner in pending:  # reply for the target of a CNAME
                item = pending[chain_owner]
                if name not in item[1]["answers"]:
                    item[1]["answers"].append(name)
            if item is None:
                stats.ignore("dnsmasq answers without their query")
                continue
            if value == "<CNAME>":
                chain_owner = item[1]["query"]
            row = item[1]
            row["response"] = True
            code = value.split(" ", 1)[0]
            if code in _NEGATIVE or value.startswith("NODATA"):
                row["rcode"] = _NEGATIVE.get(code, "NOERROR")
            else:
                row["rcode"] = row["rcode"] or "NOERROR"
                if not value.startswith("<"):  # <CNAME>, <SRV>: the record's data is not logged
                    row["answers"].append(value)
        elif _DNSMASQ_OTHER.match(message) or prefix:
            stats.ignore("other dnsmasq lines")
        else:
            stats.reject(number, "not a dnsmasq log line", text)
    yield from sorted(pending.values(), key=lambda item: item[0])


def _addresses_ok(stats: SourceStats, number: int, text: str, **addresses) -> bool:
    """False (the line rejected, naming the field and its value) when a given address is
    not one."""
    for name, value in addresses.items():
        try:
            address_field(value, name)
        except RecordError as e:
            stats.reject(number, e.reason, text, detail=e.detail)
            return False
    return True


def _syslog_time(prefix: re.Match, year: int | None, moment: datetime, tz) -> int:
    month = _MONTHS[prefix["mon"]]
    hour, minute, second = (int(x) for x in prefix["time"].split(":"))
    guess_year = year if year is not None else moment.year
    when = datetime(guess_year, month, int(prefix["day"]), hour, minute, second, tzinfo=tz)
    if year is None and when > moment + timedelta(days=1):
        when = when.replace(year=guess_year - 1)
    return _micros(when)


def _csv_rows(path, stats: SourceStats, tz, year) -> Iterator[tuple[int, dict]]:
    lines = text_lines(path, stats)
    header_number, header = next(((n, t) for n, t in lines if t.strip()), (0, ""))
    names = [c.strip().lower() for c in next(csv.reader([header]))]
    missing = [c for c in CSV_COLUMNS if c not in names]
    if missing:
        raise InputError(path, f"DNS CSV lacks column(s): {', '.join(missing)}", f"line {header_number}")
    index = {name: names.index(name) for name in names}
    for number, text in lines:
        if not text.strip():
            continue
        try:
            values = next(csv.reader([text]))
        except csv.Error:
            stats.reject(number, "malformed CSV line", text)
            continue
        if len(values) < len(CSV_COLUMNS) or len(values) > len(names):
            stats.reject(number, f"wrong number of fields ({len(values)}, expected {len(names)})", text)
            continue
        get = lambda name: values[index[name]].strip() if name in index and index[name] < len(values) else ""
        try:
            raw_ts = get("ts")
            ts = any_time_to_us(raw_ts) if re.match(r"^-?\d", raw_ts) and "-" not in raw_ts[1:] else iso_to_us(raw_ts, tz)
        except (ValueError, OverflowError):
            stats.reject(number, "bad time in ts", text)
            continue
        if not get("client_ip") or not get("query"):
            stats.reject(number, "missing client_ip or query", text)
            continue
        if not _addresses_ok(stats, number, text, client_ip=get("client_ip"), server_ip=get("server_ip")):
            continue
        answers = [a.strip() for a in re.split(r"[|;]", get("answers")) if a.strip()]
        rcode = get("rcode").upper() or None
        yield number, {
            "ts": ts, "client_ip": get("client_ip"), "client_port": None, "server_ip": get("server_ip") or None,
            "server_port": None, "l4": None, "query": clean_domain(get("query")),
            "qtype": get("qtype").upper() or None, "rcode": rcode, "answers": answers,
            "response": bool(answers) or rcode is not None,
        }

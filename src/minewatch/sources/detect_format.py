"""Tell an input file's format from its first bytes and lines (and, for a few, its name).

Formats: pcap (pcap/pcapng), nfcapd (binary nfdump), nfdump-csv, zeek (TSV or JSON),
suricata (EVE JSON), dnslog (BIND / dnsmasq / DNS CSV), parquet and csv (generic
tables: they need a column mapping). gzip files are looked into.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from minewatch.errors import InputError
from minewatch.sources._records import looks_binary
from minewatch.sources.dnslog import sniff_dnslog
from minewatch.sources.nfdump import NFCAPD_MAGIC, csv_mapping

CAPTURE_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")
FORMATS = ("pcap", "nfcapd", "nfdump-csv", "zeek", "suricata", "dnslog", "parquet", "csv")
HEAD_BYTES = 65536


def detect_format(path: str | Path) -> str:
    """One of FORMATS, or InputError saying why the file is not recognised."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEAD_BYTES)
    except IsADirectoryError:
        raise InputError(path, "is a directory, not a file") from None
    except OSError as e:
        raise InputError(path, e.strerror or str(e)) from None
    if not head:
        raise InputError(path, "empty file")
    if head[:4] in CAPTURE_MAGICS:
        return "pcap"
    if head[:2] == NFCAPD_MAGIC:
        return "nfcapd"
    if head[:4] == b"PAR1":
        return "parquet"
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as f:
                head = f.read(HEAD_BYTES)
        except (OSError, EOFError):
            raise InputError(path, "corrupt gzip file", "byte 0") from None
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise InputError(path, "UTF-16 text: convert it to UTF-8 first (iconv -f UTF-16 -t UTF-8)", "byte 0")
    if looks_binary(head):
        raise InputError(path, "binary data of no known format", "byte 0")
    return _text_format(path, head.decode("utf-8", "replace").removeprefix("\ufeff"))  # a BOM: open_input skips it


def _text_format(path, text: str) -> str:
    lines = text.splitlines()
    if len(text) == HEAD_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    content = [line for line in lines if line.strip()]
    if not content:
        raise InputError(path, "no content (blank lines only)")
    first = content[0].lstrip()
    if first.startswith("#separator") or first.startswith("#fields"):
        return "zeek"
    if first.startswith("{"):
        return _json_format(path, content)
    if "," in first:
        mapping = csv_mapping(first.split(","))
        if {"ts_start", "src_ip", "dst_ip"} <= set(mapping) and ("pr" in first.split(",") or "sa" in first.split(",")):
            return "nfdump-csv"
    if sniff_dnslog(content[:20]) is not None:
        return "dnslog"
    if "," in first or "\t" in first or ";" in first:
        return "csv"
    raise InputError(path, "text of no known format (not Zeek, Suricata, nfdump CSV, a DNS log or a table)", "line 1")


def _json_format(path, content: list[str]) -> str:
    for line in content[:20]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if "event_type" in record:
            return "suricata"
        if "uid" in record or "id.orig_h" in record or "id" in record and "ts" in record:
            return "zeek"
        if "ts" in record and _zeek_log_name(path):  # arp.log, files.log, software.log...: read, then skipped
            return "zeek"
    raise InputError(path, "JSON lines that are neither Suricata EVE nor Zeek", "line 1")


def _zeek_log_name(path) -> bool:
    from minewatch.sources.zeek import _kind_from_name

    return bool(_kind_from_name(str(path)))

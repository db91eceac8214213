"""JSON-RPC messages from a payload head: newline-delimited (or back-to-back) JSON objects
over raw TCP, or JSON bodies of HTTP requests/responses. Never raises on garbage.

A head may be cut anywhere; whatever parses is returned and `truncated` says the rest did not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from minewatch.dissect.http import HttpMessage, looks_like_http, parse_messages

MAX_OBJECTS = 64  # enough for a 2 KB head; bounds the work on adversarial input
_WS = b" \t\r\n"
_HEX = frozenset("0123456789abcdefABCDEF")
_decoder = json.JSONDecoder()


@dataclass(frozen=True)
class RpcMessage:
    """One JSON-RPC object, as sent by one side."""

    raw: dict
    partial: bool = False  # recovered from a cut last line: only its leading members are present

    @property
    def method(self) -> str | None:
        m = self.raw.get("method")
        return m if isinstance(m, str) else None

    @property
    def params(self) -> Any:
        return self.raw.get("params")

    @property
    def id(self) -> Any:
        return self.raw.get("id")

    @property
    def result(self) -> Any:
        return self.raw.get("result")

    @property
    def error(self) -> Any:
        return self.raw.get("error")

    @property
    def is_response(self) -> bool:
        return self.method is None and ("result" in self.raw or "error" in self.raw)


@dataclass(frozen=True)
class RpcSide:
    """All JSON-RPC messages one side sent in its head, with the HTTP envelope if any."""

    messages: tuple[RpcMessage, ...] = ()
    http: tuple[HttpMessage, ...] = ()
    transport: str | None = None  # "json" (raw TCP), "http", or None when nothing parsed
    truncated: bool = False

    def methods(self) -> set[str]:
        return {m.method for m in self.messages if m.method}

    def calls(self, *names: str) -> list[RpcMessage]:
        return [m for m in self.messages if m.method in names]

    def responses(self) -> list[RpcMessage]:
        return [m for m in self.messages if m.is_response]

    def header(self, name: str) -> str | None:
        """First value of an HTTP header (lower-case name) across this side's messages."""
        for msg in self.http:
            if name in msg.headers:
                return msg.headers[name]
        return None


EMPTY = RpcSide()


def _decode_objects(data: bytes) -> tuple[list[RpcMessage], bool]:
    """Decode back-to-back JSON values; skip a bad line; stop at a cut one."""
    try:
        text = data.decode("utf-8", errors="replace")
    except Exception:  # pragma: no cover - decode with replace does not raise
        return [], True
    out: list[RpcMessage] = []
    pos, n = 0, len(text)
    truncated = False
    while pos < n and len(out) < MAX_OBJECTS:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos >= n:
            break
        if text[pos] not in "{[":
            nl = text.find("\n", pos)  # not JSON here: skip this line
            if nl < 0:
                truncated = True
                break
            pos = nl + 1
            continue
        try:
            value, end = _decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            nl = text.find("\n", pos)
            if nl < 0:  # the last line was cut: keep the members that arrived whole
                truncated = True
                members = _leading_members(text, pos)
                if members:
                    out.append(RpcMessage(members, partial=True))
                break
            pos = nl + 1
            continue
        pos = end
        batch = value if isinstance(value, list) else [value]  # JSON-RPC 2.0 batches
        out.extend(RpcMessage(v) for v in batch if isinstance(v, dict))
    return out[:MAX_OBJECTS], truncated


def _leading_members(text: str, pos: int) -> dict:
    """Members of a cut JSON object that were received complete, e.g. the id and method
    of '{"id":4,"method":"mining.submit","params":["w","j",' -> {"id": 4, "method": ...}."""
    members: dict = {}
    if text[pos : pos + 1] != "{":
        return members
    pos += 1
    n = len(text)
    try:
        while pos < n:
            while pos < n and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= n or text[pos] != '"':
                break
            key, pos = _decoder.raw_decode(text, pos)
            while pos < n and text[pos] in " \t\r\n":
                pos += 1
            if pos >= n or text[pos] != ":":
                break
            pos += 1
            while pos < n and text[pos] in " \t\r\n":
                pos += 1
            value, pos = _decoder.raw_decode(text, pos)
            if pos >= n:
                break  # a number at the very end may itself be cut
            members[key] = value
    except (ValueError, RecursionError):
        pass  # the cut member
    return members


def _http_bodies(data: bytes) -> tuple[list[HttpMessage], list[bytes]]:
    """HTTP messages and their bodies. The last body is taken up to the end of the head
    when it has no Content-Length (HTTP/1.0 read-to-close) or is chunked."""
    msgs = parse_messages(data)
    bodies = [m.body for m in msgs]
    if msgs and not bodies[-1]:
        last = msgs[-1]
        start = data.rfind(last.start_line.encode("latin-1", errors="replace"))
        end = data.find(b"\r\n\r\n", start)
        sep = 4
        if end < 0:
            end, sep = data.find(b"\n\n", start), 2
        if start >= 0 and end >= 0:
            rest = data[end + sep :]
            if "chunked" in last.headers.get("transfer-encoding", "").lower():
                size_line, nl, rest = rest.partition(b"\r\n")
                rest = rest if nl else b""
            bodies[-1] = rest
    return msgs, bodies


@lru_cache(maxsize=512)
def parse_side(head: bytes) -> RpcSide:
    """Parse one side's payload head. Cheap on the common negative (first byte test)."""
    if not head:
        return EMPTY
    data = head.lstrip(_WS)
    if not data:
        return EMPTY
    if data[:1] in (b"{", b"["):
        if data[:1] == b"[" and data[1:2] not in (b"{", b" ", b"\n", b"\r", b"\t"):
            return EMPTY
        messages, truncated = _decode_objects(data)
        return RpcSide(tuple(messages), (), "json" if messages else None, truncated)
    if looks_like_http(data):
        try:
            msgs, bodies = _http_bodies(data)
        except Exception:  # http.py is defensive, but never let garbage escape a detector
            return EMPTY
        messages: list[RpcMessage] = []
        truncated = False
        for body in bodies:
            body = body.lstrip(_WS)
            if body[:1] in (b"{", b"["):
                got, cut = _decode_objects(body)
                messages.extend(got)
                truncated = truncated or cut
        return RpcSide(tuple(messages[:MAX_OBJECTS]), tuple(msgs), "http", truncated)
    return EMPTY


def is_hex(value: Any, nbytes: int | None = None, prefix: bool | None = None) -> bool:
    """True when `value` is a hex string (optionally 0x-prefixed) of exactly `nbytes` bytes."""
    if not isinstance(value, str) or not value:
        return False
    s = value
    if s[:2] in ("0x", "0X"):
        if prefix is False:
            return False
        s = s[2:]
    elif prefix is True:
        return False
    if not s or (nbytes is not None and len(s) != 2 * nbytes):
        return False
    return all(c in _HEX for c in s)

"""HTTP/1.x messages from a payload head (possibly several pipelined, possibly cut)."""

from __future__ import annotations

from dataclasses import dataclass, field

METHODS = (b"GET", b"POST", b"PUT", b"HEAD", b"OPTIONS", b"DELETE", b"PATCH", b"CONNECT")


@dataclass
class HttpMessage:
    start_line: str
    method: str | None  # None for responses
    target: str | None
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    @property
    def host(self) -> str | None:
        h = self.headers.get("host")
        if not h:
            return None
        h = h.strip().lower()
        if h.startswith("["):  # [v6]:port
            return h[1 : h.find("]")] if "]" in h else h
        return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def looks_like_http(data: bytes) -> bool:
    return data.startswith(b"HTTP/1.") or any(data.startswith(m + b" ") for m in METHODS)


def parse_messages(data: bytes, limit: int = 16) -> list[HttpMessage]:
    """Parse up to `limit` consecutive HTTP messages; a cut body is returned as far as present."""
    out: list[HttpMessage] = []
    pos = 0
    while pos < len(data) and len(out) < limit:
        if not looks_like_http(data[pos:]):
            break
        end = data.find(b"\r\n\r\n", pos)
        sep = 4
        if end < 0:
            end = data.find(b"\n\n", pos)
            sep = 2
        head = data[pos : end if end >= 0 else len(data)]
        lines = head.decode("latin-1").splitlines()
        if not lines:
            break
        start = lines[0]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        parts = start.split(" ", 2)
        if start.startswith("HTTP/"):
            method, target = None, None
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
        else:
            method, target, status = parts[0], (parts[1] if len(parts) > 1 else None), None
        body = b""
        if end >= 0:
            body_start = end + sep
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                length = 0
            body = data[body_start : body_start + max(length, 0)]
            pos = body_start + max(length, 0)
        else:
            pos = len(data)
        out.append(HttpMessage(start, method, target, status, headers, body))
    return out

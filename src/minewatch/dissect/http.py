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
            body, pos = _body(data, end + sep, headers, is_response=method is None)
        else:
            pos = len(data)
        out.append(HttpMessage(start, method, target, status, headers, body))
    return out


def _body(data: bytes, start: int, headers: dict[str, str], is_response: bool) -> tuple[bytes, int]:
    """The message body and where the next message starts: Content-Length, chunked, or to the end."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _dechunk(data, start)
    length_text = headers.get("content-length")
    if length_text is not None:
        try:
            length = max(int(length_text), 0)
        except ValueError:
            length = 0
        return data[start : start + length], start + length
    if is_response:  # no length: the body runs until the connection closes
        return data[start:], len(data)
    return b"", start  # a request without a length has no body


def _dechunk(data: bytes, pos: int) -> tuple[bytes, int]:
    parts: list[bytes] = []
    while pos < len(data):
        line_end = data.find(b"\r\n", pos)
        if line_end < 0:
            break
        try:
            size = int(data[pos:line_end].split(b";")[0].strip() or b"0", 16)
        except ValueError:
            break
        pos = line_end + 2
        if size == 0:
            trailer_end = data.find(b"\r\n\r\n", pos - 2)
            return b"".join(parts), (trailer_end + 4 if trailer_end >= 0 else len(data))
        parts.append(data[pos : pos + size])
        pos += size + 2
    return b"".join(parts), len(data)

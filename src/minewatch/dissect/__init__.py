"""Small, defensive parsers for application payload heads (HTTP, DNS, TLS, JSON-RPC).
They never raise on malformed input: they return what they could read."""

"""Canonical Arrow schemas: every stage reads and writes one of these."""

from minewatch.schema.alerts import ALERTS
from minewatch.schema.dns import DNS
from minewatch.schema.evidence import EVIDENCE
from minewatch.schema.flows import FLOWS
from minewatch.schema.http import HTTP
from minewatch.schema.tls import TLS

TABLES = {"flows": FLOWS, "dns": DNS, "tls": TLS, "http": HTTP, "alerts": ALERTS, "evidence": EVIDENCE}

__all__ = ["ALERTS", "DNS", "EVIDENCE", "FLOWS", "HTTP", "TLS", "TABLES"]

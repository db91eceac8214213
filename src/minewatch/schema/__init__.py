"""Canonical Arrow schemas: every stage reads and writes one of these."""

from minewatch.schema.evidence import EVIDENCE
from minewatch.schema.flows import FLOWS

__all__ = ["EVIDENCE", "FLOWS"]

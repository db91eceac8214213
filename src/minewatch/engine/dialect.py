"""SQL is written once, in DuckDB's dialect; other engines get it through sqlglot.

    to_dialect(sql, "spark")       # -> Spark SQL text, or DialectError naming what does not translate
    portability_problems(sql)      # -> constructs known not to survive the trip (empty = fine)

The known pitfalls (ARCHITECTURE.md) are checked before sqlglot is asked, because
sqlglot renders some of them without complaint into SQL that means something else.
"""

from __future__ import annotations

import re

from minewatch.errors import MinewatchError

SOURCE_DIALECT = "duckdb"

# (pattern over the DuckDB text, why it does not travel)
PITFALLS = (
    (re.compile(r"\[\s*-\s*\d"), "negative array index (Spark arrays have no negative indexing)"),
    (re.compile(r"\btime_bucket\s*\(", re.I), "time_bucket is DuckDB-only; use date_trunc or arithmetic"),
    (re.compile(r"\bepoch_(ms|us|ns)\s*\(", re.I), "sub-second epoch functions are DuckDB-only"),
    (re.compile(r"\blist_\w+\s*\(", re.I), "list_* functions are DuckDB-only"),
    (re.compile(r"\\"), "backslash escapes are read differently by Spark's string literals"),
    (re.compile(r"\bQUALIFY\b", re.I), "QUALIFY: filter a row_number() in a subquery instead"),
    (re.compile(r"\bILIKE\b", re.I), "ILIKE needs Spark 3.3; write lower(x) LIKE ..."),
)


class DialectError(MinewatchError):
    """A statement that cannot be rendered for the target engine."""


def portability_problems(sql: str) -> list[str]:
    return [why for pattern, why in PITFALLS if pattern.search(sql)]


def to_dialect(sql: str, target: str = "spark", pretty: bool = False) -> str:
    """`sql` (DuckDB dialect, one statement) rendered for `target` (a sqlglot dialect name)."""
    if target == SOURCE_DIALECT:
        return sql
    problems = portability_problems(sql)
    if problems:
        raise DialectError("; ".join(problems))
    import sqlglot
    from sqlglot.errors import ErrorLevel, SqlglotError

    try:
        out = sqlglot.transpile(sql, read=SOURCE_DIALECT, write=target, pretty=pretty,
                                unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise DialectError(f"cannot render for {target}: {str(exc).splitlines()[0]}") from None
    if len(out) != 1:
        raise DialectError(f"expected one statement, got {len(out)}")
    return out[0]

"""SQL is written once, in DuckDB's dialect; other engines get it through sqlglot.

    to_dialect(sql, "spark")       # -> Spark SQL text, or DialectError naming what does not translate
    portability_problems(sql)      # -> constructs known not to survive the trip (empty = fine)

The known pitfalls (ARCHITECTURE.md) are checked before sqlglot is asked, because
sqlglot renders some of them without complaint into SQL that means something else.

For Spark, three DuckDB meanings that sqlglot renders with Spark's own meaning are
rewritten first (SPARK_REWRITES), so that both engines compute the same values:

    a / b               DuckDB always divides in DOUBLE; Spark keeps DECIMAL operands
                        (2.0 is a DECIMAL literal) in DECIMAL   -> CAST(a AS DOUBLE) / b
    date_diff(u, a, b)  DuckDB counts unit boundaries crossed; Spark counts whole units
                        elapsed (0.9 s -> 2.1 s: 2 against 1)   -> difference of floored epochs
    round(x, n), n > 0  DuckDB rounds a DOUBLE as round(x * 10^n) / 10^n; Spark rounds the
                        decimal text of x (24.95 -> 24.9 against 25.0) -> DuckDB's formula
                        for DOUBLE and FLOAT operands, Spark's ROUND for exact decimals
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
        trees = sqlglot.parse(sql, read=SOURCE_DIALECT)
        if len(trees) != 1 or trees[0] is None:
            raise DialectError(f"expected one statement, got {len(trees)}")
        tree = trees[0]
        if target in SPARK_DIALECTS:
            for rewrite in SPARK_REWRITES:
                tree = tree.transform(rewrite)
        return tree.sql(dialect=target, pretty=pretty, unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise DialectError(f"cannot render for {target}: {str(exc).splitlines()[0]}") from None


SPARK_DIALECTS = ("spark", "spark2", "databricks")
# microseconds per unit, for the units whose boundaries are fixed in UTC
UNIT_MICROS = {"MICROSECOND": 1, "MILLISECOND": 1_000, "SECOND": 1_000_000, "MINUTE": 60_000_000,
               "HOUR": 3_600_000_000, "DAY": 86_400_000_000}


def _double_division(node):
    from sqlglot import exp

    if isinstance(node, exp.Div) and not node.args.get("_minewatch"):
        div = exp.Div(this=exp.cast(node.this.copy(), "DOUBLE"), expression=node.expression.copy())
        div.set("_minewatch", True)
        return div
    return node


def _boundary_date_diff(node):
    from sqlglot import exp

    if not isinstance(node, exp.DateDiff):
        return node
    unit = node.args.get("unit")
    micros = UNIT_MICROS.get(unit.name.upper() if unit is not None else "DAY")
    if micros is None:  # weeks, months, years: left to sqlglot
        return node

    def floored(ts):  # floor(unix_micros(ts) / micros), exact for times before 1970 too
        us = exp.Anonymous(this="UNIX_MICROS", expressions=[exp.cast(ts.copy(), "TIMESTAMP")])
        if micros == 1:
            return us
        n = exp.Literal.number(micros)
        return exp.IntDiv(this=exp.paren(exp.Sub(this=us, expression=exp.Anonymous(
            this="PMOD", expressions=[us.copy(), n]))), expression=n.copy())

    return exp.paren(exp.Sub(this=floored(node.this), expression=floored(node.expression)))


# DuckDB rounds the exact binary value of a DOUBLE (round(24.95, 1) = 24.9: the double
# 24.95 is 24.9499999...). Spark's ROUND reads the double's shortest decimal text, so it
# rounds 24.95 up. The Spark rendering scales by 10^n, takes the product's rounding error
# exactly (Dekker's two-product, plain IEEE arithmetic) and, when the scaled double sits
# on a tie that the exact product does not reach, rounds toward zero instead.
ROUND_TEMPLATE = """
CASE WHEN TYPEOF(__raw__) NOT IN ('double', 'float') THEN ROUND(__raw__, __n__)
ELSE (ROUND(__y__) - CASE WHEN ABS(__y__) - FLOOR(ABS(__y__)) = 0.5D
                           AND SIGNUM(__y__) * ((__hx__ * __m__ - __y__) + (__x__ - __hx__) * __m__) < 0
                          THEN SIGNUM(__y__) ELSE 0 END) / __m__
END
"""
# 10^n has at most 26 significant bits up to n = 11 (5^11 < 2^26), so only x needs
# splitting and the two-product's error term is (hx * m - y) + lx * m.
MAX_ROUND_DIGITS = 11
SPLITTER = 134217729.0  # 2^27 + 1: Veltkamp's splitter for doubles


def _double_literal(value: float):
    from sqlglot import exp

    return exp.cast(exp.Literal.string(repr(float(value))), "DOUBLE")


def _duckdb_round(node):
    import sqlglot
    from sqlglot import exp

    if not isinstance(node, exp.Round) or node.args.get("_minewatch"):
        return node
    decimals = node.args.get("decimals")
    if not (isinstance(decimals, exp.Literal) and decimals.is_int and 0 < int(decimals.name) <= MAX_ROUND_DIGITS):
        return node
    n = int(decimals.name)
    x = exp.paren(exp.cast(node.this.copy(), "DOUBLE"))
    m = _double_literal(10.0 ** n)
    c = _double_literal(SPLITTER)
    y = exp.paren(exp.Mul(this=x.copy(), expression=m.copy()))
    cx = exp.Mul(this=c, expression=x.copy())
    x_high = exp.paren(exp.Sub(this=cx, expression=exp.paren(exp.Sub(this=cx.copy(), expression=x.copy()))))
    values = {"__raw__": exp.paren(node.this.copy()), "__n__": exp.Literal.number(n), "__m__": m,
              "__y__": y, "__x__": x, "__hx__": x_high}

    def fill(c):
        if isinstance(c, exp.Column) and c.name in values:
            return values[c.name].copy()
        return c

    tree = sqlglot.parse_one(ROUND_TEMPLATE, read="spark").transform(fill)
    for r in tree.find_all(exp.Round):
        r.set("_minewatch", True)
    return tree


def _is(node, name: str) -> bool:
    from sqlglot import exp

    return isinstance(node, exp.Column) and node.name == name


SPARK_REWRITES = (_double_division, _boundary_date_diff, _duckdb_round)

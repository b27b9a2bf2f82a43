"""Agno's filter expressions (`agno.filters`, as dicts) evaluated over the folded rows.

AgentOS's trace search hands `filter_expr=` to `get_traces` and `get_trace_stats`, and for a
non-admin caller it ANDs `user_id == <caller>` into it: ignoring the expression would show one
user another's traces, so it is evaluated, never dropped. Agno's SQL databases translate the
same language to SQL (`agno.db.filter_converter`); this is that translation's Python twin over
row dicts, with the same checks (known operators, allowed columns, nesting depth, timestamps
normalised to UTC) and SQL's three-valued logic: a comparison with a missing (NULL) value is
unknown, unknown is neither kept nor turned into a match by NOT, so `NEQ` and `NOT` never pick
up rows that lack the field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from agno.db.filter_converter import DATETIME_COLUMNS, MAX_FILTER_DEPTH, TRACE_COLUMNS
from agno.utils.dttm import parse_datetime_utc

Row = dict[str, Any]
Check = Callable[[Row], "bool | None"]  # True, False, or None for SQL's "unknown"

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": lambda a, b: bool(a == b),
    "NEQ": lambda a, b: bool(a != b),
    "GT": lambda a, b: bool(a > b),
    "GTE": lambda a, b: bool(a >= b),
    "LT": lambda a, b: bool(a < b),
    "LTE": lambda a, b: bool(a <= b),
}


def trace_filter(expr: dict[str, Any] | None) -> Callable[[Row], bool] | None:
    """A row predicate for a trace filter expression (None when there is none). Raises
    ValueError, as the SQL databases do, for a malformed expression, an unknown operator or
    a field that is not a trace column."""
    if expr is None:
        return None
    check = _compile(expr, TRACE_COLUMNS, 0)
    return lambda row: check(row) is True


def _compile(expr: Any, allowed: set[str], depth: int) -> Check:
    if depth > MAX_FILTER_DEPTH:
        raise ValueError(f"Filter expression exceeds maximum nesting depth of {MAX_FILTER_DEPTH}")
    if not isinstance(expr, dict) or "op" not in expr:
        raise ValueError(f"Invalid filter: must be a dict with 'op' key. Got: {expr}")
    op = expr["op"]
    if op in _COMPARE or op in ("CONTAINS", "STARTSWITH"):
        key, value = expr.get("key"), expr.get("value")
        if key is None or value is None:
            raise ValueError(f"{op} filter requires 'key' and 'value' fields. Got: {expr}")
        _check_field(key, allowed)
        return _field_check(op, key, value)
    if op == "IN":
        key, values = expr.get("key"), expr.get("values")
        if key is None or values is None:
            raise ValueError(f"IN filter requires 'key' and 'values' fields. Got: {expr}")
        if not isinstance(values, (list, tuple)):
            raise ValueError(f"IN filter 'values' must be a list. Got: {expr}")
        _check_field(key, allowed)
        wanted = [_as_time(v) if key in DATETIME_COLUMNS else v for v in values]
        return lambda row: _in(_value(row, key), wanted)
    if op in ("AND", "OR"):
        conditions = expr.get("conditions")
        if not conditions or not isinstance(conditions, (list, tuple)):
            raise ValueError(f"{op} filter requires 'conditions' field. Got: {expr}")
        checks = [_compile(c, allowed, depth + 1) for c in conditions]
        return (lambda row: _all(checks, row)) if op == "AND" else (lambda row: _any(checks, row))
    if op == "NOT":
        condition = expr.get("condition")
        if not condition:
            raise ValueError(f"NOT filter requires 'condition' field. Got: {expr}")
        inner = _compile(condition, allowed, depth + 1)
        return lambda row: _not(inner(row))
    raise ValueError(f"Unknown filter operator: {op}")


def _check_field(key: Any, allowed: set[str]) -> None:
    if key not in allowed:
        raise ValueError(f"Invalid filter field: '{key}'. Allowed: {sorted(allowed)}")


def _field_check(op: str, key: str, value: Any) -> Check:
    if op in ("CONTAINS", "STARTSWITH"):  # case-insensitive text match, as the SQL databases do
        needle = str(value).lower()
        if op == "CONTAINS":
            return lambda row: _text(row, key, lambda text: needle in text)
        return lambda row: _text(row, key, lambda text: text.startswith(needle))
    compare = _COMPARE[op]
    wanted = _as_time(value) if key in DATETIME_COLUMNS else value

    def check(row: Row) -> bool | None:
        have = _value(row, key)
        if have is None:
            return None
        try:
            return compare(have, wanted)
        except TypeError:  # values of kinds that do not order (a text vs a number): unknown
            return None

    return check


def _value(row: Row, key: str) -> Any:
    """The row's value, timestamps as UTC datetimes (stored as ISO text with any offset)."""
    value = row.get(key)
    if value is not None and key in DATETIME_COLUMNS:
        return _as_time(value)
    return value


def _as_time(value: Any) -> Any:
    try:
        return parse_datetime_utc(value) if isinstance(value, (str, datetime)) else value
    except ValueError:
        return value  # not a time: compared as it is (and found unequal to times)


def _text(row: Row, key: str, match: Callable[[str], bool]) -> bool | None:
    value = row.get(key)
    return None if value is None else match(str(value).lower())


def _in(have: Any, wanted: list[Any]) -> bool | None:
    if have is None:
        return None
    return any(have == w for w in wanted)


def _all(checks: list[Check], row: Row) -> bool | None:
    unknown = False
    for check in checks:
        result = check(row)
        if result is False:
            return False
        unknown = unknown or result is None
    return None if unknown else True


def _any(checks: list[Check], row: Row) -> bool | None:
    unknown = False
    for check in checks:
        result = check(row)
        if result is True:
            return True
        unknown = unknown or result is None
    return None if unknown else False


def _not(result: bool | None) -> bool | None:
    return None if result is None else not result

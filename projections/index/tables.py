"""The orderings of Agno's other tables (traces, spans, evals, knowledge, metrics, learnings,
compactions, tool results, transcripts) in the shared read index.

Every record row is in `r|<table>|seq` (insertion order: the table order Agno's in-memory and
JSON backends start from). A table named here is also in:

    r|<t>|<col>=<value>|seq    a *scope*: the rows whose column has that value, in table order
    r|<t>|<sort>[-|+]          a *sort*: every row by a column, for pages read from an offset
    r|<t>|<col>=<value>|<sort>[-|+]   the same within a scope (only where a table asks for it)
    r|<t>|<sort>|odd           rows whose sort value is not a whole second (see below)

Scopes only ever narrow what is read: a reader picks the most selective scope a query names,
reads those rows in table order and hands them to the same filtering and sorting code that
would otherwise see the whole table, so the answer cannot differ (a scope is a superset of
the query's matches whatever the value's type: values are keyed by their text). Sorts let a
page with no other filter be read from its offset. Their scores follow Agno's ordering rules
exactly for whole seconds: ties keep table order (a stable sort), `-` walks descending with
missing values first (InMemoryDb's `apply_sorting`), `+` ascending with missing values last.
A value that is not a whole second in [0, 2^31) cannot carry the tie fraction, so the row is
also listed in `|odd` and readers fall back to the scope path while any such row exists.
Traces sort by their start instant in microseconds (`st`), as JsonDb's descending string
sort of UTC ISO times — only text as `isoformat` writes a UTC time is in it (a `Z` or another
offset sorts as text otherwise than its instant; readers fall back while any trace is not);
the score has no room for a tie fraction, so a reader puts ties inside a page in table order
itself and leaves a page with a tie across its edge to JsonDb's sort. Traces are also in
`r|traces|cat` by the wall clock of their `created_at` text (`wall_us`), which a time range
of `get_trace_stats` reads (widened by a second each way).

Aggregates (kept by the indexer beside the rows, see the end of this module): per session the
trace statistics (`tstat`, `ts|last`), per (span name, kind) the span statistics (`sstat`,
`ss|all`), per user the learning statistics (`lstat`, `lu|user`, `lu|last-`, `lu|last+`).
Rows whose values an aggregate cannot keep exactly are listed in `r|<t>|stat|odd`; readers
leave the table to the adapter's own grouping while any exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from enum import Enum
from typing import Any, Literal, NamedTuple

from projections.index.base import Member

MISSING = float(1 << 40)  # the score of a missing value: above every whole second we index
_FRACTION = 1 << 21


class TableSpec(NamedTuple):
    scopes: tuple[str, ...] = ()  # columns (or derived names in `derived`) with equality orderings
    sorts: tuple[str, ...] = ()  # names in SORT_VALUES, SQL_SORTS or EXACT_SORTS
    scoped_sorts: tuple[str, ...] = ()  # scopes that also get every sort within them
    nulls: tuple[str, ...] = ()  # scopes where a missing value is a scope of its own (`!none`)
    derived: dict[str, Callable[[dict[str, Any]], Any]] = {}
    flat_sorts: tuple[str, ...] = ()  # names in EXACT_SORTS kept over the whole table only
    unkept: Callable[[dict[str, Any]], bool] | None = None  # rows the table's statistics cannot keep


def _json_key(*cols: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: json.dumps([row.get(c) if c != "subpath" else (row.get(c) or "") for c in cols])


def _with(column: str, derive: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    """A derived scope only for rows that have `column` (the others are in no such scope)."""
    return lambda row: derive(row) if row.get(column) else None


_UTC_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?\+00:00")


def _start_us(row: dict[str, Any]) -> float | None:
    """The instant a row's `start_time` names, in µs, where that orders as JsonDb orders the
    texts: a datetime, or text as `isoformat` writes a UTC time (other text — a `Z`, another
    offset, another precision — may sort as text otherwise than its instant: None)."""
    value = row.get("start_time")
    if isinstance(value, str) and not _UTC_TEXT.fullmatch(value):
        return None
    return _instant_us(value)


def _instant_us(value: Any) -> float | None:
    try:
        when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return float(round(when.timestamp() * 1_000_000))


def wall_us(value: Any) -> float | None:
    """The wall-clock time an ISO text names, in µs, its offset ignored, for text that starts
    `YYYY-MM-DDTHH:MM:SS` (what `datetime.isoformat` writes): two such texts whose wall
    clocks are more than a second apart compare as text as their wall clocks do (the first
    19 characters decide), so a reader widens a range of texts by a second each way and
    hands the rows inside to the code that compares the texts (None: not such a text)."""
    if not (isinstance(value, str) and len(value) >= 19 and value[4] == value[7] == "-" and value[10] == "T"
            and value[13] == value[16] == ":"
            and (value[:4] + value[5:7] + value[8:10] + value[11:13] + value[14:16] + value[17:19]).isdigit()):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    naive = when.replace(tzinfo=None) - datetime(1970, 1, 1)
    return float((naive.days * 86_400 + naive.seconds) * 1_000_000 + naive.microseconds)


def _day(row: dict[str, Any]) -> float | None:
    value = row.get("date")
    try:
        return float(date.fromisoformat(str(value)[:10]).toordinal())
    except ValueError:
        return None


def _coalesced_updated(row: dict[str, Any]) -> Any:
    """Agno's `get_sort_value` for `updated_at`: the creation time when never updated."""
    value = row.get("updated_at")
    return value if value is not None else row.get("created_at")


SORT_VALUES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "cre": lambda row: row.get("created_at"),
    "upd": _coalesced_updated,
    "exp": lambda row: row.get("expires_at"),
}
SQL_SORTS: dict[str, tuple[Callable[[dict[str, Any]], Any], bool]] = {
    "qcre": (lambda row: row.get("created_at"), True),
    "qupd": (_coalesced_updated, False),
}
"""Sorts by SQLite's rules, as the adapter's SqliteDb-shaped tables (learnings) order: NULLs
first ascending and last descending; ties in table order, except descending on a column
SqliteDb indexes (True here: `created_at`), whose index it walks backwards (value, rowid),
so those ties come newest-inserted first. Scores as `sql_sort_scores` gives them."""
EXACT_SORTS: dict[str, Callable[[dict[str, Any]], float | None]] = {
    "st": _start_us, "day": _day, "cat": lambda row: wall_us(row.get("created_at")),
    "sst": lambda row: wall_us(row.get("start_time"))}
FLAT_COLUMNS = {"cat": "created_at", "sst": "start_time"}  # (a value there that `wall_us` cannot score: `|odd`)
"""Sorts scored by their value alone (no tie fraction): ties and missing values are the
reader's concern (traces: by key; metrics and expiry: the reader re-sorts what it collected)."""

TABLES: dict[str, TableSpec] = {
    "traces": TableSpec(scopes=("run_id", "session_id", "user_id", "agent_id", "team_id", "workflow_id", "status"),
                        sorts=("st",), scoped_sorts=("session_id", "user_id", "agent_id", "team_id",
                                                     "workflow_id", "status"), flat_sorts=("cat",)),
    "spans": TableSpec(scopes=("trace_id", "parent_span_id", "name"), nulls=("name",), flat_sorts=("sst",),
                       unkept=lambda row: span_group(row) is None),
    "evals": TableSpec(scopes=("agent_id", "team_id", "workflow_id", "model_id", "user_id", "eval_type"),
                       sorts=("cre", "upd")),
    "knowledge": TableSpec(scopes=("linked_to", "user_id"), sorts=("cre", "upd"), nulls=("user_id",)),
    "metrics": TableSpec(scopes=("user_id",), sorts=("day",)),
    "learnings": TableSpec(scopes=("user_id", "learning_type", "agent_id", "team_id", "workflow_id", "session_id",
                                   "namespace", "entity_id", "entity_type"), nulls=("user_id",),
                           sorts=("qcre", "qupd"),
                           unkept=lambda row: learning_owner(row) is False),
    "compactions": TableSpec(scopes=("session_id",)),
    "tool_results": TableSpec(scopes=("session_id", "place"), sorts=("exp",),
                              derived={"place": _json_key("namespace", "path")}),
    "transcripts": TableSpec(scopes=("agno_session_id", "doc", "sess", "proj", "uuid"),
                             derived={"doc": _json_key("framework", "project_key", "session_id", "subpath"),
                                      "sess": _json_key("framework", "project_key", "session_id"),
                                      "proj": _json_key("framework", "project_key"),
                                      "uuid": _with("entry_uuid", _json_key("framework", "project_key",
                                                                            "session_id", "subpath", "entry_uuid"))}),
}


def scope_text(value: Any) -> str | None:
    """How a column value names its scope (None: the value is not indexed — a reader asked
    for it walks the table). None itself is a value (`!none`: unowned rows)."""
    if value is None:
        return "!none"
    if isinstance(value, Enum):  # (as the row is stored and read back: a str enum is its value)
        value = value.value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (str, int, float)):
        return str(value)
    return getattr(value, "value", None) if isinstance(getattr(value, "value", None), str) else None


def scope_ordering(table: str, column: str, value: Any, sort: str = "seq") -> str | None:
    text = scope_text(value)
    return None if text is None else f"r|{table}|{column}={text}|{sort}"


def column_value(table: str, column: str, row: dict[str, Any]) -> Any:
    derive = TABLES[table].derived.get(column) if table in TABLES else None
    return derive(row) if derive is not None else row.get(column)


def whole_second(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < (1 << 31)


def sort_scores(value: Any, seq: int) -> tuple[float, float]:
    """(descending, ascending) scores of a whole-second value (None: missing) with table-order
    ties both ways; missing values first descending, last ascending."""
    base = MISSING if value is None else float(value)
    frac = (seq % (1 << 20)) / _FRACTION
    return base + 0.5 - frac, base + frac


_SQL_NULL = -2.0  # a missing value's base score in a SQL sort: below every whole second


def sql_sort_scores(value: Any, seq: int, indexed: bool) -> tuple[float, float]:
    """(descending, ascending) scores of a whole-second value (None: missing) by SQLite's
    rules (see `SQL_SORTS`): missing values below every value both ways (last descending,
    first ascending); ties in table order ascending, and descending too unless `indexed`."""
    base = _SQL_NULL if value is None else float(value)
    frac = (seq % (1 << 20)) / _FRACTION
    return (base + frac if indexed else base + 0.5 - frac), base + frac


def record_members(table: str, seq: int, row: dict[str, Any]) -> list[Member]:
    """Every ordering a record row is in (see the module docstring)."""
    out: list[Member] = [(f"r|{table}|seq", seq)]
    spec = TABLES.get(table)
    if spec is None:
        return out
    scores: list[tuple[str, float]] = []
    for sort in spec.sorts:
        exact = EXACT_SORTS.get(sort)
        if exact is not None:
            score = exact(row)
            if score is not None:
                scores.append((sort, score))
            continue
        sql = SQL_SORTS.get(sort)
        value = sql[0](row) if sql is not None else SORT_VALUES[sort](row)
        if value is not None and not whole_second(value):
            out.append((f"r|{table}|{sort}|odd", seq))
            value = None
        down, up = sort_scores(value, seq) if sql is None else sql_sort_scores(value, seq, sql[1])
        scores += [(f"{sort}-", down), (f"{sort}+", up)]
    out += [(f"r|{table}|{name}", score) for name, score in scores]
    for sort in spec.flat_sorts:
        flat = EXACT_SORTS[sort](row)
        if flat is not None:
            out.append((f"r|{table}|{sort}", flat))
        elif row.get(FLAT_COLUMNS[sort]) is not None:
            out.append((f"r|{table}|{sort}|odd", seq))
    if spec.unkept is not None and spec.unkept(row):
        out.append((f"r|{table}|stat|odd", seq))
    for column in spec.scopes:
        value = column_value(table, column, row)
        name = scope_ordering(table, column, value) if value is not None or column in spec.nulls else None
        if name is None:
            continue
        out.append((name, seq))
        if column in spec.scoped_sorts:
            base = name[: -len("seq")]
            out += [(base + sort, score) for sort, score in scores]
    return out


# --- per-session trace statistics (get_trace_stats without a filter) ----------------------------

_TRACE_CONTEXT = ("session_id", "user_id", "agent_id", "team_id", "workflow_id", "created_at")


def trace_stats_affected(old: dict[str, Any] | None, new: dict[str, Any] | None) -> list[Any]:
    """The sessions whose trace statistics a trace write can change: none when the columns
    they are made of did not change (a merge that only moves the end time and status)."""
    if old is not None and new is not None and all(old.get(c) == new.get(c) for c in _TRACE_CONTEXT):
        return []
    return list(dict.fromkeys(r.get("session_id") for r in (old, new) if r is not None and r.get("session_id")))


def session_trace_stats(rows: list[tuple[int, dict[str, Any]]], session_id: Any
                        ) -> tuple[int, dict[str, Any], float | None] | None:
    """JsonDb's `get_trace_stats` entry for one session from its traces in table order
    (`(insertion number, row)`): (first insertion number, the entry with its times as text,
    the last time's instant in µs — None when a time is not text JsonDb can compare and parse,
    so readers fall back to JsonDb over every trace). None: the session has no traces."""
    stats: dict[str, Any] | None = None
    first = 0
    regular = True
    for seq, t in rows:
        if t.get("session_id") != session_id:
            continue
        created = t.get("created_at", "")
        regular = regular and isinstance(created, str)
        if stats is None:
            first = seq
            stats = {"session_id": session_id, "user_id": t.get("user_id"), "agent_id": t.get("agent_id"),
                     "team_id": t.get("team_id"), "workflow_id": t.get("workflow_id"), "total_traces": 0,
                     "first_trace_at": created, "last_trace_at": created}
        stats["total_traces"] += 1
        if regular:
            stats["first_trace_at"] = min(stats["first_trace_at"], created)
            stats["last_trace_at"] = max(stats["last_trace_at"], created)
    if stats is None:
        return None
    score = _start_us({"start_time": stats["last_trace_at"]}) if regular and isinstance(session_id, str) else None
    if score is not None and stats["first_trace_at"] and _instant_us(stats["first_trace_at"]) is None:
        score = None
    return first, stats, score


def scope_trace_stats(rows: list[tuple[int, dict[str, Any]]]) -> tuple[int, dict[str, Any], float | None] | None:
    """The statistics of one session scope's traces (every trace whose session id has that
    text), in table order. Ids of several types sharing a text (`5` and `"5"`, never Agno's)
    are groups JsonDb keeps apart: such a scope is marked unorderable, so readers fall back."""
    ids = {row.get("session_id") for _, row in rows}
    if not rows:
        return None
    if len(ids) != 1 or not isinstance(next(iter(ids)), str):
        return min(seq for seq, _ in rows), {}, None
    return session_trace_stats(rows, next(iter(ids)))


def trace_stats_step(current: tuple[int, dict[str, Any], float | None] | None, seq: int,
                     old: dict[str, Any] | None, new: dict[str, Any] | None,
                     session_id: Any) -> tuple[int, dict[str, Any], float | None] | Literal[False] | None:
    """A session's statistics after one trace write, where that follows from the entry alone:
    the new entry; False when nothing it shows changed; None when the session's traces must
    be counted again (a trace left, or joined before the first, or a time not ordered)."""
    if current is None or current[2] is None or not isinstance(session_id, str):
        return None
    in_old = old is not None and old.get("session_id") == session_id
    in_new = new is not None and new.get("session_id") == session_id
    if new is None or not in_new or (seq <= current[0] and not in_old):
        return None
    if old is not None and in_old:  # (still in the session: only its owner ids or creation time changed)
        if seq != current[0] and old.get("created_at") == new.get("created_at"):
            return False
        return None
    created = new.get("created_at", "")
    score = _start_us({"start_time": created}) if isinstance(created, str) else None
    if score is None:
        return None
    stats = dict(current[1])
    stats["total_traces"] += 1
    stats["first_trace_at"] = min(stats["first_trace_at"], created)
    stats["last_trace_at"] = max(stats["last_trace_at"], created)
    return current[0], stats, _start_us({"start_time": stats["last_trace_at"]})


# --- per-group span statistics (get_span_stats without a name, component or time filter) -------

SpanStat = tuple[int, int, int, int | None, int, str | None]
"""A (span name, kind) group's statistics: (calls, sum of durations, how many had one, the
longest, errors, the latest start time as text)."""


def span_group(row: dict[str, Any]) -> str | None:
    """The group text (`[name, kind]` as JSON) of a span whose statistics the index keeps;
    None for a span whose values the adapter's grouping could not add up exactly by parts (a
    name, kind or start that is not text, a duration that is not a whole number)."""
    name = row.get("name")
    attributes = row.get("attributes")
    kind = attributes.get("openinference.span.kind") if isinstance(attributes, dict) else None
    duration = row.get("duration_ms")
    if not all(v is None or isinstance(v, str) for v in (name, kind, row.get("start_time"))):
        return None
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int)):
        return None
    return json.dumps([name, kind])


def span_stat_add(stat: SpanStat | None, row: dict[str, Any]) -> SpanStat:
    calls, total, timed, longest, errors, last = stat if stat is not None else (0, 0, 0, None, 0, None)
    duration, start = row.get("duration_ms"), row.get("start_time")
    if duration is not None:
        total, timed = total + duration, timed + 1
        longest = duration if longest is None else max(longest, duration)
    if start is not None:
        last = start if last is None else max(last, start)
    return calls + 1, total, timed, longest, errors + (row.get("status_code") == "ERROR"), last


def span_stat_remove(stat: SpanStat, row: dict[str, Any]) -> SpanStat | None:
    """The statistics without one of their spans; None when they must be counted again (it
    was the longest or the latest)."""
    calls, total, timed, longest, errors, last = stat
    duration, start = row.get("duration_ms"), row.get("start_time")
    if (duration is not None and duration == longest) or (start is not None and start == last):
        return None
    if duration is not None:
        total, timed = total - duration, timed - 1
    return calls - 1, total, timed, longest, errors - (row.get("status_code") == "ERROR"), last


def span_group_stats(rows: list[dict[str, Any]], group: str) -> SpanStat | None:
    """The statistics of a group from its spans (any others are skipped); None: it has none."""
    stat: SpanStat | None = None
    for row in rows:
        if span_group(row) == group:
            stat = span_stat_add(stat, row)
    return stat


# --- per-user learning statistics (get_learnings_user_stats without a filter) -------------------

LearningStat = tuple[int, int, int | None]
"""A user's learning statistics: (the insertion number of their first row in table order,
how many rows, the latest `updated_at` — None when none has one)."""


def learning_owner(row: dict[str, Any]) -> str | Literal[False] | None:
    """The user whose statistics a learning counts in (None: nobody's — it has no owner);
    False when the index cannot keep them exactly (an owner that is not text, an `updated_at`
    that is not a whole second: the reader leaves the table to the adapter's own grouping)."""
    user, updated = row.get("user_id"), row.get("updated_at")
    if user is None:
        return None
    if not isinstance(user, str) or not (updated is None or whole_second(updated)):
        return False
    return user


def learning_stat_add(stat: LearningStat | None, seq: int, row: dict[str, Any]) -> LearningStat:
    updated = row.get("updated_at")
    if stat is None:
        return seq, 1, updated
    first, count, last = stat
    return min(first, seq), count + 1, last if updated is None else updated if last is None else max(last, updated)


def learning_groups(row: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The (user, learning type) statistics a learning counts in — its user's over every type
    (type None) and over its own type (when that is text) — none without an owner or when
    they cannot be kept (`learning_owner`)."""
    user = learning_owner(row)
    if not isinstance(user, str):
        return []
    kind = row.get("learning_type")
    return [(user, None)] + ([(user, kind)] if isinstance(kind, str) else [])


def learning_stat_kind(kind: str | None) -> str:
    """The index row kind of the statistics over one learning type (None: every type)."""
    return "lstat" if kind is None else f"lstat:{kind.encode().hex()}"


def learning_stat_prefix(kind: str | None) -> str:
    return "lu|" if kind is None else f"lu|t={kind}|"


def learning_stat_members(user: str, stat: LearningStat, kind: str | None = None) -> list[Member]:
    """A user's places: by `user_id` (ties: the user id), and by their latest update both ways
    (ties in the order the users first appear in the table; no update: below every time)."""
    first, _, last = stat
    base = -1.0 if last is None else float(last)
    frac = (first % (1 << 20)) / _FRACTION
    prefix = learning_stat_prefix(kind)
    return [(prefix + "user", 0.0), (prefix + "last-", base + 0.5 - frac), (prefix + "last+", base + frac)]


def user_learning_stats(rows: list[tuple[int, dict[str, Any]]], user: str,
                        kind: str | None = None) -> LearningStat | None:
    """A user's statistics (over one learning type, or every type) from rows in table order
    (`(insertion number, row)`, any others skipped); None: the user has none."""
    stat: LearningStat | None = None
    for seq, row in rows:
        if (user, kind) in learning_groups(row):
            stat = learning_stat_add(stat, seq, row)
    return stat

"""Is an index what a fresh fold of the log gives? Row by row, for every indexed read model.

Read models are derived data, so the one test of an index that matters is that it equals
the fold of the log up to its cursor by the same projections the process would otherwise
run in memory. `eventlog reindex --check` and the tests use this.
"""

from __future__ import annotations

from typing import Any

import msgspec

from eventlog import EventStore
from eventlog.store import Cursor
from projections.index.base import KEY_ORDERED, MEMORY_TEXT_KIND, ReadIndex
from projections.index.indexer import (
    HEAD_KIND,
    NAME_KIND,
    TRIGRAM_PREFIX,
    decode_lstat,
    decode_memory,
    decode_record,
    decode_record_seq,
    decode_session,
    decode_session_head,
    decode_sstat,
    decode_tstat,
    decode_workflow,
    head_bytes,
    search_name,
    session_orderings,
    session_seq,
    stat_members,
    trigram_members,
    value_members,
)
from projections.index.tables import (
    learning_groups,
    learning_stat_kind,
    learning_stat_members,
    record_members,
    scope_text,
    scope_trace_stats,
    span_group,
    span_group_stats,
    user_learning_stats,
)
from projections.memories import UserMemoriesProjection, memory_text
from projections.records import RecordsProjection
from projections.runner import ProjectionRunner
from projections.sessions import SessionsProjection
from projections.timetravel import events_at
from projections.workflows import WorkflowsProjection

_enc = msgspec.msgpack.Encoder()


def index_differences(store: EventStore, index: ReadIndex, limit: int = 20) -> list[str]:
    """What differs between `index` and a fresh fold of `store` up to the index's cursor
    (empty: they agree). At most `limit` differences are listed."""
    runner = ProjectionRunner(store, [SessionsProjection(), UserMemoriesProjection(), WorkflowsProjection(),
                                      RecordsProjection()], use_snapshots=False)
    cursor = Cursor(index.cursors())
    for event in events_at(store, cursor) if cursor.offsets else ():
        runner.apply(event)
    states = runner.states
    out: list[str] = []
    _compare(out, "session", states["sessions"].sessions, dict(_rows(index, "session", decode_session)))
    names = {sid: search_name(row) for sid, row in states["sessions"].sessions.items() if search_name(row)}
    _compare(out, "session name", names, dict(_rows(index, NAME_KIND, bytes.decode)))
    _compare_trigram_orderings(out, index, names)
    # (with the insertion number the index gave the session's row)
    seqs = {sid: seq for sid, seq in _rows(index, "session", session_seq)}
    heads = {sid: decode_session_head(head_bytes(_enc.encode((seqs.get(sid, -1), row))))
             for sid, row in states["sessions"].sessions.items()}
    _compare(out, "session head", heads, dict(_rows(index, HEAD_KIND, decode_session_head)))
    _compare_value_orderings(out, index, heads)
    _compare(out, "memory", states["memories"].memories, dict(_rows(index, "memory", decode_memory)))
    texts = {mid: memory_text(row) for mid, row in states["memories"].memories.items() if memory_text(row)}
    _compare(out, "memory text", texts, dict(_rows(index, MEMORY_TEXT_KIND, bytes.decode)))
    held = getattr(index, "texts_held", None)  # (a backend's text index: SQLite's trigram table)
    in_text_index = held(MEMORY_TEXT_KIND) if held is not None else None
    if in_text_index is not None:
        _compare(out, "memory text (trigram index)", texts, in_text_index)
    _compare(out, "workflow", states["workflows"].workflows, dict(_rows(index, "wf", decode_workflow)))
    tables: dict[str, dict[str, Any]] = states["records"].tables
    for table, rows in tables.items():
        _compare(out, f"record {table}", rows, dict(_rows(index, f"rec:{table}", decode_record)))
    _compare_record_orderings(out, index, tables)
    counts = {"session": len(states["sessions"].sessions), "memory": len(states["memories"].memories)}
    for name, orderings in (("session", session_orderings(None, "all", "seq")), ("memory", ["m|all|seq"])):
        held = sum(index.count(o) for o in orderings)
        if held != counts[name]:
            out.append(f"{name} orderings hold {held} keys, the fold {counts[name]} rows")
    return out[:limit]


def _compare_trigram_orderings(out: list[str], index: ReadIndex, names: dict[str, str]) -> None:
    """Every trigram ordering holds exactly the sessions whose searched name has it."""
    expected: dict[str, set[str]] = {}
    for sid, name in names.items():
        for ordering, _ in trigram_members(name):
            expected.setdefault(ordering, set()).add(sid)
    try:
        held = set(index.orderings(TRIGRAM_PREFIX))
    except NotImplementedError:
        held = set()
    for name in sorted(held | expected.keys()):
        if {r.key for r in index.page(name, desc=False, offset=0, limit=None)} != expected.get(name, set()):
            out.append(f"session name trigram ordering {name!r}: differs from a fresh fold")


def _compare_value_orderings(out: list[str], index: ReadIndex, heads: dict[str, tuple[int, Any]]) -> None:
    """Every session value ordering holds exactly the keys the fold's heads give."""
    expected: dict[str, set[str]] = {}
    for seq, head in heads.values():
        for name, key in value_members(seq, head):
            expected.setdefault(name, set()).add(key)
    try:
        names = {n for n in index.orderings(KEY_ORDERED + "s|") if n.rsplit("|", 1)[-1][:2] in ("v:", "V:", "x:")}
    except NotImplementedError:
        names = set()
    for name in sorted(names | expected.keys()):
        got = {r.key for r in index.page(name, desc=False, offset=0, limit=None)}
        if got != expected.get(name, set()):
            out.append(f"session value ordering {name!r}: differs from a fresh fold")


def _compare_record_orderings(out: list[str], index: ReadIndex, tables: dict[str, dict[str, Any]]) -> None:
    """Every record ordering holds exactly the members the fold's rows give (scored with the
    insertion numbers the index gave them, which must follow the fold's table order), and no
    ordering holds a key no row puts there."""
    expected: dict[str, dict[str, float]] = {}
    for table, rows in tables.items():
        held = dict(_rows(index, f"rec:{table}", decode_record_seq))
        order = [k for k in sorted(held, key=lambda k: held[k][0]) if k in rows]
        if order != [k for k in rows if k in held]:
            out.append(f"record {table}: the index's insertion order is not the log's")
        for key, row in rows.items():
            if key in held:
                for name, score in record_members(table, held[key][0], row):
                    expected.setdefault(name, {})[key] = score
    _expected_trace_stats(out, index, tables.get("traces", {}), expected)
    _expected_span_stats(out, index, tables.get("spans", {}), expected)
    _expected_learning_stats(out, index, tables.get("learnings", {}), expected)
    try:
        names = {n for prefix in ("r|", "ts|", "ss|", "lu|") for n in index.orderings(prefix)}
    except NotImplementedError:
        names = set()
    for name in sorted(names | expected.keys()):
        got = {r.key: r.score for r in index.page(name, desc=False, offset=0, limit=None)}
        if got != expected.get(name, {}):
            out.append(f"record ordering {name!r}: differs from a fresh fold")


def _expected_trace_stats(out: list[str], index: ReadIndex, traces: dict[str, Any],
                          expected: dict[str, dict[str, float]]) -> None:
    """Per session, the trace statistics the fold's traces give (with the index's insertion
    numbers), against the index's `tstat` rows; their orderings go into `expected`."""
    held = dict(_rows(index, "rec:traces", decode_record_seq))
    groups: dict[str, list[tuple[int, Any]]] = {}
    for key, row in traces.items():
        sid = row.get("session_id")
        if sid and key in held:
            groups.setdefault(str(scope_text(sid)), []).append((held[key][0], row))
    want = {}
    for text, rows in groups.items():
        found = scope_trace_stats(sorted(rows, key=lambda r: r[0]))
        if found is not None:
            want[text] = found
            for name, score in stat_members(found):
                expected.setdefault(name, {})[text] = score
    _compare(out, "trace statistics of session", want, dict(_rows(index, "tstat", decode_tstat)))


def _expected_span_stats(out: list[str], index: ReadIndex, spans: dict[str, Any],
                         expected: dict[str, dict[str, float]]) -> None:
    """Per (span name, kind), the statistics the fold's spans give, against `sstat`."""
    groups: dict[str, list[Any]] = {}
    for row in spans.values():
        group = span_group(row)
        if group is not None:
            groups.setdefault(group, []).append(row)
    want = {group: span_group_stats(rows, group) for group, rows in groups.items()}
    for group in want:
        expected.setdefault("ss|all", {})[group] = 0.0
    _compare(out, "span statistics of", want, dict(_rows(index, "sstat", decode_sstat)))


def _expected_learning_stats(out: list[str], index: ReadIndex, learnings: dict[str, Any],
                             expected: dict[str, dict[str, float]]) -> None:
    """Per user, over every learning type and each type, the statistics the fold's rows give
    (with the index's insertion numbers), against `lstat` and `lstat:<type>`."""
    held = dict(_rows(index, "rec:learnings", decode_record_seq))
    rows = sorted(((held[k][0], row) for k, row in learnings.items() if k in held), key=lambda r: r[0])
    groups = {group for _, row in rows for group in learning_groups(row)}
    want: dict[str, dict[str, Any]] = {}
    for user, kind in groups:
        found = user_learning_stats(rows, user, kind)
        if found is not None:
            want.setdefault(learning_stat_kind(kind), {})[user] = found
            for name, score in learning_stat_members(user, found, kind):
                expected.setdefault(name, {})[user] = score
    # (a type's statistics the fold no longer has show as their orderings' stale entries)
    for kind in sorted(want.keys() | {"lstat"}):
        _compare(out, f"learning statistics ({kind}) of user", want.get(kind, {}),
                 dict(_rows(index, kind, decode_lstat)))


def _rows(index: ReadIndex, kind: str, decode: Any) -> list[tuple[str, Any]]:
    return [(key, decode(data)) for key, data in index.scan(kind)]


def _compare(out: list[str], what: str, expected: dict[str, Any], got: dict[str, Any]) -> None:
    for key in expected.keys() - got.keys():
        out.append(f"{what} {key!r}: in the log, missing from the index")
    for key in got.keys() - expected.keys():
        out.append(f"{what} {key!r}: in the index, not in the log")
    for key in expected.keys() & got.keys():
        if expected[key] != got[key]:
            out.append(f"{what} {key!r}: differs from a fresh fold")

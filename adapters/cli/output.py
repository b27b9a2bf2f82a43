"""How the CLI prints: aligned tables for people, one JSON document or JSON lines for scripts.

Colour only when stdout is a terminal and NO_COLOR is unset; piped tables are wide enough not
to wrap. Every read command builds rows (plain dicts with stable snake_case keys) and hands
them here, so the human and the machine output always carry the same data.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

NO_WRAP = frozenset({"position", "at", "turn", "created_at", "updated_at"})
FREE_TEXT = frozenset({"summary", "memory", "input", "output", "detail", "before", "after", "value"})

PIPED_WIDTH = 200
"""Width of tables written to a pipe or file (no terminal to ask): wide enough that columns
are not squeezed into wrapped fragments; COLUMNS overrides it."""


def console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr): colour only on a terminal without NO_COLOR."""
    stream = sys.stderr if stderr else sys.stdout
    tty = stream.isatty()
    width = None
    if not tty:
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH
    return Console(
        file=stream,
        no_color=bool(os.environ.get("NO_COLOR")) or not tty,
        width=width,
        soft_wrap=not tty,
        highlight=False,
    )


def plain(value: Any) -> Any:
    """Rows as JSON-ready builtins: times become ISO 8601 text, tuples lists."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


class Output:
    """The mode chosen on the command line: table (default), `--json` or `--jsonl`."""

    def __init__(self, json_mode: bool = False, jsonl: bool = False) -> None:
        self.json = json_mode
        self.jsonl = jsonl
        self.out = console()
        self.err = console(stderr=True)

    @property
    def machine(self) -> bool:
        return self.json or self.jsonl

    def rows(self, rows: Iterable[dict[str, Any]], columns: Sequence[str], *, title: str | None = None,
             key: str = "items", extra: dict[str, Any] | None = None) -> int:
        """Print rows; with --json as {key: [...], **extra}; returns how many were printed."""
        if self.jsonl:
            n = 0
            for row in rows:
                sys.stdout.write(json.dumps(plain(row), ensure_ascii=False, default=str) + "\n")
                n += 1
            return n
        materialized = list(rows)
        if self.json:
            doc = {key: plain(materialized), **plain(extra or {})}
            sys.stdout.write(json.dumps(doc, ensure_ascii=False, default=str, indent=2) + "\n")
            return len(materialized)
        table = Table(title=title, show_lines=False, header_style="bold")
        for column in columns:  # identifiers and times never wrap; free text takes the squeeze
            table.add_column(column, no_wrap=column in NO_WRAP, min_width=16 if column in FREE_TEXT else None)
        for row in materialized:
            table.add_row(*(_cell(row.get(c)) for c in columns))
        self.out.print(table)
        if extra:
            for name, value in extra.items():
                self.out.print(f"{name}: {value}", markup=False)
        return len(materialized)

    def document(self, doc: dict[str, Any], *, title: str | None = None) -> None:
        """A single object: JSON as is, or a two-column table for people."""
        if self.machine:
            sys.stdout.write(json.dumps(plain(doc), ensure_ascii=False, default=str, indent=None if self.jsonl else 2)
                             + "\n")
            return
        table = Table("field", "value", title=title, header_style="bold")
        for name, value in doc.items():
            table.add_row(name, _cell(value))
        self.out.print(table)

    def say(self, text: str) -> None:
        """A human remark (on stderr when the output is for machines)."""
        (self.err if self.machine else self.out).print(text, markup=False)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    text = json.dumps(plain(value), ensure_ascii=False, default=str) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 100 else text[:97] + "..."

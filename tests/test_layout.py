"""The package layout: no import circle inside `eventlog/`, old import paths still work,
and the CLI does not import the benchmarks to build its parser."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every `eventlog` module `path` imports, anywhere in it (lazy and type-only included)."""
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules}


def _graph() -> dict[str, set[str]]:
    files = sorted((ROOT / "eventlog").rglob("*.py"))
    modules = {_module_name(f) for f in files}
    return {_module_name(f): _imports(f, modules) for f in files}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_circle_inside_eventlog() -> None:
    graph = _graph()
    # The package root re-exports everything; nothing inside may import it back.
    back = sorted(m for m, deps in graph.items() if "eventlog" in deps and m != "eventlog")
    assert back == [], f"modules importing the package root: {back}"
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_backends_live_under_stores_and_old_paths_are_the_same_modules() -> None:
    import importlib

    for name in ("memory", "jsonl", "jsonl_index", "fallback", "encrypted", "redis_store"):
        old = importlib.import_module(f"eventlog.{name}")
        new = importlib.import_module(f"eventlog.stores.{name}")
        assert old is new
    import eventlog
    from eventlog.stores.encrypted import EncryptedStore
    from eventlog.stores.fallback import FallbackStore
    from eventlog.stores.jsonl import JsonlStore
    from eventlog.stores.memory import MemoryStore
    from eventlog.stores.redis_store import RedisStreamStore

    assert (eventlog.JsonlStore, eventlog.RedisStreamStore, eventlog.FallbackStore, eventlog.EncryptedStore,
            eventlog.MemoryStore) == (JsonlStore, RedisStreamStore, FallbackStore, EncryptedStore, MemoryStore)


def test_no_module_of_eventlog_is_a_long_one() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "eventlog").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 700}
    assert long == {}


def test_the_cli_parser_does_not_import_the_benchmarks() -> None:
    code = ("import sys; from adapters.cli.app import build_parser; build_parser(); "
            "print(any(m == 'benchmarks' or m.startswith('benchmarks.') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"

"""What every benchmark shares: timing, the machine it ran on, tables, RESULTS.md, servers.

A benchmark returns a `Result` (a title, column names, rows, notes). Each row that compares
with a raw limit carries the ratio measured in the same run; nothing here asserts a speed.
"""

from __future__ import annotations

import os
import platform
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass
class Result:
    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Settings:
    quick: bool = False


def process_env() -> dict[str, str]:
    """The environment for a measured fresh process: bytecode caches on, as in an installed
    package. With PYTHONDONTWRITEBYTECODE (set on these machines and in CI) every fresh
    process of a fresh checkout compiles each module it imports from source, which lands in
    whatever that process times (a store's lazily imported modules in its "open")."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def fmt_rate(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f}M/s"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k/s"
    return f"{value:.0f}/s"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def pct(ours: float, raw: float) -> str:
    return f"{100 * ours / raw:.0f}%" if raw else "-"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, AttributeError):
        pass
    versions = [f"Python {platform.python_version()}"]
    try:
        import agno

        versions.append(f"agno {getattr(agno, '__version__', '') or _dist_version('agno')}")
    except ImportError:
        pass
    versions.append(f"redis-server {_redis_version()}")
    return f"{cpu}, {os.cpu_count()} cores{mem}; " + ", ".join(versions)


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:
        return "?"


def _redis_version() -> str:
    import subprocess

    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=5).stdout
        return re.search(r"v=(\S+)", out).group(1)  # type: ignore[union-attr]
    except Exception:
        return "not installed"


def show(result: Result, console: Console) -> None:
    table = Table(*result.columns, title=result.title, header_style="bold")
    for row in result.rows:
        table.add_row(*(str(c) for c in row))
    console.print(table)
    for note in result.notes:
        console.print(f"  {note}", markup=False)


def markdown(result: Result) -> str:
    lines = [f"## {result.title}", "", "| " + " | ".join(result.columns) + " |",
             "|" + "---|" * len(result.columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in result.rows]
    lines += [""] + [f"- {n}" for n in result.notes] + [""]
    return "\n".join(lines)


def write_results(results: list[Result], quick: bool) -> None:
    """Replace this run's sections in RESULTS.md (others stay, so runs can be partial)."""
    sections: dict[str, str] = {}
    if RESULTS.exists():
        current = RESULTS.read_text()
        for block in re.split(r"(?m)^<!-- bench:", current)[1:]:
            name, _, body = block.partition(" -->\n")
            sections[name.strip()] = body.strip() + "\n"
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for r in results:
        sections[r.name] = f"_{stamp}, {'quick' if quick else 'full'} run, on {machine()}_\n\n" + markdown(r)
    order = ["append_redis", "append_file", "replay", "agno_turns", "peer", "scaling", "cluster", "agentos"]
    names = sorted(sections, key=lambda n: order.index(n) if n in order else 99)
    text = ["# Benchmark results", "",
            "Written by `python -m benchmarks`. Every ratio compares with the raw limit measured in the same run "
            "on the same machine (see each module's docstring for what exactly is compared).", ""]
    for name in names:
        text += [f"<!-- bench:{name} -->", sections[name].rstrip(), ""]
    RESULTS.write_text("\n".join(text))


def _redis_server_class() -> Any:
    """The tests' private-server fixture class (tests/redis_server.py), also when the CLI runs
    the benchmarks from another directory (the repository root is then not on sys.path)."""
    try:
        from tests.redis_server import RedisServer
    except ImportError:
        import sys

        root = Path(__file__).resolve().parents[1]
        if not (root / "tests" / "redis_server.py").exists():
            raise RuntimeError("the Redis benchmarks need the repository checkout (tests/redis_server.py)") from None
        sys.path.insert(0, str(root))
        from tests.redis_server import RedisServer
    return RedisServer


@contextmanager
def redis_server(durable: bool = False) -> Iterator[Any]:
    """A private redis-server on a free loopback port (nothing on disk unless `durable`)."""
    RedisServer = _redis_server_class()

    with tempfile.TemporaryDirectory() as d:
        extra = ["--appendonly", "yes", "--appendfsync", "always"] if durable else []
        server = RedisServer(Path(d), extra=extra).start()
        try:
            yield server
        finally:
            server.kill()


@contextmanager
def tempdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="eventlog-bench-") as d:
        yield Path(d)

"""`python -m benchmarks [NAME ...] [--quick] [--no-write]` (or `eventlog bench ...`): run
benchmarks, print tables, and write them to benchmarks/RESULTS.md with the machine they ran on."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from benchmarks._common import Result, Settings, machine, show, write_results

ALL = ["append_redis", "append_file", "replay", "agno_turns", "peer", "scaling", "cluster", "growth", "tables",
       "ui_pages", "agentos"]


def run_benchmarks(names: Sequence[str], *, quick: bool, console: Console | None = None,
                   show_tables: bool = True) -> list[Result]:
    """Run the named benchmarks (all when empty) in order, with a progress bar on `console`."""
    console = console or Console(stderr=True)
    settings = Settings(quick=quick)
    chosen = list(names) or ALL
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("benchmarks", total=len(chosen))
        for name in chosen:
            progress.update(task, description=f"benchmark {name}")
            started = time.monotonic()
            module = importlib.import_module(f"benchmarks.{name}")
            result = module.run(settings)
            result.notes.append(f"({name} took {time.monotonic() - started:.1f} s)")
            if show_tables:
                progress.console.print()
                show(result, progress.console)
            results.append(result)
            progress.advance(task)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {', '.join(ALL)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: check that each benchmark completes")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")


def check_names(names: Sequence[str]) -> list[str]:
    """The names that are not benchmarks (empty when all are)."""
    return [n for n in names if n not in ALL]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    unknown = check_names(args.names)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)} (choose from {', '.join(ALL)})")
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(f"machine: {machine()}", markup=False)
    results = run_benchmarks(args.names, quick=args.quick, console=console)
    if not args.no_write:
        write_results(results, args.quick)
        console.print("written to benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

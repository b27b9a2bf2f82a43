"""`python -m benchmarks [NAME ...] [--quick] [--no-write]`: run benchmarks, print tables, and
write them to benchmarks/RESULTS.md with the machine they ran on."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from rich.console import Console

from benchmarks._common import Settings, machine, show, write_results

ALL = ["append_redis", "append_file", "replay", "agno_turns", "peer", "scaling", "cluster"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*ALL, []], help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes: check that each benchmark completes")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    settings = Settings(quick=args.quick)
    console.print(f"machine: {machine()}", markup=False)
    results = []
    for name in args.names or ALL:
        started = time.monotonic()
        module = importlib.import_module(f"benchmarks.{name}")
        result = module.run(settings)
        result.notes.append(f"({name} took {time.monotonic() - started:.1f} s)")
        show(result, console)
        results.append(result)
    if not args.no_write:
        write_results(results, args.quick)
        console.print("written to benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

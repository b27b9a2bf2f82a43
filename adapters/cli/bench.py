"""`eventlog bench`: the benchmarks of `benchmarks/` from the command line.

The same runs as `python -m benchmarks`: each prints its table (ratios against the raw limit
measured in the same run) and, unless `--no-write`, updates benchmarks/RESULTS.md. With
`--json` the tables come as one JSON document (progress and tables go to stderr).
`benchmarks/` is imported only when the command runs."""

from __future__ import annotations

import argparse

from adapters.cli.common import UserError
from adapters.cli.output import Output
from adapters.cli.registry import Command, register


def _arguments(parser: argparse.ArgumentParser) -> None:
    # Spelled out here, not taken from benchmarks/: building the CLI's parser (every command)
    # must not import the benchmarks, which use the adapters. The names are checked when the
    # command runs.
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="benchmarks to run (default: all; an unknown name lists them)")
    parser.add_argument("--quick", action="store_true", help="small sizes: check that each benchmark completes")
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")


def cmd_bench(args: argparse.Namespace, out: Output) -> int:
    from benchmarks.__main__ import ALL, check_names, run_benchmarks
    from benchmarks._common import machine, write_results

    unknown = check_names(args.names)
    if unknown:
        raise UserError(f"unknown benchmark(s): {', '.join(unknown)}", hint=f"choose from {', '.join(ALL)}")
    console = out.err if out.machine else out.out
    console.print(f"machine: {machine()}", markup=False)
    results = run_benchmarks(args.names, quick=args.quick, console=console)
    if not args.no_write:
        write_results(results, args.quick)
        console.print("written to benchmarks/RESULTS.md", markup=False)
    if out.machine:
        out.document({"machine": machine(), "quick": args.quick, "results": [
            {"name": r.name, "title": r.title, "rows": [dict(zip(r.columns, row)) for row in r.rows], "notes": r.notes}
            for r in results]})
    return 0


register(Command(name="bench", help="run the benchmarks (ratios against raw limits measured in the same run)",
                 arguments=_arguments, run_plain=cmd_bench))

"""`eventlog demo`: registers the demo subcommand. The demo itself lives in `adapters/demo.py`
(it needs Agno); it is imported only when the command runs, so `eventlog --help` and every
other command start without loading Agno."""

from __future__ import annotations

import argparse

from adapters.cli.output import Output
from adapters.cli.registry import Command, register


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    from adapters.demo import run_demo

    result = run_demo(args.url, console=out.err if out.machine else out.out)
    if out.machine:
        out.document({k: getattr(result, k) for k in result.__dataclass_fields__})
    return 0 if result.verify_ok else 1


register(Command(name="demo", help="run the demo: agents share a memory, restart, resume (file store by default)",
                 run_plain=cmd_demo))

"""`eventlog ui`: serve the time-travel web UI (adapters/ui) for the configured store.

Loopback only unless `--allow-remote` (then a warning: anyone who can reach the port can read
every session and memory); read-only unless `--allow-fork`; `--at` serves a view of the past.
The UI and Agno load only when the command runs, so other commands start as fast as before.
"""

from __future__ import annotations

import argparse
import sys
import webbrowser

from adapters.cli.common import UserError, point
from adapters.cli.output import Output
from adapters.cli.registry import command
from eventlog import EventStore, redact_url


def _ui_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the UI in the default browser")
    p.add_argument("--allow-fork", action="store_true", help="allow forking a session from a point (writes the log)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (anyone who reaches it can read the whole log)")
    p.add_argument("--at", metavar="POINT", help="serve a read-only view as of an event id, position or ISO time")
    p.add_argument("--poll", type=float, default=2.0, metavar="SECONDS",
                   help="how often an open timeline asks for new events (default: 2)")


@command("ui", "serve the time-travel web UI: sessions, timelines, state at a point, diffs, audit", _ui_args)
def cmd_ui(store: EventStore, args: argparse.Namespace, out: Output) -> int:
    from adapters.agno.db import EventLogDb
    from adapters.ui.app import EventLogUI
    from adapters.ui.server import Server, is_loopback

    if not 0 <= args.port <= 65535:
        raise UserError(f"bad port {args.port}", "a port is 0..65535 (0: any free one)")
    if not is_loopback(args.host):
        if not args.allow_remote:
            raise UserError(f"--host {args.host} is not a loopback address",
                            "the UI shows every session and memory: add --allow-remote to bind it anyway")
        out.err.print(f"warning: serving on {args.host}: anyone who can reach this port can read the whole log"
                      + (" and fork sessions" if args.allow_fork else ""), markup=False)
    if args.poll <= 0:
        raise UserError(f"bad --poll {args.poll}", "seconds between polls, e.g. 2")
    db = EventLogDb(store=store, at=point(args.at) if args.at else None)
    app = EventLogUI(db, allow_fork=args.allow_fork and args.at is None, poll_seconds=args.poll)
    server = Server(app, args.host, args.port)

    def ready(srv: Server) -> None:
        mode = "forks allowed" if app.allow_fork else "read-only"
        view = f", as of {args.at}" if args.at else ""
        if out.machine:
            out.document({"url": srv.url, "store": redact_url(store.url), "allow_fork": app.allow_fork,
                          "at": args.at})
            sys.stdout.flush()
        else:
            out.err.print(f"eventlog ui: {srv.url} ({redact_url(store.url)}, {mode}{view}); Ctrl-C stops",
                          markup=False)
        if args.open:
            webbrowser.open(srv.url)

    try:
        server.serve_forever(on_ready=ready)
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                        "is another server on that port? try --port 0") from None
    except KeyboardInterrupt:
        pass
    finally:
        db.close()
    return 0

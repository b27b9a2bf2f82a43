"""A small HTTP/1.1 server for an ASGI app, so `eventlog ui` needs no web server package.

One request per connection (`Connection: close`), bodies by Content-Length only, bounded
header and body sizes and a read timeout: enough for a person's browser on this machine, and
for any other server (uvicorn, hypercorn) the same app can be handed to instead. When bound
to loopback it answers only requests whose Host is a loopback name, so a web page on another
site cannot read the log through DNS rebinding.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

log = logging.getLogger("adapters.ui.server")

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
READ_TIMEOUT = 15.0
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
REASONS = {200: "OK", 303: "See Other", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 408: "Request Timeout", 413: "Payload Too Large",
           421: "Misdirected Request", 500: "Internal Server Error", 503: "Service Unavailable"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    """The name part of a Host header (`[::1]:8765` -> `[::1]`, `localhost:80` -> `localhost`)."""
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Server:
    """Serve `app` on `host:port` (port 0: any free one; `port` holds the real one once
    started). `start()` runs it in a daemon thread (tests); `serve_forever()` in this one."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8765) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.loopback_only = is_loopback(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._task: asyncio.Task[Any] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def _open(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]

    def serve_forever(self, on_ready: Callable[[Server], None] | None = None) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            await self._open()
            self._ready.set()
            if on_ready is not None:
                on_ready(self)
            assert self._server is not None
            async with self._server:
                await self._server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(main())

    def start(self) -> Server:
        def run() -> None:
            try:
                self.serve_forever()
            except BaseException as exc:  # surfaced by start()
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(target=run, name="eventlog-ui", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None:
            self._thread.join(5)

    # --- one connection -------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except Exception:
            log.exception("eventlog ui: connection failed")
        finally:
            with contextlib.suppress(Exception):
                writer.close()
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _plain(writer, 400, "bad request line")
            return
        method, target, _ = parts
        headers: list[tuple[bytes, bytes]] = []
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                await _plain(writer, 400, "bad header line")
                return
            headers.append((name.strip().lower().encode("latin-1"), value.strip().encode("latin-1")))
        found = dict(headers)
        if self.loopback_only and not is_loopback(_host_name(found.get(b"host", b"").decode("latin-1"))):
            await _plain(writer, 421, "this server answers only to a loopback Host (localhost, 127.0.0.1)")
            return
        length_text = found.get(b"content-length", b"0").decode("latin-1")
        if not length_text.isdigit() or int(length_text) > MAX_BODY:
            await _plain(writer, 413, "request body too large")
            return
        body = await asyncio.wait_for(reader.readexactly(int(length_text)), READ_TIMEOUT) if int(length_text) else b""
        path, _, query = target.partition("?")
        client = writer.get_extra_info("peername")
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": method.upper(), "scheme": "http", "path": unquote(path), "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"), "root_path": "", "headers": headers,
            "client": tuple(client[:2]) if client else None, "server": (self.host, self.port),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # nothing more: the client waits for our answer
            return {"type": "http.disconnect"}  # pragma: no cover

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                out = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}".encode()]
                out += [k + b": " + v for k, v in message.get("headers", []) if k.lower() != b"connection"]
                out.append(b"connection: close")
                writer.write(b"\r\n".join(out) + b"\r\n\r\n")
            elif message["type"] == "http.response.body":
                writer.write(message.get("body", b""))
                await writer.drain()

        await self.app(scope, receive, send)


async def _plain(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = (text + "\n").encode()
    writer.write(f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\ncontent-type: text/plain; charset=utf-8\r\n"
                 f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body)
    await writer.drain()

"""Appends over connections the Redis store holds itself (a plain `redis.Redis` client).

redis-py's per-command machinery (pool checkout, retry wrapper, metrics, event dispatch,
argument packing) cost more client time per append than the rest of the append together, so
on a single server the store takes connections from the client's pool once, keeps up to
`MAX_HELD` idle ones, writes its packed EVALSHA to one and reads the reply itself.
"""

from __future__ import annotations

from typing import Any

from redis import exceptions as rex

from eventlog.errors import EventLogError, StoreUnavailable
from eventlog.stores import redis_wire
from eventlog.stores.redis_scripts import APPEND_LUA
from eventlog.stores.redis_wire import _pack_command

_MAX_HELD = 8  # idle connections the store keeps for its appends (more go back to the pool)
_APPEND_HEAD_ARGS = 9  # EVALSHA, sha, 6, the six KEYS: the part of an append packed per stream


class HeldConnections:
    """The direct append path of `RedisStreamStore`; what it needs of the store is declared."""

    client: Any
    url: str
    prefix: str
    wait_replicas: int
    wait_ms: int
    _closed: bool
    _held: list[Any]
    _fork: int
    _routes: dict[str, Any]

    def _append_direct(self, command: bytes, args: list[Any]) -> Any:
        """`_run_append` over a connection the store holds (a plain redis.Redis client).

        `command` is the packed `EVALSHA sha 5 KEYS` of the stream (see `_route`). The
        connection comes from the client's pool once, so it was set up like any other (AUTH,
        TLS, SELECT, socket timeouts, health checks) and reconnects the same way. Each caller
        takes its own idle connection, so concurrent appends do not queue behind one socket.

        On a connection failure (a stale socket after a Redis restart; not a timeout, which would
        only double the wait for a frozen server) the script is sent once more on a fresh
        connection, as redis-py's own retry would: safe, because the script is idempotent by
        event ids (a run that did land answers DUP with the stored twins) and checks the head.
        If that fails too the error goes up, and `_call` makes it StoreUnavailable. Any
        exception other than NOSCRIPT (handled in place, its reply read) disconnects the
        connection, so no reply is ever left unread on it.

        With `wait_replicas`, WAIT goes on the same connection right after a write: WAIT waits
        for the calling connection's own writes, so it means nothing on another connection."""
        try:
            conn = self._held.pop()
        except IndexError:
            conn = self.client.connection_pool.get_connection()
        try:
            packed = [_pack_command(command, _APPEND_HEAD_ARGS, args)]
            for attempt in (1, 2):
                if self._closed:  # close() ran meanwhile: no reconnecting behind its back
                    raise EventLogError(f"store {self.url} is closed")
                try:
                    conn.send_packed_command(packed)
                    try:
                        reply = conn.read_response()
                    except rex.NoScriptError:  # a complete error reply: the connection is clean
                        conn.send_command("SCRIPT", "LOAD", APPEND_LUA)
                        conn.read_response()
                        conn.send_packed_command(packed)
                        reply = conn.read_response()
                    break
                except rex.TimeoutError:
                    conn.disconnect()
                    raise  # a server that does not answer in time (frozen, overloaded): no second wait
                except (rex.ConnectionError, OSError):
                    conn.disconnect()
                    if attempt == 2:
                        raise
            acked = self.wait_replicas
            if acked and (type(reply) is int or reply[0] == b"DUP"):
                if type(reply) is not int:
                    # Stored by an earlier attempt whose reply was lost, maybe on another
                    # connection: WAIT counts this connection's writes, so write a probe
                    # first. Replication is one ordered stream, so replicas that have the
                    # probe have everything the primary wrote before it.
                    conn.send_command("INCR", f"{self.prefix}:wait-probe")
                    conn.read_response()
                conn.send_command("WAIT", self.wait_replicas, self.wait_ms)
                acked = int(conn.read_response())
        except BaseException:
            conn.disconnect()  # whatever happened mid-command, the next use starts afresh
            self._put_held(conn)
            raise
        self._put_held(conn)
        if acked < self.wait_replicas:
            raise _replicas_short(self.url, acked, self.wait_replicas)
        return reply

    def _put_held(self, conn: Any) -> None:
        if len(self._held) < _MAX_HELD and not self._closed:
            self._held.append(conn)
            if self._closed:  # close() ran meanwhile and may have missed it
                self._release_held()
            return
        if self._closed:
            conn.disconnect()  # the pool is closed: do not hand it a live socket
        self.client.connection_pool.release(conn)

    def _release_held(self) -> None:
        """Give the held connections back to the client's pool (which closes them when the
        client closes its pool; a pool passed in by the caller keeps them)."""
        while True:
            try:
                conn = self._held.pop()
            except IndexError:
                return
            if self._fork == redis_wire._forks:
                self.client.connection_pool.release(conn)

    def _after_fork(self) -> None:
        """In a forked child: the held connections' sockets are the parent's (drop them
        unused; the pool resets itself likewise) and a route's lock may have been held by a
        parent thread that does not exist here (make new routes)."""
        self._held = []
        self._routes = {}
        self._fork = redis_wire._forks


def _replicas_short(url: str, acked: int, wanted: int) -> StoreUnavailable:
    return StoreUnavailable(f"{url}: only {acked} of {wanted} replicas confirmed the append in time; it is "
                            "stored on the primary (retrying is safe)")

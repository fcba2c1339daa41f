"""The server's defence against hostile connections: a head deadline, a header cap and a connection cap.

What uvicorn offers, and why it is not enough on its own: ``limit_concurrency`` answers 503 to
*requests* once that many connections are open, but still accepts every connection and counts idle
ones, so 300 slowloris connections would turn every well-formed client away; ``timeout_keep_alive``
runs only between requests; ``h11_max_incomplete_event_size`` caps header bytes, but only under the
pure-Python h11 parser (this server runs httptools, several times cheaper per request, which has
no limit of its own); nothing bounds the time a request head may take. So uvicorn's httptools
protocol is kept, and :func:`guarded_protocol` subclasses it with three hooks:

- **head deadline**: a request line and headers must be complete within ``header_timeout`` seconds of
  the connection (or of the first byte of a later request on a kept-alive connection); otherwise the
  connection is closed, with a 408 when part of a head had arrived (slowloris);
- **header cap**: more than ``max_header_bytes`` before the head is complete is answered 431 and
  closed, so a 300 MB header is never buffered;
- **connection cap**: at most ``max_connections`` are open, below the file-descriptor limit. A new
  connection beyond it closes the connection that has waited longest without a request in progress
  (idle keep-alive, or a head still dribbling in); when every connection has a request in progress,
  the new one gets a 503 and is closed. Well-formed clients are thus answered during an attack: their
  requests complete quickly, the attacker's connections are the ones that wait.

Each refusal is counted in ``kdtool_serve_connections_closed_total{reason}``; none writes a log line
(an attack must not fill the disk).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout: float
    max_connections: int


def _canned(status: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"{extra}connection: close\r\n\r\n").encode() + body


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the three guards; :func:`guarded_protocol` sets the class attributes."""

    limits: ConnectionLimits
    replies: dict[str, bytes] = {}
    closed_counter = None
    waiting_since: float | None = None  # loop time since which no request is in progress (None: one is)
    head_bytes = 0
    head_timer = None

    def _close(self, reason: str, reply: bytes | None = None) -> None:
        if self.closed_counter is not None:
            self.closed_counter.labels(reason).inc()
        if reply:
            self.transport.write(reply)
        self.transport.close()

    def connection_made(self, transport) -> None:
        if len(self.connections) >= self.limits.max_connections and not self._evict_one():
            self.transport = transport  # for connection_lost; never added to the server's connections
            self._close("refused", self.replies["refused"])
            return
        super().connection_made(transport)
        self.waiting_since = self.loop.time()
        self._arm()

    def _evict_one(self) -> bool:
        """Close the connection waiting longest with no request in progress; False when there is none."""
        idle = [c for c in self.connections if getattr(c, "waiting_since", None) is not None
                and not c.transport.is_closing()]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.waiting_since)
        oldest.waiting_since = None
        oldest._close("evicted")
        return True

    def _arm(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            self._close("header_timeout", self.replies["header_timeout"] if self.head_bytes else None)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.head_timer is not None and not self.transport.is_closing():  # the head is still incomplete
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_header_bytes:
                self._disarm()
                self._close("header_too_large", self.replies["header_too_large"])

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        self.waiting_since, self.head_bytes = None, 0
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
            self.waiting_since = self.loop.time()  # idle until the next request (uvicorn's keep-alive timeout)

    def connection_lost(self, exc) -> None:
        self._disarm()
        self.waiting_since = None
        super().connection_lost(exc)


def guarded_protocol(limits: ConnectionLimits, closed_counter=None) -> type:
    """The protocol class for ``uvicorn.Config(http=...)`` enforcing ``limits``; ``closed_counter``: a
    Prometheus counter labelled by reason."""
    replies = {
        "header_too_large": _canned("431 Request Header Fields Too Large", f"request line and headers are over the "
                                    f"{limits.max_header_bytes}-byte limit (--max-header-bytes)"),
        "header_timeout": _canned("408 Request Timeout", f"request head not complete within {limits.header_timeout:g} s "
                                  "(--header-timeout)"),
        "refused": _canned("503 Service Unavailable", f"server at its limit of {limits.max_connections} connections "
                           "(--max-connections); retry shortly", "retry-after: 1\r\n"),
    }
    return type("GuardedProtocol", (GuardedProtocol,),
                {"limits": limits, "replies": replies, "closed_counter": closed_counter})

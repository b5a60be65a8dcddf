"""The service's outer wall: request body limits, no NUL in URLs, security
headers, HEAD wherever GET, and per-client rate limits.

Plain ASGI middlewares rather than Starlette's ``BaseHTTPMiddleware``: they
add a few header bytes, one length check and one bucket lookup, and the
nearest-service path (hundreds of requests a second) does not pay for an
extra task per request.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.middleware.gzip import GZipMiddleware

from geo_service.api.problems import problem_response, status_for
from geo_service.errors import PayloadTooLarge, TooManyRequests

__all__ = ["Compression", "Guard", "RateLimit", "TokenBuckets", "client_key", "is_heavy"]


class Guard:
    """Refuse bodies over the limit (413) before reading them where the client
    says how long they are, and while reading them where it does not; add
    security headers to every response; answer HEAD as GET without the body
    (RFC 9110: the same headers), wherever GET is answered."""

    def __init__(self, app: Any, *, max_body: int, max_import: int, frame_ancestors: str):
        self.app = app
        self.max_body = max_body
        self.max_import = max_import
        self.headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"strict-origin-when-cross-origin"),
            (b"content-security-policy", f"frame-ancestors {frame_ancestors}".encode()),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]

    def limit_for(self, path: str) -> int:
        if path.endswith("/import"):
            return self.max_import
        if path == "/processes/import/execution":
            # The same file, base64 in JSON: four bytes for every three, and the JSON around it.
            return self.max_import * 4 // 3 + 64_000
        return self.max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "HEAD":
            # The routes declare GET only; the server's own copy of the scope
            # keeps HEAD, so it sends no body either.
            scope = {**scope, "method": "GET"}
            send = _without_body(send)
        query = scope.get("query_string") or b""
        if "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query:
            # No id, name or filter of this service contains U+0000, and some
            # stores cannot even be asked about one (PostgreSQL refuses it).
            response = problem_response(
                400,
                "the URL must not contain the NUL character (%00)",
                title="Invalid parameter",
                instance=scope.get("path", "").replace("\x00", "%00"),
            )
            await response(scope, receive, self._with_headers(send))
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = problem_response(
                413, _too_large(limit), title="Payload too large", instance=scope.get("path")
            )
            await response(scope, receive, self._with_headers(send))
            return
        received = 0

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the endpoint's body read: the problem
                    # handlers turn it into a 413 like any domain error.
                    raise PayloadTooLarge(_too_large(limit))
            return message

        await self.app(scope, counted_receive, self._with_headers(send))

    def _with_headers(self, send):
        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.headers
            await send(message)

        return send_with_headers


class Compression:
    """Starlette's gzip for the clients that accept it (GeoJSON shrinks about
    tenfold: what a phone on a slow line needs most); the others skip it,
    since even passing a response through it untouched cost as much as a
    third of a small request. Every answer says ``Vary: Accept-Encoding``,
    as it may differ by that header."""

    def __init__(self, app: Any, *, minimum_size: int, compresslevel: int):
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=compresslevel)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"accept-encoding" and b"gzip" in value:
                # Starlette says Vary only on what it compressed: small
                # answers, problems and 304s must say it too (RFC 9110 15.4.5).
                await self.gzip(scope, receive, _with_vary(send, if_missing=True))
                return
        await self.app(scope, receive, _with_vary(send, if_missing=False))


_VARY_ENCODING = (b"vary", b"Accept-Encoding")


def _with_vary(send, *, if_missing: bool):
    async def send_with_vary(message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            said = if_missing and any(
                name.lower() == b"vary" and b"accept-encoding" in value.lower()
                for name, value in headers
            )
            if not said:
                headers.append(_VARY_ENCODING)
            message["headers"] = headers
        await send(message)

    return send_with_vary


def _without_body(send):
    async def send_headers_only(message) -> None:
        if message["type"] in {"http.response.body", "http.response.pathsend"}:
            if message.get("more_body"):
                return  # one empty last part ends the response
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        await send(message)

    return send_headers_only


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit:,} bytes"


# -- rate limits ----------------------------------------------------------------------


class TokenBuckets:
    """One token bucket per client: ``per_minute`` tokens a minute, at most
    ``burst`` saved up. The table remembers the ``max_clients`` clients seen
    most recently; a client forgotten starts again with a full bucket.

    >>> buckets = TokenBuckets(per_minute=60, burst=2, clock=lambda: 0.0)
    >>> [buckets.take("10.0.0.1") for _ in range(3)], buckets.take("10.0.0.2")
    ([0.0, 0.0, 1.0], 0.0)
    """

    def __init__(
        self,
        per_minute: int,
        burst: int,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        # client -> (tokens, when counted). One event loop per process: no lock.
        self._clients: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float:
        """Take a token: 0.0 when there was one, else the seconds until there is."""
        now = self.clock()
        tokens, then = self._clients.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._clients[client] = (tokens, now)
        if len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._clients)


def is_heavy(path: str) -> bool:
    """The requests that start a PDF, a coverage run, a job or an import."""
    return (
        path.startswith(("/print/", "/coverage"))
        or path.endswith("/import")
        or (path.startswith("/processes/") and path.endswith("/execution"))
    )


def client_key(scope) -> str:
    """Whom a request counts against: its client's address (the one a trusted
    proxy named, when ``forwarded_allow_ips`` put uvicorn's proxy middleware in
    front). An IPv6 client is its /64, the block one subscriber is given."""
    client = scope.get("client")
    host = client[0] if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # a Unix socket, a test client
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return host


class RateLimit:
    """429 with ``Retry-After`` for a client past its rate: one bucket for the
    heavy requests (``is_heavy``), one for all; ``None`` turns one off. The job
    pool bounds heavy work for everybody (503 when full); this keeps one client
    from taking all of it."""

    def __init__(self, app: Any, *, heavy: TokenBuckets | None, general: TokenBuckets | None):
        self.app = app
        self.heavy = heavy
        self.general = general

    async def __call__(self, scope, receive, send) -> None:
        # A CORS preflight costs nothing and precedes the request it asks about.
        if scope["type"] != "http" or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        buckets = [self.general]
        if is_heavy(path):
            buckets.append(self.heavy)
        key = ""
        for bucket in buckets:
            if bucket is None:
                continue
            key = key or client_key(scope)
            wait = bucket.take(key)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                error = TooManyRequests(
                    f"请求过于频繁，请 {seconds} 秒后再试 · too many requests from this "
                    f"address; try again in {seconds} s",
                    retry_after=seconds,
                )
                response = problem_response(
                    status_for(error), error.detail, title=error.title, instance=path
                )
                response.headers["Retry-After"] = str(seconds)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

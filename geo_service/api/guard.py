"""The service's outer wall: request body limits, no NUL in URLs, and security headers.

A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: it
adds a few header bytes and one length check, and the nearest-service path
(hundreds of requests a second) does not pay for an extra task per request.
"""

from __future__ import annotations

from typing import Any

from geo_service.api.problems import problem_response
from geo_service.errors import PayloadTooLarge

__all__ = ["Guard"]


class Guard:
    """Refuse bodies over the limit (413) before reading them where the client
    says how long they are, and while reading them where it does not; add
    security headers to every response."""

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


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit:,} bytes"

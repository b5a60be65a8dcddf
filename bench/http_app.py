"""The service app plus one trivial endpoint, so the HTTP benchmark compares like with like."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response

from geo_service.api import create_app


def create_bench_app() -> FastAPI:
    app = create_app()

    @app.get("/bench/trivial", include_in_schema=False)
    async def trivial() -> Response:
        return Response(b'{"ok":true}', media_type="application/json")

    return app

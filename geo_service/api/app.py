"""The FastAPI application factory: settings -> catalog -> store -> routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from geo_service.api import (
    admin,
    admin_screens,
    admin_sheets,
    coverage,
    docs,
    editing,
    geocode,
    history,
    import_template,
    nearest,
    ogc,
    printing,
    processes,
    supervision,
    tiles,
    webmap,
)
from geo_service.api.guard import Compression, Guard, RateLimit, TokenBuckets
from geo_service.api.openapi import QueryContract, install_openapi, operations
from geo_service.api.problems import install_problem_handlers
from geo_service.runtime import Runtime
from geo_service.services.jobs import JobEngine
from geo_service.settings import Settings
from geo_service.sources.catalog import load_catalog
from geo_service.web.page import build_page

__all__ = ["create_app"]

log = logging.getLogger("geo_service.api")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. The store is opened (and seeded from ``layers/`` when it is
    new) at startup, not at import, so tests and workers each get their own."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rt = Runtime.open(settings)
        app.state.runtime = rt
        jobs = JobEngine(rt)
        await run_in_threadpool(jobs.start)  # jobs a previous run left unfinished: failed
        app.state.jobs = jobs
        # Built once: the page is the same for every resident; data comes by API.
        app.state.map_page = build_page(
            rt.catalog, rt.style, tiles=settings.tiles, tianditu_key=settings.tianditu_key
        )
        # The document and the query contract's table, before the first request asks.
        await run_in_threadpool(operations, app)
        try:
            yield
        finally:
            await run_in_threadpool(jobs.close)
            rt.close()

    app = FastAPI(
        title="张店区拥军服务资源地图服务 · Zhangdian support-resource map service",
        description="OGC API - Features for the veterans' support resources of 张店区 "
        "(Zibo, Shandong): service stations, green channels, medical support, "
        "memorials, defence-education sites, towns and the district outline. "
        "Coordinates are WGS-84 (lon/lat) unless `crs=gcj02|bd09` is asked for. "
        "Errors are RFC 9457 problem+json.",
        version="0.1.0",
        lifespan=lifespan,
        # /docs and /redoc come from api/docs.py, with their files served here, not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    # Innermost, next to the router: what the query string may hold.
    app.add_middleware(QueryContract)
    # Level 6, zlib's default: a page of 100 sites compresses in three quarters
    # of the time level 9 (Starlette's) takes, 1 % larger.
    app.add_middleware(Compression, minimum_size=1024, compresslevel=6)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match"],
            expose_headers=["ETag", "Location"],
        )
    # The last added runs first: the client's address, then the wall (HEAD,
    # limits, headers, on 429s too), then the rate limits.
    heavy = _buckets(settings.rate_heavy_per_minute, settings.rate_heavy_burst, settings)
    general = _buckets(settings.rate_per_minute, settings.rate_burst, settings)
    if heavy is not None or general is not None:
        app.add_middleware(RateLimit, heavy=heavy, general=general)
    app.add_middleware(
        Guard,
        max_body=settings.max_body_bytes,
        max_import=settings.max_import_bytes,
        frame_ancestors=settings.frame_ancestors,
    )
    if settings.forwarded_allow_ips:
        # The client a trusted proxy names in X-Forwarded-For, for the rate limits.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    install_problem_handlers(app)
    install_openapi(app, lambda: load_catalog(settings.layers_dir))
    # The router tries routes in the order they were included, each included
    # router in turn: the residents' hot paths first.
    app.include_router(nearest.router)
    app.include_router(ogc.router)
    app.include_router(editing.router)
    # The same routes where the console's session cookie (Path=/admin) reaches them.
    app.include_router(editing.router, prefix="/admin/api", include_in_schema=False)
    app.include_router(admin.router)
    app.include_router(admin_sheets.router)
    app.state.sign_in_buckets = admin.sign_in_buckets(settings)
    app.include_router(admin_screens.router)
    app.include_router(history.router)
    app.include_router(supervision.router)
    app.include_router(import_template.router)
    app.include_router(geocode.router)
    app.include_router(coverage.router)
    app.include_router(printing.router)
    app.include_router(processes.router)
    # The console's History, Supervision and Planning screens ask these as
    # the person signed in: under /admin/api the session cookie reaches them.
    for console_router in (history.router, supervision.router, processes.router):
        app.include_router(console_router, prefix="/admin/api", include_in_schema=False)
    app.include_router(tiles.router)
    app.include_router(webmap.router)
    webmap.mount_static(app)
    app.include_router(docs.router)
    docs.mount_static(app)
    return app


def _buckets(per_minute: int, burst: int, settings: Settings) -> TokenBuckets | None:
    return TokenBuckets(per_minute, burst, settings.rate_clients) if per_minute else None

"""The API documentation pages, /docs (Swagger UI) and /redoc, with their
scripts, stylesheet and icon served by the service itself.

FastAPI's own pages load them from a CDN: offline, /docs was a white page.
The files come from the installed ``fastapi-offline`` package (its ``static/``
folder, mounted read-only under ``/static/docs``); the pages are FastAPI's
``get_swagger_ui_html`` / ``get_redoc_html`` pointed at them.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "DOCS_DIR", "STATIC", "mount_static", "router"]

#: The package's Swagger UI and ReDoc files on disk.
DOCS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
#: Where they are served.
STATIC = "/static/docs"
#: File name -> media type, for the tests and the page links.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}

#: ReDoc's bundle shows Redocly's logo from their CDN in its menu, with no option
#: to turn it off; an empty ``src`` makes the image hide itself (its onError).
REDOC_LOGO = b'"https://cdn.redoc.ly/redoc/logo-mini.svg"'

router = APIRouter(include_in_schema=False)


@cache
def _redoc_bundle() -> bytes:
    bundle = (DOCS_DIR / "redoc.standalone.js").read_bytes()
    return bundle.replace(REDOC_LOGO, b'""')


@router.get(f"{STATIC}/redoc.standalone.js")
def redoc_bundle() -> Response:
    """Before the mount, which serves the package's other files as they are."""
    return Response(
        _redoc_bundle(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


def _static(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '')}{STATIC}/{name}"


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - Swagger UI",
        swagger_js_url=_static(request, "swagger-ui-bundle.js"),
        swagger_css_url=_static(request, "swagger-ui.css"),
        swagger_favicon_url=_static(request, "favicon.png"),
        oauth2_redirect_url=None,
        # Swagger UI would otherwise ask an outside validator about the document.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return get_redoc_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - ReDoc",
        redoc_js_url=_static(request, "redoc.standalone.js"),
        redoc_favicon_url=_static(request, "favicon.png"),
        with_google_fonts=False,
    )


def mount_static(app: FastAPI) -> None:
    """The package's folder, read-only (StaticFiles serves, never writes)."""
    app.mount(STATIC, StaticFiles(directory=DOCS_DIR), name="static-docs")

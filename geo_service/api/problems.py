"""RFC 9457 problem details: the one table from domain error to HTTP status."""

from __future__ import annotations

import logging
from http import HTTPStatus

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from geo_service.api.media import MediaType
from geo_service.errors import (
    CatalogError,
    Conflict,
    Forbidden,
    GeoServiceError,
    ImportTooLarge,
    InvalidFeature,
    InvalidParameter,
    JobFailed,
    JobInterrupted,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    PreconditionRequired,
    PrintError,
    ServiceBusy,
    StoreError,
    StyleError,
    TooManyRequests,
    Unauthorized,
    UnsupportedMediaType,
)
from geo_service.sources.importing import ImportRefused

__all__ = ["ERROR_STATUS", "install_problem_handlers", "problem_response"]

log = logging.getLogger("geo_service.api")

#: The one table: domain error class -> HTTP status. Looked up along the MRO,
#: so a subclass (CollectionNotFound) inherits its parent's status (404).
ERROR_STATUS: dict[type[GeoServiceError], int] = {
    ImportRefused: 422,  # the file was read; its rows have errors (report attached)
    InvalidParameter: 400,
    InvalidFeature: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    PreconditionFailed: 412,
    PayloadTooLarge: 413,
    ImportTooLarge: 413,  # over an import limit (rows, columns, cells, unpacked size)
    UnsupportedMediaType: 415,
    PreconditionRequired: 428,
    TooManyRequests: 429,  # one client over its rate limit: Retry-After says when
    StoreError: 503,
    CatalogError: 500,
    StyleError: 500,
    PrintError: 503,  # e.g. no CJK font on the server: nothing the client can fix
    ServiceBusy: 503,  # the job queue is full: Retry-After says when to ask again
    JobInterrupted: 503,  # a restart or a dead worker cut the job off: ask again
}


def status_for(error: GeoServiceError) -> int:
    if isinstance(error, JobFailed):
        # Recorded in another process by the error's class name: the same table decides.
        named = {cls.__name__: status for cls, status in ERROR_STATUS.items()}
        for name in error.problem.get("error") or ():
            if name in named:
                return named[name]
        return 500
    for cls in type(error).__mro__:
        if cls in ERROR_STATUS:
            return ERROR_STATUS[cls]
    return 500


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    instance: str | None = None,
    **extra: object,
) -> Response:
    body: dict[str, object] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(orjson.dumps(body), status_code=status, media_type=MediaType.problem)


def install_problem_handlers(app: FastAPI) -> None:
    """Register the handlers once; every error leaves as problem+json."""

    @app.exception_handler(GeoServiceError)
    async def _domain(request: Request, error: GeoServiceError) -> Response:
        status = status_for(error)
        if status >= 500:
            log.error("%s on %s: %s", type(error).__name__, request.url.path, error.detail)
        extra: dict[str, object] = {}
        if isinstance(error, InvalidParameter):
            extra["parameter"] = error.parameter
        if isinstance(error, InvalidFeature):
            extra["errors"] = [
                {"field": p.field, "message": p.message, "message_zh": p.zh or p.message}
                for p in error.problems
            ]
        if isinstance(error, ImportRefused):
            from geo_service.services.editing import import_report

            extra["report"] = import_report(error.plan, None)
        title = error.title
        if isinstance(error, JobFailed):
            title = str(error.problem.get("title") or title)
            extra.update(
                {k: v for k, v in error.problem.items() if k not in {"error", "title", "detail"}}
            )
        response = problem_response(
            status, error.detail, title=title, instance=request.url.path, **extra
        )
        if isinstance(error, ServiceBusy | TooManyRequests):
            response.headers["Retry-After"] = str(error.retry_after)
        if isinstance(error, Unauthorized):
            response.headers["WWW-Authenticate"] = 'Bearer realm="geo-service"'
        if isinstance(error, PreconditionFailed) and error.current_etag:
            response.headers["ETag"] = error.current_etag
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> Response:
        messages = []
        parameters = []
        for item in error.errors():
            location = [str(part) for part in item.get("loc", ()) if part not in ("query", "path")]
            name = ".".join(location) or "request"
            parameters.append(name)
            messages.append(f"{name}: {item.get('msg', 'invalid value')}")
        return problem_response(
            400,
            "; ".join(messages),
            title="Invalid parameter",
            instance=request.url.path,
            parameter=parameters[0] if parameters else None,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        detail = (
            error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
        )
        if error.status_code == 404 and detail == "Not Found":
            detail = f"no resource at {request.url.path}"
        response = problem_response(error.status_code, detail, instance=request.url.path)
        # e.g. the Allow header of a 405, which RFC 9110 requires.
        response.headers.update(error.headers or {})
        if error.status_code == 405:
            from geo_service.api.openapi import allowed_methods

            # Starlette names the methods of the first route at this path
            # only; GET and POST of /collections/{id}/items are two routes.
            methods = allowed_methods(request.app, request.url.path)
            if methods:
                response.headers["Allow"] = ", ".join(methods)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> Response:
        # Details go to the log; the client sees a safe message only.
        log.exception("unexpected error on %s", request.url.path)
        response = problem_response(
            500, "an unexpected error occurred; it has been logged", instance=request.url.path
        )
        # The server drops the connection after an unhandled error: say so.
        response.headers["Connection"] = "close"
        return response

"""Domain errors: one root, one subclass per failure.

Domain code raises these; only the HTTP error table in ``geo_service.api``
knows which status each maps to, and the CLI prints their message. Each
error also subclasses the built-in it resembles, so callers may catch either.
Messages are safe to show to a user: they never carry paths or internals.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CatalogError",
    "CollectionNotFound",
    "Conflict",
    "FeatureNotFound",
    "FieldProblem",
    "Forbidden",
    "GeoServiceError",
    "ImportTooLarge",
    "InvalidFeature",
    "InvalidParameter",
    "JobFailed",
    "JobInterrupted",
    "NotFound",
    "OpeningHoursNotUnderstood",
    "PayloadTooLarge",
    "PreconditionFailed",
    "PreconditionRequired",
    "PrintError",
    "ServiceBusy",
    "StoreError",
    "StyleError",
    "TooManyRequests",
    "Unauthorized",
    "UnsupportedMediaType",
]


class GeoServiceError(Exception):
    """Root of every error the service raises on purpose."""

    title = "Service error"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(GeoServiceError, LookupError):
    """Something the user named does not exist."""

    title = "Not found"


class CollectionNotFound(NotFound):
    title = "Collection not found"

    def __init__(self, collection_id: str, known: list[str] | None = None):
        hint = f"; known collections: {', '.join(known)}" if known else ""
        super().__init__(f"no collection {collection_id!r}{hint}")
        self.collection_id = collection_id


class FeatureNotFound(NotFound):
    title = "Feature not found"

    def __init__(self, collection_id: str, feature_id: str):
        super().__init__(f"no feature {feature_id!r} in collection {collection_id!r}")
        self.collection_id = collection_id
        self.feature_id = feature_id


class InvalidParameter(GeoServiceError, ValueError):
    """A query parameter or option that cannot be used as given."""

    title = "Invalid parameter"

    def __init__(self, parameter: str, message: str):
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


class OpeningHoursNotUnderstood(InvalidParameter):
    """Opening hours written in a form the reader cannot read whole
    (``sources.hours``); ``message`` is Chinese and says how to write them."""

    title = "Opening hours not understood"

    def __init__(self, message: str):
        super().__init__("opening_hours", message)


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with one field of a feature."""

    field: str
    message: str
    #: The same in Chinese, for the office staff who fix it (the console shows it
    #: beside the field); None where no Chinese wording exists yet.
    zh: str | None = None

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidFeature(GeoServiceError, ValueError):
    """A feature that breaks its layer's schema; ``problems`` names every bad field."""

    title = "Invalid feature"

    def __init__(self, feature_id: str | None, problems: list[FieldProblem]):
        label = f"feature {feature_id!r}" if feature_id else "feature"
        super().__init__(f"{label} is invalid: " + "; ".join(str(p) for p in problems))
        self.feature_id = feature_id
        self.problems = problems


class CatalogError(GeoServiceError, ValueError):
    """The layer catalog file itself is malformed."""

    title = "Invalid layer catalog"


class StyleError(GeoServiceError, ValueError):
    """The map style file (``maps/style.toml``) is malformed or names unknown layers."""

    title = "Invalid map style"


class PrintError(GeoServiceError, RuntimeError):
    """A printed map cannot be made here (for example, no CJK font installed)."""

    title = "Cannot print"


class StoreError(GeoServiceError, RuntimeError):
    """The store cannot be opened or written as asked."""

    title = "Store error"


class Unauthorized(GeoServiceError, PermissionError):
    """No credentials, or credentials that are not (or no longer) valid."""

    title = "Unauthorized"


class Forbidden(GeoServiceError, PermissionError):
    """Valid credentials that do not allow this change (role or town scope)."""

    title = "Forbidden"


class Conflict(GeoServiceError, ValueError):
    """The change clashes with what is stored (e.g. creating an id that exists)."""

    title = "Conflict"


class PreconditionRequired(GeoServiceError, ValueError):
    """A change to an existing feature sent without ``If-Match``."""

    title = "Precondition required"


class PreconditionFailed(GeoServiceError, ValueError):
    """``If-Match`` names a version of the feature that is no longer current."""

    title = "Precondition failed"

    def __init__(self, detail: str, current_etag: str | None = None):
        super().__init__(detail)
        self.current_etag = current_etag


class PayloadTooLarge(GeoServiceError, ValueError):
    title = "Payload too large"


class ImportTooLarge(PayloadTooLarge):
    """A file to import is over an import limit (rows, columns, cells, the
    length of a cell, its unpacked size). Found while reading, so a file over
    a limit costs no more to refuse than the limit itself."""

    title = "File too large to import"


class UnsupportedMediaType(GeoServiceError, ValueError):
    title = "Unsupported media type"


class ServiceBusy(GeoServiceError, RuntimeError):
    """The bounded job queue is full: the work is refused now, not queued forever."""

    title = "Service busy"

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.retry_after = retry_after


class TooManyRequests(GeoServiceError, RuntimeError):
    """One client asks more often than its rate limit allows."""

    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int):
        super().__init__(detail)
        self.retry_after = retry_after


class JobFailed(GeoServiceError, RuntimeError):
    """A job ended in an error. ``problem`` is that error as it was recorded in
    the job (its class name, detail and extras), so an adapter in another
    process answers with the status the original error maps to."""

    title = "Job failed"

    def __init__(self, problem: dict):
        super().__init__(str(problem.get("detail") or "the job failed"))
        self.problem = problem


class JobInterrupted(GeoServiceError, RuntimeError):
    """A job cut off by a restart or a dead worker: nothing was wrong with
    what was asked, so asking again is the answer."""

    title = "Job interrupted"

"""HTTP outputs: FastAPI routes over the store and the queries."""

from geo_service.api.app import create_app

__all__ = ["create_app"]

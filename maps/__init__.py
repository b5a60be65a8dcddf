"""Makes this folder the package ``geo_service.maps`` (see pyproject.toml), so
the wheel carries style.toml; only the data files matter."""

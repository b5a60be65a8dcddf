"""Makes this folder the package ``geo_service.layers`` (see pyproject.toml), so
the wheel carries the catalog and sample layers; only the data files matter."""

"""The data the service ships: the layer catalog with its sample layers, and the map style.

They live at the repository root (``layers/``, ``maps/``), where scripts, the
README and office staff find them; pyproject.toml maps them into the package as
``geo_service.layers`` and ``geo_service.maps``, so a wheel carries them and an
editable install points at the repository's folders. Settings may replace both
(``GEO_SERVICE_LAYERS_DIR``, ``GEO_SERVICE_STYLE_FILE``).

Example
-------
>>> (layers_dir() / "catalog.toml").is_file(), style_file().name
(True, 'style.toml')
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["layers_dir", "style_file"]


def layers_dir() -> Path:
    """The shipped ``layers/`` folder: catalog.toml, sample layers, gazetteer."""
    return _folder("geo_service.layers")


def style_file() -> Path:
    """The shipped ``maps/style.toml``."""
    return _folder("geo_service.maps") / "style.toml"


def _folder(package: str) -> Path:
    # No as_file(): it exists for resources inside a zip, and its copy lives only
    # while its ``with`` block is open, but these folders are held for the life of
    # the process (Settings.layers_dir, the geocoder's gazetteer, imports' header
    # aliases). pip always unpacks a wheel into site-packages and an editable
    # install maps the package onto the repository, so files() is a real folder.
    try:
        folder = files(package)
    except ModuleNotFoundError:
        raise RuntimeError(
            f"{package} is not installed: reinstall geo-service (pip install -e . in a "
            "checkout; an editable install older than the packaged data does not map it)"
        ) from None
    if not isinstance(folder, Path):
        raise RuntimeError(f"{package} is not a folder on disk: {folder!r} (zip imports)")
    return folder

"""The page's scripts and stylesheets: Leaflet and its clustering plugin from
installed packages (XStatic), and the project's own ``static/`` files (the
page script, and the vector-tile decoder for large layers: its npm-only
counterpart, Leaflet.VectorGrid, has no Python package).

Nothing is fetched from a CDN: the served page links these files under
``/static/`` and the standalone export inlines them.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

import xstatic.pkg.leaflet as xs_leaflet
import xstatic.pkg.leaflet_markercluster as xs_markercluster

__all__ = ["APP_DIR", "ASSET_DIRS", "SCRIPTS", "STYLESHEETS", "Asset"]

APP_DIR = Path(__file__).resolve().parent / "static"

#: URL folder under /static/ -> folder on disk.
ASSET_DIRS: dict[str, Path] = {
    "leaflet": Path(xs_leaflet.BASE_DIR),
    "markercluster": Path(xs_markercluster.BASE_DIR),
    "app": APP_DIR,
}


@dataclass(frozen=True)
class Asset:
    folder: str  # a key of ASSET_DIRS
    name: str

    @property
    def url(self) -> str:
        # Relative, so the page works at / and /map and behind a path prefix.
        return f"static/{self.folder}/{self.name}"

    @property
    def path(self) -> Path:
        return ASSET_DIRS[self.folder] / self.name

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")

    def inlined(self) -> str:
        """The file's text for inlining in a page: a stylesheet's relative
        images become data: URIs, so a page opened from disk asks for nothing."""
        text = self.text()
        if not self.name.endswith(".css"):
            return text

        def data_uri(match: re.Match) -> str:
            image = self.path.parent / match.group(1)
            if not image.is_file():
                return match.group(0)
            encoded = base64.b64encode(image.read_bytes()).decode()
            return f"url(data:image/png;base64,{encoded})"

        return re.sub(r"url\((images/[\w.-]+\.png)\)", data_uri, text)


#: In load order: Leaflet before its plugin, both before the app.
SCRIPTS = [
    Asset("leaflet", "leaflet.js"),
    Asset("markercluster", "leaflet.markercluster.js"),
    Asset("app", "vectortiles.js"),
    Asset("app", "app.js"),
]
STYLESHEETS = [
    Asset("leaflet", "leaflet.css"),
    Asset("markercluster", "MarkerCluster.css"),
    Asset("markercluster", "MarkerCluster.Default.css"),
    Asset("app", "app.css"),
]

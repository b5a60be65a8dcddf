"""The console's History, Supervision and Planning & printing screens.

Each is the Sites screen's frame (the shell's header and menu, an empty
``<main>``) with its data in a JSON block and its own script under
``static/``: the script builds the screen from the data and from the
service's API under ``/admin/api``, as text only, so no value from the store
is ever markup here.
"""

from __future__ import annotations

from typing import Any

from geo_service.web.assets import Asset
from geo_service.web.console import screen_page

__all__ = ["history_page", "planning_page", "supervision_page"]


def _screen(*, title: str, script: str, leaflet: bool = False, **shell: Any) -> str:
    leaflet_scripts = [Asset("leaflet", "leaflet.js")] if leaflet else []
    leaflet_styles = [Asset("leaflet", "leaflet.css")] if leaflet else []
    return screen_page(
        title=title,
        scripts=[*leaflet_scripts, Asset("app", "console-common.js"), Asset("app", script)],
        styles=[*leaflet_styles, Asset("app", "console.css"), Asset("app", "console-screens.css")],
        main_class="screen",
        **shell,
    )


def history_page(**shell: Any) -> str:
    """A site's timeline with "restore this version" (``console-history.js``)."""
    return _screen(title="历史 · 管理后台", script="console-history.js", **shell)


def supervision_page(**shell: Any) -> str:
    """The 督办 views as of a date, compared with another (``console-supervision.js``)."""
    return _screen(title="督办 · 管理后台", script="console-supervision.js", **shell)


def planning_page(**shell: Any) -> str:
    """Coverage report, recommended sites on a map, and printed maps as jobs
    (``console-planning.js``, with Leaflet for the map)."""
    return _screen(
        title="规划与打印 · 管理后台", script="console-planning.js", leaflet=True, **shell
    )

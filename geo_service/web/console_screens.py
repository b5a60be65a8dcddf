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
from geo_service.web.console import _document, _header, _menu
from geo_service.web.markup import Html, html, join, json_script

__all__ = ["history_page", "planning_page", "supervision_page"]

_LEAFLET_SCRIPT = Asset("leaflet", "leaflet.js")
_LEAFLET_STYLE = Asset("leaflet", "leaflet.css")
_CONSOLE_STYLE = Asset("app", "console.css")
_SCREENS_STYLE = Asset("app", "console-screens.css")


def _screen(
    *,
    title: str,
    name: str,
    role: str,
    towns: list[tuple[str, str]],
    csrf_token: str,
    data: dict[str, Any],
    script: str,
    leaflet: bool = False,
) -> str:
    scripts = [_LEAFLET_SCRIPT] if leaflet else []
    scripts += [Asset("app", "console-common.js"), Asset("app", script)]
    styles = [_LEAFLET_STYLE] if leaflet else []
    styles += [_CONSOLE_STYLE, _SCREENS_STYLE]
    body = html(
        '{header}<nav class="console-menu" aria-label="控制台 Console"><ul>{menu}</ul></nav>'
        '<main id="console-main" class="screen"></main>{data}{scripts}',
        header=_header(name=name, role=role, towns=towns, csrf_token=csrf_token),
        menu=_menu(),
        data=Html(json_script("console-data", data)),
        scripts=join(
            [html('<script src="/static/{}/{}"></script>', a.folder, a.name) for a in scripts]
        ),
    )
    head = html(
        '<meta name="csrf-token" content="{}">{}',
        csrf_token,
        join(
            [html('<link rel="stylesheet" href="/static/{}/{}">', a.folder, a.name) for a in styles]
        ),
    )
    return _document("zh", title, body, head, connect=True)


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

"""The console's Spreadsheets (表格导入) and Sample-to-real (示例转正) screens.

The same shape as the Sites screen (``web.console.sites_page``): the shell's
header and menu, an empty ``<main>`` a static script fills, and the page's
data in a JSON block, so no value from the store or a file is ever markup.
"""

from __future__ import annotations

from typing import Any

from geo_service.web.assets import Asset
from geo_service.web.console import _document, _header, _menu
from geo_service.web.markup import Html, html, join, json_script

__all__ = ["samples_page", "spreadsheets_page"]

_STYLES = [Asset("app", "console.css"), Asset("app", "console-sheets.css")]


def _screen(
    *,
    title: str,
    script: str,
    name: str,
    role: str,
    towns: list[tuple[str, str]],
    csrf_token: str,
    data: dict[str, Any],
) -> str:
    styles = join(
        [html('<link rel="stylesheet" href="/static/{}/{}">', a.folder, a.name) for a in _STYLES]
    )
    body = html(
        '{header}<nav class="console-menu" aria-label="控制台 Console"><ul>{menu}</ul></nav>'
        '<main id="console-main" class="sheet-main"></main>{data}'
        '<script src="/static/app/{script}"></script>',
        header=_header(name=name, role=role, towns=towns, csrf_token=csrf_token),
        menu=_menu(),
        data=Html(json_script("console-data", data)),
        script=script,
    )
    head = html('<meta name="csrf-token" content="{}">{}', csrf_token, styles)
    return _document("en" if data.get("lang") == "en" else "zh", title, body, head, connect=True)


def spreadsheets_page(**person: Any) -> str:
    """表格导入: a layer, its template, a file dropped or picked, the dry
    run's report, then the import as a job (``static/console-sheets.js``)."""
    return _screen(title="表格导入 · 管理后台", script="console-sheets.js", **person)


def samples_page(**person: Any) -> str:
    """示例转正: a town's sample sites per layer, retired together and
    restored one by one (``static/console-samples.js``)."""
    return _screen(title="示例转正 · 管理后台", script="console-samples.js", **person)

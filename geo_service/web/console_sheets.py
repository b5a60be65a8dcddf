"""The console's Spreadsheets (表格导入) and Sample-to-real (示例转正) screens.

The same shape as the Sites screen (``web.console.screen_page``): the shell's
header and menu, an empty ``<main>`` a static script fills, and the page's
data in a JSON block, so no value from the store or a file is ever markup.
"""

from __future__ import annotations

from typing import Any

from geo_service.web.assets import Asset
from geo_service.web.console import screen_page

__all__ = ["samples_page", "spreadsheets_page"]


def _screen(*, title: str, script: str, **person: Any) -> str:
    return screen_page(
        title=title,
        scripts=[Asset("app", "console-common.js"), Asset("app", script)],
        styles=[Asset("app", "console.css"), Asset("app", "console-sheets.css")],
        main_class="sheet-main",
        lang=person["data"].get("lang", "zh"),
        **person,
    )


def spreadsheets_page(**person: Any) -> str:
    """表格导入: a layer, its template, a file dropped or picked, the dry
    run's report, then the import as a job (``static/console-sheets.js``)."""
    return _screen(title="表格导入 · 管理后台", script="console-sheets.js", **person)


def samples_page(**person: Any) -> str:
    """示例转正: a town's sample sites per layer, retired together and
    restored one by one (``static/console-samples.js``)."""
    return _screen(title="示例转正 · 管理后台", script="console-samples.js", **person)

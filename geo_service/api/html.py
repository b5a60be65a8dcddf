"""Plain HTML views of the OGC resources, for browsers (the web map lives elsewhere).

Every value is written through ``geo_service.web.markup.html``, which escapes
it unless it is markup made the same way, and every link from a body passes
``safe_href``; ``finish_page`` gives each page a policy under which no script
runs at all (these pages have none).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

from geo_service.api.media import MediaType
from geo_service.sources.catalog import Layer
from geo_service.web.markup import Html, finish_page, html, join, safe_href

__all__ = ["collections", "items", "json_block", "landing", "page"]

_STYLE = Html(
    """
body{font-family:"Noto Sans CJK SC","Noto Sans SC",sans-serif;margin:0 auto;max-width:60rem;
padding:1rem;line-height:1.5}table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}
.sample{background:#fff3cd;border:1px solid #e0b000;padding:.5rem;margin:.5rem 0}
a{color:#0b57d0}pre{background:#f6f6f6;padding:.5rem;overflow:auto}
"""
)


def page(title: str, body: Html) -> Response:
    if not isinstance(body, Html):
        raise TypeError("the body of a page is Html: build it with geo_service.web.markup.html")
    text = html(
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        "<title>{title}</title><style>{style}</style></head>"
        "<body><h1>{title}</h1>{body}</body></html>",
        title=title,
        style=_STYLE,
        body=body,
    )
    return Response(finish_page(text), media_type=MediaType.html)


def json_block(body: Any) -> Html:
    return html("<pre>{}</pre>", orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())


def _links(links: list[dict[str, str]]) -> Html:
    rows = join(
        [
            html(
                '<li><a href="{}">{}</a> ({})</li>',
                safe_href(link["href"]),
                link["title"],
                link["rel"],
            )
            for link in links
        ]
    )
    return html("<ul>{}</ul>", rows)


def landing(body: dict[str, Any]) -> Html:
    return html("<p>{}</p>{}", body["description"], _links(body["links"]))


def collections(body: dict[str, Any]) -> Html:
    rows = join(
        [
            html(
                "<tr><td>{}</td><td>{}<br><small>{}</small></td><td>{}</td>"
                '<td><a href="{}">HTML</a> · <a href="{}">GeoJSON</a></td></tr>',
                c["id"],
                c["title"],
                c["description"],
                c["numberOfFeatures"],
                safe_href(c["links"][2]["href"]),
                safe_href(c["links"][1]["href"]),
            )
            for c in body["collections"]
        ]
    )
    return html(
        "<table><tr><th>id</th><th>图层 Layer</th><th>要素数 Features</th><th></th></tr>{}</table>",
        rows,
    )


def items(layer: Layer, body: dict[str, Any]) -> Html:
    features = body["features"]
    notice = Html("")
    if any(f["properties"].get("sample") for f in features):
        notice = Html(
            '<p class="sample">示例数据：部分要素为示例（sample），位置或服务内容仅作演示，'
            "请勿作为实际办事依据。 Sample data: some features are illustrative.</p>"
        )
    names = [
        n
        for n in ("id", "name", "kind", "address", "town_code", "opening_hours", "status")
        if n in layer.properties
    ]
    head = join([html("<th>{}</th>", layer.properties[n].zh) for n in names])
    rows = join(
        [
            html(
                "<tr>{}</tr>",
                join([html("<td>{}</td>", f["properties"].get(n) or "") for n in names]),
            )
            for f in features
        ]
    )
    more = _links([link for link in body.get("links", []) if link["rel"] in ("next", "prev")])
    return html("{}<table><tr>{}</tr>{}</table>{}", notice, head, rows, more)

"""Plain HTML views of the OGC resources, for browsers (the web map lives elsewhere)."""

from __future__ import annotations

from html import escape
from typing import Any

import orjson
from fastapi.responses import Response

from geo_service.api.media import MediaType
from geo_service.sources.catalog import Layer

__all__ = ["collections", "items", "json_block", "landing", "page"]

_STYLE = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC",sans-serif;margin:0 auto;max-width:60rem;
padding:1rem;line-height:1.5}table{border-collapse:collapse;width:100%}
td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}
.sample{background:#fff3cd;border:1px solid #e0b000;padding:.5rem;margin:.5rem 0}
a{color:#0b57d0}pre{background:#f6f6f6;padding:.5rem;overflow:auto}
"""


def page(title: str, body: str) -> Response:
    text = (
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return Response(text, media_type=MediaType.html)


def json_block(body: Any) -> str:
    return f"<pre>{escape(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())}</pre>"


def _links(links: list[dict[str, str]]) -> str:
    rows = "".join(
        f'<li><a href="{escape(link["href"])}">{escape(link["title"])}</a> '
        f"({escape(link['rel'])})</li>"
        for link in links
    )
    return f"<ul>{rows}</ul>"


def landing(body: dict[str, Any]) -> str:
    return f"<p>{escape(body['description'])}</p>{_links(body['links'])}"


def collections(body: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{escape(c['id'])}</td><td>{escape(c['title'])}<br><small>"
        f"{escape(c['description'])}</small></td><td>{c['numberOfFeatures']}</td>"
        f'<td><a href="{escape(c["links"][2]["href"])}">HTML</a> · '
        f'<a href="{escape(c["links"][1]["href"])}">GeoJSON</a></td></tr>'
        for c in body["collections"]
    )
    return (
        "<table><tr><th>id</th><th>图层 Layer</th><th>要素数 Features</th><th></th></tr>"
        f"{rows}</table>"
    )


def items(layer: Layer, body: dict[str, Any]) -> str:
    features = body["features"]
    notice = ""
    if any(f["properties"].get("sample") for f in features):
        notice = (
            '<p class="sample">示例数据：部分要素为示例（sample），位置或服务内容仅作演示，'
            "请勿作为实际办事依据。 Sample data: some features are illustrative.</p>"
        )
    names = [
        n
        for n in ("id", "name", "kind", "address", "town_code", "opening_hours", "status")
        if n in layer.properties
    ]
    head = "".join(f"<th>{escape(layer.properties[n].zh)}</th>" for n in names)
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{escape(str(f['properties'].get(n) or ''))}</td>" for n in names)
        + "</tr>"
        for f in features
    )
    more = _links([link for link in body.get("links", []) if link["rel"] in ("next", "prev")])
    return f"{notice}<table><tr>{head}</tr>{rows}</table>{more}"

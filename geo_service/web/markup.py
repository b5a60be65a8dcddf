"""Putting text from the store or a request into a page, inert: the one module
that does it for every page the service makes.

Three ways in, each safe by construction, so a new call site has no unsafe
way to choose:

- **data for a page's script** goes in a ``<script type="application/json">``
  block (``json_script``); the page's own script reads it with ``JSON.parse``
  and builds the DOM with text nodes and attribute values. Folium is given no
  data text: its tooltips and popups land in JavaScript template literals,
  where HTML escaping protects nothing.
- **server-made HTML** (the API's plain pages) is written with ``html()``,
  which escapes every value unless it is already ``Html``; a link from data
  passes ``safe_href`` (http, https and relative URLs only).
- **every page** ends in ``finish_page``: a Content-Security-Policy ``<meta>``
  that lets run only the page's own scripts (by their SHA-256), so even text
  that reached the page as markup could not run. A ``<meta>`` rather than a
  header, so the files written by the CLI (opened from disk) carry it too.
"""

from __future__ import annotations

import base64
import hashlib
import re
from html import escape
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = ["Html", "finish_page", "html", "join", "json_script", "read_json_script", "safe_href"]


def _json_text(value: Any) -> str:
    # With <, > and & as JSON escapes, no text in the data ("</script>", or
    # "<!--<script>", which would swallow the real end tag) can change how the
    # HTML parser reads the block; U+2028/2029 are escaped too, for readers
    # that take the text as a JavaScript literal. JSON.parse gets the same value.
    return (
        orjson.dumps(value)
        .decode()
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def json_script(element_id: str, value: Any) -> str:
    """``value`` as a JSON block a page's script reads with
    ``JSON.parse(document.getElementById(element_id).textContent)``.

    >>> json_script("d", {"name": "</script>"})
    '<script type="application/json" id="d">{"name":"\\\\u003c/script\\\\u003e"}</script>'
    """
    if not re.fullmatch(r"[A-Za-z][\w-]*", element_id):
        raise ValueError(f"not an element id: {element_id!r}")
    return f'<script type="application/json" id="{element_id}">{_json_text(value)}</script>'


def read_json_script(page: str, element_id: str) -> Any:
    """What a page's script gets from ``json_script(element_id, ...)``."""
    found = re.search(
        rf'<script type="application/json" id="{re.escape(element_id)}">(.*?)</script>',
        page,
        re.S,
    )
    if found is None:
        raise LookupError(f"the page has no JSON block {element_id!r}")
    return orjson.loads(found.group(1))


class Html(str):
    """Markup that is safe as it is: made by ``html()`` or a constant."""

    __slots__ = ()


def html(template: str, *values: Any, **named: Any) -> Html:
    """``template`` (a constant) with every value escaped for HTML text and
    quoted attribute values, except values that are ``Html`` already.

    >>> html('<a title="{}">{}</a>', '" onclick="x', Html("<b>ok</b>"))
    '<a title="&quot; onclick=&quot;x"><b>ok</b></a>'
    """

    def inert(value: Any) -> str:
        return value if isinstance(value, Html) else escape(str(value), quote=True)

    return Html(
        template.format(*(inert(v) for v in values), **{key: inert(v) for key, v in named.items()})
    )


def join(parts: list[Html], separator: str = "") -> Html:
    """``Html`` parts joined (their text is already safe)."""
    if not all(isinstance(part, Html) for part in parts):
        raise TypeError("join() takes Html parts only: build them with html()")
    return Html(separator.join(parts))


#: Schemes a link built from data may have; anything else is no link.
LINK_SCHEMES = frozenset({"http", "https"})


def safe_href(url: str) -> str:
    """``url`` when it is relative or http(s), else ``"#"`` (javascript:,
    data: and any other scheme never become a link)."""
    text = str(url).strip()
    if any(ord(c) < 0x20 for c in text):
        return "#"
    scheme = urlsplit(text).scheme.lower()
    return text if scheme in LINK_SCHEMES or (not scheme and not text.startswith("//")) else "#"


# An inline script element: the parser ends it at the first "</script" (JSON
# blocks escape "<", so data never holds one).
_INLINE_SCRIPT = re.compile(r"<script(?P<attrs>\s[^>]*)?>(?P<body>.*?)</script\s*>", re.S | re.I)


def _script_hashes(page: str) -> list[str]:
    hashes = []
    for match in _INLINE_SCRIPT.finditer(page):
        attrs = match.group("attrs") or ""
        if re.search(r"\bsrc\s*=", attrs) or "application/json" in attrs:
            continue  # fetched from 'self', or data that never runs
        # The parser turns CR LF and lone CR into LF before the browser hashes.
        body = match.group("body").replace("\r\n", "\n").replace("\r", "\n")
        digest = hashlib.sha256(body.encode()).digest()
        hashes.append(f"'sha256-{base64.b64encode(digest).decode()}'")
    return sorted(set(hashes))


def finish_page(page: str, *, connect: bool = False, images: str = "", forms: bool = False) -> str:
    """The page with ``lang="zh-CN"`` and a Content-Security-Policy that runs
    only its own scripts: those under ``static/`` and its inline ones as they
    are now (by hash). ``connect``: the page may ask its own service
    (``fetch``); ``images``: sources of images besides the page and data:
    URIs (e.g. ``https:`` for map tiles); ``forms``: the page's forms may
    post to its own service (the office console's)."""
    # 'unsafe-eval': the pages' scripts never evaluate text (a test keeps it
    # so), while browser tests evaluate their expressions in the page.
    scripts = " ".join(["'self'", "'unsafe-eval'", *_script_hashes(page)])
    policy = "; ".join(
        [
            "default-src 'none'",
            f"script-src {scripts}",
            # Leaflet positions everything with style attributes.
            "style-src 'self' 'unsafe-inline'",
            f"img-src 'self' data: {images}".strip(),
            "connect-src 'self'" if connect else "connect-src 'none'",
            "base-uri 'none'",
            "form-action 'self'" if forms else "form-action 'none'",
        ]
    )
    if '"' in policy:
        raise ValueError(f"not a policy: {policy!r}")
    meta = f'<meta http-equiv="Content-Security-Policy" content="{escape(policy, quote=False)}">'
    head = re.search(r"<head[^>]*>", page, re.I)
    if head is None:
        raise ValueError("the page has no <head>")
    page = page[: head.end()] + meta + page[head.end() :]
    return re.sub(r"<html(?=[\s>])(?![^>]*\blang=)", '<html lang="zh-CN"', page, count=1)

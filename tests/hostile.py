"""The hostile-input corpus: text an attacker (or a careless spreadsheet) puts
in a name, an address or any other field.

``STORED`` is text the service must accept and keep exactly, yet show inert
everywhere: as text on every page (no script runs), literally in every PDF,
neutralised in every CSV/XLSX cell. ``REFUSED`` is text no write path may
store (control characters): every one of them is a clear 400 or a row error.

Each stored string carries a marker (``HOSTILE-n``) so a test can find it
again in an output and check it arrived whole.
"""

from __future__ import annotations

__all__ = ["DEEP_JSON", "MARKER", "REFUSED", "STORED", "marked"]

MARKER = "HOSTILE"

#: (what it attacks, the text); each becomes "HOSTILE-<n> <text>" via ``marked``.
_STORED_RAW: list[tuple[str, str]] = [
    ("html element", "<script>window.__pwned=1</script>"),
    ("closing script", "</script><script>window.__pwned=1</script>"),
    ("event handler", '<img src=x onerror="window.__pwned=1">'),
    ("svg", "<svg onload=window.__pwned=1>"),
    ("attribute break", '" onmouseover="window.__pwned=1" x="'),
    ("single-quote attribute", "' autofocus onfocus='window.__pwned=1"),
    ("template literal", "${window.__pwned=1}"),
    ("backtick", "`;window.__pwned=1;//"),
    ("javascript url", "javascript:window.__pwned=1"),
    ("data url", "data:text/html,<script>window.__pwned=1</script>"),
    ("formula =", '=HYPERLINK("http://example.invalid","点我")'),
    ("formula +", "+1+1"),
    ("formula -", "-2+3"),
    ("formula @", "@SUM(A1:A2)"),
    ("TeX", r"$\frac{1}{0}$ and $x^2$"),
    ("lone dollar", "$5 优惠"),
    ("backslash", "C:\\temp\\new"),
    ("RTL override", "\u202eevil.exe\u202c"),
    ("RTL mark", "阿拉伯\u200f文字"),
    ("quotes", "\"'`<>&"),
    ("emoji and CJK", "拥军🎖️服务站"),
    ("json break", '"}]};window.__pwned=1;//'),
    ("css", "</style><style>*{display:none}</style>"),
    # A template literal closed and reopened around an expression: the script
    # stays valid, where "`;...//" only breaks it.
    ("template literal breakout", "x`+(window.__pwned=1)+`y"),
]

STORED: list[tuple[str, str]] = [
    (what, f"{MARKER}-{number} {text}") for number, (what, text) in enumerate(_STORED_RAW)
]

#: Control characters: refused on every write path (NUL breaks PostgreSQL
#: text; the others hide text or drive terminals).
REFUSED: list[tuple[str, str]] = [
    ("NUL", "示例\x00站"),
    ("bell", "示例\x07站"),
    ("escape sequence", "\x1b[31m示例站"),
    ("backspace", "示例\x08站"),
    ("vertical tab", "示例\x0b站"),
    ("C1 control", "示例\x85站"),
    ("DEL", "示例\x7f站"),
]

#: A JSON body nested far deeper than any feature: a clear 400, never a 500.
DEEP_JSON = "[" * 1000 + "]" * 1000


def marked(number: int) -> str:
    """The marker of ``STORED[number]``, to find it in an output."""
    return f"{MARKER}-{number} "

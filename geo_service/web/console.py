"""The office console's pages: sign-in, and the shell other screens fill.

Server-made HTML through ``markup.html`` (every name and town from the store
is escaped), no script, no file from elsewhere; Chinese first, English on
``?lang=en`` for the sign-in page. Forms post only to this service (the CSP's
``form-action 'self'``).
"""

from __future__ import annotations

from typing import Any

from geo_service.web.assets import Asset
from geo_service.web.markup import Html, finish_page, html, join, json_script

__all__ = ["NAV", "PAGES", "console_page", "login_page", "screen_page", "sites_page"]

_NO_HTML = Html("")
_STYLE = Html(
    """
*{box-sizing:border-box}
body{font-family:"Noto Sans CJK SC","Noto Sans SC","Microsoft YaHei",sans-serif;margin:0;
line-height:1.5;color:#1f1f1f;background:#f4f5f7;font-size:16px}
main{max-width:60rem;margin:0 auto;padding:1rem}
main.wide{max-width:none;padding:0}
header.console a.home{color:#fff;text-decoration:none}
nav.console-menu{padding:.4rem .75rem;background:#fff;border-bottom:1px solid #d9dce1}
.card{background:#fff;border:1px solid #d9dce1;border-radius:8px;padding:1.25rem;
max-width:24rem;margin:2rem auto}
h1{font-size:1.4rem;margin:0 0 1rem}
label{display:block;margin:.75rem 0 .25rem;font-weight:600}
input,button,nav a{min-height:44px}
input,button{font-family:inherit}
.service{margin:0 0 .25rem;color:#5f6368;font-size:.9rem}
input{width:100%;font-size:1rem;padding:.6rem;border:1px solid #9aa0a6;border-radius:6px}
button{font-size:1rem;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#b3261e;
color:#fff;cursor:pointer}
form.sign-in button{width:100%;margin-top:1.25rem}
.message{background:#fdecea;border:1px solid #e57373;border-radius:6px;padding:.5rem .75rem;
margin:0 0 .75rem}
.lang{text-align:right;margin:0 0 .5rem;font-size:.9rem}
a{color:#0b57d0}
header.console{background:#b3261e;color:#fff;padding:.5rem 1rem;display:flex;flex-wrap:wrap;
gap:.5rem 1.5rem;align-items:center;justify-content:space-between}
header.console .who{font-size:.95rem}
header.console button{background:#fff;color:#b3261e;padding:.35rem .9rem}
nav ul{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.5rem}
nav a{display:block;padding:.4rem .8rem;background:#fff;border:1px solid #d9dce1;
border-radius:6px;text-decoration:none}
section{background:#fff;border:1px solid #d9dce1;border-radius:8px;padding:1rem;margin:1rem 0}
section h2{font-size:1.1rem;margin:0}
"""
)

#: The console's screens, in menu order: (anchor, Chinese, English). Each is
#: a placeholder until its issue fills it.
NAV = (
    ("sites", "站点", "Sites"),
    ("spreadsheets", "表格导入", "Spreadsheets"),
    ("samples", "示例转正", "Sample to real"),
    ("history", "历史", "History"),
    ("supervision", "督办", "Supervision"),
    ("planning", "规划与打印", "Planning & printing"),
)

_WORDS = {
    "zh": {
        "title": "登录 · 张店区拥军服务资源地图",
        "service": "张店区拥军服务资源地图 · 管理后台",
        "heading": "登录",
        "name": "用户名",
        "password": "密码",
        "submit": "登录",
        "switch": ("English", "en"),
    },
    "en": {
        "title": "Sign in · Zhangdian support-resource map",
        "service": "Zhangdian support-resource map · office console",
        "heading": "Sign in",
        "name": "User name",
        "password": "Password",
        "submit": "Sign in",
        "switch": ("中文", "zh"),
    },
}


def _document(
    lang: str, title: str, body: Html, head: Html = _NO_HTML, *, connect: bool = False
) -> str:
    page = html(
        '<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="same-origin"><link rel="icon" href="data:,">{head}'
        "<title>{title}</title><style>{style}</style></head><body>{body}</body></html>",
        lang="en" if lang == "en" else "zh-CN",
        head=head,
        title=title,
        style=_STYLE,
        body=body,
    )
    return finish_page(page, forms=True, connect=connect)


def login_page(lang: str = "zh", *, message: str | None = None, name: str = "") -> str:
    """The sign-in form; ``message`` (already in the page's language) says
    why the last attempt failed; ``name`` refills the user name."""
    lang = "en" if lang == "en" else "zh"
    words = _WORDS[lang]
    switch_label, switch_lang = words["switch"]
    notice = html('<p class="message" role="alert">{}</p>', message) if message else Html("")
    body = html(
        '<main><div class="card"><p class="lang"><a href="/admin/login?lang={switch_lang}" '
        'hreflang="{switch_lang}">{switch_label}</a></p><p class="service">{service}</p>'
        "<h1>{heading}</h1>{notice}"
        '<form class="sign-in" method="post" action="/admin/login">'
        '<input type="hidden" name="lang" value="{lang}">'
        '<label for="name">{name_label}</label>'
        '<input id="name" name="name" autocomplete="username" autocapitalize="none" '
        'spellcheck="false" required value="{name}">'
        '<label for="password">{password_label}</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        '<button type="submit">{submit}</button></form></div></main>',
        switch_lang=switch_lang,
        switch_label=switch_label,
        service=words["service"],
        heading=words["heading"],
        notice=notice,
        lang=lang,
        name_label=words["name"],
        name=name,
        password_label=words["password"],
        submit=words["submit"],
    )
    return _document(lang, words["title"], body)


def _header(*, name: str, role: str, towns: list[tuple[str, str]], csrf_token: str) -> Html:
    role_text = "管理员 Admin" if role == "admin" else "编辑 Editor"
    if role == "admin":
        scope = Html("全部镇街 All towns")
    else:
        scope = join([html("<span>{} ({})</span> ", town, code) for code, town in towns])
    return html(
        '<header class="console"><strong><a class="home" href="/admin/">'
        "张店区拥军服务资源地图 · 管理后台</a></strong>"
        '<span class="who">当前用户 Signed in: <b id="user-name">{name}</b> · '
        '<span id="user-role">{role}</span> · <span id="user-towns">{scope}</span></span>'
        '<form method="post" action="/admin/logout">'
        '<input type="hidden" name="csrf_token" value="{csrf}">'
        '<button type="submit">退出登录 Sign out</button></form></header>',
        name=name,
        role=role_text,
        scope=scope,
        csrf=csrf_token,
    )


#: Screens that are pages of their own (the others are sections of the shell).
PAGES = {
    "sites": "/admin/sites",
    "spreadsheets": "/admin/spreadsheets",
    "samples": "/admin/samples",
    "history": "/admin/history",
    "supervision": "/admin/supervision",
    "planning": "/admin/planning",
}


def _menu() -> Html:
    return join(
        [
            html('<li><a href="{}">{} {}</a></li>', PAGES.get(a, f"/admin/#{a}"), zh, en)
            for a, zh, en in NAV
        ]
    )


def console_page(*, name: str, role: str, towns: list[tuple[str, str]], csrf_token: str) -> str:
    """The console's shell: who is signed in (name, role, towns as
    ``(code, name)``), the menu, and the sign-out button. ``csrf_token`` is
    in the sign-out form and in ``<meta name="csrf-token">`` for scripts
    that will send it as ``X-CSRF-Token``."""
    sections = join(
        [
            html('<section id="{}"><h2>{} {}</h2><p>建设中 · coming soon</p></section>', a, zh, en)
            for a, zh, en in NAV
            if a not in PAGES
        ]
    )
    body = html(
        '{header}<main><nav aria-label="控制台 Console"><ul>{menu}</ul></nav>{sections}</main>',
        header=_header(name=name, role=role, towns=towns, csrf_token=csrf_token),
        menu=_menu(),
        sections=sections,
    )
    head = html('<meta name="csrf-token" content="{}">', csrf_token)
    return _document("zh", "管理后台 · 张店区拥军服务资源地图", body, head, connect=True)


def screen_page(
    *,
    title: str,
    scripts: list[Asset],
    styles: list[Asset],
    main_class: str,
    lang: str = "zh",
    name: str,
    role: str,
    towns: list[tuple[str, str]],
    csrf_token: str,
    data: dict[str, Any],
) -> str:
    """A console screen: the shell's header and menu, an empty ``<main>``
    that the screen's ``scripts`` (files under ``/static``) build from
    ``data`` (the person, their CSRF token, what the screen needs), read from
    a JSON block: no value from the store is ever markup."""

    def tags(template: str, assets: list[Asset]) -> Html:
        return join([html(template, a.folder, a.name) for a in assets])

    body = html(
        '{header}<nav class="console-menu" aria-label="控制台 Console"><ul>{menu}</ul></nav>'
        '<main id="console-main" class="{main_class}"></main>{data}{scripts}',
        header=_header(name=name, role=role, towns=towns, csrf_token=csrf_token),
        menu=_menu(),
        main_class=main_class,
        data=Html(json_script("console-data", data)),
        scripts=tags('<script src="/static/{}/{}"></script>', scripts),
    )
    head = html(
        '<meta name="csrf-token" content="{}">{}',
        csrf_token,
        tags('<link rel="stylesheet" href="/static/{}/{}">', styles),
    )
    return _document("en" if lang == "en" else "zh", title, body, head, connect=True)


def sites_page(**person: Any) -> str:
    """The Sites screen: a map, filters, a table and a form that
    ``static/console-sites.js`` builds from the catalog as a form schema."""
    return screen_page(
        title="站点 · 管理后台",
        scripts=[
            Asset("leaflet", "leaflet.js"),
            Asset("app", "console-common.js"),
            Asset("app", "console-sites.js"),
        ],
        styles=[Asset("leaflet", "leaflet.css"), Asset("app", "console.css")],
        main_class="wide",
        **person,
    )

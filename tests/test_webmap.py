"""The web map without a browser: the style file, the page's assets, its routes."""

from __future__ import annotations

import datetime as dt
import json
import re
from urllib.parse import urlparse

import pytest

from geo_service.errors import StyleError
from geo_service.sources.style import default_style_file, load_style
from geo_service.web.page import Tiles, build_page

# Attributes that make a browser fetch something when the page loads.
_FETCHING = re.compile(r'<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)="([^"]+)"', re.I)


@pytest.fixture(scope="module")
def style(catalog):
    return load_style(default_style_file(), catalog)


def test_the_shipped_style_covers_every_facility_layer_and_kind(style, catalog):
    for layer in catalog.facility_layers:
        assert set(style.kinds[layer.id]) == set(layer.kinds)
    config = style.config(catalog)
    assert [layer["id"] for layer in config["layers"]] == [
        layer.id for layer in catalog.facility_layers
    ]
    pharmacy = next(k for k in config["layers"][2]["kinds"] if k["id"] == "partner_pharmacy")
    assert pharmacy == {
        "id": "partner_pharmacy",
        "zh": "拥军药店",
        "en": "Partner pharmacy",
        "colour": "#1f6fb2",  # the layer's colour, inherited
        "glyph": "药",  # the kind's own glyph
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("#1e8449", "green"), "is not a colour"),
        (('glyph = "银"', 'glyph = "银行"'), "exactly one character"),
        (("[layers.memorials]", "[layers.memorial]"), "no such facility layer"),
        (("hospital = {", "hospitel = {"), "no such kind"),
        (("zoom = 12", "zoom = 40"), "map.zoom"),
        (("vector_tiles_above = 5000", "vector_tiles_above = -1"), "map.vector_tiles_above"),
        (("vector_tiles_above = 5000", 'vector_tiles_above = "5k"'), "map.vector_tiles_above"),
        (("[map]", "[map"), "not valid TOML"),
    ],
)
def test_a_broken_style_is_refused_with_the_reason(tmp_path, catalog, edit, message):
    text = default_style_file().read_text(encoding="utf-8")
    assert edit[0] in text
    broken = tmp_path / "style.toml"
    broken.write_text(text.replace(edit[0], edit[1], 1), encoding="utf-8")
    with pytest.raises(StyleError, match=message):
        load_style(broken, catalog)


def test_a_missing_layer_style_is_named(tmp_path, catalog):
    text = default_style_file().read_text(encoding="utf-8")
    cut = text[: text.index("[layers.education]")]
    broken = tmp_path / "style.toml"
    broken.write_text(cut, encoding="utf-8")
    with pytest.raises(StyleError, match=r"layers\.education: missing"):
        load_style(broken, catalog)


def test_the_vector_tile_threshold_comes_from_the_style(tmp_path, catalog, style):
    assert style.config(catalog)["vectorTilesAbove"] == 5000  # the shipped default
    text = default_style_file().read_text(encoding="utf-8")
    edited = tmp_path / "style.toml"
    edited.write_text(text.replace("vector_tiles_above = 5000", "vector_tiles_above = 20"))
    assert load_style(edited, catalog).config(catalog)["vectorTilesAbove"] == 20
    # An older style file without the line keeps the default.
    edited.write_text(text.replace("vector_tiles_above = 5000", ""))
    assert load_style(edited, catalog).vector_tiles_above == 5000


def test_the_served_page_fetches_only_from_the_service(catalog, style):
    html = build_page(catalog, style)
    fetched = _FETCHING.findall(html)
    assert fetched, "the page links its scripts"
    outside = [url for url in fetched if re.match(r"^(https?:)?//", url)]
    assert outside == []
    assert "static/leaflet/leaflet.js" in fetched
    assert "static/markercluster/leaflet.markercluster.js" in fetched
    # The tile decoder is the project's own file, loaded before the page script.
    assert fetched.index("static/app/vectortiles.js") < fetched.index("static/app/app.js")
    assert 'lang="zh-CN"' in html


def test_the_standalone_page_inlines_everything(catalog, style):
    data = {"layers": {}, "exportedAt": "2026-11-29T10:00+08:00", "openState": {}}
    html = build_page(catalog, style, data=data)
    assert _FETCHING.findall(html) == ["data:,"]  # only the empty favicon
    assert "L.MarkerClusterGroup" in html and "GeoServiceMap" in html
    assert "GeoServiceTiles" in html  # inlined too, though the file never asks for tiles
    assert 'id="gs-data"' in html


@pytest.mark.parametrize(
    "name", ["</script><script>alert(1)</script>", "<!--<script>x", "a & b > c", "\\</"]
)
def test_data_cannot_change_how_the_page_reads_its_script(catalog, style, name):
    data = {"layers": {"x": {"name": name}}, "openState": {}}
    html = build_page(catalog, style, data=data)
    block = re.search(r'<script type="application/json" id="gs-data">(.*?)</script>', html, re.S)
    assert "<" not in block.group(1) and ">" not in block.group(1)
    assert json.loads(block.group(1)) == data  # what JSON.parse will see


def test_tianditu_without_a_key_is_a_clear_error(catalog, style):
    with pytest.raises(Exception, match="GEO_SERVICE_TIANDITU_KEY"):
        build_page(catalog, style, tiles=Tiles.tianditu)


def test_a_browser_at_the_root_gets_the_map_and_api_clients_get_json(client):
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 200 and "GeoServiceMap.start" in page.text
    assert client.get("/map").text == page.text
    landing = client.get("/?f=html")
    assert "GeoServiceMap" not in landing.text and "collections" in landing.text
    assert "Accept" in page.headers["vary"].split(", ")
    answer = client.get("/", headers={"Accept": "application/json"})
    assert "Accept" in answer.headers["vary"].split(", ")
    body = answer.json()
    assert {
        "href": "/map",
        "rel": "related",
        "type": "text/html",
        "title": "Web map 地图",
    } in body["links"]


def test_leaflet_and_the_app_are_served_from_installed_files(client):
    for path in (
        "/static/leaflet/leaflet.js",
        "/static/leaflet/leaflet.css",
        "/static/markercluster/leaflet.markercluster.js",
        "/static/app/app.js",
        "/static/app/vectortiles.js",
        "/static/app/app.css",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert len(response.content) > 1000, path
    assert client.get("/static/app/../../../pyproject.toml").status_code == 404


def test_open_state_answers_for_every_site(client, catalog):
    body = client.get("/open-state").json()
    total = sum(
        client.get(f"/collections/{layer.id}/items", params={"limit": 1}).json()["numberMatched"]
        for layer in catalog.facility_layers
    )
    assert len(body["sites"]) == total
    assert set(body["sites"].values()) <= {"open", "closed", "unknown"}
    assert "unknown" in body["sites"].values()  # sites without hours say so


def test_open_state_for_some_layers_or_one_site(client):
    every = client.get("/open-state").json()["sites"]
    some = client.get("/open-state", params={"layers": "memorials,education"}).json()["sites"]
    assert some == {k: v for k, v in every.items() if k.split("/")[0] in {"memorials", "education"}}
    assert some
    key = next(k for k in every if k.startswith("stations/"))
    one = client.get("/open-state", params={"layers": "stations", "id": key.split("/", 1)[1]})
    assert one.json()["sites"] == {key: every[key]}
    for params, named in (
        ({"layers": "towns"}, "layers"),  # not a facility layer: it has no hours
        ({"layers": "nope"}, "layers"),
        ({"id": "st-post-01"}, "id"),  # which layer?
        ({"layers": "stations,medical", "id": "st-post-01"}, "id"),
        ({"layer": "stations"}, "layer"),
    ):
        response = client.get("/open-state", params=params)
        assert response.status_code == 400, params
        assert named in response.json()["detail"], params


@pytest.mark.parametrize(
    ("hours", "at", "opens"),
    [
        ("Mo-Su 08:00-17:30", "2026-12-05 06:47", "2026-12-05 08:00"),  # later today
        ("Mo-Su 08:00-17:30", "2026-12-05 18:00", "2026-12-06 08:00"),  # tomorrow
        ("Mo-Fr 09:00-17:00", "2026-12-05 10:00", "2026-12-07 09:00"),  # Saturday -> Monday
        ("Mo-Fr 08:30-12:00,14:00-17:30", "2026-12-04 12:30", "2026-12-04 14:00"),  # lunch
        ("Tu-Su 09:00-17:00; Mo off", "2026-12-07 10:00", "2026-12-08 09:00"),
        ("Sa 09:00-11:30", "2026-12-05 12:00", "2026-12-12 09:00"),  # a week on
        ("24/7", "2026-12-05 03:00", None),  # never closed
    ],
)
def test_a_closed_sites_next_opening(hours, at, opens):
    from geo_service.web.page import next_opening

    when = next_opening(hours, dt.datetime.fromisoformat(at))
    assert when == (opens and dt.datetime.fromisoformat(opens))


def test_open_state_says_when_closed_sites_open_and_how_their_hours_read(client):
    body = client.get("/open-state").json()
    assert set(body) == {"at", "sites", "opens", "hours"}
    assert body["hours"]["Mo-Su 08:00-17:30"] == {
        "zh": "每天 08:00–17:30",
        "en": "Daily 08:00–17:30",
    }
    for key, when in body["opens"].items():
        assert body["sites"][key] == "closed"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d", when)
        assert body["at"][:16] < when
    one = client.get("/open-state", params={"layers": "stations", "id": "st-district-centre"})
    assert set(one.json()["hours"]) == {"Mo-Fr 09:00-12:00,13:00-17:00"}


def _image_sources(html: str) -> list[str]:
    policy = re.search(r"img-src ([^;\"]*)", html)
    assert policy, "the page states an image policy"
    return policy.group(1).split()


@pytest.mark.parametrize(
    ("tiles", "hosts"),
    [
        (Tiles.none, set()),
        (Tiles.osm, {"tile.openstreetmap.org"}),
        (Tiles.amap, {f"webrd0{n}.is.autonavi.com" for n in "1234"}),
        (Tiles.tianditu, {f"t{n}.tianditu.gov.cn" for n in "01234567"}),
    ],
)
def test_the_page_loads_images_only_from_the_chosen_tiles_hosts(catalog, style, tiles, hosts):
    html = build_page(catalog, style, tiles=tiles, tianditu_key="k3y")
    sources = _image_sources(html)
    assert sources[:2] == ["'self'", "data:"]
    assert {urlparse(s).hostname for s in sources[2:]} == hosts
    assert all(s.startswith("https://") for s in sources[2:])
    # Each tile layer is the provider's own template, with its attribution.
    for provider in tiles.providers:
        assert json.dumps(provider.attribution) in html  # as folium writes it
    if tiles == Tiles.tianditu:
        assert html.count("tk=k3y") == 2  # streets and their Chinese labels

"""The console's Sites screen in Debian's Chromium against a real server, on
both stores: a person adds a site by clicking the map and from an address,
moves one by dragging it, sees a field's problem in Chinese beside it, meets
"someone changed this site" on an ETag conflict, and a town editor never
sees or changes another town's sites. Screenshots at 1280×800 and 360×740."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import shapely

from geo_service.store import AuditQuery
from tests.conftest import ROOT, ConsoleOffice, console_office, sign_in

pytestmark = pytest.mark.server

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
MASHANG = "370303009"  # 马尚街道
FANGZHEN_SITE = "st-town-fangzhen"
PEOPLE = {"区办公室": ("admin", []), "马尚编辑": ("editor", [MASHANG])}


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def office(request, tmp_path_factory) -> Iterator[ConsoleOffice]:
    with console_office(request.param, tmp_path_factory.mktemp("console-sites"), PEOPLE) as shared:
        yield shared


@pytest.fixture
def sites_page(browser, office) -> Iterator:
    contexts = []

    def open_as(name: str, width: int = 1280, height: int = 800):
        context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        sign_in(page, office.base, name, office.passwords[name])
        page.goto(office.base + "/admin/sites")
        page.wait_for_selector("#sites-table tbody tr")
        return page

    yield open_as
    for context in contexts:
        context.close()


def _rows(page) -> list[str]:
    return page.locator("#sites-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.site)"
    )


def _wait_for_status(page, words: str) -> None:
    page.wait_for_function(
        "words => document.getElementById('sites-status').textContent.includes(words)", arg=words
    )


def _grab_marker(page, site_id: str, name: str) -> tuple[float, float]:
    """Open a site (its marker becomes draggable) and where to take hold of
    its marker, once the map has finished panning to it."""
    page.locator(f'#sites-table button[data-site="{site_id}"]').click()
    page.wait_for_selector(".leaflet-marker-draggable")
    page.wait_for_timeout(600)  # Leaflet's pan animation (0.25 s) has ended
    box = page.locator(f'.leaflet-marker-icon[title="{name}"]').bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] - 6


def test_an_admin_adds_a_site_by_clicking_the_map(office, sites_page):
    page = sites_page("区办公室")
    before = set(_rows(page))
    assert len(before) == 25  # every station: an admin keeps all towns
    page.locator("#add-site").click()
    assert "点击新站点的位置" in page.locator("#add-hint").inner_text()
    box = page.locator("#sites-map").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
    page.wait_for_function("document.getElementById('site-town').textContent.includes('所在镇街')")
    town_line = page.locator("#site-town").inner_text()
    page.locator("#field-name").fill("马尚测试驿站")
    page.locator("#field-address").fill("张店区测试路1号")
    page.locator("#field-kind").select_option("support_post")
    page.locator("#field-opening_hours").fill("周一至周五 9:00-17:00")
    page.locator("#site-save").click()
    _wait_for_status(page, "已保存")
    added = set(_rows(page)) - before
    assert len(added) == 1
    store = office.store()
    site = store.get("stations", added.pop())
    names = {t.id: t.properties["name"] for t in store.all_features("towns")}
    # The town is the one the page showed while placing it, decided by the position.
    assert names[site.properties["town_code"]] in town_line
    assert site.properties["name"] == "马尚测试驿站"
    assert site.properties["opening_hours"] == "Mo-Fr 09:00-17:00"
    assert site.properties["position_quality"] == "approximate"  # a click is no survey
    assert site.properties["sample"] is False
    records, _ = store.audit_log(AuditQuery(feature_id=site.id), newest_first=True)
    assert records[0]["actor"] == "user:区办公室" and records[0]["action"] == "create"
    store.close()
    assert page.errors == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "console-sites-desktop.png"))


def test_a_problem_is_shown_in_chinese_beside_its_field(office, sites_page):
    page = sites_page("马尚编辑")
    first = _rows(page)[0]
    page.locator(f'#sites-table button[data-site="{first}"]').click()
    page.locator("#field-phone").fill("不是电话")
    page.locator("#site-save").click()
    error = page.locator("#field-phone-error")
    error.wait_for()
    page.wait_for_function("document.getElementById('field-phone-error').textContent.length > 0")
    assert "电话号码格式不对" in error.inner_text()
    assert "请改正" in page.locator("#form-message").inner_text()
    store = office.store()
    assert store.get("stations", first).properties["phone"] != "不是电话"
    store.close()


def test_a_town_editor_sees_and_changes_only_their_towns_sites(office, sites_page):
    page = sites_page("马尚编辑")
    store = office.store()
    towns = {s.id: s.properties["town_code"] for s in store.all_features("stations")}
    store.close()
    shown = _rows(page)
    assert shown and all(towns[s] == MASHANG for s in shown)
    assert sorted(shown) == sorted(s for s, t in towns.items() if t == MASHANG)
    # The page's own requests: the data endpoint holds nothing else, and a
    # change to another town's site is refused by the service.
    answer = page.evaluate(
        """async ([site]) => {
            const data = await (await fetch('/admin/api/sites?layer=stations')).json();
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const item = await fetch('/collections/stations/items/' + site);
            const body = await item.json();
            body.properties.phone = '0533-1234567';
            const put = await fetch('/admin/api/collections/stations/items/' + site, {
                method: 'PUT', body: JSON.stringify(body),
                headers: {'Content-Type': 'application/geo+json', 'X-CSRF-Token': csrf,
                          'If-Match': item.headers.get('ETag')}});
            return {towns: data.features.map(f => f.properties.town_code), status: put.status};
        }""",
        [FANGZHEN_SITE],
    )
    assert set(answer["towns"]) == {MASHANG}
    assert answer["status"] == 403
    # The town filter offers the editor's towns only.
    options = page.locator("#filter-town option").all_inner_texts()
    assert options[1:] == ["马尚街道"]


def test_dragging_a_site_moves_it_within_the_town(office, sites_page):
    page = sites_page("马尚编辑")
    store = office.store()
    site_id = _rows(page)[0]
    before = store.get("stations", site_id)
    store.close()
    x, y = _grab_marker(page, site_id, before.properties["name"])
    page.once("dialog", lambda dialog: dialog.accept())
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 6, y + 4, steps=4)
    page.mouse.move(x + 12, y + 8, steps=4)
    page.mouse.up()
    _wait_for_status(page, "已移动")
    store = office.store()
    after = store.get("stations", site_id)
    records, _ = store.audit_log(AuditQuery(feature_id=site_id), newest_first=True)
    store.close()
    moved = shapely.distance(before.geometry, after.geometry)
    assert moved > 0
    assert after.properties["town_code"] == MASHANG
    assert records[0]["actor"] == "user:马尚编辑"


def test_dragging_a_site_out_of_the_editors_towns_is_refused_on_the_page(office, sites_page):
    page = sites_page("马尚编辑")
    store = office.store()
    site_id = _rows(page)[0]
    before = store.get("stations", site_id)
    store.close()
    x, y = _grab_marker(page, site_id, before.properties["name"])
    # Far up and left: out of 马尚 (the map shows the editor's town filling it).
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x - 400, y - 250, steps=10)
    page.mouse.up()
    page.wait_for_function(
        "/不在您负责的镇街|不在张店区内/.test(document.getElementById('sites-status').textContent)"
    )
    store = office.store()
    assert store.get("stations", site_id).geometry.equals(before.geometry)
    store.close()


def test_an_etag_conflict_shows_both_versions_and_mine_can_win(office, sites_page):
    page = sites_page("马尚编辑")
    site_id = _rows(page)[-1]
    page.locator(f'#sites-table button[data-site="{site_id}"]').click()
    # Someone else saves a new version while the form is open.
    store = office.store()
    current = store.get("stations", site_id)
    theirs = {**current.properties, "phone": "0533-2000001"}
    feature = {
        "type": "Feature",
        "id": site_id,
        "properties": theirs,
        "geometry": shapely.geometry.mapping(current.geometry),
    }
    store.change(
        "stations",
        site_id,
        store.catalog.validate_feature("stations", feature),
        actor="other-office",
        action="update",
    )
    store.close()
    page.locator("#field-phone").fill("0533-2000002")
    page.locator("#site-save").click()
    page.locator("#conflict-title").wait_for()
    assert page.locator("#conflict-title").inner_text() == "有人已修改这个站点"
    row = page.locator('#conflict-table tr[data-field="phone"]').inner_text()
    assert "0533-2000001" in row and "0533-2000002" in row
    page.locator("#keep-mine").click()
    _wait_for_status(page, "已保存")
    store = office.store()
    assert store.get("stations", site_id).properties["phone"] == "0533-2000002"
    store.close()


def test_adding_from_an_address_uses_the_geocoders_candidate(office, sites_page):
    page = sites_page("区办公室")
    page.locator("#add-site").click()
    page.locator("#address-input").fill("淄博市中心医院")
    page.locator("#address-find").click()
    candidate = page.locator("#address-candidates button.candidate").first
    candidate.wait_for()
    assert "淄博市中心医院" in candidate.inner_text()
    candidate.click()
    page.wait_for_function("document.getElementById('site-town').textContent.includes('公园街道')")
    assert page.locator("#field-position_quality").input_value() == "proxy"


def test_the_sites_screen_on_a_phone(office, sites_page):
    page = sites_page("马尚编辑", 360, 740)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 360 + 1
    map_box = page.locator("#sites-map").bounding_box()
    assert map_box["width"] <= 360 and map_box["height"] >= 250
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "console-sites-phone.png"))
    first = _rows(page)[0]
    page.locator(f'#sites-table button[data-site="{first}"]').click()
    save = page.locator("#site-save")
    save.scroll_into_view_if_needed()
    assert save.is_visible()
    # Every field of the form fits the phone's width.
    for field in page.locator("#site-form input, #site-form select").all():
        box = field.bounding_box()
        assert box is None or box["x"] + box["width"] <= 360 + 1
    assert page.errors == []

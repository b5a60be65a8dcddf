"""The console's History, Supervision and Planning & printing screens in
Debian's Chromium against a real server, on both stores: a change shows in a
site's history with its fields and who made it, and a version restored from
the page is in the store, audited in the person's name; suspending 马尚's only
town station shows its item not met, and met as of the day before; the
supervision and coverage workbooks download; a small coverage run shows
percentages and a suggested site on the map; one town's PDF prints as a job.
Screenshots at 1280×800 (and the phone's 360×740 checked for fit)."""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import shapely
from openpyxl import load_workbook

from geo_service.store import AuditQuery
from tests.conftest import ROOT, ConsoleOffice, console_office, sign_in

pytestmark = pytest.mark.server

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
MASHANG = "370303009"  # 马尚街道: one town station, st-town-mashang
TOWN_STATION = "st-town-mashang"
HISTORY_SITE = "st-post-04"  # a support post of 马尚: the history tests' own site
FANGZHEN_SITE = "st-town-fangzhen"
PEOPLE = {"区办公室": ("admin", []), "马尚编辑": ("editor", [MASHANG])}


class Office(ConsoleOffice):
    def change(self, site_id: str, actor: str, **properties) -> None:
        """Change a station's properties in the store, as ``actor``."""
        store = self.store()
        try:
            current = store.get("stations", site_id)
            feature = {
                "type": "Feature",
                "id": site_id,
                "properties": {**current.properties, **properties},
                "geometry": shapely.geometry.mapping(current.geometry),
            }
            store.change(
                "stations",
                site_id,
                store.catalog.validate_feature("stations", feature),
                actor=actor,
                action="patch",
            )
        finally:
            store.close()


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def office(request, tmp_path_factory) -> Iterator[Office]:
    folder = tmp_path_factory.mktemp("console-screens")
    with console_office(request.param, folder, PEOPLE) as shared:
        yield Office(**vars(shared))


@pytest.fixture
def open_as(browser, office) -> Iterator:
    contexts = []

    def open_page(name: str, path: str, width: int = 1280, height: int = 800):
        context = browser.new_context(
            viewport={"width": width, "height": height}, locale="zh-CN", accept_downloads=True
        )
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        sign_in(page, office.base, name, office.passwords[name])
        page.goto(office.base + path)
        return page

    yield open_page
    for context in contexts:
        context.close()


def _screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=False)


def _wait_for_text(page, element_id: str, words: str) -> None:
    page.wait_for_function(
        "([id, words]) => document.getElementById(id).textContent.includes(words)",
        arg=[element_id, words],
    )


def _beijing_day(days_back: int = 0) -> str:
    now = dt.datetime.now(dt.UTC) + dt.timedelta(hours=8)
    return (now.date() - dt.timedelta(days=days_back)).isoformat()


# -- History ------------------------------------------------------------------------------


def test_the_history_shows_a_change_with_its_fields_and_who(office, open_as):
    office.change(HISTORY_SITE, "user:马尚编辑", phone="0533-3000001")
    page = open_as("马尚编辑", "/admin/sites")
    page.wait_for_selector("#sites-table tbody tr")
    # The Sites screen's row links to the site's history.
    page.locator(f'#sites-table tr[data-site="{HISTORY_SITE}"] a.history-link').click()
    page.wait_for_selector("#history-list li.version")
    newest = page.locator("#history-list li.version").first
    text = newest.inner_text()
    assert "马尚编辑" in text and "修改" in text and "当前版本" in text
    row = newest.locator('tr[data-field="phone"]')
    assert row.locator("th").inner_text() == "电话"
    assert row.locator("td.after").inner_text() == "0533-3000001"
    assert row.locator("td.before").inner_text() != "0533-3000001"
    # The oldest version is the shipped data; no restore button on the current one.
    assert "初始数据" in page.locator("#history-list li.version").last.inner_text()
    assert newest.locator("button.restore").count() == 0
    assert page.errors == []
    _screenshot(page, "console-history-desktop.png")


def test_a_version_restored_from_the_page_is_stored_in_the_persons_name(office, open_as):
    store = office.store()
    original = store.get("stations", HISTORY_SITE).properties["phone"]
    store.close()
    office.change(HISTORY_SITE, "user:区办公室", phone="0533-3000002")
    page = open_as("马尚编辑", f"/admin/history?layer=stations&id={HISTORY_SITE}")
    page.wait_for_selector("#history-list li.version")
    # The version before the last change: restore it, confirming the question.
    previous = page.locator("#history-list li.version").nth(1)
    page.once("dialog", lambda dialog: dialog.accept())
    previous.locator("button.restore").click()
    _wait_for_text(page, "history-status", "已恢复")
    newest = page.locator("#history-list li.version").first
    assert "恢复版本" in newest.inner_text() and "马尚编辑" in newest.inner_text()
    store = office.store()
    assert store.get("stations", HISTORY_SITE).properties["phone"] == original
    records, _ = store.audit_log(AuditQuery(feature_id=HISTORY_SITE), newest_first=True)
    store.close()
    assert records[0]["actor"] == "user:马尚编辑" and records[0]["action"] == "revert"
    assert page.errors == []


def test_store_text_in_the_history_stays_text(office, open_as):
    hostile = '<img src=x onerror="window.pwned=1">示例'
    office.change("st-support-base", "user:<b>x</b>", name=hostile)
    page = open_as("区办公室", "/admin/history?layer=stations&id=st-support-base")
    page.wait_for_selector("#history-list li.version")
    assert hostile in page.locator("#history-title").inner_text()
    assert "操作人：<b>x</b>" in page.locator("#history-list li.version").first.inner_text()
    assert page.locator("#console-main img").count() == 0
    assert page.evaluate("window.pwned") is None
    assert page.errors == []


def test_an_editor_cannot_read_another_towns_history(office, open_as):
    page = open_as("马尚编辑", f"/admin/history?layer=stations&id={FANGZHEN_SITE}")
    _wait_for_text(page, "history-status", "加载失败")
    assert page.locator("#history-list li").count() == 0


def test_a_stale_etag_is_not_overwritten(office, open_as):
    page = open_as("区办公室", f"/admin/history?layer=stations&id={HISTORY_SITE}")
    page.wait_for_selector("#history-list li.version")
    office.change(HISTORY_SITE, "other-office", phone="0533-3000003")  # meanwhile
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#history-list li.version button.restore").last.click()
    _wait_for_text(page, "history-status", "有人刚修改了这个站点")
    store = office.store()
    assert store.get("stations", HISTORY_SITE).properties["phone"] == "0533-3000003"
    store.close()


# -- Supervision -------------------------------------------------------------------------


def _station_cell(page):
    return page.locator(f'#towns-table tr[data-town="{MASHANG}"] td[data-item="station"]')


def test_supervision_shows_a_suspended_station_and_the_day_before(office, open_as):
    office.change(TOWN_STATION, "user:区办公室", status="suspended")
    try:
        page = open_as("区办公室", "/admin/supervision")
        page.wait_for_selector("#towns-table")
        cell = _station_cell(page)
        assert cell.inner_text().startswith("✗") and "unmet" in cell.get_attribute("class")
        assert "示例" in page.locator("#sample-note").inner_text()  # the shipped data are samples
        _screenshot(page, "console-supervision-desktop.png")
        # As of the day before, and compared with it: met then, and the change listed.
        page.locator("#as-of").fill(_beijing_day(1))
        page.locator("#show").click()
        page.wait_for_function(
            f"""document.querySelector('#towns-table tr[data-town="{MASHANG}"] '
                + 'td[data-item="station"]').textContent.startsWith('✓')"""
        )
        page.locator("#as-of").fill(_beijing_day())
        page.locator("#since").fill(_beijing_day(1))
        page.locator("#show").click()
        page.wait_for_selector(f'#changes li[data-town="{MASHANG}"][data-item="station"]')
        assert "马尚街道" in page.locator("#changes").inner_text()
        # The workbook of what is shown.
        with page.expect_download() as download:
            page.locator("#supervision-xlsx").click()
        book = load_workbook(io.BytesIO(Path(download.value.path()).read_bytes()))
        assert len(book.sheetnames) >= 2
        assert page.errors == []
    finally:
        office.change(TOWN_STATION, "user:区办公室", status="open")


def test_an_editor_sees_only_their_towns_in_supervision(office, open_as):
    page = open_as("马尚编辑", "/admin/supervision")
    page.wait_for_selector("#towns-table")
    towns = page.locator("#towns-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.town)"
    )
    assert towns == [MASHANG]


# -- Planning & printing ---------------------------------------------------------------------


def test_a_small_coverage_run_shows_percentages_and_a_suggested_site(office, open_as):
    page = open_as("区办公室", "/admin/planning")
    page.wait_for_selector("#coverage-form")
    # One layer, one new site: small enough to stay fast.
    for box in page.locator('#coverage-form input[type="checkbox"]').all():
        if box.get_attribute("value") != "stations":
            box.uncheck()
    page.locator("#radius").fill("1000")
    page.locator("#p").fill("1")
    page.locator("#run-coverage").click()
    page.wait_for_selector("#coverage-table tbody tr", timeout=120_000)
    shares = page.locator('#coverage-table td[data-key="population_covered_share"]')
    assert shares.count() == 13
    assert all(text.endswith("%") for text in shares.all_inner_texts())
    # The notes under the table in the screen's language only.
    note = page.locator("#coverage-note").inner_text()
    assert "半径 1000 米；步行距离 = 直线距离 × 1.3" in note and "本报告计入了示例站点" in note
    assert not re.search(r"walking|Sample", note), note
    page.wait_for_selector("#suggested-sites li.suggested", timeout=120_000)
    assert page.locator("#planning-map .leaflet-marker-icon").count() >= 1
    assert "新增覆盖" in page.locator("#suggested-sites li.suggested").first.inner_text()
    page.locator("#coverage-xlsx").wait_for()
    _screenshot(page, "console-planning-desktop.png")
    with page.expect_download() as download:
        page.locator("#coverage-xlsx").click()
    book = load_workbook(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert "选址建议" in book.sheetnames
    assert page.errors == []


def test_one_towns_pdf_prints_as_a_job(office, open_as):
    page = open_as("马尚编辑", "/admin/planning")
    page.locator("#print-target").select_option(MASHANG)
    page.locator("#print-run").click()
    page.wait_for_selector("#print-download", timeout=120_000)
    with page.expect_download() as download:
        page.locator("#print-download").click()
    with open(download.value.path(), "rb") as pdf:
        assert pdf.read(5) == b"%PDF-"
    assert page.errors == []


def test_a_job_under_the_console_needs_the_csrf_token(office, open_as):
    page = open_as("马尚编辑", "/admin/planning")
    status = page.evaluate(
        """async () => (await fetch('/admin/api/processes/print-town/execution', {
            method: 'POST', body: JSON.stringify({inputs: {code: '370303009'}}),
            headers: {'Content-Type': 'application/json', 'Prefer': 'respond-async'}})).status"""
    )
    assert status == 403


@pytest.mark.parametrize(
    "path", ["/admin/history?layer=stations&id=st-post-04", "/admin/supervision", "/admin/planning"]
)
def test_the_screens_fit_a_phone(office, open_as, path):
    page = open_as("马尚编辑", path, 360, 740)
    page.wait_for_selector("#console-main > *")
    page.wait_for_timeout(300)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 360 + 1
    assert page.errors == []

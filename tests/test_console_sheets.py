"""The console's Spreadsheets (表格导入) and Sample-to-real (示例转正) screens
in Debian's Chromium against a real server, on both stores: a town editor
uploads a GBK CSV with Chinese headers, reads the dry run's rows with their
Chinese reasons, confirms, follows the job and finds the site written in
their name; retires a town's samples (gone from the public API and the
Sites screen, audited) and restores one; and never retires another town's.
Screenshots at 1280×800 and 360×740."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest

from geo_service.store import AuditQuery
from tests.conftest import ROOT, ConsoleOffice, console_office, sign_in

pytestmark = pytest.mark.server

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
MASHANG = "370303009"  # 马尚街道
SIBAOSHAN = "370303008"  # 四宝山街道
MASHANG_SAMPLES = {"st-district-centre", "st-post-04", "st-support-base", "st-town-mashang"}
PEOPLE = {"区办公室": ("admin", []), "马尚编辑": ("editor", [MASHANG])}
#: One good row (named like the sample st-post-04), one without a name, one
#: in 四宝山 (outside the editor's towns). GBK, as office spreadsheets save.
GBK_CSV = (
    "名称,类型,地址,经度,纬度,镇街\n"
    "拥军服务驿站（马尚站）,拥军服务驿站,张店区马尚测试路1号,117.9968,36.7972,马尚街道\n"
    ",拥军服务驿站,张店区马尚测试路2号,117.9975,36.7978,马尚街道\n"
    "四宝山测试驿站,拥军服务驿站,张店区四宝山测试路3号,118.0950,36.8395,四宝山街道\n"
)


@pytest.fixture(scope="module", params=["geopackage", "postgis"])
def office(request, tmp_path_factory) -> Iterator[ConsoleOffice]:
    with console_office(request.param, tmp_path_factory.mktemp("console-sheets"), PEOPLE) as shared:
        yield shared


@pytest.fixture
def console(browser, office) -> Iterator:
    contexts = []

    def open_as(
        name: str, path: str, width: int = 1280, height: int = 800, ready: str = "#console-main h1"
    ):
        context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
        contexts.append(context)
        page = context.new_page()
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        sign_in(page, office.base, name, office.passwords[name])
        page.goto(office.base + path)
        page.wait_for_selector(ready)
        return page

    yield open_as
    for context in contexts:
        context.close()


def _screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def _row(page, line: int) -> str:
    return page.locator(f'#report-table tr[data-line="{line}"]').inner_text()


def test_an_editor_imports_a_gbk_csv_through_the_dry_run_and_a_job(office, console, tmp_path):
    sheet = tmp_path / "马尚站点.csv"
    sheet.write_text(GBK_CSV, encoding="gbk")
    page = console("马尚编辑", "/admin/spreadsheets")
    page.locator("#sheet-layer").select_option("stations")
    href = page.locator("#sheet-template").get_attribute("href")
    assert href.endswith("/collections/stations/template.xlsx")
    page.set_input_files("#sheet-file", str(sheet))
    page.wait_for_selector("#report-table tbody tr")
    assert page.locator("#report-table tbody tr").count() == 3
    good, nameless, elsewhere = _row(page, 2), _row(page, 3), _row(page, 4)
    assert "拥军服务驿站（马尚站）" in good and "新增" in good and "st-post-04" in good
    assert "可能与示例站点 st-post-04" in good
    assert "有错误" in nameless and "缺少名称" in nameless
    assert "四宝山街道" in elsewhere and "不在您负责的镇街" in elsewhere
    totals = page.locator("#report-totals").inner_text()
    assert "共 3 行" in totals and "有错误 2" in totals
    assert "示例转正" in page.locator("#report-samples").inner_text()
    store = office.store()
    before = {s.id for s in store.all_features("stations")}
    store.close()
    _screenshot(page, "console-spreadsheets-report.png")
    confirm = page.locator("#sheet-confirm")
    assert confirm.inner_text() == "确认导入 1 行（跳过 2 行有错误的）"
    confirm.click()
    page.wait_for_selector("#job-result")
    assert page.locator("#job-status").inner_text() == "导入完成"
    assert page.locator("#job-progress").evaluate("bar => bar.value") == 100
    assert "新增 1 个" in page.locator("#job-result").inner_text()
    assert page.locator("#to-sites").get_attribute("href") == "/admin/sites"
    store = office.store()
    added = [s for s in store.all_features("stations") if s.id not in before]
    assert len(added) == 1
    site = added[0]
    assert site.properties["name"] == "拥军服务驿站（马尚站）"
    assert site.properties["town_code"] == MASHANG and site.properties["sample"] is False
    records, _ = store.audit_log(AuditQuery(feature_id=site.id), newest_first=True)
    assert records[0]["actor"] == "user:马尚编辑" and records[0]["action"] == "import"
    # Nothing of the refused rows was written.
    assert not [s for s in store.all_features("stations") if "测试驿站" in s.properties["name"]]
    store.close()
    _screenshot(page, "console-spreadsheets-desktop.png")
    assert page.errors == []


def test_a_dropped_file_gets_the_same_dry_run(office, console):
    page = console("区办公室", "/admin/spreadsheets")
    page.locator("#sheet-layer").select_option("stations")
    payload = base64.b64encode(GBK_CSV.encode("gbk")).decode()
    page.evaluate(
        """(payload) => {
            const bytes = Uint8Array.from(atob(payload), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], '拖入.csv', {type: 'text/csv'}));
            const zone = document.getElementById('sheet-drop');
            zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true,
                                                      cancelable: true}));
        }""",
        payload,
    )
    page.wait_for_selector("#report-table tbody tr")
    # An admin keeps every town: only the nameless row is refused.
    assert "有错误 1" in page.locator("#report-totals").inner_text()
    assert "不在您负责的镇街" not in page.locator("#report-table").inner_text()


def _public(office: ConsoleOffice, site_id: str) -> int:
    return httpx.get(f"{office.base}/collections/stations/items/{site_id}", timeout=10).status_code


def test_an_editor_retires_a_towns_samples_and_restores_one(office, console):
    store = office.store()
    # The real post the office has entered: the sample's values, its own name.
    sample = store.get("stations", "st-post-04").properties
    real = store.catalog.validate_feature(
        "stations",
        {
            "type": "Feature",
            "id": "st-real-mashang-post",
            "geometry": {"type": "Point", "coordinates": [117.9966, 36.7969]},
            "properties": {
                **sample,
                "id": "st-real-mashang-post",
                "name": "拥军服务驿站（马尚站）",
                "sample": False,
                "source": "马尚街道办事处",
            },
        },
    )
    store.change("stations", real.id, real, actor="office", action="create", create=True)
    store.close()
    page = console("马尚编辑", "/admin/samples")
    page.wait_for_selector(".sample-group")
    towns = page.locator(".sample-group").evaluate_all("gs => gs.map(g => g.dataset.town)")
    assert towns and set(towns) == {MASHANG}  # an editor is offered their towns only
    group = page.locator(f'.sample-group[data-town="{MASHANG}"][data-layer="stations"]')
    assert "4 个示例站点" in group.inner_text()
    assert "本镇街已有" in group.inner_text()
    post = group.locator('li[data-site="st-post-04"]').inner_text()
    assert "可能对应真实站点" in post and "st-real-mashang-post" in post
    _screenshot(page, "console-samples-desktop.png")
    questions = []

    def accept(dialog):
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    group.locator("button.retire").click()
    page.wait_for_function(
        "document.getElementById('samples-status').textContent.includes('已下线 4 个')"
    )
    assert "马尚街道" in questions[0] and "4 个" in questions[0]
    assert page.locator(f'.sample-group[data-town="{MASHANG}"][data-layer="stations"]').count() == 0
    retired = page.locator("#retired-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.site)"
    )
    assert set(retired) >= MASHANG_SAMPLES
    for site_id in MASHANG_SAMPLES:
        assert _public(office, site_id) == 404
    store = office.store()
    for site_id in MASHANG_SAMPLES:
        records, _ = store.audit_log(AuditQuery(feature_id=site_id), newest_first=True)
        assert records[0]["action"] == "retire" and records[0]["actor"] == "user:马尚编辑"
        assert records[0]["after"] is None
    store.close()
    # The Sites screen no longer lists them.
    sites = console("马尚编辑", "/admin/sites", ready="#sites-table tbody tr")
    shown = sites.locator("#sites-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.site)"
    )
    assert not MASHANG_SAMPLES & set(shown) and "st-real-mashang-post" in shown
    # Restore one: back in the public API, audited in the editor's name.
    page.locator('#retired-table button.restore[data-site="st-post-04"]').click()
    page.wait_for_function(
        "document.getElementById('samples-status').textContent.includes('已恢复')"
    )
    assert _public(office, "st-post-04") == 200
    assert _public(office, "st-town-mashang") == 404
    store = office.store()
    records, _ = store.audit_log(AuditQuery(feature_id="st-post-04"), newest_first=True)
    assert records[0]["action"] == "restore" and records[0]["actor"] == "user:马尚编辑"
    assert store.get("stations", "st-post-04").properties["sample"] is True
    store.close()
    assert page.locator('#retired-table tr[data-site="st-post-04"]').count() == 0
    assert page.errors == [] and sites.errors == []


def test_an_editor_cannot_retire_another_towns_samples(office, console):
    page = console("马尚编辑", "/admin/samples")
    page.wait_for_selector("#sample-groups section, #no-samples")
    assert page.locator(f'.sample-group[data-town="{SIBAOSHAN}"]').count() == 0
    answers = page.evaluate(
        """async (town) => {
            const csrf = document.querySelector('meta[name="csrf-token"]').content;
            const send = (headers) => fetch('/admin/api/samples/retire', {
                method: 'POST', body: JSON.stringify({layer: 'stations', town: town}),
                headers: Object.assign({'Content-Type': 'application/json'}, headers)});
            const refused = await send({'X-CSRF-Token': csrf});
            const noToken = await send({});
            return [refused.status, (await refused.json()).detail, noToken.status];
        }""",
        SIBAOSHAN,
    )
    assert answers[0] == 403 and "四宝山街道" in answers[1]
    assert answers[2] == 403  # no CSRF token: refused before anything
    store = office.store()
    assert store.get("stations", "st-town-sibaoshan").properties["sample"] is True
    store.close()
    assert _public(office, "st-town-sibaoshan") == 200


def test_the_screens_in_english_and_on_a_phone(office, console):
    page = console("马尚编辑", "/admin/spreadsheets?lang=en")
    assert page.locator("#console-main h1").inner_text() == "Spreadsheets"
    assert "Drop an XLSX or CSV" in page.locator("#sheet-drop").inner_text()
    for path, shot in (
        ("/admin/spreadsheets", "console-spreadsheets-phone.png"),
        ("/admin/samples", "console-samples-phone.png"),
    ):
        phone = console("马尚编辑", path, 360, 740)
        phone.wait_for_timeout(300)
        assert phone.evaluate("document.scrollingElement.scrollWidth") <= 360 + 1
        _screenshot(phone, shot)
        assert phone.errors == []
    # The menu leads to both screens.
    menu = page.locator("nav.console-menu a").evaluate_all("links => links.map(a => a.pathname)")
    assert "/admin/spreadsheets" in menu and "/admin/samples" in menu


HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">示例：驿站'


def test_hostile_names_stay_text_on_both_screens(office, console, tmp_path):
    store = office.store()
    sample = store.get("stations", "st-post-10").properties
    hostile = store.catalog.validate_feature(
        "stations",
        {
            "type": "Feature",
            "id": "st-hostile-sample",
            "geometry": {"type": "Point", "coordinates": [118.0655, 36.8415]},
            "properties": {**sample, "id": "st-hostile-sample", "name": HOSTILE_NAME},
        },
    )
    store.change("stations", hostile.id, hostile, actor="office", action="create", create=True)
    store.close()
    page = console("区办公室", "/admin/samples")
    page.wait_for_selector('li[data-site="st-hostile-sample"]')
    assert HOSTILE_NAME in page.locator('li[data-site="st-hostile-sample"]').inner_text()
    assert page.locator("#console-main img").count() == 0
    sheet = tmp_path / "hostile.csv"
    quoted = '"' + HOSTILE_NAME.replace('"', '""') + '"'  # a CSV cell with quotes in it
    sheet.write_text(
        f"名称,类型,地址,经度,纬度\n{quoted},拥军服务驿站,张店区测试路9号,118.0660,36.8420\n",
        encoding="gbk",
    )
    sheets = console("区办公室", "/admin/spreadsheets")
    sheets.set_input_files("#sheet-file", str(sheet))
    sheets.wait_for_selector("#report-table tbody tr")
    assert HOSTILE_NAME in sheets.locator("#report-table").inner_text()
    assert sheets.locator("#console-main img").count() == 0
    assert page.evaluate("window.__pwned") is None and sheets.evaluate("window.__pwned") is None
    assert page.errors == [] and sheets.errors == []

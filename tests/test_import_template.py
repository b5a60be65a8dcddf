"""The import template: a town office downloads it, fills it in and imports it
as it is. Read back with openpyxl: the headers the import reads, drop-downs
that refer to the right lists, the 说明 sheet, safe cells; then filled in and
imported through the real import path on both stores."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from shapely.geometry import box

from geo_service.errors import NotFound
from geo_service.outputs.cells import FORMULA_STARTS, save_workbook
from geo_service.outputs.import_template import (
    CHOICES_SHEET,
    GUIDE_SHEET,
    TEMPLATE_ROWS,
    render_import_template,
)
from geo_service.runtime import TownsCache
from geo_service.services.import_template import NoImportTemplate, template_spec
from geo_service.services.importing import apply_import, plan_import
from geo_service.sources.catalog import Catalog
from geo_service.sources.hours import ACCEPTED_FORMS
from geo_service.sources.importing import RowStatus, load_header_aliases, normalise_header
from geo_service.sources.towns import TownIndex, Towns
from geo_service.store import Store

FACILITY_LAYERS = ["stations", "green_channels", "medical", "memorials", "education"]
#: What the import reads from a facility row (``importing._row_properties``).
READ_BY_THE_IMPORT = {
    "id", "name", "kind", "address", "lon", "lat", "town", "phone", "opening_hours",
    "services", "eligible", "status", "position_quality", "responsible_unit", "source",
}  # fmt: skip


def _towns() -> Towns:
    """Two towns, as the store would hand them."""
    index = TownIndex(
        [
            ("370303001", box(118.0, 36.80, 118.01, 36.81)),
            ("370303002", box(118.01, 36.80, 118.02, 36.81)),
        ]
    )
    return Towns(index, {"370303001": "车站街道", "370303002": "公园街道"}, True)


def _book(catalog: Catalog, layer: str, towns: Towns | None = None) -> Workbook:
    spec = template_spec(catalog, catalog.layer(layer), towns or _towns())
    return load_workbook(io.BytesIO(render_import_template(spec)))


def _list_values(book: Workbook, formula: str) -> list[str]:
    """The values a drop-down offers: the cells of the range its formula names."""
    sheet_name, cells = formula.split("!")
    assert sheet_name.strip("'") == CHOICES_SHEET
    return [row[0].value for row in book[CHOICES_SHEET][cells.replace("$", "")]]


def _drop_downs(book: Workbook) -> dict[str, tuple[str, list[str]]]:
    """Header -> (the cells the validation covers, the values it offers)."""
    sheet = book.worksheets[0]
    headers = {cell.column_letter: cell.value for cell in sheet[1]}
    found = {}
    for validation in sheet.data_validations.dataValidation:
        assert validation.type == "list" and validation.showErrorMessage
        [cells] = str(validation.sqref).split()
        found[headers[cells.split(":")[0].rstrip("0123456789")]] = (
            cells,
            _list_values(book, validation.formula1),
        )
    return found


@pytest.mark.parametrize("layer", FACILITY_LAYERS)
def test_the_headers_are_the_ones_the_import_reads(catalog, layer):
    book = _book(catalog, layer)
    headers = [cell.value for cell in book.worksheets[0][1]]
    aliases = load_header_aliases(catalog.directory / "import_headers.toml")
    properties = [aliases[normalise_header(header)] for header in headers]
    expected = READ_BY_THE_IMPORT | ({"window"} if layer == "green_channels" else set())
    assert sorted(properties) == sorted(expected)
    # Chinese, as offices write them, in the catalog's words where it has them.
    assert headers[:4] == ["编号", "名称", "类型", "地址"]
    assert "所属镇街" in headers and "开放时间" in headers
    assert book.sheetnames == [catalog.layer(layer).zh, GUIDE_SHEET, CHOICES_SHEET]
    assert book[CHOICES_SHEET].sheet_state == "hidden"
    assert book.worksheets[0].max_row == 1  # no data row: the example is in 说明 only


def test_the_drop_downs_offer_the_layers_kinds_the_towns_and_the_value_lists(catalog):
    book = _book(catalog, "green_channels")
    drop_downs = _drop_downs(book)
    assert set(drop_downs) == {"类型", "所属镇街", "状态", "位置精度"}
    kinds = [label.zh for label in catalog.layer("green_channels").kinds.values()]
    assert drop_downs["类型"] == (f"C2:C{TEMPLATE_ROWS + 1}", kinds)
    assert drop_downs["所属镇街"][1] == ["车站街道", "公园街道"]  # by code
    assert drop_downs["状态"][1] == ["正常开放", "筹建中", "暂停服务"]
    assert drop_downs["位置精度"][1] == [
        label.zh for label in catalog.values["position_quality"].values()
    ]
    headers = [cell.value for cell in book.worksheets[0][1]]
    for header, (cells, _) in drop_downs.items():
        letter = book.worksheets[0].cell(row=1, column=headers.index(header) + 1).column_letter
        assert cells == f"{letter}2:{letter}{TEMPLATE_ROWS + 1}"


def test_the_guide_explains_every_column_the_hour_forms_and_shows_an_example(catalog):
    book = _book(catalog, "stations")
    guide = book[GUIDE_SHEET].iter_rows(values_only=True)
    rows = [[value for value in row if value is not None] for row in guide]
    headers = [cell.value for cell in book.worksheets[0][1]]
    explained = {row[0]: row for row in rows if len(row) >= 3 and row[1] in {"必填", "选填"}}
    assert list(explained) == headers
    assert explained["名称"][1] == "必填" and explained["电话"][1] == "选填"
    assert explained["类型"][3] == "、".join(k.zh for k in catalog.layer("stations").kinds.values())
    for written, stored in ACCEPTED_FORMS:
        assert [written, stored] in rows
    assert ["车站街道", "370303001"] in rows and ["公园街道", "370303002"] in rows
    marker = next(i for i, row in enumerate(rows) if row and "导入时不读" in str(row[0]))
    assert rows[marker + 1] == headers
    assert rows[marker + 2][0].startswith("示例：")


def test_a_hostile_town_name_is_offered_inert(catalog):
    towns = _towns()
    towns.names["370303002"] = '=HYPERLINK("http://example.invalid","点我")'
    book = _book(catalog, "stations", towns)
    for sheet in book.worksheets:
        for row in sheet.iter_rows():
            for cell in row:
                assert cell.data_type != "f", (sheet.title, cell.coordinate)
                if isinstance(cell.value, str):
                    assert not cell.value.startswith(FORMULA_STARTS), cell.value
    assert "'=HYPERLINK" in str(_drop_downs(book)["所属镇街"][1])


def test_boundary_layers_have_no_template(catalog):
    with pytest.raises(NoImportTemplate, match="没有表格导入模板") as caught:
        template_spec(catalog, catalog.layer("towns"), _towns())
    assert isinstance(caught.value, NotFound)


# -- filled in and imported on both stores ---------------------------------------------


def _filled(catalog: Catalog, store: Store, path: Path) -> Path:
    """The template of ``stations`` as an office fills it: the 说明 example row
    copied as it is, and a second row chosen from the drop-downs."""
    towns = TownsCache(store).get()
    spec = template_spec(catalog, catalog.layer("stations"), towns)
    book = load_workbook(io.BytesIO(render_import_template(spec)))
    guide = list(book[GUIDE_SHEET].iter_rows(values_only=True))
    data = book.worksheets[0]
    headers = [cell.value for cell in data[1]]
    marker = next(i for i, row in enumerate(guide) if row[0] and "导入时不读" in str(row[0]))
    assert list(guide[marker + 1][: len(headers)]) == headers
    data.append(list(guide[marker + 2][: len(headers)]))
    drop_downs = _drop_downs(book)
    chosen = {
        "名称": "公园街道拥军服务驿站（模板测试）",
        "类型": drop_downs["类型"][1][3],  # 拥军服务驿站
        "地址": "张店区人民西路1号",
        "经度": 118.042742,
        "纬度": 36.810131,
        "所属镇街": "公园街道",
        "开放时间": "周二至周日 上午9:00-下午5:00，周一闭馆",
        "服务对象": "退役军人、军属",
        "状态": drop_downs["状态"][1][1],  # 筹建中
        "位置精度": drop_downs["位置精度"][1][0],  # 实测
    }
    data.append([chosen.get(header) for header in headers])
    save_workbook(book, path)
    return path


def test_a_filled_template_imports_cleanly(tmp_path, store, catalog):
    path = _filled(catalog, store, tmp_path / "服务站点导入模板.xlsx")
    plan = plan_import(path, "stations", catalog, store, actor="test")
    assert [row.status for row in plan.rows] == [RowStatus.ok] * 2, [r.reasons for r in plan.rows]
    written = apply_import(plan, store, actor="test")
    assert len(written["stations"].inserted) == 2
    stored = {f.properties["name"]: f for f in store.all_features("stations")}
    example = stored[f"示例：车站街道{catalog.layer('stations').kinds['district_centre'].zh}"]
    assert example.properties["opening_hours"] == "Mo-Fr 08:30-12:00,14:00-17:30; PH off"
    assert example.properties["town_code"] == "370303001"
    chosen = stored["公园街道拥军服务驿站（模板测试）"].properties
    assert chosen["kind"] == "support_post" and chosen["status"] == "planned"
    assert chosen["position_quality"] == "surveyed"
    assert chosen["town_code"] == "370303002"
    assert chosen["eligible"] == ["veteran", "military_family"]
    assert chosen["opening_hours"] == "Tu-Su 09:00-17:00; Mo off"


# -- the adapters -------------------------------------------------------------------


def test_anyone_downloads_the_template_over_http(client):
    response = client.get("/collections/green_channels/template.xlsx")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    disposition = response.headers["content-disposition"]
    assert 'filename="green_channels-template.xlsx"' in disposition
    assert "filename*=UTF-8''" in disposition
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames[0] == "拥军绿色通道"
    assert len(_drop_downs(book)["所属镇街"][1]) == 13  # the stored towns
    refused = client.get("/collections/towns/template.xlsx")
    assert refused.status_code == 404
    assert refused.headers["content-type"] == "application/problem+json"
    assert "没有表格导入模板" in refused.json()["detail"]
    assert client.get("/collections/nowhere/template.xlsx").status_code == 404


def test_the_cli_writes_the_template(tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "geo_service.cli", "template", *args,
             "--store", str(tmp_path / "cli.gpkg")],
            capture_output=True, text=True, env={"COLUMNS": "120", "PATH": ""},
        )  # fmt: skip

    out = tmp_path / "医疗拥军.xlsx"
    done = run("medical", str(out))
    assert done.returncode == 0, done.stderr
    assert load_workbook(out).sheetnames[0] == "医疗拥军"
    wrong = run("medical", str(tmp_path / "template.csv"))
    assert wrong.returncode == 2 and ".xlsx" in wrong.stderr
    towns = run("towns", str(tmp_path / "towns.xlsx"))
    assert towns.returncode == 2 and "没有表格导入模板" in towns.stderr

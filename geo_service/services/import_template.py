"""The import template of a facility layer: the columns the import reads,
named as ``layers/import_headers.toml`` names them, with drop-downs of the
catalog's values and the stored towns (``outputs.import_template`` draws it).

The template holds no site data: only the catalog's labels and the towns'
names, so anyone may download it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from geo_service.errors import NotFound
from geo_service.outputs.import_template import (
    TemplateColumn,
    TemplateSpec,
    render_import_template,
)
from geo_service.sources.catalog import Catalog, Layer
from geo_service.sources.hours import ACCEPTED_FORMS
from geo_service.sources.importing import header_names
from geo_service.sources.towns import Towns

if TYPE_CHECKING:
    from geo_service.runtime import Runtime

__all__ = ["NoImportTemplate", "import_template", "template_spec"]


class NoImportTemplate(NotFound):
    """Boundary layers are imported from GIS files, not from a spreadsheet."""

    title = "No import template"

    def __init__(self, layer: Layer):
        super().__init__(
            f"{layer.zh}是边界图层，没有表格导入模板：请导入 GeoJSON、GeoPackage 或 Shapefile "
            f"(no spreadsheet template for the boundary layer {layer.id})"
        )


def import_template(rt: Runtime, layer_id: str) -> bytes:
    """The XLSX template of ``layer_id``, with the towns stored now."""
    layer = rt.catalog.layer(layer_id)
    return render_import_template(template_spec(rt.catalog, layer, rt.towns.get()))


def template_spec(catalog: Catalog, layer: Layer, towns: Towns) -> TemplateSpec:
    """What the template of ``layer`` shows: its columns (the headers the
    import reads), their drop-downs and an example row placed in the first town."""
    if not layer.is_facility:
        raise NoImportTemplate(layer)
    header = header_names(catalog.directory / "import_headers.toml")
    codes = sorted(towns.names)
    town_names = tuple(towns.names[code] for code in codes)
    kinds = tuple(label.zh for label in layer.kinds.values())
    services = [label.zh for label in catalog.values["services"].values()]
    eligible = [label.zh for label in catalog.values["eligible"].values()]
    status = catalog.values["status"]
    quality = catalog.values["position_quality"]
    lon, lat = _example_position(towns, codes[0]) if codes else (None, None)

    columns = [
        TemplateColumn(
            header["id"],
            "选填。站点编号：字母、数字、点、下划线或短横线。留空则按名称和位置自动生成，"
            "同一文件再次导入不会重复。",
        ),
        TemplateColumn(
            header["name"],
            "站点的正式名称。",
            required=True,
            example=f"示例：{town_names[0] if town_names else ''}{kinds[0]}",
        ),
        TemplateColumn(
            header["kind"], "从下拉列表选择。", required=True, choices=kinds, example=kinds[0]
        ),
        TemplateColumn(
            header["address"],
            "详细地址，如“张店区人民西路1号”。",
            required=True,
            example="张店区示例路1号",
        ),
        TemplateColumn(
            header["lon"],
            "建议填写。WGS-84（GPS）经度，如 118.04。高德、腾讯地图的坐标请把列名改为"
            "“经度（高德）”，百度地图的改为“经度（百度）”。经纬度都空着时按地址定位，请核对。",
            example=lon,
        ),
        TemplateColumn(
            header["lat"], "建议填写。WGS-84（GPS）纬度，如 36.81；其余同经度。", example=lat
        ),
        TemplateColumn(
            header["town"],
            "选填，从下拉列表选择。位置决定镇街：与位置不符时以位置为准，并在报告中提示。",
            choices=town_names,
            example=town_names[0] if town_names else None,
        ),
        TemplateColumn(
            header["phone"], "固定电话带区号（如 0533-2xxxxxx）或手机号。", example="0533-0000000"
        ),
        TemplateColumn(
            header["opening_hours"],
            "写法见下方“开放时间的写法”，如“周一至周五 9:00-17:00”。",
            example="周一至周五 8:30-12:00，14:00-17:30；节假日休息",
        ),
        TemplateColumn(
            header["services"],
            "可填多项，用顿号“、”隔开；可选值见下方“服务内容的可选值”。",
            example="、".join(services[:2]),
        ),
        TemplateColumn(
            header["eligible"],
            "可填多项，用顿号“、”隔开；留空表示全部优抚对象。可选值见下方“服务对象的可选值”。",
            example="、".join(eligible[:2]),
        ),
    ]
    if "window" in layer.properties:
        columns.append(
            TemplateColumn(header["window"], "服务窗口，如“3号窗口”。", example="3号窗口")
        )
    columns += [
        TemplateColumn(
            header["status"],
            f"从下拉列表选择；留空为“{status['open'].zh}”。",
            choices=tuple(label.zh for label in status.values()),
            example=status["open"].zh,
        ),
        TemplateColumn(
            header["position_quality"],
            f"坐标从哪里来，从下拉列表选择；留空为“{quality['surveyed'].zh}”。",
            choices=tuple(label.zh for label in quality.values()),
            example=quality["address"].zh,
        ),
        TemplateColumn(header["responsible_unit"], "负责这个站点的单位。", example="示例单位"),
        TemplateColumn(header["source"], "数据从哪里来；留空则记为“从某文件导入”。"),
    ]
    notes = [
        f"第一张表“{layer.zh}”从第2行起每行填一个站点，不要改动第1行的列名。"
        "可以增加自己的列，导入时作为附加信息保留。",
        "列名为橙色的必须填写；有下拉箭头的列请从列表中选择。",
        f"填好后导入：命令 geo-service import 文件.xlsx --layer {layer.id}，"
        f"或接口 POST /collections/{layer.id}/import。每一行都会检查，"
        "有问题的行在报告中写明原因；有错误时整个文件不写入。",
    ]
    return TemplateSpec(
        layer_title=layer.zh,
        columns=columns,
        hour_forms=ACCEPTED_FORMS,
        notes=notes,
        value_lists=[("服务内容的可选值", services), ("服务对象的可选值", eligible)],
        towns=[(towns.names[code], code) for code in codes],
    )


def _example_position(towns: Towns, code: str) -> tuple[float, float]:
    """A point inside the town (so the example row imports as it is)."""
    point = towns.index.geometries[towns.index.codes.index(code)].representative_point()
    return round(point.x, 6), round(point.y, 6)

"""An import row's reasons in Chinese, for the office console's report.

The planner (``sources.importing``) and the access rules word their reasons
in English with the Chinese column names beside them; town office staff read
Chinese. Each known wording is matched by a pattern and said again in
Chinese with the row's own values kept; a reason no pattern knows, or one
already in Chinese, is left as it is (never dropped). The English stays in
the report as ``reasons``; this adds ``reasons_zh`` beside it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["reason_zh", "reasons_zh"]

Rewrite = Callable[[re.Match[str]], str]

#: (pattern, Chinese), most specific first. Groups carry the row's values.
_REASONS: list[tuple[re.Pattern[str], str | Rewrite]] = [
    (re.compile(r"^missing name \(名称\)$"), "缺少名称（名称列为空）"),
    (re.compile(r"^missing kind \(类型\)$"), "缺少类型（类型列为空）"),
    (
        re.compile(r"^no coordinates \(经度/纬度\), and the address could not be placed(.*)$"),
        "没有经纬度，地址也无法定位",
    ),
    (re.compile(r"^no coordinates \(经度/纬度\)$"), "没有经纬度（经度/纬度列为空）"),
    (
        re.compile(r"^only one of 经度/纬度 \(longitude/latitude\) is given$"),
        "经度、纬度只填了一个",
    ),
    (re.compile(r"^unparseable coordinates: (.*)$"), lambda m: f"经纬度无法识别：{m[1]}"),
    (re.compile(r"^coordinates look swapped (.*)$"), lambda m: f"经度和纬度似乎填反了 {m[1]}"),
    (re.compile(r"^coordinates out of range: (.*)$"), lambda m: f"经纬度超出范围：{m[1]}"),
    (
        re.compile(r"^coordinates are not finite numbers: (.*)$"),
        lambda m: f"经纬度不是有效数字：{m[1]}",
    ),
    (re.compile(r"^geometry is (\w+); a site must be a point$"), "站点必须是一个点位"),
    (
        re.compile(r"^outside the district: .*\((.*) in WGS-84\)$"),
        lambda m: f"位置不在张店区内（{m[1]}）",
    ),
    (re.compile(r"^unknown town (.*)$"), lambda m: f"无法识别的镇街：{m[1]}"),
    (
        re.compile(r"^unknown kind ('.*?'|\".*?\"); known: (.*)$"),
        lambda m: f"无法识别的类型 {m[1]}，可选：{m[2]}",
    ),
    (
        re.compile(r"^unknown (services|eligible) value (.*)$"),
        lambda m: f"无法识别的{_PROP_ZH[m[1]]}：{m[2]}",
    ),
    (
        re.compile(
            r"^this (?:account|token) may not (?:create a site in|move a site to) (.*), "
            r"outside the towns it may edit$"
        ),
        lambda m: f"{m[1]}不在您负责的镇街，不能导入这一行",
    ),
    (
        re.compile(r"^(\S+) is in (.*), outside the towns (?:this account|this token) may edit$"),
        lambda m: f"{m[1]} 位于{m[2]}，不在您负责的镇街，不能修改",
    ),
    (re.compile(r"^only an admin may change (\w+)$"), "只有管理员可以修改这个图层"),
    (re.compile(r"^id: is required$"), "缺少编号（编号由名称生成，名称为空时无法生成）"),
    (
        re.compile(r"^(\w+): is required$"),
        lambda m: f"缺少{_FIELD_ZH.get(m[1], m[1])}（必填）",
    ),
    (
        re.compile(r"^probable duplicate of line (\d+) \(same address\)$"),
        lambda m: f"可能与第 {m[1]} 行重复（地址相同）",
    ),
    (
        re.compile(r"^id (.*) is already used by line (\d+)$"),
        lambda m: f"编号 {m[1]} 已被第 {m[2]} 行使用",
    ),
    (
        re.compile(r"^phone (\S+) was stored as a number; restored the leading 0$"),
        lambda m: f"电话 {m[1]} 被存成了数字，已补回开头的 0",
    ),
    (
        re.compile(r"^no coordinates: placed from (.*) by the offline geocoder"),
        lambda m: f"没有经纬度：已按地址 {m[1]} 离线定位（请核实位置）",
    ),
    (
        re.compile(r"^town mismatch: declared (\S+)"),
        lambda m: f"填写的镇街 {m[1]} 与位置所在镇街不一致",
    ),
    (
        re.compile(r"^a window \(窗口\) is only kept for green channels"),
        "只有绿色通道保留“窗口”一列，已作为附加列保存",
    ),
    (
        re.compile(r"^(.*): line breaks or tabs in the cell were folded to spaces$"),
        lambda m: f"{m[1]}：单元格中的换行或制表符已改为空格",
    ),
]
_PROP_ZH = {"services": "服务内容", "eligible": "服务对象"}
#: Field names as the template's headers say them (``layers/import_headers.toml``).
_FIELD_ZH = {
    "id": "编号",
    "name": "名称",
    "address": "地址",
    "kind": "类型",
    "phone": "电话",
    "town_code": "所属镇街",
    "opening_hours": "开放时间",
}
_HAN = re.compile(r"[\u4e00-\u9fff]")


def reason_zh(reason: str) -> str:
    """One reason in Chinese; unchanged when it starts in Chinese already or
    no pattern knows it.

    >>> reason_zh("missing name (名称)")
    '缺少名称（名称列为空）'
    >>> reason_zh("this account may not create a site in 四宝山街道 (370303008), "
    ...           "outside the towns it may edit")
    '四宝山街道 (370303008)不在您负责的镇街，不能导入这一行'
    >>> reason_zh("可能与示例站点 st-1（示例：驿站）是同一地点")
    '可能与示例站点 st-1（示例：驿站）是同一地点'
    """
    if _HAN.match(reason):
        return reason  # written in Chinese first already (the sample warning, defaults)
    for pattern, chinese in _REASONS:
        found = pattern.match(reason)
        if found:
            return chinese(found) if callable(chinese) else chinese
    return reason


def reasons_zh(reasons: list[str]) -> list[str]:
    return [reason_zh(reason) for reason in reasons]

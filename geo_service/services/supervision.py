"""Supervision (督办): per town, each item of the 2022 opinion met or not;
progress per responsible unit; and how both changed between two dates.

The state at a date is rebuilt from the audit trail (``Store.features_as_of``):
per site, the latest version recorded by the end of that day. A date is a
calendar day in China Standard Time (UTC+8), the office's own day: "as of
2026-12-04" means up to 2026-12-04 24:00 Beijing time. Sites of the shipped
layers (the ``seed`` records) count from the start of the trail, as does any
site the trail has never recorded (stored before the trail existed).

Sample sites (``sample: true``) are counted like any other, because that is
what the store holds; every view says how many of them it counts, per town
and per unit, so nobody reads a sample as a real station.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from typing import Any

from geo_service.analysis.coverage import COMPLIANCE_ITEMS, compliance_by_town, progress_by_unit
from geo_service.errors import InvalidParameter
from geo_service.runtime import Runtime
from geo_service.services.access import Principal
from geo_service.store import StoredFeature
from geo_service.store.base import now

__all__ = [
    "CHINA_TIME",
    "STATUSES",
    "end_of_day",
    "state_as_of",
    "supervision_report",
    "supervision_view",
]

#: The office's calendar: a date given to supervision is a day in Beijing time.
CHINA_TIME = dt.timezone(dt.timedelta(hours=8), "UTC+8")
#: A site's statuses, in the order the views show them.
STATUSES = ("open", "planned", "suspended")


def end_of_day(text: str | None, parameter: str = "as_of") -> tuple[str, str]:
    """A date (``2026-12-04``) or an instant (RFC 3339) as ``(label, cut)``:
    the cut is the last instant it covers, in the audit trail's UTC text form
    (a date: 23:59:59.999 Beijing time); None means now.

    >>> end_of_day("2026-12-04")
    ('2026-12-04', '2026-12-04T15:59:59.999+00:00')
    """
    if text is None or text == "":
        moment = dt.datetime.now(CHINA_TIME)
        return moment.date().isoformat(), now()
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime.combine(day, dt.time.max, CHINA_TIME)
            return day.isoformat(), _utc(moment)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(
            parameter, f"{text!r} is not a date (YYYY-MM-DD) or a date and time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA_TIME)
    return moment.isoformat(timespec="seconds"), _utc(moment)


def _utc(moment: dt.datetime) -> str:
    try:
        return moment.astimezone(dt.UTC).isoformat(timespec="milliseconds")
    except OverflowError:
        # Hours past year 1 or 9999 once in UTC: before or after any audit record.
        edge = dt.datetime.min if moment.year == 1 else dt.datetime.max
        return edge.replace(tzinfo=dt.UTC).isoformat(timespec="milliseconds")


def state_as_of(rt: Runtime, cut: str) -> dict[str, list[StoredFeature]]:
    """The towns and every facility layer as they stood at ``cut`` (UTC text,
    inclusive): one query over the audit trail, plus the live sites the trail
    has never recorded (those bulk loads brought are in the trail's answer)."""
    layer_ids = ["towns", *(layer.id for layer in rt.catalog.facility_layers)]
    state = rt.store.features_as_of(cut, layer_ids)
    for layer_id in layer_ids:
        unrecorded = rt.store.unrecorded_features(layer_id)
        if unrecorded:
            state[layer_id] = sorted([*state[layer_id], *unrecorded], key=lambda f: f.id)
    return state


def _is_sample(site: StoredFeature) -> bool:
    return site.properties.get("sample") is True


def supervision_view(
    state: dict[str, list[StoredFeature]], towns_shown: Iterable[str] | None = None
) -> dict[str, Any]:
    """Compliance per town and progress per unit over one state, with the
    sample sites counted in each. ``towns_shown`` limits the view (an
    editor's towns): other towns' rows, and their sites in the unit
    progress, are left out."""
    towns = state["towns"]
    facilities = [site for layer, sites in state.items() if layer != "towns" for site in sites]
    if towns_shown is not None:
        shown = set(towns_shown)
        towns = [town for town in towns if town.id in shown]
        facilities = [site for site in facilities if site.properties.get("town_code") in shown]
    samples = [site for site in facilities if _is_sample(site)]
    compliance = compliance_by_town(facilities, towns)
    # The same rules over the samples alone: how many of each count are samples.
    sample_compliance = compliance_by_town(samples, towns)
    town_rows = []
    for code, entry in compliance.items():
        sample_counts = sample_compliance[code]["counts"]
        town_rows.append(
            {
                "town_code": code,
                "town_name": entry["name"],
                "counts": entry["counts"],
                "meets": entry["meets"],
                "items_met": sum(entry["meets"].values()),
                "all_met": entry["all_met"],
                "sample_counts": sample_counts,
                "sample_sites_counted": sum(sample_counts.values()),
            }
        )
    progress = progress_by_unit(facilities)
    sample_progress = Counter(
        site.properties.get("responsible_unit") or "（未填写 not given）" for site in samples
    )
    unit_rows = [
        {
            "responsible_unit": unit,
            **counts,
            "total": sum(counts.values()),
            "sample_sites": sample_progress.get(unit, 0),
        }
        for unit, counts in progress.items()
    ]
    counted = sum(row["sample_sites_counted"] for row in town_rows)
    return {
        "towns": town_rows,
        "units": unit_rows,
        "samples": {
            "sites": len(samples),
            "counted_for_items": counted,
            "by_town": {row["town_code"]: row["sample_sites_counted"] for row in town_rows},
            "note": _sample_note(len(samples), counted),
        },
    }


def _sample_note(sites: int, counted: int) -> str:
    if not sites:
        return "未计入示例站点（no sample sites counted）"
    return (
        f"计入示例站点 {counted} 个（达标项），示例站点共 {sites} 个（责任单位进度）："
        "示例数据不是真实站点，请替换为实际数据后再用于督办 "
        f"({counted} sample sites counted for the items, {sites} in unit progress: "
        "samples are not real sites)"
    )


def _changes(earlier: dict[str, Any], later: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """What differs between two views: per town and item the count and
    whether it was met; per unit and status the count."""
    names = {item: zh for item, zh, _layer, _kinds in COMPLIANCE_ITEMS}
    before_towns = {row["town_code"]: row for row in earlier["towns"]}
    towns = []
    for row in later["towns"]:
        old = before_towns.get(row["town_code"])
        for item in names:
            count_before = old["counts"][item] if old else 0
            met_before = old["meets"][item] if old else False
            if (count_before, met_before) != (row["counts"][item], row["meets"][item]):
                towns.append(
                    {
                        "town_code": row["town_code"],
                        "town_name": row["town_name"],
                        "item": item,
                        "item_name": names[item],
                        "count_before": count_before,
                        "count_after": row["counts"][item],
                        "met_before": met_before,
                        "met_after": row["meets"][item],
                    }
                )
    before_units = {row["responsible_unit"]: row for row in earlier["units"]}
    after_units = {row["responsible_unit"]: row for row in later["units"]}
    units = []
    for unit in sorted(set(before_units) | set(after_units)):
        old, new = before_units.get(unit, {}), after_units.get(unit, {})
        for status in STATUSES:
            if old.get(status, 0) != new.get(status, 0):
                units.append(
                    {
                        "responsible_unit": unit,
                        "status": status,
                        "before": old.get(status, 0),
                        "after": new.get(status, 0),
                    }
                )
    return {"towns": towns, "units": units}


def supervision_report(
    rt: Runtime, who: Principal | None, as_of: str | None = None, since: str | None = None
) -> dict[str, Any]:
    """The supervision views as of ``as_of`` (a date or instant; None: now)
    and, with ``since``, the same as of that earlier date and what changed
    in between. An editor (``who`` with towns) sees only their towns' rows;
    an admin or the command line (``who`` None) sees every town."""
    label, cut = end_of_day(as_of, "as_of")
    towns_shown = None if who is None or who.is_admin else who.towns
    report: dict[str, Any] = {
        "as_of": label,
        "as_of_utc": cut,
        "time_zone": "北京时间 UTC+8（按日期截至当日 24:00）",
        "items": [{"item": item, "name": zh} for item, zh, _layer, _kinds in COMPLIANCE_ITEMS],
        **supervision_view(state_as_of(rt, cut), towns_shown),
        "since": None,
        "changes": None,
    }
    if since is not None:
        since_label, since_cut = end_of_day(since, "since")
        if since_cut > cut:
            raise InvalidParameter("since", f"{since_label} is after {label}; give an earlier date")
        earlier = supervision_view(state_as_of(rt, since_cut), towns_shown)
        report["since"] = {"date": since_label, "utc": since_cut, **earlier}
        report["changes"] = _changes(earlier, report)
    return report

"""The sample sites in the store: how many a layer holds, which ones a new
site is probably the same place as, the notes that say so wherever numbers
are shown (collection metadata, coverage reports), and the console's
"sample to real" work: a town's samples of a layer listed beside its real
sites, retired together (a soft delete, audited as ``retire``), and
restored one by one."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson

from geo_service.errors import Conflict, Forbidden, NotFound
from geo_service.runtime import Runtime
from geo_service.services.access import Principal, authorize_change
from geo_service.sources.catalog import Layer, ValidFeature
from geo_service.sources.samples import SampleNames, SampleSite
from geo_service.store import AuditQuery, Store, StoredFeature

__all__ = [
    "RETIRE",
    "count_samples",
    "coverage_sample_note",
    "coverage_sample_notes",
    "probable_samples",
    "restore_sample",
    "retire_samples",
    "sample_note",
    "samples_overview",
]

#: Sample sites read per query when listing them.
_PAGE = 10_000
_SAMPLE = {"sample": ["true"]}


def count_samples(store: Store, layer: Layer) -> int | None:
    """How many live features of ``layer`` are samples; None for a layer
    without the ``sample`` property (towns, the district)."""
    if "sample" not in layer.properties:
        return None
    return store.query(layer.id, filters=_SAMPLE, limit=1).number_matched


def sample_note(samples: int, total: int) -> dict[str, str]:
    """What a count that includes ``samples`` sample features must say (Chinese first).

    >>> sample_note(86, 90)["zh"]
    '90 个要素中有 86 个为示例数据（sample），位置或服务内容仅作演示，请勿作为实际办事依据。'
    """
    return {
        "zh": f"{total} 个要素中有 {samples} 个为示例数据（sample），位置或服务内容仅作演示，"
        "请勿作为实际办事依据。",
        "en": f"{samples} of {total} features are sample data: their position or service "
        "is illustrative; do not rely on them.",
    }


def coverage_sample_notes(
    coverage: tuple[int, int], compliance: tuple[int, int]
) -> dict[str, str] | None:
    """What a coverage report that counts sample sites must say, in Chinese
    (``zh``) and English (``en``): ``coverage`` and ``compliance`` are
    (sample sites, all sites) counted by each part. None when no sample site
    is counted.

    >>> notes = coverage_sample_notes((24, 24), (70, 82))
    >>> notes["zh"].startswith("注意：本报告计入了示例站点")
    True
    >>> "82 个开放站点中有 70 个" in notes["zh"]
    True
    >>> coverage_sample_notes((0, 5), (0, 9)) is None
    True
    """
    (in_coverage, coverage_total), (in_compliance, compliance_total) = coverage, compliance
    if not in_coverage and not in_compliance:
        return None
    return {
        "zh": f"注意：本报告计入了示例站点：覆盖分析的 {coverage_total} 个站点中有 "
        f"{in_coverage} 个、达标检查的 {compliance_total} 个开放站点中有 {in_compliance} 个"
        "为示例数据，结果仅作演示，不代表实际情况。",
        "en": f"Sample sites are counted: {in_coverage} of the {coverage_total} sites in the "
        f"coverage and {in_compliance} of the {compliance_total} open sites in the compliance "
        "check are sample data; the results are illustrative.",
    }


def coverage_sample_note(coverage: tuple[int, int], compliance: tuple[int, int]) -> str | None:
    """``coverage_sample_notes`` in one text, Chinese first, for outputs in
    both languages at once (the workbook, the CLI, the report's ``sample_note``).

    >>> note = coverage_sample_note((24, 24), (70, 82))
    >>> note.startswith("注意：本报告计入了示例站点"), "Sample sites are counted" in note
    (True, True)
    """
    notes = coverage_sample_notes(coverage, compliance)
    return None if notes is None else f"{notes['zh']} ({notes['en']})"


def probable_samples(store: Store, layer: Layer, feature: ValidFeature) -> list[SampleSite]:
    """The layer's sample sites named like ``feature``, wherever they lie
    (``sources.samples``, the check an import row gets)."""
    if "sample" not in layer.properties or feature.properties.get("sample"):
        return []
    found: list[tuple[str, dict[str, Any]]] = []
    while True:
        page = store.query(layer.id, filters=_SAMPLE, limit=_PAGE, offset=len(found))
        found += [(f.id, f.properties) for f in page.features]
        if not page.features or len(found) >= page.number_matched:
            break
    return SampleNames.of(found).matches(str(feature.properties.get("name") or ""), feature.id)


# -- sample to real (the office console) ------------------------------------------------

#: The audit action of a sample retired from the console: a soft delete that
#: ``Store.restore`` brings back like any other.
RETIRE = "retire"
#: Audit records read at most when looking for retired samples.
_AUDIT_LIMIT = 1_000_000


def _sample_layers(rt: Runtime) -> list[Layer]:
    return [
        layer
        for layer in rt.catalog.layers.values()
        if layer.is_facility and "sample" in layer.properties
    ]


def _keeps(who: Principal, town_code: object) -> bool:
    return who.is_admin or town_code in who.towns


def _site(feature: StoredFeature) -> dict[str, Any]:
    return {"id": feature.id, "name": str(feature.properties.get("name") or "")}


def samples_overview(rt: Runtime, who: Principal) -> dict[str, Any]:
    """Per town and layer, the sample sites ``who`` keeps (an editor: their
    towns), each with the real sites probably the same place (the same name
    once sample markers are ignored, anywhere in the layer), and how many
    real sites of that layer the town has; then the samples retired from
    this screen and not restored since, newest first."""
    names = rt.towns.get().names
    groups: list[dict[str, Any]] = []
    retired: list[dict[str, Any]] = []
    for layer in _sample_layers(rt):
        features = rt.store.all_features(layer.id)
        samples = [f for f in features if f.properties.get("sample") is True]
        reals = [f for f in features if f.properties.get("sample") is not True]
        same_place: dict[str, list[dict[str, Any]]] = defaultdict(list)
        index = SampleNames.of((f.id, f.properties) for f in samples)
        for real in reals:
            for sample in index.matches(str(real.properties.get("name") or ""), real.id):
                same_place[sample.id].append(
                    {**_site(real), "town_code": real.properties.get("town_code")}
                )
        real_count: dict[str, int] = defaultdict(int)
        for real in reals:
            real_count[str(real.properties.get("town_code"))] += 1
        by_town: dict[str, list[StoredFeature]] = defaultdict(list)
        for sample in samples:
            by_town[str(sample.properties.get("town_code"))].append(sample)
        for code in sorted(by_town):
            if not _keeps(who, code):
                continue
            groups.append(
                {
                    "layer": layer.id,
                    "layer_zh": layer.zh,
                    "layer_en": layer.en,
                    "town_code": code,
                    "town_name": names.get(code, code),
                    "real_sites": real_count[code],
                    "samples": [
                        {**_site(s), "same_place": same_place.get(s.id, [])}
                        for s in sorted(by_town[code], key=lambda f: f.id)
                    ],
                }
            )
        retired += _retired(rt, who, layer, names)
    retired.sort(key=lambda r: r["at"], reverse=True)
    return {"groups": groups, "retired": retired}


def _retired(
    rt: Runtime, who: Principal, layer: Layer, names: dict[str, str]
) -> list[dict[str, Any]]:
    """The layer's samples whose latest audit record is their retirement."""
    records, _ = rt.store.audit_log(
        AuditQuery(layer_id=layer.id, limit=_AUDIT_LIMIT), newest_first=True
    )
    seen: set[str] = set()
    found = []
    for record in records:
        if record["feature_id"] in seen:
            continue
        seen.add(record["feature_id"])
        if record["action"] != RETIRE or record["after"] is not None:
            continue
        code = record["town_code"]
        if not _keeps(who, code):
            continue
        before = orjson.loads(record["before"]) if record["before"] else {}
        props = before.get("properties") or {}
        found.append(
            {
                "layer": layer.id,
                "layer_zh": layer.zh,
                "layer_en": layer.en,
                "id": record["feature_id"],
                "name": str(props.get("name") or ""),
                "town_code": code,
                "town_name": names.get(code, code),
                "at": record["at"],
                "actor": record["actor"],
            }
        )
    return found


def retire_samples(rt: Runtime, who: Principal, layer_id: str, town_code: str) -> list[str]:
    """Soft-delete every sample site of ``layer_id`` in ``town_code``, each
    through the store's audited write (action ``retire``, in ``who``'s
    name). An editor only in their towns (``Forbidden`` otherwise, before
    anything is written). Each sample is checked again as it is deleted: one
    made real meanwhile is left alone. Returns the ids retired."""
    layer = rt.catalog.layer(layer_id)
    if layer not in _sample_layers(rt):
        raise NotFound(f"{layer.id} holds no sample sites")
    names = rt.towns.get().names
    if not _keeps(who, town_code):
        label = f"{names.get(town_code, town_code)} ({town_code})"
        raise Forbidden(f"{label} is outside the towns this account may edit")

    def check(before: StoredFeature | None, after: ValidFeature | None) -> None:
        authorize_change(who, layer, before, after, names)
        if before is None or before.properties.get("sample") is not True:
            raise Conflict("no longer a sample site")

    retired = []
    for site in rt.store.all_features(layer.id):
        props = site.properties
        if props.get("sample") is not True or props.get("town_code") != town_code:
            continue
        # One transaction per site: each is its own audited soft delete, so a
        # site changed meanwhile (made real, moved) stops only itself.
        try:
            rt.store.change(
                layer.id, site.id, None, actor=who.actor, action=RETIRE, authorize=check
            )
        except (Conflict, NotFound):
            continue
        retired.append(site.id)
    return retired


def restore_sample(rt: Runtime, who: Principal, layer_id: str, feature_id: str) -> StoredFeature:
    """Bring back one retired sample as it was (``Store.restore``, audited
    ``restore`` in ``who``'s name). Only a sample retired from the console;
    an editor only in their towns."""
    layer = rt.catalog.layer(layer_id)
    records, _ = rt.store.audit_log(
        AuditQuery(layer_id=layer.id, feature_id=feature_id, limit=1), newest_first=True
    )
    if not records or records[0]["action"] != RETIRE or records[0]["after"] is not None:
        raise NotFound(f"{layer.id}/{feature_id} is not a retired sample site")
    code = records[0]["town_code"]
    if not _keeps(who, code):
        names = rt.towns.get().names
        raise Forbidden(
            f"{feature_id} is in {names.get(code, code)} ({code}), outside the towns "
            "this account may edit"
        )
    change = rt.store.restore(layer.id, feature_id, actor=who.actor)
    assert change.after is not None
    return change.after

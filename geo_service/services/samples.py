"""The sample sites in the store: how many a layer holds, which ones a new
site is probably the same place as, and the notes that say so wherever
numbers are shown (collection metadata, coverage reports)."""

from __future__ import annotations

from typing import Any

from geo_service.sources.catalog import Layer, ValidFeature
from geo_service.sources.samples import SampleNames, SampleSite
from geo_service.store import Store

__all__ = ["count_samples", "coverage_sample_note", "probable_samples", "sample_note"]

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


def coverage_sample_note(coverage: tuple[int, int], compliance: tuple[int, int]) -> str | None:
    """What a coverage report that counts sample sites must say, Chinese
    first: ``coverage`` and ``compliance`` are (sample sites, all sites)
    counted by each part. None when no sample site is counted.

    >>> note = coverage_sample_note((24, 24), (70, 82))
    >>> note.startswith("注意：本报告计入了示例站点"), "82 个开放站点中有 70 个" in note
    (True, True)
    >>> coverage_sample_note((0, 5), (0, 9)) is None
    True
    """
    (in_coverage, coverage_total), (in_compliance, compliance_total) = coverage, compliance
    if not in_coverage and not in_compliance:
        return None
    return (
        f"注意：本报告计入了示例站点：覆盖分析的 {coverage_total} 个站点中有 {in_coverage} 个、"
        f"达标检查的 {compliance_total} 个开放站点中有 {in_compliance} 个为示例数据（sample），"
        "结果仅作演示，不代表实际情况。 "
        f"(Sample sites are counted: {in_coverage} of the {coverage_total} sites in the "
        f"coverage and {in_compliance} of the {compliance_total} open sites in the compliance "
        "check are sample data; the results are illustrative.)"
    )


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

"""Sample sites a new site probably replaces: the same name, once the sample's
markers are taken away, anywhere in the same layer.

The shipped layers hold sample sites (``sample: true``) that stand in for
real ones until the office enters them: "车站街道退役军人服务站" placed by
judgement, "示例：拥军服务驿站（人民公园东门）" invented. When the office adds the
real site it rarely lies within the 50 m that makes a probable duplicate, so
without this check the sample stays beside it on the map, unnoticed. A match
is a warning, never a refusal: the office decides whether to delete the
sample. Store-free: the import planner and single edits hand in the layer's
sample sites.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["SampleNames", "SampleSite", "same_place_warning", "sample_name_key"]

#: "示例：…", "示例…", "（示例）", "sample: …", "(sample)": how the sample says
#: what it is, not part of the place's name.
_SAMPLE_MARKERS = re.compile(r"示例[:：]?|\bsample\b[:：]?", re.IGNORECASE)


def sample_name_key(name: str) -> str:
    """A name as compared with sample names: width, case, spaces, punctuation
    and sample markers ignored.

    >>> sample_name_key("示例：拥军服务驿站（人民公园 东门）")
    '拥军服务驿站人民公园东门'
    >>> sample_name_key("拥军服务驿站(人民公园东门)")
    '拥军服务驿站人民公园东门'
    >>> sample_name_key("Sample: Post 1")
    'post1'
    """
    text = unicodedata.normalize("NFKC", str(name))
    text = _SAMPLE_MARKERS.sub("", text).lower()
    return re.sub(r"[\s\W_]+", "", text)


@dataclass(frozen=True)
class SampleSite:
    id: str
    name: str


class SampleNames:
    """The sample sites of one layer by name key.

    Example
    -------
    >>> samples = SampleNames.of([
    ...     ("st-town-chezhan", {"name": "车站街道退役军人服务站", "sample": True}),
    ...     ("st-real", {"name": "公园街道退役军人服务站", "sample": False}),
    ... ])
    >>> [s.id for s in samples.matches("车站街道 退役军人服务站")]
    ['st-town-chezhan']
    >>> samples.matches("公园街道退役军人服务站")  # not a sample
    []
    >>> samples.matches("车站街道退役军人服务站", own_id="st-town-chezhan")  # itself
    []
    """

    def __init__(self, sites: Iterable[SampleSite] = ()):
        self._by_key: dict[str, list[SampleSite]] = defaultdict(list)
        for site in sites:
            key = sample_name_key(site.name)
            if key:
                self._by_key[key].append(site)

    @classmethod
    def of(cls, features: Iterable[tuple[str, dict[str, Any]]]) -> SampleNames:
        """From (id, properties) pairs: the ones with ``sample: true``."""
        return cls(
            SampleSite(feature_id, str(props.get("name") or ""))
            for feature_id, props in features
            if props.get("sample") is True
        )

    def __len__(self) -> int:
        return sum(len(sites) for sites in self._by_key.values())

    def matches(self, name: str, own_id: str | None = None) -> list[SampleSite]:
        """The sample sites named like ``name`` (but not the site ``own_id`` itself)."""
        return [s for s in self._by_key.get(sample_name_key(name), []) if s.id != own_id]


def same_place_warning(sample: SampleSite) -> str:
    """The warning for a site named like ``sample`` (Chinese first)."""
    return (
        f"可能与示例站点 {sample.id}（{sample.name}）是同一地点：核实后请删除或替换该示例 "
        f"(probably the same place as sample {sample.id}; once checked, delete or replace "
        "the sample)"
    )

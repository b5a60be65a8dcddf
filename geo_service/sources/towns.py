"""Which town a position lies in: the point-in-polygon index behind every ``town_code``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geo_service.errors import FieldProblem, InvalidFeature
from geo_service.sources.catalog import ValidFeature

__all__ = ["TownIndex", "Towns"]


class TownIndex:
    """Town polygons keyed by 9-digit code, indexed for point lookups.

    Example
    -------
    >>> from shapely.geometry import box
    >>> index = TownIndex([("370303001", box(0, 0, 1, 1)), ("370303002", box(1, 0, 2, 1))])
    >>> index.locate(0.5, 0.5), index.locate(5, 5)
    ('370303001', None)
    """

    def __init__(self, towns: Iterable[tuple[str, BaseGeometry]]):
        pairs = list(towns)
        self.codes = [code for code, _ in pairs]
        self.geometries = np.array([geom for _, geom in pairs], dtype=object)
        self._tree = shapely.STRtree(self.geometries)

    def __len__(self) -> int:
        return len(self.codes)

    def locate(self, lon: float, lat: float) -> str | None:
        """The code of the town containing the point (a point on a shared edge
        goes to the lowest code, so the answer is deterministic), or None."""
        hits = self._tree.query(shapely.Point(lon, lat), predicate="intersects")
        if len(hits) == 0:
            return None
        return min(self.codes[i] for i in hits)

    def assign(self, feature: ValidFeature) -> ValidFeature:
        """Derive ``town_code`` from the position; a declared code must agree."""
        point = feature.geometry
        code = self.locate(point.x, point.y)
        declared = feature.properties.get("town_code")
        if code is None:
            raise InvalidFeature(
                feature.id, [FieldProblem("geometry", "lies outside every town of the district")]
            )
        if declared and declared != code:
            raise InvalidFeature(
                feature.id,
                [
                    FieldProblem(
                        "town_code", f"declared {declared} but the position lies in town {code}"
                    )
                ],
            )
        props = dict(feature.properties, town_code=code)
        return ValidFeature(id=feature.id, properties=props, geometry=feature.geometry)


@dataclass(frozen=True)
class Towns:
    """The district's towns as an edit needs them: where a point falls, their names."""

    index: TownIndex
    names: dict[str, str]  # code -> name
    approximate: bool  # boundaries drawn by judgement: a declared town wins

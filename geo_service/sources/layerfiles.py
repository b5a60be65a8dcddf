"""Read GeoJSON layer files (the shipped sample, or a user's file) into validated features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from geo_service.errors import FieldProblem, InvalidFeature, InvalidParameter
from geo_service.sources.catalog import Catalog, ValidFeature

__all__ = ["parse_feature_collection", "read_layer_file"]


def parse_feature_collection(data: bytes | str, label: str = "input") -> list[dict[str, Any]]:
    """The features of a GeoJSON FeatureCollection (or a single Feature).

    Raises ``InvalidParameter`` for text that is not JSON or not GeoJSON.
    """
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise InvalidParameter(
            label, f"not valid JSON ({error.msg} at position {error.pos})"
        ) from None
    if not isinstance(document, dict):
        raise InvalidParameter(label, "GeoJSON must be an object")
    if document.get("type") == "Feature":
        return [document]
    if document.get("type") != "FeatureCollection":
        raise InvalidParameter(
            label,
            f"expected a GeoJSON FeatureCollection or Feature, got type {document.get('type')!r}",
        )
    features = document.get("features")
    if not isinstance(features, list):
        raise InvalidParameter(label, "a FeatureCollection needs a 'features' array")
    return features


def read_layer_file(
    catalog: Catalog,
    layer_id: str,
    path: Path | None = None,
    town_codes: set[str] | None = None,
) -> list[ValidFeature]:
    """Validate every feature of a GeoJSON file against ``layer_id``.

    All problems of all features are collected and raised together, so a bad
    file is fixed in one pass, and nothing is returned unless all are valid.
    """
    path = path or catalog.layer_file(layer_id)
    features = parse_feature_collection(path.read_bytes(), label=path.name)
    valid: list[ValidFeature] = []
    problems: list[FieldProblem] = []
    for number, feature in enumerate(features, start=1):
        try:
            valid.append(catalog.validate_feature(layer_id, feature, town_codes=town_codes))
        except InvalidFeature as error:
            name = error.feature_id or f"#{number}"
            problems += [FieldProblem(f"{name}.{p.field}", p.message) for p in error.problems]
    if problems:
        raise InvalidFeature(f"{path.name}", problems)
    return valid

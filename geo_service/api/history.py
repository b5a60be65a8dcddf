"""A site's history over HTTP: its timeline from the audit trail, and
restoring it to one of its versions. Both need a token (``PrincipalDep``);
an editor reaches only the sites of their towns."""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from geo_service.api.editing import IfMatch, PrincipalDep, _feature_response, _if_match
from geo_service.api.media import MediaType
from geo_service.api.ogc import CollectionId, FeatureId
from geo_service.api.openapi import json_body, problem
from geo_service.services import history

__all__ = ["router"]

router = APIRouter()

Version = Annotated[
    int,
    Path(
        description="The version: the number of the audit record that made it "
        "(`version` in the site's history)",
        ge=1,
        le=2**62,
    ),
]


@router.get(
    "/collections/{collectionId}/items/{featureId}/history",
    summary="A site's history: every change, newest first, with the fields that changed",
    operation_id="featureHistory",
    description="Needs a token (an editor: a site of their towns). Each version says "
    "when (UTC), who, the action and the fields that changed (before → after; a move "
    "in metres). A deleted site keeps its history.",
    tags=["Editing"],
    response_class=Response,
    responses={
        200: json_body("SiteHistory", headers={"Cache-Control": {"schema": {"type": "string"}}}),
        403: problem("The token may not read this site's history"),
        404: problem("No such collection, or a site the audit trail has never seen"),
    },
)
def feature_history(
    request: Request, collection_id: CollectionId, feature_id: FeatureId, who: PrincipalDep
) -> Response:
    body = history.site_history(request.app.state.runtime, who, collection_id, feature_id)
    return Response(
        orjson.dumps(body), media_type=MediaType.json, headers={"Cache-Control": "no-store"}
    )


@router.post(
    "/collections/{collectionId}/items/{featureId}/history/{version}/restore",
    summary="Restore a site to one of its versions",
    operation_id="restoreFeatureVersion",
    description="Writes the site again exactly as that version left it, as a change of "
    "its own (audited as `revert`, or `restore` when the site was deleted). Needs a "
    "token (an editor: within their towns) and `If-Match` with the site's current ETag "
    "(`*` for a deleted site, which has none).",
    tags=["Editing"],
    response_class=Response,
    responses={
        200: {
            "description": "The site as it is now (that version)",
            **json_body(
                "Feature",
                MediaType.geojson.value,
                headers={"ETag": {"schema": {"type": "string"}, "required": True}},
            ),
        },
        403: problem("The token may not change this site"),
        404: problem("No such collection, site or version of the site"),
        409: problem("That version is the site's deletion"),
        412: problem("The site changed since your If-Match version"),
        428: problem("If-Match is required"),
    },
)
def restore_feature_version(
    request: Request,
    collection_id: CollectionId,
    feature_id: FeatureId,
    version: Version,
    who: PrincipalDep,
    if_match: IfMatch = None,
) -> Response:
    tag = _if_match(if_match)
    restored, _written = history.restore_version(
        request.app.state.runtime, who, collection_id, feature_id, version, tag
    )
    return _feature_response(request, restored)

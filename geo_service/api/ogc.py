"""OGC API - Features Part 1 (Core, GeoJSON, HTML, OpenAPI 3.0), Part 2 (CRS)
and Part 3 (queryables and CQL2 filters) over the store."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute

from geo_service.api import html
from geo_service.api.media import MediaType
from geo_service.api.openapi import HTML, change_links, json_body
from geo_service.api.params import output_crs, wants_html
from geo_service.errors import InvalidParameter
from geo_service.outputs.geojson import collection_bytes, feature_collection, feature_to_geojson
from geo_service.services.features import FeatureServing, ItemAnswer
from geo_service.services.queries import (
    MAX_LIST_VALUES,
    OGC_CRS_NAMES,
    parse_bbox,
    parse_cql2,
)
from geo_service.services.samples import count_samples, sample_note
from geo_service.sources.catalog import Catalog, Layer
from geo_service.sources.crs import CRS84_URI, OGC_CRS_URIS, CoordinateSystem, CrsReference
from geo_service.store import BBox, Store, StoredFeature
from geo_service.store.filtering import CQL2_CONFORMANCE, FILTER_LANGS, queryables

__all__ = ["MAX_LIMIT", "router"]


class _ShortcutRoute(APIRoute):
    """A route whose common, valid requests a memory-only shortcut
    (``_SHORTCUTS``) answers before FastAPI parses the declared parameters:
    that parsing costs about 70 µs a request for one feature and 130 µs for
    a page, more than the answer itself. The shortcut takes only parameters
    it knows, each once, with values the declared ones accept; anything else
    (and whenever it answers None) goes the declared way, to the same
    answers and the same problems."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        declared = super().get_route_handler()
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            # Looked up here: routes are made before the table below is.
            shortcut = _SHORTCUTS.get(endpoint)
            if shortcut is not None and (answer := await shortcut(request)) is not None:
                return answer
            return await declared(request)

        return handler


router = APIRouter(route_class=_ShortcutRoute)

MAX_LIMIT = 10_000
MAX_OFFSET = 10_000_000
CRS84 = CRS84_URI
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    *CQL2_CONFORMANCE,
]
_ITEMS_PARAMS = {
    "bbox",
    "bbox-crs",
    "limit",
    "offset",
    "crs",
    "f",
    "filter",
    "filter-lang",
    "filter-crs",
}
#: Part 3's link relation from a collection to its queryables.
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"

FormatParam = Annotated[
    str | None,
    Query(
        description="Response format: `json` (default for API clients) or `html`",
        json_schema_extra={"enum": ["json", "geojson", "html"]},
    ),
]


# Dependencies and routes that only read memory are ``async def``: a plain
# ``def`` costs a trip to the thread pool on every request (about 200 µs
# here, five times a bare FastAPI request). Store reads go to a thread.


async def get_store(request: Request) -> Store:
    return request.app.state.runtime.store


async def get_catalog(request: Request) -> Catalog:
    return request.app.state.runtime.catalog


def _serving(request: Request) -> FeatureServing:
    """The app's cached answers, over the runtime's store (made on first use,
    and again if the lifespan opened another store)."""
    store = request.app.state.runtime.store
    serving = getattr(request.app.state, "feature_serving", None)
    if serving is None or serving.store is not store:
        serving = request.app.state.feature_serving = FeatureServing(store)
    return serving


StoreDep = Annotated[Store, Depends(get_store)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
# Named as the OGC API specification names them: clients such as GDAL's
# OAPIF driver find the items parameters under "/collections/{collectionId}/items".
CollectionId = Annotated[
    str,
    Path(
        alias="collectionId",
        description="Layer id, e.g. `green_channels`",
        examples=["stations"],
    ),
]
#: Feature ids as the catalog allows them (``catalog.ID_PATTERN``).
FEATURE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
FeatureId = Annotated[
    str,
    Path(
        alias="featureId",
        description="The feature's id: a letter or digit, then letters, digits, '.', '_' "
        "or '-' (128 at most)",
        json_schema_extra={"pattern": FEATURE_ID_PATTERN},
    ),
]


#: OpenAPI of Part 2's ``Content-Crs`` header (absent for GCJ-02 and BD-09).
_CONTENT_CRS_DOC = {
    "Content-Crs": {
        "schema": {"type": "string"},
        "description": "The coordinates' CRS as `<uri>` (OGC API - Features Part 2); "
        "absent for the non-standard gcj02 and bd09, which have no CRS URI",
    }
}


def _ok(schema: str, media: str = MediaType.json.value, html: bool = True, **extra: Any) -> dict:
    """The 200 response: the named schema, and the HTML view of ``f=html``."""
    response = json_body(schema, media, **extra)
    if html:
        response["content"].update(HTML)
    return {200: response}


#: Host names that can only mean this machine.
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "[::1]"}


def _base(request: Request) -> str:
    """The start of every link: the ``public_url`` setting; else, for a
    client on this machine (a loopback ``Host``), that host, so that clients
    which do not resolve relative links (QGIS 3.22's OGC API provider stops
    at the landing page) work out of the box; else nothing (links relative to
    the host). Never any other ``Host`` header, which the client chooses:
    echoed into links, it lets one client point another's cached answers
    anywhere, and a loopback one can only point them back at this machine."""
    public = request.app.state.runtime.settings.public_url.rstrip("/")
    if public:
        return public
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    port = host[len(name) + 1 :]
    if name.lower() in _LOOPBACK_HOSTS and (port == "" or port.isdigit()):
        # The scope's scheme is the URL's, without building the whole URL.
        return f"{request.scope.get('scheme', 'http')}://{host}"
    return ""


def _json(body: Any, media_type: str = MediaType.json, headers: dict | None = None) -> Response:
    """The JSON answer of a resource that also has an HTML view (``Vary: Accept``)."""
    return _vary(Response(orjson.dumps(body), media_type=media_type, headers=headers))


def _vary(response: Response) -> Response:
    # Every resource here answers JSON or HTML by the Accept header: a cache
    # must not hand a browser's page to an API client, or the reverse.
    response.headers["Vary"] = "Accept"
    return response


def _none_match(header: str | None, etag: str) -> bool:
    """RFC 9110 If-None-Match: ``*`` or a list of entity tags, compared weakly."""
    if not header:
        return False
    if header.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in header.split(","))


def _link(href: str, rel: str, media: str, title: str) -> dict[str, str]:
    return {"href": href, "rel": rel, "type": media, "title": title}


@router.get(
    "/",
    summary="Landing page",
    description="JSON for API clients; a browser (preferring text/html) gets the web map, "
    "and `f=html` the API's front page.",
    tags=["OGC API - Features"],
    response_class=Response,
    responses=_ok("LandingPage", headers={"Vary": {"schema": {"type": "string"}}}),
)
async def landing(request: Request, f: FormatParam = None) -> Response:
    base = _base(request)
    body = {
        "title": "张店区拥军服务资源地图服务",
        "description": "Zhangdian support-resource map service: veterans' service stations, "
        "green channels, medical support, memorials and defence-education sites "
        "of 张店区 (Zibo, Shandong) as OGC API - Features.",
        "links": [
            _link(f"{base}/?f=json", "self", MediaType.json, "This document"),
            _link(f"{base}/?f=html", "alternate", "text/html", "This document as HTML"),
            _link(f"{base}/openapi.json", "service-desc", MediaType.openapi, "OpenAPI definition"),
            _link(f"{base}/docs", "service-doc", "text/html", "API documentation"),
            _link(f"{base}/conformance", "conformance", MediaType.json, "Conformance classes"),
            _link(f"{base}/collections", "data", MediaType.json, "Collections"),
            _link(f"{base}/map", "related", "text/html", "Web map 地图"),
        ],
    }
    if wants_html(request, f):
        # A browser opening the service gets the web map; ?f=html the API's front page.
        if f is None:
            return _vary(HTMLResponse(request.app.state.map_page))
        return _vary(html.page(body["title"], html.landing(body)))
    return _json(body)


@router.get(
    "/conformance",
    summary="Conformance classes",
    tags=["OGC API - Features"],
    response_class=Response,
    responses=_ok("Conformance"),
)
async def conformance(request: Request, f: FormatParam = None) -> Response:
    body = {"conformsTo": CONFORMANCE}
    if wants_html(request, f):
        return _vary(html.page("Conformance", html.json_block(body)))
    return _json(body)


def _collection_body(request: Request, store: Store, layer: Layer) -> dict[str, Any]:
    base = _base(request)
    extent = store.extent(layer.id)
    body: dict[str, Any] = {
        "id": layer.id,
        "title": layer.zh,
        "description": layer.en,
        "itemType": "feature",
        "crs": list(OGC_CRS_URIS),
        "storageCrs": CRS84,
        "geometryType": layer.geometry,
        "kinds": {key: {"zh": label.zh, "en": label.en} for key, label in layer.kinds.items()},
        "numberOfFeatures": store.count(layer.id),
        "links": [
            _link(f"{base}/collections/{layer.id}", "self", MediaType.json, layer.zh),
            _link(
                f"{base}/collections/{layer.id}/items",
                "items",
                MediaType.geojson,
                f"{layer.zh} (GeoJSON)",
            ),
            _link(
                f"{base}/collections/{layer.id}/items?f=html",
                "items",
                "text/html",
                f"{layer.zh} (HTML)",
            ),
            _link(
                f"{base}/collections/{layer.id}/queryables",
                QUERYABLES_REL,
                MediaType.schema,
                f"{layer.zh}: queryables",
            ),
        ],
    }
    if extent is not None:
        body["extent"] = {"spatial": {"bbox": [list(extent)], "crs": CRS84}}
    samples = count_samples(store, layer)
    if samples is not None:
        # Counts that include sample features say so (DESIGN.md, honesty of the data).
        body["sampleFeatures"] = samples
        if samples:
            body["sampleNote"] = sample_note(samples, body["numberOfFeatures"])
    return body


@router.get(
    "/collections",
    summary="The layers",
    tags=["OGC API - Features"],
    response_class=Response,
    responses=_ok("Collections"),
)
def collections(
    request: Request, store: StoreDep, catalog: CatalogDep, f: FormatParam = None
) -> Response:
    base = _base(request)
    body = {
        "links": [_link(f"{base}/collections", "self", MediaType.json, "Collections")],
        "collections": [
            _collection_body(request, store, layer) for layer in catalog.layers.values()
        ],
    }
    if wants_html(request, f):
        return _vary(html.page("图层 Collections", html.collections(body)))
    return _json(body)


@router.get(
    "/collections/{collectionId}",
    summary="One layer",
    tags=["OGC API - Features"],
    response_class=Response,
    responses=_ok("Collection"),
)
def collection(
    request: Request,
    collection_id: CollectionId,
    store: StoreDep,
    catalog: CatalogDep,
    f: FormatParam = None,
) -> Response:
    layer = catalog.layer(collection_id)
    body = _collection_body(request, store, layer)
    if wants_html(request, f):
        return _vary(html.page(layer.zh, html.collections({"collections": [body]})))
    return _json(body)


def _property_filters(request: Request, layer: Layer, catalog: Catalog) -> dict[str, list[str]]:
    """Every query parameter that is not a standard one must name a filterable
    property; values are comma-separated alternatives, checked against the catalog."""
    filters: dict[str, list[str]] = {}
    for name in request.query_params:
        if name in _ITEMS_PARAMS:
            continue
        spec = layer.properties.get(name)
        if spec is None or name not in layer.filterable:
            allowed = sorted(_ITEMS_PARAMS | layer.filterable)
            raise InvalidParameter(
                name, f"unknown parameter for collection {layer.id}; known: {', '.join(allowed)}"
            )
        values = [
            v.strip()
            for raw in request.query_params.getlist(name)
            for v in raw.split(",")
            if v.strip()
        ]
        if not values:
            raise InvalidParameter(name, "needs a value")
        if len(values) > MAX_LIST_VALUES:
            raise InvalidParameter(name, f"at most {MAX_LIST_VALUES} values, got {len(values)}")
        if spec.type == "kind":
            allowed_values = set(layer.kinds)
        elif spec.type in {"enum", "list"}:
            allowed_values = set(catalog.values[spec.values or ""])
        elif spec.type == "boolean":
            allowed_values = {"true", "false"}
        else:
            allowed_values = set()
        if spec.type == "town_code":
            bad = [v for v in values if not re.fullmatch(r"[0-9]{9}", v)]
            if bad:
                raise InvalidParameter(name, f"{bad[0]!r} is not a 9-digit town code")
        if spec.type == "integer":
            bad = [v for v in values if not re.fullmatch(r"[0-9]{1,18}", v)]
            if bad:
                raise InvalidParameter(name, f"{bad[0]!r} is not a whole number")
        if allowed_values:
            bad = [v for v in values if v not in allowed_values]
            if bad:
                raise InvalidParameter(
                    name, f"unknown value {bad[0]!r}; allowed: " + ", ".join(sorted(allowed_values))
                )
        filters[name] = values
    return filters


@router.get(
    "/collections/{collectionId}/items",
    summary="Features of a layer",
    description="GeoJSON features ordered by id. Besides the parameters below, any "
    "filterable property of the layer may be given as `name=value[,value...]` "
    "(e.g. `sample=false`, `position_quality=address`, `services=free_admission`); "
    "unknown parameters are rejected with 400.",
    tags=["OGC API - Features"],
    response_class=Response,
    responses=_ok("FeatureCollection", MediaType.geojson.value, headers=_CONTENT_CRS_DOC),
)
async def items(
    request: Request,
    collection_id: CollectionId,
    catalog: CatalogDep,
    crs: Annotated[CrsReference, Depends(output_crs)],
    bbox: Annotated[
        str | None,
        Query(
            description="west,south,east,north in degrees (WGS-84 unless `bbox-crs` says "
            "otherwise; a 3D box's 6 numbers are accepted, heights ignored); features "
            "intersecting the box",
            examples=["118.0,36.78,118.1,36.83"],
            json_schema_extra={
                "type": "array",
                "items": {"type": "number"},
                "minItems": 4,
                "maxItems": 6,
            },
        ),
    ] = None,
    bbox_crs: Annotated[
        str | None,
        Query(
            alias="bbox-crs",
            description=f"Coordinate system of `bbox`: `{CRS84_URI}` or `wgs84` "
            "(the default), the EPSG:4326 URI (then `bbox` is south,west,north,east: "
            "latitude first), or the non-standard `gcj02` and `bd09`",
            json_schema_extra={"enum": OGC_CRS_NAMES},
        ),
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"Page size, 1..{MAX_LIMIT}")
    ] = 100,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Number of features to skip")
    ] = 0,
    kind: Annotated[
        str | None,
        Query(
            description="Kinds to keep, comma-separated (see the collection's `kinds`)",
            json_schema_extra={"type": "array", "items": {"type": "string"}},
        ),
    ] = None,
    town_code: Annotated[
        str | None,
        Query(
            description="9-digit town codes to keep, comma-separated (facility layers)",
            json_schema_extra={
                "type": "array",
                "items": {"type": "string", "pattern": "^[0-9]{9}$"},
            },
        ),
    ] = None,
    status: Annotated[
        str | None,
        Query(
            description="Statuses to keep: open, planned, suspended (facility layers)",
            json_schema_extra={"type": "array", "items": {"type": "string"}},
        ),
    ] = None,
    filter: Annotated[
        str | None,
        Query(
            description="A CQL2 filter over the collection's queryables "
            "(`/collections/{id}/queryables`), e.g. `kind = 'bank' AND "
            "A_CONTAINS(eligible, ('veteran'))` or `S_DWITHIN(geometry, "
            "POINT(118.05 36.81), 1000, 'meters')`",
            examples=["kind IN ('bank','hospital') AND status = 'open'"],
        ),
    ] = None,
    filter_lang: Annotated[
        str | None,
        Query(
            alias="filter-lang",
            description="`cql2-text` (the default) or `cql2-json`; `cql-text`, the "
            "draft name GDAL's OGC API driver sends, is read as `cql2-text`",
            json_schema_extra={"enum": list(FILTER_LANGS)},
        ),
    ] = None,
    filter_crs: Annotated[
        str | None,
        Query(
            alias="filter-crs",
            description=f"Coordinate system of the filter's geometries: `{CRS84_URI}` "
            "(the default) or the EPSG:4326 URI (latitude first)",
            json_schema_extra={"enum": list(OGC_CRS_URIS)},
        ),
    ] = None,
    f: FormatParam = None,
) -> Response:
    layer = catalog.layer(collection_id)
    box = parse_bbox(bbox, CrsReference.parse(bbox_crs, "bbox-crs"))
    filters = _property_filters(request, layer, catalog)
    if (
        not filters
        and filter is None
        and filter_lang is None
        and filter_crs is None
        and f in (None, "json", "geojson")
        and not wants_html(request, f)
    ):
        response = await _served_page(request, layer, crs, box, limit, offset)
        if response is not None:
            return response
    return await run_in_threadpool(
        _items_from_store,
        request,
        layer,
        catalog,
        crs,
        box,
        filters,
        (filter, filter_lang, filter_crs),
        limit,
        offset,
        f,
    )


async def _served_page(
    request: Request,
    layer: Layer,
    crs: CrsReference,
    box: BBox | None,
    limit: int,
    offset: int,
) -> Response | None:
    """The JSON page of the common question (a box, a page) of a point layer:
    from memory while the store says nothing changed, else from its index in
    a thread; None when ``Store.query`` must answer. A box of no width is
    left to each store's own test (PostGIS meets a degenerate one its own way)."""
    if layer.geometry != "Point" or (box is not None and not (box[0] < box[2] and box[1] < box[3])):
        return None
    serving = _serving(request)
    page = serving.cached_page(layer.id, box, limit, offset, crs)
    if page is None:
        page = await run_in_threadpool(serving.page, layer.id, box, limit, offset, crs)
        if page is None:
            return None
    returned = len(page.fragments)
    body = collection_bytes(
        page.fragments,
        crs,
        numberMatched=page.number_matched,
        numberReturned=returned,
        links=_page_links(request, layer, limit, offset, returned, page.number_matched),
    )
    return _vary(Response(body, media_type=MediaType.geojson, headers=_content_crs(crs)))


def _items_from_store(
    request: Request,
    layer: Layer,
    catalog: Catalog,
    crs: CrsReference,
    box: BBox | None,
    filters: dict[str, list[str]],
    cql2: tuple[str | None, str | None, str | None],
    limit: int,
    offset: int,
    f: str | None,
) -> Response:
    """A page of features as ``Store.query`` answers it (in a thread)."""
    where = parse_cql2(*cql2, layer, catalog)
    store = request.app.state.runtime.store
    page = store.query(layer.id, bbox=box, filters=filters, where=where, limit=limit, offset=offset)
    links = _page_links(request, layer, limit, offset, len(page.features), page.number_matched)
    body = feature_collection(
        page.features,
        crs,
        numberMatched=page.number_matched,
        numberReturned=len(page.features),
        links=links,
    )
    if wants_html(request, f):
        return _vary(html.page(f"{layer.zh} ({page.number_matched})", html.items(layer, body)))
    return _json(body, MediaType.geojson, headers=_content_crs(crs))


def _page_links(
    request: Request, layer: Layer, limit: int, offset: int, returned: int, matched: int
) -> list[dict[str, str]]:
    """A page's self, collection, next and previous links; each keeps the
    request's parameters but ``offset`` and ``f``."""
    collection = f"{_base(request)}/collections/{layer.id}"
    kept = urlencode(
        [(k, v) for k, v in request.query_params.multi_items() if k not in {"offset", "f"}]
    )
    # The parameters are encoded once; only the offset differs between links.
    start = f"{collection}/items?{kept}&offset=" if kept else f"{collection}/items?offset="

    def href(new_offset: int) -> str:
        return f"{start}{new_offset}"

    links = [
        _link(href(offset), "self", MediaType.geojson, "This page"),
        _link(collection, "collection", MediaType.json, layer.zh),
    ]
    if offset + returned < matched:
        links.append(_link(href(offset + limit), "next", MediaType.geojson, "Next page"))
    if offset > 0:
        links.append(
            _link(href(max(0, offset - limit)), "prev", MediaType.geojson, "Previous page")
        )
    return links


@router.get(
    "/collections/{collectionId}/queryables",
    summary="What a filter may ask of a layer",
    description="The properties a CQL2 `filter` may name, as JSON Schema "
    "(OGC API - Features Part 3), with their types and allowed values.",
    tags=["OGC API - Features"],
    response_class=Response,
    responses=_ok("Queryables", MediaType.schema.value),
)
async def collection_queryables(
    request: Request, collection_id: CollectionId, catalog: CatalogDep, f: FormatParam = None
) -> Response:
    layer = catalog.layer(collection_id)
    schema_id = f"{_base(request)}/collections/{layer.id}/queryables"
    body = queryables(layer, catalog, schema_id)
    if wants_html(request, f):
        return _vary(html.page(f"{layer.zh}: queryables", html.json_block(body)))
    return _vary(_json(body, MediaType.schema))


def _content_crs(crs: CrsReference) -> dict[str, str]:
    """Part 2's ``Content-Crs`` header; GCJ-02 and BD-09 have no URI to name."""
    return {"Content-Crs": f"<{crs.uri}>"} if crs.uri else {}


@router.get(
    "/collections/{collectionId}/items/{featureId}",
    summary="One feature",
    operation_id="getFeature",
    tags=["OGC API - Features"],
    response_class=Response,
    responses=_ok(
        "Feature",
        MediaType.geojson.value,
        headers={
            "ETag": {"schema": {"type": "string"}, "description": "Send as If-Match"},
            **_CONTENT_CRS_DOC,
        },
        links=change_links(),
    ),
)
async def item(
    request: Request,
    collection_id: CollectionId,
    feature_id: FeatureId,
    catalog: CatalogDep,
    crs: Annotated[CrsReference, Depends(output_crs)],
    f: FormatParam = None,
) -> Response:
    layer = catalog.layer(collection_id)
    if f in (None, "json", "geojson") and not wants_html(request, f):
        return await _served_item(request, layer, feature_id, crs)
    return await run_in_threadpool(_item_from_store, request, layer, feature_id, crs, f)


async def _served_item(
    request: Request, layer: Layer, feature_id: str, crs: CrsReference
) -> Response:
    """The JSON view of one feature: finished bytes from memory while the
    store says nothing changed, else read in a thread (and kept)."""
    serving = _serving(request)
    base = _base(request)
    variant = (crs, base)
    answer = serving.cached_item(layer.id, feature_id, variant)
    if answer is None:
        render = partial(_item_bytes, layer, crs, base)
        answer = await run_in_threadpool(serving.item, layer.id, feature_id, variant, render)
    return _item_answer(request, answer, crs)


def _item_body(feature: StoredFeature, layer: Layer, crs: CrsReference, base: str) -> dict:
    body = feature_to_geojson(feature, crs)
    if crs.system != CoordinateSystem.wgs84:
        body["coordinate_system"] = crs.system.value
    body["links"] = [
        _link(
            f"{base}/collections/{layer.id}/items/{feature.id}",
            "self",
            MediaType.geojson,
            "This feature",
        ),
        _link(f"{base}/collections/{layer.id}", "collection", MediaType.json, layer.zh),
    ]
    return body


def _item_bytes(layer: Layer, crs: CrsReference, base: str, feature: StoredFeature) -> bytes:
    return orjson.dumps(_item_body(feature, layer, crs, base))


def _item_answer(request: Request, answer: ItemAnswer, crs: CrsReference) -> Response:
    if _none_match(request.headers.get("if-none-match"), answer.etag):
        # The client's copy is current (only the JSON view carries the ETag).
        return _vary(Response(status_code=304, headers={"ETag": answer.etag}))
    headers = {"ETag": answer.etag, **_content_crs(crs)}
    return _vary(Response(answer.body, media_type=MediaType.geojson, headers=headers))


def _item_from_store(
    request: Request, layer: Layer, feature_id: str, crs: CrsReference, f: str | None
) -> Response:
    """One feature read from the store (in a thread), in either view."""
    feature = request.app.state.runtime.store.get(layer.id, feature_id)
    as_html = wants_html(request, f)
    if not as_html:
        answer = ItemAnswer(_item_bytes(layer, crs, _base(request), feature), feature.etag)
        return _item_answer(request, answer, crs)
    body = _item_body(feature, layer, crs, _base(request))
    return _vary(
        html.page(
            str(feature.properties.get("name", feature.id)),
            html.items(layer, {"features": [body]}),
        )
    )


def _plain_query(request: Request, known: frozenset[str]) -> dict[str, str] | None:
    """The query as one value per name, if every name is in ``known``, given
    once and not blank (as the query contract wants them); else None."""
    params: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in known or name in params or not value.strip():
            return None
        params[name] = value
    return params


def _whole_number(raw: str | None, default: int, lowest: int, highest: int) -> int | None:
    """A plain decimal within bounds, as the declared ``int`` parameter takes it; else None."""
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12):
        return None
    value = int(raw)
    return value if lowest <= value <= highest else None


_FORMAT_QUERY = frozenset({"f"})
_ITEM_QUERY = frozenset({"crs", "f"})
_PAGE_QUERY = frozenset({"bbox", "bbox-crs", "limit", "offset", "crs", "f"})


async def _item_shortcut(request: Request) -> Response | None:
    params = _plain_query(request, _ITEM_QUERY)
    if params is None or params.get("f") not in (None, "json", "geojson"):
        return None
    layer = request.app.state.runtime.catalog.layers.get(request.path_params["collectionId"])
    try:
        crs = CrsReference.parse(params.get("crs"), "crs")
    except InvalidParameter:
        return None
    if layer is None or wants_html(request, params.get("f")):
        return None
    return await _served_item(request, layer, request.path_params["featureId"], crs)


async def _page_shortcut(request: Request) -> Response | None:
    params = _plain_query(request, _PAGE_QUERY)
    if params is None or params.get("f") not in (None, "json", "geojson"):
        return None
    limit = _whole_number(params.get("limit"), 100, 1, MAX_LIMIT)
    offset = _whole_number(params.get("offset"), 0, 0, MAX_OFFSET)
    layer = request.app.state.runtime.catalog.layers.get(request.path_params["collectionId"])
    if limit is None or offset is None or layer is None or wants_html(request, params.get("f")):
        return None
    try:
        crs = CrsReference.parse(params.get("crs"), "crs")
        box = parse_bbox(params.get("bbox"), CrsReference.parse(params.get("bbox-crs"), "bbox-crs"))
    except InvalidParameter:
        return None
    return await _served_page(request, layer, crs, box, limit, offset)


async def _conformance_shortcut(request: Request) -> Response | None:
    params = _plain_query(request, _FORMAT_QUERY)
    if params is None or params.get("f") not in (None, "json", "geojson"):
        return None
    if wants_html(request, params.get("f")):
        return None
    return _json({"conformsTo": CONFORMANCE})


#: Route endpoint -> its shortcut (``_ShortcutRoute``).
_SHORTCUTS: dict[Callable[..., Any], Callable[[Request], Awaitable[Response | None]]] = {
    conformance: _conformance_shortcut,
    item: _item_shortcut,
    items: _page_shortcut,
}

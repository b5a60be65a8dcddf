"""The ``geo-service`` command line."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from geo_service.catalog import Catalog, load_catalog
from geo_service.crs import CoordinateSystem
from geo_service.errors import GeoServiceError
from geo_service.exports import ExportFormat, export_layer
from geo_service.seeding import seed_store
from geo_service.settings import Settings
from geo_service.store import Store, open_store

app = typer.Typer(
    help="Zhangdian support-resource map service (张店区拥军服务资源地图服务).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Store file or postgresql:// URL (default: $GEO_SERVICE_STORE, or "
        "zhangdian.gpkg in the user data folder)",
    ),
]


def _settings(store: str | None) -> Settings:
    settings = Settings()
    if store:
        settings.store = store
    return settings


@contextmanager
def _opened(store: str | None) -> Iterator[tuple[Store, Catalog]]:
    """Open the store, seeding it from ``layers/`` when it is new, as the server does."""
    settings = _settings(store)
    catalog = load_catalog(settings.layers_dir)
    opened = open_store(settings.store, catalog)
    try:
        if opened.is_empty():
            seed_store(opened, catalog)
        yield opened, catalog
    finally:
        opened.close()


def _fail(error: GeoServiceError) -> None:
    errors.print(f"[bold red]error:[/] {error.detail}")
    raise typer.Exit(2)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    store: StoreOption = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes")] = 1,
) -> None:
    """Serve the API and maps (seeds a new store from layers/ on first run)."""
    import uvicorn

    settings = _settings(store)
    # Workers are separate processes: hand them the store through the environment.
    os.environ["GEO_SERVICE_STORE"] = settings.store
    try:
        with _opened(settings.store) as (opened, _catalog):
            console.print(f"store: {opened.location}")
    except GeoServiceError as error:
        _fail(error)
    uvicorn.run(
        "geo_service.api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
    )


@app.command()
def layers(store: StoreOption = None) -> None:
    """List the layers with their feature counts, per kind."""
    try:
        with _opened(store) as (opened, catalog):
            table = Table(title=f"{catalog.district_zh} · {opened.location}")
            table.add_column("id", no_wrap=True)
            table.add_column("图层 layer")
            table.add_column("features", justify="right")
            table.add_column("sample", justify="right")
            table.add_column("kinds", no_wrap=True)
            for layer in catalog.layers.values():
                features = opened.all_features(layer.id)
                counts: dict[str, int] = {}
                for feature in features:
                    kind = str(feature.properties.get("kind"))
                    counts[kind] = counts.get(kind, 0) + 1
                samples = sum(1 for f in features if f.properties.get("sample"))
                kinds = "\n".join(f"{k} {n}" for k, n in sorted(counts.items()))
                table.add_row(
                    layer.id,
                    layer.zh,
                    str(len(features)),
                    str(samples) if layer.is_facility else "-",
                    kinds,
                )
            console.print(table)
    except GeoServiceError as error:
        _fail(error)


@app.command()
def export(
    layer: Annotated[str, typer.Argument(help="Layer id, e.g. green_channels")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write")],
    fmt: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="File format")
    ] = ExportFormat.geojson,
    crs: Annotated[
        CoordinateSystem, typer.Option(help="Output coordinates")
    ] = CoordinateSystem.wgs84,
    store: StoreOption = None,
) -> None:
    """Export one layer as GeoJSON, GeoPackage or CSV."""
    try:
        with _opened(store) as (opened, catalog):
            written = export_layer(catalog.layer(layer), opened.all_features(layer), fmt, out, crs)
    except GeoServiceError as error:
        _fail(error)
    console.print(f"wrote {written} features of {layer} to {out}")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="geo-service")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

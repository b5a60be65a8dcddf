"""The ``geo-service`` command line."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from geo_service.errors import GeoServiceError, InvalidParameter
from geo_service.outputs.exports import ExportFormat, export_layer
from geo_service.services.queries import split_list
from geo_service.settings import Settings
from geo_service.sources.crs import CoordinateSystem
from geo_service.sources.style import Tiles


class Language(StrEnum):
    """A page's language (the coverage map)."""

    zh = "zh"
    en = "en"


if TYPE_CHECKING:
    from geo_service.runtime import Runtime

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
def _runtime(store: str | None, *, seed: bool = True) -> Iterator[Runtime]:
    """The runtime every command starts from, as the server does (a new store
    is seeded from the shipped layers unless ``seed`` is false)."""
    from geo_service.runtime import Runtime

    with Runtime.open(_settings(store), seed=seed) as rt:
        yield rt


def _fail(error: GeoServiceError) -> None:
    errors.print(f"[bold red]error:[/] {escape(error.detail)}")
    raise typer.Exit(2)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    store: StoreOption = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes")] = 1,
    ssl_certfile: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Serve HTTPS: the certificate (PEM)"),
    ] = None,
    ssl_keyfile: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="Serve HTTPS: its private key (PEM)"),
    ] = None,
) -> None:
    """Serve the API and maps (seeds a new store from layers/ on first run).

    Browsers give a page the resident's position (定位我) only over HTTPS:
    put a reverse proxy with a certificate in front, or give uvicorn one here."""
    import uvicorn

    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise typer.BadParameter("give both --ssl-certfile and --ssl-keyfile, or neither")
    settings = _settings(store)
    # Workers are separate processes: hand them the store through the environment.
    os.environ["GEO_SERVICE_STORE"] = settings.store
    try:
        with _runtime(settings.store) as rt:
            # A database URL may carry a password: never print it.
            shown = re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", rt.store.location)
            console.print(f"store: {shown}")
    except GeoServiceError as error:
        _fail(error)
    uvicorn.run(
        "geo_service.api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        # uvicorn kills a worker that does not answer its health ping within
        # 5 s; on a busy small machine a worker loading the geo stack and
        # building its indexes can take longer, and was killed in a loop.
        timeout_worker_healthcheck=60,
        # X-Forwarded-For is trusted only through forwarded_allow_ips (the app
        # adds uvicorn's proxy middleware then); uvicorn's own default trusts
        # 127.0.0.1, which would let a local client choose its rate-limit address.
        proxy_headers=False,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )


@app.command()
def layers(store: StoreOption = None) -> None:
    """List the layers with their feature counts, per kind."""
    try:
        with _runtime(store) as rt:
            catalog = rt.catalog
            table = Table(title=f"{catalog.district_zh} · {rt.store.location}")
            table.add_column("id", no_wrap=True)
            table.add_column("图层 layer")
            table.add_column("features", justify="right")
            table.add_column("sample", justify="right")
            table.add_column("kinds", no_wrap=True)
            for layer in catalog.layers.values():
                features = rt.store.all_features(layer.id)
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
        with _runtime(store) as rt:
            written = export_layer(
                rt.catalog.layer(layer), rt.store.all_features(layer), fmt, out, crs
            )
    except GeoServiceError as error:
        _fail(error)
    console.print(f"wrote {written} features of {layer} to {out}")


@app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(help="CSV, XLSX, GeoJSON, GeoPackage or Shapefile")],
    layer: Annotated[str, typer.Option("--layer", "-l", help="Target layer, e.g. stations")],
    kind: Annotated[
        str | None,
        typer.Option(help="For --layer context: the kind the file holds (road, water, landmark)"),
    ] = None,
    crs: Annotated[
        CoordinateSystem | None,
        typer.Option(help="Coordinates in the file (default: from column names, else wgs84)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and report; write nothing")
    ] = False,
    skip_invalid: Annotated[
        bool, typer.Option("--skip-invalid", help="Load the valid rows even if others have errors")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the row report to FILE.csv or FILE.xlsx")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Import a town office's file: every row checked and reported, all or nothing."""
    from rich.progress import track

    from geo_service.outputs.import_report import print_report, write_report
    from geo_service.services.importing import apply_import, plan_import
    from geo_service.sources.importing import ImportRefused

    def progress(rows):
        rows = list(rows)
        return track(rows, description="checking rows", console=errors) if len(rows) > 300 else rows

    actor = f"import:{os.environ.get('USER') or 'cli'}"
    try:
        with _runtime(store) as rt:
            catalog = rt.catalog
            geocoder = rt.geocoders.get()
            plan = plan_import(
                file,
                layer,
                catalog,
                rt.store,
                crs=crs,
                actor=actor,
                progress=progress,
                geocoder=geocoder,
                limits=rt.settings.import_limits(),
                kind=kind,
            )
            print_report(plan, console)
            if report is not None:
                if not report.parent.is_dir():
                    raise InvalidParameter("report", f"no such folder: {report.parent}")
                write_report(plan, report)
                console.print(f"report written to {report}")
            if dry_run:
                console.print("[bold]dry run[/]: nothing written")
                raise typer.Exit(1 if plan.errors else 0)
            try:
                results = apply_import(plan, rt.store, skip_invalid=skip_invalid, actor=actor)
            except ImportRefused as refused:
                errors.print(f"[bold red]refused:[/] {escape(refused.detail)}")
                raise typer.Exit(1) from None
    except GeoServiceError as error:
        _fail(error)
    for layer_id, result in results.items():
        console.print(
            f"{layer_id}: {len(result.inserted)} inserted, {len(result.updated)} updated, "
            f"{len(result.unchanged)} unchanged"
            + (f", {len(result.deleted)} removed" if result.deleted else "")
        )


@app.command()
def template(
    layer: Annotated[str, typer.Argument(help="Facility layer id, e.g. stations")],
    out: Annotated[Path, typer.Argument(help="The template to write (FILE.xlsx)")],
    store: StoreOption = None,
) -> None:
    """Write the import template of a layer: Chinese headers, drop-downs, a 说明 sheet."""
    from geo_service.services.import_template import import_template

    try:
        if out.suffix.lower() != ".xlsx":
            raise InvalidParameter(
                "file", f"the template is an XLSX file: name it .xlsx, not {out.name!r}"
            )
        if not out.parent.is_dir():
            raise InvalidParameter("file", f"no such folder: {out.parent}")
        with _runtime(store) as rt:
            out.write_bytes(import_template(rt, layer))
    except GeoServiceError as error:
        _fail(error)
    console.print(f"wrote the import template of {layer} to {escape(str(out))}")


@app.command()
def geocode(
    address: Annotated[str, typer.Argument(help="Address or place, e.g. 张店区共青团西路54号")],
    limit: Annotated[int, typer.Option(min=1, max=20, help="Candidates to show")] = 5,
    store: StoreOption = None,
) -> None:
    """Address to positions, offline: ranked candidates with match level and confidence."""
    from geo_service.services.geocode import geocode_address

    try:
        with _runtime(store) as rt:
            geocoder = rt.geocoders.get()
            candidates = geocode_address(geocoder, address, limit)
    except GeoServiceError as error:
        _fail(error)
    if not candidates:
        errors.print(f"no candidate for {address!r} in the offline gazetteer of 张店区")
        raise typer.Exit(1)
    table = Table(title=f"地理编码 geocode: {escape(address)}")
    for column in (
        "#",
        "经度 lon",
        "纬度 lat",
        "级别 level",
        "置信度 confidence",
        "匹配 matched",
        "镇街 town",
    ):
        table.add_column(column)
    for number, c in enumerate(candidates, start=1):
        table.add_row(
            str(number),
            f"{c.lon:.6f}",
            f"{c.lat:.6f}",
            c.level,
            f"{c.confidence:.2f}",
            escape(c.matched),
            c.town_code or "-",
        )
    console.print(table)


@app.command()
def coverage(
    radius: Annotated[str, typer.Option(help="5min, 10min, 15min or metres")] = "15min",
    layers: Annotated[str | None, typer.Option(help="Facility layers, comma-separated")] = None,
    kinds: Annotated[str | None, typer.Option(help="Kinds, comma-separated")] = None,
    p: Annotated[int, typer.Option("-p", "--p", min=0, max=10, help="New sites to suggest")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Write the workbook (.xlsx)")] = None,
    map_out: Annotated[Path | None, typer.Option("--map", help="Write the coverage map")] = None,
    lang: Annotated[
        Language, typer.Option(help="The workbook's and the map's language")
    ] = Language.zh,
    population: Annotated[
        Path | None,
        typer.Option(help="Population points or cells (人口 column) instead of town totals"),
    ] = None,
    candidates: Annotated[
        Path | None, typer.Option(help="Candidate sites (经度/纬度) instead of grid cells")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Coverage per town, compliance with the 2022 opinion, and where new sites should go."""
    from geo_service.analysis.coverage import parse_radius
    from geo_service.outputs.coverage_workbook import write_workbook
    from geo_service.services.planning import Question, coverage_report, recommend_sites

    try:
        with _runtime(store) as rt:
            question = Question(
                tuple(split_list(layers)) or None,
                tuple(split_list(kinds)) or None,
                parse_radius(radius),
                population_file=str(population) if population else None,
                candidates_file=str(candidates) if candidates else None,
            )
            report = coverage_report(rt, question)
            recommendation = recommend_sites(rt, question, p) if p else None
            towns = rt.store.all_features("towns")
    except GeoServiceError as error:
        _fail(error)
    table = Table(
        title=f"镇街覆盖 coverage within {report['radius_m']:.0f} m walking "
        f"({report['facilities']} facilities)",
        caption=report["distance"],
    )
    for column in (
        "镇街 town",
        "设施",
        "人口",
        "覆盖人口",
        "覆盖面积",
        "中位距离",
        "P90",
        "站",
        "驿站",
        "教育",
        "医疗",
        "绿色通道",
    ):
        table.add_column(column, justify="right" if column not in {"镇街 town"} else "left")
    mark = {True: "✓", False: "✗"}
    for town in report["towns"]:
        table.add_row(
            escape(town["town_name"]) + ("*" if town["population_estimated"] else ""),
            str(town["facilities"]),
            f"{town['population']:,}",
            f"{town['population_covered_share']:.0%}",
            f"{town['area_covered_share']:.0%}",
            "-" if town["median_distance_m"] is None else f"{town['median_distance_m']:,.0f} m",
            "-" if town["p90_distance_m"] is None else f"{town['p90_distance_m']:,.0f} m",
            mark[town["has_station"]],
            mark[town["has_support_post"]],
            mark[town["has_education_site"]],
            mark[town["has_health"]],
            mark[town["has_green_channel"]],
        )
    console.print(table)
    console.print("* population is a placeholder (no figure for that town)")
    if report["sample_note"]:
        console.print(f"[bold yellow]{escape(report['sample_note'])}[/]")
    if recommendation:
        console.print(
            f"suggested {p} new sites (MCLP, {recommendation['solve_seconds']} s): covered "
            f"{recommendation['covered_before']:,} → {recommendation['covered_after']:,} people; "
            f"greedy {recommendation['greedy']['covered_after']:,}"
        )
        for number, site in enumerate(recommendation["sites"], start=1):
            console.print(
                f"  {number}. {site['lon']:.6f}, {site['lat']:.6f} in {escape(site['town_name'])}: "
                f"+{site['gain']:,} people"
            )
    if out is not None:
        write_workbook(out, report, recommendation, lang.value)
        console.print(f"workbook written to {out}")
    if map_out is not None:
        from geo_service.web.coverage_map import coverage_map

        map_out.write_text(
            coverage_map(report, towns, recommendation, lang.value), encoding="utf-8"
        )
        console.print(f"map written to {map_out}")


db_app = typer.Typer(help="The PostGIS store: create its tables, load data into it.")
app.add_typer(db_app, name="db")


@db_app.command("init")
def db_init(store: StoreOption = None) -> None:
    """Create PostGIS and the layer tables in the database (idempotent)."""
    settings = _settings(store)
    if not settings.store.startswith(("postgresql://", "postgres://")):
        _fail(
            InvalidParameter(
                "store", "db init needs a postgresql:// URL (--store or GEO_SERVICE_STORE)"
            )
        )
    try:
        with _runtime(settings.store, seed=False):
            pass
    except GeoServiceError as error:
        _fail(error)
    console.print("database ready")


@db_app.command("load")
def db_load(
    source: Annotated[Path, typer.Option("--from", help="An embedded store (.gpkg) to copy")],
    store: StoreOption = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Validate every row fully, even from a file this service wrote under "
            "the same catalog",
        ),
    ] = False,
) -> None:
    """Copy every layer from an embedded store into the store, in one transaction.

    Rows new to a layer go in bulk (one audit record per layer: action load,
    the counts, the file's name and SHA-256); rows the store already holds are
    updated with an audit record each. A bad row, an id given twice or the id
    of a deleted feature stops the load and nothing is written.

    How rows are checked: a file this service wrote, whose rows were all
    validated when written against a catalog equal to today's (its layers,
    kinds, properties and value lists), goes into an empty point layer by a
    fast path: names, addresses, phones and ids are checked by their rules;
    every value of the other columns (kinds, lists, status, hours, towns,
    dates, flags, extras) by full validation of the first row holding it; a
    row stored in another form than the service writes is refused; positions
    must be finite points in range, no text may hold a control character, no
    id may be given twice or be reserved. Any other file, any other layer,
    and every row with --check, is validated fully against today's catalog."""
    from geo_service.services.loading import load_store

    try:
        if not source.is_file():
            raise InvalidParameter("from", f"no such store file: {source}")
        with _runtime(str(source), seed=False) as origin, _runtime(store, seed=False) as target:
            results = load_store(origin.store, target.store, source, actor="db load", check=check)
    except GeoServiceError as error:
        _fail(error)
    for layer_id, result in results.items():
        console.print(
            f"{layer_id}: {len(result.inserted)} inserted, {len(result.updated)} updated, "
            f"{len(result.unchanged)} unchanged"
            + (f", {len(result.deleted)} removed" if result.deleted else "")
        )


tokens_app = typer.Typer(help="Bearer tokens for staff who edit (admin, or editor of towns).")
app.add_typer(tokens_app, name="tokens")


def _cli_actor() -> str:
    """Who the audit trail names for a change made at the command line."""
    return f"cli:{os.environ.get('USER') or 'unknown'}"


@tokens_app.command("add")
def tokens_add(
    name: Annotated[str, typer.Option("--name", help="Who holds it (shown in the audit trail)")],
    role: Annotated[str, typer.Option("--role", help="admin or editor")],
    towns: Annotated[
        str | None, typer.Option("--towns", help="Editor's town codes, comma-separated")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Create a token. It is printed once, on the last line, and never again."""
    from geo_service.services.access import issue_token

    try:
        with _runtime(store) as rt:
            known = [town.id for town in rt.store.all_features("towns")]
            token = issue_token(rt.store, name, role, split_list(towns), known)
    except GeoServiceError as error:
        _fail(error)
    errors.print(f"token {name!r} ({role}) created; keep it secret, it is shown only now:")
    print(token)


@tokens_app.command("list")
def tokens_list(store: StoreOption = None) -> None:
    """Every token's name, role, towns and dates (never the token)."""
    with _runtime(store) as rt:
        records = rt.store.tokens()
    table = Table("name", "role", "towns", "created", "revoked")
    for record in records:
        table.add_row(
            escape(record.name),
            record.role,
            ", ".join(record.towns) or "all",
            record.created_at[:19],
            (record.revoked_at or "")[:19],
        )
    console.print(table)


@tokens_app.command("revoke")
def tokens_revoke(name: str, store: StoreOption = None) -> None:
    """Revoke a token by name: refused at once, also by a running service."""
    try:
        with _runtime(store) as rt:
            rt.store.revoke_token(name)
    except GeoServiceError as error:
        _fail(error)
    console.print(f"token {name!r} revoked")


users_app = typer.Typer(
    help="People who sign in to the office console at /admin/ (admin, or editor of towns)."
)
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Option("--name", help="Sign-in name (shown in the audit trail)")],
    role: Annotated[str, typer.Option("--role", help="admin or editor")],
    towns: Annotated[
        str | None, typer.Option("--towns", help="Editor's town codes, comma-separated")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Create a user. Their initial password is printed once, on the last line."""
    from geo_service.services import accounts

    try:
        with _runtime(store) as rt:
            known = [town.id for town in rt.store.all_features("towns")]
            password = accounts.add_user(rt.store, name, role, split_list(towns), known)
    except GeoServiceError as error:
        _fail(error)
    errors.print(f"user {name!r} ({role}) created; hand them this initial password:")
    print(password)


@users_app.command("passwd")
def users_passwd(
    name: str,
    stdin: Annotated[
        bool, typer.Option("--stdin", help="Read the new password from standard input")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Give a user a new password (printed on the last line unless read from
    --stdin); it ends their sessions and clears a lock."""
    from geo_service.services import accounts

    given = sys.stdin.readline().rstrip("\r\n") if stdin else None
    try:
        with _runtime(store) as rt:
            password = accounts.change_password(rt.store, name, given)
    except GeoServiceError as error:
        _fail(error)
    if stdin:
        console.print(f"password of {name!r} changed; their sessions have ended")
        return
    errors.print(f"password of {name!r} changed; their sessions have ended. New password:")
    print(password)


@users_app.command("disable")
def users_disable(name: str, store: StoreOption = None) -> None:
    """Stop a user from signing in; their sessions end at once."""
    from geo_service.services import accounts

    try:
        with _runtime(store) as rt:
            accounts.disable_user(rt.store, name)
    except GeoServiceError as error:
        _fail(error)
    console.print(f"user {name!r} disabled")


@users_app.command("enable")
def users_enable(name: str, store: StoreOption = None) -> None:
    """Let a disabled user sign in again (with their password as it was)."""
    from geo_service.services import accounts

    try:
        with _runtime(store) as rt:
            accounts.enable_user(rt.store, name)
    except GeoServiceError as error:
        _fail(error)
    console.print(f"user {name!r} enabled")


@users_app.command("list")
def users_list(store: StoreOption = None) -> None:
    """Every user's name, role, towns, dates and lock (never a password or hash)."""
    with _runtime(store) as rt:
        records = rt.store.users()
    table = Table("name", "role", "towns", "created", "disabled", "locked until")
    for record in records:
        table.add_row(
            escape(record.name),
            record.role,
            ", ".join(record.towns) or "all",
            record.created_at[:19],
            (record.disabled_at or "")[:19],
            (record.locked_until or "")[:19],
        )
    console.print(table)


@app.command()
def audit(
    town: Annotated[str | None, typer.Option(help="Town code (before or after the change)")] = None,
    user: Annotated[str | None, typer.Option(help="Token name that made the change")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer id")] = None,
    feature: Annotated[str | None, typer.Option(help="Feature id")] = None,
    since: Annotated[str | None, typer.Option(help="From this date (YYYY-MM-DD)")] = None,
    until: Annotated[str | None, typer.Option(help="Up to this date, inclusive")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    store: StoreOption = None,
) -> None:
    """Who changed what and when, newest first."""
    from geo_service.store import AuditQuery

    query = AuditQuery(layer, feature, town, user, since, until, limit, 0)
    try:
        with _runtime(store) as rt:
            records, total = rt.store.audit_log(query, newest_first=True)
    except GeoServiceError as error:
        _fail(error)
    table = Table("#", "when (UTC)", "who", "action", "layer", "feature", "town")
    for record in records:
        town_text = record["town_code"] or ""
        if record["previous_town_code"]:
            town_text = f"{record['previous_town_code']} → {town_text}"
        table.add_row(
            str(record["seq"]),
            record["at"][:19],
            escape(record["actor"]),
            record["action"],
            record["layer_id"],
            # A bulk load's one record stands for the whole layer.
            escape(record["feature_id"]) or "(整层 whole layer)",
            town_text,
        )
    console.print(table)
    console.print(f"{len(records)} of {total} records")


@app.command()
def restore(
    feature_id: Annotated[str, typer.Argument(metavar="ID", help="The deleted feature's id")],
    layer: Annotated[str | None, typer.Option(help="Its layer, if the id is in several")] = None,
    store: StoreOption = None,
) -> None:
    """Bring back a deleted feature as it was when deleted (recorded in the audit trail)."""
    from geo_service.errors import NotFound
    from geo_service.store import AuditQuery

    try:
        with _runtime(store) as rt:
            if layer is None:
                records, _ = rt.store.audit_log(AuditQuery(feature_id=feature_id, limit=10**6))
                # "retire": a sample site retired on the console's Sample-to-real screen.
                layers = sorted(
                    {r["layer_id"] for r in records if r["action"] in {"delete", "retire"}}
                )
                if not layers:
                    raise NotFound(f"{feature_id} has never been deleted")
                if len(layers) > 1:
                    raise InvalidParameter("layer", f"{feature_id} was deleted in: {layers}")
                layer = layers[0]
            change = rt.store.restore(layer, feature_id, actor=_cli_actor())
    except GeoServiceError as error:
        _fail(error)
    assert change.after is not None
    console.print(f"restored {layer}/{feature_id} (ETag {change.after.etag})")


def _layer_of(rt: Runtime, feature_id: str, layer: str | None) -> str:
    """The layer of ``feature_id`` as the audit trail knows it, when not given."""
    from geo_service.errors import NotFound
    from geo_service.store import AuditQuery

    if layer is not None:
        return rt.catalog.layer(layer).id
    records, _ = rt.store.audit_log(AuditQuery(feature_id=feature_id, limit=10**6))
    layers = sorted({record["layer_id"] for record in records})
    if not layers:  # a site a bulk load brought, never edited since
        layers = sorted(
            layer_id
            for layer_id in rt.catalog.layers
            if rt.store.feature_records(layer_id, feature_id)
        )
    if not layers:
        raise NotFound(f"the audit trail has never seen {feature_id}")
    if len(layers) > 1:
        raise InvalidParameter(
            "layer", f"{feature_id} is in several layers: {layers}; give --layer"
        )
    return layers[0]


def _cli_principal():
    """The command line acts as the office (it runs where the store is)."""
    from geo_service.services.access import Principal, Role

    return Principal(_cli_actor(), Role.admin, frozenset())


@app.command()
def history(
    feature_id: Annotated[str, typer.Argument(metavar="ID", help="The site's id")],
    layer: Annotated[str | None, typer.Option(help="Its layer, if the id is in several")] = None,
    restore_to: Annotated[
        int | None,
        typer.Option("--restore-to", min=1, help="Put the site back to this version"),
    ] = None,
    store: StoreOption = None,
) -> None:
    """A site's history, newest first: when, who, what changed; or restore it to a version."""
    from geo_service.services.history import restore_version, site_history

    try:
        with _runtime(store) as rt:
            layer_id = _layer_of(rt, feature_id, layer)
            if restore_to is not None:
                # The command reads and writes at once: no other version to protect.
                site, written = restore_version(
                    rt, _cli_principal(), layer_id, feature_id, restore_to, "*"
                )
            else:
                timeline = site_history(rt, _cli_principal(), layer_id, feature_id)
    except GeoServiceError as error:
        _fail(error)
    if restore_to is not None:
        what = "restored to" if written else "already is"
        console.print(
            f"{layer_id}/{escape(feature_id)} {what} version {restore_to} (ETag {site.etag})"
        )
        return
    title = f"{escape(str(timeline['name'] or feature_id))} ({layer_id}/{escape(feature_id)})"
    if timeline["deleted"]:
        title += " 已删除 deleted"
    table = Table(
        "版本 version", "时间 when (UTC)", "操作人 who", "操作 action", "变更 changes", title=title
    )
    for version in timeline["versions"]:
        lines = []
        if version["changes"] and all(c["before"] is None for c in version["changes"]):
            # A creation sets every field: what it set is the next version's "before".
            lines.append(f"新建 created ({len(version['changes'])} fields)")
        for change in [] if lines else version["changes"]:
            if change["field"] == "geometry":
                lines.append(f"位置 moved {version['moved_m']:,.1f} m")
            else:
                lines.append(f"{change['field']}: {change['before']!r} → {change['after']!r}")
        table.add_row(
            str(version["version"]),
            version["at"][:19],
            escape(version["actor"]),
            version["action"],
            escape("\n".join(lines)),
        )
    console.print(table)
    console.print(f"geo-service history {escape(feature_id)} --restore-to VERSION restores one")


@app.command()
def supervision(
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="The state at the end of this day, Beijing time (default: now)"
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Compare with the end of this earlier day")
    ] = None,
    xlsx: Annotated[Path | None, typer.Option("--xlsx", help="Write the workbook (.xlsx)")] = None,
    store: StoreOption = None,
) -> None:
    """Supervision (督办): each town's items of the 2022 opinion, progress per unit, changes."""
    from geo_service.services.supervision import STATUSES, supervision_report

    try:
        with _runtime(store) as rt:
            report = supervision_report(rt, None, as_of, since)
    except GeoServiceError as error:
        _fail(error)
    items = report["items"]
    table = Table(
        "镇街 town",
        *(item["name"] for item in items),
        "达标 met",
        "示例 samples",
        title=f"督办 supervision as of {report['as_of']} ({report['time_zone']})",
    )
    for town in report["towns"]:
        table.add_row(
            escape(str(town["town_name"] or town["town_code"])),
            *(
                f"{'✓' if town['meets'][item['item']] else '✗'} {town['counts'][item['item']]}"
                for item in items
            ),
            f"{town['items_met']}/{len(items)}",
            str(town["sample_sites_counted"]),
        )
    console.print(table)
    units = Table("责任单位 unit", "正常开放", "筹建中", "暂停服务", "示例 samples")
    for unit in report["units"]:
        units.add_row(
            escape(unit["responsible_unit"]),
            *(str(unit[status]) for status in STATUSES),
            str(unit["sample_sites"]),
        )
    console.print(units)
    console.print(escape(report["samples"]["note"]))
    if report["changes"] is not None:
        console.print(f"changes since {report['since']['date']}:")
        for change in report["changes"]["towns"]:
            console.print(
                f"  {escape(str(change['town_name']))} {change['item_name']}: "
                f"{change['count_before']} → {change['count_after']}"
                + (
                    " (达标 met → 未达标 not met)"
                    if change["met_before"] and not change["met_after"]
                    else ""
                )
                + (
                    " (未达标 → 达标 now met)"
                    if change["met_after"] and not change["met_before"]
                    else ""
                )
            )
        for change in report["changes"]["units"]:
            console.print(
                f"  {escape(change['responsible_unit'])} {change['status']}: "
                f"{change['before']} → {change['after']}"
            )
        if not report["changes"]["towns"] and not report["changes"]["units"]:
            console.print("  no change 没有变化")
    if xlsx is not None:
        from geo_service.outputs.supervision_workbook import supervision_workbook

        xlsx.write_bytes(supervision_workbook(report))
        console.print(f"workbook written to {escape(str(xlsx))}")


@app.command()
def backup(
    out: Annotated[Path, typer.Option("--out", help="The backup file to write")],
    store: StoreOption = None,
) -> None:
    """A consistent copy of the store, safe to take while the service runs."""
    settings = _settings(store)
    out = out.expanduser()
    if out.exists():
        _fail(InvalidParameter("out", f"{out} exists; choose a new file name"))
    partial = out.with_name(f".{out.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        with _runtime(settings.store, seed=False) as rt:
            rt.store.backup(partial)
        if not settings.store.startswith(("postgresql://", "postgres://")):
            with _runtime(str(partial), seed=False) as copy:
                problems = copy.store.check()
                counts = {layer_id: copy.store.count(layer_id) for layer_id in copy.catalog.layers}
            if problems:
                raise InvalidParameter("out", "the copy failed its check: " + "; ".join(problems))
            console.print(", ".join(f"{k}: {v}" for k, v in counts.items()))
        os.replace(partial, out)
    except GeoServiceError as error:
        partial.unlink(missing_ok=True)
        _fail(error)
    console.print(f"backup written to {out}")


@app.command()
def check(store: StoreOption = None) -> None:
    """Check the embedded store file (integrity, spatial indexes); exit 1 on a problem."""
    settings = _settings(store)
    try:
        with _runtime(settings.store, seed=False) as rt:
            problems = rt.store.check()
            counts = {layer_id: rt.store.count(layer_id) for layer_id in rt.catalog.layers}
    except GeoServiceError as error:
        _fail(error)
    for problem in problems:
        errors.print(f"[bold red]problem:[/] {escape(problem)}")
    console.print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    if problems:
        raise typer.Exit(1)
    console.print("ok")


print_app = typer.Typer(help="Printed maps (PDF): the atlas, one town, a resident's sheet.")
app.add_typer(print_app, name="print")

SizeOption = Annotated[str, typer.Option("--size", help="A4 or A3")]
OrientationOption = Annotated[str, typer.Option("--orientation", help="portrait or landscape")]


AllowLocalQrOption = Annotated[
    bool,
    typer.Option(
        "--allow-local-qr",
        help="Print QR codes even when they point to this computer (127.0.0.1, localhost): "
        "without GEO_SERVICE_PUBLIC_URL the print is refused otherwise",
    ),
]


def _print_job(
    store: str | None,
    process_id: str,
    inputs: dict,
    out: Path,
    title: str,
    *,
    allow_local_qr: bool | None = None,
) -> None:
    """Print through the same process and job records as the server, with a
    progress bar. ``allow_local_qr``: the pages carry QR codes (None: they
    don't), checked before any work: they point to ``public_url``, and to
    this computer only when that is asked for."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from geo_service.services import printing
    from geo_service.services.jobs import run_here

    qr_target = None

    with Progress(
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=errors
    ) as bar:
        task = bar.add_task(title, total=100)
        try:
            with _runtime(store) as rt:
                if allow_local_qr is not None:
                    qr_target = printing.qr_base_url(rt, allow_local=allow_local_qr)
                    # The job prints the codes it was allowed to.
                    rt.settings.allow_local_qr = rt.settings.allow_local_qr or allow_local_qr
                record, output = run_here(
                    rt,
                    process_id,
                    inputs,
                    actor=_cli_actor(),
                    listener=lambda percent: bar.update(task, completed=percent),
                )
        except GeoServiceError as error:
            bar.stop()
            _fail(error)
        bar.update(task, completed=100)
    out.write_bytes(output.content)
    console.print(f"wrote {out} ({len(output.content) / 1024:.0f} KiB, job {record.id})")
    if qr_target is not None:
        console.print(f"QR codes point to {escape(qr_target)}")
        if printing.is_loopback(qr_target):
            errors.print(
                "[bold yellow]warning:[/] the QR codes open on this computer only "
                "(--allow-local-qr); set GEO_SERVICE_PUBLIC_URL before printing to hand out"
            )


@print_app.command("atlas")
def print_atlas(
    out: Annotated[Path, typer.Option("--out", "-o", help="PDF file to write")],
    size: SizeOption = "A4",
    orientation: OrientationOption = "portrait",
    layers: Annotated[str | None, typer.Option(help="Facility layers, comma-separated")] = None,
    allow_local_qr: AllowLocalQrOption = False,
    store: StoreOption = None,
) -> None:
    """The district overview, then every town: map, numbered sites, index table, QR code."""
    inputs = {"size": size, "orientation": orientation, "layers": split_list(layers) or None}
    _print_job(store, "print-atlas", inputs, out, "地图册 atlas", allow_local_qr=allow_local_qr)


@print_app.command("town")
def print_town(
    code: Annotated[str, typer.Argument(help="9-digit town code, e.g. 370303002")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PDF file to write")],
    size: SizeOption = "A4",
    orientation: OrientationOption = "portrait",
    allow_local_qr: AllowLocalQrOption = False,
    store: StoreOption = None,
) -> None:
    """One town's pages (with the QR code of the town on the web map)."""
    inputs = {"code": code, "size": size, "orientation": orientation}
    _print_job(store, "print-town", inputs, out, f"镇街 town {code}", allow_local_qr=allow_local_qr)


@print_app.command("nearest")
def print_nearest(
    out: Annotated[Path, typer.Option("--out", "-o", help="PDF file to write")],
    lon: Annotated[float | None, typer.Option(help="Longitude (WGS-84)")] = None,
    lat: Annotated[float | None, typer.Option(help="Latitude (WGS-84)")] = None,
    address: Annotated[str | None, typer.Option(help="An address in 张店区 instead")] = None,
    store: StoreOption = None,
) -> None:
    """A one-page sheet for one resident: the nearest sites of each layer, large type."""
    inputs = {"lon": lon, "lat": lat, "address": address}
    _print_job(store, "print-nearest", inputs, out, "最近服务点 nearest sheet")


jobs_app = typer.Typer(help="Jobs: printing, coverage and imports run by the server or here.")
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("list")
def jobs_list(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20, store: StoreOption = None
) -> None:
    """The newest jobs with their status and progress."""
    with _runtime(store, seed=False) as rt:
        records = rt.store.jobs(limit)
    table = Table("process", "status", "%", "created (UTC)", "who", "message")
    table.add_column("id", no_wrap=True)
    for record in records:
        table.add_row(
            record.process,
            record.status,
            str(record.progress),
            record.created[:19],
            escape(record.actor or "-"),
            escape(record.message or ""),
            record.id,
        )
    console.print(table)


@jobs_app.command("watch")
def jobs_watch(
    job_id: Annotated[str, typer.Argument(metavar="ID", help="The job's id")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write its result")] = None,
    store: StoreOption = None,
) -> None:
    """Follow a job (a server's too) to its end with a progress bar; write its result."""
    import time

    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    with _runtime(store, seed=False) as rt:
        record = rt.store.job(job_id)
        if record is None:
            _fail(InvalidParameter("id", f"no job {job_id!r}"))
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=errors
        ) as bar:
            task = bar.add_task(record.process, total=100)
            while record.status in {"accepted", "running"}:
                bar.update(task, completed=record.progress)
                time.sleep(0.5)
                record = rt.store.job(job_id) or record
            bar.update(task, completed=record.progress)
        console.print(f"{record.process}: {record.status} — {escape(record.message or '')}")
        if record.status != "successful":
            raise typer.Exit(1)
        if out is not None:
            result = rt.store.job_result(job_id)
            if result is None:
                _fail(InvalidParameter("id", f"job {job_id} has no result any more"))
            out.write_bytes(bytes(result[0]))
            console.print(f"wrote {out} ({len(result[0]) / 1024:.0f} KiB)")


@app.command("map")
def web_map(
    out: Annotated[Path, typer.Option("--out", "-o", help="HTML file to write")],
    tiles: Annotated[
        Tiles | None, typer.Option(help="Basemap tiles (default: $GEO_SERVICE_TILES, or none)")
    ] = None,
    store: StoreOption = None,
) -> None:
    """Write the web map as one standalone HTML file that opens from disk with
    no server: every layer, script and style inlined; nearest computed in the page."""
    from geo_service.web.page import build_page, page_data

    settings = _settings(store)
    tiles = tiles or settings.tiles
    try:
        with _runtime(store) as rt:
            catalog = rt.catalog
            data = page_data(catalog, rt.store, rt.site_indexes.get(), tiles)
            html = build_page(
                catalog, rt.style, tiles=tiles, tianditu_key=settings.tianditu_key, data=data
            )
    except GeoServiceError as error:
        _fail(error)
    out.write_text(html, encoding="utf-8")
    sites = sum(len(data["layers"][layer.id]["features"]) for layer in catalog.facility_layers)
    size = len(html.encode()) / 1024
    console.print(f"wrote {out} ({size:.0f} KiB, {sites} sites, tiles {tiles})")


@app.command()
def nearest(
    lon: Annotated[str | None, typer.Option(help="Longitude (WGS-84 unless --crs)")] = None,
    lat: Annotated[str | None, typer.Option(help="Latitude (WGS-84 unless --crs)")] = None,
    address: Annotated[
        str | None, typer.Option(help="Instead of --lon/--lat: an address in 张店区")
    ] = None,
    k: Annotated[str, typer.Option("-k", "--k", help="Number of sites (1..100)")] = "5",
    layers: Annotated[str | None, typer.Option(help="Facility layers, comma-separated")] = None,
    kind: Annotated[str | None, typer.Option(help="Kinds, comma-separated")] = None,
    services: Annotated[str | None, typer.Option(help="Services all required")] = None,
    eligible: Annotated[str | None, typer.Option(help="Beneficiary type served")] = None,
    open_now: Annotated[bool, typer.Option("--open-now", help="Only sites open now")] = False,
    open_at: Annotated[str | None, typer.Option(help="Only sites open at ISO date-time")] = None,
    max_distance: Annotated[str | None, typer.Option(help="Metres")] = None,
    crs: Annotated[str | None, typer.Option(help="wgs84, gcj02 or bd09")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print GeoJSON")] = False,
    store: StoreOption = None,
) -> None:
    """The nearest sites that serve a resident, nearest first."""
    import orjson

    from geo_service.services.nearest import geocoded_params, nearest_geojson, parse_nearest_query

    given = {
        "lon": lon,
        "lat": lat,
        "k": k,
        "layers": layers,
        "kind": kind,
        "services": services,
        "eligible": eligible,
        "open_at": open_at,
        "open_now": "true" if open_now else None,
        "max_distance": max_distance,
        "crs": crs,
        "address": address,
    }
    params = {name: value for name, value in given.items() if value is not None}
    try:
        with _runtime(store) as rt:
            catalog = rt.catalog
            extra = None
            if address is not None:
                geocoder = rt.geocoders.get()
                params, extra = geocoded_params(params, geocoder)
            query = parse_nearest_query(params, catalog)
            body = orjson.loads(nearest_geojson(query, rt.site_indexes, extra))
    except GeoServiceError as error:
        _fail(error)
    if as_json:
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    where = f"{params['lon']}, {params['lat']}"
    if extra:
        placed = extra["geocoded"]["properties"]
        where = (
            f"{address} → {where} ({placed['level']}: {placed['matched']}, "
            f"confidence {placed['confidence']})"
        )
    table = Table(
        title=f"最近的服务点 nearest to {escape(where)}",
        caption=f"步行时间 walk time: {body['walking_assumption']}",
    )
    for column in (
        "#",
        "名称 name",
        "类型 kind",
        "距离 distance",
        "步行 walk",
        "营业 open now",
        "电话 phone",
    ):
        table.add_column(column)
    kinds = {
        key: label.zh for layer in catalog.facility_layers for key, label in layer.kinds.items()
    }
    for number, feature in enumerate(body["features"], start=1):
        props = feature["properties"]
        state = {True: "营业中 open", False: "休息 closed", None: "未知 unknown"}[props["open_now"]]
        table.add_row(
            str(number),
            escape(str(props["name"])),
            kinds.get(props["kind"], props["kind"]),
            f"{props['distance_m']:.0f} m",
            "-" if props["walk_minutes"] is None else f"{props['walk_minutes']:.0f} min",
            state,
            escape(str(props.get("phone") or "-")),
        )
    console.print(table)
    if not body["features"]:
        console.print("没有符合条件的服务点 no site matches")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="geo-service")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

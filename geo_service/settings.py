"""Service settings: one object, read from ``GEO_SERVICE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from platformdirs import user_cache_dir, user_data_dir
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from geo_service.sources.catalog import WriteLimits, default_layers_dir
from geo_service.sources.style import Tiles, default_style_file
from geo_service.sources.tables import ImportLimits

__all__ = ["Settings", "default_store_path"]


def default_store_path() -> Path:
    """``zhangdian.gpkg`` under the user's data directory (never inside the package)."""
    return Path(user_data_dir("geo-service", appauthor=False)) / "zhangdian.gpkg"


class Settings(BaseSettings):
    """Built where it is needed (app factory, CLI), never at import time."""

    model_config = SettingsConfigDict(env_prefix="GEO_SERVICE_", extra="ignore")

    store: str = Field(
        default_factory=lambda: str(default_store_path()),
        description="Embedded store file path, or a postgresql:// URL",
    )
    layers_dir: Path = Field(
        default_factory=default_layers_dir,
        description="Folder with catalog.toml and the sample layers that seed a new store",
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str = Field(
        default="",
        description="Public base URL, e.g. https://map.example.gov.cn: absolute links "
        "start with it (relative links without it) and printed QR codes point at it "
        "(without it, at http://host:port, which phones elsewhere cannot reach: set it "
        "in deployment). Never taken from the request's Host header",
    )
    allow_local_qr: bool = Field(
        default=False,
        description="Print QR codes even when they would point to this computer only "
        "(no public_url, or one on 127.0.0.1/localhost): for test prints. Without it such "
        "pages carry a line saying why there is no code instead",
    )
    style_file: Path = Field(
        default_factory=default_style_file,
        description="Map style (colours, glyphs, title, view) that office staff edit",
    )
    tiles: Tiles = Field(
        default=Tiles.none,
        description="Basemap tiles: none (offline, drawn from the boundaries), osm, "
        "tianditu (needs tianditu_key) or amap (GCJ-02: the map shifts everything)",
    )
    tianditu_key: str | None = Field(default=None, description="Key for tianditu tiles")
    max_body_bytes: int = Field(
        default=1_000_000, ge=1_000, description="Largest request body for a single feature"
    )
    max_import_bytes: int = Field(
        default=20_000_000, ge=1_000, description="Largest file sent to POST .../import"
    )
    store_pool_size: int = Field(
        default=4,
        ge=1,
        le=64,
        description="Database connections each process keeps at most (server "
        "processes and job workers alike; mind PostgreSQL's max_connections)",
    )
    job_workers: int = Field(
        default=2,
        ge=1,
        le=32,
        description="Worker processes for heavy jobs (atlas, town PDFs, coverage, "
        "site recommendation, imports) per server process",
    )
    job_queue: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Jobs waiting or running per server process; past this, new "
        "heavy work is refused with 503 and Retry-After",
    )
    job_retry_after: int = Field(
        default=10, ge=1, le=3600, description="Seconds a client refused by a full queue waits"
    )
    spool_dir: Path = Field(
        default_factory=lambda: Path(user_cache_dir("geo-service", appauthor=False)) / "spool",
        description="Where uploaded import files wait for their job (workers read them)",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Web origins allowed to call the API from a browser (CORS), e.g. "
        '["https://www.zhangdian.gov.cn"]; none by default',
    )
    frame_ancestors: str = Field(
        default="'self'",
        description="Who may embed the map in a frame (CSP frame-ancestors), e.g. "
        "\"'self' https://www.zhangdian.gov.cn\"",
    )
    # Import limits: ImportLimits' defaults (``import_limits()`` builds them).
    # Checked while a file is read.
    import_max_rows: int = Field(
        default=50_000, ge=1, description="Rows (or features) a file to import may hold"
    )
    import_max_columns: int = Field(
        default=200, ge=1, description="Columns with data in one row of a file to import"
    )
    import_max_cell_chars: int = Field(
        default=10_000, ge=1, description="Characters in one cell of a file to import"
    )
    import_max_cells: int = Field(
        default=2_000_000,
        ge=1,
        description="Rows times columns of a file to import; also bounds an XLSX sheet's "
        "declared range and its merged cells",
    )
    import_max_unpacked_bytes: int = Field(
        default=100_000_000,
        ge=1_000,
        description="Bytes an XLSX file or a zipped Shapefile may unpack to, and the "
        "largest GeoJSON or GeoPackage file to import",
    )

    # Per-client rate limits: token buckets per client address, in each server
    # process (uvicorn --workers 4 allows four times as much); 0 turns one off.
    rate_heavy_per_minute: int = Field(
        default=30,
        ge=0,
        description="Heavy requests (/print/*, /coverage*, /processes/*/execution, "
        "POST .../import) one client may make a minute; past it, 429 with Retry-After",
    )
    rate_heavy_burst: int = Field(
        default=30, ge=1, description="Heavy requests one client may make at once"
    )
    rate_per_minute: int = Field(
        default=0,
        ge=0,
        description="Requests of any kind one client may make a minute (0: no limit). "
        "Off by default: behind a proxy not named in forwarded_allow_ips, every "
        "resident would share one address",
    )
    rate_burst: int = Field(
        default=600, ge=1, description="Requests of any kind one client may make at once"
    )
    rate_clients: int = Field(
        default=10_000,
        ge=1,
        description="Clients the rate limits remember (the least recent are forgotten)",
    )
    forwarded_allow_ips: list[str] = Field(
        default_factory=list,
        description='Proxies (addresses or networks, e.g. ["127.0.0.1", "10.0.0.0/8"]) '
        "whose X-Forwarded-For names the client; none by default, so a client "
        "cannot choose its own address (uvicorn started by hand: add --no-proxy-headers, "
        "as its own default trusts 127.0.0.1)",
    )

    # The office console: people sign in with a password (services.accounts).
    session_idle_minutes: int = Field(
        default=30,
        ge=1,
        le=24 * 60,
        description="A console session unused this long ends (each request starts the count again)",
    )
    session_max_hours: int = Field(
        default=12, ge=1, le=7 * 24, description="A console session ends this long after sign-in"
    )
    sign_in_max_failures: int = Field(
        default=5,
        ge=1,
        le=100,
        description="Wrong passwords in a row that lock an account (in every worker)",
    )
    sign_in_lock_minutes: int = Field(
        default=15, ge=1, le=24 * 60, description="How long a locked account stays locked"
    )
    sign_in_per_minute: int = Field(
        default=10,
        ge=0,
        description="Sign-in attempts one client address may make a minute, per server "
        "process (0: no limit); past it, 429 with Retry-After",
    )
    sign_in_burst: int = Field(
        default=10, ge=1, description="Sign-in attempts one client address may make at once"
    )

    def import_limits(self) -> ImportLimits:
        """The limits every import (API, CLI, jobs) checks files against."""
        return ImportLimits(
            max_rows=self.import_max_rows,
            max_columns=self.import_max_columns,
            max_cell_chars=self.import_max_cell_chars,
            max_cells=self.import_max_cells,
            max_unpacked_bytes=self.import_max_unpacked_bytes,
        )

    # Write limits: WriteLimits' defaults (``write_limits()`` builds them); the
    # runtime gives them to the catalog, which checks every write.
    town_tolerance_m: float = Field(
        default=500.0,
        ge=0,
        le=5_000,
        description="While the town boundaries are approximate (the shipped ones), a "
        "site's declared town is kept when the site lies within this many metres of "
        "it, and a site this close to the district still counts as in it; beyond, the "
        "position decides the town (official boundaries are exact)",
    )
    extra_max_count: int = Field(
        default=20,
        ge=0,
        le=1_000,
        description="Extra properties (beyond the catalog's) a site may carry",
    )
    extra_max_key_chars: int = Field(
        default=64, ge=1, le=1_000, description="Characters in an extra property's name"
    )
    extra_max_value_chars: int = Field(
        default=2_000,
        ge=1,
        le=100_000,
        description="Characters in one extra property's value (as JSON, for arrays and objects)",
    )
    extra_max_bytes: int = Field(
        default=8_192,
        ge=1,
        le=1_000_000,
        description="Bytes of a site's extra properties together, as JSON",
    )
    extra_max_depth: int = Field(
        default=3, ge=0, le=32, description="Levels of arrays and objects in an extra value"
    )

    def write_limits(self) -> WriteLimits:
        """The limits every write (API, imports, restores) is checked against."""
        return WriteLimits(
            max_extras=self.extra_max_count,
            max_extra_key_chars=self.extra_max_key_chars,
            max_extra_value_chars=self.extra_max_value_chars,
            max_extras_bytes=self.extra_max_bytes,
            max_extra_depth=self.extra_max_depth,
            town_tolerance_m=self.town_tolerance_m,
        )

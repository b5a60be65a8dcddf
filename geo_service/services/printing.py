"""Printed maps as use cases: the atlas, a town's pages, a resident's sheet.

The options are checked here, once, for the API, the CLI and the job
workers; the drawing is ``outputs.printing``'s.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from geo_service.errors import InvalidParameter
from geo_service.runtime import Runtime
from geo_service.services.geocode import geocode_address

__all__ = [
    "ORIENTATIONS",
    "SIZES",
    "PrintOptions",
    "atlas",
    "base_url",
    "is_loopback",
    "nearest_sheet",
    "qr_base_url",
    "qr_target",
    "town",
]

SIZES = ("A4", "A3")
ORIENTATIONS = ("portrait", "landscape")


@dataclass(frozen=True)
class PrintOptions:
    size: str = "A4"
    orientation: str = "portrait"
    layers: tuple[str, ...] | None = None

    @classmethod
    def checked(
        cls,
        rt: Runtime,
        size: str | None = None,
        orientation: str | None = None,
        layers: Sequence[str] | None = None,
    ) -> PrintOptions:
        """Paper, orientation and layers as people write them (``a3``), or
        ``InvalidParameter`` naming the one that is wrong."""
        size = (size or "A4").upper()
        if size not in SIZES:
            raise InvalidParameter("size", "must be A4 or A3")
        orientation = orientation or "portrait"
        if orientation not in ORIENTATIONS:
            raise InvalidParameter("orientation", "must be portrait or landscape")
        known = {layer.id for layer in rt.catalog.facility_layers}
        for layer in layers or ():
            if layer not in known:
                raise InvalidParameter("layers", f"unknown facility layer {layer!r}")
        return cls(size, orientation, tuple(layers) if layers else None)


def base_url(rt: Runtime) -> str:
    """Where printed QR codes and links point: the ``public_url`` setting, else
    the address this service is set to listen on (``http://host:port``, useful
    on that network only: deployments set ``public_url``). A QR code needs an
    absolute URL, but never the request's ``Host`` header, which any client
    chooses.
    """
    settings = rt.settings
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = settings.host
    if host in {"", "0.0.0.0", "::"}:
        # Listening everywhere: this machine's name is the one address that reaches it.
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{settings.port}"


def is_loopback(url: str) -> bool:
    """Whether ``url`` names this computer only (127.0.0.0/8, ::1, localhost):
    a phone scanning a printed QR code for it opens nothing.

    >>> is_loopback("http://127.0.0.1:8000"), is_loopback("http://[::1]:8000")
    (True, True)
    >>> is_loopback("http://localhost:8000"), is_loopback("https://map.example.gov.cn")
    (True, False)
    """
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def qr_target(rt: Runtime) -> str | None:
    """Where the printed QR codes of a job point: ``base_url``, or None when
    that opens on this computer only and ``allow_local_qr`` is not set (the
    pages then say why they carry no code: a code no phone can open is worse
    than none)."""
    url = base_url(rt)
    return None if is_loopback(url) and not rt.settings.allow_local_qr else url


def qr_base_url(rt: Runtime, *, allow_local: bool = False) -> str:
    """``base_url`` for pages that carry QR codes, refused when it names this
    computer only, unless ``allow_local`` says that is meant (a test print):
    an office would otherwise hand out codes no phone can open."""
    url = base_url(rt)
    if qr_target(rt) is None and not allow_local:
        raise InvalidParameter(
            "public_url",
            f"打印的二维码会指向 {url}，只有本机能打开。请设置公开网址 "
            "GEO_SERVICE_PUBLIC_URL（例如 https://map.example.gov.cn），"
            "或用 --allow-local-qr 明确允许本机地址。"
            f" (Printed QR codes would point to {url}, which only this computer opens: set "
            "GEO_SERVICE_PUBLIC_URL, or pass --allow-local-qr to print them anyway.)",
        )
    return url


def atlas(
    rt: Runtime,
    options: PrintOptions,
    *,
    base_url: str | None,
    progress: Callable[[float], None] | None = None,
) -> bytes:
    """The district atlas as PDF bytes."""
    from geo_service.outputs.printing import atlas_pdf

    return atlas_pdf(
        rt.catalog,
        rt.store,
        rt.style,
        base_url=base_url,
        size=options.size,
        orientation=options.orientation,
        layers=list(options.layers) if options.layers else None,
        progress=progress,
    )


def town(rt: Runtime, code: str, options: PrintOptions, *, base_url: str | None) -> bytes:
    """One town's pages as PDF bytes (``FeatureNotFound`` for an unknown code)."""
    from geo_service.outputs.printing import town_pdf

    return town_pdf(
        rt.catalog,
        rt.store,
        rt.style,
        code,
        base_url=base_url,
        size=options.size,
        orientation=options.orientation,
        layers=list(options.layers) if options.layers else None,
    )


def nearest_sheet(
    rt: Runtime,
    *,
    lon: float | None = None,
    lat: float | None = None,
    address: str | None = None,
    size: str = "A4",
    base_url: str,
) -> bytes:
    """A resident's one-page sheet, at a position or an address (offline gazetteer)."""
    from geo_service.outputs.printing import nearest_pdf

    options = PrintOptions.checked(rt, size)
    if address is not None:
        if lon is not None or lat is not None:
            raise InvalidParameter("address", "give either address or lon/lat, not both")
        found = geocode_address(rt.geocoders.get(), address, 1, parameter="address")
        if not found:
            raise InvalidParameter("address", "not found in the offline gazetteer of 张店区")
        lon, lat, where = found[0].lon, found[0].lat, f"{address}（{found[0].matched}）"
        confidence = found[0].confidence
    else:
        if lon is None or lat is None:
            raise InvalidParameter("lon", "give lon and lat, or an address")
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise InvalidParameter("lon", f"coordinates out of range: {lon}, {lat}")
        where = f"{lon:.5f}, {lat:.5f}"
        confidence = None  # a position given as such is exact
    return nearest_pdf(
        rt.catalog,
        rt.store,
        rt.style,
        rt.site_indexes.get(),
        lon,
        lat,
        base_url=base_url,
        where=where,
        size=options.size,
        confidence=confidence,
    )

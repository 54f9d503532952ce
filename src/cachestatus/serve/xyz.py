"""The XYZ side of a served cache whose levels are Web Mercator zooms: the TileJSON 3.0.0
document (``/tiles.json``) that web maps (MapLibre, Leaflet plugins, QGIS) read for the
``/xyz/{z}/{x}/{y}`` template."""

from __future__ import annotations

from typing import Any

from ..grid import MAX_LATITUDE
from .service import Service

#: The TileJSON version written.
TILEJSON_VERSION = "3.0.0"


def xyz_template(base: str) -> str:
    """The ``/xyz/{z}/{x}/{y}`` URL template under the server's URL ``base``."""
    return f"{base}/xyz/{{z}}/{{x}}/{{y}}"


def tile_json(service: Service, base: str) -> dict[str, Any]:
    """The TileJSON of ``service``, whose :attr:`~.Service.zooms` are not empty: the zoom
    range of its levels (zooms between that are not levels answer 404) and its bounds in
    degrees, when known."""
    zooms = sorted(service.zooms.values())
    doc: dict[str, Any] = {
        "tilejson": TILEJSON_VERSION,
        "name": service.name,
        "scheme": "xyz",
        "tiles": [xyz_template(base)],
        "minzoom": zooms[0],
        "maxzoom": zooms[-1],
    }
    if service.lon_lat is not None:
        west, south, east, north = service.lon_lat
        doc["bounds"] = [
            max(west, -180.0),
            max(south, -MAX_LATITUDE),
            min(east, 180.0),
            min(north, MAX_LATITUDE),
        ]
    return doc

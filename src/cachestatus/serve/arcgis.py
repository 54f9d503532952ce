"""The ArcGIS REST documents of a cached map service, as pure functions of a :class:`.Service`.

The shapes are those of ArcGIS Server's cached ``MapServer`` resources that clients read (the
ArcGIS Maps SDK for JavaScript, QGIS, GDAL, esri-leaflet): the service root with its
``tileInfo`` (every LOD), layer 0 (QGIS needs its ``extent``), and the ``tilemap`` answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import __version__
from ..models import Extent, SpatialReference
from .service import Service

#: The ArcGIS Server version the documents claim: 10.2 or later makes the JavaScript SDK ask
#: for tiles without a ``blankTile`` parameter when a tilemap says they exist.
CURRENT_VERSION = 10.91
#: The largest tilemap window answered; a larger request is cut to it (``adjusted: true``).
TILEMAP_CAP = 256


def spatial_reference(sr: SpatialReference) -> dict[str, Any]:
    """``{"wkid", "latestWkid"}`` when the cache names a code, else ``{"wkt"}``."""
    if sr.wkid is None and sr.latest_wkid is None:
        return {"wkt": sr.wkt} if sr.wkt else {}
    wkid = sr.wkid if sr.wkid is not None else sr.latest_wkid
    return {"wkid": wkid, "latestWkid": sr.latest_wkid if sr.latest_wkid is not None else wkid}


def extent_json(service: Service, extent: Extent) -> dict[str, Any]:
    """An ArcGIS envelope with the service's spatial reference."""
    return {
        "xmin": extent.xmin,
        "ymin": extent.ymin,
        "xmax": extent.xmax,
        "ymax": extent.ymax,
        "spatialReference": spatial_reference(service.scheme.spatial_reference),
    }


def _units(service: Service) -> str:
    if service.geographic:
        return "esriDecimalDegrees"
    return "esriMeters" if service.metres_per_unit == 1.0 else "esriUnknownUnits"


def _scales(service: Service) -> tuple[float, float]:
    """(minScale, maxScale): the coarsest and the finest LOD's scales."""
    scales = [lod.scale for lod in service.scheme.lods]
    return max(scales), min(scales)


def tile_info(service: Service) -> dict[str, Any]:
    """``tileInfo``: tile size, format, origin, spatial reference and every LOD, in the
    scheme's order."""
    s = service.scheme
    tile_format = s.tile_format.strip().upper() or "PNG"
    return {
        "rows": s.tile_rows,
        "cols": s.tile_cols,
        "dpi": s.dpi,
        "format": tile_format,
        "compressionQuality": 75 if tile_format in ("JPEG", "JPG", "MIXED", "JPGPNG") else 0,
        "origin": {"x": s.origin_x, "y": s.origin_y},
        "spatialReference": spatial_reference(s.spatial_reference),
        "lods": [
            {"level": lod.level, "resolution": lod.resolution, "scale": lod.scale} for lod in s.lods
        ],
    }


def _layer_summary(service: Service) -> dict[str, Any]:
    min_scale, max_scale = _scales(service)
    return {
        "id": 0,
        "name": service.name,
        "parentLayerId": -1,
        "defaultVisibility": True,
        "subLayerIds": None,
        "minScale": min_scale,
        "maxScale": max_scale,
    }


def root_json(service: Service) -> dict[str, Any]:
    """The service root, ``.../MapServer?f=json``."""
    min_scale, max_scale = _scales(service)
    levels = [lod.level for lod in service.scheme.lods]
    extent = extent_json(service, service.extent)
    info = tile_info(service)
    return {
        "currentVersion": CURRENT_VERSION,
        "serviceDescription": f"Tile cache {service.name}, served read-only by cachestatus",
        "mapName": service.name,
        "description": "",
        "copyrightText": "",
        "supportsDynamicLayers": False,
        "layers": [_layer_summary(service)],
        "tables": [],
        "spatialReference": spatial_reference(service.scheme.spatial_reference),
        "singleFusedMapCache": True,
        "tileInfo": info,
        "initialExtent": extent,
        "fullExtent": extent,
        "minScale": min_scale,
        "maxScale": max_scale,
        "minLOD": min(levels),
        "maxLOD": max(levels),
        "units": _units(service),
        "supportedImageFormatTypes": info["format"],
        "documentInfo": {"Title": service.name, "Comments": f"cachestatus {__version__}"},
        "capabilities": "Map,TilesOnly,Tilemap",
        "supportedQueryFormats": "JSON",
        "exportTilesAllowed": False,
        "maxExportTilesCount": 0,
        "resampling": False,
        "maxRecordCount": 0,
        "maxImageHeight": service.scheme.tile_rows,
        "maxImageWidth": service.scheme.tile_cols,
        "supportedExtensions": "",
    }


def layer_json(service: Service) -> dict[str, Any]:
    """Layer 0, ``.../MapServer/0?f=json``: the one raster layer and its extent."""
    return {
        "currentVersion": CURRENT_VERSION,
        **_layer_summary(service),
        "type": "Raster Layer",
        "description": "",
        "geometryType": None,
        "copyrightText": "",
        "parentLayer": None,
        "subLayers": [],
        "extent": extent_json(service, service.extent),
        "hasAttachments": False,
        "drawingInfo": None,
        "fields": None,
        "capabilities": "Map",
    }


def layers_json(service: Service) -> dict[str, Any]:
    """``.../MapServer/layers?f=json``: the layer list."""
    return {"layers": [layer_json(service)], "tables": []}


def legend_json(service: Service) -> dict[str, Any]:
    """``.../MapServer/legend?f=json``: no legend (a cache has no symbols)."""
    del service
    return {"layers": []}


def info_json() -> dict[str, Any]:
    """``/arcgis/rest/info?f=json``."""
    return {"currentVersion": CURRENT_VERSION, "fullVersion": str(CURRENT_VERSION)}


def services_json(service: Service) -> dict[str, Any]:
    """``/arcgis/rest/services?f=json``: the one service."""
    return {
        "currentVersion": CURRENT_VERSION,
        "folders": [],
        "services": [{"name": service.name, "type": "MapServer"}],
    }


def error_json(code: int, message: str) -> dict[str, Any]:
    """An ArcGIS REST error document."""
    return {"error": {"code": code, "message": message, "details": []}}


def tilemap_window(width: int, height: int) -> tuple[int, int, bool]:
    """The window a tilemap request is answered with: (width, height, adjusted), cut to
    :data:`TILEMAP_CAP` on each side."""
    cut_width, cut_height = min(width, TILEMAP_CAP), min(height, TILEMAP_CAP)
    return cut_width, cut_height, (cut_width, cut_height) != (width, height)


def tilemap_json(
    row: int, col: int, present: npt.NDArray[np.bool_], adjusted: bool
) -> dict[str, Any]:
    """The tilemap answer of a window whose top-left tile is (``row``, ``col``): ``present``
    (height, width), row-major, 1 where a tile is stored."""
    height, width = present.shape
    return {
        "adjusted": adjusted,
        "location": {"left": col, "top": row, "width": width, "height": height},
        "data": present.astype(np.uint8).ravel().tolist(),
    }

"""The WMTS 1.0.0 capabilities of a served cache, a pure function of a :class:`.Service`.

Shaped as ArcGIS Server's WMTS for cached map services: one layer named after the service, one
style ``default``, the tile matrix set ``default028mm`` with one tile matrix per LOD
(identifier = the LOD level, ``ScaleDenominator = resolution x metres per unit / 0.00028``, the
tiling origin as top-left corner, the matrix reaching the far side of the full extent), and
``GoogleMapsCompatible`` (identifiers = zooms) when the scheme is the standard Web Mercator
grid. Tiles are asked for RESTfully
(``.../WMTS/tile/1.0.0/{layer}/{style}/{set}/{matrix}/{row}/{col}``) or by KVP ``GetTile``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ..content import GZIP, JPEG, PBF, PNG, kinds_for
from ..grid import HALF_WORLD, tiles_in_extent
from .service import Service

WMTS_NS = "http://www.opengis.net/wmts/1.0"
OWS_NS = "http://www.opengis.net/ows/1.1"
XLINK_NS = "http://www.w3.org/1999/xlink"
#: The standardized rendering pixel size of WMTS (and of ArcGIS's ``default028mm``), metres.
PIXEL_SIZE = 0.00028
#: The identifier of the tile matrix set built from the cache's own LODs.
OWN_SET = "default028mm"
#: The well-known Web Mercator tile matrix set, offered for the standard grid only.
GOOGLE_SET = "GoogleMapsCompatible"
#: Scale denominator of zoom 0 of ``GoogleMapsCompatible`` (OGC WMTS 1.0.0, annex E.4).
GOOGLE_SCALE_0 = 559082264.0287178
#: The style every layer has.
STYLE = "default"

ET.register_namespace("", WMTS_NS)
ET.register_namespace("ows", OWS_NS)
ET.register_namespace("xlink", XLINK_NS)


def _wmts(tag: str) -> str:
    return f"{{{WMTS_NS}}}{tag}"


def _ows(tag: str) -> str:
    return f"{{{OWS_NS}}}{tag}"


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def scale_denominator(resolution: float, metres_per_unit: float) -> float:
    """The WMTS scale denominator of a resolution (map units per pixel)."""
    return resolution * metres_per_unit / PIXEL_SIZE


def tile_mime(tile_format: str) -> str:
    """The media type WMTS announces for a cache's declared tile format (ArcGIS's
    ``image/jpgpng`` for mixed JPEG and PNG)."""
    kinds = kinds_for(tile_format)
    if kinds == frozenset({PNG}):
        return "image/png"
    if kinds == frozenset({JPEG}):
        return "image/jpeg"
    if kinds is not None and kinds <= {PBF, GZIP}:
        return "application/vnd.mapbox-vector-tile"
    return "image/jpgpng" if kinds is not None and JPEG in kinds else "image/png"


def matrix_size(service: Service, level: int) -> tuple[int, int]:
    """(MatrixWidth, MatrixHeight) of a level: the columns and rows from the tiling origin to
    the far side of the full extent (at least one each)."""
    tiles = tiles_in_extent(service.scheme, level, service.extent)
    return max(1, tiles.col1), max(1, tiles.row1)


def _corner(service: Service, x: float, y: float) -> str:
    return f"{y!r} {x!r}" if service.northing_first else f"{x!r} {y!r}"


def _operations(root: ET.Element, base: str) -> None:
    metadata = _add(root, _ows("OperationsMetadata"))
    for name, restful in (
        ("GetCapabilities", f"{base}/1.0.0/WMTSCapabilities.xml"),
        ("GetTile", f"{base}/tile/1.0.0/"),
    ):
        operation = _add(metadata, _ows("Operation"), name=name)
        get = _add(_add(operation, _ows("DCP")), _ows("HTTP"))
        for href, encoding in ((restful, "RESTful"), (f"{base}?", "KVP")):
            method = _add(get, _ows("Get"), **{f"{{{XLINK_NS}}}href": href})
            allowed = _add(
                _add(method, _ows("Constraint"), name="GetEncoding"), _ows("AllowedValues")
            )
            _add(allowed, _ows("Value"), encoding)


def _layer(contents: ET.Element, service: Service, base: str, mime: str) -> None:
    layer = _add(contents, _wmts("Layer"))
    _add(layer, _ows("Title"), service.name)
    _add(layer, _ows("Identifier"), service.name)
    e = service.extent
    box = _add(layer, _ows("BoundingBox"), crs=service.crs_urn)
    _add(box, _ows("LowerCorner"), _corner(service, e.xmin, e.ymin))
    _add(box, _ows("UpperCorner"), _corner(service, e.xmax, e.ymax))
    if service.lon_lat is not None:
        wgs = _add(layer, _ows("WGS84BoundingBox"), crs="urn:ogc:def:crs:OGC:2:84")
        lon_lat = service.lon_lat
        _add(wgs, _ows("LowerCorner"), f"{lon_lat.xmin!r} {lon_lat.ymin!r}")
        _add(wgs, _ows("UpperCorner"), f"{lon_lat.xmax!r} {lon_lat.ymax!r}")
    style = _add(layer, _wmts("Style"), isDefault="true")
    _add(style, _ows("Title"), "Default Style")
    _add(style, _ows("Identifier"), STYLE)
    _add(layer, _wmts("Format"), mime)
    sets = [OWN_SET, GOOGLE_SET] if service.zooms else [OWN_SET]
    for name in sets:
        _add(_add(layer, _wmts("TileMatrixSetLink")), _wmts("TileMatrixSet"), name)
    template = (
        f"{base}/tile/1.0.0/{service.name}/{{Style}}/{{TileMatrixSet}}/{{TileMatrix}}/"
        "{TileRow}/{TileCol}"
    )
    _add(layer, _wmts("ResourceURL"), format=mime, resourceType="tile", template=template)


def _matrix(
    matrix_set: ET.Element,
    identifier: str,
    scale: float,
    corner: str,
    tile_size: tuple[int, int],
    size: tuple[int, int],
) -> None:
    matrix = _add(matrix_set, _wmts("TileMatrix"))
    _add(matrix, _ows("Identifier"), identifier)
    _add(matrix, _wmts("ScaleDenominator"), repr(scale))
    _add(matrix, _wmts("TopLeftCorner"), corner)
    _add(matrix, _wmts("TileWidth"), str(tile_size[0]))
    _add(matrix, _wmts("TileHeight"), str(tile_size[1]))
    _add(matrix, _wmts("MatrixWidth"), str(size[0]))
    _add(matrix, _wmts("MatrixHeight"), str(size[1]))


def _own_set(contents: ET.Element, service: Service) -> None:
    s = service.scheme
    matrix_set = _add(contents, _wmts("TileMatrixSet"))
    _add(matrix_set, _ows("Title"), "TileMatrix using 0.28mm")
    _add(
        matrix_set,
        _ows("Abstract"),
        "The tile matrix set that has scale values calculated based on the dpi defined by "
        "OGC specification (dpi assumes 0.28mm as the physical distance of a pixel).",
    )
    _add(matrix_set, _ows("Identifier"), OWN_SET)
    _add(matrix_set, _ows("SupportedCRS"), service.crs_urn)
    corner = _corner(service, s.origin_x, s.origin_y)
    for lod in s.lods:
        _matrix(
            matrix_set,
            str(lod.level),
            scale_denominator(lod.resolution, service.metres_per_unit),
            corner,
            (s.tile_cols, s.tile_rows),
            matrix_size(service, lod.level),
        )


def _google_set(contents: ET.Element, service: Service) -> None:
    matrix_set = _add(contents, _wmts("TileMatrixSet"))
    _add(matrix_set, _ows("Title"), GOOGLE_SET)
    _add(matrix_set, _ows("Identifier"), GOOGLE_SET)
    _add(matrix_set, _ows("SupportedCRS"), "urn:ogc:def:crs:EPSG::3857")
    _add(matrix_set, _wmts("WellKnownScaleSet"), "urn:ogc:def:wkss:OGC:1.0:GoogleMapsCompatible")
    corner = f"{-HALF_WORLD!r} {HALF_WORLD!r}"
    for zoom in sorted(service.level_of_zoom):
        side = 1 << zoom
        _matrix(matrix_set, str(zoom), GOOGLE_SCALE_0 / side, corner, (256, 256), (side, side))


def capabilities(service: Service, base: str) -> bytes:
    """The ``WMTSCapabilities.xml`` document (UTF-8), its URLs under ``base``, the service's
    ``.../MapServer/WMTS`` URL."""
    root = ET.Element(_wmts("Capabilities"), version="1.0.0")
    identification = _add(root, _ows("ServiceIdentification"))
    _add(identification, _ows("Title"), service.name)
    _add(identification, _ows("ServiceType"), "OGC WMTS")
    _add(identification, _ows("ServiceTypeVersion"), "1.0.0")
    _operations(root, base)
    contents = _add(root, _wmts("Contents"))
    _layer(contents, service, base, tile_mime(service.scheme.tile_format))
    _own_set(contents, service)
    if service.zooms:
        _google_set(contents, service)
    _add(
        root,
        _wmts("ServiceMetadataURL"),
        **{f"{{{XLINK_NS}}}href": f"{base}/1.0.0/WMTSCapabilities.xml"},
    )
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document

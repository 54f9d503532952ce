"""What the server answers: the routes of ``cachestatus serve`` and their answers, apart from
HTTP itself (:mod:`.server` carries them).

Every URL is matched segment by segment against fixed words; the only values taken from a URL
are the service name (compared, never used) and tile addresses parsed as decimal integers, which
the reader addresses tiles with (:meth:`~cachestatus.formats.base.CacheReader.read_tile`,
:meth:`~cachestatus.formats.base.CacheReader.presence`). No file path is ever built from URL
text: nothing outside the cache can be reached.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..content import GZIP, MEDIA_TYPES, kind_of
from ..errors import CorruptBundle, StatusNotFound
from ..models import Tile
from ..reportpage.html import MAX_EMBEDDED_ROWS
from . import arcgis, wmts, xyz
from .service import Service

if TYPE_CHECKING:
    from ..formats.base import CacheReader

log = logging.getLogger(__name__)

#: Where the service's ArcGIS REST resources are, under ``/arcgis/rest/services/NAME/``.
SERVICES = ("arcgis", "rest", "services")
#: How long clients may keep a tile without asking again, in seconds: short, as a cache being
#: seeded changes under the server.
TILE_MAX_AGE = 60
#: What to do when there is no status store, as the report page's 404 (and ``serve`` at start)
#: says it.
SERVE_REMEDY = (
    "run `cachestatus rebuild` on the cache (or serve with --status) for the report page; the "
    "tiles are served without one"
)
_DECIMAL = re.compile(r"[0-9]{1,10}")
_CALLBACK = re.compile(r"[A-Za-z_$][A-Za-z0-9_$.]{0,99}")
#: Tile file suffixes a RESTful WMTS or XYZ URL may end with.
_SUFFIX = re.compile(r"\.(png|jpe?g|webp|avif|pbf|mvt|lerc)$", re.IGNORECASE)


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, body, media type and any further headers."""

    status: int
    body: bytes = b""
    media_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, status: int, message: str) -> Answer:
        """A one-line plain-text answer."""
        return cls(status, (message + "\n").encode())

    @classmethod
    def json(cls, doc: Any, status: int = 200, indent: int | None = None) -> Answer:
        """A JSON answer."""
        body = json.dumps(doc, indent=indent, allow_nan=False).encode()
        return cls(status, body, "application/json; charset=utf-8")


class BadRequest(Exception):
    """A request that cannot be answered as asked: a malformed number or parameter (400)."""


def decimal(text: str, what: str) -> int:
    """A non-negative decimal integer from URL text.

    Raises:
        BadRequest: ``text`` is not one.
    """
    if not _DECIMAL.fullmatch(text):
        raise BadRequest(f"{what} must be a non-negative decimal integer, not {text[:40]!r}")
    return int(text)


def decimals(texts: Sequence[str], what: Sequence[str]) -> list[int]:
    """:func:`decimal` of each of ``texts``, named by ``what``."""
    return [decimal(text, name) for text, name in zip(texts, what, strict=True)]


def _strip_suffix(text: str) -> str:
    return _SUFFIX.sub("", text)


def blank_tile(width: int, height: int) -> bytes:
    """A fully transparent PNG tile of ``width`` x ``height`` pixels."""
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGBA", (width, height), (0, 0, 0, 0)).save(out, format="PNG", optimize=True)
    return out.getvalue()


@dataclass
class App:
    """The answers of one served cache.

    Attributes:
        reader: the cache's reader, shared by every request (its tile reads are thread safe).
        service: the cache described for its documents.
        status: the status store the report page reads (``None``: the default one).
        blank_tiles: answer an absent tile of an LOD with a transparent tile and the header
            ``blank-tile: true``, unless the request says ``blankTile=false``.
        jsonp: answer ``callback=`` with JSONP (a script any web page can read: only when
            ``--cors`` lets pages read the answers anyway).
        max_rows: ``TaskStatus`` rows ``api/bundles`` answers per level, at most (as ``html``
            embeds; the answer's ``note`` says what was left out).
    """

    reader: CacheReader
    service: Service
    status: Path | None = None
    blank_tiles: bool = False
    jsonp: bool = False
    max_rows: int = MAX_EMBEDDED_ROWS
    _blank: bytes = field(init=False, default=b"")

    def __post_init__(self) -> None:
        if self.blank_tiles:
            self._blank = blank_tile(self.service.scheme.tile_cols, self.service.scheme.tile_rows)
        self._levels = frozenset(self.service.scheme.levels)

    # --- Routing --------------------------------------------------------------------------

    def answer(self, target: str, headers: Mapping[str, str], base: str) -> Answer:
        """The answer to a GET (or HEAD) of ``target`` (the request's path and query), with
        the request's ``headers`` (names in lower case); ``base`` is the server's own URL
        (``http://host:port``), for the documents that name it.

        Malformed numbers and parameters answer 400, unknown paths 404; a corrupt bundle
        answers its tiles 500 with one line, and a line in the log.
        """
        try:
            url = urlsplit(target)
        except ValueError as exc:  # "//[": read as a host, which it cannot be
            return Answer.text(400, f"bad request: {exc}")
        if url.path == "/report/":  # the page's relative URLs need it at /report
            return Answer(301, headers={"Location": "/report"})
        segments = url.path.split("/")[1:]
        if segments and segments[-1] == "":
            segments.pop()  # a trailing slash (esri-leaflet asks for .../MapServer/?f=json)
        query = {key.lower(): value for key, value in parse_qsl(url.query, keep_blank_values=True)}
        try:
            return self._route(segments, query, headers, base)
        except BadRequest as exc:
            return Answer.text(400, f"bad request: {exc}")

    def _route(
        self, segments: list[str], query: dict[str, str], headers: Mapping[str, str], base: str
    ) -> Answer:
        if not segments:
            return Answer(302, headers={"Location": "/report"})
        if segments[0] in ("report", "api"):
            return self._report("/".join(segments), query)
        if segments[0] == "xyz" and len(segments) == 4:
            return self._xyz(segments[1:], query, headers)
        if segments == ["tiles.json"]:
            if not self.service.zooms:
                return Answer.text(
                    404, "no TileJSON: the cache's levels are not Web Mercator zooms"
                )
            return self._json(xyz.tile_json(self.service, base), query)
        if segments == ["arcgis", "rest", "info"]:
            return self._json(arcgis.info_json(), query)
        if tuple(segments[:3]) != SERVICES:
            return Answer.text(404, "not found: see / for the report, /arcgis/rest/services")
        rest = segments[3:]
        if not rest:
            return self._json(arcgis.services_json(self.service), query)
        if len(rest) >= 2 and unquote(rest[0]) == self.service.name and rest[1] == "MapServer":
            return self._map_server(rest[2:], query, headers, base)
        return Answer.text(404, f"no such service: the one service is {self.service.name}")

    def _map_server(
        self, rest: list[str], query: dict[str, str], headers: Mapping[str, str], base: str
    ) -> Answer:
        if not rest:
            return self._json(arcgis.root_json(self.service), query)
        head, args = rest[0], rest[1:]
        if head == "tile" and len(args) == 3:
            return self._tile(Tile(*decimals(args, ("level", "row", "col"))), query, headers)
        if head == "tilemap" and len(args) == 5:
            return self._tilemap(*decimals(args, ("level", "row", "col", "width", "height")))
        if head == "WMTS":
            return self._wmts(args, query, headers, f"{base}{self._service_path}/WMTS")
        if args:
            return Answer.text(404, f"not found: {'/'.join(rest)[:200]}")
        documents = {
            "0": arcgis.layer_json,
            "layers": arcgis.layers_json,
            "legend": arcgis.legend_json,
        }
        if head in documents:
            return self._json(documents[head](self.service), query)
        return Answer.text(404, f"not found: {head[:200]}")

    @property
    def _service_path(self) -> str:
        return "/" + "/".join((*SERVICES, self.service.name, "MapServer"))

    # --- ArcGIS REST ------------------------------------------------------------------------

    def _json(self, doc: dict[str, Any], query: Mapping[str, str]) -> Answer:
        """``doc`` as ``f=json`` (default), ``f=pjson`` (indented) or JSONP (``callback=``)."""
        indent = 2 if query.get("f", "").lower() == "pjson" else None
        answer = Answer.json(doc, indent=indent)
        callback = query.get("callback")
        if not callback:
            return answer
        if not self.jsonp:
            raise BadRequest("callback= (JSONP) is answered only when serve runs with --cors")
        if not _CALLBACK.fullmatch(callback):
            raise BadRequest("callback must be a JavaScript name")
        body = callback.encode() + b"(" + answer.body + b");"
        return Answer(200, body, "application/javascript; charset=utf-8")

    def _tile(self, tile: Tile, query: Mapping[str, str], headers: Mapping[str, str]) -> Answer:
        """The stored bytes of ``tile``; 404 (or a blank tile) when absent; 500 when its bundle
        is corrupt."""
        try:
            data = self.reader.read_tile(*tile)
        except (CorruptBundle, OSError) as exc:
            return self._damaged(tile, exc)
        if data is None:
            if self._blank and tile.level in self._levels and query.get("blanktile") != "false":
                return Answer(200, self._blank, "image/png", {"blank-tile": "true"})
            return Answer.text(404, f"no tile {tile.address}")
        etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
        cached = {"ETag": etag, "Cache-Control": f"public, max-age={TILE_MAX_AGE}"}
        wanted = headers.get("if-none-match", "")
        if etag in wanted or wanted.strip() == "*":
            return Answer(304, headers=cached)
        kind = kind_of(data)
        media_type = MEDIA_TYPES.get(kind or "", "application/octet-stream")
        if kind == GZIP:
            cached["Content-Encoding"] = "gzip"
        return Answer(200, data, media_type, cached)

    def _damaged(self, tile: Tile, exc: Exception) -> Answer:
        reason = exc.reason if isinstance(exc, CorruptBundle) else f"{type(exc).__name__}: {exc}"
        what = "corrupt bundle" if isinstance(exc, CorruptBundle) else "unreadable"
        message = f"{tile.address}: {what}: {reason}".replace("\n", " ")
        log.error(message)
        return Answer.text(500, message)

    def _tilemap(self, level: int, row: int, col: int, width: int, height: int) -> Answer:
        """Which tiles of a window are stored (1) or not (0), row-major; 422 for a level that
        is not an LOD (clients read it as all missing)."""
        if level not in self._levels:
            return Answer.json(
                arcgis.error_json(422, f"level {level} is not a level of the cache"), 422
            )
        if width == 0 or height == 0:
            raise BadRequest("a tilemap window is at least 1 x 1")
        width, height, adjusted = arcgis.tilemap_window(width, height)
        try:
            present = self.reader.presence(level, row, col, height, width)
        except (CorruptBundle, OSError) as exc:
            return self._damaged(Tile(level, row, col), exc)
        return Answer.json(arcgis.tilemap_json(row, col, present, adjusted))

    # --- WMTS and XYZ -----------------------------------------------------------------------

    def _wmts(
        self, args: list[str], query: Mapping[str, str], headers: Mapping[str, str], base: str
    ) -> Answer:
        if args == ["1.0.0", "WMTSCapabilities.xml"]:
            return self._capabilities(base)
        if len(args) == 8 and args[:2] == ["tile", "1.0.0"]:
            layer, _style, matrix_set, matrix, row, col = args[2:]
            return self._wmts_tile(
                layer, matrix_set, matrix, row, _strip_suffix(col), query, headers
            )
        if args:
            return Answer.text(404, f"not found: WMTS/{'/'.join(args)[:200]}")
        request = query.get("request", "").lower()
        if request == "getcapabilities":
            return self._capabilities(base)
        if request == "gettile":
            needed = ("layer", "tilematrixset", "tilematrix", "tilerow", "tilecol")
            missing = [name.upper() for name in needed if name not in query]
            if missing:
                raise BadRequest(f"GetTile needs {', '.join(missing)}")
            layer, matrix_set, matrix, row, col = (query[name] for name in needed)
            return self._wmts_tile(layer, matrix_set, matrix, row, col, query, headers)
        raise BadRequest("REQUEST must be GetCapabilities or GetTile")

    def _capabilities(self, base: str) -> Answer:
        return Answer(200, wmts.capabilities(self.service, base), "application/xml; charset=utf-8")

    def _wmts_tile(
        self,
        layer: str,
        matrix_set: str,
        matrix: str,
        row: str,
        col: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
    ) -> Answer:
        if unquote(layer) != self.service.name:
            return Answer.text(404, f"no such layer: the one layer is {self.service.name}")
        number = decimal(matrix, "TileMatrix")
        if matrix_set == wmts.OWN_SET:
            level: int | None = number
        elif matrix_set == wmts.GOOGLE_SET and self.service.zooms:
            level = self.service.level_of_zoom.get(number)
        else:
            raise BadRequest(f"no tile matrix set {matrix_set[:80]!r}")
        if level is None:
            return Answer.text(404, f"zoom {number} is not a level of the cache")
        tile = Tile(level, decimal(row, "TileRow"), decimal(col, "TileCol"))
        return self._tile(tile, query, headers)

    def _xyz(self, args: list[str], query: Mapping[str, str], headers: Mapping[str, str]) -> Answer:
        """``/xyz/{z}/{x}/{y}``: ``x`` the column, ``y`` the row downward; ``z`` the Web
        Mercator zoom when the cache's levels are zooms (:attr:`~.Service.zooms`), else the
        index of an LOD in the cache's own grid."""
        z = decimal(args[0], "z")
        x, y = decimal(args[1], "x"), decimal(_strip_suffix(args[2]), "y")
        if self.service.zooms:
            level = self.service.level_of_zoom.get(z)
            if level is None:
                return Answer.text(404, f"zoom {z} is not a level of the cache")
            return self._tile(Tile(level, y, x), query, headers)
        lods = self.service.scheme.lods
        if z >= len(lods):
            return Answer.text(404, f"z {z}: the cache has {len(lods)} levels")
        return self._tile(Tile(lods[z].level, y, x), query, headers)

    # --- The report page ----------------------------------------------------------------------

    def _report(self, route: str, query: Mapping[str, str]) -> Answer:
        """The live report page, ``api/page`` and ``api/bundles?level=N``: the stored status
        as it is now (a rebuild while serving shows on the next request). The page holds the
        data it was written from: one read of the store per page load, none cached between
        requests (a store replaced meanwhile is never shown stale)."""
        from ..reportpage import find_store, level_bundles, page_data, render_page
        from ..reportpage.html import capped

        if route not in ("report", "api/page", "api/bundles"):
            return Answer.text(404, f"not found: /{route[:80]}")
        try:
            store = find_store(self.reader, self.status, SERVE_REMEDY)
        except StatusNotFound as exc:
            return Answer.text(404, str(exc))
        if route == "api/bundles":
            if "level" not in query:
                raise BadRequest("api/bundles needs ?level=N")
            bundles = level_bundles(store, decimal(query["level"], "level"))
            return Answer.json(capped(bundles, self.max_rows))
        # Not the listing of every level for names that are not bundles (seconds on a large
        # cache, at each page load): the page shows the stored status.
        data = page_data(store, self.reader, list_names=False)
        if route == "api/page":
            return Answer.json(data)
        tiles = f"{self._service_path.lstrip('/')}/tile/{{z}}/{{y}}/{{x}}"
        page = render_page(data, live=True, tile_url=tiles, api_base="api/")
        return Answer(200, page.encode(), "text/html; charset=utf-8")

"""What a stored tile holds: its kind from its first bytes, whether it decodes, whether it is blank.

Pure functions over a tile's bytes, used by ``verify`` and by ``--blank``. A tile's kind comes
from its signature: PNG, JPEG, WebP, AVIF, LERC (``CntZImage`` or ``Lerc2``), gzip (compressed
vector tiles) and uncompressed Mapbox Vector Tiles (a protobuf whose first field is ``layers``).
Decoding and blank detection use Pillow, imported on first use.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable
from typing import Final, cast

PNG: Final = "png"
JPEG: Final = "jpeg"
WEBP: Final = "webp"
AVIF: Final = "avif"
LERC: Final = "lerc"
GZIP: Final = "gzip"
PBF: Final = "pbf"

#: The kinds Pillow can decode (``--decode``, ``--blank``).
RASTER: Final = frozenset({PNG, JPEG, WEBP})

#: Tile kinds a cache's declared tile format allows (``conf.xml``'s ``CacheTileFormat``,
#: ``root.json``'s ``tileInfo.format``, MBTiles ``format``, PMTiles ``tile_type``).
_FORMATS: Final = {
    "PNG": frozenset({PNG}),
    "PNG8": frozenset({PNG}),
    "PNG24": frozenset({PNG}),
    "PNG32": frozenset({PNG}),
    "JPEG": frozenset({JPEG}),
    "JPG": frozenset({JPEG}),
    "MIXED": frozenset({PNG, JPEG, WEBP}),
    "JPGPNG": frozenset({PNG, JPEG}),  # ArcGIS Pro's name for mixed JPEG and PNG tiles
    "WEBP": frozenset({WEBP}),
    "AVIF": frozenset({AVIF}),
    "LERC": frozenset({LERC}),
    "LERC2": frozenset({LERC}),
    "PBF": frozenset({PBF, GZIP}),
    "MVT": frozenset({PBF, GZIP}),
}

#: The media types of the tile kinds (HTTP ``Content-Type``, data URIs); gzip is a compressed
#: vector tile, served with ``Content-Encoding: gzip``.
MEDIA_TYPES: Final = {
    PNG: "image/png",
    JPEG: "image/jpeg",
    WEBP: "image/webp",
    AVIF: "image/avif",
    LERC: "application/octet-stream",
    GZIP: "application/vnd.mapbox-vector-tile",
    PBF: "application/vnd.mapbox-vector-tile",
}
#: The kinds a web browser draws as images.
BROWSER_IMAGES: Final = frozenset({PNG, JPEG, WEBP, AVIF})

_NAMES: Final = {
    PNG: "PNG",
    JPEG: "JPEG",
    WEBP: "WebP",
    AVIF: "AVIF",
    LERC: "LERC",
    GZIP: "gzip",
    PBF: "vector tile",
}


def kinds_for(tile_format: str) -> frozenset[str] | None:
    """The tile kinds a declared tile format allows; ``None`` (any known kind) when unknown."""
    return _FORMATS.get(tile_format.strip().upper())


def kind_of(data: bytes) -> str | None:
    """The kind of a tile from its first bytes, or ``None`` when no known signature matches."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    if data[4:12] in (b"ftypavif", b"ftypavis"):
        return AVIF
    if data.startswith((b"CntZImage ", b"Lerc2 ")):
        return LERC
    if data.startswith(b"\x1f\x8b"):
        return GZIP
    if data[:1] == b"\x1a":  # field 3 (layers), length-delimited: a Mapbox Vector Tile
        return PBF
    return None


def _describe(data: bytes) -> str:
    """What unknown bytes look like, for a message."""
    text = data[:64].lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if text.startswith(b"<?xml") or text.startswith(b"<"):
        return "an XML or HTML document"
    if text.startswith((b"{", b"[")):
        return "a JSON document"
    return "unknown bytes " + data[:8].hex(" ")


#: Problem kinds of :func:`check` and :func:`decode_error`.
EMPTY: Final = "empty"
NOT_AN_IMAGE: Final = "not-an-image"
WRONG_FORMAT: Final = "wrong-format"
UNDECODABLE: Final = "undecodable"


def check(data: bytes, allowed: Iterable[str] | None) -> tuple[str, str] | None:
    """What is wrong with ``data`` as a tile of a cache whose tile format allows ``allowed``
    kinds, as (problem kind, reason); ``None`` when nothing is.

    ``allowed`` is ``None`` when the cache declares no tile type (or one without known
    signatures): then a tile is judged only where its signature is recognised, and bytes of no
    known kind are not called wrong, there being no declared type to hold them against (see
    :func:`unjudged`).
    """
    if not data:
        return EMPTY, "0 bytes"
    kind = kind_of(data)
    allowed = None if allowed is None else frozenset(allowed)
    if kind is None:
        if allowed is None:
            return None
        return NOT_AN_IMAGE, f"not {_list(allowed)}: {_describe(data)}"
    if allowed is not None and kind not in allowed:
        return WRONG_FORMAT, f"a {_NAMES[kind]} tile in a cache of {_list(allowed)} tiles"
    return None


def unjudged(data: bytes, allowed: Iterable[str] | None) -> bool:
    """True for a tile :func:`check` could not judge: of no known kind, in a cache that
    declares no tile type."""
    return allowed is None and bool(data) and kind_of(data) is None


def undeclared_type(tile_format: str, unjudged_tiles: int) -> str:
    """The warning of a deep check of a cache that declares no tile type (said once a run)."""
    known = ", ".join(_NAMES[k] for k in (PNG, JPEG, WEBP, AVIF, LERC, GZIP, PBF))
    declared = (
        "declares no tile type"
        if tile_format.strip().lower() in ("", "any", "unknown")
        else f"declares tile format {tile_format!r:.40}, whose signature is not known"
    )
    return (
        f"the cache {declared}: tiles were checked only where their signature is recognised "
        f"({known}); {unjudged_tiles:,} tiles of no recognised kind were not judged"
    )


def _list(kinds: frozenset[str]) -> str:
    return " or ".join(sorted(_NAMES[k] for k in kinds))


def decode_error(data: bytes) -> tuple[str, str] | None:
    """Why a raster tile (PNG, JPEG, WebP) does not decode, as (problem kind, reason); ``None``
    when it decodes, or when its kind is not one Pillow decodes."""
    if kind_of(data) not in RASTER:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception as exc:  # Pillow raises many types for broken images
        return UNDECODABLE, f"does not decode: {exc}"
    return None


def is_blank(data: bytes) -> bool | None:
    """True when a raster tile carries no content: fully transparent, or one uniform colour.

    ``None`` when it cannot tell (not a raster kind, or the image does not decode).
    """
    if kind_of(data) not in RASTER:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as opened:
            # Palettes and other modes become RGBA, their transparency with them.
            image = opened if opened.mode in ("RGBA", "RGB", "L", "LA") else opened.convert("RGBA")
            extrema = image.getextrema()
    except Exception:  # a broken image is verify's business, not a blank one
        return None
    bands = cast(
        "list[tuple[float, float]]",
        [extrema] if len(image.getbands()) == 1 else list(extrema),
    )
    if image.mode in ("RGBA", "LA") and bands[-1][1] == 0:
        return True  # fully transparent, whatever the colour channels hold
    return all(low == high for low, high in bands)


class BlankTiles:
    """:func:`is_blank` with a memory: byte-identical tiles (the same empty tile written
    thousands of times) are decoded once, found by a digest of their bytes.

    Whoever runs the work owns one per process for a whole run and hands it to the work: each
    process's :class:`~cachestatus.execute.ChunkContext` (a worker's, or the calling one's)
    holds one.
    """

    def __init__(self, limit: int = 65_536) -> None:
        self._known: dict[bytes, bool | None] = {}
        self._limit = limit
        #: Tiles decoded (the others were repeats).
        self.decoded = 0

    def __call__(self, data: bytes) -> bool | None:
        """Whether ``data`` is blank (see :func:`is_blank`)."""
        digest = hashlib.blake2b(data, digest_size=16).digest()
        if digest in self._known:
            return self._known[digest]
        blank = is_blank(data)
        self.decoded += 1
        if len(self._known) >= self._limit:
            self._known.clear()  # a cache of unique tiles: keep memory bounded
        self._known[digest] = blank
        return blank

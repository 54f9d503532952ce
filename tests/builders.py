"""One builder per registered format: the same tiles, written by an independent writer.

``build(kind, root, tiles)`` writes ``tiles`` (keyed ``(level, row, col)``, rows counted down
from the top, as every reader reports them) as a cache of ``kind``, one of
``cachestatus.formats.names()``, and says how to open it. The writers are not ours: MapProxy
writes Compact V1/V2 bundles, MBTiles, GeoPackages and tile folders; the ``pmtiles`` package
writes PMTiles archives; packages are a MapProxy cache zipped (or laid out) as Esri lays out a
``.tpk``, a ``.tpkx`` and an unpacked ``.tpkx``. What only a format's own files can declare (a
full extent, its levels) is written as that format declares it: ``conf.cdi``, ``root.json``,
MBTiles ``metadata`` bounds, ``gpkg_contents`` bounds, the PMTiles header, ``metadata.json``.

A format registered without a builder here fails the import of this module, and so the
collection of every test that builds caches: a new format gets its contract tests with it.
"""

from __future__ import annotations

import json
import math
import sqlite3
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, NamedTuple

from cachestatus import formats, grid
from tests.helpers import WEB_MERCATOR_HALF, mapproxy_v2_cache, web_mercator_lods, write_conf

Key = tuple[int, int, int]
Tiles = Mapping[Key, bytes]
Box = tuple[float, float, float, float]

WORLD: Box = (-WEB_MERCATOR_HALF, -WEB_MERCATOR_HALF, WEB_MERCATOR_HALF, WEB_MERCATOR_HALF)
EARTH_RADIUS = 6378137.0  # EPSG:3857's sphere


class BuiltCache(NamedTuple):
    """A cache on disk and the options that open it (``open_cache(path, **opening)``)."""

    path: Path
    opening: dict[str, str]

    @property
    def cli(self) -> list[str]:
        """The opening options as command-line arguments."""
        return [arg for name, value in self.opening.items() for arg in (f"--{name}", value)]


@dataclass(frozen=True)
class Plan:
    """What to write: the tiles, the LOD count of the formats that declare LODs, the full
    extent (EPSG:3857; ``None``: each format's own default, see :func:`build`) and the tiles
    written then removed by the writer (a bundle file may then hold none)."""

    tiles: Tiles
    levels: int = 15
    extent: Box | None = None
    removed: tuple[Key, ...] = ()

    @property
    def full_extent(self) -> Box:
        """The extent declared where a format always declares one: the world by default."""
        return WORLD if self.extent is None else self.extent

    def written(self) -> dict[Key, bytes]:
        """Every tile the writer is given, the removed ones first."""
        assert not set(self.removed) & set(self.tiles), "a removed tile is not in the cache"
        return {**{key: b"removed" for key in self.removed}, **self.tiles}


# --- Independent writers -----------------------------------------------------------------


def _mapproxy_tiles(tiles: Iterable[tuple[Key, bytes]], tms: bool = False) -> list[Any]:
    """MapProxy's tiles (it addresses them ``(col, row, level)``); ``tms``: rows counted up."""
    from mapproxy.cache.tile import Tile
    from mapproxy.image import ImageResult

    return [
        Tile((col, grid.tms_row(level, row) if tms else row, level), ImageResult(BytesIO(data)))
        for (level, row, col), data in tiles
    ]


def _remove(cache: Any, removed: Iterable[Key], tms: bool = False) -> None:
    """Remove tiles through the MapProxy cache, as its cleanup does."""
    cache.remove_tiles(_mapproxy_tiles(((key, b"") for key in removed), tms))


def _store(cache: Any, tiles: Tiles, removed: Iterable[Key], tms: bool = False) -> bool:
    """Store ``removed`` (placeholder bytes) and ``tiles`` through the MapProxy cache, then
    remove ``removed``; whether the stores succeeded."""
    removed = list(removed)
    written = [*((key, b"removed") for key in removed), *tiles.items()]
    stored: bool = cache.store_tiles(_mapproxy_tiles(written, tms))
    _remove(cache, removed, tms)
    return stored


def compact_folder(root: Path, plan: Plan, version: int = 2) -> Path:
    """A Compact V2 (or V1) cache folder written by MapProxy, its full extent in ``conf.cdi``
    (the whole world by default)."""
    from mapproxy.cache.compact import CompactCacheV1, CompactCacheV2

    mapproxy_v2_cache(root, plan.written(), plan.levels, plan.full_extent, version)
    _remove(
        (CompactCacheV2 if version == 2 else CompactCacheV1)(str(root / "_alllayers")), plan.removed
    )
    return root


def write_mbtiles(path: Path, tiles: Tiles, removed: Iterable[Key] = ()) -> Path:
    """MapProxy's MBTiles cache, fed TMS rows as its 'sw'-origin grids do."""
    from mapproxy.cache.mbtiles import MBTilesCache

    cache = MBTilesCache(str(path))
    assert _store(cache, tiles, removed, tms=True)
    cache.update_metadata(name="test", format="png")
    cache.cleanup()
    return path


def write_geopackage(
    path: Path,
    tiles: Tiles,
    table: str = "tiles",
    removed: Iterable[Key] = (),
    levels: int | None = None,
) -> Path:
    """MapProxy's GeoPackage cache (a north-west-origin Web Mercator grid of ``levels`` levels,
    MapProxy's 20 by default) in the tile table ``table``."""
    from mapproxy.cache.geopackage import GeopackageCache
    from mapproxy.grid.tile_grid import tile_grid

    mp_grid = tile_grid(3857, origin="nw", name="g", num_levels=levels)
    cache = GeopackageCache(str(path), mp_grid, table)
    assert _store(cache, tiles, removed)
    cache.cleanup()
    return path


def write_tile_folder(
    root: Path,
    layout: str,
    tiles: Tiles,
    tms: bool = False,
    ext: str = "png",
    removed: Iterable[Key] = (),
) -> Path:
    """MapProxy's file cache in ``layout`` (``"tms"``: ``{z}/{x}/{y}``; ``"arcgis"``: an
    exploded cache's ``Lnn/Rrrrrrrrr/Ccccccccc``); ``tms``: rows counted up."""
    from mapproxy.cache.file import FileCache

    _store(FileCache(str(root), ext, directory_layout=layout), tiles, removed, tms)  # no result
    assert sum(1 for p in root.rglob(f"*.{ext}")) >= len(tiles)
    return root


#: Scattered level-14 tiles with distinct bodies: more entries than a 16 KiB root directory holds
#: (the pmtiles writer makes leaves past about 6,700 of them), so four leaves of up to 4,096. Each
#: lands in a bundle of its own or nearly: reading costs what those bundles cost.
PMTILES_LEAF_TILES = 12_500


def write_pmtiles(path: Path, tiles: Tiles, bounds: Box | None = None) -> Path:
    """Tiles written with the pmtiles package's Writer, ``bounds`` (west, south, east, north
    in degrees; by default the whole Web Mercator world) in its header."""
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import Writer

    west, south, east, north = (
        (-180.0, -85.0511287, 180.0, 85.0511287) if bounds is None else bounds
    )
    with open(path, "wb") as f:
        writer = Writer(f)
        for tile_id, data in sorted((zxy_to_tileid(z, c, r), d) for (z, r, c), d in tiles.items()):
            writer.write_tile(tile_id, data)
        writer.finalize(
            {
                "tile_type": TileType.PNG,
                "tile_compression": Compression.NONE,
                "min_lon_e7": round(west * 1e7),
                "min_lat_e7": round(south * 1e7),
                "max_lon_e7": round(east * 1e7),
                "max_lat_e7": round(north * 1e7),
                "center_zoom": 0,
                "center_lon_e7": 0,
                "center_lat_e7": 0,
            },
            {},
        )
    return path


def tpkx_root_json(levels: int, extent: Box) -> dict[str, object]:
    """The ``root.json`` of a ``.tpkx`` on the Web Mercator grid with ``levels`` LODs."""
    return {
        "tileInfo": {
            "rows": 256,
            "cols": 256,
            "dpi": 96,
            "origin": {"x": -WEB_MERCATOR_HALF, "y": WEB_MERCATOR_HALF},
            "spatialReference": {"wkid": 102100, "latestWkid": 3857},
            "lods": [
                {"level": lv, "scale": s, "resolution": r} for lv, s, r in web_mercator_lods(levels)
            ],
        },
        "fullExtent": dict(zip(("xmin", "ymin", "xmax", "ymax"), extent, strict=True)),
        "storageInfo": {"storageFormat": "esriMapCacheStorageModeCompactV2", "packetSize": 128},
        "minLOD": 0,
        "maxLOD": levels - 1,
    }


def zip_tpkx(cache: Path, target: Path, root: Mapping[str, object]) -> Path:
    """Zip a folder cache's bundles as a .tpkx (stored entries, as ArcGIS writes them)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as z:
        z.writestr("root.json", json.dumps(root))
        for bundle in sorted((cache / "_alllayers").rglob("*.bundle")):
            z.write(bundle, f"tile/{bundle.parent.name}/{bundle.name}")
    return target


def zip_tpk(cache: Path, target: Path, skip: str = "") -> Path:
    """Zip a cache folder under v101/Roads/, as ArcGIS lays out a .tpk."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as z:
        z.writestr("esriinfo/iteminfo.xml", "<ESRI_ItemInformation/>")
        for path in sorted(cache.rglob("*")):
            if path.is_file() and not (skip and path.name == skip):
                z.write(path, "v101/Roads/" + path.relative_to(cache).as_posix())
    return target


def unpacked_tpkx(cache: Path, target: Path, root: Mapping[str, object]) -> Path:
    """A folder cache's bundles laid out as a ``.tpkx`` unpacked: ``root.json``,
    ``iteminfo.json`` and ``tile/Lnn/``."""
    target.mkdir(parents=True)
    (target / "root.json").write_text(json.dumps(root))
    (target / "iteminfo.json").write_text(json.dumps({"title": "test", "type": "Tile Package"}))
    for bundle in sorted((cache / "_alllayers").rglob("*.bundle")):
        (target / "tile" / bundle.parent.name).mkdir(parents=True, exist_ok=True)
        (target / "tile" / bundle.parent.name / bundle.name).write_bytes(bundle.read_bytes())
    return target


# --- Extents as each format declares them ------------------------------------------------


def lon_lat(box: Box) -> Box:
    """An EPSG:3857 box in degrees (west, south, east, north), by the spherical formulas."""
    xmin, ymin, xmax, ymax = box

    def lat(y: float) -> float:
        return math.degrees(2 * math.atan(math.exp(y / EARTH_RADIUS)) - math.pi / 2)

    return (
        math.degrees(xmin / EARTH_RADIUS),
        lat(ymin),
        math.degrees(xmax / EARTH_RADIUS),
        lat(ymax),
    )


def _declare_mbtiles_bounds(path: Path, box: Box) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO metadata (name, value) VALUES ('bounds', ?)",
            (",".join(map(repr, lon_lat(box))),),
        )
    db.close()


def _declare_geopackage_bounds(path: Path, box: Box) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?", box)
    db.close()


def _declare_folder_bounds(root: Path, box: Box) -> None:
    """``metadata.json`` as mb-util writes it: the metadata table, every value text."""
    rows = {"name": "test", "format": "png", "bounds": ",".join(map(repr, lon_lat(box)))}
    (root / "metadata.json").write_text(json.dumps(rows, indent=4))


# --- One builder per format --------------------------------------------------------------


def _compact_v2(root: Path, plan: Plan) -> BuiltCache:
    return BuiltCache(compact_folder(root / "compact-v2", plan), {})


def _compact_v1(root: Path, plan: Plan) -> BuiltCache:
    return BuiltCache(compact_folder(root / "compact-v1", plan, version=1), {})


def _tpkx(root: Path, plan: Plan) -> BuiltCache:
    folder = compact_folder(root / "for-tpkx", plan)
    declared = tpkx_root_json(plan.levels, plan.full_extent)
    return BuiltCache(zip_tpkx(folder, root / "t.tpkx", declared), {})


def _tpk(root: Path, plan: Plan) -> BuiltCache:
    folder = compact_folder(root / "for-tpk", plan, version=1)
    return BuiltCache(zip_tpk(folder, root / "t.tpk"), {})


def _tpkx_folder(root: Path, plan: Plan) -> BuiltCache:
    folder = compact_folder(root / "for-tpkx-folder", plan)
    declared = tpkx_root_json(plan.levels, plan.full_extent)
    return BuiltCache(unpacked_tpkx(folder, root / "tpkx-folder", declared), {})


def _mbtiles(root: Path, plan: Plan) -> BuiltCache:
    path = write_mbtiles(root / "t.mbtiles", plan.tiles, plan.removed)
    if plan.extent is not None:
        _declare_mbtiles_bounds(path, plan.extent)
    return BuiltCache(path, {})


def _geopackage(root: Path, plan: Plan) -> BuiltCache:
    path = write_geopackage(root / "t.gpkg", plan.tiles, removed=plan.removed, levels=plan.levels)
    if plan.extent is not None:
        _declare_geopackage_bounds(path, plan.extent)
    return BuiltCache(path, {})


def _exploded(root: Path, plan: Plan) -> BuiltCache:
    storage = "esriMapCacheStorageModeExploded"
    cache = write_conf(root / "exploded", plan.levels, plan.full_extent, storage=storage)
    write_tile_folder(cache / "_alllayers", "arcgis", plan.tiles, removed=plan.removed)
    return BuiltCache(cache, {})


def _tile_folder(kind: str) -> Callable[[Path, Plan], BuiltCache]:
    def build_folder(root: Path, plan: Plan) -> BuiltCache:
        folder = write_tile_folder(
            root / kind, "tms", plan.tiles, tms=kind == "tms", removed=plan.removed
        )
        if plan.extent is not None:
            _declare_folder_bounds(folder, plan.extent)
        return BuiltCache(folder, {"scheme": kind})

    return build_folder


def _pmtiles(root: Path, plan: Plan) -> BuiltCache:
    bounds = None if plan.extent is None else lon_lat(plan.extent)
    return BuiltCache(write_pmtiles(root / "t.pmtiles", plan.tiles, bounds), {})


BUILDERS: dict[str, Callable[[Path, Plan], BuiltCache]] = {
    "compact-v2": _compact_v2,
    "compact-v1": _compact_v1,
    "tpkx": _tpkx,
    "tpk": _tpk,
    "tpkx-folder": _tpkx_folder,
    "mbtiles": _mbtiles,
    "geopackage": _geopackage,
    "exploded": _exploded,
    "xyz": _tile_folder("xyz"),
    "tms": _tile_folder("tms"),
    "pmtiles": _pmtiles,
}

_unbuilt = sorted(set(formats.names()) - set(BUILDERS))
if _unbuilt:
    raise ImportError(
        f"registered formats without a test builder: {', '.join(_unbuilt)}; "
        "add one to tests/builders.py (BUILDERS), written by an independent writer"
    )


def build(
    kind: str,
    root: Path,
    tiles: Tiles,
    *,
    levels: int = 15,
    extent: Box | None = None,
    removed: Iterable[Key] = (),
) -> BuiltCache:
    """``tiles`` written as a cache of ``kind`` under the folder ``root``, and how to open it.

    Args:
        kind: a registered format name.
        root: the folder to build in (created when absent); several kinds may share one.
        tiles: tile bytes keyed ``(level, row, col)``, rows counted down.
        levels: LODs 0 to ``levels - 1`` in the formats that declare LODs (ArcGIS caches and
            packages, GeoPackage); the others declare the levels holding tiles.
        extent: the full extent (EPSG:3857), declared by every format. ``None``: the whole
            world for ArcGIS caches and packages and PMTiles, MapProxy's grid bounds for a
            GeoPackage, nothing for MBTiles and tile folders.
        removed: tiles stored and then removed by the writer (a Compact bundle keeps its
            file, holding no tile; PMTiles, written once, never holds them).
    """
    root.mkdir(parents=True, exist_ok=True)
    return BUILDERS[kind](root, Plan(tiles, levels, extent, tuple(removed)))

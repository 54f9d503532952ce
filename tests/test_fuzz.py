"""Fuzzing: random and mutated bytes into every decoder, random paths and files into the detector.

Whatever comes in, only the project's own errors may come out (``CacheStatusError``
subclasses), and nothing may hang (each example has a deadline). The number of examples comes
from the Hypothesis profile: CI runs a fixed seed (``ci``); a longer run for local use is

    HYPOTHESIS_PROFILE=fuzz .venv/bin/pytest tests/test_fuzz.py

(see ``tests/conftest.py`` for the profiles' budgets).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import struct
from datetime import timedelta
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachestatus import content, formats
from cachestatus.errors import CacheStatusError, CorruptBundle, InvalidCacheConfig
from cachestatus.formats.arcgis_conf import parse_conf_cdi, parse_conf_xml
from cachestatus.formats.compact_v1 import BUNDLX_SIZE, decode_bundlx, summarize_v1, v1_tiles
from cachestatus.formats.compact_v2 import v2_tiles
from cachestatus.formats.pmtiles import HEADER_SIZE, decode_directory, decode_header
from cachestatus.formats.tpkx import parse_root_json
from tests.helpers import (
    MemorySource,
    conf_cdi,
    conf_xml,
    synthetic_bundle,
    web_mercator_lods,
    write_conf,
)

fuzz = settings(
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    """``data`` with bytes replaced: (position, new byte) pairs, positions taken modulo."""
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    return bytes(out)


edits = st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), max_size=64)


def _valid_v2() -> bytes:
    import tempfile

    sizes = np.zeros((128, 128), dtype=np.int64)
    sizes[3:9, 10:20] = 7
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "R0000C0000.bundle"
        synthetic_bundle(path, sizes, body=b"\x89PNG\r\n\x1a")
        return path.read_bytes()


VALID_V2 = _valid_v2()


@fuzz
@given(edits, st.integers(0, 200))
def test_v2_tile_reading_takes_any_mutation(changes, cut):
    data = _mutate(VALID_V2, changes)
    data = data[: len(data) - cut]
    try:
        for tile in v2_tiles(MemorySource(data)):
            assert tile.damage or len(tile.data) >= 0
    except CorruptBundle:
        pass


@fuzz
@given(st.binary(max_size=BUNDLX_SIZE + 8) | st.just(bytes(BUNDLX_SIZE)), st.binary(max_size=4096))
def test_v1_index_and_tiles_take_random_bytes(index, bundle):
    try:
        offsets = decode_bundlx(index)
    except CorruptBundle:
        return
    try:
        tiles = list(v1_tiles(offsets, MemorySource(bundle)))
    except CorruptBundle:
        return
    assert all(0 <= t.row < 128 and 0 <= t.col < 128 for t in tiles)


@fuzz
@given(st.lists(st.tuples(st.integers(0, 16383), st.integers(0, 2**40 - 1)), max_size=40))
def test_v1_mutated_offsets_only_raise_corrupt_bundle(changes):
    index = bytearray(BUNDLX_SIZE)
    for slot, value in changes:
        index[16 + 5 * slot : 21 + 5 * slot] = value.to_bytes(5, "little")
    offsets = decode_bundlx(bytes(index))
    bundle = bytes(65_596) + b"\x05\x00\x00\x00hello" * 20
    try:
        live = offsets >= 65_596
        words = np.array(
            [
                int.from_bytes(bundle[o : o + 4].ljust(4, b"\0"), "little")
                for o in offsets[live].tolist()
            ],
            dtype=np.uint32,
        )
        summarize_v1(offsets, words, len(bundle))
        list(v1_tiles(offsets, MemorySource(bundle)))
    except CorruptBundle:
        pass


@fuzz
@given(st.binary(max_size=256))
def test_pmtiles_header_takes_random_bytes(data):
    try:
        header = decode_header(data)
    except InvalidCacheConfig:
        return
    assert header.min_zoom >= 0


@fuzz
@given(st.binary(max_size=512), st.booleans())
def test_pmtiles_directory_takes_random_bytes(data, compressed):
    with contextlib.suppress(CorruptBundle):
        decode_directory(gzip.compress(data) if compressed else data)


@fuzz
@given(edits)
def test_pmtiles_directory_takes_any_mutation(changes):
    from pmtiles.tile import Entry, serialize_directory

    entries = [Entry(i * 3, i * 100, 100, 1 + i % 4) for i in range(50)]  # id, offset, length, run
    data = _mutate(gzip.decompress(serialize_directory(entries)), changes)
    try:
        ids, runs, lengths, offsets = decode_directory(data)
    except CorruptBundle:
        return
    assert len(ids) == len(runs) == len(lengths) == len(offsets)


@fuzz
@given(st.integers(0, HEADER_SIZE * 4), edits)
def test_a_pmtiles_file_of_mutated_bytes_opens_or_is_refused(tmp_path_factory, length, changes):
    from pmtiles.tile import Entry, serialize_directory

    root = serialize_directory([Entry(i, i * 10, 10, 1) for i in range(20)])
    header = bytearray(b"PMTiles\x03" + bytes(HEADER_SIZE - 8))
    struct.pack_into("<QQ", header, 8, HEADER_SIZE, len(root))
    struct.pack_into("<QQ", header, 56, HEADER_SIZE + len(root), 200)
    header[97], header[99], header[100], header[101] = 2, 2, 0, 3
    data = _mutate(bytes(header) + root + bytes(200), changes)[: HEADER_SIZE + length]
    path = tmp_path_factory.mktemp("pm") / "x.pmtiles"
    path.write_bytes(data)
    try:
        with formats.open_cache(path) as reader:
            for level in reader.scheme.levels:
                for bundle in reader.list_bundles(level):
                    if isinstance(bundle, formats.BundleFile):
                        reader.read_bundle(bundle)
                        list(reader.read_tiles(bundle))
    except CacheStatusError:
        pass


CONF = conf_xml(web_mercator_lods(4)).encode()
CDI = conf_cdi((-1e6, -1e6, 1e6, 1e6)).encode()


@fuzz
@given(edits, st.integers(0, len(CONF)))
def test_conf_xml_takes_any_mutation(changes, cut):
    with contextlib.suppress(InvalidCacheConfig):
        parse_conf_xml(_mutate(CONF, changes)[:cut])


@fuzz
@given(edits, st.integers(0, len(CDI)))
def test_conf_cdi_takes_any_mutation(changes, cut):
    with contextlib.suppress(InvalidCacheConfig):
        parse_conf_cdi(_mutate(CDI, changes)[:cut])


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
ROOT = {
    "tileInfo": {
        "rows": 256,
        "cols": 256,
        "dpi": 96,
        "origin": {"x": -1.0, "y": 1.0},
        "spatialReference": {"wkid": 3857},
        "lods": [{"level": 0, "scale": 1e8, "resolution": 1000.0}],
        "format": "PNG",
    },
    "fullExtent": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1},
    "storageInfo": {"storageFormat": "esriMapCacheStorageModeCompactV2", "packetSize": 128},
}


@fuzz
@given(json_values, st.sampled_from(["", "tileInfo", "lods", "origin", "fullExtent", "dpi"]))
def test_root_json_takes_any_value_anywhere(value, where):
    root = json.loads(json.dumps(ROOT))
    if where == "":
        root = value
    elif where in ("tileInfo", "fullExtent"):
        root[where] = value
    elif where == "lods":
        root["tileInfo"]["lods"] = value
    else:
        root["tileInfo"][where] = value
    with contextlib.suppress(InvalidCacheConfig):
        parse_root_json(json.dumps(root).encode())


@fuzz
@given(st.binary(max_size=300))
def test_root_json_takes_random_bytes(data):
    with contextlib.suppress(InvalidCacheConfig):
        parse_root_json(data)


@fuzz
@given(st.text(max_size=60))
def test_the_detector_takes_any_path(text):
    with contextlib.suppress(CacheStatusError):
        formats.detect(Path(text))


@fuzz
@given(
    st.sampled_from([".mbtiles", ".gpkg", ".tpkx", ".tpk", ".pmtiles", ".png", ""]),
    st.binary(max_size=2048) | st.just(b"SQLite format 3\x00" + bytes(200)),
)
def test_a_file_of_random_bytes_is_detected_or_refused(tmp_path_factory, suffix, data):
    path = tmp_path_factory.mktemp("f") / f"cache{suffix}"
    path.write_bytes(data)
    try:
        with formats.open_cache(path) as reader:
            for level in reader.scheme.levels[:3]:
                list(reader.list_bundles(level))
    except CacheStatusError:
        pass


@fuzz
@given(st.binary(max_size=600) | st.builds(lambda b: b"\x89PNG\r\n\x1a\n" + b, st.binary()))
def test_tile_content_checks_take_random_bytes(data):
    content.kind_of(data)
    content.check(data, None)
    content.check(data, content.kinds_for("PNG"))
    assert content.decode_error(data) is None or content.decode_error(data)[0] == "undecodable"
    assert content.is_blank(data) in (True, False, None)


@fuzz
@given(st.binary(max_size=512), st.integers(1, 4096))
def test_pmtiles_inflate_stays_within_its_cap(data, cap):
    from cachestatus.formats.pmtiles import COMPRESSION_GZIP, inflate

    for packed in (data, gzip.compress(data)):
        try:
            out = inflate(packed, COMPRESSION_GZIP, cap)
        except CorruptBundle:
            continue
        assert len(out) <= cap


@fuzz
@given(st.lists(st.tuples(st.integers(0, 2**40), st.integers(1, 2**20)), max_size=8))
def test_pmtiles_runs_count_like_their_tiles(runs):
    """Bundles counted by arithmetic equal the bundles listed, at every zoom the runs touch."""
    from cachestatus.formats.pmtiles import Directories, ZoomRuns

    start = np.array([s for s, _ in runs], dtype=np.int64)
    end = start + np.array([n for _, n in runs], dtype=np.int64)
    sizes = np.ones(len(runs), dtype=np.int64)
    for zoom in range(0, 11):
        zr = ZoomRuns.clip(zoom, Directories(start, end, sizes, sizes, []))
        listed = list(zr.bundles())
        assert len(listed) == len(set(listed)) == zr.count()
        covered = sum(len(zr.tiles(key)) for key in listed)
        assert covered == int((zr.end - zr.start).sum())


@fuzz
@given(json_values, st.integers(0, 80))
def test_root_json_depth_is_bounded_not_recursed(value, depth):
    data = json.dumps({"tileInfo": [value] if depth == 0 else [[value]]}).encode()
    deep = b"[" * depth * 2 + data + b"]" * depth * 2
    with contextlib.suppress(InvalidCacheConfig):
        parse_root_json(deep)


# -- tile folders: random names, text and bytes --------------------------------------------

_TILE_EXTENSIONS = ["png", "jpg", "jpeg", "webp", "pbf", "mvt", "lerc", "PNG", "Jpg", "txt", ""]
_ODD_TEXT = "0123456789²٣\uff13 +-.\n\tCcRrLlpngjPGfF_é"


def _tile_name(number: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda n, ext: f"{n}.{ext}" if ext else n, number, st.sampled_from(_TILE_EXTENSIONS)
    )


#: Names for a folder of an XYZ (decimal) or exploded (``C`` + 8 hex) cache: good ones, good
#: ones with leading zeros or off the grid, digits of other scripts, random text and bytes.
_DECIMAL = st.one_of(
    st.integers(0, 40).map(str),
    st.integers(0, 10**30).map(str),
    st.integers(0, 40).map(lambda n: f"{n:05d}"),
    st.text(alphabet=_ODD_TEXT, min_size=1, max_size=12),
)
_HEX = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda n: f"C{n:08x}"),
    st.integers(0, 2**32 - 1).map(lambda n: f"C{n:08X}"),
    st.integers(0, 2**40).map(lambda n: f"C{n:x}"),
    st.text(alphabet=_ODD_TEXT, min_size=1, max_size=12).map(lambda t: "C" + t),
)
_BYTES = st.binary(min_size=1, max_size=24).map(os.fsdecode)
_GOOD_NAME = re.compile(r"([0-9]+)\.(png|jpg|jpeg|webp|pbf|mvt|lerc)", re.IGNORECASE | re.ASCII)
_GOOD_HEX = re.compile(
    r"C([0-9a-f]{8})\.(png|jpg|jpeg|webp|pbf|mvt|lerc)", re.IGNORECASE | re.ASCII
)


def _writable(name: str) -> bool:
    raw = os.fsencode(name)
    return raw not in (b".", b"..") and b"/" not in raw and b"\0" not in raw and len(raw) < 250


def _count_folder_cache(root: Path, hint: str, sizes: bool) -> tuple[int, int]:
    """(tiles counted by the listing, tile files read back) over every level."""
    counted = read = 0
    with formats.open_cache(root, hint, sizes) as reader:
        for level in reader.scheme.levels:
            for found in reader.list_bundles(level):
                if isinstance(found, formats.BundleFile):
                    counted += reader.read_bundle(found).tiles
                    read += sum(1 for tile in reader.read_tiles(found) if not tile.damage)
    return counted, read


@fuzz
@given(
    st.sampled_from(["xyz", "exploded"]),
    st.integers(0, 5),
    st.one_of(st.none(), _DECIMAL, _BYTES),
    st.lists(st.one_of(_tile_name(_DECIMAL), _tile_name(_HEX), _BYTES), max_size=25),
    st.booleans(),
)
def test_tile_folders_take_any_names(tmp_path_factory, layout, zoom, folder, names, sizes):
    """Whatever the names, the listing works and counts exactly the valid tiles (a name that
    parses, on the level's grid, in a folder that does), or refuses with a CacheStatusError."""
    root = tmp_path_factory.mktemp("names")
    if layout == "xyz":
        folder = str(zoom) if folder is None else folder
        if not _writable(folder):
            return
        column = root / str(zoom) / folder
        good_folder = folder.isascii() and folder.isdigit() and int(folder) < 2**zoom
        limit, pattern, base = 2**zoom, _GOOD_NAME, 10
    else:
        write_conf(root, 6, storage="esriMapCacheStorageModeExploded")
        row = 0 if folder is None else int.from_bytes(os.fsencode(folder)[:4], "big")
        column = root / "_alllayers" / f"L{zoom:02d}" / f"R{row:08x}"
        good_folder = row < 2**31
        limit, pattern, base = 2**31, _GOOD_HEX, 16
    column.mkdir(parents=True)
    written: set[bytes] = set()
    valid: list[int] = []  # one number per tile file (two files may name one tile)
    for name in names:
        if not _writable(name) or os.fsencode(name) in written:
            continue
        written.add(os.fsencode(name))
        with open(os.fsencode(column / name), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
        match = pattern.fullmatch(name)
        if match and int(match.group(1), base) < limit:
            valid.append(int(match.group(1), base))
    try:
        counted, read = _count_folder_cache(root, layout, sizes)
    except CacheStatusError:
        return
    assert counted == (len(set(valid)) if good_folder else 0)
    assert read == (len(valid) if good_folder else 0)  # verify reads every tile file


# --- SQLite caches: any value in any cell -----------------------------------------------------

sql_values = (
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.binary(max_size=12)
    | st.sampled_from([0, 1, 2, 3, 30, 31, 40, -1, 2**31, "3", " 2 ", "1e3", "-5"])
)
tile_rows = st.lists(st.tuples(sql_values, sql_values, sql_values, sql_values), max_size=12)


def _read_everything(path: Path) -> None:
    """Open, list and read every bundle of ``path``, sizes and tiles: only the package's own
    errors may come out."""
    try:
        with formats.open_cache(path, sizes=True) as reader:
            for level in reader.scheme.levels:
                for bundle in reader.list_bundles(level):
                    if isinstance(bundle, formats.BundleFile):
                        try:
                            reader.read_bundle(bundle)
                            list(reader.read_tiles(bundle))
                        except CorruptBundle:
                            pass
    except CacheStatusError:
        pass


@fuzz
@given(
    st.dictionaries(st.sampled_from(["minzoom", "maxzoom", "bounds", "format"]), sql_values),
    st.sampled_from(["", "-180,-85,180,85", "1,2,3,4,5", "inf,0,1,1", "0,0,nan,1"]),
    tile_rows,
    st.booleans(),
)
def test_mbtiles_takes_any_value_anywhere(tmp_path_factory, metadata, bounds, rows, unique):
    import sqlite3

    path = tmp_path_factory.mktemp("mbt") / "x.mbtiles"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE metadata (name text, value text)")
        db.executemany("INSERT INTO metadata VALUES (?, ?)", list(metadata.items()))
        if bounds:
            db.execute("INSERT INTO metadata VALUES ('bounds', ?)", (bounds,))
        db.execute("CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data)")
        if unique:
            db.execute("CREATE UNIQUE INDEX t ON tiles (zoom_level, tile_column, tile_row)")
        db.executemany("INSERT OR IGNORE INTO tiles VALUES (?, ?, ?, ?)", rows)
    db.close()
    _read_everything(path)


@fuzz
@given(
    st.lists(
        # mostly sane rows (level 0 to 3 of a 2 x 2 unit square), any value anywhere
        st.tuples(*[sql_values | st.just(v) for v in (2, 4, 4, 256, 256, 1 / 512, 1 / 512)]),
        min_size=1,
        max_size=4,
    ),
    st.tuples(*[sql_values] * 4) | st.just((-1.0, -1.0, 1.0, 1.0)),
    st.tuples(*[sql_values] * 4),
    st.tuples(sql_values, sql_values),
    tile_rows,
)
def test_geopackage_takes_any_value_anywhere(
    tmp_path_factory, matrices, matrix_set, contents, srs, rows
):
    import sqlite3

    path = tmp_path_factory.mktemp("gpkg") / "x.gpkg"
    with sqlite3.connect(path) as db:
        db.executescript(
            """
            CREATE TABLE gpkg_spatial_ref_sys (srs_name, srs_id, organization,
                organization_coordsys_id, definition, description);
            CREATE TABLE gpkg_contents (table_name, data_type, identifier, description,
                last_change, min_x, min_y, max_x, max_y, srs_id);
            CREATE TABLE gpkg_tile_matrix_set (table_name, srs_id, min_x, min_y, max_x, max_y);
            CREATE TABLE gpkg_tile_matrix (table_name, zoom_level, matrix_width, matrix_height,
                tile_width, tile_height, pixel_x_size, pixel_y_size);
            CREATE TABLE tiles (zoom_level, tile_column, tile_row, tile_data);
            """
        )
        db.execute("INSERT INTO gpkg_spatial_ref_sys VALUES ('s', 7, ?, ?, ?, '')", (*srs, None))
        db.execute(
            "INSERT INTO gpkg_contents VALUES ('tiles', 'tiles', 't', '', '', ?, ?, ?, ?, 7)",
            contents,
        )
        db.execute("INSERT INTO gpkg_tile_matrix_set VALUES ('tiles', 7, ?, ?, ?, ?)", matrix_set)
        db.executemany(
            "INSERT INTO gpkg_tile_matrix VALUES ('tiles', ?, ?, ?, ?, ?, ?, ?)", matrices
        )
        db.executemany("INSERT INTO tiles VALUES (?, ?, ?, ?)", rows)
    db.close()
    _read_everything(path)

"""conf.xml / conf.cdi parsing, cache detection and the Compact V2 reader."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cachestatus import formats
from cachestatus.errors import CacheNotFound, CorruptBundle, InvalidCacheConfig, UnsupportedFormat
from cachestatus.formats.arcgis_conf import parse_conf_cdi, parse_conf_xml
from cachestatus.formats.base import BundleFile
from cachestatus.formats.bytesource import LocalFile
from cachestatus.formats.compact_v2 import HEADER_INDEX_SIZE, read_v2_index, summarize_index
from cachestatus.models import PROJ_KNOWS, BundleKey, Problem, crs_known
from tests.helpers import SAMPLE_CACHE, conf_xml, web_mercator_lods, write_conf

# Known facts of Esri's sample cache (tests/data/esri/README.md).
SAMPLE_TILES = {0: 1, 1: 4, 2: 16}
SAMPLE_TILE_BYTES = {0: 40116, 1: 136524, 2: 320629}


def test_sample_conf_xml():
    scheme = parse_conf_xml((SAMPLE_CACHE / "conf.xml").read_bytes())
    assert scheme.spatial_reference.wkid == 3857
    assert scheme.spatial_reference.user_input() == "EPSG:3857"
    assert (scheme.origin_x, scheme.origin_y) == (-20037508.342787001, 20037508.342787001)
    assert (scheme.tile_cols, scheme.tile_rows, scheme.dpi) == (256, 256, 96)
    assert len(scheme.lods) == 20 and scheme.lod(2).scale == pytest.approx(147914381.89788899)
    assert scheme.tile_format == "JPEG"
    assert scheme.storage_format == "esriMapCacheStorageModeCompactV2"


def test_the_crs_known_without_pyproj_are_known_to_pyproj():
    """The CRSs told known without asking PROJ are all ones it makes, as it makes them."""
    from pyproj import CRS

    for text in sorted(PROJ_KNOWS):
        assert CRS.from_user_input(text).to_epsg() == int(text.split(":")[1]), text
    assert crs_known("EPSG:3857") and crs_known("ESRI:54009")  # Mollweide: asked of PROJ
    assert not crs_known("EPSG:999999") and not crs_known("not a CRS")


def test_sample_conf_cdi():
    extent = parse_conf_cdi((SAMPLE_CACHE / "conf.cdi").read_bytes())
    assert extent.xmin == pytest.approx(-20037507.229594339)
    assert extent.ymax == pytest.approx(20037507.229594339)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"not xml at all", "not valid XML"),
        (b"<Other/>", "root element is <Other>"),
        (b"<CacheInfo/>", "missing <TileCacheInfo>"),
        (conf_xml([]).encode(), "no <LODInfos/LODInfo> levels"),
        (conf_xml(web_mercator_lods(2), tile_size=0).encode(), "tile size 0 x 0"),
        (conf_xml([(0, 1.0, 1.0), (0, 2.0, 2.0)]).encode(), "LevelID appears twice"),
        (
            conf_xml(web_mercator_lods(2)).replace("<TileCols>256", "<TileCols>abc").encode(),
            "<TileCols> is 'abc', not a number",
        ),
    ],
)
def test_bad_conf_xml_names_the_file_and_the_problem(text, message):
    with pytest.raises(InvalidCacheConfig, match=r"^/x/conf\.xml: .*" + re.escape(message)):
        parse_conf_xml(text, "/x/conf.xml")


def test_empty_envelope_is_rejected():
    text = b"<EnvelopeN><XMin>1</XMin><YMin>1</YMin><XMax>1</XMax><YMax>5</YMax></EnvelopeN>"
    with pytest.raises(InvalidCacheConfig, match="has no area"):
        parse_conf_cdi(text)


@pytest.mark.parametrize("layout", ["folder", "Conf.xml", "service", "file"])
def test_the_cache_can_be_named_several_ways(tmp_path, sample, layout):
    if layout == "folder":
        path = sample
    elif layout == "Conf.xml":
        (sample / "conf.xml").rename(sample / "Conf.xml")
        path = sample
    elif layout == "service":
        service = tmp_path / "MyService"
        service.mkdir()
        sample.rename(service / "Layers")
        sample, path = service / "Layers", service
    else:
        path = sample / "conf.xml"
    with formats.open_cache(path) as reader:
        assert reader.name == "compact-v2"
        assert reader.status_dir == sample
        assert reader.full_extent is not None


def test_detection_errors(tmp_path):
    with pytest.raises(CacheNotFound, match="no such file or folder"):
        formats.open_cache(tmp_path / "nope")
    with pytest.raises(
        UnsupportedFormat,
        match=r"holds no conf\.xml.*known formats: " + ", ".join(formats.names()),
    ):
        formats.open_cache(tmp_path)
    write_conf(tmp_path / "future", 3, storage="esriMapCacheStorageModeFuture")
    with pytest.raises(UnsupportedFormat, match="declares esriMapCacheStorageModeFuture,"):
        formats.open_cache(tmp_path / "future")
    with pytest.raises(UnsupportedFormat, match="unknown format 'zip'"):
        formats.get("zip")
    assert formats.names() == [
        "compact-v2",
        "compact-v1",
        "tpkx",
        "tpk",
        "mbtiles",
        "geopackage",
        "exploded",
        "xyz",
        "tms",
        "pmtiles",
        "tpkx-folder",
    ]


def test_sample_bundles_known_counts_and_bytes(sample):
    with formats.open_cache(sample) as reader:
        for level, tiles in SAMPLE_TILES.items():
            (bundle,) = list(reader.list_bundles(level))
            assert isinstance(bundle, BundleFile)
            assert bundle.key == BundleKey(level, 0, 0)
            index = reader.read_bundle(bundle)
            assert index.tiles == tiles == int(np.count_nonzero(index.sizes))
            assert index.tile_bytes == SAMPLE_TILE_BYTES[level]
            assert index.file_bytes == Path(bundle.path).stat().st_size
    # L02 carries a stale copy of L01's tiles that its header does not declare.
    assert _read(sample / "_alllayers/L02/R0000C0000.bundle").dead_bytes == 136540


def _read(path: Path):
    """The index of the V2 bundle file at ``path``."""
    with LocalFile(str(path)) as src:
        return read_v2_index(src, BundleKey(0, 0, 0))


def _bundle_bytes() -> bytearray:
    return bytearray((SAMPLE_CACHE / "_alllayers/L01/R0000C0000.bundle").read_bytes())


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[:1000], r"truncated: 1,000 bytes, a Compact V2 bundle holds at least 131,136"),
        (
            lambda b: b[:-5000],
            r"tile R\d+/C\d+: offset \d+ \+ size \d+ runs past the end of the file",
        ),
        (
            lambda b: struct.pack_into("<I", b, 0, 2) or b,
            r"bad header: version \(byte 0\) is 2, expected 3",
        ),
        (lambda b: struct.pack_into("<I", b, 12, 4) or b, r"offset size \(byte 12\) is 4"),
        (lambda b: struct.pack_into("<Q", b, 32, 41) or b, r"user header offset \(byte 32\) is 41"),
        (lambda b: struct.pack_into("<I", b, 60, 0) or b, r"index size \(byte 60\) is 0"),
        (
            lambda b: struct.pack_into("<Q", b, 64 + 8 * 129, (10**9) | (50 << 40)) or b,
            r"tile R1/C1: offset 1000000000 \+ size 50 runs past the end",
        ),
    ],
)
def test_damaged_bundles_raise_corrupt_bundle_with_a_reason(damage, reason):
    data = bytes(damage(_bundle_bytes()))
    with pytest.raises(CorruptBundle, match=reason):
        summarize_index(data, len(data))


def test_arcgis_quirks_are_not_damage():
    data = _bundle_bytes()
    struct.pack_into("<I", data, 4, 0)  # ArcGIS writes 0 here, the white paper says 16384
    struct.pack_into("<I", data, 8, 131092)  # and not the max tile size
    # An empty slot with an offset that points nowhere: size 0 means no tile.
    struct.pack_into("<Q", data, 64 + 8 * 16383, 10**11)
    index = summarize_index(bytes(data), len(data))
    assert index.tiles == SAMPLE_TILES[1]


def test_bundle_names_that_do_not_parse_are_problems(sample):
    level_dir = sample / "_alllayers/L01"
    (level_dir / "R00zzC0000.bundle").write_bytes(b"")
    (level_dir / "R0001C0000.bundle").write_bytes(b"")  # row 1: not on a bundle boundary
    (level_dir / "R0080C0000.lock").write_bytes(b"")
    (level_dir / "R0080C0000.bundle").mkdir()  # a directory named like a bundle
    (level_dir / "notes.txt").write_text("ignored")
    with formats.open_cache(sample) as reader:
        found = list(reader.list_bundles(1))
    problems = {p.bundle: p for p in found if isinstance(p, Problem)}
    assert set(problems) == {"L01/R00zzC0000.bundle", "L01/R0001C0000.bundle"}
    assert "not a bundle name" in problems["L01/R00zzC0000.bundle"].detail
    assert "row 1 / col 0 is not on a 128-tile bundle boundary" in (
        problems["L01/R0001C0000.bundle"].detail
    )
    bundles = {b.key: b for b in found if isinstance(b, BundleFile)}
    assert set(bundles) == {BundleKey(1, 0, 0), BundleKey(1, 128, 0)}
    assert bundles[BundleKey(1, 128, 0)].locked and not bundles[BundleKey(1, 0, 0)].locked


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=2048), st.integers(0, 2**41))
def test_random_bytes_only_raise_corrupt_bundle(prefix, file_size):
    data = prefix + bytes(max(0, HEADER_INDEX_SIZE - len(prefix)))
    try:
        index = summarize_index(data, file_size)
    except CorruptBundle:
        return
    assert index.dead_bytes >= 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 16383), st.integers(0, 2**64 - 1)), max_size=40))
def test_mutated_index_entries_only_raise_corrupt_bundle(mutations):
    data = _bundle_bytes()
    for slot, value in mutations:
        struct.pack_into("<Q", data, 64 + 8 * slot, value)
    try:
        index = summarize_index(bytes(data), len(data))
    except CorruptBundle:
        return
    assert 0 <= index.dead_bytes <= len(data)


def test_reading_without_preadv_gives_the_same_index(sample, monkeypatch):
    path = sample / "_alllayers/L02/R0000C0000.bundle"
    with_preadv = _read(path)
    expected = (with_preadv.tiles, with_preadv.tile_bytes, with_preadv.dead_bytes)
    monkeypatch.delattr("os.preadv")  # as on Windows
    without = _read(path)
    assert (without.tiles, without.tile_bytes, without.dead_bytes) == expected
    assert np.array_equal(without.sizes, _read(path).sizes)


def test_a_level_folder_is_listed_as_it_goes(tmp_path):
    """Bundles come out of a level folder's listing one name after the other, never holding the
    folder's names; the rare cases (a ``.lock``, two names of one bundle) read as before."""
    from cachestatus.formats.arcgis_folder import level_bundles
    from cachestatus.formats.arcgis_layout import FolderLayout

    folder = tmp_path / "L05"
    folder.mkdir()
    keys = {(r * 128, c * 128) for r in range(20) for c in range(15)}
    for r, c in keys:
        (folder / f"R{r:04x}C{c:04x}.bundle").write_bytes(b"")
    (folder / "R00080C0000.bundle").write_bytes(b"")  # R0080C0000 named otherwise
    (folder / "R0000C0000.lock").write_bytes(b"")
    (folder / "R1000C00080.bundle").write_bytes(b"")  # named otherwise only: it is read
    layout = FolderLayout(tmp_path)
    taken = []

    def names():
        for name in layout.names(str(folder)):
            taken.append(name)
            yield name

    listing = level_bundles(5, names, str(folder) + "/")
    first = next(listing)
    assert isinstance(first, BundleFile)
    listed = len(os.listdir(folder))
    assert len(taken) < listed + 5  # the second listing had just begun
    found = [first, *listing]
    bundles = [f for f in found if isinstance(f, BundleFile)]
    assert {(b.key.row, b.key.col) for b in bundles} == keys | {(0x1000, 0x80)}
    assert len(bundles) == len(keys) + 1
    assert [b.locked for b in bundles if b.key.row == b.key.col == 0] == [True]
    odd = next(b for b in bundles if b.key.row == 0x1000)
    assert odd.path.endswith("R1000C00080.bundle")
    problems = [f for f in found if isinstance(f, Problem)]
    assert [(p.bundle, p.detail.rsplit(": ", 1)[-1]) for p in problems] == [
        ("L05/R00080C0000.bundle", "the same bundle as R0080C0000.bundle; not read")
    ]


#: Names a level folder may hold: the ones ArcGIS writes, the same bundles named otherwise,
#: off-boundary and unparsable ones, locks, indexes, strays, hostile characters.
_LEVEL_NAMES = st.lists(
    st.one_of(
        st.builds(
            lambda r, c, form, ext: form.format(r * 128, c * 128) + ext,
            st.integers(0, 40),
            st.integers(0, 40),
            st.sampled_from(
                ["R{:04x}C{:04x}", "R{:05x}C{:04x}", "R{:04X}C{:04x}", "r{:04x}c{:04x}"]
            ),
            st.sampled_from([".bundle", ".lock", ".bundlx", ".bundle.lock", ".bundle\n", ""]),
        ),
        st.sampled_from(
            ["R0001C0000.bundle", "R1C1.bundle", ".bundle", "Thumbs.db", "a\nb.bundle"]
        ),
        st.text(max_size=12).map(lambda t: t.replace("/", "").replace("\0", "") + ".bundle"),
    ),
    unique=True,
    max_size=60,
)


@given(_LEVEL_NAMES)
@settings(max_examples=150, deadline=None)
def test_level_bundles_picks_names_one_by_one_as_defined(names):
    """A level's listing reads each name as the per-name rules say, whatever the mix: the
    bundles ArcGIS named (locked where a ``.lock`` is beside them), every other ``.bundle`` name
    parsed on its own (problems, or the bundle when its ArcGIS name is not listed)."""
    from cachestatus.formats.arcgis_folder import level_bundles, parse_bundle_name, shown

    found = list(level_bundles(5, lambda: iter(names), "L05/"))
    locks = {n[: -len(".lock")] for n in names if n.endswith(".lock")}
    parsed = {
        n: parse_bundle_name(5, n, "L05/" + n, ".bundle", n[: -len(".bundle")] in locks)
        for n in names
        if n.endswith(".bundle")
    }
    read = {}  # by key: the name read, the ArcGIS one when listed, else the least
    for name, item in parsed.items():
        if isinstance(item, BundleFile):
            canonical = item.key.name + ".bundle"
            kept = read.get(item.key)
            if kept is None or name == canonical or (kept != canonical and name < kept):
                read[item.key] = name
    bundles = [f for f in found if isinstance(f, BundleFile)]
    assert sorted(bundles) == sorted(parsed[name] for name in read.values())
    problems = sorted(p.detail for p in found if isinstance(p, Problem))
    bad = [p.detail for p in parsed.values() if isinstance(p, Problem)]
    twice = [
        f"{shown('L05/' + n)}: the same bundle as {shown(read[item.key])}; not read"
        for n, item in parsed.items()
        if isinstance(item, BundleFile) and read[item.key] != n
    ]
    assert problems == sorted(bad + twice)

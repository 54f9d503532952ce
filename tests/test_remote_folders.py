"""Exploded caches and XYZ/TMS folders in S3, against moto's S3 server: each remote rebuild
equals the local rebuild of the same files, row for row, made from object listings alone (the
requests the server receives hold no read of a tile); tiles read over S3 are the files' bytes."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachestatus.formats import BundleFile, open_cache
from cachestatus.formats.tile_folders import (
    ExplodedCache,
    Listing,
    XYZFolder,
    list_tile_folder,
    list_tile_objects,
)
from tests.builders import WORLD, BuiltCache, build
from tests.remote import S3Server, Throttling, make_bucket, point_at, upload
from tests.test_fuzz import _BYTES, _DECIMAL, _HEX, _tile_name, _writable, fuzz
from tests.test_remote_s3 import comparable, run, tiles

KINDS = ["exploded", "xyz", "tms"]
#: The tile files the builders write, by extension.
TILE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: Half the world (the western half): tiles east of it are stray, and expected tiles are fewer.
WEST: tuple[float, float, float, float] = (WORLD[0], WORLD[1], 0.0, WORLD[3])


@pytest.fixture(scope="module")
def bucket(s3: S3Server) -> str:
    return make_bucket(s3, "remote-folders")


def built(kind: str, root: Path) -> BuiltCache:
    """A MapProxy-written cache of ``kind`` with an empty tile file, a file that is no tile and
    a badly named one beside its tiles."""
    cache = build(kind, root, tiles(), levels=10, extent=WEST)
    folder = next(p.parent for p in sorted(cache.path.rglob("*.png")))
    (folder / ("C00000007.png" if kind == "exploded" else "7.png")).write_bytes(b"")
    (folder / "notes.txt").write_text("not a tile")
    (folder / "x5.png").write_bytes(b"a bad name")
    return cache


def problems(out: str) -> list[tuple[str, str]]:
    """What a ``--json`` run reports as problems: where, and what kind."""
    return [(p["bundle"], p["kind"]) for p in json.loads(out)["problems"]]


def bad_name(kind: str) -> str:
    """Where the badly named file :func:`built` writes is reported."""
    return "L03/R00000001/x5.png" if kind == "exploded" else "3/2/x5.png"


@pytest.mark.parametrize("kind", KINDS)
def test_remote_rebuild_equals_the_local_one_with_sizes(s3_env, bucket, in_tmp, kind):
    cache = built(kind, in_tmp / "built")
    local, opening = cache.path, cache.cli
    url = upload(s3_env, local, bucket, f"equal/{kind}")
    code, out, err = run(
        "rebuild", local, *opening, "--sizes", "--status", in_tmp / "sized.gdb", "--json"
    )
    assert code == 0, err
    local_problems = problems(out)
    code, _, err = run("rebuild", local, *opening, "--status", in_tmp / "counted.gdb")
    assert code == 0, err
    code, out, err = run("rebuild", url, *opening, "--json")
    assert code == 0, err
    remote = Path(json.loads(out)["status_path"])
    assert problems(out) == local_problems == [(bad_name(kind), "bad-name")]
    rows = comparable(remote)
    # Sizes come free with the listing: the remote status is the local one with --sizes...
    assert rows == comparable(in_tmp / "sized.gdb")
    assert sum(row["tileBytes"] for row in rows.values()) == sum(map(len, tiles().values()))
    assert sum(row["tilesPresent"] + row["tilesStray"] for row in rows.values()) == len(tiles())
    # ...which differs from the local one without (tiles counted, not sized).
    counted = comparable(in_tmp / "counted.gdb")
    assert sum(row["tileBytes"] for row in counted.values()) == 0
    # --sizes asks nothing more of object storage.
    code, _, err = run("rebuild", url, *opening, "--sizes", "--status", in_tmp / "again.gdb")
    assert code == 0, err
    assert comparable(in_tmp / "again.gdb") == rows


def _requests(proxy: Throttling, bucket: str) -> list[tuple[str, str, dict[str, list[str]]]]:
    """The requests the proxy forwarded: method, key (empty for a listing), query."""
    found = []
    for method, target in proxy.requests:
        parts = urlsplit(target)
        key = unquote(parts.path).removeprefix(f"/{bucket}").lstrip("/")
        found.append((method, key, parse_qs(parts.query)))
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_a_remote_rebuild_reads_no_tile(s3_env, bucket, in_tmp, monkeypatch, kind):
    cache = built(kind, in_tmp / "built")
    local, opening = cache.path, cache.cli
    url = upload(s3_env, local, bucket, f"counted/{kind}")
    with Throttling(s3_env, slow=0) as proxy:
        point_at(monkeypatch, f"http://127.0.0.1:{proxy.server_address[1]}")
        code, _, err = run("rebuild", url, *opening, "--workers", "1")
    assert code == 0, err
    requests = _requests(proxy, bucket)
    objects = [(method, key) for method, key, _ in requests if key]
    assert objects, "the metadata is read"
    assert not [key for _, key in objects if key.lower().endswith(TILE_SUFFIXES)]
    assert {key.rsplit("/", 1)[-1].lower() for _, key in objects} <= {
        "conf.xml",
        "conf.cdi",
        "metadata.json",
    }
    # Each level holding tiles is listed once, recursively (no delimiter), and nothing else is.
    deep = sorted(q["prefix"][0] for _, key, q in requests if not key and "delimiter" not in q)
    base = f"counted/{kind}/_alllayers/L" if kind == "exploded" else f"counted/{kind}/"
    levels = ["03", "08"] if kind == "exploded" else ["3", "8"]
    assert deep == [f"{base}{level}/" for level in levels]


@pytest.mark.parametrize("kind", KINDS)
def test_tiles_read_over_s3_are_the_files_bytes(s3_env, bucket, in_tmp, kind):
    cache = built(kind, in_tmp / "built")
    local, options = cache.path, cache.opening
    url = upload(s3_env, local, bucket, f"tiles/{kind}")
    read = {}
    for where in (str(local), url):
        with open_cache(where, **options) as reader:
            bundles = [b for b in reader.list_level(8) if isinstance(b, BundleFile)]
            read[where] = {
                (b.key.label, t.row, t.col): (t.data, t.damage)
                for b in bundles
                for t in reader.read_tiles(b)
            }
    assert read[url] == read[str(local)]
    stored = {(row, col): data for (level, row, col), data in tiles().items() if level == 8}
    assert {(row, col): data for (_, row, col), (data, _) in read[url].items() if data} == stored


def test_a_folder_over_http_exits_2_saying_why(s3_env, bucket, in_tmp):
    local = built("xyz", in_tmp / "built").path
    upload(s3_env, local, bucket, "http/xyz")
    for kind in KINDS:
        url = f"http://127.0.0.1:{s3_env.port}/{bucket}/http/xyz"
        code, _, err = run("info", url, "--format-hint", kind)
        assert code == 2 and "nothing can be listed" in err, err


@fuzz
@given(
    st.sampled_from(["xyz", "exploded"]),
    st.lists(st.one_of(_tile_name(_DECIMAL), _tile_name(_HEX), _BYTES), max_size=25),
    st.lists(st.one_of(_tile_name(_DECIMAL), _tile_name(_HEX)), max_size=3),
    st.integers(0, 40),
)
def test_an_object_listing_reads_as_the_same_folder_on_disk(
    tmp_path_factory, layout, names, folders, limit
):
    """Whatever the names, the tiles, sizes, bad names and folders named like tiles an object
    listing gives are those the local listing (with sizes) gives for the same folder."""
    reader = XYZFolder if layout == "xyz" else ExplodedCache
    how = (reader.name_pattern, reader.name_base, True)
    column = tmp_path_factory.mktemp("objects")
    files: dict[str, int] = {}
    for size, name in enumerate(names):
        if _writable(name) and name not in files:
            (column / name).write_bytes(b"t" * size)
            files[name] = size
    below = sorted({name for name in folders if _writable(name) and name not in files})
    for name in below:
        (column / name).mkdir(exist_ok=True)
    local = list_tile_folder(str(column), how, limit)
    remote = list_tile_objects(list(files), list(files.values()), below, how, limit)

    def summary(found: Listing) -> tuple[object, ...]:
        tiles = sorted(zip(found.numbers.tolist(), found.sizes, strict=True))
        return tiles, sorted(found.odd, key=repr), sorted(found.unreadable), found.error

    assert summary(remote) == summary(local)

"""Levels listed in parts on a Dask cluster: a Compact cache in S3 (moto's server) scanned by a
real ``dask scheduler`` and two ``dask worker`` processes, each task listing its own part of a
level folder, gives the local process engine's store row for row, odd names and stray files
included, while the client lists no level folder (the requests it sends, through a recording
proxy, hold none); the workers list the parts, starting each listing at its part (the requests
they send hold ``start-after``). An incremental rebuild on the cluster equals a full one.

The parts themselves (:func:`~cachestatus.formats.arcgis_folder.row_boundaries`,
:meth:`~cachestatus.storage.ObjectStorage.list_between`) cover a folder's names once, whatever
they are, and read as the whole folder's listing does: a property test over random names.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachestatus import rebuild, report
from cachestatus.formats.arcgis_folder import level_bundles, row_boundaries
from cachestatus.formats.arcgis_layout import ObjectLayout
from cachestatus.formats.base import BundleFile, Part
from cachestatus.models import BUNDLE_SIZE, TileRange
from cachestatus.storage import Location, ObjectEntry, ObjectStorage
from tests.builders import build
from tests.dask_cluster import dask_cluster
from tests.remote import KEYS, S3Server, Throttling, make_bucket, point_at, upload
from tests.status_rows import rows_in_order, task_rows
from tests.test_dask import _same_report, tiles_in

distributed = pytest.importorskip("distributed")

#: The level whose expected bundles (64 x 64, the whole world) make several parts.
DEEP = 13


def _tiles(seed: int) -> dict[tuple[int, int, int], bytes]:
    """A few tiles in bundles of levels 9 to 13, level 13's spread down its rows."""
    rng = np.random.default_rng(seed)
    keys = {(lv, int(rng.integers(0, 2 ** (lv - 7))), 0) for lv in range(9, DEEP)}
    keys |= {(DEEP, brow, int(rng.integers(0, 64))) for brow in range(0, 64, 3)}
    keys.add((DEEP, 1, 0))
    return tiles_in(keys, rng, 4, 20)


@pytest.fixture(scope="module", params=["compact-v2", "compact-v1"])
def cache(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MapProxy Compact cache (V2, or V1 with its ``.bundlx`` files) of levels 0 to 13, and
    in its level 13 folder what a real one gathers: a bundle under two names far apart in the
    folder's order (``R00080C0000`` and ``R0080C0000``), a bundle under an odd name only
    (upper-case hex) and one under two odd names, a ``.lock``, a badly named bundle, a stray
    ``.bundlx``, notes, and a sub-folder. The folder is named after the format."""
    kind = request.param
    root = build(kind, tmp_path_factory.mktemp("parts"), _tiles(5), levels=14)
    folder = root.path / "_alllayers" / f"L{DEEP}"

    def copy(bundle: Path, stem: str) -> None:
        """The bundle (and its ``.bundlx``) again, named ``stem``."""
        for suffix in (".bundle", ".bundlx"):
            if bundle.with_suffix(suffix).exists():
                (folder / (stem + suffix)).write_bytes(bundle.with_suffix(suffix).read_bytes())

    some = sorted(folder.glob("R*.bundle"))
    copy(folder / "R0080C0000.bundle", "R00080C0000")
    copy(some[3], "R0A00C0080")
    copy(some[4], "R00A80C0100")
    copy(some[5], "R0A80C0100")
    some[6].with_suffix(".lock").write_bytes(b"")
    (folder / "R12.bundle").write_bytes(b"bad name")
    (folder / "R0f00C0f00.bundlx").write_bytes(b"\0" * 16)
    (folder / "notes.txt").write_text("not a bundle")
    (folder / "sub").mkdir()
    (folder / "sub" / "R0000C0000.bundle").write_bytes(b"elsewhere")
    assert root.path.name == kind
    return root.path


def _listings(proxy: Throttling, bucket: str) -> list[dict[str, list[str]]]:
    """The queries of the listing requests the proxy forwarded (for ``bucket``)."""
    found = []
    for method, target in list(proxy.requests):
        parts = urlsplit(target)
        key = unquote(parts.path).removeprefix(f"/{bucket}").lstrip("/")
        query = parse_qs(parts.query)
        if method == "GET" and not key and "prefix" in query:
            found.append(query)
    return found


@pytest.fixture(scope="module")
def workers_proxy(s3: S3Server) -> Iterator[Throttling]:
    """A proxy to the S3 server that records what the cluster's workers ask of it."""
    with Throttling(s3, slow=0) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def scheduler(workers_proxy: Throttling, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``dask scheduler`` and two ``dask worker`` processes whose environment points at the
    S3 server through :func:`workers_proxy`, with the test keys."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DASK_"))}
    env.update(KEYS, AWS_ENDPOINT_URL=f"http://127.0.0.1:{workers_proxy.server_address[1]}")
    with dask_cluster(tmp_path_factory.mktemp("scheduler"), 2, env) as address:
        yield address


@pytest.mark.slow
def test_levels_listed_in_parts_on_the_workers_give_the_local_store(
    cache: Path,
    scheduler: str,
    workers_proxy: Throttling,
    s3_env: S3Server,
    in_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = make_bucket(s3_env, f"parts-{cache.name}")
    url = upload(s3_env, cache, bucket, "parts/Layers")
    local = rebuild(url, in_tmp / "local.gdb", workers=2)
    kinds = {(p.bundle, p.kind) for p in local.problems}
    assert {
        (f"L{DEEP}/R12.bundle", "bad-name"),
        (f"L{DEEP}/R00080C0000.bundle", "bad-name"),  # R0080C0000.bundle is read
        (f"L{DEEP}/R0A80C0100.bundle", "bad-name"),  # R00A80C0100.bundle, the least, is read
    } <= kinds
    found = task_rows(in_tmp / "local.gdb", ["status"])
    assert found[f"L{DEEP}/R0a00C0080"]["status"] != "MISSING"  # read under its odd name
    assert found[f"L{DEEP}/R0a80C0100"]["status"] != "MISSING"

    workers_proxy.requests.clear()
    with Throttling(s3_env, slow=0) as client:
        point_at(monkeypatch, f"http://127.0.0.1:{client.server_address[1]}")
        on_cluster = rebuild(url, in_tmp / "dask.gdb", scheduler=scheduler, reuse=False)
        reported = report(url, in_tmp / "dask-report", levels=[DEEP], scheduler=scheduler)
    point_at(monkeypatch, s3_env.endpoint)
    _same_report(local, on_cluster)
    assert rows_in_order(in_tmp / "local.gdb") == rows_in_order(in_tmp / "dask.gdb")
    kept = report(url, in_tmp / "local-report", levels=[DEEP], workers=2)
    _same_report(kept, reported)
    assert rows_in_order(kept.status_path) == rows_in_order(reported.status_path)

    # The client listed the cache's folders, one level deep, and no level folder.
    level_folder = "parts/Layers/_alllayers/L"
    asked = [q["prefix"][0] for q in _listings(client, bucket)]
    assert asked and not [p for p in asked if p.startswith(level_folder)]
    # The workers listed level 13 in parts, all but the first starting at a bundle row.
    deep = [q for q in _listings(workers_proxy, bucket) if q["prefix"] == [f"{level_folder}13/"]]
    starts = sorted({q["start-after"][0] for q in deep if "start-after" in q})
    assert len(starts) >= 3
    assert all(s.startswith(f"{level_folder}13/R") for s in starts)


@pytest.mark.slow
def test_an_incremental_rebuild_on_the_cluster_equals_a_full_one(
    cache: Path, scheduler: str, s3_env: S3Server, in_tmp: Path
) -> None:
    bucket = make_bucket(s3_env, f"again-{cache.name}")
    url = upload(s3_env, cache, bucket, "again/Layers")
    first = rebuild(url, in_tmp / "dask.gdb", scheduler=scheduler)
    client = s3_env.client()
    folder = f"again/Layers/_alllayers/L{DEEP}"
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"{folder}/R")["Contents"]
    arcgis = re.compile(f"{folder}/R[0-9a-f]{{4}}C[0-9a-f]{{4}}\\.bundle")
    one, other = [o["Key"] for o in listed if arcgis.fullmatch(o["Key"])][:2]
    body = client.get_object(Bucket=bucket, Key=other)["Body"].read()
    client.put_object(Bucket=bucket, Key=one, Body=body)
    again = rebuild(url, in_tmp / "dask.gdb", scheduler=scheduler)
    if cache.name == "compact-v2":  # a bundle read with its .bundlx (V1) is always read again
        assert 0 < again.bundles_read < first.bundles_read
        assert again.bundles_reused > 0
    full = rebuild(url, in_tmp / "full.gdb", workers=2, reuse=False)
    assert again.bundles_read + again.bundles_reused == full.bundles_read

    def rows(store: Path) -> dict[str, Any]:
        """Reused rows are written before those read again: the same rows, in another order."""
        return dict(rows_in_order(store))

    assert rows(in_tmp / "dask.gdb") == rows(in_tmp / "full.gdb")


class _Keys(ObjectStorage):
    """Object storage holding ``keys`` (empty objects): listed as S3 lists, in key order,
    starting after a key."""

    def __init__(self, keys: list[str]) -> None:
        super().__init__(Location("s3", "bucket", ""))
        self.keys = sorted(keys)

    def list(self, prefix: str = "", after: str | None = None) -> Iterator[ObjectEntry]:
        folder = prefix + "/"
        for key in self.keys:
            if key.startswith(folder) and (after is None or key > after):
                yield ObjectEntry(key, 0, key, 0.0)

    def list_dir(self, prefix: str = "") -> tuple[list[str], list[ObjectEntry]]:
        inside = [e for e in self.list(prefix) if "/" not in e.key[len(prefix) + 1 :]]
        return [], inside

    def head(self, key: str) -> ObjectEntry:
        if key not in self.keys:
            raise FileNotFoundError(key)
        return ObjectEntry(key, 0, key, 0.0)


_HEX_DIGITS = "0123456789abcdefABCDEF"
#: Bundle rows and columns: on the expected rows (whose beginnings cut the parts), or beyond.
_ROWS = st.one_of(
    st.integers(0, 0x42).map(lambda r: r * BUNDLE_SIZE),
    st.sampled_from([0x10000, 0x10080, 0x100000]),
)


def _bundle_name(row: int, col: int, digits: int, upper: bool) -> str:
    """A bundle's name as ArcGIS writes it (4 digits, lower case), or another of its names."""
    name = f"R{row:0{digits}x}C{col:04x}"
    return name.upper().replace("X", "x") if upper else name


_JUNK = st.text(alphabet="RC.-_/" + _HEX_DIGITS, min_size=1, max_size=12).filter(
    lambda s: not s.startswith("/") and not s.endswith("/") and "//" not in s
)


# The parts of a folder's names, made once: strategies made inside each draw were most of the
# test's time (Hypothesis describes and caches each new one, lambdas by their source).
_KEYS = st.lists(st.tuples(_ROWS, st.sampled_from([0, 0x80, 0xA00])), max_size=12, unique=True)
_NAMES_OF_A_BUNDLE = st.sets(
    st.sampled_from([(4, False), (5, False), (6, False), (4, True)]), min_size=1
)
_BESIDE = st.sets(st.sampled_from([".lock", ".bundlx"]))
_OTHER_NAMES = st.sets(st.builds(lambda a, b: a + b, _JUNK, st.sampled_from(["", ".bundle"])))


@st.composite
def _folder_names(draw: st.DrawFn) -> list[str]:
    """A level folder's names: bundles under one or more of their names (ArcGIS's, more
    digits, upper case), some with a ``.lock`` or a ``.bundlx``, and anything else."""
    names: set[str] = set()
    for row, col in draw(_KEYS):
        for digits, upper in draw(_NAMES_OF_A_BUNDLE):
            stem = _bundle_name(row, col, digits, upper)
            names.add(stem + ".bundle")
            names |= {stem + s for s in draw(_BESIDE)}
    names |= draw(_OTHER_NAMES)
    return sorted(names)


@settings(max_examples=300, deadline=None)
@given(
    names=_folder_names(),
    rows=st.tuples(st.integers(0, 0x2100), st.integers(1, 0x2100)),
    size=st.integers(1, 40),
)
def test_a_levels_parts_hold_each_name_once_and_read_as_its_listing(
    names: list[str], rows: tuple[int, int], size: int
) -> None:
    """Whatever the folder holds, the parts cut from any expected block list each of its names
    once, a bundle's files in one part, and read in order (each part's bundles and problems,
    then what only the whole listing decides) as the folder's own listing does."""
    folder = "cache/_alllayers/L20"
    storage = _Keys([f"{folder}/{name}" for name in names])
    layout = ObjectLayout(storage, "cache", [])
    start, height = rows
    bounds = TileRange(start, start + height, 0, 5 * BUNDLE_SIZE)
    cuts: list[str | None] = [None, *row_boundaries(bounds, size), None]
    assert cuts[1:-1] == sorted(cuts[1:-1])  # type: ignore[type-var]
    parts = [Part(20, a, b) for a, b in itertools.pairwise(cuts)]
    listed = [
        [e.key.rsplit("/", 1)[-1] for e in storage.list_between(folder, p.start, p.stop)]
        for p in parts
    ]
    direct = sorted(n for n in names if "/" not in n)
    assert sorted(n for part in listed for n in part) == direct
    part_of = {name: at for at, part in enumerate(listed) for name in part}
    for name, at in part_of.items():  # a bundle's files are in the bundle's part
        for beside in (".lock", ".bundlx"):
            if name.endswith(beside) and name.removesuffix(beside) + ".bundle" in part_of:
                assert part_of[name.removesuffix(beside) + ".bundle"] == at

    whole = list(level_bundles(20, lambda: direct, f"{folder}/"))
    found = [layout.part(p, folder) for p in parts]
    unsettled = found[0].unsettled
    for later in found[1:]:
        unsettled.add(later.unsettled)
    in_parts = [item for part in found for item in part.found]
    in_parts += list(unsettled.resolved())

    def plain(items: list[Any]) -> list[Any]:
        """The bundles without what the parts' listing gave them (sizes, stamps)."""
        return [
            i._replace(payload=None, size=None, stamp=None) if isinstance(i, BundleFile) else i
            for i in items
        ]

    assert plain(in_parts) == plain(whole)

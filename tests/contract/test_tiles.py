"""Every reader gives back the bytes each writer was told to store, and ``verify`` finds them
all, and finds nothing wrong."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cachestatus import open_cache
from cachestatus.cli import main
from tests.builders import BuiltCache
from tests.contract.suite import TILES


def test_read_tiles_gives_back_every_tile_written(cache: BuiltCache, kind: str):
    read: dict[tuple[int, int, int], bytes] = {}
    with open_cache(cache.path, **cache.opening) as reader:
        assert reader.name == kind
        for level in reader.scheme.levels:
            for bundle in reader.list_bundles(level):
                assert hasattr(bundle, "key"), bundle  # a bundle, not a problem
                for tile in reader.read_tiles(bundle):
                    assert not tile.damage and bundle.key.holds(tile.row, tile.col)
                    assert (level, tile.row, tile.col) not in read
                    read[(level, tile.row, tile.col)] = tile.data
    assert read.keys() == TILES.keys()
    assert read == TILES


def test_verify_checks_every_tile_and_finds_them_good(cache: BuiltCache):
    args = ["verify", str(cache.path), "--json", "--workers", "1", *cache.cli]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    checked = json.loads(result.stdout)
    assert checked["clean"] and checked["problems"] == []
    assert checked["totals"]["tiles_checked"] == len(TILES)

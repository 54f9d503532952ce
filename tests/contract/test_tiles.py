"""Every reader gives back the bytes each writer was told to store (a bundle at a time, and one
tile at a time, also from 16 threads at once), says where they are in any window, and ``verify``
finds them all, and finds nothing wrong."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner

from cachestatus import open_cache
from cachestatus.cli import main
from cachestatus.errors import ScaleNotInCache
from tests.builders import BuiltCache
from tests.contract.suite import REMOVED, TILES


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


#: Addresses that hold no tile in any format: tiles the writer removed, a bundle never written,
#: the empty half of a partial bundle, a level of no tiles, and addresses off every grid.
HOLES = [
    *REMOVED,
    (8, 200, 10),
    (8, 100, 200),
    (12, 0, 0),
    (5, 3, 3),
    (2, -1, 0),
    (2, 0, -1),
    (2, 4, 0),
    (8, 0, 256),
    (40, 0, 0),
]
#: Windows (level, row, col, height, width) across bundle edges and the grid's edges.
WINDOWS = [
    (8, 60, 120, 10, 20),
    (8, 120, 120, 16, 16),
    (8, 0, 0, 256, 256),
    (8, 250, 250, 10, 10),
    (2, -2, -3, 8, 9),
    (12, 90, 3000, 40, 200),
    (12, -5, 3140, 20, 20),
]


def written(level: int, row: int, col: int, height: int, width: int) -> np.ndarray:
    """Where the writer was told to store tiles, in a window."""
    found = np.zeros((height, width), dtype=bool)
    for lv, r, c in TILES:
        if lv == level and row <= r < row + height and col <= c < col + width:
            found[r - row, c - col] = True
    return found


def test_read_tile_gives_each_tile_as_written_and_none_elsewhere(cache: BuiltCache):
    with open_cache(cache.path, **cache.opening) as reader:
        read = {key: reader.read_tile(*key) for key in TILES}
        assert read == TILES
        assert {key: reader.read_tile(*key) for key in HOLES} == dict.fromkeys(HOLES)


@pytest.mark.parametrize("window", WINDOWS, ids=lambda w: "L{}R{}C{}H{}W{}".format(*w))
def test_presence_over_a_window_is_where_tiles_were_written(cache: BuiltCache, window):
    with open_cache(cache.path, **cache.opening) as reader:
        found = reader.presence(*window)
    assert found.dtype == np.bool_ and found.shape == window[3:]
    assert np.array_equal(found, written(*window))


def test_presence_of_a_level_that_is_no_lod_is_refused(cache: BuiltCache):
    with open_cache(cache.path, **cache.opening) as reader, pytest.raises(ScaleNotInCache):
        reader.presence(40, 0, 0, 4, 4)


def test_sixteen_threads_on_one_reader_get_the_answers_of_one(cache: BuiltCache):
    keys = [*random.Random(5).sample(sorted(TILES), 1500), *HOLES]
    with open_cache(cache.path, **cache.opening) as reader, ThreadPoolExecutor(16) as pool:
        tiles = list(pool.map(lambda key: reader.read_tile(*key), keys))
        windows = list(pool.map(lambda window: reader.presence(*window), WINDOWS * 4))
    assert tiles == [TILES.get(key) for key in keys]
    for window, found in zip(WINDOWS * 4, windows, strict=True):
        assert np.array_equal(found, written(*window))

"""The status row, declared once: rows go into columns and come back out unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from cachestatus.models import BundleKey, BundleState, BundleStatus, RowBatch, TileRange

ROWS = [
    BundleStatus(
        BundleKey(5, 128, 256),
        BundleState.PARTIAL,
        16384,
        100,
        2,
        5000,
        140000,
        12,
        1700000000.25,
        TileRange(128, 256, 256, 384),
        "",
        7,
    ),
    BundleStatus(
        BundleKey(6, 0, 0), BundleState.MISSING, 64, 0, 0, 0, 0, 0, None, TileRange(0, 8, 0, 8)
    ),
    BundleStatus(
        BundleKey(6, 0, 128),
        BundleState.CORRUPT,
        0,
        0,
        0,
        0,
        0,
        0,
        None,
        TileRange(0, 128, 128, 256),
        "truncated",
    ),
]


def test_rows_go_into_columns_and_back():
    batch = RowBatch.from_statuses(ROWS)
    assert len(batch) == 3
    assert batch.level.tolist() == [5, 6, 6] and batch.col.tolist() == [256, 0, 128]
    assert batch.state == ["PARTIAL", "MISSING", "CORRUPT"]
    assert batch.tiles.shape == (3, 4) and batch.tiles[1].tolist() == [0, 8, 0, 8]
    assert np.isnan(batch.mtime[1:]).all() and batch.tiles_blank.tolist() == [7, -1, -1]
    assert list(batch.statuses()) == ROWS
    assert [row.percent_complete for row in batch.statuses()] == [100 * 100 / 16384, 0.0, None]


def test_batches_concatenate_in_order_and_an_empty_one_has_every_column():
    empty = RowBatch.from_statuses([])
    assert len(empty) == 0 and empty.tiles.shape == (0, 4)
    assert all(len(getattr(empty, name)) == 0 for name in RowBatch.COLUMNS)
    whole = RowBatch.concat(
        [RowBatch.from_statuses(ROWS[:1]), empty, RowBatch.from_statuses(ROWS[1:])]
    )
    assert list(whole.statuses()) == list(RowBatch.from_statuses(ROWS).statuses())


def test_a_batch_takes_every_column_and_no_other():
    columns = {name: getattr(RowBatch.from_statuses(ROWS), name) for name in RowBatch.COLUMNS}
    with pytest.raises(TypeError, match="tiles_blank"):
        RowBatch(**{k: v for k, v in columns.items() if k != "tiles_blank"})


def test_labels_in_columns_are_the_bundle_labels():
    keys = [BundleKey(5, 128, 256), BundleKey(12, 0x12380, 0x10000)]
    level, row, col = np.array(keys, dtype=np.int64).T
    assert BundleKey.labels(level, row, col) == [key.label for key in keys]
    assert keys[1].label == "L12/R12380C10000"

"""Polygons for the status store, encoded as WKB straight from coordinate arrays.

Every row's polygon is an axis-aligned rectangle; encoding them with numpy in one step avoids
building a geometry object per row. Layout (OGC WKB, little-endian polygon): byte order (1),
type 3 (u32), one ring (u32), five points (u32), ten doubles: 93 bytes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .. import grid
from ..models import Extent, TilingScheme

_WKB_POLYGON = np.dtype(
    [("order", "u1"), ("type", "<u4"), ("rings", "<u4"), ("points", "<u4"), ("xy", "<f8", (10,))]
)


def rectangles_wkb(
    xmin: npt.NDArray[np.float64],
    ymin: npt.NDArray[np.float64],
    xmax: npt.NDArray[np.float64],
    ymax: npt.NDArray[np.float64],
) -> npt.NDArray[np.object_]:
    """WKB polygons (clockwise exterior ring, as FileGDB stores it) for arrays of rectangles."""
    out = np.zeros(len(xmin), dtype=_WKB_POLYGON)
    out["order"], out["type"], out["rings"], out["points"] = 1, 3, 1, 5
    xy = out["xy"]
    # (xmin ymin) (xmin ymax) (xmax ymax) (xmax ymin) (xmin ymin): clockwise.
    xy[:, 0], xy[:, 1] = xmin, ymin
    xy[:, 2], xy[:, 3] = xmin, ymax
    xy[:, 4], xy[:, 5] = xmax, ymax
    xy[:, 6], xy[:, 7] = xmax, ymin
    xy[:, 8], xy[:, 9] = xmin, ymin
    return np.array(out.view(f"V{_WKB_POLYGON.itemsize}").tolist(), dtype=object)


def tile_rectangles(
    scheme: TilingScheme,
    levels: npt.NDArray[np.int64],
    tiles: npt.NDArray[np.int64],
    clip: Extent,
) -> tuple[npt.NDArray[np.float64], ...]:
    """Map coordinates (xmin, ymin, xmax, ymax arrays) of tile blocks, clipped to ``clip``.

    Args:
        scheme: the tiling scheme.
        levels: the level of each block.
        tiles: one block per row: row0, row1, col0, col1 (half-open).
        clip: the rectangle coordinates are kept within (the store's XY domain).
    """
    xmin, ymin = np.zeros(len(levels)), np.zeros(len(levels))
    xmax, ymax = np.zeros(len(levels)), np.zeros(len(levels))
    for lv in np.unique(levels).tolist():
        on = levels == lv
        xmin[on], ymin[on], xmax[on], ymax[on] = grid.blocks_bounds(scheme, lv, tiles[on])
    return (
        np.clip(xmin, clip.xmin, clip.xmax),
        np.clip(ymin, clip.ymin, clip.ymax),
        np.clip(xmax, clip.xmin, clip.xmax),
        np.clip(ymax, clip.ymin, clip.ymax),
    )


def rectangle_tiles(
    scheme: TilingScheme, levels: npt.NDArray[np.int64], bounds: npt.NDArray[np.float64]
) -> npt.NDArray[np.int64]:
    """The tile blocks (row0, row1, col0, col1) of rectangles on tile edges, the inverse of
    :func:`tile_rectangles`.

    Args:
        scheme: the tiling scheme.
        levels: the level of each rectangle.
        bounds: one rectangle per row: xmin, ymin, xmax, ymax (shape (n, 4)).
    """
    blocks = np.zeros((len(levels), 4), dtype=np.int64)
    for lv in np.unique(levels).tolist():
        on = levels == lv
        w, h = grid.tile_span(scheme, lv)
        xmin, ymin, xmax, ymax = bounds[on].T
        ox, oy = scheme.origin_x, scheme.origin_y
        edges = np.column_stack(
            [(oy - ymax) / h, (oy - ymin) / h, (xmin - ox) / w, (xmax - ox) / w]
        )
        blocks[on] = np.round(edges)
    return blocks

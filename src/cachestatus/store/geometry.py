"""Polygons for the status store, encoded as WKB straight from coordinate arrays.

Every row's polygon is an axis-aligned rectangle; encoding them with numpy in one step avoids
building a geometry object per row. Layout (OGC WKB, little-endian polygon): byte order (1),
type 3 (u32), one ring (u32), five points (u32), ten doubles: 93 bytes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..models import BundleStatus, Extent, TilingScheme

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


def row_rectangles(
    scheme: TilingScheme, rows: list[BundleStatus], clip: Extent
) -> tuple[npt.NDArray[np.float64], ...]:
    """Map coordinates (xmin, ymin, xmax, ymax arrays) of the rows' tile blocks, within ``clip``."""
    level = np.fromiter((r.key.level for r in rows), dtype=np.int64, count=len(rows))
    t = np.array([r.tiles for r in rows], dtype=np.float64).reshape(-1, 4)  # row0 row1 col0 col1
    span_x = np.zeros(len(rows))
    span_y = np.zeros(len(rows))
    for lv in np.unique(level):
        res = scheme.lod(int(lv)).resolution
        span_x[level == lv] = scheme.tile_cols * res
        span_y[level == lv] = scheme.tile_rows * res
    ox, oy = scheme.origin_x, scheme.origin_y
    return (
        np.clip(ox + t[:, 2] * span_x, clip.xmin, clip.xmax),
        np.clip(oy - t[:, 1] * span_y, clip.ymin, clip.ymax),
        np.clip(ox + t[:, 3] * span_x, clip.xmin, clip.xmax),
        np.clip(oy - t[:, 0] * span_y, clip.ymin, clip.ymax),
    )

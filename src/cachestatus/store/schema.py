"""The status store's layers and fields (spec §3.3), named once.

Counts and byte sums that can pass 2**31 (a bundle's bytes, a level's tile counts) are 64-bit
integers. A FileGDB is written by default for every reader administrators still run (ArcMap 10.x,
ArcGIS Pro before 3.2, GDAL before 3.9 and the QGIS built on it): GDAL then stores 64-bit integers
as Double fields, exact to 2**53, far beyond any cache. With ``big_integer`` (``--big-integer``)
they are written as *Big Integer* fields (GDAL's OpenFileGDB layer option
``TARGET_ARCGIS_VERSION=ARCGIS_PRO_3_2_OR_LATER``), which only ArcGIS Pro 3.2 and later and
GDAL 3.9 and later open: older readers see no fields and no rows at all in such a layer.
GeoPackage stores them as INTEGER (64-bit) natively.
"""

from __future__ import annotations

from typing import Final

TASK_STATUS: Final = "TaskStatus"
LEVEL_STATUS: Final = "LevelStatus"
JOBS: Final = "Jobs"
MISSING_AREAS: Final = "MissingAreas"

#: (name, numpy dtype) of ``TaskStatus``, in order; ``object`` is text, ``datetime64[ms]`` UTC.
#: ``tilesBlank`` (tiles stored without content, ``--blank``) is null where it was not counted.
TASK_FIELDS: Final = (
    ("bundleName", "object"),
    ("jobID", "object"),
    ("levelID", "int32"),
    ("scale", "float64"),
    ("resolution", "float64"),
    ("bundleRow", "int32"),
    ("bundleCol", "int32"),
    ("tilesExpected", "int32"),
    ("tilesPresent", "int32"),
    ("tilesStray", "int32"),
    ("percentComplete", "float64"),
    ("status", "object"),
    ("tileBytes", "int64"),
    ("fileBytes", "int64"),
    ("deadBytes", "int64"),
    ("modified", "datetime64[ms]"),
    ("detail", "object"),
    ("tilesBlank", "int32"),
)

LEVEL_FIELDS: Final = (
    ("levelID", "int32"),
    ("scale", "float64"),
    ("resolution", "float64"),
    ("bundles", "int32"),
    ("tilesExpected", "int64"),
    ("tilesPresent", "int64"),
    ("tilesStray", "int64"),
    ("percentComplete", "float64"),
    ("tileBytes", "int64"),
    ("jobID", "object"),
    ("tilesBlank", "int64"),
)

#: ``exact`` is 1 where the polygon is exactly the missing tiles, 0 where it is a cover holding
#: them all (and more); a small integer, as FileGDB readers before GDAL 3.9 have no boolean.
MISSING_FIELDS: Final = (
    ("levelID", "int32"),
    ("scale", "float64"),
    ("tilesMissing", "int64"),
    ("exact", "int16"),
)

JOB_FIELDS: Final = (
    ("jobID", "object"),
    ("mode", "object"),
    ("started", "datetime64[ms]"),
    ("finished", "datetime64[ms]"),
    ("cachePath", "object"),
    ("format", "object"),
    ("parameters", "object"),
    ("toolVersion", "object"),
    ("outcome", "object"),
)

#: Store kinds: suffix and GDAL driver.
DRIVERS: Final = {".gdb": "OpenFileGDB", ".gpkg": "GPKG"}
